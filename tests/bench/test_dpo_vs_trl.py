"""bench/dpo_vs_trl.py: the timing arithmetic by hand, and a quick run of both trainers."""

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "dpo_vs_trl.py"
LAST_LINE = re.compile(r"shape=(\S+) peer=(\S+) throughput_ratio=(\S+) end_to_end_ratio=(\S+) "
                       r"memory_ratio=(\S+) loss_rel_diff=(\S+)")


def load_script():
    spec = importlib.util.spec_from_file_location("dpo_vs_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_window_rate_is_the_median_of_three_windows_after_warmup():
    bench = load_script()
    # Steps end at 10, 11, then every 2 s, 1 s, 1 s, 4 s, 4 s, 4 s; 8 pairs each.
    ends = [10.0, 11.0, 13.0, 14.0, 15.0, 19.0, 23.0, 27.0]
    # After 2 warm-up steps, steps 2..7 in windows {2, 3}, {4, 5}, {6, 7}:
    # 16 pairs in 14 - 11 = 3 s, 16 in 19 - 14 = 5 s, 16 in 27 - 19 = 8 s; median 16 / 5.
    assert bench.window_rate(ends, [8] * 8, warmup=2) == 16 / 5


def test_window_rate_with_fewer_steps_than_windows():
    bench = load_script()
    # One timed step: one window, 4 pairs in 3 - 1 = 2 s.
    assert bench.window_rate([0.5, 1.0, 3.0], [8, 8, 4], warmup=2) == 2.0


def test_quick_run_against_both_peers(tmp_path):
    out = tmp_path / "results.json"
    # A learning rate high enough that the loss moves well away from log 2: parity to 1e-3
    # relative then says something about the training, not only about the first forward.
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--lr", "1e-2",
                           "--out", str(out)], capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()[-2:]
    matches = [LAST_LINE.fullmatch(line) for line in lines]
    assert all(matches), proc.stdout[-2000:]
    assert [(m.group(1), m.group(2)) for m in matches] == [("llama-4l", "trl"),
                                                           ("llama-4l", "trl-best")]
    for match in matches:
        throughput, end_to_end, memory, loss_rel_diff = map(float, match.groups()[2:])
        assert all(math.isfinite(x) and x > 0 for x in (throughput, end_to_end, memory))
        assert loss_rel_diff <= 1e-3

    report = json.loads(out.read_text())["shapes"]["llama-4l"]
    run = report["runs"][0]
    steps = 64 // 8  # --quick: 64 pairs, batch 8, one epoch
    losses = {name: r["losses"] for name, r in run["results"].items()}
    assert {name: len(v) for name, v in losses.items()} == {
        "preftune": steps, "trl": steps, "trl-best": steps}
    # Step 1 scores the policy against itself: log 2. Later steps must have moved away from it,
    # or the parity would be trivial.
    for name in losses:
        assert losses[name][0] == pytest.approx(math.log(2), abs=1e-6)
    assert max(abs(loss - math.log(2)) for loss in losses["trl"]) > 0.02
    # TRL at its best computed the reference before training and loaded no second model.
    assert run["results"]["trl-best"]["options"]["precompute_ref_log_probs"] is True
    assert run["results"]["trl-best"]["options"]["reference_copy"] is False
    assert run["results"]["trl"]["options"]["reference_copy"] is True
    # preftune's time by phase covers the training phases and adds up to less than its run.
    phases = run["results"]["preftune"]["phases"]
    assert {"tokenize", "reference", "forward", "backward", "optimizer"} <= set(phases)
    assert 0 < sum(phases.values()) < run["results"]["preftune"]["wall_s"]
    assert report["phases"].keys() == phases.keys()


def test_data_shapes_have_their_prompt_to_response_ratio():
    bench = load_script()
    for name, ratio in bench.DATA_SHAPES.items():
        sizes = bench.data_shape(name, 256)
        response = (sizes["response_min"] + sizes["response_max"]) / 2
        assert sizes["prompt_tokens"] / response == pytest.approx(ratio, rel=0.05)
        assert sizes["prompt_tokens"] + response == pytest.approx(256, abs=2)


def test_real_shapes_build_the_models_they_name():
    import torch
    from transformers import AutoModelForCausalLM

    bench = load_script()
    expected = {"smollm2-135m": ("LlamaForCausalLM", 134.5e6),
                "qwen2.5-0.5b": ("Qwen2ForCausalLM", 494.0e6),
                "gemma3-270m": ("Gemma3ForCausalLM", 268.1e6)}
    for shape, (cls, params) in expected.items():
        workload = bench.Workload(shape=shape, vocab=bench.SHAPES[shape]["vocab_size"])
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(bench.model_config(workload))
        assert type(model).__name__ == cls
        assert sum(p.numel() for p in model.parameters()) == pytest.approx(params, rel=1e-3)
        assert model.config.tie_word_embeddings
    gemma = bench.model_config(bench.Workload(shape="gemma3-270m", vocab=262144))
    assert gemma.sliding_window == 512 and gemma.head_dim == 256
    assert gemma.layer_types.count("full_attention") == 3
