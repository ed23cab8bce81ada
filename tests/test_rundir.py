"""The run directory across a crash: a torn manifest line hides nothing a resumed run writes."""

import json
import shutil

from preftune.config import TrainConfig
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
