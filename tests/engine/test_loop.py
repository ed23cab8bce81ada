import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from preftune.config import TrainConfig
from preftune.engine.loop import StepPlan, make_scheduler, train
from preftune.errors import ExitCode, TrainingError

FAST = {"epochs": 4, "batch_size": 8, "grad_accum": 1, "learning_rate": 2e-3,
        "warmup_steps": 2, "max_length": 256, "max_prompt_length": 128, "logging_steps": 4}
# SFT and ORPO score pairs by average log-prob, which a rank-16 adapter on a random model
# moves too slowly for a seconds-long test: they train the full tiny model instead.
ALGOS = {
    "dpo": {}, "ipo": {}, "cdpo": {"label_smoothing": 0.1}, "robust": {"label_smoothing": 0.1},
    "hinge": {}, "simpo": {"beta": 2.0},
    "orpo": {"lora": False, "learning_rate": 3e-3}, "sft": {"lora": False, "learning_rate": 3e-3},
}


@pytest.mark.parametrize("algo", list(ALGOS))
def test_each_algorithm_learns_the_preferences(algo, sample_pairs, tmp_path):
    cfg = TrainConfig(**{**FAST, "dataset": str(sample_pairs), "output_dir": str(tmp_path),
                         "algo": algo, **ALGOS[algo]})
    result = train(cfg)
    assert result.steps == 32
    assert result.metrics["loss"] < result.first_metrics["loss"]
    assert result.metrics["accuracy"] > 0.9
    assert result.metrics["accuracy"] >= result.first_metrics["accuracy"]


