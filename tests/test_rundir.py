"""The run directory across a crash: a torn manifest line hides nothing a resumed run writes."""

import json
import shutil

from preftune.config import TrainConfig
from preftune.engine.hooks import RunHooks
from preftune.engine.loop import train
from preftune.fsutil import read_jsonl

OPTIONS = {"epochs": 4, "batch_size": 8, "grad_accum": 1, "learning_rate": 2e-3,
           "warmup_steps": 2, "max_length": 256, "max_prompt_length": 128,
           "logging_steps": 1, "max_steps": 6, "save_steps": 3}


def _tear_last_line(path):
    """Cut the file's last line in half, as a write cut short by a full disk leaves it."""
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[:start + (len(data) - start) // 2])


def test_a_run_resumed_after_torn_manifest_lines_reads_back_every_row(sample_pairs, tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(dataset=str(sample_pairs), output_dir=str(run), **OPTIONS))
    # The crash: after the checkpoint at step 3, step 4's metrics row was being written
    # when the disk filled, and so was the manifest row of the next checkpoint.
    metrics, manifest = run / "metrics.jsonl", run / "checkpoints.jsonl"
    rows = read_jsonl(metrics)
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= 4))
    _tear_last_line(metrics)
    (first, second) = read_jsonl(manifest)
    assert (first["step"], second["step"]) == (3, 6)
    manifest.write_text(json.dumps(first) + "\n" + json.dumps(second)[:30])
    shutil.rmtree(run / second["state_path"])
    shutil.rmtree(run / "final")

    train(None, resume=run)
    steps = [r["step"] for r in read_jsonl(metrics) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # step 4 logged again, then every later row
    assert [r["step"] for r in read_jsonl(manifest)] == [3, 6]
    assert all(line and json.loads(line) for line in metrics.read_text().splitlines())


# ------------------------------------------------------------------------------ status.json


class _FailAt(RunHooks):
    """Hooks that raise while step ``step``'s row is logged, as a tracker that breaks does."""

    def __init__(self, step):
        self.step = step

    def log(self, row):
        if row.get("step") == self.step:
            raise RuntimeError(f"tracker broke at step {self.step}")


def test_a_run_is_marked_running_then_finished(sample_pairs, tmp_path):
    from preftune.rundir import RunDir

    seen = []

    class Watch(RunHooks):
        def log(self, row):
            seen.append(RunDir(tmp_path / "run").status().status)

    train(TrainConfig(dataset=str(sample_pairs), output_dir=str(tmp_path / "run"),
                      **{**OPTIONS, "max_steps": 2}), hooks=Watch())
    assert seen and set(seen) == {"running"}
    assert RunDir(tmp_path / "run").status().status == "finished"


def test_a_run_that_raises_is_marked_failed_with_its_error(sample_pairs, tmp_path):
    import pytest

    from preftune.rundir import RunDir

    with pytest.raises(RuntimeError):
        train(TrainConfig(dataset=str(sample_pairs), output_dir=str(tmp_path / "run"),
                          **OPTIONS), hooks=_FailAt(2))
    status = RunDir(tmp_path / "run").status()
    assert (status.status, status.error) == ("failed", "tracker broke at step 2")


def test_a_run_whose_process_died_is_stopped_and_one_without_status_is_judged(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from preftune.rundir import QUIET_S, RunDir

    run = RunDir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    assert run.status().status == "running"  # no status.json, metrics just written
    old = time.time() - QUIET_S - 5
    os.utime(tmp_path / "metrics.jsonl", (old, old))
    assert run.status().status == "stopped"
    (tmp_path / "final").mkdir()
    assert run.status().status == "finished"

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    run.mark("running")
    record = json.loads((tmp_path / "status.json").read_text())
    record["pid"] = child.pid  # a process that has exited
    (tmp_path / "status.json").write_text(json.dumps(record))
    status = run.status()
    assert status.status == "stopped" and "ended without a word" in status.error
    run.mark("running")  # this process: alive
    assert run.status().status == "running"
