"""``preftune files`` and ``preftune jobs`` in-process against the real app under uvicorn
(SQLite): what each command prints, the exit codes of its errors, and ``jobs wait`` following
a job a real embedded worker trains on the tiny model."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from preftune.cli.jobs import outcome_error, total_steps
from preftune.errors import ExitCode
from preftune.service.auth import create_key
from preftune.service.db import Database
from preftune.service.limits import ServiceConfig
from preftune.service.store import Store

NO_JOB = "ftjob-000000000000000000000000"


@dataclass
class Service:
    url: str
    key: str
    db: Database
    store: Store

    def validate(self) -> None:
        """Validate waiting jobs' files now, and wait for those the server's own validator
        thread took (each validation is a child process: seconds)."""
        from preftune.service import queue
        from preftune.service.worker import validate_once

        while validate_once(self.db, self.store, "test-validator", 30.0):
            pass
        deadline = time.monotonic() + 120
        while queue.queue_counts(self.db)["validating_files"]:
            assert time.monotonic() < deadline, "the server's validator never finished"
            time.sleep(0.1)


def start(serving, tmp_path, monkeypatch, **options) -> Iterator[Service]:
    """A server on a fresh SQLite service; PREFTUNE_SERVER and PREFTUNE_API_KEY name it."""
    from preftune.service.app import create_app

    db = Database(f"sqlite:///{tmp_path / 'service.db'}")
    db.migrate()
    store = Store(tmp_path / "service")
    _, key = create_key(db, "alice", "team-a")
    try:
        with serving(create_app(db, store, **options)) as url:
            monkeypatch.setenv("PREFTUNE_SERVER", url)
            monkeypatch.setenv("PREFTUNE_API_KEY", key)
            yield Service(url, key, db, store)
    finally:
        db.dispose()


@pytest.fixture
def service(serving, tmp_path, monkeypatch):
    """No workers: the server's validator may queue jobs, but nothing trains them."""
    yield from start(serving, tmp_path, monkeypatch)


@pytest.fixture
def training_service(serving, tmp_path, monkeypatch):
    """One embedded worker that trains what is queued."""
    yield from start(serving, tmp_path, monkeypatch, embedded_workers=1,
                     worker_options={"lease_s": 10, "poll_s": 0.2, "grace_s": 10})


@pytest.fixture
def wandb_service(serving, tmp_path, monkeypatch):
    """No workers; alice's organization may send metrics to W&B."""
    config = ServiceConfig(tenants={"team-a": {"integrations": {"wandb": {}}}})
    yield from start(serving, tmp_path, monkeypatch, config=config)


def write_pairs(path, n: int, broken: int | None = None):
    """``n`` sample pairs as JSONL; record ``broken`` lacks its rejected response."""
    from preftune.data.sample import iter_samples

    with path.open("w", encoding="utf-8") as f:
        for i, s in enumerate(iter_samples(n, seed=5)):
            record = {"prompt": s.prompt, "chosen": s.responses[0],
                      "rejected": s.responses[1 + i % (len(s.responses) - 1)]}
            if i == broken:
                del record["rejected"]
            f.write(json.dumps(record) + "\n")
    return path


@pytest.fixture
def pairs(tmp_path):
    return write_pairs(tmp_path / "pairs.jsonl", 8)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip()


def create(cli, *args) -> str:
    """``jobs create --model tiny ARGS``; the job id (the line after any upload lines)."""
    r = cli("jobs", "create", "--model", "tiny", *args)
    assert r.code == 0, r.err
    return next(line for line in r.out.splitlines() if line.startswith("ftjob-"))


# ------------------------------------------------------------------------------------ files


