"""Benchmark: how a training step's time splits between the transformer body and the LM head.

    python bench/body_head_split.py [--shape all] [--tokens 256] [--repeats 3]

For each real model shape of ``bench/dpo_vs_trl.py`` (random weights from the config), on one
row of ``--tokens`` random token ids, the median over ``--repeats`` of:

- body: the decoder's forward and backward (hidden states out, a gradient of ones back in);
- head, full logits: (tokens, vocabulary) logits from the final hidden states, their
  log-softmax at the labels, forward and backward: what a model's own forward feeds a loss;
- head, chunked: preftune's ``chunked_token_logps`` at its default chunk, forward and backward.

Both heads score every position here; in a DPO step preftune scores only response tokens, so
its head share there is smaller by the response fraction. Times are per 1,000 tokens.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("dpo_vs_trl", HERE / "dpo_vs_trl.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def timed(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def split(shape: str, tokens: int, repeats: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from preftune.engine.chunked import chunked_token_logps, default_chunk_tokens, soft_cap

    bench = bench_module()
    config = bench.model_config(bench.Workload(shape=shape,
                                               vocab=bench.SHAPES[shape]["vocab_size"]))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    ids = torch.randint(4, config.vocab_size, (1, tokens))
    labels = torch.randint(4, config.vocab_size, (tokens,))
    weight = model.get_output_embeddings().weight
    cap = getattr(config, "final_logit_softcapping", None)
    body = model.get_decoder()

    def body_step() -> None:
        hidden = body(input_ids=ids).last_hidden_state
        hidden.backward(torch.ones_like(hidden))
        model.zero_grad(set_to_none=True)

    hidden = torch.randn(tokens, config.hidden_size, requires_grad=True)

    def full_head() -> None:
        logits = soft_cap(F.linear(hidden, weight), cap).float()
        logits.log_softmax(-1).gather(1, labels[:, None]).sum().backward()
        model.zero_grad(set_to_none=True)

    chunk = default_chunk_tokens(config.vocab_size)

    def chunked_head() -> None:
        chunked_token_logps(hidden, weight, None, labels, chunk, cap).sum().backward()
        model.zero_grad(set_to_none=True)

    per_k = 1000 / tokens
    return {"body_s": timed(body_step, repeats) * per_k,
            "full_head_s": timed(full_head, repeats) * per_k,
            "chunked_head_s": timed(chunked_head, repeats) * per_k, "chunk": chunk}


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(HERE.parent))
    bench = bench_module()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--shape", default="all", help=", ".join(bench.SHAPES) + " or all")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    shapes = list(bench.SHAPES) if args.shape == "all" else args.shape.split(",")
    print(f"seconds per 1,000 tokens, forward + backward, fp32, one row of {args.tokens} "
          f"tokens, median of {args.repeats}")
    print(f"{'shape':<14}{'body':>8}{'full head':>11}{'chunked head':>14}{'chunk':>7}"
          f"{'head share (full)':>19}{'head share (chunked)':>22}")
    for shape in shapes:
        r = split(shape, args.tokens, args.repeats)
        full_share = r["full_head_s"] / (r["body_s"] + r["full_head_s"])
        chunked_share = r["chunked_head_s"] / (r["body_s"] + r["chunked_head_s"])
        print(f"{shape:<14}{r['body_s']:>8.2f}{r['full_head_s']:>11.2f}"
              f"{r['chunked_head_s']:>14.2f}{r['chunk']:>7}{full_share:>19.0%}"
              f"{chunked_share:>22.0%}")


if __name__ == "__main__":
    main(sys.argv[1:])
