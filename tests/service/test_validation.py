"""File validation in a child process: memory and time limits, the job's planned size against
the server's limits, and a validation lease that is renewed, so one job is validated once."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from preftune.service import queue, validation
from preftune.service.auth import ensure_tenant
from preftune.service.jobspec import build_spec
from preftune.service.limits import Limits
from preftune.service.pipeline import register_local_file
from preftune.service.validation import plan_error, validate_once


def submit(db, store, data: Path, **config):
    tenant = ensure_tenant(db, "team-a")
    file_id = register_local_file(db, store, tenant, data)
    spec = build_spec("tiny", {"type": "dpo"}, config, seed=None)
    job, _ = queue.enqueue(db, tenant_id=tenant, model="tiny", training_file=file_id,
                           validation_file=None, method=spec.method, config=spec.config,
                           seed=42)
    return job


def job_row(db, job_id):
    return queue.get_job(db, None, job_id)


def messages(db, job_id):
    rows, _ = queue.list_events(db, None, job_id, limit=1000)
    return [e.message for e in reversed(rows)]


@pytest.fixture(scope="module")
def parquet_bomb(tmp_path_factory):
    """100,000 rows of one 1 KB string in prompt, chosen and rejected: about 40 KB of parquet
    that decodes to 300 MB of text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = pa.array(["x" * 1024] * 100_000)
    path = tmp_path_factory.mktemp("bomb") / "bomb.parquet"
    pq.write_table(pa.table({"prompt": text, "chosen": text, "rejected": text}), path)
    assert path.stat().st_size < 100_000
    return path


