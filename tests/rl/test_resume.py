"""A GRPO run killed (SIGKILL) after a checkpoint, or stopped by SIGTERM, and resumed takes the
steps an uninterrupted run takes on the same batches: per-step losses within 1e-5."""

import json
import signal
import subprocess
import sys
import time

import pytest

from preftune.rl.train import build_config, train_grpo

OPTIONS = {"training_steps": 12, "batch_size": 8, "gradient_accumulation_steps": 2,
           "seq_len": 64, "learning_rate": 5e-3, "kl_coef": 0.05, "save_steps": 3,
           "device": "cpu", "batch_timeout_s": 60}
FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in OPTIONS.items()]


@pytest.fixture(scope="module")
def batches(standin):
    return standin.scored_batches(OPTIONS["training_steps"], seed=1)


def losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)), steps  # every step logged once
    return {r["step"]: r["loss"] for r in rows}


def wait_for(condition, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "training ended before it could be interrupted"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def checkpoints(run):
    path = run / "checkpoints.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] \
        if path.exists() else []


def interrupt_and_resume(standin, batches, serving, tmp_path, interrupt):
    """Losses of an uninterrupted run, and of a run started as a process, interrupted by
    ``interrupt(process, run)`` and resumed in this one (from the API's step it registers)."""
    with serving(standin.create_standin(batches)) as url:
        train_grpo(build_config({**OPTIONS, "api_url": url,
                                 "output_dir": str(tmp_path / "straight")}))
    run = tmp_path / "run"
    # Each batch comes 0.3 s late: time to interrupt the run between steps.
    with serving(standin.create_standin(batches, delay_s=0.3)) as url:
        process = subprocess.Popen([sys.executable, "-m", "preftune", "rl", "train", *FLAGS,
                                    "--api-url", url, "--output-dir", str(run)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            interrupt(process, run)
        finally:
            process.kill()
            process.communicate()
        interrupted = losses(run)
        assert not (run / "final").exists()
        train_grpo(None, resume=run)
    return run, interrupted, losses(run), losses(tmp_path / "straight")


def assert_same_steps(resumed, expected):
    assert sorted(resumed) == sorted(expected) == list(range(1, 13))
    worst = max(abs(resumed[k] - expected[k]) for k in expected)
    assert worst <= 1e-5, (worst, resumed, expected)
    assert len(set(expected.values())) > 1  # the policy moved: real steps compared


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_equals_an_uninterrupted_run(
        standin, batches, serving, tmp_path):
    def kill(process, run):
        wait_for(lambda: any(s >= 3 for s in checkpoints(run)), process)
        process.kill()
        process.wait()
        assert process.returncode == -signal.SIGKILL

    run, killed, resumed, expected = interrupt_and_resume(standin, batches, serving, tmp_path,
                                                          kill)
    assert 3 <= max(killed) < 12
    assert_same_steps(resumed, expected)
    assert checkpoints(run)[-1] == 12
    assert (run / "final" / "adapter_model.safetensors").exists()
    assert (run / "diagnosis.json").exists()


@pytest.mark.slow
def test_sigterm_checkpoints_the_step_then_resume_equals_an_uninterrupted_run(
        standin, batches, serving, tmp_path):
    def terminate(process, run):
        wait_for(lambda: (run / "metrics.jsonl").exists() and len(losses(run)) >= 4, process)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 143, err[-2000:]  # StoppedError's exit code
        assert "stopped by SIGTERM after step" in err
        assert checkpoints(run)[-1] == max(losses(run))  # the step it stopped after is saved

    _, stopped, resumed, expected = interrupt_and_resume(standin, batches, serving, tmp_path,
                                                         terminate)
    assert 4 <= max(stopped) < 12
    assert_same_steps(resumed, expected)
