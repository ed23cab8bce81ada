"""``preftune keys``, ``db``, ``serve`` and ``worker`` from the command line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx

from preftune.service.auth import authenticate
from preftune.service.db import ApiKey, Database


def test_keys_are_shown_once_and_stored_as_hashes(cli, tmp_path):
    service = tmp_path / "svc"
    created = cli("keys", "create", "--name", "ci", "--tenant", "team-a",
                  "--service-dir", service)
    assert created.code == 0
    secret = created.out.strip().splitlines()[-1]
    assert secret.startswith("pt-") and "shown only now" in created.err
    db = Database(f"sqlite:///{service / 'preftune.db'}")
    principal = authenticate(db, secret)
    assert principal is not None
    with db.session() as session:
        (key,) = session.query(ApiKey).all()
        assert secret not in (key.key_hash, key.prefix, key.name) and len(key.key_hash) == 64
    listed = cli("keys", "list", "--service-dir", service)
    assert key.id in listed.out and secret not in listed.out and "team-a" in listed.out
    assert cli("keys", "revoke", key.id, "--service-dir", service).code == 0
    assert authenticate(db, secret) is None
    assert cli("keys", "revoke", "key-nope", "--service-dir", service).code == 2
    db.dispose()


def test_db_commands_report_the_revision(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert "database: empty" in cli("db", "current", "--database-url", url).out
    assert "revision 0001" in cli("db", "upgrade", "--database-url", url).out
    assert "database: 0001; newest: 0001" in cli("db", "current", "--database-url", url).out
    assert cli("db", "current", "--database-url", "mysql://x").code == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_binds_to_localhost_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "preftune", "serve", "--port", str(port), "--workers", "0",
         "--service-dir", str(tmp_path / "svc")], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert health.json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/v1/files").status_code == 401
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                                   text=True).stdout
        assert [line.split()[3] for line in listening.splitlines()] == [f"127.0.0.1:{port}"]
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert server.returncode in (0, -signal.SIGTERM), output
    assert f"http://127.0.0.1:{port}/v1" in output


def test_worker_stops_cleanly_on_sigterm(tmp_path):
    worker = subprocess.Popen(
        [sys.executable, "-m", "preftune", "worker", "--service-dir", str(tmp_path / "svc"),
         "--poll-s", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    db = Database(f"sqlite:///{tmp_path / 'svc' / 'preftune.db'}")
    from preftune.service.queue import live_workers

    deadline = time.monotonic() + 60
    while live_workers(db, 30) == 0 if (tmp_path / "svc" / "preftune.db").exists() else True:
        assert worker.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    worker.send_signal(signal.SIGTERM)
    output = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, output
    assert live_workers(db, 30) == 0  # it unregistered itself
    db.dispose()


def test_stopping_serve_checkpoints_the_running_job_and_queues_it_again(cli, sample_pairs,
                                                                       tmp_path):
    """Ctrl-C / SIGTERM on `preftune serve`: its embedded worker stops the job at a
    checkpoint and puts it back in the queue for the next worker."""
    service = tmp_path / "svc"
    key = cli("keys", "create", "--name", "a", "--service-dir", service).out.split()[-1]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "preftune", "serve", "--port", str(port), "--service-dir",
         str(service), "--lease-s", "5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    url, headers = f"http://127.0.0.1:{port}/v1", {"Authorization": f"Bearer {key}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        with sample_pairs.open("rb") as f:
            file_id = httpx.post(f"{url}/files", headers=headers, data={"purpose": "fine-tune"},
                                 files={"file": ("pairs.jsonl", f)}).json()["id"]
        job = httpx.post(f"{url}/fine_tuning/jobs", headers=headers, json={
            "model": "tiny", "training_file": file_id, "config": {
                "batch_size": 2, "grad_accum": 1, "max_steps": 400, "epochs": 13,
                "logging_steps": 1,
                "max_length": 256, "max_prompt_length": 128}}).json()
        while not [e for e in httpx.get(f"{url}/fine_tuning/jobs/{job['id']}/events",
                                        headers=headers).json()["data"]
                   if e["type"] == "metrics"]:
            assert time.monotonic() < deadline + 120
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=90)[0]
    assert server.returncode in (0, -signal.SIGTERM), output
    from preftune.service import queue

    db = Database(f"sqlite:///{service / 'preftune.db'}")
    row = queue.get_job(db, None, job["id"])
    assert row.status == "queued" and row.attempt == 1, output
    checkpoints, _ = queue.list_checkpoints(db, None, job["id"])
    assert checkpoints and 0 < checkpoints[0].step < 400  # the newest: where it stopped
    assert "The worker stopped; the job is queued again to resume from checkpoint step-" in [
        e.message for e in queue.list_events(db, None, job["id"], limit=100)[0]][0]
    db.dispose()

