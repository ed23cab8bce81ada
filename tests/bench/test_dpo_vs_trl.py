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
LAST_LINE = re.compile(r"throughput_ratio=(\S+) end_to_end_ratio=(\S+) memory_ratio=(\S+) "
                       r"loss_rel_diff=(\S+)")


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


def test_quick_run_of_both_trainers(tmp_path):
    out = tmp_path / "results.json"
    # A learning rate high enough that the loss moves well away from log 2: parity to 1e-3
    # relative then says something about the training, not only about the first forward.
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--lr", "1e-2",
                           "--out", str(out)], capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    match = LAST_LINE.fullmatch(proc.stdout.strip().splitlines()[-1])
    assert match, proc.stdout[-2000:]
    throughput, end_to_end, memory, loss_rel_diff = map(float, match.groups())
    assert all(math.isfinite(x) and x > 0 for x in (throughput, end_to_end, memory))
    assert loss_rel_diff <= 1e-3

    run = json.loads(out.read_text())["runs"][0]
    steps = 64 // 8  # --quick: 64 pairs, batch 8, one epoch
    losses = {name: r["losses"] for name, r in run["results"].items()}
    assert {name: len(v) for name, v in losses.items()} == {"preftune": steps, "trl": steps}
    # Step 1 scores the policy against itself: log 2. Later steps must have moved away from it,
    # or the parity would be trivial.
    assert losses["preftune"][0] == pytest.approx(math.log(2), abs=1e-6)
    assert losses["trl"][0] == pytest.approx(math.log(2), abs=1e-6)
    assert max(abs(loss - math.log(2)) for loss in losses["trl"]) > 0.02
