"""The GRPO trainer against the real trajectory API, on the tiny model."""

from __future__ import annotations

import json
import math

import httpx
import pytest
import torch

from preftune.fsutil import read_jsonl
from preftune.rl.batches import flatten
from preftune.rl.logps import PROMPT
from preftune.rl.train import build_config, train_grpo


def test_flatten_shifts_targets_and_aligns_inference_logprobs():
    group = {"tokens": [[5, 6, 7, 8], [5, 6, 9]], "masks": [[-100, -100, 7, 8], [-100, -100, 9]],
             "scores": [1.0, 0.0], "inference_logprobs": [[1.0, 1.0, -0.5, -0.25],
                                                          [1.0, 1.0, -0.75]]}
    seqs = flatten([group], seq_len=16, scale=True)
    # Inputs drop the last token; targets are the next tokens where they are completion.
    assert seqs.input_ids.tolist() == [[5, 6, 7], [5, 6, 0]]
    assert seqs.labels.tolist() == [[PROMPT, 7, 8], [PROMPT, 9, PROMPT]]
    assert seqs.old_logps.tolist() == [[1.0, -0.5, -0.25], [1.0, -0.75, 0.0]]
    # Scores 1 and 0: mean 0.5, population std 0.5, so advantages +-1 (up to eps).
    assert seqs.advantages.tolist() == pytest.approx([1.0, -1.0], abs=1e-5)
    unscaled = flatten([group], seq_len=16, scale=False)
    assert unscaled.advantages.tolist() == pytest.approx([0.5, -0.5])
    cut = flatten([group], seq_len=2, scale=True)
    assert cut.input_ids.tolist() == [[5, 6], [5, 6]]


def test_bad_options_name_the_option():
    from preftune.errors import ConfigError

    with pytest.raises(ConfigError, match="loss_type"):
        build_config({"loss_type": "ppo"})
    with pytest.raises(ConfigError, match="nonsense"):
        build_config({"nonsense": 1})


def _groups(tokenizer, n_groups):
    """Groups of 4 completions of one prompt, scored by length: the longest is best."""
    prompt = tokenizer("Write something:")["input_ids"]
    words = ["yes", "yes yes", "yes yes yes yes", "yes yes yes yes yes yes yes yes"]
    completions = [tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in words]
    groups = []
    for _ in range(n_groups):
        groups.append({
            "tokens": [prompt + c for c in completions],
            "masks": [[-100] * len(prompt) + c for c in completions],
            "scores": [len(c) / len(completions[-1]) for c in completions]})
    return prompt, completions, groups


def _margin(policy_dir, prompt, completions):
    """Mean log-prob per token of the best completion minus the worst's."""
    from preftune.models.load import load_model

    model = load_model(str(policy_dir), "fp32").eval()
    means = []
    for c in (completions[-1], completions[0]):
        ids = torch.tensor([prompt + c])
        with torch.no_grad():
            logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        picked = logps[torch.arange(len(prompt) - 1, ids.shape[1] - 1), torch.tensor(c)]
        means.append(float(picked.mean()))
    return means[0] - means[1]


def test_grpo_learns_from_api_batches_and_resumes(serving, tmp_path):
    from preftune.models.load import load_tokenizer
    from preftune.rl.trajectory_api import create_app

    tokenizer = load_tokenizer("tiny")
    prompt, completions, groups = _groups(tokenizer, 18)  # 9 batches: 5, then 4 more
    with serving(create_app()) as url:
        for group in groups:
            assert httpx.post(f"{url}/scored_data", json=group).status_code == 200
        cfg = build_config({"model_name": "tiny", "training_steps": 8, "batch_size": 8,
                            "gradient_accumulation_steps": 2, "seq_len": 64,
                            "learning_rate": 5e-3, "api_url": url, "save_steps": 2,
                            "output_dir": str(tmp_path / "run"), "batch_timeout_s": 30})

        def stop_at_five(row):
            if row["step"] == 5:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train_grpo(cfg, on_step=stop_at_five)
        run = train_grpo(None, resume=tmp_path / "run")
    rows = read_jsonl(run.metrics_path)
    assert [r["step"] for r in rows] == list(range(1, 9))  # step 5 was logged again
    assert not any("kl" in r for r in rows)  # kl_coef 0: no reference, so no KL measured
    for key in ("loss", "mean_reward", "reward_std", "clip_frac", "tokens_per_second",
                "grad_norm", "entropy", "zero_advantage_frac", "peak_memory_mb"):
        assert all(key in r for r in rows), key
    assert 0 < rows[0]["entropy"] < math.log(len(tokenizer))  # nats, below the uniform's
    assert rows[0]["mean_reward"] == pytest.approx(sum(groups[0]["scores"]) / 4)
    assert [(r["step"], r["epoch"]) for r in read_jsonl(run.checkpoints_path)] == \
        [(2, None), (4, None), (6, None), (8, None)]  # GRPO has no epochs: null, not the step
    assert (run.final_path / "adapter_config.json").exists()
    assert (run.path / "published" / "latest").read_text().strip() == "step-8"
    record = json.loads(run.config_path.read_text())
    assert record["kind"] == "grpo" and record["versions"]["torch"] == torch.__version__
    assert (run.path / "plots" / "loss.png").exists()
    # The groups were recorded, not sampled from the policy: their scores cannot rise, and the
    # diagnosis says so.
    diagnosis = json.loads((run.path / "diagnosis.json").read_text())
    assert diagnosis["verdict"] == "reward_flat", diagnosis
    # The long (rewarded) completion became more likely relative to the short one.
    from preftune.models.load import resolve_model

    base = _margin(resolve_model("tiny"), prompt, completions)
    assert _margin(run.final_path, prompt, completions) > base + 0.1


