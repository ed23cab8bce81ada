"""``preftune pipeline`` runs the service path in one process and reproduces ``train``."""

from __future__ import annotations

import json

from preftune.fsutil import read_jsonl
from preftune.service import queue
from preftune.service.db import Database

FLAGS = ["--model", "tiny", "--learning-rate", "2e-3", "--batch-size", "8", "--epochs", "2",
         "grad_accum=1", "max_length=256", "max_prompt_length=128", "logging_steps=1",
         "eval_split=0.125"]
TIMING = {"tokens_per_second", "examples_per_second", "peak_memory_mb"}


def _values(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_pipeline_reproduces_a_direct_train_run(cli, sample_pairs, tmp_path):
    direct = tmp_path / "direct"
    assert cli("train", "--dataset", sample_pairs, "--output-dir", direct, *FLAGS).code == 0
    service = tmp_path / "service"
    result = cli("pipeline", "--dataset", sample_pairs, "--service-dir", service, *FLAGS)
    assert result.code == 0, result.err
    assert "succeeded (exit code 0)" in result.out
    db = Database(f"sqlite:///{service / 'preftune.db'}")
    (job,), _ = queue.list_jobs(db, _tenant(db), limit=10)
    run = service / "jobs" / job.id / "run"
    assert f"run directory: {run}" in result.out.replace("\n", "")
    piped, trained = read_jsonl(run / "metrics.jsonl"), read_jsonl(direct / "metrics.jsonl")
    assert len(piped) == len(trained) == 14 + 1  # 56 pairs: 2 x 7 steps, one eval row
    for a, b in zip(_values(piped), _values(trained), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert abs(a[key] - b[key]) <= 1e-5 * max(1.0, abs(b[key])), (key, a, b)
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["fingerprint"] == json.loads(
        (direct / "config.json").read_text())["data"]["fingerprint"]
    events, _ = queue.list_events(db, None, job.id, limit=100)
    assert sorted(e.data["step"] for e in events if e.type == "metrics") == \
        sorted(r["step"] for r in piped)
    db.dispose()


def _tenant(db):
    from preftune.service.auth import ensure_tenant

    return ensure_tenant(db, "local")


def test_pipeline_exit_codes_mirror_the_job(cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a"}\n', encoding="utf-8")
    result = cli("pipeline", "--dataset", bad, "--service-dir", tmp_path / "s")
    assert result.code == 3
    assert "record 0" in result.err and "failed (exit code 3)" in result.out
    assert cli("pipeline", "--service-dir", tmp_path / "s").code == 2
    assert cli("pipeline", "--dataset", tmp_path / "missing.jsonl",
               "--service-dir", tmp_path / "s").code == 2
    assert cli("pipeline", "--dataset", bad, "nonsense=1",
               "--service-dir", tmp_path / "s").code == 2


def test_a_kto_job_trains_on_unpaired_examples_and_a_mixture_job_on_pairs(cli, sample_pairs,
                                                                          tmp_path):
    from preftune.data.sample import iter_samples

    examples = tmp_path / "kto.jsonl"
    with examples.open("w", encoding="utf-8") as f:
        for i, s in enumerate(iter_samples(16, seed=3)):
            f.write(json.dumps({"prompt": s.prompt, "completion": s.responses[i % 2],
                                "label": i % 2 == 0}) + "\n")
    small = ["--batch-size", "4", "--epochs", "1", "grad_accum=1", "max_length=256",
             "max_prompt_length=128", "logging_steps=1"]
    result = cli("pipeline", "--dataset", examples, "--algo", "kto",
                 "--service-dir", tmp_path / "kto", *small)
    assert result.code == 0, result.err
    run = next((tmp_path / "kto" / "jobs").iterdir()) / "run"
    rows = read_jsonl(run / "metrics.jsonl")
    assert len(rows) == 4 and all("kl" in r for r in rows)
    assert json.loads((run / "config.json").read_text())["config"]["algo"] == "kto"

    result = cli("pipeline", "--dataset", sample_pairs, "--algo", "dpo,bco_pair,sft",
                 "loss_weights=0.8,0.2,1", "max_steps=2", "--service-dir", tmp_path / "mix",
                 *small)
    assert result.code == 0, result.err
    run = next((tmp_path / "mix" / "jobs").iterdir()) / "run"
    rows = read_jsonl(run / "metrics.jsonl")
    assert {"loss/dpo", "loss/bco_pair", "loss/sft"} <= set(rows[-1])
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["algo"] == ["dpo", "bco_pair", "sft"] and config["loss_weights"] == [0.8, 0.2, 1]

    result = cli("pipeline", "--dataset", examples, "--algo", "dpo",
                 "--service-dir", tmp_path / "wrong", *small)
    assert result.code == 3 and "algo=kto" in result.err


def test_the_pipeline_passes_the_users_own_environment_to_training(sample_pairs, tmp_path,
                                                                    monkeypatch):
    """Unlike a server's job, a pipeline job is the user's own: their hub token reaches
    training as under `preftune train` (a served job gets a clean environment)."""
    from preftune.service import worker
    from preftune.service.pipeline import run_pipeline

    seen = {}
    real = worker.subprocess.Popen

    def popen(command, **kwargs):
        if "train" not in command:  # the validation child
            return real(command, **kwargs)
        seen.update(kwargs["env"])
        raise OSError("not started in this test")

    monkeypatch.setenv("HF_TOKEN", "hf_users_own")
    monkeypatch.setattr(worker.subprocess, "Popen", popen)
    result = run_pipeline(tmp_path / "svc", sample_pairs, {"model": "tiny", "max_steps": 1})
    assert result.job.status == "failed" and "not started" in result.job.error["message"]
    assert seen["HF_TOKEN"] == "hf_users_own"
