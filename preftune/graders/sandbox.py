"""Runs a python grader's ``grade(sample, item)`` in a separate, limited process.

The child is ``python -I -S -B -c BOOT``: isolated mode (no environment variables, no user site,
no script directory on ``sys.path``), no ``site`` (so no third-party packages), no bytecode
writes. It starts in a fresh empty temporary directory with an empty environment, in its own
process group. Before the user's code runs, BOOT

1. sets resource limits (hard = soft, so the code cannot raise them): address space
   (``memory_mb``), CPU seconds, the size of any file written (1 MiB), open files (64) and
   processes (0; the kernel ignores this one for root);
2. installs an audit hook (PEP 578) that refuses, and remembers having refused: sockets and
   the network modules, new processes (subprocess, os.system, exec, spawn, fork), native code
   (ctypes, cffi, ``_posixsubprocess``), opening or listing any path outside the temporary
   directory except for reading the standard library, and changing files outside it.

The parent waits ``timeout_s`` of wall-clock time, then kills the process group. Input and output
are JSON on stdin and on a private copy of stdout; what the code prints goes to stderr.

Audit hooks are a tripwire, not a security boundary: CPython's documentation says as much. The
process limits and the empty environment hold regardless; on a server shared with untrusted
users, run the worker itself in a container too.
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
from typing import Any

from preftune.errors import GraderError

FILE_SIZE_LIMIT = 1 << 20  # bytes any one file the grader writes may reach
OPEN_FILES_LIMIT = 64

# The child's program. It reads one JSON request from stdin and writes one JSON answer.
BOOT = r'''
def _boot():
    import json, os, resource, sys
    request = json.loads(sys.stdin.buffer.read())
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the grader's prints go to stderr, never into the answer
    for name, (soft, hard) in request["limits"].items():
        try:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        except (ValueError, OSError):
            pass  # a limit this kernel does not have

    workdir = os.path.realpath(os.getcwd())
    stdlib = tuple(os.path.realpath(p) for p in sys.path if p)
    native_suffixes = (".so", ".pyd", ".dylib")
    refused = []

    class Refused(BaseException):
        """Raised by the hook; a BaseException so `except Exception` in graders lets it by."""

    def refuse(kind, detail):
        refused.append((kind, detail))
        raise Refused(f"{detail}: refused, graders may not do this")

    def under(path, roots):
        if isinstance(path, int):
            return True  # an already open descriptor
        path = os.fsdecode(os.fspath(path))
        real = os.path.realpath(os.path.join(workdir, path))
        return any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots)

    def written(path):
        if not under(path, (workdir,)):
            refuse("write", f"wrote {os.fsdecode(os.fspath(path))}")
        if isinstance(path, str | bytes) and os.fsdecode(path).endswith(native_suffixes):
            refuse("native", f"wrote a native library {os.fsdecode(path)}")

    network = ("socket.", "urllib.", "http.", "ftplib.", "smtplib.", "poplib.", "imaplib.",
               "nntplib.", "telnetlib.", "webbrowser.")
    processes = {"subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn",
                 "os.fork", "os.forkpty", "os.startfile", "pty.spawn", "os.kill", "os.killpg"}
    native = {"ctypes", "_ctypes", "cffi", "_cffi_backend"}
    changes = {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
               "os.utime", "os.chflags", "os.setxattr", "os.removexattr"}
    introspection = {"gc.get_objects", "gc.get_referrers", "gc.get_referents",
                     "resource.setrlimit", "resource.prlimit"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return
            if (mode and any(c in mode for c in "wax+")) or (flags or 0) & write_flags:
                written(path)
            elif not under(path, (workdir,) + stdlib):
                refuse("read", f"read {os.fsdecode(os.fspath(path))}")
        elif event in ("os.listdir", "os.scandir"):
            if args[0] is not None and not under(args[0], (workdir,) + stdlib):
                refuse("read", f"listed {os.fsdecode(os.fspath(args[0]))}")
        elif event == "os.chdir" and not under(args[0], (workdir,)):
            refuse("read", f"changed directory to {os.fsdecode(os.fspath(args[0]))}")
        elif event.startswith(network):
            refuse("network", event)
        elif event in processes:
            refuse("process", event)
        elif event == "import" and args[0] == "_posixsubprocess":
            refuse("process", "import subprocess")
        elif event.startswith(("ctypes.", "cffi.")) or (
                event == "import" and args[0].partition(".")[0] in native):
            refuse("native", event if event != "import" else f"import {args[0]}")
        elif event in changes:
            written(args[0])
        elif event == "os.rename":
            written(args[0])
            written(args[1])
        elif event in ("os.link", "os.symlink"):
            refuse("write", f"made a link {os.fsdecode(os.fspath(args[1]))}")
        elif event in introspection:
            refuse("other", event)

    sys.addaudithook(hook)

    def send(message):
        answer.write(json.dumps(message))
        answer.flush()

    namespace = {"__name__": "grader"}
    try:
        exec(compile(request["source"], "<grader>", "exec"), namespace)
        score = namespace["grade"](request["sample"], request["item"])
    except MemoryError:
        del namespace
        send({"error": "memory"} if not refused else {"error": "refused", "refused": refused[0]})
        return
    except BaseException as e:
        line = None
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<grader>":
                line = tb.tb_lineno
            tb = tb.tb_next
        if refused:
            send({"error": "refused", "refused": refused[0]})
        else:
            send({"error": "exception", "type": type(e).__name__, "detail": str(e)[:500],
                  "line": line})
        return
    if refused:
        send({"error": "refused", "refused": refused[0]})
    elif isinstance(score, bool) or not isinstance(score, int | float):
        send({"error": "result", "detail": repr(score)[:200]})
    else:
        send({"score": float(score)})

_boot()
'''

_REFUSALS = {
    "network": "opened a network socket ({}), which graders may not do",
    "process": "started a process ({}), which graders may not do",
    "native": "loaded native code ({}), which graders may not do",
    "read": "{}, outside its temporary directory, which graders may not do",
    "write": "{}, outside its temporary directory, which graders may not do",
    "other": "called {}, which graders may not do",
}


def run_python_grader(name: str, source: str, sample: dict[str, Any], item: dict[str, Any], *,
                      timeout_s: float, memory_mb: int) -> float:
    """The score ``grade(sample, item)`` returns; anything else is a GraderError naming ``name``."""
    where = f"python grader '{name}'"
    cpu_s = max(1, math.ceil(timeout_s))
    request = {
        "source": source,
        "sample": sample,
        "item": item,
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
            [sys.executable, "-I", "-S", "-B", "-c", BOOT], cwd=workdir, env={},
            stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True, close_fds=True)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise GraderError(f"{where}: timed out after {timeout_s:g} s") from None
        finally:
            _kill_group(proc)
        stdout.seek(0)
        answer_text = stdout.read(FILE_SIZE_LIMIT).decode("utf-8", "replace")
        stderr.seek(max(0, os.fstat(stderr.fileno()).st_size - 400))
        tail = stderr.read().decode("utf-8", "replace").strip()
    return _score(where, proc.returncode, answer_text, tail, cpu_s=cpu_s, memory_mb=memory_mb)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _score(where: str, returncode: int, answer_text: str, stderr_tail: str, *,
           cpu_s: int, memory_mb: int) -> float:
    """The child's answer as a score, or the GraderError that says what went wrong."""
    try:
        answer = json.loads(answer_text) if answer_text else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
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
        kind, detail = answer["refused"]
        raise GraderError(f"{where}: {_REFUSALS[kind].format(detail)}")
    if error == "result":
        raise GraderError(f"{where}: grade() returned {answer['detail']}, not a number")
    at = f" at line {answer['line']}" if answer.get("line") else ""
    raise GraderError(f"{where}: raised {answer['type']}{at}: {answer['detail']}")
