"""The local dashboard in a real browser (headless Chromium): the runs list with a finished, a
failed and a still-training run, the live run's loss chart gaining points while the test
watches, compare with the better run marked, a run page by keyboard, chat, and phone width.
Screenshots of each page go to test-artifacts/screenshots/."""

import shutil
import signal
import subprocess
import sys
import time

import pytest

from preftune.dashboard.app import create_app
from preftune.rundir import RunDir

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def watched(experiments, sample_pairs, tmp_path_factory, serving):
    """A copy of ``experiments`` plus ``live``, a run training in another process, and the
    dashboard over it: yields (base URL, root)."""
    root = tmp_path_factory.mktemp("watched") / "experiments"
    shutil.copytree(experiments, root)
    live = subprocess.Popen(
        [sys.executable, "-m", "preftune", "train", "--dataset", str(sample_pairs),
         "--output-dir", str(root / "live"), "--epochs", "60", "--batch-size", "2",
         "grad_accum=1", "logging_steps=1", "learning_rate=1e-3", "max_length=256",
         "max_prompt_length=128"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while len(RunDir(root / "live").metrics()) < 2:
            assert live.poll() is None, "the live run ended before it logged"
            assert time.monotonic() < deadline, "the live run logged nothing in 90 s"
            time.sleep(0.5)
        with serving(create_app([root])) as url:
            yield url, root
    finally:
        live.send_signal(signal.SIGTERM)
        try:
            live.wait(timeout=60)
        except subprocess.TimeoutExpired:
            live.kill()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def _points(page, chart):
    return int(page.locator(f'[data-chart="{chart}"] svg').get_attribute("data-points"))


def _no_sideways_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_the_list_shows_finished_failed_and_running_runs(watched, page, screenshots):
    url, _ = watched
    page.goto(url + "/")
    page.wait_for_selector('tr[data-run="live"]')
    status = {run: page.locator(f'tr[data-run="{run}"]').get_attribute("data-status")
              for run in ("good", "broken", "live")}
    assert status == {"good": "finished", "broken": "failed", "live": "running"}
    good = page.locator('tr[data-run="good"]').inner_text()
    assert "dpo" in good and "tiny" in good and "lr 0.002" in good
    assert "the tracker broke at step 3" in page.locator('tr[data-run="broken"]').inner_text()
    assert page.get_by_role("heading", name="Sweep sweep-lr").is_visible()
    page.screenshot(path=screenshots / "dashboard-runs.png", full_page=True)

    page.set_viewport_size(PHONE)
    page.reload()
    page.wait_for_selector('tr[data-run="live"]')
    assert _no_sideways_scroll(page)
    page.screenshot(path=screenshots / "dashboard-runs-phone.png", full_page=True)


def test_a_running_runs_loss_chart_gains_points_without_reloading(watched, page, screenshots):
    url, root = watched
    page.goto(f"{url}/run?id=live")
    page.wait_for_selector('[data-chart="loss"] svg')
    assert page.locator("#run-status").inner_text() == "running"
    before = _points(page, "loss")
    deadline = time.monotonic() + 30
    while _points(page, "loss") <= before:
        assert time.monotonic() < deadline, f"the loss chart stayed at {before} points"
        page.wait_for_timeout(500)
    logged = len([r for r in RunDir(root / "live").metrics() if "loss" in r])
    assert before < _points(page, "loss") <= logged
    page.screenshot(path=screenshots / "dashboard-run-live.png", full_page=True)


def test_a_finished_run_page_by_keyboard(watched, page, screenshots):
    url, root = watched
    page.goto(f"{url}/run?id=good")
    page.wait_for_selector("#verdict")
    assert page.locator("#run-status").inner_text() == "finished"
    assert _points(page, "accuracy") > 0 and _points(page, "loss") > 0
    eval_markers = page.locator('[data-chart="loss"] g[data-name="eval/loss"] circle')
    evaluated = [r for r in RunDir(root / "good").metrics() if "eval/loss" in r]
    assert evaluated and eval_markers.count() == len(evaluated)
    assert page.locator("#checkpoints tr").count() == 1 + 4 + 1  # header, 4 saved, final
    assert page.locator("#card summary").is_visible()

    # Keyboard only: tab to the log-scale box and tick it; the loss axis changes scale.
    page.locator("#smoothing").focus()
    page.keyboard.press("ArrowLeft")
    assert page.locator("#smoothing-value").inner_text() == "0.59"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "log"
    linear = page.locator('[data-chart="loss"] .chart-axis').text_content()
    page.keyboard.press("Space")
    assert page.locator('[data-chart="loss"] .chart-axis').text_content() != linear
    # The chart's readout follows the arrow keys.
    page.locator('[data-chart="loss"] svg').focus()
    page.keyboard.press("End")
    assert page.locator('[data-chart="loss"] .chart-readout').inner_text().startswith("step 12")
    page.screenshot(path=screenshots / "dashboard-run-finished.png", full_page=True)

    page.set_viewport_size(PHONE)
    page.reload()
    page.wait_for_selector("#verdict")
    assert _no_sideways_scroll(page)
    page.screenshot(path=screenshots / "dashboard-run-phone.png", full_page=True)


def test_compare_overlays_two_runs_and_marks_the_better(watched, page, screenshots):
    url, _ = watched
    page.goto(url + "/")
    page.wait_for_selector('tr[data-run="weak"]')
    page.get_by_label("select good to compare").check()
    page.get_by_label("select weak to compare").check()
    page.get_by_role("button", name="Compare selected").click()
    page.wait_for_selector('#comparison tr[data-best="true"]')
    assert page.locator('#comparison tr[data-best="true"]').get_attribute("data-run") == "good"
    assert page.locator("#sentence").inner_text().startswith("best by eval/accuracy: good")
    page.wait_for_selector('[data-chart="loss"] g[data-name="weak"]', state="attached")
    legend = page.locator('[data-chart="loss"] .legend-item').all_inner_texts()
    assert sorted(legend) == ["good ★", "weak"]
    page.screenshot(path=screenshots / "dashboard-compare.png", full_page=True)


def test_chat_with_a_run_beside_its_base_model(watched, page, screenshots):
    url, _ = watched
    page.goto(f"{url}/chat?id=good")
    page.wait_for_function("document.querySelector('#checkpoint').options.length > 1")
    page.fill("#max-tokens", "8")
    page.locator("#message").fill("What is a preference pair?")
    page.locator("#message").press("Control+Enter")
    page.wait_for_selector('#base .msg[data-role="assistant"]', timeout=60_000)
    assert page.locator('#tuned .msg[data-role="assistant"]').count() == 1
    assert page.locator('#tuned .msg[data-role="user"]').inner_text().endswith(
        "What is a preference pair?")
    assert "[error]" not in page.locator("#tuned").inner_text()
    page.screenshot(path=screenshots / "dashboard-chat.png", full_page=True)
