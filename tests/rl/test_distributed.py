"""GRPO on two processes trains as on one: `accelerate launch` with two CPU processes (gloo),
the main one pulling each batch from the trajectory API and every process training on its
share, gives the per-step losses and final weights of one process on the same batches; under
DDP (LoRA and full fine-tuning) and FSDP2 (full fine-tuning, forced onto CPU processes by
fsdp_on_cpu.py)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from preftune.rl.train import build_config, train_grpo

ROOT = Path(__file__).resolve().parents[2]
# Without a GPU, `accelerate launch --num_processes 2` alone starts ONE process; --multi_gpu
# makes it start torchrun, whose workers each train on the CPU over gloo (as
# tests/engine/test_distributed.py does for preference training).
DDP = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
       "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
       "--main_process_port", "0"]
FSDP = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(ROOT / "examples" / "accelerate" / "fsdp.yaml"), "--num_processes", "2",
        "--main_process_port", "0", str(Path(__file__).with_name("fsdp_on_cpu.py"))]
OPTIONS = {"training_steps": 6, "batch_size": 8, "gradient_accumulation_steps": 2,
           "seq_len": 64, "learning_rate": 5e-3, "kl_coef": 0.05, "save_steps": 3,
           "device": "cpu", "batch_timeout_s": 60}
# fp32 on CPU: two processes add a step's gradient in another order than one; 1e-5 leaves
# room for that and no more.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def batches(standin):
    return standin.scored_batches(OPTIONS["training_steps"])


def rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def flags(options):
    out = []
    for key, value in options.items():
        name = key.replace("_", "-")
        out += [f"--{name}" if value else f"--no-{name}"] if isinstance(value, bool) \
            else [f"--{name}", str(value)]
    return out


def launch(command, timeout=600):
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # workers waiting on each other: kill them all
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, err[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("launcher", "lora"), [("ddp", True), ("ddp", False), ("fsdp", False)],
                         ids=["ddp-lora", "ddp-full", "fsdp-full"])
def test_two_processes_match_one(standin, serving, batches, tmp_path, launcher, lora):
    options = {**OPTIONS, "lora": lora}
    with serving(standin.create_standin(batches)) as url:
        one = train_grpo(build_config({**options, "api_url": url,
                                       "output_dir": str(tmp_path / "one")})).path
        two = tmp_path / "two"
        command = [*DDP, "-m", "preftune"] if launcher == "ddp" else FSDP
        out = launch([*command, "rl", "train", *flags(options), "--api-url", url,
                      "--output-dir", str(two)])
    if launcher == "fsdp":
        assert "fsdp units: FSDPCompletionLogps FSDPLlamaDecoderLayer" in out

    expected, got = rows(one), rows(two)
    assert [r["step"] for r in got] == [r["step"] for r in expected] == list(range(1, 7))
    for key in ("loss", "kl", "entropy", "clip_frac", "ratio_mean"):
        worst = max(abs(a[key] - b[key]) for a, b in zip(expected, got, strict=True))
        assert worst < TOLERANCE, (key, worst)
    # The gradient is a sum of terms of both signs (advantages), and its norm a sum over
    # every weight: another order of additions moves it more, by up to 4e-5 of about 2 with
    # FSDP's sharded norm (measured), so the norm is held to a relative 1e-4.
    for a, b in zip(expected, got, strict=True):
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    assert expected[-1]["loss"] != expected[0]["loss"]  # the policy moved: real steps compared
    assert any(r["clip_frac"] > 0 for r in expected)  # the clip acted
    assert all(r["kl"] > 0 for r in expected[1:])  # and the KL term
    assert all(r["sequences"] == 8 for r in got)  # the whole batch, not one process's share

    name = "adapter_model.safetensors" if lora else "model.safetensors"
    want, saved = load_file(one / "final" / name), load_file(two / "final" / name)
    assert set(want) <= set(saved)  # FSDP's gathered weights also name a tied lm_head
    off = sum(int(((want[k] - saved[k]).abs() > TOLERANCE).sum()) for k in want)
    # AdamW moves a weight whose gradient is far below its eps (1e-8) by an amount set by how
    # that gradient rounds: full fine-tuning of the tiny model on random tokens has a few
    # dozen such weights (measured: 60 of 223,552, at most 2.3e-4 apart). The LoRA has none.
    assert off <= (0 if lora else 0.001 * sum(t.numel() for t in want.values())), off
    assert [json.loads(line)["step"] for line in
            (two / "checkpoints.jsonl").read_text().splitlines()] == [3, 6]
    assert (two / "diagnosis.json").exists()
