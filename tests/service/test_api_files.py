"""/v1/files: uploads in each format, listing, content, deletion and the size limits."""

import asyncio
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from preftune.service import queue
from preftune.service.app import FORM_OVERHEAD, create_app
from preftune.service.db import File

LIMIT = 4096
PAIRS = [{"prompt": f"question {i}", "chosen": f"good answer {i}", "rejected": "no"}
         for i in range(3)]


@pytest.fixture
def client(db, store):
    """The app without its lifespan (no ``with``): no validator thread moves jobs on
    behind the test's back."""
    return TestClient(create_app(db, store, max_upload_bytes=LIMIT))


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def jsonl(rows=PAIRS):
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def parquet(rows=PAIRS):
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def upload(client, key, content, name="pairs.jsonl", purpose="fine-tune"):
    return client.post("/v1/files", headers=auth(key), data={"purpose": purpose},
                       files={"file": (name, content)})


def stored(store):
    """Every file under the store's files directory (temporaries included)."""
    return sorted(p.name for p in store.files_dir.iterdir()) if store.files_dir.exists() else []


@pytest.mark.parametrize("name, content, suffix", [
    ("pairs.jsonl", jsonl(), ".jsonl"),
    ("pairs.json", json.dumps(PAIRS).encode(), ".json"),
    ("pairs.parquet", parquet(), ".parquet"),
])
def test_upload_get_and_content_round_trip(client, keys, store, name, content, suffix):
    r = upload(client, keys.alice, content, name)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {"id": body["id"], "object": "file", "bytes": len(content),
                    "created_at": body["created_at"], "filename": name, "purpose": "fine-tune",
                    "status": "processed", "status_details": None, "expires_at": None}
    assert body["id"].startswith("file-")
    assert stored(store) == [body["id"] + suffix]

    assert client.get(f"/v1/files/{body['id']}", headers=auth(keys.alice)).json() == body
    r = client.get(f"/v1/files/{body['id']}/content", headers=auth(keys.alice))
    assert r.status_code == 200
    assert r.content == content
    assert [f["id"] for f in client.get("/v1/files", headers=auth(keys.alice)).json()["data"]
            ] == [body["id"]]


