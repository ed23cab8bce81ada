"""The API the browser pages read: a file's validation report, the new-job form's options, a
job's dry-run estimate and its metrics rows; each scoped to the calling tenant."""

import json
import time

import pytest

from preftune.fsutil import append_jsonl
from preftune.service.app import create_app
from preftune.service.limits import Limits, ServiceConfig

PAIRS = "".join(json.dumps({"prompt": f"question {i}?", "chosen": f"a good answer {i}",
                            "rejected": f"bad {i}"}) + "\n" for i in range(6)).encode()
# Record 1 (line 2) has a number for chosen; record 2 (line 3) lacks rejected.
BAD = (b'{"prompt": "q0", "chosen": "yes", "rejected": "no"}\n'
       b'{"prompt": "q1", "chosen": 42, "rejected": "no"}\n'
       b'{"prompt": "q2", "chosen": "yes"}\n')
SMALL = {"grad_accum": 1, "max_steps": 2, "max_length": 128, "max_prompt_length": 64}


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def upload(client, key, data, name="pairs.jsonl"):
    r = client.post("/v1/files", headers=auth(key), data={"purpose": "fine-tune"},
                    files={"file": (name, data)})
    assert r.status_code == 200, r.text
    return r.json()["id"]


# ------------------------------------------------------------------------------- report


def test_report_locates_every_problem_by_record_line_and_field(client, keys, store):
    file_id = upload(client, keys.alice, BAD, "mine.jsonl")
    r = client.get(f"/v1/files/{file_id}/report", headers=auth(keys.alice))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["object"] == "file.report" and report["file_id"] == file_id
    assert report["valid"] is False and report["records"] == 3
    assert report["problem_count"] == 2 == report["problems_shown"]
    where = [(p["record"], p["line"], p.get("field")) for p in report["problems"]]
    assert where == [(1, 2, "chosen"), (2, 3, "rejected")]
    # The server's storage path never reaches the tenant: its file name does.
    text = json.dumps(report)
    assert str(store.root) not in text
    assert report["problems"][0]["text"].startswith("mine.jsonl:2")


def test_report_of_a_good_file_has_counts_and_lengths_and_is_kept(client, keys, store):
    file_id = upload(client, keys.alice, PAIRS)
    first = client.get(f"/v1/files/{file_id}/report", headers=auth(keys.alice))
    assert first.status_code == 200, first.text
    report = first.json()
    assert report["valid"] is True and report["problems"] == []
    assert (report["records"], report["pairs"], report["format"]) == (6, 6, "flat")
    assert report["chars"]["rejected"]["min"] == len("bad 0")
    assert report["chars"]["chosen"]["max"] == len("a good answer 5")
    start = time.perf_counter()
    again = client.get(f"/v1/files/{file_id}/report", headers=auth(keys.alice))
    assert time.perf_counter() - start < 0.5  # kept: no child process this time
    assert again.json() == report
    assert client.delete(f"/v1/files/{file_id}", headers=auth(keys.alice)).status_code == 200
    assert not (store.root / "reports" / f"{file_id}.json").exists()


def test_report_is_the_tenants_own(client, keys):
    file_id = upload(client, keys.alice, PAIRS)
    r = client.get(f"/v1/files/{file_id}/report", headers=auth(keys.bob))
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert client.get(f"/v1/files/{file_id}/report").status_code == 401


def test_report_over_the_memory_limit_says_so(db, store, keys):
    from fastapi.testclient import TestClient

    # 64 MiB of data memory is less than importing the data layer takes.
    config = ServiceConfig(limits=Limits(validation_memory_mb=64))
    client = TestClient(create_app(db, store, config=config))
    file_id = upload(client, keys.alice, PAIRS)
    r = client.get(f"/v1/files/{file_id}/report", headers=auth(keys.alice))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["valid"] is False
    assert report["error"]["code"] == "validation_memory_exceeded"
    assert "validation_memory_mb=64" in report["problems"][0]["message"]


def test_report_waits_for_a_free_child_then_says_busy(client, keys, monkeypatch):
    import threading

    from preftune.service import validation

    taken = threading.BoundedSemaphore(1)
    taken.acquire()  # as if every child the API may run were reading another file
    monkeypatch.setattr(validation, "_api_children", taken)
    monkeypatch.setattr(validation, "API_WAIT_S", 0.1)
    file_id = upload(client, keys.alice, PAIRS)
    r = client.get(f"/v1/files/{file_id}/report", headers=auth(keys.alice))
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "server_busy"
    assert "retry" in r.json()["error"]["message"]


# ------------------------------------------------------------------------------ options


