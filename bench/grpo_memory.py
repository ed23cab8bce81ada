"""Benchmark: peak memory of one GRPO step, full-vocabulary logits against the chunked head.

    python bench/grpo_memory.py                     # Qwen2 shape, vocab 151,936, 8 x 512 tokens
    python bench/grpo_memory.py --full --layers 4   # full fine-tuning, a deeper body

The step is the trainer's own (``rl.train.grpo_step``, then the optimizer step) on a small
Qwen2-architecture model with Qwen2's vocabulary (151,936 tokens, tied embeddings as Qwen2.5's
small models have), randomly initialised: the head's cost depends on the vocabulary and the
number of scored tokens, not on the weights' values. The batch is two groups of four sequences
of ``--prompt`` + ``--completion`` tokens, every completion token scored.

``before``: ``chunked_logps=False``, the model's own (B, T, V) float32 logits and the log-probs
taken from them, as the GRPO trainer computed them before it used the engine's head.
``after``: ``chunked_logps=True`` (the default), log-probs from hidden states at completion
positions, one (chunk, V) block at a time.

Each measurement runs in a fresh process (a peak cannot be reset within one): it builds the
model, optimizer and batch, takes its resident memory as the baseline, runs one step, and
reports the peak resident memory (``ru_maxrss``) above that baseline (``step MB``) and the
step's wall time. On a CPU, resident memory is what the step really needs: every block of
logits is written, so its pages are touched. A process may use at most ``--limit-gb`` of
address space; past it an allocation fails cleanly and is reported as "does not fit".
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from head_memory import current_rss_mb, peak_rss_mb, run  # bench/ is on its scripts' path


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One GRPO step in this process: peak resident memory above the baseline, and time."""
    limit = int(spec["limit_gb"] * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch
    from accelerate import Accelerator

    from preftune.engine.build import build_policy
    from preftune.engine.optim import adamw
    from preftune.rl.batches import flatten
    from preftune.rl.logps import CompletionLogps
    from preftune.rl.train import build_config, grpo_step, model_spec

    torch.manual_seed(0)
    torch.set_num_threads(spec["threads"])
    cfg = build_config({"model_name": spec["model_dir"], "batch_size": 8,
                        "seq_len": spec["prompt"] + spec["completion"], "device": "cpu",
                        "lora": not spec["full"], "chunked_logps": spec["mode"] == "after"})
    policy, _ = build_policy(model_spec(cfg, "fp32"), Path("."), None, torch.device("cpu"),
                             False)
    scorer = CompletionLogps(policy, cfg.chunked_logps, cfg.logps_chunk_tokens)
    optimizer = adamw([p for p in policy.parameters() if p.requires_grad], 1e-5, 0.0)
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(scorer, optimizer)
    batch = flatten(groups(spec, policy.config.vocab_size), cfg.seq_len, cfg.scale)
    baseline = current_rss_mb()
    before = peak_rss_mb()
    started = time.perf_counter()
    try:
        sums = grpo_step(accelerator, model, scorer, None, batch, cfg)
        optimizer.step()
    except (RuntimeError, MemoryError) as e:
        return {"fits": False, "error": str(e).splitlines()[0][:200],
                "seconds": time.perf_counter() - started}
    seconds = time.perf_counter() - started
    peak = max(peak_rss_mb(), before)
    return {"fits": True, "seconds": seconds, "step_mb": peak - baseline,
            "peak_rss_mb": peak, "baseline_mb": baseline, "scored_tokens": sums["tokens"],
            "loss": sums["loss"]}


def groups(spec: dict[str, Any], vocab: int) -> list[dict[str, Any]]:
    """Two groups of four: a shared random prompt each, random completions and scores, and
    inference log-probs near the random model's own (about -log V), so that the ratio moves
    off 1 and the loss is not 0: both paths must give the same loss."""
    import math

    import torch

    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(2):
        prompt = torch.randint(0, vocab, (spec["prompt"],), generator=g).tolist()
        tokens, masks, logprobs = [], [], []
        for _ in range(4):
            completion = torch.randint(0, vocab, (spec["completion"],), generator=g).tolist()
            tokens.append(prompt + completion)
            masks.append([-100] * len(prompt) + completion)
            old = -math.log(vocab) + 0.1 * torch.randn(len(completion), generator=g)
            logprobs.append([1.0] * len(prompt) + old.tolist())
        out.append({"tokens": tokens, "masks": masks, "inference_logprobs": logprobs,
                    "scores": torch.rand(4, generator=g).tolist()})
    return out


def build_model(directory: Path, args: argparse.Namespace) -> None:
    """A randomly initialised Qwen2 of the given shape, with Qwen2's vocabulary."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=args.vocab, hidden_size=args.hidden,
                         intermediate_size=args.hidden * 11 // 4, num_hidden_layers=args.layers,
                         num_attention_heads=args.hidden // 64, num_key_value_heads=2,
                         tie_word_embeddings=True, max_position_embeddings=4096)
    Qwen2ForCausalLM(config).save_pretrained(directory)


def main(argv: list[str]) -> None:
    if argv[:1] == ["measure"]:
        print(json.dumps(measure(json.loads(argv[1]))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--vocab", type=int, default=151936, help="default: Qwen2's")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--prompt", type=int, default=128, help="prompt tokens per sequence")
    p.add_argument("--completion", type=int, default=384, help="completion tokens per "
                   "sequence (all scored)")
    p.add_argument("--full", action="store_true", help="full fine-tuning (default: LoRA)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit-gb", type=float, default=20.0, help="address space per process")
    p.add_argument("--out", type=Path, help="write every figure as JSON here")
    args = p.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="grpo-memory-") as tmp:
        build_model(Path(tmp), args)
        for mode in ("before", "after"):
            spec = {"mode": mode, "model_dir": tmp, "prompt": args.prompt,
                    "completion": args.completion, "full": args.full,
                    "threads": args.threads, "limit_gb": args.limit_gb}
            results[mode] = run(spec, __file__)
            r = results[mode]
            if r["fits"]:
                print(f"{mode:6s}  step {r['step_mb']:8.0f} MB above a {r['baseline_mb']:.0f} MB "
                      f"baseline  (peak RSS {r['peak_rss_mb']:.0f} MB)  {r['seconds']:.2f} s  "
                      f"loss {r['loss']:.7f}", flush=True)
            else:
                print(f"{mode:6s}  does not fit: {r['error']}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "results": results}, indent=2))
    before, after = results["before"], results["after"]
    print(f"vocab={args.vocab} batch=8x{args.prompt + args.completion} "
          f"{'full' if args.full else 'lora'} "
          f"before_mb={before['step_mb'] if before['fits'] else 'none'} "
          f"after_mb={after['step_mb'] if after['fits'] else 'none'}")


if __name__ == "__main__":
    main(sys.argv[1:])
