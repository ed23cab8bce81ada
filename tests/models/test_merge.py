import json
import shutil

import pytest
import torch
import typer
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM
from typer.testing import CliRunner

from preftune.cli.merge import parse_model_weight, register
from preftune.data.sample import iter_samples
from preftune.engine.logprobs import collate_pairs, sequence_logps
from preftune.errors import ConfigError, MissingError, UsageError
from preftune.models.load import add_lora, load_model, load_tokenizer
from preftune.models.merge import (
    MergeWarning,
    load_merge_config,
    merge_adapter,
    weighted_merge,
)
from preftune.models.tiny import tiny_path

Q_PROJ = "model.layers.0.self_attn.q_proj"


@pytest.fixture(scope="module")
def other_adapter(lora_run, tmp_path_factory):
    """The run's adapter with every LoRA weight perturbed: a second adapter on the same base."""
    path = tmp_path_factory.mktemp("adapter") / "other"
    shutil.copytree(lora_run / "final", path)
    weights = load_file(path / "adapter_model.safetensors")
    generator = torch.Generator().manual_seed(7)
    save_file({k: v + 0.05 * torch.randn(v.shape, generator=generator)
               for k, v in weights.items()}, path / "adapter_model.safetensors")
    return path


@pytest.fixture(scope="module")
def full_models(tmp_path_factory):
    """Two full models: the tiny model with different seeded noise on every parameter."""
    root = tmp_path_factory.mktemp("full")
    tokenizer = load_tokenizer("tiny")
    paths = []
    for seed in (1, 2):
        model = load_model("tiny", "fp32")
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(0.02 * torch.randn(param.shape, generator=generator))
        model.save_pretrained(root / f"m{seed}")
        tokenizer.save_pretrained(root / f"m{seed}")
        paths.append(root / f"m{seed}")
    return paths


def plain(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def weight(model, module=Q_PROJ):
    return model.get_submodule(module).weight.detach()


# ------------------------------------------------------------------------- adapter → base


def test_merged_model_gives_the_adapter_models_log_probs(lora_run, tmp_path):
    from peft import PeftModel

    out = merge_adapter(lora_run, tmp_path / "merged")
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert not (out / "adapter_config.json").exists()

    tokenizer = load_tokenizer(str(out))
    samples = list(iter_samples(3, seed=11))
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:40]
           for s in samples for t in (s.prompt, s.responses[0], s.responses[-1])]
    batch = collate_pairs(ids[0::3], ids[1::3], ids[2::3], tokenizer.pad_token_id)
    # float64 so that the comparison tests the merge, not float32 rounding of ~-100 sums.
    merged = plain(out).double()
    adapter = PeftModel.from_pretrained(load_model("tiny", "fp32"),
                                        lora_run / "final").double().eval()
    base = load_model("tiny", "fp32").double().eval()
    with torch.no_grad():
        m, a, b = (sequence_logps(model, batch) for model in (merged, adapter, base))
    torch.testing.assert_close(m.chosen, a.chosen, rtol=0, atol=1e-5)
    torch.testing.assert_close(m.rejected, a.rejected, rtol=0, atol=1e-5)
    # The trained adapter is not a no-op, so the parity above is about the merge.
    assert (m.chosen - b.chosen).abs().max() > 1e-3


def test_merge_a_named_checkpoint(lora_run, tmp_path):
    out = merge_adapter(lora_run, tmp_path / "step2", checkpoint="step-2")
    final = merge_adapter(lora_run, tmp_path / "final")
    assert (out / "tokenizer.json").exists()  # from final/: checkpoints hold no tokenizer
    assert not torch.equal(weight(plain(out)), weight(plain(final)))
    with pytest.raises(UsageError, match="no checkpoint 'step-9'") as info:
        merge_adapter(lora_run, tmp_path / "x", checkpoint="step-9")
    assert "step-2" in info.value.hints[0]


def test_a_bf16_base_gives_a_bf16_merged_model(tmp_path):
    load_model("tiny", "bf16").save_pretrained(tmp_path / "base")
    load_tokenizer("tiny").save_pretrained(tmp_path / "base")
    adapter = add_lora(load_model(str(tmp_path / "base"), "bf16"), 4, 8, 0.0, "all-linear")
    with torch.no_grad():
        for name, param in adapter.named_parameters():
            if "lora_B" in name:
                param.fill_(0.01)
    adapter.save_pretrained(tmp_path / "adapter")
    out = merge_adapter(tmp_path / "adapter", tmp_path / "merged")
    assert {t.dtype for t in load_file(out / "model.safetensors").values()} == {torch.bfloat16}
    assert (out / "tokenizer.json").exists()  # from the base: the adapter directory has none


