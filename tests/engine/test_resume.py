"""A run killed with SIGKILL mid-training and resumed takes exactly the uninterrupted steps."""

import json
import os
import signal
import subprocess
import sys
import time

from preftune.config import TrainConfig
from preftune.engine.loop import train

OPTIONS = {"epochs": 4, "batch_size": 8, "grad_accum": 1, "learning_rate": 2e-3,
           "warmup_steps": 2, "max_length": 256, "max_prompt_length": 128,
           "logging_steps": 1, "save_steps": 4, "lora_dropout": 0.1}


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _wait_for_checkpoint(run, step, process, timeout=120.0):
    manifest = run / "checkpoints.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if manifest.exists() and any(json.loads(line)["step"] >= step
                                     for line in manifest.read_text().splitlines() if line):
            return
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at step {step} within {timeout} s")


def test_sigkill_then_resume_equals_an_uninterrupted_run(sample_pairs, tmp_path):
    straight = tmp_path / "straight"
    train(TrainConfig(**OPTIONS, dataset=str(sample_pairs), output_dir=str(straight)))
    expected = _losses(straight)
    assert sorted(expected) == list(range(1, 33))

    killed = tmp_path / "killed"
    overrides = [f"{k}={v}" for k, v in OPTIONS.items()]
    process = subprocess.Popen(
        [sys.executable, "-m", "preftune", "train", "--dataset", str(sample_pairs),
         "--output-dir", str(killed), *overrides],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_checkpoint(killed, 12, process)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "final").exists()
    done_before = max(_losses(killed))
    assert 12 <= done_before < 32

    result = train(None, resume=killed)
    assert result.steps == 32
    resumed = _losses(killed)
    assert sorted(resumed) == list(range(1, 33))  # every step logged exactly once
    for step in range(1, 33):
        assert abs(resumed[step] - expected[step]) <= 1e-5, (step, resumed[step],
                                                              expected[step])
    assert (killed / "final" / "adapter_model.safetensors").exists()


def test_a_run_killed_after_its_last_checkpoint_resumes_to_its_final_model(sample_pairs,
                                                                            tmp_path):
    """The last checkpoint is at max_steps but final/ was never written: resuming takes no
    step beyond max_steps, and writes final/."""
    import shutil

    run = tmp_path / "run"
    train(TrainConfig(dataset=str(sample_pairs), output_dir=str(run),
                      **{**OPTIONS, "max_steps": 6, "save_steps": 3}))
    shutil.rmtree(run / "final")
    train(None, resume=run)
    assert sorted(_losses(run)) == [1, 2, 3, 4, 5, 6]
    assert (run / "final" / "adapter_config.json").exists()