def test_files_upload_list_get_content_delete(cli, service, pairs, tmp_path):
    r = cli("files", "upload", pairs)
    assert r.code == 0, r.err
    file_id, summary = r.out.strip().splitlines()
    assert file_id.startswith("file-")
    assert summary == f"{pairs.stat().st_size:,} bytes, pairs.jsonl"

    listed = cli("files", "list")
    assert file_id in listed.out and "pairs.jsonl" in listed.out
    assert "pairs.jsonl" in cli("files", "get", file_id).out
    assert json.loads(cli("files", "get", file_id, "--json").out)["bytes"] == \
        pairs.stat().st_size

    assert cli("files", "content", file_id).out == pairs.read_text(encoding="utf-8")
    copy = tmp_path / "copy" / "pairs.jsonl"
    assert cli("files", "content", file_id, "-o", copy).code == 0
    assert copy.read_bytes() == pairs.read_bytes()

    deleted = cli("files", "delete", file_id)
    assert (deleted.code, deleted.out.strip()) == (0, f"deleted {file_id}")
    gone = cli("files", "get", file_id)
    assert gone.code == ExitCode.USAGE
    assert file_id in gone.err and "hint: list them with: preftune files list" in gone.err
    assert "no files yet" in cli("files", "list").out


def test_uploading_what_is_not_data_exits_3(cli, service, tmp_path):
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"\x00\x01\x02")
    r = cli("files", "upload", blob)
    assert r.code == ExitCode.INVALID_DATA
    assert "error:" in r.err and "Traceback" not in r.err


# ------------------------------------------------------------------------------------- jobs


def test_jobs_create_with_a_training_file_sends_options_and_config(cli, service, pairs):
    file_id = first_line(cli("files", "upload", pairs).out)
    r = cli("jobs", "create", "--model", "tiny", "--training-file", file_id, "--beta", "0.2",
            "--n-epochs", "2", "--batch-size", "4", "--learning-rate-multiplier", "2",
            "--seed", "3", "--suffix", "mine", "--metadata", "team=search",
            "--metadata", "run=a", "logging_steps=1", "max_length=256", "max_prompt_length=64")
    assert r.code == 0, r.err
    job_id, status = r.out.strip().splitlines()[:2]
    assert job_id.startswith("ftjob-")
    assert status == "status: validating_files"
    assert f"preftune jobs wait {job_id}" in r.out

    job = json.loads(cli("jobs", "get", job_id, "--json").out)
    assert (job["training_file"], job["seed"], job["metadata"]) == \
        (file_id, 3, {"team": "search", "run": "a"})
    assert job["method"] == {"type": "dpo", "dpo": {"hyperparameters": {
        "beta": 0.2, "batch_size": 4, "n_epochs": 2, "learning_rate_multiplier": 2.0}}}
    assert (job["config"]["logging_steps"], job["config"]["max_length"]) == (1, 256)
    assert (job["config"]["epochs"], job["config"]["batch_size"]) == (2, 4)


def test_jobs_create_with_datasets_uploads_them_first(cli, service, pairs, tmp_path):
    evals = write_pairs(tmp_path / "eval.jsonl", 4)
    r = cli("jobs", "create", "--model", "tiny", "--dataset", pairs, "--eval-dataset", evals)
    assert r.code == 0, r.err
    lines = r.out.strip().splitlines()
    assert lines[0].startswith(f"uploaded {pairs} as file-")
    assert lines[1].startswith(f"uploaded {evals} as file-")
    job = json.loads(cli("jobs", "get", lines[2], "--json").out)
    assert job["training_file"] == lines[0].split()[3]
    assert job["validation_file"] == lines[1].split()[3]
    files = json.loads(cli("files", "list", "--json").out)["data"]
    assert sorted(f["filename"] for f in files) == ["eval.jsonl", "pairs.jsonl"]


def test_a_refused_create_removes_the_files_it_uploaded(cli, service, pairs):
    r = cli("jobs", "create", "--model", "tiny", "--dataset", pairs, "--eval-dataset", pairs,
            "beta=-1")
    assert r.code == ExitCode.USAGE
    assert r.out.count("uploaded ") == 2 and "beta" in r.err
    assert json.loads(cli("files", "list", "--json").out)["data"] == []