def test_a_full_model_has_nothing_to_merge(tmp_path):
    with pytest.raises(UsageError, match="nothing to merge") as info:
        merge_adapter(tiny_path(), tmp_path / "out")
    assert "export" in info.value.hints[0]


def test_output_that_would_replace_the_source_is_refused(lora_run, tmp_path):
    with pytest.raises(UsageError, match="would replace"):
        merge_adapter(lora_run, lora_run)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a model"):
        merge_adapter(lora_run, tmp_path)


# ---------------------------------------------------------------------------- full models


def test_linear_merge_of_full_models_is_the_weighted_sum(full_models, tmp_path):
    a, b = full_models
    out = weighted_merge([(str(a), 0.6), (str(b), 0.4)], "linear", tmp_path / "m")
    merged, pa, pb = plain(out).state_dict(), plain(a).state_dict(), plain(b).state_dict()
    assert merged.keys() == pa.keys()
    for name, param in merged.items():
        torch.testing.assert_close(param, 0.6 * pa[name] + 0.4 * pb[name], rtol=0, atol=1e-6)


def test_weights_are_not_normalised_and_a_wrong_sum_warns(full_models, tmp_path):
    a, b = full_models
    with pytest.warns(MergeWarning, match="sum to 1.5"):
        out = weighted_merge([(str(a), 1.0), (str(b), 0.5)], "linear", tmp_path / "m")
    expected = weight(plain(a)) + 0.5 * weight(plain(b))
    torch.testing.assert_close(weight(plain(out)), expected, rtol=0, atol=1e-6)


def test_full_models_of_different_shapes_are_refused(full_models, tmp_path):
    config = AutoConfig.from_pretrained(tiny_path())
    config.intermediate_size = 128
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "narrow")
    with pytest.raises(UsageError, match=r"mlp\.\w+_proj\.weight has shape") as info:
        weighted_merge([(str(full_models[0]), 0.5), (str(tmp_path / "narrow"), 0.5)],
                       "linear", tmp_path / "m")
    assert "(176, 64)" in info.value.message or "(64, 176)" in info.value.message


def test_full_models_merge_only_linearly(full_models, tmp_path):
    with pytest.raises(UsageError, match="'ties' merges LoRA adapters"):
        weighted_merge([(str(p), 0.5) for p in full_models], "ties", tmp_path / "m")


def test_adapters_and_full_models_do_not_mix(lora_run, full_models, tmp_path):
    with pytest.raises(UsageError, match="cannot merge LoRA adapters with full models"):
        weighted_merge([(str(lora_run), 0.5), (str(full_models[0]), 0.5)], "linear",
                       tmp_path / "m")


# ------------------------------------------------------------------------------- adapters


@pytest.mark.parametrize("strategy", ["linear", "ties", "dare_linear"])
def test_adapter_merge_writes_a_plain_model_unlike_the_base(lora_run, other_adapter, tmp_path,
                                                            strategy):
    out = weighted_merge([(str(lora_run), 0.5), (str(other_adapter), 0.5)], strategy,
                         tmp_path / strategy)
    assert not (out / "adapter_config.json").exists()
    merged, base = plain(out), load_model("tiny", "fp32")
    assert (weight(merged) - weight(base)).abs().max() > 1e-4
    # Only the adapted linear layers change.
    assert torch.equal(weight(merged, "model.embed_tokens"), weight(base, "model.embed_tokens"))


def test_dare_drops_the_same_entries_every_time(lora_run, other_adapter, tmp_path):
    models = [(str(lora_run), 1.0), (str(other_adapter), 1.0)]
    first = weighted_merge(models, "dare_ties", tmp_path / "a", density=0.3)
    second = weighted_merge(models, "dare_ties", tmp_path / "b", density=0.3)
    assert torch.equal(weight(plain(first)), weight(plain(second)))


