import json

from preftune.cli.main import _hoist_verbose


def test_verbose_is_accepted_anywhere():
    assert _hoist_verbose(["validate", "x.json", "-v"]) == ["--verbose", "validate", "x.json"]
    assert _hoist_verbose(["-v", "validate"]) == ["--verbose", "validate"]
    assert _hoist_verbose(["validate", "x.json"]) == ["validate", "x.json"]
    assert _hoist_verbose(["config", "--", "-v"]) == ["config", "--", "-v"]


def test_missing_path_is_a_usage_error_without_traceback(cli, tmp_path):
    result = cli("validate", tmp_path / "nope.json")
    assert result.code == 2
    assert "error: dataset not found:" in result.err
    assert "hint:" in result.err
    assert "Traceback" not in result.err + result.out


def test_verbose_adds_the_traceback(cli, tmp_path):
    result = cli("validate", tmp_path / "nope.json", "-v")
    assert result.code == 2
    assert "Traceback" in result.err
    assert "error: dataset not found:" in result.err


def test_unknown_command_and_option_exit_2(cli):
    assert cli("nonsense").code == 2
    assert cli("validate", "--no-such-flag", "x").code == 2


def test_config_errors_exit_2_and_quote_the_value(cli):
    result = cli("config", "beta=-1")
    assert result.code == 2
    assert "error: invalid configuration: beta='-1'" in result.err


def test_config_prints_resolved_yaml_with_aliases(cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model_name: gpt2\npreset: quick\n")
    result = cli("config", "--config", cfg, "dpo_beta=0.3", "num_train_epochs=2")
    assert result.code == 0, result.err
    assert "model: gpt2" in result.out
    assert "beta: 0.3" in result.out
    assert "epochs: 2" in result.out
    assert "learning_rate: 0.0001" in result.out  # from the quick preset


def test_config_show_lists_every_option(cli):
    from preftune.config import TrainConfig

    result = cli("config", "--show")
    assert result.code == 0
    for name in TrainConfig.model_fields:
        assert name in result.out


def test_presets_lists_all_with_risks(cli):
    result = cli("presets")
    assert result.code == 0
    for name in ("balanced (default)", "aggressive", "conservative", "quantization", "quick"):
        assert name in result.out
    assert "Risks: Might overfit" in result.out
    assert "--algo simpo uses its own defaults: beta 2, gamma_beta_ratio 0.5" in result.out


def test_algorithms_lists_the_table(cli):
    from preftune.losses.table import ALGORITHMS

    result = cli("algorithms", "--json")
    assert result.code == 0
    rows = {row["name"]: row for row in json.loads(result.out)}
    assert set(rows) == set(ALGORITHMS)
    assert rows["dpo"]["start_loss"] == 0.6931 and rows["dpo"]["aliases"] == ["sigmoid"]
    assert rows["simpo"]["start_loss"] is None and rows["simpo"]["reference"] is False
    assert rows["simpo"]["hyperparameters"]["beta"] == 2.0  # its own default
    assert all(row["paper"] for row in rows.values())
    table = cli("algorithms")
    assert table.code == 0 and "simpo" in table.out and "Start loss:" in table.out
