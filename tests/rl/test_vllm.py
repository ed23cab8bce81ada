"""Publishing LoRA adapters to a vLLM server, against a stand-in that speaks vLLM's endpoints."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import httpx
import pytest

from preftune.errors import ConfigError, TrainingError, UsageError
from preftune.rl.train import build_config, train_grpo
from preftune.rl.vllm import PublishError, VLLMAdapters, server_root

STANDIN = Path(__file__).with_name("vllm_standin.py")


def _standin(**kwargs):
    spec = importlib.util.spec_from_file_location("vllm_standin", STANDIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.create_standin("tiny", **{"runtime_updates": True, **kwargs})


@pytest.fixture(scope="module")
def adapters_on_disk(tmp_path_factory):
    """Two different rank-4 adapters and one rank-32 adapter of the tiny model."""
    import torch

    from preftune.models.load import add_lora, load_model

    root = tmp_path_factory.mktemp("adapters")
    for name, rank, seed in (("a", 4, 0), ("b", 4, 1), ("wide", 32, 2)):
        torch.manual_seed(seed)
        model = add_lora(load_model("tiny", "fp32"), rank, 2 * rank, 0.0, "all-linear")
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.5)  # a B of zeros would leave the model as is
        model.save_pretrained(root / name)
    return root


def _complete(url: str, model: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/completions", json={"model": model, "prompt": "Hello",
                                                     "max_tokens": 4, "temperature": 0,
                                                     "logprobs": 1}, timeout=60)


def test_server_root_takes_urls_with_or_without_v1():
    assert server_root("http://h:8000/v1/") == "http://h:8000"
    assert server_root("http://h:8000") == "http://h:8000"


def test_adapters_are_loaded_then_replaced_in_place(serving, adapters_on_disk):
    app = _standin()
    with serving(app) as url:
        publisher = VLLMAdapters(url + "/v1", "policy")
        assert publisher.check() == ["tiny"]
        assert _complete(url, "policy").status_code == 404  # not served before the first load
        publisher.load(adapters_on_disk / "a")
        first = _complete(url, "policy")
        publisher.load(adapters_on_disk / "b")
        second = _complete(url, "policy")
        assert publisher.check() == ["tiny", "policy"]
    loads = app.state.standin["loads"]
    assert [(x["name"], Path(x["path"]).name, x["inplace"]) for x in loads] == [
        ("policy", "a", False), ("policy", "b", True)]
    assert publisher.inplace and publisher.loads == 2
    # The second adapter is the one that answered the second request.
    assert first.status_code == second.status_code == 200
    assert first.headers["x-preftune-weights"] == "step-0"
    assert second.headers["x-preftune-weights"] == "step-1"
    assert (first.json()["choices"][0]["logprobs"]["token_logprobs"]
            != second.json()["choices"][0]["logprobs"]["token_logprobs"])


def test_a_server_without_load_inplace_gets_unload_then_load(serving, adapters_on_disk):
    app = _standin(legacy=True)
    with serving(app) as url:
        publisher = VLLMAdapters(url, "policy")
        for name in ("a", "b", "a"):
            publisher.load(adapters_on_disk / name)
        assert _complete(url, "policy").status_code == 200
    assert not publisher.inplace and publisher.loads == 3
    assert [Path(x["path"]).name for x in app.state.standin["loads"]] == ["a", "b", "a"]


def test_a_server_without_runtime_loading_says_how_to_start_it(serving, adapters_on_disk):
    with serving(_standin(runtime_updates=False)) as url:
        with pytest.raises(PublishError) as e:
            VLLMAdapters(url, "policy").load(adapters_on_disk / "a")
    assert "404" in e.value.message
    assert any("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in h for h in e.value.hints)


def test_vllms_own_refusals_are_passed_on(serving, adapters_on_disk, tmp_path):
    with serving(_standin(max_lora_rank=16)) as url:
        publisher = VLLMAdapters(url, "policy")
        with pytest.raises(PublishError, match="LoRA rank 32 is greater than max_lora_rank 16"):
            publisher.load(adapters_on_disk / "wide")
        with pytest.raises(PublishError, match="No adapter found"):
            publisher.load(tmp_path / "nothing-here")


def test_an_unreachable_vllm_server_is_a_usage_error():
    with pytest.raises(UsageError, match="cannot reach the vLLM server"):
        VLLMAdapters("http://127.0.0.1:9", "policy").check()


def test_vllm_publishing_needs_lora():
    with pytest.raises(ConfigError, match="LoRA adapters"):
        build_config({"vllm_url": "http://127.0.0.1:9001", "lora": False})


def _scored_groups(n):
    from preftune.models.load import load_tokenizer

    tokenizer = load_tokenizer("tiny")
    prompt = tokenizer("Say:")["input_ids"]
    completions = [tokenizer(" " + "yes " * k, add_special_tokens=False)["input_ids"]
                   for k in (1, 2, 4, 8)]
    return [{"tokens": [prompt + c for c in completions],
             "masks": [[-100] * len(prompt) + c for c in completions],
             "scores": [0.0, 0.25, 0.5, 1.0]} for _ in range(n)]


def test_the_trainer_publishes_each_adapter_to_vllm(serving, tmp_path):
    from preftune.rl.trajectory_api import create_app

    standin = _standin()
    with serving(create_app()) as api, serving(standin) as vllm:
        for group in _scored_groups(8):
            assert httpx.post(f"{api}/scored_data", json=group).status_code == 200
        cfg = build_config({"training_steps": 4, "batch_size": 8, "seq_len": 64,
                            "learning_rate": 1e-3, "lora_rank": 8, "api_url": api,
                            "vllm_url": vllm + "/v1", "vllm_lora_name": "grpo-policy",
                            "publish_every": 2, "save_steps": 10, "batch_timeout_s": 30,
                            "output_dir": str(tmp_path / "run")})
        run = train_grpo(cfg)
        assert _complete(vllm, "grpo-policy").status_code == 200
    loads = standin.state.standin["loads"]
    # Before the first step (so environments find the name), then every second step.
    assert [Path(x["path"]).name for x in loads] == ["step-0", "step-2", "step-4"]
    assert [x["inplace"] for x in loads] == [False, True, True]
    assert all(Path(x["path"]).parent == run.path / "published" for x in loads)
    assert json.loads(run.config_path.read_text())["config"]["vllm_url"] == vllm + "/v1"


def test_a_failed_publish_keeps_a_checkpoint_to_resume_from(serving, tmp_path):
    from preftune.fsutil import read_jsonl
    from preftune.rl.trajectory_api import create_app

    standin = _standin()

    def vllm_goes_away(row):
        if row["step"] == 3:
            standin.state.standin["runtime_updates"] = False

    with serving(create_app()) as api, serving(standin) as vllm:
        for group in _scored_groups(8):
            httpx.post(f"{api}/scored_data", json=group)
        cfg = build_config({"training_steps": 4, "batch_size": 8, "seq_len": 64,
                            "api_url": api, "vllm_url": vllm, "save_steps": 10,
                            "batch_timeout_s": 30, "output_dir": str(tmp_path / "run")})
        with pytest.raises(TrainingError) as e:
            train_grpo(cfg, on_step=vllm_goes_away)
    assert any("--resume" in h and "step 3" in h for h in e.value.hints)
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "checkpoints.jsonl")] == [3]
