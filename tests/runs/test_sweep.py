import json

import pytest

from preftune.errors import ConfigError, TrainingError, UsageError
from preftune.runs.sweep import Sweep, expand, parse_grid, read_sweep_yaml


def test_grid_flags_expand_into_named_validated_runs():
    grid = parse_grid(["beta=0.05,0.1", "lr=1e-5,5e-5"])
    assert grid == {"beta": ["0.05", "0.1"], "learning_rate": ["1e-5", "5e-5"]}
    runs = expand({"dataset": "d.jsonl"}, grid)
    assert [r.name for r in runs] == ["beta0.05_lr1e-5", "beta0.05_lr5e-5", "beta0.1_lr1e-5",
                                      "beta0.1_lr5e-5"]
    assert runs[1].params == {"beta": "0.05", "learning_rate": "5e-5"}
    with pytest.raises(ConfigError, match="beta='-1'"):
        expand({}, parse_grid(["beta=0.1,-1"]))
    with pytest.raises(UsageError, match="expected OPTION=V1,V2"):
        parse_grid(["beta"])
    with pytest.raises(ConfigError, match="unknown option 'betta'"):
        parse_grid(["betta=1,2"])


def test_a_grid_over_algorithms_takes_trl_names_and_mixtures(tmp_path):
    runs = expand({"dataset": "d.jsonl", "batch_size": 2},
                  parse_grid(["algo=sigmoid,kto,bco_pair+sft"]))
    assert [r.params["algo"] for r in runs] == ["sigmoid", "kto", "bco_pair+sft"]
    assert [r.name for r in runs] == ["algosigmoid", "algokto", "algobco-pair-sft"]
    path = tmp_path / "sweep.yaml"
    path.write_text("batch_size: 2\ngrid:\n  algo: [dpo, [dpo, sft]]\n  beta: [0.1]\n")
    base, grid, _ = read_sweep_yaml(path)
    assert [r.name for r in expand(base, grid)] == ["algodpo_beta0.1", "algodpo-sft_beta0.1"]
    with pytest.raises(ConfigError, match="algo='ppo': unknown algorithm"):
        expand({}, parse_grid(["algo=dpo,ppo"]))


def test_yaml_form_with_a_datasets_by_models_matrix(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("name: matrix\nepochs: 1\ngrid:\n"
                    "  dataset: [data/d1.parquet, data/d2.parquet, data/d3.parquet]\n"
                    "  model_name: [qwen3-4b, Qwen/Qwen3-8B, qwen3-30b-a3b]\n")
    base, grid, name = read_sweep_yaml(path)
    assert (base, name) == ({"epochs": 1}, "matrix")
    runs = expand(base, grid)
    assert len(runs) == 9
    assert runs[0].name == "datasetd1_modelqwen3-4b"
    assert runs[4].name == "datasetd2_modelqwen3-8b"
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  beta: 0.1\n")
    with pytest.raises(ConfigError, match="must map options to non-empty lists"):
        read_sweep_yaml(bad)


def test_rerun_skips_finished_runs_and_resumes_an_interrupted_one(tmp_path):
    sweep = Sweep(tmp_path)
    runs = expand({"dataset": "d.jsonl"}, {"beta": [0.05, 0.1, 0.2]})
    sweep.create("s", {"dataset": "d.jsonl"}, {"beta": [0.05, 0.1, 0.2]}, runs)
    calls = []

    def fake_train(cfg, resume=None):
        calls.append(("resume", resume.name) if resume else ("new", cfg.beta))
        run_dir = resume or tmp_path / "runs" / f"beta{cfg.beta}"
        (run_dir / "final").mkdir(parents=True)
        if cfg is not None and cfg.beta == 0.2:
            raise TrainingError("the loss became nan")

    assert sweep.run_all(fake_train) == {"beta0.05": "done", "beta0.1": "done",
                                         "beta0.2": "failed"}
    assert calls == [("new", 0.05), ("new", 0.1), ("new", 0.2)]
    rows = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert rows[2]["error"] == "the loss became nan"
    (tmp_path / "runs/beta0.2/final").rmdir()
    (tmp_path / "runs/beta0.2/config.json").write_text("{}")  # interrupted mid-training
    calls.clear()
    assert set(sweep.run_all(fake_train).values()) == {"done"}
    assert calls == [("resume", "beta0.2")]


def test_a_different_grid_in_the_same_directory_is_refused(tmp_path):
    sweep = Sweep(tmp_path)
    sweep.create("s", {}, {"beta": [1]}, expand({}, {"beta": [0.1]}))
    with pytest.raises(UsageError, match="holds a different sweep"):
        sweep.create("s", {}, {"beta": [0.2]}, expand({}, {"beta": [0.2]}))


def test_four_run_beta_sweep_computes_reference_log_probs_once(cli, sample_pairs, tmp_path,
                                                              preftune_cache, monkeypatch):
    # A reference cache of its own: other tests may have cached these very log-probs.
    from preftune.models.tiny import tiny_path

    shared = tiny_path()  # built in the session's cache, when no test before built it
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / shared.name).symlink_to(shared)
    monkeypatch.setenv("PREFTUNE_CACHE", str(cache))
    result = cli("sweep", "--dataset", sample_pairs, "--grid", "beta=0.05,0.1,0.2,0.5",
                 "--sweep-dir", tmp_path / "sweep", "--max-steps", 2, "--batch-size", 8,
                 "grad_accum=1", "max_length=256", "max_prompt_length=128")
    assert result.code == 0, result.err
    assert result.out.count("reference log-probs for 64 pairs: computing once") == 1
    assert result.out.count("reference log-probs for 64 pairs: cache hit") == 3
    assert "sweep finished: 4 of 4 runs done" in result.out
    manifest = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["done"] * 4
    assert manifest["base"]["dataset"] == str(sample_pairs)  # absolute: resumable anywhere
    again = cli("sweep", "--dataset", sample_pairs, "--grid", "beta=0.05,0.1,0.2,0.5",
                "--sweep-dir", tmp_path / "sweep", "--max-steps", 2, "--batch-size", 8,
                "grad_accum=1", "max_length=256", "max_prompt_length=128")
    assert again.code == 0 and again.out.count("done already: skipped") == 4
