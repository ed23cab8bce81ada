"""ServiceClient against the real app, served by uvicorn on a free local port, on SQLite and
PostgreSQL: every endpoint, and each way a call fails as the error people see."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from preftune.errors import DataError, PreftuneError, UsageError
from preftune.service.client import (
    RATE_LIMIT_RETRIES,
    ServiceClient,
    api_error,
    event_number,
    split_message,
)


@pytest.fixture
def server(serving, db, store):
    from preftune.service.app import create_app

    with serving(create_app(db, store, max_upload_bytes=4096)) as url:
        yield url


@pytest.fixture
def alice(server, keys):
    with ServiceClient(server, keys.alice, timeout=10) as client:
        yield client


@pytest.fixture
def validate(db, store):
    """Validate waiting jobs' files now, and wait for those the server's own validator
    thread took (each validation is a child process: seconds). No worker trains them."""
    from preftune.service import queue
    from preftune.service.worker import validate_once

    def run() -> None:
        while validate_once(db, store, "test-validator", 30.0):
            pass
        deadline = time.monotonic() + 120  # the server's validator thread took some
        while queue.queue_counts(db)["validating_files"]:
            assert time.monotonic() < deadline, "the server's validator never finished"
            time.sleep(0.1)

    return run


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
            for i in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_file_round_trip(alice, pairs_file):
    uploaded = alice.upload_file(pairs_file)
    assert uploaded["object"] == "file"
    assert uploaded["id"].startswith("file-")
    assert (uploaded["bytes"], uploaded["filename"], uploaded["purpose"]) == \
        (pairs_file.stat().st_size, "pairs.jsonl", "fine-tune")
    assert alice.get_file(uploaded["id"]) == uploaded
    assert [f["id"] for f in alice.list_files()["data"]] == [uploaded["id"]]
    assert alice.file_content(uploaded["id"]) == pairs_file.read_bytes()
    assert alice.delete_file(uploaded["id"]) == {"id": uploaded["id"], "object": "file",
                                                 "deleted": True}
    with pytest.raises(UsageError) as caught:
        alice.get_file(uploaded["id"])
    assert uploaded["id"] in caught.value.message
    assert "preftune files list" in " ".join(caught.value.hints)


def test_upload_of_what_is_not_data_is_a_data_error(alice, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        alice.upload_file(empty)
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"\x00\x01binary")
    with pytest.raises(DataError, match="not JSONL"):
        alice.upload_file(blob)
    assert alice.list_files()["data"] == []


def test_upload_over_the_limit_says_what_to_do(alice, tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"prompt": "x" * 5000, "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(UsageError) as caught:
        alice.upload_file(big)
    assert "4,096" in caught.value.message or "4096" in caught.value.message
    assert any("--max-upload-mb" in h for h in caught.value.hints)


def test_upload_of_a_missing_path_fails_before_any_request(alice, tmp_path):
    with pytest.raises(UsageError, match="not found"):
        alice.upload_file(tmp_path / "nope.jsonl")


def test_job_lifecycle_without_workers(alice, pairs_file, validate):
    """No worker runs jobs here: a job is validated, queued, paused, resumed, cancelled."""
    training = alice.upload_file(pairs_file)["id"]
    job = alice.create_job({
        "model": "tiny", "training_file": training, "seed": 7, "suffix": "mine",
        "metadata": {"team": "search"},
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 2}}},
        "config": {"logging_steps": 1},
    })
    assert job["object"] == "fine_tuning.job"
    assert job["status"] == "validating_files"
    assert (job["model"], job["training_file"], job["seed"]) == ("tiny", training, 7)
    assert job["method"]["dpo"]["hyperparameters"]["beta"] == 0.2
    assert job["hyperparameters"]["n_epochs"] == 2
    assert job["config"]["logging_steps"] == 1
    job_id = job["id"]
    assert alice.get_job(job_id) == job

    validate()
    queued = alice.get_job(job_id)
    assert (queued["status"], queued["error"]) == ("queued", None)
    assert alice.pause_job(job_id)["status"] == "paused"
    assert alice.resume_job(job_id)["status"] == "queued"
    assert alice.cancel_job(job_id)["status"] == "cancelled"
    with pytest.raises(UsageError, match="nothing to cancel"):
        alice.cancel_job(job_id)
    with pytest.raises(UsageError, match="only a paused job can be resumed"):
        alice.resume_job(job_id)

    messages = [e["message"] for e in reversed(alice.list_events(job_id, limit=50)["data"])]
    assert messages[0] == f"Created fine-tuning job: {job_id}"
    assert messages[-1] == "Fine-tuning job cancelled"
    assert alice.list_checkpoints(job_id) == {"object": "list", "data": [], "has_more": False}
    assert alice.delete_job(job_id) == {"id": job_id, "object": "fine_tuning.job",
                                        "deleted": True}
    with pytest.raises(UsageError, match=job_id):
        alice.get_job(job_id)


def test_an_unfinished_job_cannot_be_deleted(alice, pairs_file):
    training = alice.upload_file(pairs_file)["id"]
    job_id = alice.create_job({"model": "tiny", "training_file": training})["id"]
    with pytest.raises(UsageError, match="only an ended job") as caught:
        alice.delete_job(job_id)
    assert any("cancel it first" in hint for hint in caught.value.hints)


def test_job_listing_pages_and_filters_by_metadata(alice, pairs_file):
    training = alice.upload_file(pairs_file)["id"]
    ids = [alice.create_job({"model": "tiny", "training_file": training,
                             "metadata": {"n": str(i)}})["id"] for i in range(3)]
    first = alice.list_jobs(limit=2)
    assert [j["id"] for j in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True
    rest = alice.list_jobs(after=first["data"][-1]["id"], limit=2)
    assert ([j["id"] for j in rest["data"]], rest["has_more"]) == ([ids[0]], False)
    assert [j["id"] for j in alice.list_jobs(metadata={"n": "1"})["data"]] == [ids[1]]


def test_idempotency_key_returns_the_first_job(alice, pairs_file):
    training = alice.upload_file(pairs_file)["id"]
    request = {"model": "tiny", "training_file": training}
    first = alice.create_job(request, idempotency_key="run-1")
    assert alice.create_job(request, idempotency_key="run-1")["id"] == first["id"]
    assert alice.create_job(request, idempotency_key="run-2")["id"] != first["id"]


def test_events_since_pages_back_to_the_last_event_seen(alice, pairs_file, validate):
    training = alice.upload_file(pairs_file)["id"]
    job_id = alice.create_job({"model": "tiny", "training_file": training})["id"]
    validate()
    alice.pause_job(job_id)
    alice.resume_job(job_id)
    newest_first = alice.list_events(job_id, limit=100)["data"]
    assert len(newest_first) >= 5
    oldest_first = newest_first[::-1]
    assert alice.events_since(job_id, 0, page=2) == oldest_first
    third = event_number(oldest_first[2]["id"])
    assert alice.events_since(job_id, third, page=2) == oldest_first[3:]
    assert alice.events_since(job_id, event_number(newest_first[0]["id"])) == []


def test_a_request_the_server_refuses_names_the_field(alice, pairs_file):
    training = alice.upload_file(pairs_file)["id"]
    with pytest.raises(UsageError) as caught:
        alice.create_job({"model": "tiny", "training_file": training,
                          "method": {"type": "sparkle"}})
    assert "sparkle" in caught.value.message
    assert any("method.type" in line for line in caught.value.details + [caught.value.message])
    with pytest.raises(UsageError, match="beta"):
        alice.create_job({"model": "tiny", "training_file": training,
                          "config": {"beta": -1}})


def test_tenants_do_not_see_each_others_objects(server, keys, alice, pairs_file):
    file_id = alice.upload_file(pairs_file)["id"]
    job_id = alice.create_job({"model": "tiny", "training_file": file_id})["id"]
    with ServiceClient(server, keys.bob) as bob:
        assert bob.list_files()["data"] == []
        assert bob.list_jobs()["data"] == []
        with pytest.raises(UsageError, match=file_id):
            bob.get_file(file_id)
        with pytest.raises(UsageError, match=job_id):
            bob.get_job(job_id)
        with pytest.raises(UsageError, match=job_id):
            bob.cancel_job(job_id)
    assert alice.get_job(job_id)["status"] != "cancelled"


def test_unknown_job_is_a_usage_error_with_a_hint(alice):
    with pytest.raises(UsageError) as caught:
        alice.get_job("ftjob-000000000000000000000000")
    assert "ftjob-000000000000000000000000" in caught.value.message
    assert "preftune jobs list" in " ".join(caught.value.hints)
    with pytest.raises(UsageError):
        alice.list_events("ftjob-../../files")


def test_a_bad_key_says_how_to_get_one(server):
    with ServiceClient(server, "pt-not-a-real-key") as client, \
            pytest.raises(UsageError) as caught:
        client.list_jobs()
    hints = " ".join(caught.value.hints)
    assert "PREFTUNE_API_KEY" in hints and "preftune keys create" in hints


def test_no_key_fails_before_any_request():
    with pytest.raises(UsageError, match="no API key") as caught:
        ServiceClient("http://127.0.0.1:1", None)
    assert "PREFTUNE_API_KEY" in " ".join(caught.value.hints)


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_server_url_with_or_without_v1(server, keys, suffix):
    with ServiceClient(server + suffix, keys.alice) as client:
        assert client.url == server
        assert client.list_files()["object"] == "list"


def test_a_server_that_is_not_running_is_named():
    with socket.socket() as s:  # a port nobody listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with ServiceClient(url + "/v1", "pt-key") as client, pytest.raises(UsageError) as caught:
        client.list_jobs()
    assert url in caught.value.message
    assert "preftune serve" in " ".join(caught.value.hints)


def test_a_url_that_is_not_http_is_refused():
    with pytest.raises(UsageError, match="not an http"):
        ServiceClient("127.0.0.1:8000", "pt-key")


# The server never answers these on purpose; the mapping is checked on answers built here.


def test_a_server_fault_is_a_plain_error_that_points_at_its_log():
    response = httpx.Response(500, json={"error": {"message": "database is gone",
                                                   "type": "server_error", "param": None,
                                                   "code": None}})
    error = api_error("http://srv", "GET", "/fine_tuning/jobs", response)
    assert type(error) is PreftuneError
    assert error.message == "the server failed on GET /fine_tuning/jobs: database is gone"
    assert "log" in error.hints[-1]
    plain = api_error("http://srv", "GET", "/files", httpx.Response(502, text="Bad Gateway"))
    assert "Bad Gateway" in plain.message


def test_rate_limited_after_retries_says_to_wait():
    error = api_error("http://srv", "GET", "/files",
                      httpx.Response(429, json={"error": {"message": "rate limit exceeded"}}))
    assert isinstance(error, UsageError)
    assert "wait" in error.hints[-1]


@pytest.mark.parametrize("headers, requests", [
    ({"Retry-After": "0"}, 1 + RATE_LIMIT_RETRIES),  # a rate limit: retried after the wait
    ({"x-should-retry": "false"}, 1),                 # a quota: waiting frees nothing
])
def test_a_429_is_retried_unless_the_server_says_not_to(headers, requests):
    sent = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(429, headers=headers, json={"error": {
            "message": "over\nhint: wait", "type": "x", "param": None, "code": "x"}})

    client = ServiceClient("http://srv", "pt-key")
    client._http = httpx.Client(base_url="http://srv/v1", transport=httpx.MockTransport(answer))
    with client, pytest.raises(UsageError, match="over"):
        client.list_jobs()
    assert len(sent) == requests


def test_split_message_separates_details_and_hints():
    text = ("file-1.jsonl: 2 problems found\nfile-1.jsonl:4: record 3: missing 'rejected'\n"
            "hint: see the expected shape with: preftune sample")
    assert split_message(text) == ("file-1.jsonl: 2 problems found",
                                   ["file-1.jsonl:4: record 3: missing 'rejected'"],
                                   ["see the expected shape with: preftune sample"])

