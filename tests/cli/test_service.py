"""``preftune keys``, ``db``, ``serve`` and ``worker`` from the command line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import typer

from preftune.service.auth import authenticate
from preftune.service.db import ApiKey, Database
from preftune.service.limits import Graders, Limits, Quota, Retention, ServiceConfig
from preftune.service.migrate import head


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
    assert f"revision {head()}" in cli("db", "upgrade", "--database-url", url).out
    assert f"database: {head()}; newest: {head()}" in cli("db", "current", "--database-url",
                                                           url).out
    assert cli("db", "current", "--database-url", "mysql://x").code == 2


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_every_service_setting_is_a_flag(command):
    from preftune.cli.main import app

    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    flags = {opt for param in click_command.params for opt in param.opts}
    names = [*Limits.model_fields, *Quota.model_fields, *Retention.model_fields,
             *Graders.model_fields, "metrics_token", "failed_auth_per_minute", "pass_env"]
    for name in names:
        if name != "integrations":  # credentials: only in the file
            assert f"--{name.replace('_', '-')}" in flags, name
    assert "--config" in flags


def test_flags_override_the_config_file(tmp_path, monkeypatch):
    from preftune.cli.service import service_config

    monkeypatch.setenv("TEAM_A_KEY", "secret")
    path = tmp_path / "service.yaml"
    path.write_text("limits: {max_epochs: 5, max_lora_rank: 64}\n"
                    "quota: {models: [tiny]}\n"
                    "tenants: {team-a: {integrations: {wandb: {env: {WANDB_API_KEY: "
                    "'${TEAM_A_KEY}'}}}}}\n"
                    "metrics_token: from-file\n", encoding="utf-8")
    config = service_config(path, {"max_epochs": 7, "models": "tiny, Qwen/*",
                                   "jobs_days": 30.0, "pass_env": "HF_HOME,HF_HUB_OFFLINE"})
    assert (config.limits.max_epochs, config.limits.max_lora_rank) == (7, 64)
    assert config.quota.models == ["tiny", "Qwen/*"]
    assert config.retention.jobs_days == 30.0
    assert config.pass_env == ["HF_HOME", "HF_HUB_OFFLINE"]
    assert config.metrics_token == "from-file"
    assert config.quota_for("team-a").integrations["wandb"].env == {"WANDB_API_KEY": "secret"}
    assert service_config(None, {}) == ServiceConfig()


@pytest.mark.parametrize("text, words", [
    (None, "cannot read the service config"),
    ("limits: [1, 2\n", "is not valid YAML"),
    ("limits: {max_epoch: 3}\n", "limits.max_epoch"),
    ("quota: {max_files: -1}\n", "quota.max_files"),
    ("tenants: {team-a: {max_running_jobs: x}}\n", "tenants.team-a"),
    ("metrics_token: ${NO_SUCH_VARIABLE_SET}\n", "NO_SUCH_VARIABLE_SET"),
])
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_bad_service_config_exits_2_before_starting(cli, tmp_path, command, text, words):
    path = tmp_path / "service.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    r = cli(command, "--config", path, "--service-dir", tmp_path / "svc")
    assert r.code == 2, r.err
    assert r.err.startswith("error:") and words in r.err and "Traceback" not in r.err
    assert not (tmp_path / "svc").exists(), "nothing was started or created"


def test_a_bad_flag_value_exits_2(cli, tmp_path):
    r = cli("serve", "--max-epochs", "0", "--service-dir", tmp_path / "svc")
    assert r.code == 2 and "limits.max_epochs" in r.err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_binds_to_localhost_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    config = tmp_path / "service.yaml"
    config.write_text("metrics_token: m-token\nlimits: {max_epochs: 3}\n", encoding="utf-8")
    server = subprocess.Popen(
        [sys.executable, "-m", "preftune", "serve", "--port", str(port), "--workers", "0",
         "--service-dir", str(tmp_path / "svc"), "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
        metrics = f"http://127.0.0.1:{port}/metrics"
        assert httpx.get(metrics).status_code == 401
        assert httpx.get(metrics, headers={"Authorization": "Bearer m-token"}).status_code == 200
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
    config = tmp_path / "service.yaml"
    config.write_text("quota: {max_running_jobs: 1}\n", encoding="utf-8")
    worker = subprocess.Popen(
        [sys.executable, "-m", "preftune", "worker", "--service-dir", str(tmp_path / "svc"),
         "--poll-s", "0.1", "--config", str(config), "--max-run-hours", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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

