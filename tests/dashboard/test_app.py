"""The dashboard's JSON API over real run directories: what the pages show comes from here."""

import json
import math

import pytest
from fastapi.testclient import TestClient

from preftune.dashboard.app import create_app
from preftune.rundir import RunDir


@pytest.fixture(scope="module")
def client(experiments):
    return TestClient(create_app([experiments]))


def _files(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_the_runs_list_has_status_algorithm_model_params_metrics_and_verdict(client):
    body = client.get("/api/runs").json()
    runs = {r["id"]: r for r in body["runs"]}
    assert set(runs) == {"good", "weak", "broken", "sweep-lr/runs/a", "sweep-lr/runs/b"}
    assert {k: runs[k]["status"] for k in ("good", "weak", "broken")} == {
        "good": "finished", "weak": "finished", "broken": "failed"}
    assert runs["broken"]["error"] == "the tracker broke at step 3"
    assert runs["broken"]["step"] == 3  # the row the failing hook was handed
    good = runs["good"]
    assert (good["algo"], good["model"], good["kind"]) == ("dpo", "tiny", "preference")
    assert good["params"]["learning_rate"] == 2e-3 and good["params"]["epochs"] == 2
    assert good["step"] == 12 and good["last"]["eval/accuracy"] is not None
    assert good["verdict"] is not None and good["summary"]
    assert body["sweeps"] == [{"id": "sweep-lr", "name": "sweep-lr",
                               "runs": ["sweep-lr/runs/a", "sweep-lr/runs/b"]}]
    assert runs["sweep-lr/runs/a"]["sweep"] == "sweep-lr" and runs["good"]["sweep"] is None


def test_a_run_page_has_diagnosis_with_advice_checkpoints_config_and_card(client, experiments):
    run = client.get("/api/run", params={"id": "good"}).json()
    written = json.loads((experiments / "good" / "diagnosis.json").read_text()) \
        if (experiments / "good" / "diagnosis.json").exists() else None
    assert run["diagnosis"]["verdict"] and "findings" in run["diagnosis"]
    if written is not None:
        assert run["diagnosis"] == written
    assert [c["step"] for c in run["checkpoints"]] == [4, 6, 8, 12]
    assert run["config"]["config"]["learning_rate"] == 2e-3 and run["has_final"]
    assert run["card"].startswith("---") and "# good" in run["card"]
    broken = client.get("/api/run", params={"id": "broken"}).json()
    assert broken["has_final"] is False and broken["card"] is None


def test_metrics_come_incrementally_and_a_shorter_file_resets(client, experiments):
    rows = RunDir(experiments / "good").metrics()
    first = client.get("/api/metrics", params={"id": "good"}).json()
    assert first["rows"] == rows and first["next"] == len(rows) and not first["reset"]
    again = client.get("/api/metrics", params={"id": "good", "after": len(rows)}).json()
    assert again["rows"] == [] and again["status"] == "finished"
    tail = client.get("/api/metrics", params={"id": "good", "after": len(rows) - 2}).json()
    assert tail["rows"] == rows[-2:]
    # A resumed run truncates metrics.jsonl to its checkpoint: the page starts over.
    reset = client.get("/api/metrics", params={"id": "good", "after": len(rows) + 5}).json()
    assert reset["reset"] and reset["rows"] == rows


@pytest.mark.parametrize("bad", ["nope", "../good", "good/..", "/etc", "good/final"])
def test_an_unknown_run_is_404_naming_it(client, bad):
    response = client.get("/api/run", params={"id": bad})
    assert response.status_code == 404
    assert bad in response.json()["error"]["message"]


def test_compare_ranks_the_runs_and_marks_the_best(client):
    body = client.get("/api/compare", params=[("id", "weak"), ("id", "good")]).json()
    assert body["best_id"] == "good" and body["runs"][0]["id"] == "good"
    good, weak = body["runs"]
    assert good["final"]["eval/loss"] < weak["final"]["eval/loss"]
    assert body["sentence"].startswith("best by eval/accuracy: good")
    assert body["table"]["headers"][:2] == ["run", "learning_rate"]
    assert [r[0] for r in body["table"]["rows"]] == ["good", "weak"]
    by_loss = client.get("/api/compare", params=[("id", "weak"), ("id", "good"),
                                                 ("metric", "eval/loss")]).json()
    assert by_loss["best_id"] == "good" and by_loss["higher_is_better"] is False
    one = client.get("/api/compare", params=[("id", "good")])
    assert one.status_code == 400 and "two runs" in one.json()["error"]["message"]


def test_chat_answers_with_the_run_and_with_its_base(client):
    ask = {"id": "good", "messages": [{"role": "user", "content": "Say hello."}],
           "max_tokens": 8, "temperature": 0, "seed": 1}
    tuned = client.post("/api/chat", json=ask)
    base = client.post("/api/chat", json={**ask, "base": True})
    assert tuned.status_code == base.status_code == 200
    assert tuned.json()["model"] == "good (final)" and base.json()["model"] == "tiny"
    assert isinstance(tuned.json()["text"], str) and isinstance(base.json()["text"], str)
    checkpoint = client.post("/api/chat", json={**ask, "checkpoint": "step-4"})
    assert checkpoint.status_code == 200 and checkpoint.json()["model"] == "good (step-4)"
    missing = client.post("/api/chat", json={**ask, "checkpoint": "step-99"})
    assert missing.status_code == 400 and "step-99" in missing.json()["error"]["message"]


def test_the_dashboard_writes_nothing_into_run_directories(client, experiments):
    before = _files(experiments)
    for run_id in ("good", "weak", "broken", "sweep-lr/runs/a"):
        client.get("/api/run", params={"id": run_id})
        client.get("/api/metrics", params={"id": run_id})
    client.get("/api/runs")
    client.get("/api/compare", params=[("id", "weak"), ("id", "good")])
    assert _files(experiments) == before


def test_a_running_run_is_diagnosed_live_and_nan_is_sent_as_null(tmp_path):
    run = RunDir(tmp_path / "live")
    run.path.mkdir()
    run.write_config({"config": {"model": "tiny", "algo": "dpo", "beta": 0.1}})
    for step in range(1, 31):
        run.log({"step": step, "loss": 0.69 - 0.01 * step, "accuracy": 0.6})
    run.log({"step": 31, "loss": math.nan, "accuracy": 0.6})
    run.mark("running")
    client = TestClient(create_app([tmp_path]))
    listed = client.get("/api/runs").json()["runs"][0]
    assert listed["status"] == "running" and listed["verdict"] == "nan"
    assert not (run.path / "diagnosis.json").exists()
    rows = client.get("/api/metrics", params={"id": "live"}).json()["rows"]
    assert rows[-1]["loss"] is None and len(rows) == 31


def test_pages_and_assets_are_served_from_the_package(client):
    for path in ("/", "/run?id=good", "/compare?id=good&id=weak", "/chat"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/static/common.css" in page.text
    for asset in ("/static/chart.js", "/static/util.js", "/static/curves.js",
                  "/static/local/run.js", "/static/common.css"):
        assert client.get(asset).status_code == 200
    assert "http://" not in client.get("/static/chart.js").text.replace(
        "http://www.w3.org/2000/svg", "")


def test_a_grpo_run_is_summarised_and_diagnosed_by_grpos_rules(tmp_path):
    from preftune.runs.diagnose_rl import diagnose_grpo

    run = RunDir(tmp_path / "grpo")
    run.path.mkdir()
    config = {"model_name": "tiny", "group_size": 4, "learning_rate": 1e-5}
    run.write_config({"config": config, "kind": "grpo"})
    rows = [{"step": s, "loss": 0.0, "mean_reward": 0.5, "reward_std": 0.3, "kl": 0.001,
             "entropy": 2.0, "clip_frac": 0.0, "ratio_mean": 1.0, "zero_advantage_frac": 0.0}
            for s in range(1, 61)]
    for row in rows:
        run.log(row)
    run.mark("running")
    listed = TestClient(create_app([tmp_path])).get("/api/runs").json()["runs"][0]
    expected = diagnose_grpo(rows, config)
    assert (listed["kind"], listed["algo"], listed["model"]) == ("grpo", "grpo", "tiny")
    assert listed["params"] == {"learning_rate": 1e-5, "group_size": 4}
    assert listed["last"]["reward"] == 0.5
    assert (listed["verdict"], listed["summary"]) == (expected.verdict, expected.summary)
    assert expected.verdict == "reward_flat"  # a GRPO rule: the preference rules lack it
