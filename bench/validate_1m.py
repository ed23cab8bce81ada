"""Benchmark: validate 1,000,000 flat preference pairs (about 500 MB of JSONL).

Target (issue: data layer): under 60 s and under 3 GB peak memory on a 2-core machine.

    python bench/validate_1m.py [--pairs 1000000] [--data DIR] [--runs 3]

Writes the dataset once (from the sample generator, as JSONL, every pair distinct), then runs
``preftune validate FILE --json`` in a fresh process per run and reports the wall time and
the peak resident memory of that process (interpreter and imports included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The child runs the real CLI and reports its own peak RSS (Linux: ru_maxrss is in KiB).
_CHILD = """
import json, resource, sys
from preftune.cli.main import main
try:
    main(["validate", sys.argv[1], "--json"])
except SystemExit as e:
    code = e.code
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"exit": code, "peak_rss_mb": rss / 1024}), file=sys.stderr)
"""


def write_data(path: Path, pairs: int) -> None:
    from preftune.data.sample import iter_samples

    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for i, s in enumerate(iter_samples(pairs, seed=1)):
            rejected = s.responses[1 + i % (len(s.responses) - 1)]
            # A request id keeps every pair distinct: the duplicate check's worst case.
            record = {"prompt": f"[request {i}] {s.prompt}", "chosen": s.responses[0],
                      "rejected": rejected, "category": s.category}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)


def run_once(path: Path) -> tuple[float, float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - start
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    if stats["exit"] not in (0, None):
        sys.exit(f"validation failed (exit {stats['exit']}):\n{proc.stdout[-2000:]}")
    return wall, stats["peak_rss_mb"], json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path,
                        default=Path(tempfile.gettempdir()) / "preftune-bench")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    args.data.mkdir(parents=True, exist_ok=True)
    path = args.data / f"flat_{args.pairs}.jsonl"
    if not path.exists():
        start = time.perf_counter()
        write_data(path, args.pairs)
        print(f"wrote {path} in {time.perf_counter() - start:.1f} s")
    size_mb = path.stat().st_size / 1e6
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    print(f"data: {args.pairs:,} flat pairs, {size_mb:,.0f} MB of JSONL")

    walls, peaks = [], []
    for run in range(1, args.runs + 1):
        wall, peak, report = run_once(path)
        assert report["pairs"] == args.pairs, report["pairs"]
        walls.append(wall)
        peaks.append(peak)
        print(f"run {run}: {wall:.1f} s, peak {peak:,.0f} MB, valid={report['valid']}, "
              f"duplicates={report['duplicate_pairs']}, identical={report['identical_pairs']}")
    print(f"median: {statistics.median(walls):.1f} s wall, "
          f"{statistics.median(peaks):,.0f} MB peak RSS (target: < 60 s, < 3,000 MB)")


if __name__ == "__main__":
    main()