def test_list_is_newest_first_filters_on_purpose_and_pages(client, db, keys):
    ids = [upload(client, keys.alice, jsonl()).json()["id"] for _ in range(3)]
    with db.session() as session:  # one upload a second apart, oldest first
        for i, file_id in enumerate(ids):
            session.execute(update(File).where(File.id == file_id).values(created_at=1000 + i))

    first = client.get("/v1/files", params={"limit": 2}, headers=auth(keys.alice)).json()
    assert first["object"] == "list"
    assert [f["id"] for f in first["data"]] == [ids[2], ids[1]]
    assert first["has_more"] is True
    rest = client.get("/v1/files", params={"limit": 2, "after": ids[1]},
                      headers=auth(keys.alice)).json()
    assert [f["id"] for f in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False
    oldest = client.get("/v1/files", params={"order": "asc", "limit": 1},
                        headers=auth(keys.alice)).json()
    assert [f["id"] for f in oldest["data"]] == [ids[0]]

    assert len(client.get("/v1/files", params={"purpose": "fine-tune"},
                          headers=auth(keys.alice)).json()["data"]) == 3
    assert client.get("/v1/files", params={"purpose": "fine-tune-results"},
                      headers=auth(keys.alice)).json()["data"] == []


def test_delete_removes_the_row_and_the_bytes(client, keys, store):
    file_id = upload(client, keys.alice, jsonl()).json()["id"]
    r = client.delete(f"/v1/files/{file_id}", headers=auth(keys.alice))
    assert r.status_code == 200
    assert r.json() == {"id": file_id, "object": "file", "deleted": True}
    assert stored(store) == []
    r = client.get(f"/v1/files/{file_id}", headers=auth(keys.alice))
    assert r.status_code == 404
    assert file_id in r.json()["error"]["message"]


def test_a_file_an_unfinished_job_reads_cannot_be_deleted(client, keys, store):
    file_id = upload(client, keys.alice, jsonl()).json()["id"]
    job = client.post("/v1/fine_tuning/jobs", headers=auth(keys.alice),
                      json={"model": "tiny", "training_file": file_id}).json()

    r = client.delete(f"/v1/files/{file_id}", headers=auth(keys.alice))
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conflict"
    assert "1 unfinished fine-tuning job" in r.json()["error"]["message"]
    assert len(stored(store)) == 1

    client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=auth(keys.alice))
    assert client.delete(f"/v1/files/{file_id}", headers=auth(keys.alice)).status_code == 200


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(client, keys, store):
    # Within the body allowance, so the store's own count refuses it.
    r = upload(client, keys.alice, b"{}\n" * (LIMIT // 3 + 1))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "file_too_large"
    assert f"{LIMIT:,} bytes" in r.json()["error"]["message"]
    # Far over: the body limit stops it while it streams in.
    r = upload(client, keys.alice, b"{}\n" * (LIMIT + FORM_OVERHEAD))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert stored(store) == []
    assert client.get("/v1/files", headers=auth(keys.alice)).json()["data"] == []


def call(app, path, headers, chunks):
    """One POST straight through the ASGI app: the status, and how many body chunks the app
    pulled out of ``chunks`` before answering."""
    pulled, sent = [], []

    async def receive():
        if len(pulled) == len(chunks):
            return {"type": "http.disconnect"}
        pulled.append(chunks[len(pulled)])
        return {"type": "http.request", "body": pulled[-1],
                "more_body": len(pulled) < len(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "server": ("test", 80),
             "client": ("test", 1), "headers": [(k.lower().encode(), v.encode())
                                               for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], len(pulled), json.loads(sent[1]["body"])


def test_a_declared_length_over_the_limit_is_refused_before_reading(db, store, keys):
    app = create_app(db, store, max_upload_bytes=LIMIT)
    headers = {**auth(keys.alice), "content-type": "multipart/form-data; boundary=x",
               "content-length": str(LIMIT + FORM_OVERHEAD + 1)}
    status, pulled, body = call(app, "/v1/files", headers, [b"x" * 1024] * 100)
    assert (status, pulled) == (413, 0)
    assert body["error"]["code"] == "request_too_large"


def test_a_streamed_body_is_cut_off_once_over_the_limit(db, store, keys):
    app = create_app(db, store, max_upload_bytes=LIMIT)
    chunk = b"{}\n" * 2730
    part = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n")
    headers = {**auth(keys.alice), "content-type": "multipart/form-data; boundary=x"}
    status, pulled, _ = call(app, "/v1/files", headers, [part] + [chunk] * 1000)
    assert status == 413
    assert (pulled - 1) * len(chunk) <= LIMIT + FORM_OVERHEAD + len(chunk)
    # Everything else may send at most 1 MiB.
    headers = {**auth(keys.alice), "content-type": "application/json"}
    status, pulled, _ = call(app, "/v1/fine_tuning/jobs", headers, [chunk] * 1000)
    assert status == 413
    assert pulled * len(chunk) <= 2**20 + len(chunk)
    assert stored(store) == []


@pytest.mark.parametrize("client_name, shown", [
    ("../../etc/passwd", "passwd"),
    ("/abs/x.jsonl", "x.jsonl"),
    ("..\\..\\win.jsonl", "win.jsonl"),
])
def test_the_client_file_name_is_metadata_only(client, db, keys, store, tmp_path,
                                               client_name, shown):
    r = upload(client, keys.alice, jsonl(), client_name)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["filename"] == shown
    (name,) = stored(store)
    assert name.startswith(body["id"] + ".")  # a server name, inside the store
    assert not (tmp_path / "etc").exists() and not (store.root.parent / "etc").exists()
    assert queue.file_row(db, None, body["id"]).storage_name == name


def test_only_fine_tune_files_are_accepted(client, keys, store):
    r = upload(client, keys.alice, jsonl(), purpose="assistants")
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "purpose"
    assert "fine-tune" in r.json()["error"]["message"]
    assert stored(store) == []


@pytest.mark.parametrize("content, words", [(b"", "empty"), (b"\x00\x01binary", "JSONL")])
def test_data_the_service_cannot_read_is_a_400(client, keys, store, content, words):
    r = upload(client, keys.alice, content, "data.bin")
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "file"
    assert words in r.json()["error"]["message"]
    assert stored(store) == []


def test_a_request_without_a_file_part_is_a_400(client, keys):
    r = client.post("/v1/files", headers=auth(keys.alice), data={"purpose": "fine-tune"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "file"
