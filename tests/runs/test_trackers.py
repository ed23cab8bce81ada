"""Trackers: rows go in through ``Trackers``, and come back out of each tracker's own store."""

import json
import struct
import sys
import warnings
from pathlib import Path

import pytest

from preftune.errors import ConfigError, ExitCode, MissingError
from preftune.runs.trackers import TRACKERS, Trackers, check_available

CONFIG = {"algo": "dpo", "beta": 0.1, "learning_rate": 5e-5, "lora_target_modules": "all-linear",
          "normalize": [], "versions": {"torch": "2.13.0"}}


def train_row(step: int) -> dict[str, float]:
    return {"step": step, "epoch": round(step / 4, 4), "loss": 0.6931 - 0.05 * step,
            "accuracy": 0.5 + 0.125 * step, "margin": 0.01 * step,
            "chosen_reward": 0.02 * step, "rejected_reward": -0.01 * step,
            "chosen_logps": -40.5 + step, "rejected_logps": -41.25 - step,
            "learning_rate": 5e-5 * step / 3, "grad_norm": 1.5 / step,
            "tokens_per_second": 1234.5 + step, "examples_per_second": 12.25 + step,
            "peak_memory_mb": 512.0 + step}


EVAL_ROW = {"step": 3, "epoch": 0.75, "eval/loss": 0.61, "eval/accuracy": 0.8125,
            "eval/margin": 0.04, "eval/chosen_reward": 0.05, "eval/rejected_reward": -0.02,
            "eval/chosen_logps": -38.0, "eval/rejected_logps": -44.5}
ROWS = [train_row(1), train_row(2), train_row(3), EVAL_ROW]


def sent(rows: list[dict[str, float]]) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value)]} as the rows send them; ``epoch`` twice at the eval step."""
    history: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for name, value in row.items():
            if name != "step":
                history.setdefault(name, []).append((int(row["step"]), value))
    return history


def per_step(history: dict[str, list[tuple[int, float]]]) -> dict[str, list[tuple[int, float]]]:
    """One point per metric and step, the last sent: how W&B merges rows at one step."""
    return {name: sorted(dict(points).items()) for name, points in history.items()}


def offline(patch: pytest.MonkeyPatch, root: Path) -> None:
    """Keep every tracker local and its files under ``root``."""
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR",
                 "WANDB_ARTIFACT_DIR"):
        patch.setenv(name, str(root / name.lower()))
    patch.setenv("WANDB_MODE", "offline")
    patch.setenv("WANDB_SILENT", "true")
    patch.setenv("WANDB_CONSOLE", "off")  # leave pytest's captured stdout alone
    patch.delenv("WANDB_API_KEY", raising=False)
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    patch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # preftune opts in for its default


@pytest.fixture
def env(monkeypatch, tmp_path):
    offline(monkeypatch, tmp_path / "home")


@pytest.fixture(scope="module")
def all_three(tmp_path_factory):
    """A run directory that all three trackers logged ``ROWS`` into."""
    run_dir = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        offline(patch, tmp_path_factory.mktemp("home"))
        trackers = Trackers.open(["wandb", "tensorboard", "mlflow"], run_dir, "run-name", CONFIG)
        for row in ROWS:
            trackers.log(row)
        trackers.finish()
        trackers.finish()
    return run_dir


# ------------------------------------------------------------------------------ readers


def read_tensorboard(run_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], str]:
    """Scalars by tag, and the config text."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)]
               for tag in events.Tags()["scalars"]}
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    return scalars, text