def test_grpo_without_batches_gives_up_with_a_hint(serving, tmp_path):
    from preftune.errors import TrainingError
    from preftune.rl.trajectory_api import create_app

    with serving(create_app()) as url:
        cfg = build_config({"training_steps": 1, "api_url": url, "batch_timeout_s": 0.5,
                            "output_dir": str(tmp_path / "run")})
        with pytest.raises(TrainingError, match="no batch"):
            train_grpo(cfg)


def test_an_unreachable_api_is_a_usage_error(tmp_path):
    from preftune.errors import UsageError

    cfg = build_config({"training_steps": 1, "api_url": "http://127.0.0.1:9",
                        "output_dir": str(tmp_path / "run")})
    with pytest.raises(UsageError, match="cannot reach the trajectory API"):
        train_grpo(cfg)



def test_placement_follows_the_machine_and_the_options():
    from preftune.errors import ConfigError
    from preftune.rl.train import _placement

    device, dtype = _placement(build_config({}))
    if torch.cuda.is_available():
        bf16 = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        assert (device, dtype) == ("cuda", bf16)
        assert _placement(build_config({"lora": False}))[1] == "fp32"  # full FT keeps fp32
    else:
        assert (device, dtype) == ("cpu", "fp32")
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            _placement(build_config({"device": "cuda"}))
    assert _placement(build_config({"dtype": "bf16", "device": "cpu"}))[1] == "bf16"


def test_grpo_options_take_yaml_flags_key_value_and_aliases_like_training(tmp_path):
    from preftune.config import parse_overrides
    from preftune.errors import ConfigError
    from preftune.rlconfig import GRPO_SCHEMA, build_config, grpo_config

    yaml_file = tmp_path / "grpo.yaml"
    yaml_file.write_text("model_name_or_path: tiny\nmax_steps: 7\nbeta: 0.04\nlr: 2e-6\n"
                         "report_to: none\n", encoding="utf-8")
    cfg = grpo_config(yaml_file, {"batch_size": 4, "lora": False}, ["epsilon=0.3",
                                                                    "training_steps=9"])
    assert (cfg.model_name, cfg.kl_coef, cfg.learning_rate) == ("tiny", 0.04, 2e-6)
    assert (cfg.batch_size, cfg.lora, cfg.clip_eps) == (4, False, 0.3)
    assert cfg.training_steps == 9  # key=value wins over the file's max_steps
    assert cfg.report_to == []
    assert parse_overrides(["kl_beta=0.1"], GRPO_SCHEMA) == {"kl_coef": "0.1"}
    with pytest.raises(ConfigError, match="unknown option 'cliip_eps'") as info:
        parse_overrides(["cliip_eps=0.1"], GRPO_SCHEMA)
    assert any("clip_eps" in hint for hint in info.value.hints)
    assert any("preftune rl train --help" in hint for hint in info.value.hints)
    with pytest.raises(ConfigError, match=r"invalid configuration: clip_eps=1.5"):
        build_config({"epsilon": 1.5})
    with pytest.raises(ConfigError, match="set the same option 'kl_coef'"):
        build_config({"beta": 0.1, "kl_coef": 0.2})


def test_every_grpo_option_is_a_flag_of_rl_train():
    import typer

    from preftune.cli.main import app
    from preftune.rlconfig import GRPOConfig

    rl = typer.main.get_command(app).commands["rl"]  # type: ignore[attr-defined]
    flags = {opt for param in rl.commands["train"].params for opt in param.opts}
    for name in GRPOConfig.model_fields:
        assert f"--{name.replace('_', '-')}" in flags, name
