"""Crash-safe writes: temporary name, fsync, rename; appends that are on disk when they return."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file next to ``path`` that replaces it, synced, only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; files are for sharing
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON value in ``path``; None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def append_jsonl(path: str | os.PathLike[str], row: dict[str, Any]) -> None:
    """Append one JSON line and fsync, so a row that was written survives a crash."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a line that is not JSON (torn by a crash mid-write) is skipped,
    and the rows after it are still read."""
    rows: list[dict[str, Any]] = []
    if not Path(path).exists():
        return rows
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def repair_jsonl(path: str | os.PathLike[str]) -> bool:
    """Make a JSONL file safe to append to after a crash; whether it changed.

    A write cut short (a full disk, power lost) leaves a last line without its newline, or
    one that is not JSON (a file system may show zeros where the data never landed). The
    next append would glue its row onto that line and both would be lost, so such a line
    is cut off, or only given its newline when it is a whole row. Call it before the first
    append of a process that continues the file.
    """
    target = Path(path)
    if not target.exists():
        return False
    with open(target, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return False
        start = _last_line_start(f, size)
        f.seek(start)
        last = f.read()
        terminated = last.endswith(b"\n")
        whole = _is_json(last)
        if terminated and (whole or not last.strip()):
            return False
        if whole:
            f.write(b"\n")  # only the newline was lost
        else:
            f.truncate(start)
        f.flush()
        os.fsync(f.fileno())
    return True


def _last_line_start(f: Any, size: int, block: int = 1 << 16) -> int:
    """The offset where the file's last line starts (its final newline not counted)."""
    end = size - 1  # a newline that ends the file ends the last line; it does not start it
    while end > 0:
        begin = max(0, end - block)
        f.seek(begin)
        newline = f.read(end - begin).rfind(b"\n")
        if newline >= 0:
            return begin + newline + 1
        end = begin
    return 0


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes that are no text
        return False
    return True


def write_jsonl(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary directory renamed to ``path`` once the block has filled and synced it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        for root, _, files in os.walk(tmp):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    os.fsync(f.fileno())
            fsync_dir(Path(root))
        os.chmod(tmp, 0o777 & ~_umask())
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
