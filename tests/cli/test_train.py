import json

import pytest

SMALL = ["--batch-size", "8", "grad_accum=1", "--learning-rate", "2e-3", "max_length=256",
         "max_prompt_length=128"]


def test_train_prints_a_summary_and_writes_the_run(cli, sample_pairs, tmp_path):
    run = tmp_path / "run"
    result = cli("train", "--dataset", sample_pairs, "--output-dir", run, "--epochs", 2,
                 "eval_split=0.25", "logging_steps=2", *SMALL)
    assert result.code == 0, result.err
    assert "data: " in result.out and "48 pairs" in result.out
    assert "reference log-probs for 48 pairs" in result.out
    assert "done: 12 steps" in result.out
    assert "eval/accuracy" in result.out
    assert f"run directory: {run}" in result.out
    assert (run / "final").is_dir() and (run / "metrics.jsonl").exists()
    # the runs layer's artifacts, which the service's training processes leave too
    assert "diagnosis: " in result.out and (run / "diagnosis.json").exists()
    assert (run / "plots" / "loss.png").exists()


def test_aliases_flags_yaml_and_overrides_combine(cli, sample_pairs, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model_name: tiny\ndataset: {sample_pairs}\ndpo_beta: 0.3\n"
                   "num_train_epochs: 1\n")
    run = tmp_path / "run"
    result = cli("train", "--config", cfg, "--beta", 0.2, "log_path=" + str(run),
                 "n_examples=16", *SMALL)
    assert result.code == 0, result.err
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["beta"] == 0.2 and saved["epochs"] == 1 and saved["n_examples"] == 16
    assert json.loads((run / "config.json").read_text())["data"]["train"]["pairs"] == 16


def test_dry_run_trains_nothing(cli, sample_pairs, tmp_path):
    result = cli("train", "--dataset", sample_pairs, "--output-dir", tmp_path / "run",
                 "--dry-run", *SMALL)
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["data"]["train"]["pairs"] == 64
    assert plan["model"]["architecture"] == "LlamaForCausalLM"
    assert 0 < plan["model"]["trainable_parameters"] < plan["model"]["parameters"]
    assert plan["steps"] == {"per_epoch": 8, "total": 24, "pairs_per_step": 8}
    assert plan["memory_estimate_mb"]["total"] > 0
    assert not (tmp_path / "run").exists()


def test_default_run_directory_name(cli, sample_pairs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("train", "--dataset", sample_pairs, "max_steps=1", "--beta", 0.2, *SMALL)
    assert result.code == 0, result.err
    (run,) = (tmp_path / "experiments").iterdir()
    assert run.name.startswith("pairs_tiny_lr0.002_beta0.2_")
    again = cli("train", "--dataset", sample_pairs, "max_steps=1", "--beta", 0.2, *SMALL)
    assert again.code == 0
    assert sorted(p.name for p in (tmp_path / "experiments").iterdir())[1].endswith("_2")


def test_unknown_model_exits_4(cli, sample_pairs, tmp_path):
    result = cli("train", "--dataset", sample_pairs, "--model", "custom-model",
                 "--output-dir", tmp_path / "r")
    assert result.code == 4
    assert "error: unknown model 'custom-model'" in result.err
    assert "hint: aliases: tiny, gpt2" in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "r").exists()


def test_invalid_config_exits_2(cli, sample_pairs):
    result = cli("train", "--dataset", sample_pairs, "--learning-rate", -1)
    assert result.code == 2
    assert "learning_rate='-1.0'" in result.err  # as learning_rate=-1 would say
    result = cli("train", "--dataset", sample_pairs, "--algo", "ppo")
    assert result.code == 2 and "algo='ppo'" in result.err


def test_invalid_data_exits_3_before_any_model_loads(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "Hi", "responses": ["a", "b"]}], indent=2))
    result = cli("train", "--dataset", bad, "--output-dir", tmp_path / "r")
    assert result.code == 3
    assert "bad.json:2: record 0: missing required field 'pairs'" in result.err
    assert not (tmp_path / "r").exists()


def test_prompt_longer_than_max_length_exits_3(cli, tmp_path):
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"prompt": "word " * 200, "chosen": "yes", "rejected": "no"})
                    + "\n")
    result = cli("train", "--dataset", data, "--output-dir", tmp_path / "r",
                 "max_length=64", "max_prompt_length=32")
    assert result.code == 3
    assert "longer than max_length" in result.err
    assert "record 0: prompt is" in result.err


def test_resume_needs_a_run_directory(cli, tmp_path):
    result = cli("train", "--resume", tmp_path)
    assert result.code == 2
    assert "is not a run directory" in result.err


def test_eval_split_and_save_total_limit_flags(cli, sample_pairs, tmp_path):
    run = tmp_path / "run"
    result = cli("train", "--dataset", sample_pairs, "--output-dir", run, "--eval-split", 0.25,
                 "--save-total-limit", 1, "--epochs", 2, *SMALL)
    assert result.code == 0, result.err
    assert "eval: 16 pairs" in result.out
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-12"]


@pytest.mark.parametrize(("launched", "warned"), [
    ({"ACCELERATE_MIXED_PRECISION": "no", "MASTER_PORT": "29500"}, True),  # asked for several
    ({"ACCELERATE_MIXED_PRECISION": "no"}, False),  # asked for one
    ({"ACCELERATE_MIXED_PRECISION": "no", "MASTER_PORT": "29500", "RANK": "0"}, False),  # torchrun
])
def test_a_lone_process_of_accelerate_launch_is_told_how_to_start_several(
        cli, sample_pairs, tmp_path, monkeypatch, launched, warned):
    for name in ("ACCELERATE_MIXED_PRECISION", "MASTER_PORT", "RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in launched.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("preftune.engine.loop.train", lambda *args, **kwargs: None)
    result = cli("train", "--dataset", sample_pairs, "--output-dir", tmp_path / "run")
    assert result.code == 0, result.err
    assert ("add --multi_gpu" in result.err) == warned