def test_jobs_create_json_and_idempotency_key(cli, service, pairs):
    file_id = first_line(cli("files", "upload", pairs).out)
    args = ("jobs", "create", "--model", "tiny", "--training-file", file_id,
            "--idempotency-key", "nightly-1", "--json")
    first, again = cli(*args), cli(*args)
    assert json.loads(first.out)["id"] == json.loads(again.out)["id"]


def test_jobs_list_get_events_and_controls(cli, service, pairs):
    file_id = first_line(cli("files", "upload", pairs).out)
    older = create(cli, "--training-file", file_id, "--metadata", "team=a")
    newer = create(cli, "--training-file", file_id, "--metadata", "team=b")

    listed = cli("jobs", "list")
    assert listed.code == 0
    header, *rows = listed.out.strip().splitlines()
    assert header.split() == ["id", "status", "model", "created", "finished",
                              "fine_tuned_model"]
    assert [row.split()[0] for row in rows] == [newer, older]
    only_a = cli("jobs", "list", "--metadata", "team=a").out
    assert older in only_a and newer not in only_a
    page = cli("jobs", "list", "--limit", "1").out
    assert newer in page and f"preftune jobs list --after {newer}" in page
    assert older in cli("jobs", "list", "--after", newer).out

    service.validate()
    summary = cli("jobs", "get", older).out
    for expected in (older, "queued", "tiny", file_id, "team=a", "dpo (batch_size"):
        assert expected in summary
    assert cli("jobs", "pause", older).out.strip() == f"{older}: paused"
    assert cli("jobs", "resume", older).out.strip() == f"{older}: queued"
    assert cli("jobs", "cancel", older).out.strip() == f"{older}: cancelled"
    again = cli("jobs", "cancel", older)
    assert again.code == ExitCode.USAGE and "nothing to cancel" in again.err

    events = cli("jobs", "events", older).out.strip().splitlines()
    assert events[0].endswith(f"Created fine-tuning job: {older}")
    assert events[-1].endswith("Fine-tuning job cancelled")
    assert [e.split("  ", 1)[1] for e in events[-3:]] == [
        "Fine-tuning job paused",
        "Fine-tuning job resumed; queued to continue from its last checkpoint",
        "Fine-tuning job cancelled"]
    assert len(cli("jobs", "events", older, "--limit", "2").out.strip().splitlines()) == 3
    assert cli("jobs", "checkpoints", older).out.strip() == f"no checkpoints of {older} yet"


def test_jobs_create_with_priority_and_wandb(cli, wandb_service, pairs):
    file_id = first_line(cli("files", "upload", pairs).out)
    r = cli("jobs", "create", "--model", "tiny", "--training-file", file_id, "--priority", "5",
            "--wandb-project", "prefs", "--wandb-name", "run-1", "--wandb-tag", "a",
            "--wandb-tag", "b", "--json")
    assert r.code == 0, r.err
    job = json.loads(r.out)
    assert job["priority"] == 5
    assert job["integrations"] == [{"type": "wandb", "wandb": {
        "project": "prefs", "name": "run-1", "entity": None, "tags": ["a", "b"]}}]
    assert job["config"]["report_to"] == ["wandb"]
    summary = cli("jobs", "get", job["id"]).out
    assert re.search(r"priority\s+5", summary) and "wandb prefs" in summary
    lonely = cli("jobs", "create", "--model", "tiny", "--training-file", file_id,
                 "--wandb-name", "x")
    assert lonely.code == ExitCode.USAGE and "need --wandb-project" in lonely.err


def test_jobs_delete_removes_an_ended_job(cli, service, pairs):
    file_id = first_line(cli("files", "upload", pairs).out)
    job_id = create(cli, "--training-file", file_id)
    unfinished = cli("jobs", "delete", job_id)
    assert unfinished.code == ExitCode.USAGE
    assert "only an ended job" in unfinished.err and "hint: cancel it first" in unfinished.err
    cli("jobs", "cancel", job_id)
    deleted = cli("jobs", "delete", job_id)
    assert (deleted.code, deleted.out.strip()) == (0, f"deleted {job_id}")
    gone = cli("jobs", "get", job_id)
    assert gone.code == ExitCode.USAGE and job_id in gone.err
    assert "no jobs yet" in cli("jobs", "list").out


