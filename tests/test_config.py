import pytest
import yaml
from pydantic import ValidationError

from preftune.config import PRESETS, TrainConfig, parse_overrides
from preftune.errors import ConfigError, ExitCode


def test_defaults_are_the_balanced_preset():
    cfg = TrainConfig()
    for key, value in PRESETS["balanced"]["values"].items():
        assert getattr(cfg, key) == value


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_values_apply(name):
    cfg = TrainConfig(preset=name)
    for key, value in PRESETS[name]["values"].items():
        assert getattr(cfg, key) == value


def test_preset_table_matches_the_tuning_guide():
    rows = {n: tuple(p["values"][k] for k in ("beta", "learning_rate", "epochs", "grad_accum",
                                               "warmup_steps")) for n, p in PRESETS.items()}
    assert rows == {
        "balanced": (0.1, 5e-5, 3, 8, 5),
        "aggressive": (0.2, 1e-4, 5, 8, 10),
        "conservative": (0.05, 2e-5, 5, 8, 20),
        "quantization": (0.1, 3e-5, 4, 8, 10),
        "quick": (0.1, 1e-4, 1, 4, 2),
    }


def test_explicit_values_beat_the_preset():
    cfg = TrainConfig(preset="aggressive", beta=0.3)
    assert cfg.beta == 0.3
    assert cfg.learning_rate == 1e-4


def test_simpo_gets_its_own_defaults_unless_given():
    cfg = TrainConfig(algo="simpo")
    assert (cfg.beta, cfg.gamma_beta_ratio, cfg.learning_rate) == (2.0, 0.5, 1e-6)
    assert TrainConfig(algo="simpo", learning_rate=3e-6).learning_rate == 3e-6
    assert TrainConfig(algo="dpo").beta == 0.1


def test_aliases_from_other_tools():
    cfg = TrainConfig.build({
        "model_name": "Qwen/Qwen3-4B", "dpo_beta": 0.2, "num_train_epochs": 2,
        "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
        "log_path": "runs/x", "n_examples": 10, "exp_name": "e1",
        "dataset_chosen_field": "good", "dataset_rejected_field": "bad",
    })
    assert (cfg.model, cfg.beta, cfg.epochs, cfg.batch_size, cfg.grad_accum) == (
        "Qwen/Qwen3-4B", 0.2, 2, 4, 2)
    assert (cfg.output_dir, cfg.n_examples, cfg.exp_name) == ("runs/x", 10, "e1")
    assert (cfg.chosen_field, cfg.rejected_field) == ("good", "bad")
    assert TrainConfig.build({"num_epochs": 4}).epochs == 4


def test_alias_and_name_disagreeing_is_an_error():
    with pytest.raises(ConfigError, match="dpo_beta=0.2 and beta=0.3"):
        TrainConfig.build({"dpo_beta": 0.2, "beta": 0.3})


def test_bad_value_is_quoted():
    with pytest.raises(ConfigError) as info:
        TrainConfig.build({"beta": -1})
    assert "beta=-1" in info.value.message
    assert info.value.exit_code == ExitCode.USAGE


def test_unknown_option_suggests_the_near_name():
    with pytest.raises(ConfigError) as info:
        TrainConfig.build({"learnin_rate": 1e-5})
    assert "unknown option 'learnin_rate'" in info.value.message
    assert "learning_rate" in info.value.message


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="unknown preset 'fast'.*balanced"):
        TrainConfig.build({"preset": "fast"})


def test_prompt_length_must_leave_room_for_the_response():
    with pytest.raises(ConfigError, match=r"max_prompt_length \(512\) must be less than "
                       r"max_length \(256\)"):
        TrainConfig.build({"max_length": 256})


def test_overrides_are_coerced_to_field_types():
    values = parse_overrides(["beta=0.2", "num_train_epochs=2", "lora=false",
                              "lora_target_modules=q_proj,v_proj", "eval_steps=none",
                              "--learning-rate=1e-5"])
    cfg = TrainConfig.build(values)
    assert cfg.beta == 0.2 and cfg.epochs == 2 and cfg.lora is False
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.eval_steps is None
    assert cfg.learning_rate == 1e-5


def test_override_errors():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["beta"])
    with pytest.raises(ConfigError, match="unknown option 'betta'"):
        parse_overrides(["betta=0.1"])
    with pytest.raises(ConfigError, match="epochs='two'"):
        TrainConfig.build(parse_overrides(["epochs=two"]))


def test_yaml_round_trip(tmp_path):
    cfg = TrainConfig(preset="quick", model="gpt2", lora_target_modules=["c_attn"])
    path = tmp_path / "cfg.yaml"
    cfg.to_yaml(path)
    assert TrainConfig.from_yaml(path) == cfg
    assert TrainConfig.from_yaml(path, {"dpo_beta": 0.5}).beta == 0.5


def test_yaml_with_aliases(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"model_name": "zephyr", "dpo_beta": 0.05}))
    cfg = TrainConfig.from_yaml(path)
    assert (cfg.model, cfg.beta) == ("zephyr", 0.05)


def test_yaml_errors_name_the_place(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("beta: 0.1\nmodel: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        TrainConfig.from_yaml(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- beta\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        TrainConfig.from_yaml(listed)
    with pytest.raises(ConfigError, match="cannot read config file"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_configs_are_immutable_and_rebuilt_to_change():
    cfg = TrainConfig(preset="quick")
    with pytest.raises(ValidationError):
        cfg.beta = 0.5  # type: ignore[misc]
    changed = TrainConfig.build({**cfg.model_dump(), "beta": 0.5})
    assert (changed.beta, changed.learning_rate, changed.epochs) == (0.5, 1e-4, 1)


def test_cdpo_and_robust_assume_some_label_noise():
    assert TrainConfig(algo="cdpo").label_smoothing == 0.1
    assert TrainConfig(algo="robust", label_smoothing=0.2).label_smoothing == 0.2
    assert TrainConfig(algo="dpo").label_smoothing == 0.0


def test_loss_options_that_cannot_apply_are_refused():
    from preftune.errors import ConfigError

    with pytest.raises(ConfigError, match="f_divergence=js_divergence does not apply to bco_pair"):
        TrainConfig.build({"algo": "bco_pair", "f_divergence": "js_divergence"})
    assert TrainConfig.build({"algo": ["bco_pair", "dpo"], "f_divergence": "js_divergence"})
    with pytest.raises(ConfigError, match="exo_pair needs label_smoothing > 0"):
        TrainConfig.build({"algo": "exo_pair", "label_smoothing": 0})
    assert TrainConfig.build({"algo": "exo_pair"}).label_smoothing == 1e-3
    with pytest.raises(ConfigError, match="use_weighting does not apply to aot"):
        TrainConfig.build({"algo": "aot", "use_weighting": True})
    with pytest.raises(ConfigError, match="kto needs batch_size >= 2"):
        TrainConfig.build({"algo": "kto", "batch_size": 1})
    with pytest.raises(ConfigError, match="ld_alpha does not apply to unpaired data"):
        TrainConfig.build({"algo": "kto", "batch_size": 4, "ld_alpha": 0.5})
    with pytest.raises(ConfigError, match="mixes paired and unpaired"):
        TrainConfig.build({"algo": ["kto", "dpo"], "batch_size": 4})
    with pytest.raises(ConfigError, match="loss_weights has 2 weights for 3 algorithms"):
        TrainConfig.build({"algo": "dpo,bco_pair,sft", "loss_weights": [1, 2]})
    with pytest.raises(ConfigError, match="lists an algorithm twice"):
        TrainConfig.build({"algo": "dpo,sigmoid"})