def test_options_list_models_methods_presets_and_bounded_hyperparameters(db, store, keys):
    from fastapi.testclient import TestClient

    config = ServiceConfig(limits=Limits(max_epochs=4, max_batch_size=8),
                           tenants={"team-b": {"models": ["*"]}})
    client = TestClient(create_app(db, store, config=config))
    r = client.get("/v1/fine_tuning/options", headers=auth(keys.alice))
    assert r.status_code == 200, r.text
    options = r.json()
    assert options["models"]["allowed"] == ["tiny"]
    assert options["models"]["unrestricted"] is False
    methods = {m["type"]: m for m in options["methods"]}
    assert {"dpo", "ipo", "simpo", "orpo", "kto", "sft"} <= set(methods)
    beta = next(h for h in methods["dpo"]["hyperparameters"] if h["name"] == "beta")
    assert (beta["default"], beta["minimum"], beta["exclusive_minimum"]) == (0.1, 0.0, True)
    smoothing = next(h for h in methods["cdpo"]["hyperparameters"]
                     if h["name"] == "label_smoothing")
    assert smoothing["default"] == 0.1 and smoothing["maximum"] == 0.5  # cdpo's own default
    presets = {p["name"]: p for p in options["presets"]}
    assert presets["balanced"]["default"] and presets["quick"]["values"]["epochs"] == 1
    fields = {h["name"]: h for h in options["hyperparameters"]}
    assert fields["epochs"] == {**fields["epochs"], "type": "integer", "default": 3,
                                "minimum": 1.0, "maximum": 4.0, "limit": "max_epochs"}
    assert fields["batch_size"]["maximum"] == 8.0
    assert fields["learning_rate"]["exclusive_maximum"] is True
    assert fields["lr_scheduler"]["choices"] == ["linear", "cosine", "constant"]
    assert fields["max_steps"]["nullable"] is True
    assert options["limits"]["max_epochs"] == 4
    assert options["quota"]["usage"] == {"running": 0, "queued": 0, "files": 0,
                                         "stored_bytes": 0}

    b = client.get("/v1/fine_tuning/options", headers=auth(keys.bob)).json()
    assert b["models"]["unrestricted"] is True
    assert {"tiny", "gpt2", "qwen2.5-0.5b"} <= set(b["models"]["allowed"])


# ----------------------------------------------------------------------------- estimate


def test_estimate_plans_steps_and_memory_without_creating_a_job(client, keys):
    file_id = upload(client, keys.alice, PAIRS, "mine.jsonl")
    body = {"model": "tiny", "training_file": file_id, "config": {**SMALL, "max_steps": None},
            "method": {"type": "dpo", "dpo": {"hyperparameters": {"batch_size": 2,
                                                                  "n_epochs": 2}}}}
    r = client.post("/v1/fine_tuning/jobs/estimate", json=body, headers=auth(keys.alice))
    assert r.status_code == 200, r.text
    estimate = r.json()
    assert estimate["examples_per_epoch"] == 6 and estimate["within_limits"] is True
    plan = estimate["plan"]
    assert plan["steps"] == {"per_epoch": 3, "total": 6, "pairs_per_step": 2}
    assert plan["data"]["train"]["pairs"] == 6
    assert plan["model"]["source"] == "tiny" and plan["model"]["parameters"] > 0
    assert plan["memory_estimate_mb"]["total"] > 0
    assert plan["data"]["source"] == "mine.jsonl"
    jobs = client.get("/v1/fine_tuning/jobs", headers=auth(keys.alice)).json()
    assert jobs["data"] == []


