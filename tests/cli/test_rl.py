"""``preftune rl ...`` from the command line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest


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


def test_rl_train_runs_grpo_on_the_apis_batches(cli, serving, tmp_path):
    from preftune.models.load import load_tokenizer
    from preftune.rl.trajectory_api import create_app

    tokenizer = load_tokenizer("tiny")
    prompt = tokenizer("Hi:")["input_ids"]
    answers = [tokenizer(" " + "a " * k, add_special_tokens=False)["input_ids"]
               for k in (1, 2, 3, 4)]
    group = {"tokens": [prompt + a for a in answers],
             "masks": [[-100] * len(prompt) + a for a in answers],
             "scores": [0.0, 0.25, 0.5, 1.0]}
    with serving(create_app()) as url:
        for _ in range(4):
            httpx.post(f"{url}/scored_data", json=group).raise_for_status()
        result = cli("rl", "train", "--api-url", url, "--training-steps", "2",
                     "--batch-size", "8", "--seq-len", "32", "--output-dir", tmp_path / "run")
    assert result.code == 0, result.err
    assert "step 1: loss" in result.out and "step 2: loss" in result.out
    assert "reward 0.438" in result.out  # the mean of 0, 0.25, 0.5 and 1
    assert (tmp_path / "run" / "final").is_dir()
    bad = cli("rl", "train", "--loss-type", "ppo")
    assert bad.code == 2 and "loss_type" in bad.err


def test_rl_serve_model_answers_completions():
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "preftune", "rl", "serve-model", "tiny",
                               "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None and time.monotonic() < deadline
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).raise_for_status()
                break
            except (httpx.TransportError, httpx.HTTPStatusError):
                time.sleep(0.3)
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=60, json={
            "prompt": "Hello", "n": 2, "max_tokens": 4, "logprobs": 1}).json()
        assert len(answer["choices"]) == 2
        assert all(len(c["logprobs"]["token_logprobs"]) == len(c["token_ids"])
                   for c in answer["choices"])
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


def test_process_then_to_pairs_then_train(cli, serving, tmp_path):
    """Online rollouts feeding offline DPO: the documented three-command workflow."""
    from preftune.rl.inference import create_app

    with serving(create_app("tiny", seed=0)) as url:
        scored = tmp_path / "scored.jsonl"
        result = cli("rl", "env", "process", "--config", "tiny", "--base-url", url,
                     "--output", scored, "--num-items", "8")
        assert result.code == 0, result.err
        assert "scored groups" in result.out
    pairs = tmp_path / "pairs.jsonl"
    converted = cli("rl", "to-pairs", scored, "--output", pairs)
    assert converted.code == 0, converted.err
    assert " pairs from " in converted.out
    trained = cli("train", "--dataset", pairs, "--output-dir", tmp_path / "run",
                  "max_steps=1", "grad_accum=1", "--batch-size", "2", "max_length=128",
                  "max_prompt_length=64")
    assert trained.code == 0, trained.err
    assert (tmp_path / "run" / "final").is_dir()


def test_env_config_errors_are_usage_errors(cli):
    result = cli("rl", "env", "evaluate", "--config", "no-such-config")
    assert result.code == 2 and "bundled configs:" in result.err and "tiny" in result.err


@pytest.mark.slow
def test_the_tiny_launch_raises_the_mean_reward(cli, tmp_path):
    """API, inference server, environment and trainer from one command, on this CPU."""
    import json

    run = tmp_path / "run"
    started = time.monotonic()
    result = cli("rl", "launch", "--config", "tiny", "--output-dir", run, "--api-port", "0",
                 "--inference-port", "0")
    assert result.code == 0, result.out[-3000:] + result.err
    assert time.monotonic() - started < 300
    assert f"run directory: {run}" in result.out
    for prefix in ("[api      ]", "[inference]", "[trainer  ]", "[env      ]"):
        assert prefix in result.out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rewards = [r["mean_reward"] for r in rows]
    assert len(rewards) == 30
    first, last = sum(rewards[:6]) / 6, sum(rewards[-6:]) / 6
    assert last > first + 0.1, rewards
    for part in ("config.json", "checkpoints.jsonl", "checkpoints", "final", "published"):
        assert (run / part).exists(), part
    assert [json.loads(line)["step"] for line in
            (run / "checkpoints.jsonl").read_text().splitlines()] == [10, 20, 30]


def test_atropos_spellings_of_options_work(cli):
    result = cli("rl", "train", "--loss_type", "ppo", "--model_name", "tiny")
    assert result.code == 2 and "loss_type" in result.err  # the option was read; its value is bad


def _vllm_config(tmp_path, steps):
    """The tiny config, training a LoRA adapter that `vllm serve` gets at every publish."""
    import yaml

    from preftune.rl.envconfig import config_path

    data = yaml.safe_load(config_path("tiny").read_text())
    data["trainer"].update(training_steps=steps, lora=True, lora_rank=4, save_steps=2)
    data["launch"] = {"inference": "vllm", "vllm_args": ["--max-loras", "1"]}
    path = tmp_path / "tiny-vllm.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_vllm_launch_serves_each_adapter_from_vllm(cli, tmp_path, monkeypatch):
    """`launch: {inference: vllm}` runs `vllm serve` (here a stand-in speaking vLLM's adapter
    endpoints, found on PATH as `vllm`) and the trainer loads every adapter into it."""
    from pathlib import Path

    standin = Path(__file__).parents[1] / "rl" / "vllm_standin.py"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vllm").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{standin}" "$@"\n')
    (bin_dir / "vllm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    run = tmp_path / "run"
    result = cli("rl", "launch", "--config", _vllm_config(tmp_path, 3), "--output-dir", run,
                 "--api-port", "0", "--inference-port", "0")
    assert result.code == 0, result.out[-3000:] + result.err
    assert "(max_lora_rank 8)" in result.out  # lora_rank 4 -> the next rank vLLM accepts
    loads = [line for line in result.out.splitlines()
             if line.startswith("[inference]") and "loaded adapter policy" in line]
    assert [line.split(" as ")[0].rsplit("/", 1)[-1] for line in loads] == [
        "step-0", "step-1", "step-2", "step-3"]
    # The stand-in answers 404 to any model name but the base and loaded adapters, so the
    # environment's groups were sampled from the adapter, by its name.
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert (run / "final" / "adapter_config.json").exists()


def test_a_vllm_launch_without_vllm_says_so(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = cli("rl", "launch", "--config", _vllm_config(tmp_path, 2))
    assert result.code == 2 and "'vllm' is not on PATH" in result.err


def test_the_bundled_gsm8k_launch_reads_and_asks_for_vllm(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = cli("rl", "launch", "--config", "gsm8k", "--output-dir", tmp_path / "run")
    assert result.code == 2 and "'vllm' is not on PATH" in result.err, result.err


def test_every_grpo_option_is_an_rl_train_flag():
    """`rl launch` passes its `trainer:` section as flags, so each option needs one."""
    import os

    from preftune.rlconfig import GRPOConfig

    help_text = subprocess.run([sys.executable, "-m", "preftune", "rl", "train", "--help"],
                               capture_output=True, text=True, check=True,
                               env={**os.environ, "COLUMNS": "250"}).stdout
    for name in GRPOConfig.model_fields:
        assert f"--{name.replace('_', '-')}" in help_text, name


def test_the_tiny_launch_trains_on_two_processes(cli, tmp_path):
    """`--trainer-processes 2` starts the trainer under accelerate launch (gloo on CPUs): the
    main process pulls each batch, both train their share, the run is the same run."""
    import json

    import yaml

    from preftune.rl.envconfig import config_path

    data = yaml.safe_load(config_path("tiny").read_text())
    data["trainer"].update(training_steps=3, save_steps=3)
    config = tmp_path / "tiny-3.yaml"
    config.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    result = cli("rl", "launch", "--config", config, "--output-dir", run, "--api-port", "0",
                 "--inference-port", "0", "--trainer-processes", "2")
    assert result.code == 0, result.out[-3000:] + result.err
    assert "trainer on 2 processes" in result.out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert (run / "final").exists()
    record = json.loads((run / "config.json").read_text())
    assert record["kind"] == "grpo"


def test_a_resumed_run_keeps_its_options_but_not_where_its_processes_were(cli, tmp_path):
    result = cli("rl", "train", "--resume", tmp_path, "--learning-rate", "0.1")
    assert result.code == 2
    assert "a resumed run keeps its options" in result.err and "learning_rate" in result.err
    result = cli("rl", "launch", "--config", "tiny", "--resume", "--output-dir", tmp_path)
    assert result.code == 2 and "holds none" in result.err
