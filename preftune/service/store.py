"""Where the service keeps bytes: uploaded files and job directories, under one root.

    <root>/files/<file id><suffix>        an upload, named by the server
    <root>/jobs/<job id>/train.yaml       the job's TrainConfig (dataset paths filled in)
    <root>/jobs/<job id>/run/             the job's run directory (one for all attempts)
    <root>/jobs/<job id>/logs/attempt-N.log   what the training process printed
    <root>/downloads/<job id>-<what>.tar.gz   a model as downloaded, built once, kept with
                                              its job (and <job id>-<what>.lock beside it)

No name a client sends ever becomes part of a path: file and job ids are generated here, and
the only thing taken from a client's file name is a suffix from a fixed list.

Whatever is written in pieces goes to a hidden temporary first and is renamed into place
when complete. A temporary's name carries the host and process that write it
(``files/.upload-<host>-<pid>-<random>``, ``downloads/.<name>-<host>-<pid>-<random>.tmp``),
so ``clean_temporaries`` can tell, at start, which ones a killed process left behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import shutil
import socket
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from preftune.errors import DataError, UsageError
from preftune.fsutil import fsync_dir

SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".csv", ".tsv")
_ID = re.compile(r"(file|ftjob)-[0-9a-f]{24}")
_STORED = re.compile(r"file-[0-9a-f]{24}(\.[a-z]+)?")  # an upload's storage name
PENDING = ".pending-"  # an upload complete on disk, waiting for its row (``Store.saving``)
_JOB_ID = re.compile(r"ftjob-[0-9a-f]{24}")
_ARCHIVE_OF = re.compile(r"(ftjob-[0-9a-f]{24})-")
# A download's name: <job id>-final or <job id>-<checkpoint name>.
_ARCHIVE_NAME = re.compile(r"ftjob-[0-9a-f]{24}-[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# A temporary older than this is left over whoever wrote it (another host, a reused pid).
TEMPORARY_MAX_AGE_S = 24 * 3600.0


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

    @property
    def downloads_dir(self) -> Path:
        return self.root / "downloads"

    def report_path(self, file_id: str) -> Path:
        """Where an uploaded file's validation report is kept (a cache: deleted with the
        file, rebuilt when missing)."""
        if Path(file_id).name != file_id or file_id.startswith("."):
            raise UsageError(f"bad file id {file_id!r}")
        return self.root / "reports" / f"{file_id}.json"

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

    @contextmanager
    def saving(self, file_id: str, chunks: Iterable[bytes], client_name: str | None,
               limit: int) -> Iterator[tuple[str, int]]:
        """Stream ``chunks`` into the store; yield the storage name and size, for the caller
        to record the file's row in the block. The bytes are in place once the block ends.

        No row without bytes, no bytes without a row, whatever process dies when: the bytes go
        to a hidden temporary, then (complete, within ``limit``, synced) to a hidden pending
        name, and only after the block (the row committed) to their storage name. A block
        that fails removes them. A process killed in between leaves the pending file:
        ``clean_temporaries`` moves it into place if its row was committed, and removes it
        otherwise.
        """
        if not _ID.fullmatch(file_id):
            raise UsageError(f"bad file id {file_id!r}")
        self.files_dir.mkdir(parents=True, exist_ok=True)
        writer = _writer()
        partial = self.files_dir / f".upload-{writer}"
        pending: Path | None = None
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
            pending = self.files_dir / f"{PENDING}{name}-{writer}"
            os.replace(partial, pending)
            fsync_dir(self.files_dir)
            yield name, size
            os.replace(pending, self.files_dir / name)
            fsync_dir(self.files_dir)
            pending = None
        finally:
            partial.unlink(missing_ok=True)
            if pending is not None:
                pending.unlink(missing_ok=True)

    def archive(self, source: Path, name: str) -> Path:
        """``source`` (a model directory) as ``downloads/<name>.tar.gz``, entries under
        ``name/``: built once, then reused by every download until ``source`` changes.

        Concurrent requests wait on ``downloads/<name>.lock`` while one of them builds the
        archive into a temporary that is renamed into place, so a download never reads a
        half-written archive and N downloads make one archive, not N. The archive stays until
        ``delete_job_dir`` removes it with its job: callers must not delete it.
        """
        if not _ARCHIVE_NAME.fullmatch(name):
            raise UsageError(f"bad archive name {name!r}")
        if not source.is_dir():
            raise FileNotFoundError(f"no model directory {source} to archive")
        self.downloads_dir.mkdir(parents=True, exist_ok=True)
        final = self.downloads_dir / f"{name}.tar.gz"
        with self._locked(name) as lock:
            # The lock file holds the signature of the source the archive was built from.
            signature = _signature(source)
            lock.seek(0)
            if final.exists() and lock.read().decode() == signature:
                return final
            partial = self.downloads_dir / f".{name}-{_writer()}.tmp"
            try:
                with partial.open("wb") as f:
                    with tarfile.open(fileobj=f, mode="w:gz", compresslevel=1) as tar:
                        tar.add(source, arcname=name)  # weights barely shrink: level 1
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(partial, final)
                fsync_dir(self.downloads_dir)
            finally:
                partial.unlink(missing_ok=True)
            lock.seek(0)
            lock.truncate()
            lock.write(signature.encode())
            lock.flush()
        return final

    def _locked(self, name: str) -> _ArchiveLock:
        return _ArchiveLock(self.downloads_dir / f"{name}.lock")

    def set_aside(self, path: Path) -> Path | None:
        """Rename ``path`` (a job directory or a stored file) to a hidden ``.deleted-`` name
        beside it, so that deleting it is one rename; None if it does not exist.

        A deletion sets the bytes aside before it deletes their row, and puts them back if
        that fails: a crash leaves either the row with its bytes set aside (the deletion was
        asked for; ``clean_temporaries`` finishes it) or nothing, never bytes no row names.
        """
        if not path.exists():
            return None
        aside = path.parent / f".deleted-{path.name}-{_writer()}"
        os.replace(path, aside)
        fsync_dir(path.parent)
        return aside

    @staticmethod
    def discard(aside: Path) -> None:
        """Remove what ``set_aside`` renamed."""
        if aside.is_dir():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)

    def delete_job_dir(self, job_id: str) -> None:
        """Remove the job's directory (set aside first) and its download archives."""
        aside = self.set_aside(self.job_dir(job_id))
        if aside is not None:
            self.discard(aside)
        self.delete_archives(job_id)

    def delete_archives(self, job_id: str) -> None:
        """Remove the job's download archives and their lock files."""
        if not self.downloads_dir.is_dir():
            return
        for lock_path in sorted(self.downloads_dir.glob(f"{job_id}-*.lock")):
            name = lock_path.name.removesuffix(".lock")
            with self._locked(name):  # not while a download is being built
                (self.downloads_dir / f"{name}.tar.gz").unlink(missing_ok=True)
                lock_path.unlink(missing_ok=True)
        for stray in self.downloads_dir.glob(f"{job_id}-*.tar.gz"):  # its lock already gone
            stray.unlink(missing_ok=True)

    def job_ids_on_disk(self) -> set[str]:
        """Ids of the jobs that have a directory or a download archive here."""
        found: set[str] = set()
        if self.jobs_dir.is_dir():
            found.update(p.name for p in self.jobs_dir.iterdir() if _JOB_ID.fullmatch(p.name))
        if self.downloads_dir.is_dir():  # <job id>-<what>.tar.gz and .lock
            found.update(m.group(1) for p in self.downloads_dir.iterdir()
                         if (m := _ARCHIVE_OF.match(p.name)))
        return found

    def clean_temporaries(self, max_age_s: float = TEMPORARY_MAX_AGE_S,
                          recorded: Callable[[str], bool] | None = None) -> list[Path]:
        """Finish or undo what killed processes left: partial uploads and archives of this
        host whose process is gone, any older than ``max_age_s`` (another host's, a reused
        pid), what a deletion had set aside, and the archives of jobs whose directory is gone.
        A pending upload (``saving``) whose storage name ``recorded`` knows (its row was
        committed) is moved into place; any other is removed. Returns the paths removed
        (archives not counted).

        Safe while other processes of the service run: a live process's temporaries are
        younger than a day and name a pid that is alive.
        """
        removed: list[Path] = []
        cutoff = time.time() - max_age_s
        for path in self._temporaries():
            try:
                old = path.lstat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if not (old or _left_by_dead_process(path.name.removesuffix(".tmp"))):
                continue
            if path.name.startswith(PENDING):
                name = _pending_name(path.name)
                if name is not None and recorded is not None and recorded(name):
                    os.replace(path, self.files_dir / name)
                    fsync_dir(self.files_dir)
                    continue
            path.unlink(missing_ok=True)
            removed.append(path)
        for directory in (self.jobs_dir, self.files_dir):
            if directory.is_dir():
                for aside in directory.glob(".deleted-*"):
                    self.discard(aside)
                    removed.append(aside)
        # Archives are built from a job's directory: without it they are dead weight.
        for job_id in sorted(self.job_ids_on_disk()):
            if not self.job_dir(job_id).exists():
                self.delete_archives(job_id)
        return removed

    def _temporaries(self) -> Iterator[Path]:
        if self.files_dir.is_dir():
            yield from self.files_dir.glob(".upload-*")
            yield from self.files_dir.glob(f"{PENDING}*")
        if self.downloads_dir.is_dir():
            yield from (p for p in self.downloads_dir.iterdir() if p.name.startswith("."))

    def delete(self, storage_name: str) -> None:
        self.file_path(storage_name).unlink(missing_ok=True)


