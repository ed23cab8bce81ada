"""Where the service keeps bytes: uploaded files and job directories, under one root.

    <root>/files/<file id><suffix>        an upload, named by the server
    <root>/jobs/<job id>/train.yaml       the job's TrainConfig (dataset paths filled in)
    <root>/jobs/<job id>/run/             the job's run directory (one for all attempts)
    <root>/jobs/<job id>/logs/attempt-N.log   what the training process printed

No name a client sends ever becomes part of a path: file and job ids are generated here, and
the only thing taken from a client's file name is a suffix from a fixed list.
"""

from __future__ import annotations

import os
import re
import secrets
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from preftune.errors import DataError, UsageError
from preftune.fsutil import fsync_dir

SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".csv", ".tsv")
_ID = re.compile(r"(file|ftjob)-[0-9a-f]{24}")


class TooLarge(UsageError):
    """An upload over the size limit."""


@dataclass(frozen=True)
class Store:
    root: Path

    @property
    def files_dir(self) -> Path:
        return self.root / "files"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    def file_path(self, storage_name: str) -> Path:
        if Path(storage_name).name != storage_name or storage_name.startswith("."):
            raise UsageError(f"bad storage name {storage_name!r}")
        return self.files_dir / storage_name

    def job_dir(self, job_id: str) -> Path:
        if not _ID.fullmatch(job_id):
            raise UsageError(f"bad job id {job_id!r}")
        return self.jobs_dir / job_id

    def run_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "run"

    def save(self, file_id: str, chunks: Iterable[bytes], client_name: str | None,
             limit: int) -> tuple[str, int]:
        """Stream ``chunks`` to a new file; return its storage name and size.

        The bytes go to a hidden temporary file first, and are renamed into place only when
        complete and within ``limit``; anything else leaves nothing behind.
        """
        if not _ID.fullmatch(file_id):
            raise UsageError(f"bad file id {file_id!r}")
        self.files_dir.mkdir(parents=True, exist_ok=True)
        partial = self.files_dir / f".upload-{secrets.token_hex(8)}"
        size = 0
        head = b""
        try:
            with partial.open("wb") as f:
                for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"the file is larger than the limit of {limit:,} bytes",
                                       ["split the data, or start the server with a larger "
                                        "--max-upload-mb"])
                    if len(head) < 8:
                        head += chunk[:8]
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            if size == 0:
                raise DataError("the file is empty", ["upload a JSONL, JSON or parquet file"])
            name = file_id + storage_suffix(client_name, head)
            os.replace(partial, self.files_dir / name)
            fsync_dir(self.files_dir)
            return name, size
        finally:
            partial.unlink(missing_ok=True)

    def archive(self, source: Path, name: str) -> Path:
        """``source`` (a model directory) as a new ``.tar.gz`` whose entries sit under
        ``name/``; the caller deletes it when sent."""
        scratch = self.root / "downloads"
        scratch.mkdir(parents=True, exist_ok=True)
        path = scratch / f".{name}-{secrets.token_hex(6)}.tar.gz"
        try:
            with tarfile.open(path, "w:gz", compresslevel=1) as tar:  # weights barely shrink
                tar.add(source, arcname=name)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def delete(self, storage_name: str) -> None:
        self.file_path(storage_name).unlink(missing_ok=True)


def storage_suffix(client_name: str | None, head: bytes) -> str:
    """The suffix the data layer needs to read the file: from the content where it tells
    (parquet, JSON), else from the client's name if it is on the fixed list."""
    if head.startswith(b"PAR1"):
        return ".parquet"
    suffix = Path(client_name or "").suffix.lower()
    if suffix in SUFFIXES:
        return suffix
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"[") or stripped.startswith(b"{"):
        return ".json"  # the data layer tells JSON from JSONL by the content
    raise DataError("the file is not JSONL, JSON, parquet or CSV",
                    ["upload preference data in one of those formats (docs/data.md)"])


def display_name(client_name: str | None) -> str:
    """The client's file name as metadata: its last component, printable, at most 255."""
    name = (client_name or "upload").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:255] or "upload"
