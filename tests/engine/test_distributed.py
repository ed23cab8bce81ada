"""Two processes (torchrun, gloo on CPU) train exactly as one process with the same batch."""

import json
import subprocess
import sys

import pytest

ARGS = ["--batch-size", "4", "grad_accum=2", "--learning-rate", "2e-3", "--epochs", "2",
        "max_length=256", "max_prompt_length=128", "logging_steps=2", "lora_dropout=0"]


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_match_one(sample_pairs, tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    common = ["train", "--dataset", str(sample_pairs), *ARGS]
    subprocess.run([sys.executable, "-m", "preftune", *common, "--output-dir", str(single)],
                   check=True, capture_output=True)
    # torchrun's launcher as a module: no reliance on its console script being on PATH.
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "-m", "preftune", *common,
                    "--output-dir", str(double)], check=True, capture_output=True)
    one, two = _losses(single), _losses(double)
    assert len(one) == len(two) == 8
    assert max(abs(a - b) for a, b in zip(one, two, strict=True)) < 1e-5
    assert (double / "final" / "adapter_model.safetensors").exists()