class _ArchiveLock:
    """An exclusive ``flock`` on a download's lock file, open for reading and writing.

    ``delete_job_dir`` unlinks lock files; a process that opened one just before waits on a
    file no longer in the directory, so after the lock is granted the path is checked to
    still name the file locked, and opened again if not.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        while True:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and current.st_ino == os.fstat(handle).st_ino:
                self.file = os.fdopen(handle, "r+b")
                return self.file
            os.close(handle)  # releases the lock of the unlinked file

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()  # releases the lock


def _pending_name(pending: str) -> str | None:
    """The storage name in a pending upload's name, ``.pending-<name>-<host>-<pid>-<rand>``
    (``_host`` has no dash)."""
    head = "-".join(pending.removeprefix(PENDING).split("-")[:-3])
    return head if _STORED.fullmatch(head) else None


def _writer() -> str:
    """``<host>-<pid>-<random>``: whose a temporary is, for ``Store.clean_temporaries``."""
    return f"{_host()}-{os.getpid()}-{secrets.token_hex(6)}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _left_by_dead_process(stem: str) -> bool:
    """Whether ``stem`` (``...-<host>-<pid>-<random>``) names this host and a pid that has
    exited. ``_host`` has no dash, so the last ``-<host>-`` in the name is the host's."""
    head, _, rest = stem.rpartition(f"-{_host()}-")
    pid, _, _ = rest.partition("-")
    if not head or not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _signature(source: Path) -> str:
    """What a download's archive was built from: every file's path, size and mtime."""
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*")):
        stat = path.lstat()
        digest.update(f"{path.relative_to(source)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()


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
