"""Two processes train exactly as one process with the same batch: DDP under `accelerate
launch` (gloo on CPU), and FSDP2 forced onto CPU processes (fsdp_on_cpu.py)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--batch-size", "4", "grad_accum=2", "--learning-rate", "2e-3", "--epochs", "2",
        "max_length=256", "max_prompt_length=128", "logging_steps=2", "lora_dropout=0"]
# fp32 on CPU: two processes add the step's gradient in a different order than one, which
# moves losses and weights by about 1e-6 after 16 steps (measured); 1e-5 leaves room.
TOLERANCE = 1e-5

# Without a GPU, `accelerate launch --num_processes 2` alone starts ONE process (its simple
# launcher); --multi_gpu makes it start torchrun, whose workers each train on the CPU over
# gloo. The other flags only silence accelerate's "defaults used" warning; port 0 is any free
# port; --tee 3 --log_dir keep each worker's output in <log_dir>/<run>/attempt_0/<rank>/.
# The launcher runs as a module: no reliance on its console script being on PATH.
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
DDP = [*ACCELERATE, "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
       "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
FSDP = [*ACCELERATE, "--config_file", str(ROOT / "examples" / "accelerate" / "fsdp.yaml"),
        "--num_processes", "2", "--main_process_port", "0"]


def _train_args(data, lora, run):
    return ["train", "--dataset", str(data), *ARGS, f"lora={lora}", "--output-dir", str(run)]


def _launch(command, logs):
    """Run an accelerate ``command`` keeping each worker's output; those outputs, by rank."""
    command = [*command[:3], "--tee", "3", "--log_dir", str(logs), *command[3:]]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:  # processes waiting on each other: kill the workers too
        os.killpg(process.pid, signal.SIGKILL)
        raise
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command, out, err)
    return {p.parent.name: p.read_text() for p in logs.rglob("stdout.log")}


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_trains_as(run, single, lora):
    one, two = _losses(single), _losses(run)
    assert len(one) == len(two) == 8
    assert max(abs(a - b) for a, b in zip(one, two, strict=True)) < TOLERANCE
    name = "adapter_model.safetensors" if lora == "true" else "model.safetensors"
    expected, saved = load_file(single / "final" / name), load_file(run / "final" / name)
    assert set(expected) <= set(saved)  # FSDP's gathered weights also name a tied lm_head
    assert max((expected[k] - saved[k]).abs().max().item() for k in expected) < TOLERANCE


@pytest.fixture(scope="module")
def single(sample_pairs, tmp_path_factory):
    """One-process runs, LoRA and full fine-tuning: what two processes must reproduce."""
    root = tmp_path_factory.mktemp("single")
    for lora in ("true", "false"):
        subprocess.run([sys.executable, "-m", "preftune",
                        *_train_args(sample_pairs, lora, root / lora)],
                       check=True, capture_output=True)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("lora", ["true", "false"], ids=["lora", "full"])
def test_two_ddp_processes_match_one(single, sample_pairs, tmp_path, lora):
    run = tmp_path / "run"
    outputs = _launch([*DDP, "-m", "preftune", *_train_args(sample_pairs, lora, run)],
                      tmp_path / "logs")
    assert sorted(outputs) == ["0", "1"]
    _assert_trains_as(run, single / lora, lora)


@pytest.mark.slow
@pytest.mark.parametrize("lora", ["true", "false"], ids=["lora", "full"])
def test_two_fsdp_processes_match_one(single, sample_pairs, tmp_path, lora):
    run = tmp_path / "run"
    script = Path(__file__).with_name("fsdp_on_cpu.py")
    outputs = _launch([*FSDP, str(script), *_train_args(sample_pairs, lora, run)],
                      tmp_path / "logs")
    assert sorted(outputs) == ["0", "1"]
    # FSDP2 names a sharded module's class FSDP<class>: the root and each decoder layer.
    assert "fsdp units: FSDPResponseLogps FSDPLlamaDecoderLayer FSDPLlamaDecoderLayer" in (
        outputs["0"])
    _assert_trains_as(run, single / lora, lora)
