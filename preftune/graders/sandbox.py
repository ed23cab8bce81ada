"""Runs a python grader's ``grade(sample, item)`` in a separate, limited process.

The child is ``python -I -S -B -c <sandbox_child.py>``: isolated mode (no environment variables,
no user site, no script directory on ``sys.path``), no ``site`` (so no third-party packages), no
bytecode writes. It starts in a fresh empty temporary directory with an empty environment, in its
own process group, and before the grader's code runs it

1. enters a new, empty network namespace where the kernel allows (Linux, as root or with
   unprivileged user namespaces);
2. sets resource limits, hard = soft: address space (``memory_mb``), CPU seconds (the timeout,
   rounded up), the size of any file written (1 MiB), open files (64), processes (0; the kernel
   does not apply this one to root), core files (0);
3. installs an audit hook (PEP 578) that stops the process at the first socket or network
   module, new process (subprocess, os.system, exec, spawn, fork, kill), native code (ctypes,
   cffi), link, or file opened, listed or changed outside the temporary directory (the standard
   library may be read), or more than 64 files opened for writing, and answers which it was.

The parent waits ``timeout_s`` of wall-clock time, then kills the process group. The request
goes in on stdin; the answer comes back as JSON on a private copy of stdout; what the grader
prints goes to stderr. All three are files the parent owns, so a flood of output is bounded by
the file-size limit, not by the parent's memory.

Audit hooks are a tripwire, not a security boundary (CPython's documentation says so): the
kernel-level parts are the limits, the empty environment and the network namespace. On a server
that runs graders from people it does not trust, run the workers in a container as well, or turn
python graders off (``GraderSettings.allow_python``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from preftune.errors import GraderError

FILE_SIZE_LIMIT = 1 << 20  # bytes any one file the grader writes may reach
OPEN_FILES_LIMIT = 64
WRITES_LIMIT = 64  # files opened for writing per call: with FILE_SIZE_LIMIT, at most 64 MiB

CHILD = Path(__file__).with_name("sandbox_child.py").read_text(encoding="utf-8")

_REFUSALS = {
    "network": "opened a network socket ({}), which graders may not do",
    "process": "started a process ({}), which graders may not do",
    "native": "loaded native code ({}), which graders may not do",
    "read": "{}, outside its temporary directory, which graders may not do",
    "write": "{}, outside its temporary directory, which graders may not do",
    "other": "{}, which graders may not do",
}


def run_python_grader(name: str, source: str, sample: dict[str, Any], item: dict[str, Any], *,
                      timeout_s: float, memory_mb: int) -> float:
    """The score ``grade(sample, item)`` returns; anything else is a GraderError naming ``name``."""
    where = f"python grader '{name}'"
    answer, returncode, stderr_tail = run_child(source, sample, item, timeout_s=timeout_s,
                                                memory_mb=memory_mb, where=where)
    return _score(where, answer, returncode, stderr_tail, cpu_s=_cpu_seconds(timeout_s),
                  memory_mb=memory_mb)


def _cpu_seconds(timeout_s: float) -> int:
    """The CPU-time backstop: a second past the wall-clock timeout, so that a single busy thread
    is always stopped by the timeout (one message), and the limit only catches what the timeout
    cannot see, such as a parent that stopped watching or CPU spent on several threads."""
    return math.ceil(timeout_s) + 1


def run_child(source: str, sample: dict[str, Any], item: dict[str, Any], *, timeout_s: float,
              memory_mb: int, where: str) -> tuple[dict[str, Any] | None, int, str]:
    """Run the child once: its answer (None if it gave none), exit code and last stderr."""
    cpu_s = _cpu_seconds(timeout_s)
    request = {
        "source": source,
        "sample": sample,
        "item": item,
        "max_writes": WRITES_LIMIT,
        "limits": {
            "RLIMIT_AS": [memory_mb << 20, memory_mb << 20],
            "RLIMIT_CPU": [cpu_s, cpu_s + 1],  # SIGXCPU at the soft limit, SIGKILL at the hard
            "RLIMIT_FSIZE": [FILE_SIZE_LIMIT, FILE_SIZE_LIMIT],
            "RLIMIT_NOFILE": [OPEN_FILES_LIMIT, OPEN_FILES_LIMIT],
            "RLIMIT_NPROC": [0, 0],
            "RLIMIT_CORE": [0, 0],
        },
    }
    try:
        payload = json.dumps(request).encode()
    except (TypeError, ValueError) as e:
        raise GraderError(f"{where}: the sample or item is not JSON: {e}") from None
    with (tempfile.TemporaryDirectory(prefix="preftune-grader-") as workdir,
          tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout,
          tempfile.TemporaryFile() as stderr):
        stdin.write(payload)
        stdin.seek(0)
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-c", CHILD], cwd=workdir, env={},
            stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True, close_fds=True)
        try:
            if not _wait_unreaped(proc, timeout_s):
                raise GraderError(f"{where}: timed out after {timeout_s:g} s")
        finally:
            _kill_group(proc)
        stdout.seek(0)
        answer_text = stdout.read(FILE_SIZE_LIMIT).decode("utf-8", "replace")
        stderr.seek(max(0, os.fstat(stderr.fileno()).st_size - 400))
        tail = stderr.read().decode("utf-8", "replace").strip()
    try:
        answer = json.loads(answer_text) if answer_text else None
    except json.JSONDecodeError:
        answer = None
    return (answer if isinstance(answer, dict) else None), proc.returncode, tail


def _wait_unreaped(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether the child exits within ``timeout_s``; it is left unreaped (WNOWAIT), so its pid,
    and with it the process group id, cannot be reused before ``_kill_group`` runs."""
    deadline, pause = time.monotonic() + timeout_s, 0.001
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    return True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left in the child's process group, then reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _score(where: str, answer: dict[str, Any] | None, returncode: int, stderr_tail: str, *,
           cpu_s: int, memory_mb: int) -> float:
    """The child's answer as a score, or the GraderError that says what went wrong."""
    if answer is None:
        if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            raise GraderError(f"{where}: used more than {cpu_s} s of CPU time and was stopped")
        last = stderr_tail.splitlines()[-1] if stderr_tail else "no output"
        raise GraderError(f"{where}: exited with code {returncode} before answering ({last})")
    error = answer.get("error")
    if error is None:
        score = float(answer["score"])
        if not math.isfinite(score):
            raise GraderError(f"{where}: grade() returned {score}, not a finite number")
        return score
    if error == "memory":
        raise GraderError(f"{where}: ran out of memory (limit {memory_mb} MiB)")
    if error == "refused":
        detail = bytes.fromhex(answer["detail_hex"]).decode("utf-8", "replace")
        raise GraderError(f"{where}: {_REFUSALS[answer['kind']].format(detail)}")
    if error == "result":
        raise GraderError(f"{where}: grade() returned {answer['detail']}, not a number")
    at = f" at line {answer['line']}" if answer.get("line") else ""
    raise GraderError(f"{where}: raised {answer['type']}{at}: {answer['detail']}")
