"""Keys, tenants and rate limits: who may call the API, and what each caller can see."""

import hashlib
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from preftune.service import queue
from preftune.service.app import create_app
from preftune.service.auth import create_key, revoke_key
from preftune.service.db import ApiKey

PAIRS = json.dumps({"prompt": "q", "chosen": "yes", "rejected": "no"}).encode() + b"\n"


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    return error


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_api_key"),
    ({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, "missing_api_key"),
    ({"Authorization": "Bearer pt-" + "x" * 43}, "invalid_api_key"),
    ({"Authorization": "Bearer not-even-a-key"}, "invalid_api_key"),
])
def test_a_missing_or_wrong_key_is_401(client, keys, headers, code):
    for method, path in (("GET", "/v1/files"), ("GET", "/v1/fine_tuning/jobs"),
                         ("POST", "/v1/fine_tuning/jobs"), ("DELETE", "/v1/files/file-1")):
        error = assert_error(client.request(method, path, headers=headers), 401, code)
        assert error["type"] == "authentication_error"
        assert "preftune keys create" in error["message"]


def test_a_revoked_key_is_401(client, db):
    key, secret = create_key(db, "carol", "team-c")
    assert client.get("/v1/files", headers=auth(secret)).status_code == 200
    revoke_key(db, key.id)
    assert_error(client.get("/v1/files", headers=auth(secret)), 401, "invalid_api_key")


def test_a_key_with_the_right_prefix_and_a_wrong_rest_is_401(client, keys):
    forged = keys.alice[:11] + ("A" if keys.alice[11] != "A" else "B") + keys.alice[12:]
    assert_error(client.get("/v1/files", headers=auth(forged)), 401, "invalid_api_key")


def test_the_database_holds_only_key_hashes(db, keys):
    with db.session() as session:
        rows = session.scalars(select(ApiKey)).all()
    assert sorted(r.key_hash for r in rows) == sorted(
        hashlib.sha256(k.encode()).hexdigest() for k in (keys.alice, keys.bob))
    for row in rows:
        stored = " ".join(str(getattr(row, c.key)) for c in ApiKey.__table__.columns)
        assert keys.alice not in stored and keys.bob not in stored
        assert keys.alice[12:] not in stored and keys.bob[12:] not in stored


@pytest.fixture
def alices(client, keys, db):
    """Alice's file and job, the job with a checkpoint."""
    file_id = client.post("/v1/files", headers=auth(keys.alice), data={"purpose": "fine-tune"},
                          files={"file": ("a.jsonl", PAIRS)}).json()["id"]
    job_id = client.post("/v1/fine_tuning/jobs", headers=auth(keys.alice),
                         json={"model": "tiny", "training_file": file_id}).json()["id"]
    queue.claim_validation(db, "v", 30)
    queue.finish_validation(db, job_id, "v", None)
    lease = queue.claim_run(db, "w", 30)
    assert lease is not None
    queue.record_checkpoint(db, lease, 1, "checkpoint-1", "checkpoints/checkpoint-1", {})
    return file_id, job_id


def test_another_tenants_objects_are_not_found(client, keys, alices):
    file_id, job_id = alices
    for method, path in [
        ("GET", f"/v1/files/{file_id}"),
        ("GET", f"/v1/files/{file_id}/content"),
        ("DELETE", f"/v1/files/{file_id}"),
        ("GET", f"/v1/fine_tuning/jobs/{job_id}"),
        ("GET", f"/v1/fine_tuning/jobs/{job_id}/events"),
        ("GET", f"/v1/fine_tuning/jobs/{job_id}/checkpoints"),
        ("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel"),
        ("POST", f"/v1/fine_tuning/jobs/{job_id}/pause"),
        ("POST", f"/v1/fine_tuning/jobs/{job_id}/resume"),
        ("GET", f"/v1/fine_tuning/jobs?after={job_id}"),
        ("GET", f"/v1/files?after={file_id}"),
    ]:
        assert_error(client.request(method, path, headers=auth(keys.bob)), 404, "not_found")
    # ... and alice's still work for alice, unchanged by bob's attempts.
    r = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth(keys.alice))
    assert r.json()["status"] == "running"
    assert client.get(f"/v1/files/{file_id}", headers=auth(keys.alice)).status_code == 200
    assert len(client.get(f"/v1/fine_tuning/jobs/{job_id}/checkpoints",
                          headers=auth(keys.alice)).json()["data"]) == 1


def test_lists_show_only_the_callers_objects(client, keys, alices):
    assert client.get("/v1/files", headers=auth(keys.bob)).json()["data"] == []
    assert client.get("/v1/fine_tuning/jobs", headers=auth(keys.bob)).json()["data"] == []
    assert len(client.get("/v1/files", headers=auth(keys.alice)).json()["data"]) == 1
    assert len(client.get("/v1/fine_tuning/jobs", headers=auth(keys.alice)).json()["data"]) == 1


def test_another_tenants_file_cannot_be_trained_on(client, keys, alices):
    file_id, _ = alices
    r = client.post("/v1/fine_tuning/jobs", headers=auth(keys.bob),
                    json={"model": "tiny", "training_file": file_id})
    assert assert_error(r, 400, "invalid_value")["param"] == "training_file"


def test_idempotency_keys_are_per_tenant(client, keys, alices):
    file_id, _ = alices
    bobs = client.post("/v1/files", headers=auth(keys.bob), data={"purpose": "fine-tune"},
                       files={"file": ("b.jsonl", PAIRS)}).json()["id"]
    a = client.post("/v1/fine_tuning/jobs", headers={**auth(keys.alice), "Idempotency-Key": "k"},
                    json={"model": "tiny", "training_file": file_id}).json()
    b = client.post("/v1/fine_tuning/jobs", headers={**auth(keys.bob), "Idempotency-Key": "k"},
                    json={"model": "tiny", "training_file": bobs}).json()
    assert a["id"] != b["id"]
    assert b["organization_id"] == keys.bob_tenant


def test_over_the_rate_limit_is_429_with_retry_after(db, store, keys):
    client = TestClient(create_app(db, store, rate_limit_per_minute=3))
    for _ in range(3):
        assert client.get("/v1/files", headers=auth(keys.alice)).status_code == 200
    r = client.get("/v1/files", headers=auth(keys.alice))
    error = assert_error(r, 429, "rate_limit_exceeded")
    assert error["type"] == "rate_limit_error"
    assert 1 <= int(r.headers["Retry-After"]) <= 20  # one request's worth at 3 a minute
    # The limit is per key: bob is not held back by alice's requests.
    assert client.get("/v1/files", headers=auth(keys.bob)).status_code == 200