def _status(field: str) -> int:
    """A field of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def test_a_parquet_bomb_is_decoded_in_the_child_not_in_the_validating_process(
        db, store, parquet_bomb):
    job = submit(db, store, parquet_bomb, max_length=4096, max_prompt_length=2048)
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS starts again from now
    before = _status("VmRSS")
    assert validate_once(db, store, "v", 30)
    grown_mb = (_status("VmHWM") - before) / 1024
    row = job_row(db, job.id)
    assert row.status == "queued", row.error  # within the default 2048 MiB it is a good file
    assert grown_mb < 40, f"the validating process grew by {grown_mb:.0f} MiB"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the child, not the DB
def test_a_file_over_the_memory_limit_fails_its_job_naming_the_limit(db, store, parquet_bomb):
    job = submit(db, store, parquet_bomb)
    assert validate_once(db, store, "v", 30, Limits(validation_memory_mb=400))
    row = job_row(db, job.id)
    assert row.status == "failed"
    assert row.error["code"] == "validation_memory_exceeded"
    assert row.error["param"] == "training_file"
    assert "validation_memory_mb=400 MiB" in row.error["message"]
    assert "limits.validation_memory_mb" in row.error["message"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the child, not the DB
def test_a_good_file_validates_to_queued_under_the_default_limits(db, store, sample_pairs):
    job = submit(db, store, sample_pairs)
    assert validate_once(db, store, "v", 30, Limits())
    assert job_row(db, job.id).status == "queued"
    assert not validate_once(db, store, "v", 30)  # nothing else waits


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the child, not the DB
def test_a_validation_over_its_time_limit_is_killed_and_fails_the_job(db, store, sample_pairs):
    job = submit(db, store, sample_pairs)
    started = time.monotonic()
    assert validate_once(db, store, "v", 30, Limits(validation_timeout_s=0.3))
    assert time.monotonic() - started < 5  # the child (still importing torch) was killed
    row = job_row(db, job.id)
    assert row.status == "failed" and row.error["code"] == "validation_timeout"
    assert "validation_timeout_s=0.3 s" in row.error["message"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the child, not the DB
@pytest.mark.parametrize(("limits", "named"), [
    # 64 pairs x 3 epochs = 192 examples
    ({"max_examples": 191}, "192 training examples (3 epochs x 64 examples), over this "
                            "server's limit max_examples=191"),
    # 192 examples x 256 tokens x 2
    ({"max_tokens": 98_303}, "98304 tokens (192 examples x max_length=256 x 2), over this "
                             "server's limit max_tokens=98303"),
    # ceil(64 / (4 x 2)) x 3 epochs
    ({"max_steps": 23}, "24 optimizer steps (ceil(64 examples / (batch_size=4 x "
                        "grad_accum=2)) x 3 epochs), over this server's limit max_steps=23"),
])
def test_a_job_planning_more_than_a_limit_fails_naming_it(db, store, sample_pairs, limits,
                                                          named):
    job = submit(db, store, sample_pairs, epochs=3, batch_size=4, grad_accum=2,
                 max_length=256, max_prompt_length=128)
    assert validate_once(db, store, "v", 30, Limits(**limits))
    row = job_row(db, job.id)
    assert row.status == "failed" and row.error["code"] == "limit_exceeded"
    assert named in row.error["message"]
    assert row.error["param"] == "training_file"
    name = next(iter(limits))
    assert f"ask the operator to raise limits.{name}" in row.error["message"]


def test_plan_arithmetic():
    config = {"epochs": 3, "batch_size": 4, "grad_accum": 2, "max_steps": None,
              "max_length": 100}
    # 10 examples: ceil(10 / 8) = 2 steps per epoch, 6 steps; 30 examples; 6,000 tokens.
    assert plan_error(config, 10, Limits(max_steps=6, max_examples=30, max_tokens=6000)) is None
    assert "6 optimizer steps" in plan_error(config, 10, Limits(max_steps=5))["message"]
    assert "30 training examples" in plan_error(config, 10, Limits(max_examples=29))["message"]
    assert "6000 tokens" in plan_error(config, 10, Limits(max_tokens=5999))["message"]
    # max_steps=4 stops first: 4 steps of 8 examples = 32 < 3 x 100 examples.
    capped = {**config, "max_steps": 4}
    assert plan_error(capped, 100, Limits(max_steps=4, max_examples=32)) is None
    error = plan_error(capped, 100, Limits(max_examples=31))["message"]
    assert "32 training examples (max_steps=4 x batch_size=4 x grad_accum=2)" in error


@pytest.fixture
def slow_child(monkeypatch, tmp_path):
    """The real child, started 2 s late; each start leaves a line in the returned file."""
    starts = tmp_path / "starts.txt"
    real = validation.child_command

    def slow(work, memory_mb):
        command = real(work, memory_mb)
        assert command[1] == "-c"
        command[2] = (f"import time\nopen({str(starts)!r}, 'a').write('start\\n')\n"
                      f"time.sleep(2)\n" + command[2])
        return command

    monkeypatch.setattr(validation, "child_command", slow)
    return starts


def test_a_slow_validation_keeps_its_lease_and_runs_once(db, store, sample_pairs, slow_child):
    """Two validators, a lease of 0.5 s and a validation of over 2 s: one child, one result."""
    job = submit(db, store, sample_pairs)
    done = threading.Event()

    def validator(name: str) -> None:
        while not done.is_set():
            if not validate_once(db, store, name, 0.5):
                time.sleep(0.05)

    threads = [threading.Thread(target=validator, args=(f"v{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while job_row(db, job.id).status == "validating_files":
            assert time.monotonic() < deadline, "validation never ended"
            time.sleep(0.1)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert job_row(db, job.id).status == "queued"
    assert slow_child.read_text().splitlines() == ["start"]
    validated = [m for m in messages(db, job.id) if m.startswith("Files validated")]
    assert len(validated) == 1


def test_cancelling_a_job_stops_its_validation(db, store, sample_pairs, slow_child):
    job = submit(db, store, sample_pairs)
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(
        validate_once(db, store, "v", 0.6)))
    thread.start()
    time.sleep(0.5)
    queue.request_cancel(db, None, job.id)
    cancelled = time.monotonic()
    thread.join()
    assert time.monotonic() - cancelled < 1.0  # killed at the next renewal, not at its end
    assert result == [True]
    assert job_row(db, job.id).status == "cancelled"
    assert not any(m.startswith("Files validated") for m in messages(db, job.id))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the child, not the DB
def test_a_child_that_crashes_fails_the_job_without_showing_its_output(
        db, store, sample_pairs, monkeypatch, caplog):
    monkeypatch.setattr(validation, "child_command", lambda work, memory_mb: [
        sys.executable, "-c", f"import sys; print('boom in {store.root}'); sys.exit(3)"])
    job = submit(db, store, sample_pairs)
    assert validate_once(db, store, "v", 30)
    error = job_row(db, job.id).error
    assert error["code"] == "validation_error" and "exited with code 3" in error["message"]
    assert str(store.root) not in error["message"]
    assert "boom in" in caplog.text  # the operator's log has it


def test_a_validation_child_stops_when_its_parent_dies(tmp_path):
    """A SIGKILLed API must not leave its validation child running on in its own session:
    the child watches its parent and exits when it is gone."""
    import os
    import signal
    import subprocess

    work = tmp_path / "work"
    work.mkdir()
    boot = validation.child_command(work, 512)[2].replace(
        "from preftune.service.validation import child", "import time; time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {boot!r}, 'w', '512', "
        "str(__import__('os').getpid())], start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child_pid}").exists() and (
            Path(f"/proc/{child_pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"):
        assert time.monotonic() < deadline, "the validation child outlived its parent"
        time.sleep(0.1)
