"""Running the online-RL processes together: start, wait for readiness, interleave logs, stop.

The launcher starts each process as a child in its own process group, prefixes every line
it prints with the process's name, and waits until the *main* process (the trainer) ends.
Then, or on Ctrl-C or SIGTERM, or when any other process dies, it stops them all: SIGTERM to
the main process first, which checkpoints after its current step (the others go on serving it
meanwhile), then to the rest; SIGKILL to what is left after a grace period. A process with a
``ready_url`` must answer it before the next one starts (the trajectory API before the
environment, the inference server before both). On Linux each child is killed when the
launcher dies, so a SIGKILLed launcher leaves nothing running.
"""

from __future__ import annotations

import os
import queue as queues
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from preftune.errors import TrainingError


@dataclass(frozen=True)
class Child:
    name: str
    command: list[str]
    ready_url: str | None = None  # a GET that answers 2xx once the process serves
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Running:
    child: Child
    process: subprocess.Popen[str]
    reader: threading.Thread


def launch(children: Sequence[Child], main: str, echo: Callable[[str], None],
           ready_timeout_s: float = 300.0, grace_s: float = 15.0) -> int:
    """Run ``children`` in order until ``main`` exits; its exit code (1 if another process
    failed first, 130 on Ctrl-C)."""
    lines: queues.Queue[tuple[str, str | None]] = queues.Queue()
    running: list[Running] = []
    width = max(len(c.name) for c in children)
    previous = _on_sigterm()
    try:
        for child in children:
            running.append(_start(child, lines))
            if child.ready_url:
                _wait_ready(running, child, lines, echo, width, ready_timeout_s)
        return _follow(running, main, lines, echo, width)
    except KeyboardInterrupt:
        echo("interrupted: stopping every process")
        return 130
    except _Terminated:
        echo(f"SIGTERM: stopping {main} first, then every other process")
        return 128 + signal.SIGTERM
    finally:
        _stop_all(running, main, grace_s, lambda: _drain(lines, echo, width))
        _drain(lines, echo, width)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(Exception):
    """SIGTERM reached the launcher."""


def _on_sigterm() -> Any:
    """Turn SIGTERM into ``_Terminated`` (main thread only); the previous handler, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the stop is under way
        raise _Terminated

    return signal.signal(signal.SIGTERM, handler)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the launcher dies (Linux's PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def _start(child: Child, lines: queues.Queue[tuple[str, str | None]]) -> Running:
    process = subprocess.Popen(child.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, bufsize=1,
                               start_new_session=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", **child.env},
                               preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put((child.name, line.rstrip("\n")))
        lines.put((child.name, None))

    reader = threading.Thread(target=read, name=f"log-{child.name}", daemon=True)
    reader.start()
    return Running(child, process, reader)


def _wait_ready(running: list[Running], child: Child,
                lines: queues.Queue[tuple[str, str | None]], echo: Callable[[str], None],
                width: int, timeout_s: float) -> None:
    assert child.ready_url is not None
    deadline = time.monotonic() + timeout_s
    while True:
        _drain(lines, echo, width)
        for r in running:
            if r.process.poll() is not None:
                raise TrainingError(f"{r.child.name} exited with code {r.process.returncode} "
                                    f"before {child.name} was ready")
        try:
            if httpx.get(child.ready_url, timeout=2).is_success:
                echo(f"{child.name} is ready at {child.ready_url}")
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TrainingError(f"{child.name} did not answer {child.ready_url} within "
                                f"{timeout_s:.0f} s")
        time.sleep(0.2)


def _follow(running: list[Running], main: str, lines: queues.Queue[tuple[str, str | None]],
            echo: Callable[[str], None], width: int) -> int:
    while True:
        _drain(lines, echo, width, wait_s=0.2)
        for r in running:
            code = r.process.poll()
            if code is None:
                continue
            if r.child.name == main:
                r.reader.join(timeout=5)
                return code
            if code == 0:  # it finished its part (an environment out of data): no alarm
                echo(f"{r.child.name} finished")
                running.remove(r)
                break
            echo(f"{r.child.name} exited with code {code} before {main} finished: stopping")
            return 1


def _stop_all(running: list[Running], main: str, grace_s: float,
              drain: Callable[[], None]) -> None:
    """Stop ``main`` first (the others serve it until it is gone), then the rest; each
    group is SIGKILLed when it outlives its grace (``grace_s`` for ``main``, at most 5 s for
    the rest, which have no state to save)."""
    first = [r for r in running if r.child.name == main]
    rest = [r for r in running if r.child.name != main]
    for group, grace in ((first, grace_s), (rest, min(grace_s, 5.0))):
        deadline = time.monotonic() + grace
        for r in group:
            if r.process.poll() is None:
                _signal(r.process.pid, signal.SIGTERM)
        for r in group:
            while r.process.poll() is None and time.monotonic() < deadline:
                drain()
                time.sleep(0.05)
            if r.process.poll() is None:
                _signal(r.process.pid, signal.SIGKILL)
                r.process.wait()


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _drain(lines: queues.Queue[tuple[str, str | None]], echo: Callable[[str], None],
           width: int, wait_s: float = 0.0) -> None:
    try:
        name, line = lines.get(timeout=wait_s) if wait_s else lines.get_nowait()
    except queues.Empty:
        return
    while True:
        if line is not None:
            echo(f"[{name:<{width}}] {line}")
        try:
            name, line = lines.get_nowait()
        except queues.Empty:
            return
