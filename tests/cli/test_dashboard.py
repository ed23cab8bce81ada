"""``preftune dashboard``: serves the runs under its directories; refuses what it cannot."""

import re
import socket
import subprocess
import sys
import time

import httpx


def test_a_missing_directory_is_a_usage_error(cli, tmp_path):
    result = cli("dashboard", str(tmp_path / "nope"))
    assert result.code == 2
    assert f"{tmp_path / 'nope'} is not a directory" in result.err


def test_a_taken_port_is_a_usage_error(cli, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("dashboard", str(tmp_path), "--port", str(port))
    assert result.code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.err and "--port" in result.err


def test_the_command_serves_the_runs_and_says_where(tmp_path):
    run = tmp_path / "experiments" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"config": {"model": "tiny", "algo": "dpo"}}')
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.69}\n')
    server = subprocess.Popen([sys.executable, "-m", "preftune", "dashboard",
                               str(tmp_path / "experiments"), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, line
        url = found.group(0)
        deadline = time.monotonic() + 30
        while True:
            try:
                runs = httpx.get(url + "api/runs", timeout=5).json()["runs"]
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the dashboard did not answer"
                time.sleep(0.2)
        assert [r["id"] for r in runs] == ["r1"] and runs[0]["last"]["loss"] == 0.69
    finally:
        server.terminate()
        server.wait(timeout=30)
