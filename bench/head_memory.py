"""Benchmark: peak memory and time of the log-prob head, full logits against preftune's chunks.

    python bench/head_memory.py                       # gemma3-270m's head, batch 8 x 1024
    python bench/head_memory.py --chunks 128,256,512,1024,2048 --batch 2

The head is the last step of every DPO forward pass: hidden states (N, H) times the output
embedding (V, H), then the log-prob of each next token. With full logits (what a model's own
``forward`` returns, and what TRL's default path before its fused head scored from) the
(N, V) float32 logits, their log-softmax and the gradient of each live at once. preftune's
``chunked_token_logps`` holds one (chunk, V) block at a time.

Each measurement runs in its own process: it builds random hidden states and a random head of
the given shape (seeded), takes a baseline of its resident memory, runs forward and backward
(gradients for the hidden states and the head weight, as full fine-tuning needs) and reports
the peak resident memory above that baseline (``head MB``) and the wall time. A process may
use at most ``--limit-gb`` of address space: past it an allocation fails cleanly, reported as
"does not fit", instead of the machine swapping or its OOM killer firing.

The last line is ``vocab=<V> tokens=<N> full_mb=<x|none> chunked_mb=<y> chunk=<c>`` for the
default chunk (``--default-chunk``, preftune's ``logps_chunk_tokens`` default for V).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One head's forward and backward in this process: peak memory above baseline, time."""
    import torch

    cuda = spec["device"] == "cuda"
    if not cuda:  # CUDA maps far more address space than it uses: there the device is the cap
        limit = int(spec["limit_gb"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    torch.manual_seed(0)
    n, hidden_size, vocab = spec["tokens"], spec["hidden"], spec["vocab"]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[spec["dtype"]]
    device = torch.device(spec["device"])
    hidden = (torch.randn(n, hidden_size, device=device) * 0.5).to(dtype).requires_grad_()
    weight = (torch.randn(vocab, hidden_size, device=device) * 0.02).to(dtype).requires_grad_()
    labels = torch.randint(0, vocab, (n,), device=device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = before = torch.cuda.memory_allocated() / 2**20
    else:
        baseline = current_rss_mb()
        before = peak_rss_mb()
    started = time.perf_counter()
    try:
        if spec["mode"] == "full":
            logits = hidden @ weight.t()                                     # (N, V)
            logps = logits.float().log_softmax(-1).gather(1, labels[:, None]).squeeze(1)
        else:
            from preftune.engine.chunked import chunked_token_logps

            logps = chunked_token_logps(hidden, weight, None, labels, spec["chunk"])
        logps.sum().backward()
        if cuda:
            torch.cuda.synchronize()
    except (RuntimeError, MemoryError) as e:
        return {"fits": False, "error": str(e).splitlines()[0][:200],
                "seconds": time.perf_counter() - started}
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
    if peak <= before:  # the process peaked before the head ran: the head added nothing over it
        peak = before
    return {"fits": True, "seconds": seconds, "head_mb": peak - baseline,
            "peak_rss_mb": peak, "baseline_mb": baseline}


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(spec: dict[str, Any], script: str = __file__) -> dict[str, Any]:
    """``script measure SPEC`` in a fresh process (a peak cannot be reset): its last line."""
    proc = subprocess.run([sys.executable, script, "measure", json.dumps(spec)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"fits": False, "error": f"exit {proc.returncode}: {tail[0][:200]}"}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str]) -> None:
    if argv[:1] == ["measure"]:
        print(json.dumps(measure(json.loads(argv[1]))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--vocab", type=int, default=262144, help="default: gemma3-270m's")
    p.add_argument("--hidden", type=int, default=640, help="default: gemma3-270m's")
    p.add_argument("--batch", type=int, default=8, help="sequences")
    p.add_argument("--seq", type=int, default=1024, help="tokens per sequence, all scored")
    p.add_argument("--chunks", default="256,1024", help="chunk sizes to measure")
    p.add_argument("--default-chunk", type=int, default=None,
                   help="the chunk of the last line (default: preftune's default for --vocab)")
    p.add_argument("--no-full", action="store_true", help="skip the full-logits measurement")
    p.add_argument("--limit-gb", type=float, default=20.0,
                   help="address space per process (CPU)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: peak is torch's allocated GPU memory above the inputs")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="hidden states and head weight (logits are summed in float32)")
    p.add_argument("--out", type=Path, help="write every figure as JSON here")
    args = p.parse_args(argv)
    tokens = args.batch * args.seq
    base = {"tokens": tokens, "hidden": args.hidden, "vocab": args.vocab,
            "limit_gb": args.limit_gb, "device": args.device, "dtype": args.dtype}
    where = ("GPU memory allocated by torch" if args.device == "cuda" else
             f"resident memory; address space limit {args.limit_gb:g} GB per process")
    print(f"head: hidden {args.hidden}, vocabulary {args.vocab:,}, batch {args.batch} x "
          f"{args.seq} = {tokens:,} tokens, {args.dtype} on {args.device}, forward and backward "
          f"(hidden and weight gradients); {where}")
    results: dict[str, Any] = {}
    if not args.no_full:
        results["full"] = run({**base, "mode": "full"})
    for chunk in (int(c) for c in args.chunks.split(",")):
        results[f"chunk={chunk}"] = run({**base, "mode": "chunked", "chunk": chunk})
    print(f"{'head':<14}{'head MB':>10}{'peak MB':>13}{'seconds':>9}")
    for name, r in results.items():
        if r["fits"]:
            print(f"{name:<14}{r['head_mb']:>10.0f}{r['peak_rss_mb']:>13.0f}{r['seconds']:>9.1f}")
        else:
            print(f"{name:<14}  does not fit: {r['error']}")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "results": results}, indent=1))
    chunk = args.default_chunk or default_chunk(args.vocab)
    full = results.get("full", {})
    chosen = results.get(f"chunk={chunk}") or run({**base, "mode": "chunked", "chunk": chunk})
    full_mb = f"{full['head_mb']:.0f}" if full.get("fits") else "none"
    chunked_mb = f"{chosen['head_mb']:.0f}" if chosen.get("fits") else "none"
    print(f"vocab={args.vocab} tokens={tokens} full_mb={full_mb} chunked_mb={chunked_mb} "
          f"chunk={chunk}")


def default_chunk(vocab: int) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from preftune.engine.chunked import default_chunk_tokens

    return default_chunk_tokens(vocab)


if __name__ == "__main__":
    main(sys.argv[1:])
