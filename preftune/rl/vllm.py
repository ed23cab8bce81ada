"""Publishing LoRA adapters to a running vLLM server, so environments sample the newest policy.

vLLM loads adapters at run time through two endpoints, present when the server was started
with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` and ``--enable-lora``:

    POST /v1/load_lora_adapter    {"lora_name": ..., "lora_path": ..., "load_inplace": true}
    POST /v1/unload_lora_adapter  {"lora_name": ...}

A loaded adapter is served under its ``lora_name``: environments ask for
``"model": lora_name``. The trainer keeps one name for the whole run and replaces the adapter
behind it at every publish. Servers that know ``load_inplace`` swap the weights in place;
older ones ignore the field and answer 400 "has already been loaded", and for those the
publisher unloads the name and loads it again (a moment in which requests for the name fail,
which environments retry).

The path is read by the vLLM process, so it must be on a file system that server sees (the
same machine, or a shared mount). vLLM reads the adapter during the request: once it
answers, the trainer may delete older published steps.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from preftune.errors import TrainingError, UsageError

_ENABLE = ("start vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in its environment and "
           "--enable-lora --max-lora-rank R (R at least the trainer's --lora-rank)")


class PublishError(TrainingError):
    """vLLM did not take an adapter."""


def server_root(url: str) -> str:
    """``http://host:port`` from a URL given with or without ``/v1``."""
    root = url.rstrip("/")
    return root.removesuffix("/v1")


def _message(response: httpx.Response) -> str:
    """vLLM's error text: ``{"error": {"message"}}``, ``{"message"}``, ``{"detail"}`` or text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        for key in ("message", "detail"):
            if body.get(key):
                return str(body[key])
    return str(body)[:500]


class VLLMAdapters:
    """Loads each published adapter into the vLLM server at ``url`` under ``lora_name``."""

    def __init__(self, url: str, lora_name: str, api_key: str | None = None,
                 timeout_s: float = 300.0, attempts: int = 3, backoff_s: float = 2.0) -> None:
        self.root = server_root(url)
        self.lora_name = lora_name
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.root, headers=headers, timeout=timeout_s)
        self.attempts, self.backoff_s = attempts, backoff_s
        self.inplace = True  # until the server shows it ignores load_inplace
        self.loads = 0

    def close(self) -> None:
        self.http.close()

    def check(self) -> list[str]:
        """The served model ids; a UsageError when the server cannot be reached or refuses."""
        try:
            response = self.http.get("/v1/models", timeout=30)
        except httpx.TransportError as e:
            raise UsageError(f"cannot reach the vLLM server at {self.root} ({e})",
                             ["start it first (vllm serve MODEL --enable-lora ...), or fix "
                              "--vllm-url"]) from e
        if response.status_code == 401:
            raise UsageError(f"the vLLM server at {self.root} refused the API key (401)",
                             ["set VLLM_API_KEY to the key the server was started with"])
        if not response.is_success:
            raise UsageError(f"GET {self.root}/v1/models answered {response.status_code}: "
                             f"{_message(response)}", ["is --vllm-url a vLLM server?"])
        data = response.json().get("data") or []
        return [str(m.get("id")) for m in data if isinstance(m, dict)]

    def load(self, adapter_dir: Path) -> None:
        """Serve the adapter in ``adapter_dir`` under ``lora_name`` (replacing the previous)."""
        path = str(Path(adapter_dir).resolve())
        if not self.inplace:
            self._unload()
            self._post_load(path, inplace=False)
        else:
            response = self._post_load(path, inplace=True, accept_loaded=True)
            if response is None:  # a server without load_inplace: unload, then load again
                self.inplace = False
                self._unload()
                self._post_load(path, inplace=False)
        self.loads += 1

    def _post_load(self, path: str, inplace: bool, accept_loaded: bool = False
                   ) -> httpx.Response | None:
        body: dict[str, Any] = {"lora_name": self.lora_name, "lora_path": path}
        if inplace:
            body["load_inplace"] = True
        response = self._post("/v1/load_lora_adapter", body)
        if response.is_success:
            return response
        text = _message(response)
        if accept_loaded and response.status_code == 400 and "already been loaded" in text:
            return None
        if response.status_code == 404 and text == "Not Found":
            raise PublishError(f"the vLLM server at {self.root} does not load adapters at run "
                               "time (POST /v1/load_lora_adapter answered 404)", [_ENABLE])
        raise PublishError(f"vLLM refused the adapter {path} ({response.status_code}): {text}",
                           [_ENABLE, "the adapter's rank must not exceed vLLM's "
                                     "--max-lora-rank, and the path must be readable by vLLM"])

    def _unload(self) -> None:
        response = self._post("/v1/unload_lora_adapter", {"lora_name": self.lora_name})
        # Not loaded (a restarted server, or the first publish) is fine.
        if not response.is_success and response.status_code not in (400, 404):
            raise PublishError(f"vLLM could not unload adapter {self.lora_name!r} "
                               f"({response.status_code}): {_message(response)}")

    def _post(self, route: str, body: dict[str, Any]) -> httpx.Response:
        """POST with retries on connection errors and 5xx answers that say nothing."""
        for attempt in range(1, self.attempts + 1):
            try:
                response = self.http.post(route, json=body)
            except httpx.TransportError as e:
                if attempt == self.attempts:
                    raise PublishError(f"cannot reach the vLLM server at {self.root} to "
                                       f"publish the adapter ({e})",
                                       ["is vLLM still running?"]) from e
            else:
                if response.status_code not in (502, 503, 504) or attempt == self.attempts:
                    return response
            time.sleep(self.backoff_s * attempt)
        raise AssertionError("unreachable")