def test_errors_are_lines_with_hints_and_exit_2(cli, service, pairs, monkeypatch):
    file_id = first_line(cli("files", "upload", pairs).out)
    cases = [
        (("jobs", "get", NO_JOB), NO_JOB),
        (("jobs", "events", NO_JOB), NO_JOB),
        (("jobs", "create", "--model", "tiny"), "--training-file ID or --dataset PATH"),
        (("jobs", "create", "--model", "tiny", "--training-file", file_id, "--dataset",
          "x.jsonl"), "name the training data once"),
        (("jobs", "create", "--model", "tiny", "--training-file", file_id, "sparkle=1"),
         "unknown option 'sparkle'"),
        (("jobs", "create", "--model", "tiny", "--training-file", file_id, "beta=-1"),
         "beta"),
        (("jobs", "create", "--model", "tiny", "--training-file", file_id, "--method",
          "sparkle"), "sparkle"),
        (("jobs", "create", "--model", "tiny", "--training-file", file_id, "--wait",
          "--json"), "--json and --wait do not go together"),
        (("jobs", "list", "--metadata", "no-equals-sign"), "expected key=value"),
    ]
    for args, expected in cases:
        r = cli(*args)
        assert r.code == ExitCode.USAGE, (args, r.err)
        assert r.err.startswith("error:") and expected in r.err, (args, r.err)
        assert "Traceback" not in r.err

    monkeypatch.setenv("PREFTUNE_API_KEY", "pt-wrong")
    bad_key = cli("jobs", "list")
    assert bad_key.code == ExitCode.USAGE
    assert "hint: set PREFTUNE_API_KEY or pass --api-key" in bad_key.err
    monkeypatch.delenv("PREFTUNE_API_KEY")
    no_key = cli("files", "list")
    assert no_key.code == ExitCode.USAGE and "no API key" in no_key.err


