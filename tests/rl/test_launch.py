"""The launcher: readiness, interleaved logs, and every process stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from preftune.errors import TrainingError
from preftune.rl.launch import Child, launch


def _sleeper(pid_file: Path) -> list[str]:
    """A child that writes its pid, says hello and runs until it is stopped."""
    code = (f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
            "print('hello', flush=True); time.sleep(600)")
    return [sys.executable, "-c", code]


def _gone(pid_file: Path) -> bool:
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill 0 until reaped; its /proc state says Z.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" in status.read_text()


def _wait_for(path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_the_main_process_ending_stops_the_others(tmp_path):
    lines: list[str] = []
    server = tmp_path / "server.pid"
    main = [sys.executable, "-c", f"import os, time\n"
            f"while not os.path.exists({str(server)!r}): time.sleep(0.05)\n"
            "print('trained', flush=True)\nraise SystemExit(7)"]
    code = launch([Child("server", _sleeper(server)), Child("trainer", main)], main="trainer",
                  echo=lines.append, grace_s=5)
    assert code == 7
    assert "[server ] hello" in lines and "[trainer] trained" in lines
    assert _gone(server)


def test_another_process_failing_stops_everything_with_exit_1(tmp_path):
    lines: list[str] = []
    trainer = tmp_path / "trainer.pid"
    # The env fails only once the trainer is up, so the trainer has a pid to check.
    env = [sys.executable, "-c", f"import os, time\n"
           f"while not os.path.exists({str(trainer)!r}): time.sleep(0.05)\n"
           "raise SystemExit(3)"]
    code = launch([Child("trainer", _sleeper(trainer)), Child("env", env)],
                  main="trainer", echo=lines.append, grace_s=5)
    assert code == 1
    assert any("env exited with code 3 before trainer finished" in line for line in lines)
    assert _gone(trainer)


def test_a_process_that_dies_before_it_is_ready_is_reported(tmp_path):
    with pytest.raises(TrainingError, match="api exited with code 2 before api was ready"):
        launch([Child("api", [sys.executable, "-c", "raise SystemExit(2)"],
                      ready_url="http://127.0.0.1:9/status"),
                Child("trainer", _sleeper(tmp_path / "never.pid"))],
               main="trainer", echo=lambda _: None, ready_timeout_s=30)
    assert not (tmp_path / "never.pid").exists()  # nothing after it was started


def test_ctrl_c_stops_every_process_and_exits_130(tmp_path):
    pids = [tmp_path / "a.pid", tmp_path / "b.pid"]
    script = textwrap.dedent(f"""
        import sys
        from preftune.rl.launch import Child, launch
        sleeper = {_sleeper(Path("PID"))!r}
        children = [Child(name, [a.replace("PID", path) for a in sleeper])
                    for name, path in (("a", {str(pids[0])!r}), ("b", {str(pids[1])!r}))]
        sys.exit(launch(children, main="b", echo=print, grace_s=5))
    """)
    launcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                text=True)
    for pid_file in pids:
        _wait_for(pid_file)
    launcher.send_signal(signal.SIGINT)
    out, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 130
    assert "interrupted: stopping every process" in out
    assert all(_gone(p) for p in pids)


def _launcher(tmp_path: Path, main_on_term: str) -> tuple[subprocess.Popen[str], Path, Path]:
    """A launcher of ``server`` (a sleeper) and ``trainer``, whose SIGTERM handler runs
    ``main_on_term`` (it may check the server still runs) then exits 0."""
    server, trainer = tmp_path / "server.pid", tmp_path / "trainer.pid"
    main_code = textwrap.dedent(f"""
        import os, signal, sys, time
        def stop(*_):
            {main_on_term}
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        open({str(trainer)!r}, "w").write(str(os.getpid()))
        while True:
            time.sleep(0.05)
    """)
    script = textwrap.dedent(f"""
        import sys
        from preftune.rl.launch import Child, launch
        children = [Child("server", {_sleeper(server)!r}),
                    Child("trainer", [sys.executable, "-c", {main_code!r}])]
        sys.exit(launch(children, main="trainer", echo=print, grace_s=5))
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               text=True)
    _wait_for(server)
    _wait_for(trainer)
    return process, server, trainer


def test_sigterm_stops_the_main_process_first_while_the_others_still_serve(tmp_path):
    """The trainer checkpoints on SIGTERM after its step, which needs the API and the
    environment: they are stopped once it is gone."""
    seen = tmp_path / "seen"
    check = (f"pid = int(open({str(tmp_path / 'server.pid')!r}).read()); os.kill(pid, 0); "
             f"open({str(seen)!r}, 'w').write('server alive')")
    launcher, server, trainer = _launcher(tmp_path, check)
    launcher.send_signal(signal.SIGTERM)
    out, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 128 + signal.SIGTERM
    assert "SIGTERM: stopping trainer first" in out
    assert seen.read_text() == "server alive"
    assert _gone(server) and _gone(trainer)


def test_a_killed_launcher_takes_its_processes_with_it(tmp_path):
    launcher, server, trainer = _launcher(tmp_path, "pass")
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 10
    while not (_gone(server) and _gone(trainer)):
        assert time.monotonic() < deadline, "a child outlived its SIGKILLed launcher"
        time.sleep(0.05)
