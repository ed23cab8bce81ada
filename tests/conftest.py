"""Suite-wide: built artefacts (the tiny model, reference caches) go to a temporary cache."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from preftune.cli.common import state
from preftune.cli.main import main


@pytest.fixture(scope="session", autouse=True)
def preftune_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("preftune-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("PREFTUNE_CACHE", str(cache))
    yield cache
    patch.undo()


@pytest.fixture(scope="session")
def sample_pairs(tmp_path_factory):
    """64 flat sample pairs (seed 5) as JSONL: small enough to train on in seconds."""
    from preftune.data.sample import iter_samples

    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i, s in enumerate(iter_samples(64, seed=5)):
            record = {"prompt": s.prompt, "chosen": s.responses[0],
                      "rejected": s.responses[1 + i % (len(s.responses) - 1)],
                      "category": s.category}
            f.write(json.dumps(record) + "\n")
    return path


@pytest.fixture(scope="session")
def trained_run(sample_pairs, tmp_path_factory):
    """A LoRA DPO run of the tiny model on ``sample_pairs`` (3 epochs, 24 steps)."""
    from preftune.config import TrainConfig
    from preftune.engine.loop import train

    run = tmp_path_factory.mktemp("runs") / "dpo"
    train(TrainConfig(dataset=str(sample_pairs), output_dir=str(run), epochs=3, batch_size=8,
                      grad_accum=1, learning_rate=2e-3, warmup_steps=2, max_length=256,
                      max_prompt_length=128, logging_steps=4))
    return run


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(capsys):
    """Run the preftune command in-process; returns exit code, stdout and stderr."""

    def run(*args: str) -> Result:
        state.verbose = False
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@contextmanager
def _serving(app) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread; yield its base URL (no /v1)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def serving():
    """``with serving(app) as url``: the app under uvicorn on a free local port."""
    return _serving


CHROMIUM = "/usr/bin/chromium"  # Debian's package, which the test command installs


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright, for the pages' browser tests. Per module:
    Playwright's sync API runs an event loop in the main thread while it is open, and tests
    after the browser tests call asyncio.run."""
    import os

    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package "
                    "(apt-get install chromium), as the README's test command does")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots():
    """Where the browser tests save screenshots of each page: test-artifacts/screenshots/
    in the repository (kept out of git), for a person to look at after the run."""
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def letter_counts(text: str) -> list[float]:
    """A stand-in embedding: how often each of a-z occurs in the text (hand-workable)."""
    lower = text.lower()
    return [float(lower.count(chr(c))) for c in range(ord("a"), ord("z") + 1)]


@dataclass
class Embeddings:
    """An OpenAI-compatible ``/v1/embeddings`` stand-in under uvicorn, embedding by
    ``letter_counts``; ``seen`` holds each request's (authorization header, body)."""

    base_url: str
    seen: list[tuple[str | None, dict]]


@pytest.fixture
def embeddings(serving):
    from fastapi import FastAPI, Request

    app = FastAPI()
    seen: list[tuple[str | None, dict]] = []

    @app.post("/v1/embeddings")
    async def embed(request: Request) -> dict:
        body = await request.json()
        seen.append((request.headers.get("authorization"), body))
        return {"object": "list", "model": body["model"],
                "data": [{"object": "embedding", "index": i, "embedding": letter_counts(t)}
                         for i, t in enumerate(body["input"])][::-1]}  # any order, by index

    with serving(app) as url:
        yield Embeddings(f"{url}/v1", seen)