def test_run_directory_layout(sample_pairs, tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(**{**FAST, "epochs": 2, "dataset": str(sample_pairs),
                         "output_dir": str(run), "eval_split": 0.25, "save_total_limit": 1,
                         "lora": False})
    result = train(cfg)
    assert result.run_dir == run
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["learning_rate"] == 2e-3 and record["config"]["lora"] is False
    assert set(record["versions"]) >= {"python", "torch", "transformers", "peft", "preftune"}
    assert len(record["data"]["fingerprint"]) == 16
    assert record["data"]["train"]["pairs"] == 48 and record["data"]["eval"]["pairs"] == 16

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    eval_rows = [r for r in rows if "eval/loss" in r]
    assert [r["step"] for r in train_rows] == [4, 8, 12]
    for key in ("step", "epoch", "loss", "accuracy", "margin", "chosen_reward",
                "rejected_reward", "chosen_logps", "rejected_logps", "learning_rate",
                "grad_norm", "tokens_per_second", "examples_per_second", "peak_memory_mb"):
        assert key in train_rows[0], key
    assert eval_rows[-1]["step"] == 12
    for key in ("eval/loss", "eval/accuracy", "eval/margin", "eval/chosen_logps"):
        assert key in eval_rows[-1]

    manifest = [json.loads(line) for line in (run / "checkpoints.jsonl").read_text().splitlines()]
    assert manifest == [{"name": "step-12", "epoch": 2.0, "step": 12,
                         "state_path": "checkpoints/step-12",
                         "model_path": "checkpoints/step-12/model"}]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-12"]
    assert (run / "checkpoints/step-12/trainer_state.pt").exists()

    model = AutoModelForCausalLM.from_pretrained(run / "final")
    assert (run / "final" / "tokenizer.json").exists()
    assert model.config.model_type == "llama"
    # charts, diagnosis.json and trackers come from the caller's hooks (runs.artifacts)
    assert not (run / "plots").exists() and not (run / "diagnosis.json").exists()


def test_lora_final_loads_with_from_pretrained(sample_pairs, tmp_path):
    cfg = TrainConfig(**{**FAST, "epochs": 1, "max_steps": 2, "dataset": str(sample_pairs),
                         "output_dir": str(tmp_path)})
    train(cfg)
    assert (tmp_path / "final" / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert any("lora" in name for name, _ in model.named_parameters())


def test_nan_loss_stops_with_advice_and_keeps_the_last_good_checkpoint(sample_pairs, tmp_path,
                                                                        monkeypatch):
    from preftune.engine import loop

    real = loop.mixture_loss(("dpo",))
    calls = {"n": 0}

    def breaks_on_step_three(logps, params):
        calls["n"] += 1
        out = real(logps, params)
        if calls["n"] >= 3:
            out = type(out)(out.losses * float("nan"), out.chosen_rewards, out.rejected_rewards)
        return out

    monkeypatch.setattr(loop, "mixture_loss", lambda names, weights: breaks_on_step_three)
    cfg = TrainConfig(**{**FAST, "dataset": str(sample_pairs), "output_dir": str(tmp_path),
                         "save_steps": 2})
    with pytest.raises(TrainingError) as info:
        train(cfg)
    assert "the loss became nan at step 3" in info.value.message
    assert info.value.exit_code == ExitCode.TRAINING_FAILED
    assert "lower the learning rate from 0.002 to 0.001" in info.value.hints
    manifest = (tmp_path / "checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in manifest] == [2]
    assert not (tmp_path / "final").exists()


def test_existing_run_directory_is_not_overwritten(sample_pairs, tmp_path):
    cfg = TrainConfig(**{**FAST, "max_steps": 1, "dataset": str(sample_pairs),
                         "output_dir": str(tmp_path)})
    train(cfg)
    from preftune.errors import ConfigError

    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg)


def test_step_plan_and_schedule():
    plan = StepPlan(num_pairs=10, batch_size=3, grad_accum=2, epochs=2, max_steps=None)
    assert (plan.steps_per_epoch, plan.total_steps) == (2, 4)
    from preftune.engine.checkpoint import Position

    steps = list(plan.steps(seed=0, start=Position(0, 0, 0)))
    assert [(e, s, [len(m) for m in mb]) for e, s, mb in steps] == [
        (0, 0, [3, 3]), (0, 1, [3, 1]), (1, 0, [3, 3]), (1, 1, [3, 1])]
    assert sorted(i for m in steps[0][2] + steps[1][2] for i in m) == list(range(10))
    resumed = list(plan.steps(seed=0, start=Position(1, 1, 3)))
    assert resumed == steps[3:]
    # max_steps ends the plan mid-epoch, also for a run resumed from that very step.
    capped = StepPlan(num_pairs=10, batch_size=3, grad_accum=2, epochs=2, max_steps=3)
    assert list(capped.steps(seed=0, start=Position(0, 0, 0))) == steps[:3]
    assert list(capped.steps(seed=0, start=Position(1, 1, 3))) == []

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    cfg = TrainConfig(warmup_steps=2, lr_scheduler="linear")
    scheduler = make_scheduler(optimizer, cfg, total_steps=6)
    lrs = []
    for _ in range(6):
        lrs.append(round(scheduler.get_last_lr()[0], 4))
        optimizer.step()
        scheduler.step()
    assert lrs == [0.3333, 0.6667, 1.0, 0.75, 0.5, 0.25]


def test_grouped_plan_covers_every_pair_once_in_batches_of_similar_length():
    from preftune.engine.checkpoint import Position

    lengths = tuple((i * 37) % 100 for i in range(50))
    plan = StepPlan(num_pairs=50, batch_size=5, grad_accum=2, epochs=2, max_steps=None,
                    lengths=lengths)
    steps = list(plan.steps(seed=3, start=Position(0, 0, 0)))
    for epoch in (0, 1):
        batches = [m for e, _, mb in steps if e == epoch for m in mb]
        assert sorted(i for m in batches for i in m) == list(range(50))
        # Sorted within the window: each batch spans a fifth of the length range at most
        # (a shuffled batch of 5 spans about two thirds of it).
        assert max(max(lengths[i] for i in m) - min(lengths[i] for i in m)
                   for m in batches) <= 25
    assert steps[:5] != steps[5:]  # epochs differ
    assert list(plan.steps(seed=3, start=Position(1, 2, 7))) == steps[7:]


def _step_losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.parametrize("lora", [True, False])
def test_fast_paths_train_exactly_like_the_plain_path(lora, sample_pairs, tmp_path):
    base = {**FAST, "dataset": str(sample_pairs), "max_steps": 5, "logging_steps": 1,
            "lora": lora, "lora_dropout": 0.0}
    plain = train(TrainConfig(**base, output_dir=str(tmp_path / "plain"), shared_prompt=False,
                              pack_pairs=False, chunked_logps=False))
    fast = train(TrainConfig(**base, output_dir=str(tmp_path / "fast")))
    want, got = _step_losses(plain.run_dir), _step_losses(fast.run_dir)
    assert len(got) == 5
    assert max(abs(a - b) / abs(b) for a, b in zip(got, want, strict=True)) < 1e-5
    assert got[-1] < got[0]


@pytest.mark.slow
def test_torch_compile_trains_like_eager(sample_pairs, tmp_path):
    base = {**FAST, "dataset": str(sample_pairs), "max_steps": 2, "logging_steps": 1,
            "n_examples": 16, "lora_dropout": 0.0}
    eager = train(TrainConfig(**base, output_dir=str(tmp_path / "eager")))
    compiled = train(TrainConfig(**base, output_dir=str(tmp_path / "compiled"),
                                 torch_compile=True))
    want, got = _step_losses(eager.run_dir), _step_losses(compiled.run_dir)
    assert max(abs(a - b) / abs(b) for a, b in zip(got, want, strict=True)) < 1e-5


def test_bf16_weights_train_on_cpu(sample_pairs, tmp_path):
    cfg = TrainConfig(**{**FAST, "max_steps": 2, "logging_steps": 1, "dtype": "bf16",
                         "dataset": str(sample_pairs), "output_dir": str(tmp_path)})
    result = train(cfg)
    assert result.steps == 2 and math.isfinite(result.metrics["loss"])


def test_full_fine_tuning_with_a_precomputed_reference_loads_no_copy(sample_pairs, tmp_path,
                                                                     monkeypatch):
    """The policy before its first step is the reference: scoring it gives the same losses as
    a frozen copy scored live in every step, and only one model is ever loaded."""
    from preftune.engine import build

    loads = []
    real_load = build.load_model
    monkeypatch.setattr(build, "load_model",
                        lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    base = {**FAST, "dataset": str(sample_pairs), "max_steps": 4, "logging_steps": 1,
            "lora": False}
    precomputed = train(TrainConfig(**base, output_dir=str(tmp_path / "pre")))
    assert len(loads) == 1
    live = train(TrainConfig(**base, output_dir=str(tmp_path / "live"),
                             precompute_ref_logprobs=False))
    assert len(loads) == 3  # the policy and a frozen copy
    want, got = _step_losses(live.run_dir), _step_losses(precomputed.run_dir)
    assert got[0] == pytest.approx(math.log(2), abs=1e-6)
    assert max(abs(a - b) / abs(b) for a, b in zip(got, want, strict=True)) < 1e-5
    assert abs(got[-1] - got[0]) > 1e-3  # the policy moved: the parity covers real steps


def test_run_reports_its_time_by_phase(sample_pairs, tmp_path):
    result = train(TrainConfig(**{**FAST, "dataset": str(sample_pairs), "max_steps": 2,
                                  "eval_split": 0.25, "save_steps": 1,
                                  "output_dir": str(tmp_path)}))
    assert list(result.phases) == ["load", "tokenize", "reference", "forward", "backward",
                                   "optimizer", "logging", "evaluation", "checkpoint", "final"]
    assert all(seconds >= 0 for seconds in result.phases.values())
    assert result.phases["forward"] > 0 and result.phases["backward"] > 0
    assert sum(result.phases.values()) <= result.seconds