def test_a_server_that_is_not_running_is_named_in_the_error(cli, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("PREFTUNE_API_KEY", "pt-any")
    r = cli("jobs", "list", "--server", url)
    assert r.code == ExitCode.USAGE
    assert f"cannot reach the preftune server at {url}" in r.err
    assert "hint: start one with: preftune serve" in r.err


def test_flags_win_over_the_environment(cli, service, monkeypatch):
    monkeypatch.setenv("PREFTUNE_SERVER", "http://127.0.0.1:9")
    monkeypatch.setenv("PREFTUNE_API_KEY", "pt-wrong")
    r = cli("files", "list", "--server", service.url + "/v1", "--api-key", service.key)
    assert (r.code, r.out.strip()) == (0, "no files yet; upload one with: preftune files "
                                          "upload PATH")


# ------------------------------------------------------------------------------- jobs wait


def test_wait_on_a_cancelled_job_exits_1(cli, service, pairs):
    job_id = create(cli, "--dataset", pairs)
    cli("jobs", "cancel", job_id)
    r = cli("jobs", "wait", job_id, "--poll", "0.1")
    assert r.code == ExitCode.TRAINING_FAILED, r.err
    assert f"error: job {job_id} was cancelled before it finished" in r.err
    assert "Fine-tuning job cancelled" in r.out


def test_wait_gives_up_at_the_timeout_and_says_the_job_goes_on(cli, service, pairs):
    job_id = create(cli, "--dataset", pairs)
    started = time.monotonic()
    r = cli("jobs", "wait", job_id, "--poll", "0.1", "--timeout", "1")
    assert 1 <= time.monotonic() - started < 10
    assert r.code == ExitCode.TRAINING_FAILED
    assert re.search(rf"error: job {job_id} is still (validating_files|queued) after 1 s", r.err)
    assert f"hint: it goes on; follow it again with: preftune jobs wait {job_id}" in r.err
    assert r.out.count(f"Created fine-tuning job: {job_id}") == 1


def test_wait_on_a_job_with_a_bad_record_exits_3_naming_it(cli, training_service, tmp_path):
    bad = write_pairs(tmp_path / "bad.jsonl", 8, broken=3)
    r = cli("jobs", "create", "--model", "tiny", "--dataset", bad, "--wait", "--poll", "0.1",
            "--timeout", "60")
    assert r.code == ExitCode.INVALID_DATA, r.err
    assert r.err.startswith("error: file-") and "1 problem found" in r.err
    assert "record 3: missing required field 'rejected'" in r.err
    assert "Traceback" not in r.err


@pytest.mark.slow
def test_wait_follows_training_to_success(cli, training_service, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", 32)
    job_id = create(cli, "--dataset", data, "grad_accum=1", "batch_size=8", "epochs=1",
                    "max_length=256", "max_prompt_length=128", "logging_steps=1")
    r = cli("jobs", "wait", job_id, "--poll", "0.2", "--timeout", "400")
    assert r.code == 0, r.out + r.err
    steps = [line for line in r.out.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in steps] == ["step 1", "step 2", "step 3", "step 4"]
    assert all(" loss " in line and " acc " in line for line in steps)
    lines = r.out.splitlines()
    order = [next(i for i, line in enumerate(lines) if text in line) for text in (
        f"Created fine-tuning job: {job_id}", "Files validated", "Fine-tuning job started",
        "step 1:", "step 4:", "Checkpoint step-4 saved at step 4",
        "The job has successfully completed")]
    assert order == sorted(order)
    assert r.out.count("Fine-tuning job started (attempt 1") == 1  # each event once
    assert f"succeeded: {job_id} -> fine-tuned model ft:tiny:preftune:{job_id}" in r.out

    checkpoints = cli("jobs", "checkpoints", job_id).out
    assert f"ft:tiny:preftune:{job_id}:ckpt-step-4" in checkpoints
    job = json.loads(cli("jobs", "get", job_id, "--json").out)
    rows = [json.loads(line) for line in
            cli("files", "content", job["result_files"][0]).out.splitlines()]
    assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3, 4]

    # The model and a checkpoint come back over HTTP, unpacked and loadable.
    got = cli("jobs", "download", job_id, "--output", tmp_path / "dl")
    assert got.code == 0, got.err
    final = tmp_path / "dl" / f"{job_id}-final"
    assert f"model: {final}" in got.out.replace("\n", "")
    assert (final / "adapter_config.json").exists() and (final / "tokenizer_config.json").exists()
    generated = cli("generate", final, "--prompt", "Hello", "--max-new-tokens", "4")
    assert generated.code == 0, generated.err
    ckpt = json.loads(cli("jobs", "checkpoints", job_id, "--json").out)["data"][0]
    got = cli("jobs", "download", job_id, "--checkpoint", ckpt["id"], "--output", tmp_path / "dl")
    assert got.code == 0, got.err
    assert (tmp_path / "dl" / f"{job_id}-step-4" / "adapter_model.safetensors").exists()
    missing = cli("jobs", "download", job_id, "--checkpoint", "ftckpt-000000000000000000000000",
                  "--output", tmp_path / "dl")
    assert missing.code == 2 and "no checkpoint" in missing.err


@pytest.mark.parametrize(("code", "exit_code"), [
    ("invalid_training_file", ExitCode.INVALID_DATA),
    ("invalid_validation_file", ExitCode.INVALID_DATA),
    ("out_of_memory", ExitCode.OUT_OF_MEMORY),
    ("model_not_found", ExitCode.MISSING),
    ("invalid_config", ExitCode.USAGE),
    ("training_failed", ExitCode.TRAINING_FAILED),
    ("worker_lost", ExitCode.TRAINING_FAILED),
])
def test_a_failed_jobs_error_code_picks_the_exit_code(code, exit_code):
    job = {"id": "ftjob-1", "status": "failed",
           "error": {"code": code, "param": None,
                     "message": "it broke\n  at record 2\nhint: fix record 2"}}
    error = outcome_error(job)
    assert error is not None and error.exit_code == exit_code
    assert (error.message, error.details) == ("it broke", ["at record 2"])
    assert error.hints[0] == "fix record 2"
    assert outcome_error({**job, "status": "succeeded", "error": None}) is None


def test_total_steps_from_the_epoch_fraction_of_a_metrics_row():
    job = {"hyperparameters": {"n_epochs": 2}, "config": {"epochs": 2, "max_steps": None}}
    assert total_steps({"step": 1, "epoch": 0.25}, job) == 8  # 4 steps an epoch, 2 epochs
    assert total_steps({"step": 3, "epoch": 1.5}, job) == 4
    assert total_steps({"step": 1, "epoch": 0.25},
                       {**job, "config": {"max_steps": 5}}) == 5
    assert total_steps({"step": 1}, job) is None


def test_on_a_terminal_steps_move_a_bar_instead_of_printing_lines(monkeypatch):
    import io

    from rich.console import Console

    from preftune.cli import jobs

    screen = Console(file=io.StringIO(), force_terminal=True, width=100, highlight=False)
    monkeypatch.setattr(jobs, "out", screen)
    job = {"hyperparameters": {"n_epochs": 1}, "config": {}}
    with jobs.StepDisplay() as display:
        display.metrics({"step": 1, "epoch": 0.25, "loss": 0.69, "accuracy": 0.5}, job)
        display.metrics({"step": 2, "epoch": 0.5, "loss": 0.6, "accuracy": 0.75}, job)
        task = display.progress.tasks[0]
        assert (task.completed, task.total) == (2, 4)
        assert task.fields["status"] == "loss 0.6000 acc 0.75"
        display.metrics({"step": 2, "epoch": 0.5, "eval/loss": 0.5, "eval/accuracy": 1.0}, job)
    shown = screen.file.getvalue()
    assert "eval at step 2: loss 0.5000 acc 1.00" in shown
    assert "step 1: loss" not in shown


def test_jobs_create_a_reinforcement_job_with_a_grader_file(cli, service, tmp_path):
    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{i}+1?"}],
                                        "answer": str(i + 1)}) + "\n" for i in range(4)))
    grader = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "operation": "eq"}
    (tmp_path / "grader.json").write_text(json.dumps(grader))
    (tmp_path / "grader.yaml").write_text("type: string_check\nname: y\ninput: a\n"
                                          "reference: b\noperation: like\n")
    job_id = create(cli, "--dataset", data, "--method", "reinforcement", "--grader",
                    tmp_path / "grader.json", "--n-epochs", "2", "--eval-interval", "3",
                    "--compute-multiplier", "2", "kl_coef=0.05", "max_tokens=16")
    job = json.loads(cli("jobs", "get", job_id, "--json").out)
    assert job["method"]["type"] == "reinforcement"
    assert job["method"]["reinforcement"]["grader"] == grader
    hyper = job["method"]["reinforcement"]["hyperparameters"]
    assert (hyper["n_epochs"], hyper["eval_interval"], hyper["compute_multiplier"]) == (2, 3, 2)
    assert (job["config"]["kl_coef"], job["config"]["max_tokens"],
            job["config"]["group_size"]) == (0.05, 16, 8)
    assert create(cli, "--dataset", data, "--method", "reinforcement", "--grader",
                  tmp_path / "grader.yaml").startswith("ftjob-")

    r = cli("jobs", "create", "--model", "tiny", "--dataset", data, "--method",
            "reinforcement")
    assert r.code == 2 and "needs a grader" in r.err
    r = cli("jobs", "create", "--model", "tiny", "--dataset", data, "--grader",
            tmp_path / "grader.json")
    assert r.code == 2 and "--grader belong to --method reinforcement" in r.err
    r = cli("jobs", "create", "--model", "tiny", "--dataset", data, "--method",
            "reinforcement", "--grader", tmp_path / "grader.json", "batch_size=3")
    assert r.code == 2 and "batch_size is set by the server" in r.err
