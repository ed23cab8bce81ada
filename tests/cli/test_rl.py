"""``preftune rl ...`` from the command line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rl_api_serves_the_trajectory_api(tmp_path):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "preftune", "rl", "api", "--port",
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/status", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert status.json() == {"current_step": 0, "queue_size": 0}
        assert httpx.get(f"http://127.0.0.1:{port}/batch").json()["status"] == "error"
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
