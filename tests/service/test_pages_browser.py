"""The job service's pages in headless Chromium, against a real ``preftune serve`` (SQLite, one
embedded worker, two tenants): sign-in, a bad file's report, a good file's, the estimate, a
DPO job on tiny watched to ``succeeded`` with its curves, a checkpoint downloaded, the phone
width, and another tenant who sees none of it. Screenshots of each page go to ``screenshots``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

BAD = ('{"prompt": "q0", "chosen": "yes", "rejected": "no"}\n'
       '{"prompt": "q1", "chosen": 42, "rejected": "no"}\n'
       '{"prompt": "q2", "chosen": "yes"}\n')
# Training settings the form is given: two optimizer steps, a checkpoint after each.
TINY = {"epochs": "1", "max_steps": "2", "grad_accum": "1", "batch_size": "2",
        "max_length": "128", "max_prompt_length": "64", "logging_steps": "1", "save_steps": "1"}
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path):
    """``preftune serve`` with one worker: (base URL, alice's key, bob's key)."""
    from preftune.service.auth import create_key
    from preftune.service.db import Database

    url = f"sqlite:///{tmp_path / 'service.db'}"
    db = Database(url)
    db.migrate()
    alice = create_key(db, "alice", "team-a")[1]
    bob = create_key(db, "bob", "team-b")[1]
    db.dispose()
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "preftune", "serve", "--port", str(port), "--workers", "1",
         "--database-url", url, "--service-dir", str(tmp_path / "service")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield base, alice, bob
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def pairs(path: Path, n: int = 8) -> Path:
    from preftune.data.sample import iter_samples

    path.write_text("".join(json.dumps({"prompt": s.prompt, "chosen": s.responses[0],
                                        "rejected": s.responses[1]}) + "\n"
                            for s in iter_samples(n, seed=3)), encoding="utf-8")
    return path


def no_horizontal_scroll(page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= "
                              "document.documentElement.clientWidth"))


def sign_in(page, key: str) -> None:
    """Sign in with the keyboard alone: the key field has focus, Enter submits."""
    page.wait_for_selector("#api-key:focus")
    page.keyboard.type(key)
    page.keyboard.press("Enter")


def test_a_tenant_launches_and_watches_a_job_another_sees_none_of_it(
        server, browser, screenshots, tmp_path):
    from playwright.sync_api import expect

    base, alice, bob = server
    bad = tmp_path / "bad.jsonl"
    bad.write_text(BAD, encoding="utf-8")
    good = pairs(tmp_path / "good.jsonl")
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)

    # Sign-in: a wrong key shows the 401's message; the right one opens the jobs list.
    page.goto(f"{base}/ui/")
    sign_in(page, "pt-not-a-key")
    expect(page.locator("#key-error")).to_contain_text("not valid")
    page.screenshot(path=screenshots / "service-sign-in.png", full_page=True)
    page.fill("#api-key", "")
    sign_in(page, alice)
    expect(page.locator("#no-jobs")).to_be_visible()

    # New job: a bad file's report locates each problem by record, line and field.
    page.click("text=New job")
    page.set_input_files("#training-upload", str(bad))
    problems = page.locator("#training-problems tbody tr")
    expect(problems).to_have_count(2)
    expect(problems.nth(0)).to_contain_text("1")
    assert [problems.nth(i).locator("td").all_inner_texts()[:3] for i in range(2)] == [
        ["1", "2", "chosen"], ["2", "3", "rejected"]]
    expect(page.locator("#training-verdict")).to_contain_text("2 problems")
    page.screenshot(path=screenshots / "service-new-job-bad-file.png", full_page=True)

    # A good file; options the server refuses are shown under their field.
    page.set_input_files("#training-upload", str(good))
    expect(page.locator("#training-verdict")).to_contain_text("Valid")
    for name, value in TINY.items():
        page.fill(f"#hp-{name}", value)
    page.fill("#hp-learning_rate", "2")
    page.click("#estimate-button")
    expect(page.locator("#err-learning_rate")).to_contain_text("learning_rate")
    page.fill("#hp-learning_rate", "0.001")
    page.click("#estimate-button")
    expect(page.locator("#estimate-steps")).to_contain_text("2 (", timeout=60_000)
    expect(page.locator("#err-learning_rate")).to_be_empty()
    page.screenshot(path=screenshots / "service-new-job-estimate.png", full_page=True)

    # Submit: the job page follows it to succeeded, curves drawn, checkpoints listed.
    page.click("#submit-button")
    page.wait_for_url("**/ui/#/jobs/ftjob-*")
    job_id = page.url.rsplit("/", 1)[-1]
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    loss = page.locator('[data-chart="loss"] svg')
    expect(loss).to_have_attribute("data-points", "2")
    expect(page.locator("#cancel-job")).to_be_disabled()
    expect(page.locator("#download-model")).to_be_visible()
    expect(page.locator("#events")).to_contain_text("successfully completed")
    page.screenshot(path=screenshots / "service-job.png", full_page=True)
    with page.expect_download() as downloading:
        page.locator(".download-checkpoint").first.click()
    archive = Path(downloading.value.path()).read_bytes()
    assert archive[:2] == b"\x1f\x8b"  # gzip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert any(name.endswith("adapter_config.json") for name in tar.getnames())

    # The model, by keyboard alone: Tab from the top of the page to its button, then Enter.
    page.reload()
    expect(page.locator("#job-status")).to_have_text("succeeded")
    with page.expect_download() as downloading:
        for _ in range(30):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "download-model":
                break
        else:
            pytest.fail("Tab never reaches the model's download button")
        page.keyboard.press("Enter")
    assert Path(downloading.value.path()).read_bytes()[:2] == b"\x1f\x8b"

    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)  # the charts redraw for their new width
    assert no_horizontal_scroll(page)
    page.screenshot(path=screenshots / "service-job-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)

    # A second job, cancelled from its page before it trains.
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {alice}"}) as http:
        file_id = http.get("/v1/files", params={"purpose": "fine-tune"}).json()["data"][0]["id"]
        created = http.post("/v1/fine_tuning/jobs", json={
            "model": "tiny", "training_file": file_id,
            "config": {"max_steps": 500, "max_length": 128, "max_prompt_length": 64}})
        assert created.status_code == 200, created.text
        second = created.json()
    page.goto(f"{base}/ui/#/jobs/{second['id']}")
    page.click("#cancel-job")
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=60_000)
    expect(page.locator("#resume-job")).to_be_disabled()
    expect(page.locator("#download-model")).to_be_hidden()

    page.click("#nav >> text=Jobs")
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text("100%")
    page.screenshot(path=screenshots / "service-jobs.png", full_page=True)

    # Tenant B sees none of A's jobs or files, in the pages or through the API.
    page.click("#sign-out")
    sign_in(page, bob)
    expect(page.locator("#no-jobs")).to_be_visible()
    page.screenshot(path=screenshots / "service-jobs-other-tenant.png", full_page=True)
    status = page.evaluate(
        "async (id) => (await fetch(`/v1/fine_tuning/jobs/${id}`, {headers: {Authorization: "
        "`Bearer ${sessionStorage.getItem('preftune-api-key')}`}})).status", job_id)
    assert status == 404
    page.click("text=New job")
    expect(page.locator("#training_file option")).to_have_count(1)  # "choose a file…" only
    page.set_viewport_size(PHONE)
    assert no_horizontal_scroll(page)
    page.screenshot(path=screenshots / "service-new-job-phone.png", full_page=True)
    context.close()