def read_mlflow(uri: str) -> tuple[dict[str, list[tuple[int, float]]], dict[str, str]]:
    """Metric histories and params of the run named ``run-name``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("preftune")
    (run,) = client.search_runs([experiment.experiment_id],
                                filter_string="attributes.run_name = 'run-name'")
    assert run.info.status == "FINISHED"
    history = {name: sorted((m.step, m.value)
                            for m in client.get_metric_history(run.info.run_id, name))
               for name in run.data.metrics}
    return history, run.data.params


def wandb_records(path: Path):
    """The protobuf records of a ``.wandb`` transaction log.

    wandb 0.31 ships no Python reader for it (its Go core writes it), so this reads the
    LevelDB log format it uses: a 7-byte header (':W&B', magic, version), then 32 KiB blocks
    of chunks, each with a 7-byte header (CRC32C, length, type: full/first/middle/last).
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def read_wandb(run_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict, str]:
    """Metric histories, config and run name of the one offline run under ``run_dir``."""
    (log,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    history: dict[str, list[tuple[int, float]]] = {}
    config: dict = {}
    name = ""
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    history.setdefault(key, []).append(
                        (record.history.step.num, json.loads(item.value_json)))
        elif kind == "run":
            name = record.run.display_name
            for item in record.run.config.update:
                if not item.key.startswith("_"):
                    config[item.key] = json.loads(item.value_json)
    return history, config, name


# ------------------------------------------------------------------------------ tests


def test_tensorboard_gets_every_value_at_its_step(all_three):
    scalars, text = read_tensorboard(all_three)
    expected = sent(ROWS)
    assert set(scalars) == set(expected)
    for name, points in expected.items():
        assert [step for step, _ in scalars[name]] == [step for step, _ in points]
        assert [value for _, value in scalars[name]] == pytest.approx(
            [value for _, value in points], rel=1e-6)  # stored as float32
    assert scalars["loss"][0] == (1, pytest.approx(train_row(1)["loss"]))
    assert scalars["eval/loss"] == [(3, pytest.approx(0.61))]
    assert '"beta": 0.1' in text


def test_mlflow_gets_every_value_at_its_step_and_the_config_as_params(all_three):
    history, params = read_mlflow((all_three / "mlruns").as_uri())
    assert history == {name: sorted(points) for name, points in sent(ROWS).items()}
    assert history["epoch"] == [(1, 0.25), (2, 0.5), (3, 0.75), (3, 0.75)]
    assert history["eval/loss"] == [(3, 0.61)]
    assert params == {"algo": "dpo", "beta": "0.1", "learning_rate": "5e-05",
                      "lora_target_modules": "all-linear", "normalize": "[]",
                      "versions.torch": "2.13.0"}


def test_wandb_puts_the_train_and_eval_rows_of_a_step_in_one_history_row(all_three):
    history, config, name = read_wandb(all_three)
    assert history == per_step(sent(ROWS))
    assert history["loss"][-1] == (3, train_row(3)["loss"])
    assert history["epoch"] == [(1, 0.25), (2, 0.5), (3, 0.75)]
    assert history["eval/loss"] == [(3, 0.61)]
    assert config == CONFIG
    assert name == "run-name"


def test_all_trackers_get_identical_values(all_three):
    tensorboard, _ = read_tensorboard(all_three)
    mlflow, _ = read_mlflow((all_three / "mlruns").as_uri())
    wandb, _, _ = read_wandb(all_three)
    assert per_step(mlflow) == wandb
    assert set(tensorboard) == set(wandb)
    for name, points in per_step(tensorboard).items():
        assert points == [(step, pytest.approx(value, rel=1e-6)) for step, value in wandb[name]]


def test_mlflow_logs_to_the_users_tracking_uri(env, monkeypatch, tmp_path):
    server = (tmp_path / "server").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store of the user's own
    trackers = Trackers.open(["mlflow"], tmp_path / "run", "run-name", CONFIG)
    trackers.log(train_row(1))
    trackers.finish()
    history, _ = read_mlflow(server)
    assert history["loss"] == [(1, train_row(1)["loss"])]
    assert not (tmp_path / "run" / "mlruns").exists()


def test_mlflow_store_of_a_relative_run_dir(env, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    trackers = Trackers.open(["mlflow"], Path("run"), "run-name", CONFIG)
    trackers.log(train_row(2))
    trackers.finish()
    history, _ = read_mlflow((tmp_path / "run" / "mlruns").as_uri())
    assert history["epoch"] == [(2, 0.5)]


def test_mlflow_file_store_refused_by_the_user_is_a_config_error(env, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")  # the user's choice is kept
    with pytest.raises(ConfigError, match="cannot start the mlflow tracker") as caught:
        Trackers.open(["tensorboard", "mlflow"], tmp_path, "run-name", CONFIG)
    assert "MLFLOW_TRACKING_URI" in caught.value.hints[0]


@pytest.mark.parametrize(("name", "module"), [("wandb", "wandb"), ("tensorboard", "tensorboard"),
                                              ("mlflow", "mlflow")])
def test_a_missing_package_is_named_before_training(name, module, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingError) as caught:
        check_available(["tensorboard", "wandb", "mlflow"])
    assert caught.value.exit_code == ExitCode.MISSING
    assert f"the {module} package is not installed" in caught.value.message
    assert f"pip install 'preftune[{name}]'" in caught.value.hints
    with pytest.raises(MissingError):
        Trackers.open([name], tmp_path, "run-name", CONFIG)
    assert not (tmp_path / "tensorboard").exists()


class Broken:
    module = "json"
    hint = ""
    calls = 0

    def __init__(self, setup):
        pass

    def log(self, metrics, step):
        Broken.calls += 1
        raise ConnectionError("server went away")

    def finish(self):
        pass


def test_a_failing_tracker_warns_once_and_the_others_keep_logging(env, monkeypatch, tmp_path):
    monkeypatch.setitem(TRACKERS, "broken", Broken)
    trackers = Trackers.open(["broken", "tensorboard"], tmp_path, "run-name", CONFIG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for row in ROWS:
            trackers.log(row)
    trackers.finish()
    assert Broken.calls == 1
    assert [str(w.message) for w in caught] == [
        "the broken tracker failed at step 1 and gets no more metrics: "
        "ConnectionError: server went away"]
    scalars, _ = read_tensorboard(tmp_path)
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3]


def test_an_unknown_tracker_is_a_value_error_and_starts_nothing(tmp_path):
    with pytest.raises(ValueError, match="unknown tracker 'neptune'"):
        Trackers.open(["tensorboard", "neptune"], tmp_path, "run-name", CONFIG)
    assert not (tmp_path / "tensorboard").exists()


def test_no_trackers_by_default(tmp_path):
    trackers = Trackers.open([], tmp_path, "run-name", CONFIG)
    trackers.log(train_row(1))
    trackers.finish()
    assert list(tmp_path.iterdir()) == []
