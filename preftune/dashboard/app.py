"""``preftune dashboard``: a read-only web view of run directories.

Pages (static HTML and ES modules from ``preftune.web``) ask this app for JSON:

    GET  /api/runs                    every run found, summarised; sweeps and their runs
    GET  /api/run?id=                 one run: summary, diagnosis, config, checkpoints, card
    GET  /api/metrics?id=&after=N     metrics rows from row N on (pages poll it while it runs)
    GET  /api/compare?id=&id=&metric= the ``preftune compare`` table of the runs, best marked
    POST /api/chat                    one reply of a run's model (or its base) to a conversation

Nothing is written into the run directories: a running run's diagnosis is computed, not saved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from preftune.dashboard import runs
from preftune.dashboard.chat import Chats
from preftune.errors import PreftuneError, UsageError
from preftune.runs.compare import best_sentence, compare_runs, table_rows
from preftune.web import STATIC

PAGES = {"/": "index.html", "/run": "run.html", "/compare": "compare.html",
         "/chat": "chat.html"}
STATUS_BY_ERROR = {"UsageError": 400, "ConfigError": 400, "MissingError": 404,
                   "DataError": 400}


class NotFound(PreftuneError):
    """No run with that id under the dashboard's directories."""


class Message(BaseModel):
    role: str = Field(pattern="^(system|user|assistant)$")
    content: str = Field(max_length=20_000)


class ChatRequest(BaseModel):
    id: str
    checkpoint: str | None = Field(None, description="A checkpoint name; none: final/ "
                                   "(or the newest checkpoint while the run trains)")
    base: bool = Field(False, description="Answer with the run's base model instead")
    messages: list[Message] = Field(min_length=1, max_length=64)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(128, ge=1, le=2048)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)


def create_app(dirs: Sequence[Path]) -> FastAPI:
    """The dashboard over the runs under ``dirs``."""
    roots = [Path(d) for d in dirs]
    chats = Chats()
    app = FastAPI(title="preftune dashboard", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def find(run_id: str) -> runs.Found:
        found = runs.scan(roots).get(run_id)
        if found is None:
            raise NotFound(f"no run {run_id!r} under {', '.join(str(r) for r in roots)}",
                           ["the runs list shows the runs the dashboard can see"])
        return found

    for route, page in PAGES.items():
        app.add_api_route(route, _page(page), methods=["GET"], include_in_schema=False)

    @app.get("/api/runs")
    def list_runs() -> dict[str, Any]:
        found = runs.scan(roots)
        rows = [runs.summary(f) for f in found.values()]
        rows.sort(key=lambda r: -(r["updated"] or 0))
        sweeps: dict[str, list[str]] = {}
        for f in found.values():
            if f.sweep is not None:
                sweeps.setdefault(f.sweep, []).append(f.id)
        return {"dirs": [str(r) for r in roots], "runs": rows,
                "sweeps": [{"id": s, "name": Path(s).name, "runs": ids}
                           for s, ids in sorted(sweeps.items())]}

    @app.get("/api/run")
    def run_details(id: str) -> dict[str, Any]:
        return _finite(runs.details(find(id)))

    @app.get("/api/metrics")
    def metrics(id: str, after: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        return _finite(runs.metrics_since(find(id), after))

    @app.get("/api/compare")
    def compare(id: Annotated[list[str], Query()],
                metric: str = "eval/accuracy") -> dict[str, Any]:
        chosen = [find(i) for i in dict.fromkeys(id)]
        if len(chosen) < 2:
            raise UsageError("pick two runs or more to compare",
                                  ["tick runs in the list, then Compare"])
        by_path = {f.path.resolve(): f.id for f in chosen}
        comparison = compare_runs([f.path for f in chosen], metric)
        headers, table = table_rows(comparison)
        out = comparison.to_dict()
        for row in out["runs"]:
            row["id"] = by_path.get(Path(row["path"]).resolve())
        best = comparison.best
        return _finite({**out, "best_id": by_path.get(best.path.resolve()) if best else None,
                        "sentence": best_sentence(comparison),
                        "table": {"headers": headers, "rows": table}})

    @app.post("/api/chat")
    def chat(body: ChatRequest) -> dict[str, Any]:
        found = find(body.id)
        messages = [m.model_dump() for m in body.messages]
        if body.base:
            config = runs.config_record(found.path).get("config") or {}
            source: str | Path = str(config.get("model") or config.get("model_name") or "")
            if not source:
                raise UsageError(f"run {body.id} names no base model in config.json")
            checkpoint = None
        else:
            source, checkpoint = found.path, body.checkpoint
        text = chats.reply(source, checkpoint, messages, body.temperature, body.max_tokens,
                           body.seed)
        return {"text": text, "model": str(source) if body.base else
                f"{body.id} ({checkpoint or 'final'})"}

    @app.exception_handler(PreftuneError)
    async def failed(request: Request, e: PreftuneError) -> JSONResponse:
        status = 404 if isinstance(e, NotFound) else STATUS_BY_ERROR.get(type(e).__name__, 500)
        return JSONResponse({"error": {"message": str(e), "type": type(e).__name__},
                             "hints": list(e.hints)}, status_code=status)

    return app


def _page(name: str) -> Any:
    def page() -> FileResponse:
        return FileResponse(STATIC / "local" / name, media_type="text/html")
    return page


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a run that diverged logs them; send them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
