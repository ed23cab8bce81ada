"""A small typed client of the job service's HTTP API (``/v1/files``, ``/v1/fine_tuning``).

One method per endpoint, each returning the parsed JSON object. Whatever goes wrong comes
back as a project error carrying the server's message: a bad key, an unknown id or a refused
request is a ``UsageError`` (exit 2), an upload the server cannot read is a ``DataError``
(exit 3), a server fault is a ``PreftuneError`` (exit 1). A server that cannot be reached is
a ``UsageError`` naming the URL.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from preftune.errors import DataError, PreftuneError, UsageError

KEY_HINTS = ("set PREFTUNE_API_KEY or pass --api-key",
             "an administrator creates keys on the server with: preftune keys create --name NAME")
RATE_LIMIT_RETRIES = 3


class ServiceClient:
    """``base_url`` is the server, with or without its ``/v1``; ``timeout`` is in seconds."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float = 30.0) -> None:
        root = base_url.strip().rstrip("/").removesuffix("/v1").rstrip("/")
        if not root.startswith(("http://", "https://")):
            raise UsageError(f"server URL {base_url!r} is not an http:// or https:// URL",
                             ["for example: --server http://127.0.0.1:8000"])
        if not api_key:
            raise UsageError("no API key to call the preftune server with", list(KEY_HINTS))
        self.url = root
        self._http = httpx.Client(base_url=root + "/v1", timeout=timeout,
                                  headers={"Authorization": f"Bearer {api_key}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -------------------------------------------------------------------------------- files

    def upload_file(self, path: Path, purpose: str = "fine-tune") -> dict[str, Any]:
        if not path.is_file():
            what = "a directory" if path.is_dir() else "not found"
            raise UsageError(f"cannot upload {path}: {what}",
                             ["upload one data file (JSONL, JSON, parquet or CSV)"])
        with path.open("rb") as f:
            return self._json("POST", "/files", files={"file": (path.name, f)},
                              data={"purpose": purpose})

    def list_files(self) -> dict[str, Any]:
        return self._json("GET", "/files")

    def get_file(self, file_id: str) -> dict[str, Any]:
        return self._json("GET", f"/files/{_seg(file_id)}")

    def file_content(self, file_id: str) -> bytes:
        return self._request("GET", f"/files/{_seg(file_id)}/content").content

    def delete_file(self, file_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/files/{_seg(file_id)}")

    # --------------------------------------------------------------------------------- jobs

    def create_job(self, request: dict[str, Any],
                   idempotency_key: str | None = None) -> dict[str, Any]:
        """``request`` is the body: model, training_file, method, config, ... as the API
        names them; a repeated ``idempotency_key`` returns the job the first request made."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/fine_tuning/jobs", json=request, headers=headers)

    def list_jobs(self, after: str | None = None, limit: int | None = None,
                  metadata: dict[str, str] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = _params(after=after, limit=limit)
        params.update({f"metadata[{k}]": v for k, v in (metadata or {}).items()})
        return self._json("GET", "/fine_tuning/jobs", params=params)

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/fine_tuning/jobs/{_seg(job_id)}")

    def delete_job(self, job_id: str) -> dict[str, Any]:
        """Delete an ended job: its events, checkpoints, result files and model."""
        return self._json("DELETE", f"/fine_tuning/jobs/{_seg(job_id)}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/fine_tuning/jobs/{_seg(job_id)}/cancel")

    def pause_job(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/fine_tuning/jobs/{_seg(job_id)}/pause")

    def resume_job(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/fine_tuning/jobs/{_seg(job_id)}/resume")

    def list_events(self, job_id: str, after: str | None = None,
                    limit: int | None = None) -> dict[str, Any]:
        """A page of events, newest first; ``after`` pages on to older ones."""
        return self._json("GET", f"/fine_tuning/jobs/{_seg(job_id)}/events",
                          params=_params(after=after, limit=limit))

    def list_checkpoints(self, job_id: str, after: str | None = None,
                         limit: int | None = None) -> dict[str, Any]:
        return self._json("GET", f"/fine_tuning/jobs/{_seg(job_id)}/checkpoints",
                          params=_params(after=after, limit=limit))

    def download(self, job_id: str, destination: Path,
                 checkpoint_id: str | None = None) -> Path:
        """Fetch a job's final model (or one checkpoint's) and unpack it into
        ``destination``; the model directory it made there."""
        import tarfile
        import tempfile

        path = (f"/fine_tuning/jobs/{_seg(job_id)}/checkpoints/{_seg(checkpoint_id)}/content"
                if checkpoint_id else f"/fine_tuning/jobs/{_seg(job_id)}/content")
        destination.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as archive:
            try:
                with self._http.stream("GET", path, timeout=None) as response:
                    if not response.is_success:
                        response.read()
                        raise api_error(self.url, "GET", path, response)
                    for chunk in response.iter_bytes(1 << 20):
                        archive.write(chunk)
            except httpx.TransportError as e:
                raise UsageError(f"cannot download from the preftune server at {self.url}: "
                                 f"{e}", ["check the server is running, then try again"]) from e
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="r:gz") as tar:
                names = {m.name.split("/", 1)[0] for m in tar.getmembers()}
                tar.extractall(destination, filter="data")  # no paths outside destination
        (top,) = names
        return destination / top

    def events_since(self, job_id: str, last: int, page: int = 100) -> list[dict[str, Any]]:
        """Every event numbered above ``last`` (``ftevent-N``), oldest first."""
        newer: list[dict[str, Any]] = []
        after = None
        while True:
            listing = self.list_events(job_id, after=after, limit=page)
            for event in listing["data"]:
                if event_number(event["id"]) <= last:
                    return newer[::-1]
                newer.append(event)
            if not listing.get("has_more") or not listing["data"]:
                return newer[::-1]
            after = listing["data"][-1]["id"]

    # ------------------------------------------------------------------------------ helpers

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError as e:
            raise PreftuneError(f"the server at {self.url} answered {method} {path} with "
                                "something that is not JSON",
                                ["check that --server points at a preftune server"]) from e
        if not isinstance(body, dict):
            raise PreftuneError(f"the server at {self.url} answered {method} {path} with "
                                f"a JSON {type(body).__name__}, not an object")
        return body

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            response = self._send(method, path, **kwargs)
            # A quota error says not to retry: a moment's wait frees no quota.
            if (response.status_code != 429 or attempt == RATE_LIMIT_RETRIES
                    or response.headers.get("x-should-retry") == "false"):
                break
            time.sleep(_retry_after(response))
        if response.is_success:
            return response
        raise api_error(self.url, method, path, response)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise PreftuneError(f"the server at {self.url} did not answer {method} {path} in "
                                "time", ["the server may be overloaded; try again"]) from e
        except httpx.TransportError as e:
            raise UsageError(f"cannot reach the preftune server at {self.url}: {e}", [
                "start one with: preftune serve",
                "or name the server with --server URL or PREFTUNE_SERVER",
            ]) from e


def api_error(url: str, method: str, path: str, response: httpx.Response) -> PreftuneError:
    """The project error for a refused request: the server's message (its further lines as
    details, its ``hint:`` lines as hints), and the error type its status calls for."""
    error = _error_body(response)
    status = response.status_code
    text = str(error.get("message") or f"{status} {response.reason_phrase}")
    message, details, hints = split_message(text)
    param = error.get("param")
    if param and str(param) not in message:
        details.append(f"field: {param}")
    if status in (401, 403):
        return UsageError(message, details=details, hints=_merged(list(KEY_HINTS), hints))
    if status == 404:
        listing = "files" if path.startswith("/files") else "jobs"
        return UsageError(message, details=details,
                          hints=hints + [f"list them with: preftune {listing} list"])
    if status == 413:
        return UsageError(message, details=details, hints=hints or [
            "split the data, or ask for a server started with a larger --max-upload-mb"])
    if status == 429:
        return UsageError(message, details=details, hints=hints or [
            "too many requests for this key; wait a minute and try again"])
    if error.get("code") == "invalid_file":  # the server could not read the data sent
        return DataError(message, details=details, hints=hints)
    if status < 500:
        return UsageError(message, details=details, hints=hints)
    return PreftuneError(f"the server failed on {method} {path}: {message}", details=details,
                         hints=hints + [f"the log of the server at {url} has the details"])


def split_message(text: str) -> tuple[str, list[str], list[str]]:
    """A server message as (first line, further lines, ``hint:`` lines without the prefix)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [text]
    details = [line for line in lines[1:] if not line.startswith("hint: ")]
    hints = [line.removeprefix("hint: ") for line in lines[1:] if line.startswith("hint: ")]
    return lines[0], details, hints


def event_number(event_id: str) -> int:
    """``ftevent-12`` -> 12: events are numbered in the order they were written."""
    return int(event_id.rsplit("-", 1)[-1])


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text.strip()[:500] or None}
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    if isinstance(body, dict) and "detail" in body:  # a framework error, not ours
        return {"message": str(body["detail"])}
    return {}


def _merged(first: list[str], then: list[str]) -> list[str]:
    return first + [hint for hint in then if hint not in first]


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(max(float(response.headers.get("Retry-After", "1")), 0.1), 10.0)
    except ValueError:
        return 1.0


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _seg(identifier: str) -> str:
    """An id as one path segment: whatever a user types never reaches another endpoint."""
    return quote(identifier, safe="")
