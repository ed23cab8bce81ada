"""A stand-in for ``vllm serve`` with run-time LoRA loading, for testing the vLLM path on a CPU.

It answers vLLM's adapter endpoints the way vLLM does: the request fields, the status codes
and error bodies, the ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` switch (without it the routes do not
exist), ``--max-lora-rank``, ``load_inplace``, and a 404 for a completion asking for a model
name that is neither the base model nor a loaded adapter. ``--legacy`` answers as vLLM did
before ``load_inplace`` existed (flat error bodies, the field ignored).

Generation is preftune's own inference server: each loaded adapter is copied into that
server's weights directory, which it loads before its next batch, so completions come from
the adapter the trainer published. Unlike vLLM it has one set of weights, which answers for
the base name and the adapter name alike.

    python tests/rl/vllm_standin.py serve tiny --port 9001 --enable-lora --max-lora-rank 16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from preftune.rl.inference import create_app


def create_standin(model: str, *, enable_lora: bool = True, max_lora_rank: int = 16,
                   legacy: bool = False, runtime_updates: bool | None = None) -> FastAPI:
    if runtime_updates is None:
        runtime_updates = os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").lower() in (
            "1", "true")
    weights = Path(tempfile.mkdtemp(prefix="vllm-standin-"))
    app = create_app(model, weights_dir=weights, seed=0)
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") != "/v1/models"]
    loras: dict[str, str] = {}
    loads: list[dict[str, Any]] = []
    app.state.standin = {"loras": loras, "loads": loads, "runtime_updates": runtime_updates}

    def error(message: str, kind: str, status: int) -> JSONResponse:
        if legacy:
            return JSONResponse({"object": "error", "message": message, "type": kind,
                                 "param": None, "code": status}, status_code=status)
        return JSONResponse({"error": {"message": message, "type": kind, "param": None,
                                       "code": status}}, status_code=status)

    def not_found() -> JSONResponse:  # what FastAPI answers for a route vLLM did not add
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    @app.middleware("http")
    async def known_models(request: Request, call_next: Any) -> Response:
        if request.method == "POST" and request.url.path.endswith("completions"):
            try:
                name = json.loads(await request.body()).get("model")
            except (ValueError, AttributeError):
                name = None
            if name not in (model, *loras):
                return error(f"The model `{name}` does not exist.", "NotFoundError", 404)
        response: Response = await call_next(request)
        return response

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        cards = [{"id": model, "object": "model", "root": model, "parent": None}]
        cards += [{"id": n, "object": "model", "root": p, "parent": model}
                  for n, p in loras.items()]
        return {"object": "list", "data": cards}

    @app.post("/v1/load_lora_adapter", response_model=None)
    async def load(request: Request) -> Response:
        if not app.state.standin["runtime_updates"]:
            return not_found()
        body = await request.json()
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return error("Both 'lora_name' and 'lora_path' must be provided.",
                         "InvalidUserInput", 400)
        inplace = bool(body.get("load_inplace")) and not legacy and name in loras
        if name in loras and not inplace:
            suffix = "" if legacy else (" If you want to load the adapter in place, set "
                                        "'load_inplace' to True.")
            return error(f"The lora adapter '{name}' has already been loaded.{suffix}",
                         "InvalidUserInput", 400)
        if not enable_lora:
            return error("LoRA is not enabled. Use --enable-lora to enable LoRA.",
                         "BadRequestError", 400)
        config = Path(path) / "adapter_config.json"
        if not config.exists():
            return error(f"Loading lora {name} failed: No adapter found for {path}",
                         "NotFoundError", 404)
        rank = int(json.loads(config.read_text())["r"])
        if rank > max_lora_rank:
            return error(f"LoRA rank {rank} is greater than max_lora_rank {max_lora_rank}.",
                         "BadRequestError", 400)
        step = f"step-{len(loads)}"
        shutil.copytree(path, weights / step)
        (weights / "latest.tmp").write_text(step + "\n")
        os.replace(weights / "latest.tmp", weights / "latest")
        loras[name] = path
        loads.append({"name": name, "path": path, "inplace": inplace, "served_as": step})
        print(f"loaded adapter {name} from {path} as {step}"
              f"{' (in place)' if inplace else ''}", flush=True)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter", response_model=None)
    async def unload(request: Request) -> Response:
        if not app.state.standin["runtime_updates"]:
            return not_found()
        name = (await request.json()).get("lora_name")
        if name not in loras:
            return error(f"The lora adapter '{name}' cannot be found.", "NotFoundError", 404)
        del loras[name]
        print(f"unloaded adapter {name}", flush=True)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    return app


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="vllm")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--enable-lora", action="store_true")
    parser.add_argument("--max-lora-rank", type=int, default=16)
    parser.add_argument("--max-loras", type=int, default=1)
    parser.add_argument("--legacy", action="store_true")
    args = parser.parse_args(argv)
    import uvicorn

    app = create_standin(args.model, enable_lora=args.enable_lora,
                         max_lora_rank=args.max_lora_rank, legacy=args.legacy)
    print(f"vLLM stand-in for {args.model} on http://{args.host}:{args.port} "
          f"(max_lora_rank {args.max_lora_rank})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
