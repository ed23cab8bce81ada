"""SIGTERM during training: a checkpoint at the current step, exit 143, and a run that
resumes from it; a training process whose worker disappears kills itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from preftune.fsutil import read_jsonl

ARGS = ["--learning-rate", "2e-3", "--batch-size", "2", "grad_accum=1", "max_length=256",
        "max_prompt_length=128", "logging_steps=1", "max_steps=40", "warmup_steps=2"]


def _wait_for_rows(path, n, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if len(read_jsonl(path)) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {n} rows in {path} after {timeout} s")


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(sample_pairs, tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "preftune", "train", "--dataset", str(sample_pairs),
         "--output-dir", str(run), *ARGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    _wait_for_rows(run / "metrics.jsonl", 3, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    (row,) = read_jsonl(run / "checkpoints.jsonl")
    steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl")]
    assert row["step"] == steps[-1] >= 3
    assert "stopped by SIGTERM" in err and f"--resume {run}" in err
    resumed = subprocess.run([sys.executable, "-m", "preftune", "train", "--resume", str(run)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl")]
    assert steps == list(range(1, 41))
    assert (run / "final").is_dir()


def test_training_stops_when_its_worker_is_gone(sample_pairs, tmp_path):
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "preftune", "train", "--dataset", str(sample_pairs),
         "--output-dir", str(run), *ARGS], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "PREFTUNE_WORKER_PID": str(stand_in.pid)})
    try:
        _wait_for_rows(run / "metrics.jsonl", 1, process)
        stand_in.kill()
        stand_in.wait()
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        stand_in.kill()
        process.kill()