def test_estimate_refuses_what_create_refuses(client, keys):
    file_id = upload(client, keys.alice, PAIRS)
    r = client.post("/v1/fine_tuning/jobs/estimate", headers=auth(keys.alice), json={
        "model": "tiny", "training_file": file_id,
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": -1}}}})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "method.dpo.hyperparameters.beta"
    r = client.post("/v1/fine_tuning/jobs/estimate", headers=auth(keys.alice),
                    json={"model": "gpt2", "training_file": file_id})
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_allowed"
    r = client.post("/v1/fine_tuning/jobs/estimate", headers=auth(keys.bob),
                    json={"model": "tiny", "training_file": file_id})
    assert r.status_code == 400 and r.json()["error"]["param"] == "training_file"


def test_estimate_of_a_bad_file_names_the_file_and_its_records(client, keys, store):
    file_id = upload(client, keys.alice, BAD, "bad.jsonl")
    r = client.post("/v1/fine_tuning/jobs/estimate", headers=auth(keys.alice),
                    json={"model": "tiny", "training_file": file_id, "config": SMALL})
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_training_file", "training_file")
    assert "bad.jsonl:2: record 1" in error["message"]
    assert str(store.root) not in error["message"]


def test_estimate_over_a_plan_limit_says_which(db, store, keys):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(db, store, config=ServiceConfig(limits=Limits(
        max_examples=5))))
    file_id = upload(client, keys.alice, PAIRS)
    r = client.post("/v1/fine_tuning/jobs/estimate", headers=auth(keys.alice), json={
        "model": "tiny", "training_file": file_id, "config": {**SMALL, "max_steps": None,
                                                              "epochs": 1}})
    assert r.status_code == 200, r.text
    assert r.json()["within_limits"] is False
    assert r.json()["limit_error"]["code"] == "limit_exceeded"
    assert "max_examples=5" in r.json()["limit_error"]["message"]


# ------------------------------------------------------------------------------ metrics


@pytest.fixture
def job_id(client, keys):
    file_id = upload(client, keys.alice, PAIRS)
    r = client.post("/v1/fine_tuning/jobs", headers=auth(keys.alice),
                    json={"model": "tiny", "training_file": file_id, "config": SMALL})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_metrics_are_read_from_an_offset(client, keys, store, job_id):
    url = f"/v1/fine_tuning/jobs/{job_id}/metrics"
    empty = client.get(url, headers=auth(keys.alice)).json()
    assert empty == {"object": "list", "data": [], "next_offset": 0, "next_eval_offset": 0,
                     "has_more": False}
    run = store.run_dir(job_id)
    run.mkdir(parents=True)
    for step in (1, 2, 3):
        append_jsonl(run / "metrics.jsonl", {"step": step, "loss": 0.7 - step / 10})
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "lo')  # being written: not a row yet
    page = client.get(url, params={"limit": 2}, headers=auth(keys.alice)).json()
    assert [r["step"] for r in page["data"]] == [1, 2]
    assert (page["next_offset"], page["has_more"]) == (2, True)
    rest = client.get(url, params={"offset": 2}, headers=auth(keys.alice)).json()
    assert [r["step"] for r in rest["data"]] == [3] and rest["next_offset"] == 3
    with (run / "metrics.jsonl").open("a") as f:
        f.write('ss": 0.2}\n')
    more = client.get(url, params={"offset": 3}, headers=auth(keys.alice)).json()
    assert more["data"] == [{"step": 4, "loss": 0.2}]


def test_a_reinforcement_jobs_eval_rewards_come_after_its_training_rows(client, keys, store):
    rft = {"messages": [{"role": "user", "content": "2 + 2?"}], "answer": "4"}
    file_id = upload(client, keys.alice, json.dumps(rft) + "\n", name="rft.jsonl")
    grader = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "operation": "eq"}
    r = client.post("/v1/fine_tuning/jobs", headers=auth(keys.alice), json={
        "model": "tiny", "training_file": file_id,
        "method": {"type": "reinforcement", "reinforcement": {"grader": grader}}})
    assert r.status_code == 200, r.text
    url = f"/v1/fine_tuning/jobs/{r.json()['id']}/metrics"
    run = store.run_dir(r.json()["id"])
    run.mkdir(parents=True)
    for step in (1, 2, 3):
        append_jsonl(run / "metrics.jsonl", {"step": step, "mean_reward": step / 4})
    for step in (0, 2):
        append_jsonl(run / "eval.jsonl", {"step": step, "eval/mean_reward": step / 3})
    page = client.get(url, params={"limit": 4}, headers=auth(keys.alice)).json()
    assert [(r["step"], "eval/mean_reward" in r) for r in page["data"]] == \
        [(1, False), (2, False), (3, False), (0, True)]
    assert (page["next_offset"], page["next_eval_offset"], page["has_more"]) == (3, 1, True)
    append_jsonl(run / "eval.jsonl", {"step": 4, "eval/mean_reward": 1.0})
    rest = client.get(url, params={"offset": 3, "eval_offset": 1},
                      headers=auth(keys.alice)).json()
    assert [r["step"] for r in rest["data"]] == [2, 4]
    assert (rest["next_offset"], rest["next_eval_offset"], rest["has_more"]) == (3, 3, False)


def test_metrics_are_the_tenants_own(client, keys, job_id):
    r = client.get(f"/v1/fine_tuning/jobs/{job_id}/metrics", headers=auth(keys.bob))
    assert r.status_code == 404


# -------------------------------------------------------------------------------- pages


def test_pages_are_served_without_a_key(client):
    r = client.get("/ui/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert '<script type="module" src="/ui/app.js">' in r.text
    for path in ("/ui/app.js", "/ui/new.js", "/ui/static/common.css", "/ui/static/curves.js"):
        assert client.get(path).status_code == 200, path
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    assert "/ui" not in json.dumps(client.get("/openapi.json").json()["paths"])