def test_cat_merge_is_the_exact_weighted_sum_of_the_deltas(lora_run, other_adapter, tmp_path):
    out = weighted_merge([(str(lora_run), 0.7), (str(other_adapter), 0.3)], "cat", tmp_path / "c")
    config = json.loads((other_adapter / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    expected = weight(load_model("tiny", "fp32")).clone()
    for w, adapter in ((0.7, lora_run / "final"), (0.3, other_adapter)):
        tensors = load_file(adapter / "adapter_model.safetensors")
        lora_a = tensors[f"base_model.model.{Q_PROJ}.lora_A.weight"]  # (r, in)
        lora_b = tensors[f"base_model.model.{Q_PROJ}.lora_B.weight"]  # (out, r)
        expected += w * scale * lora_b @ lora_a
    torch.testing.assert_close(weight(plain(out)), expected, rtol=0, atol=1e-6)


def test_adapters_on_different_bases_are_refused(other_adapter, full_models, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(other_adapter, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(full_models[0])
    (moved / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="different base models") as info:
        weighted_merge([(str(other_adapter), 0.5), (str(moved), 0.5)], "linear", tmp_path / "m")
    assert str(full_models[0]) in info.value.message


def test_unequal_ranks_need_cat(other_adapter, tmp_path):
    small = tmp_path / "r8"
    add_lora(load_model("tiny", "fp32"), 8, 16, 0.0, "all-linear").save_pretrained(small)
    models = [(str(other_adapter), 0.5), (str(small), 0.5)]
    with pytest.raises(UsageError, match="equal rank") as info:
        weighted_merge(models, "linear", tmp_path / "m")
    assert "r=8" in info.value.message and "cat" in info.value.hints[0]
    assert (weighted_merge(models, "cat", tmp_path / "m") / "model.safetensors").exists()


def test_bad_weighted_merge_arguments_quote_the_value(full_models, tmp_path):
    models = [(str(p), 0.5) for p in full_models]
    with pytest.raises(UsageError, match="'mean'"):
        weighted_merge(models, "mean", tmp_path / "m")
    with pytest.raises(UsageError, match="density 1.5"):
        weighted_merge(models, "ties", tmp_path / "m", density=1.5)
    with pytest.raises(UsageError, match="two or more"):
        weighted_merge(models[:1], "linear", tmp_path / "m")
    with pytest.raises(MissingError, match="'no-such-model'"):
        weighted_merge([("no-such-model", 0.5), models[1]], "linear", tmp_path / "m")


# ---------------------------------------------------------------------------- config, CLI


def test_config_file_merge_through_the_cli(full_models, tmp_path):
    config = tmp_path / "merge.yaml"
    config.write_text(yaml.safe_dump({
        "strategy": "linear", "output_path": str(tmp_path / "from-yaml"),
        "models": [{"path": str(full_models[0]), "weight": 0.6},
                   {"path": str(full_models[1]), "weight": 0.4}]}))
    assert load_merge_config(config).density == 0.5

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["merge", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "model.safetensors" in result.output
    expected = 0.6 * weight(plain(full_models[0])) + 0.4 * weight(plain(full_models[1]))
    torch.testing.assert_close(weight(plain(tmp_path / "from-yaml")), expected, rtol=0,
                               atol=1e-6)


@pytest.mark.parametrize(("key", "value"), [("strategy", "average"), ("weight", "heavy"),
                                            ("density", 1.5)])
def test_config_errors_quote_the_bad_value(tmp_path, key, value):
    data = {"strategy": "ties", "output_path": "out", "density": 0.5,
            "models": [{"path": "a", "weight": 0.5}, {"path": "b", "weight": 0.5}]}
    if key == "weight":
        data["models"][1]["weight"] = value
    else:
        data[key] = value
    path = tmp_path / "merge.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_merge_config(path)
    assert repr(value) in info.value.message and str(path) in info.value.message


def test_model_weight_pairs_split_on_the_last_colon():
    assert parse_model_weight("hf:org/x:y:0.25") == {"path": "hf:org/x:y", "weight": 0.25}
    assert parse_model_weight("runs/a:-1e-1") == {"path": "runs/a", "weight": -0.1}
    for bad in ("runs/a", "runs/a:", "runs/a:heavy", ":0.5", "runs/a:nan"):
        with pytest.raises(UsageError, match=repr(bad)):
            parse_model_weight(bad)


def test_cli_merges_a_run_and_reports_mistakes(lora_run, tmp_path):
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    result = runner.invoke(app, ["merge", str(lora_run), "--output", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "merged the adapter" in result.output and "model.safetensors" in result.output
    assert (tmp_path / "m" / "config.json").exists()

    result = runner.invoke(app, ["merge", str(lora_run), "--models", "a:1",
                                 "--output", str(tmp_path / "x")])
    assert isinstance(result.exception, UsageError)
    result = runner.invoke(app, ["merge", "--models", "a:1", "--models", "b:0",
                                 "--strategy", "soup", "--output", str(tmp_path / "x")])
    assert isinstance(result.exception, ConfigError)
    assert "'soup'" in result.exception.message
