"""Benchmark: preftune's DPO trainer against ``trl.DPOTrainer``, same model, tokens and batches.

    python bench/dpo_vs_trl.py [--shape NAME[,NAME]|all] [--data long-prompt|short-prompt]
                               [--lora] [--runs 3] [--out results.json]
    python bench/dpo_vs_trl.py --quick        # tiny sizes: all trainers in about a minute
    bench/gpu.sh                              # the real shapes in bf16 on a GPU, one command

Model shapes (``--shape``): ``llama-4l``, the default, is a random-init Llama-shaped model of
the sizes flags (hidden 512, 4 layers, 8 heads of 64, intermediate 1376, vocabulary 32,000,
untied embeddings). ``smollm2-135m``, ``qwen2.5-0.5b`` and ``gemma3-270m`` are those models'
architectures and sizes (layers, heads, head dimension, vocabulary, tied embeddings, Gemma 3's
sliding windows), built from their configs with seeded random weights: nothing is downloaded.

Data (``--data``): ``long-prompt`` pairs have prompt:response ≈ 1.5 (chat with history),
``short-prompt`` ≈ 0.4, around a mean of ``--seq-len`` tokens; otherwise the length flags
(default: prompts of 192 tokens, chosen and rejected responses of 64-128 tokens drawn
independently; counts include BOS and EOS). Default optimisation: batch 8, fp32, full
fine-tuning (``--lora``: r16 on q_proj and v_proj), sigmoid DPO with beta 0.1, AdamW at a
constant 1e-5 (no warm-up, no weight decay, max_grad_norm 1.0), one epoch.

Peers (``--peers``): ``trl`` is DPOTrainer with its defaults (a reference forward every step,
and with full fine-tuning a second copy of the model); ``trl-best`` adds what makes TRL fastest
here (see ``trl_config``). All trainers see the same token ids, batches, seed and
hyperparameters.

How it runs. This process imports nothing heavy: a child's ``ru_maxrss`` starts at its
parent's peak (Linux carries it across fork and exec), so a large parent would inflate every
worker's figure. Per shape it starts, as subprocesses:

1. ``prepare``: builds the model from a config (seeded random init, ``save_pretrained``), a
   word-level tokenizer saved beside it, and the pairs as JSONL whose words are exactly one
   token each; then checks that TRL's tokenization and preftune's ``tokenize_pairs`` give the
   same ids for every pair, and fails before any training if they do not.
2. per run, one ``worker`` per trainer: each trains one epoch over the pairs in preftune's
   batch order and writes per-step losses and clock times, digests of the token ids it
   trained on and its peak memory; preftune's also writes its time per phase. The
   orchestrator checks the digests (and, for TRL, the tokens of every batch) against what
   ``prepare`` computed.

Figures, per trainer:

- pairs/s: the steps after ``--warmup-steps`` are split into 3 consecutive windows; each
  window's pairs over its wall time (end of the step before it to the end of its last step);
  the median of the windows.
- tokens/s: the same windows, counting the non-padding tokens of prompt+chosen and
  prompt+rejected (2 * prompt + chosen + rejected per pair) for all trainers alike, whatever
  each computes internally.
- end-to-end: from the worker's start (after its imports) to the end of the last optimizer
  step: model loading, reading and tokenizing the data, reference log-probs (preftune: one
  pass before training, its default; TRL: a reference forward in every step, or one pass
  before training for ``trl-best``) and training. preftune's final save, charts and
  diagnosis come after that and are not counted (``after_training_s`` in the JSON).
- first step: from the worker's start (after imports) to the end of the first optimizer step.
- peak MB: the worker's resident high-water mark (``VmHWM``) at the end of its last optimizer
  step, so that preftune's end-of-run checkpoint and final save (TRL here saves nothing) are
  not counted; ``peak_rss_mb`` in the JSON is the whole process's. With ``--device cuda``,
  torch's peak GPU memory.
- MFU (``--device cuda``): the epoch's model FLOPs, 8·N per token (6·N for the policy's
  forward and backward, 2·N for one reference forward; N parameters, tied ones counted once;
  tokens as for tokens/s), over end-to-end time, as a share of the H100's 989 TFLOP/s dense
  bf16 peak.
- loss_rel_diff: max over the first ``--steps-for-parity`` steps of ``|l_p - l_t| / |l_t|``.
- preftune's phases: seconds in load, tokenize, reference, forward, backward, optimizer,
  logging, checkpoint and final (``preftune.engine.phases``), the median over the runs.

Timings are only as good as the machine is quiet: after each worker the share of the CPUs that
other processes used meanwhile is computed from /proc/stat, printed, and warned about above 5%.

The last lines printed are one per shape and peer, ``shape=<s> peer=<trl|trl-best>
throughput_ratio=<x> end_to_end_ratio=<w> memory_ratio=<y> loss_rel_diff=<z>``: preftune
pairs/s over the peer's, the peer's end-to-end time over preftune's, preftune's peak over the
peer's; with ``--runs N``, the medians over the runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()  # a worker's imports are timed from here
TRAINERS = ("preftune", "trl", "trl-best")
PEERS = ("trl", "trl-best")
# Real models' architectures and sizes, built from their configs with random weights (no
# download). "llama-4l" is the small model the sizes flags describe.
SHAPES: dict[str, dict[str, Any]] = {
    "smollm2-135m": {"model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
                     "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3,
                     "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0},
                     "tie_word_embeddings": True},
    "qwen2.5-0.5b": {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
                     "intermediate_size": 4864, "num_hidden_layers": 24,
                     "num_attention_heads": 14, "num_key_value_heads": 2,
                     "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
                     "use_sliding_window": False, "tie_word_embeddings": True},
    "gemma3-270m": {"model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 640,
                    "intermediate_size": 2048, "num_hidden_layers": 18,
                    "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
                    "sliding_window": 512, "query_pre_attn_scalar": 256,
                    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
                    "tie_word_embeddings": True},
}
# Data shapes by prompt:response length ratio, for a mean sequence of --seq-len tokens:
# chat with history (1.5) and short instructions with long answers (0.4). Responses vary
# +-25% around their mean.
DATA_SHAPES = {"long-prompt": 1.5, "short-prompt": 0.4}
H100_BF16_PEAK_FLOPS = 989e12  # dense, no sparsity
WINDOWS = 3
# preftune engine switches that change how a step is computed; each is passed only when this
# preftune's TrainConfig has it. --plain turns them all off.
FAST_PATHS = ("shared_prompt", "chunked_logps", "pack_pairs", "torch_compile")
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0-3; words w0, w1, ... follow
ID_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")  # as both trainers name them


@dataclass(frozen=True)
class Workload:
    """What both trainers train: model shape, data shape and optimisation."""

    hidden: int = 512
    layers: int = 4
    heads: int = 8
    intermediate: int = 1376
    vocab: int = 32000
    pairs: int = 160
    prompt_tokens: int = 192  # with BOS
    response_min: int = 64  # with EOS
    response_max: int = 128
    batch_size: int = 8
    lr: float = 1e-5
    beta: float = 0.1
    seed: int = 42
    lora: bool = False
    gradient_checkpointing: bool = False
    shape: str = "llama-4l"
    device: str = "cpu"
    dtype: str = "fp32"

    @property
    def max_prompt_length(self) -> int:
        return self.prompt_tokens

    @property
    def max_length(self) -> int:
        return self.prompt_tokens + self.response_max  # exactly the longest sequence

    @property
    def steps(self) -> int:
        return math.ceil(self.pairs / self.batch_size)


def data_shape(name: str, seq_len: int) -> dict[str, int]:
    """Prompt and response sizes (BOS and EOS included) for a data shape and mean length."""
    ratio = DATA_SHAPES[name]
    response = max(4, round(seq_len / (1 + ratio)))
    prompt = max(2, seq_len - response)
    spread = max(1, round(response * 0.25))
    return {"prompt_tokens": prompt, "response_min": max(2, response - spread),
            "response_max": response + spread}


QUICK = {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 176, "vocab": 1000,
         "pairs": 64, "prompt_tokens": 24, "response_min": 8, "response_max": 16}


# ------------------------------------------------------------------------------ prepare


def prepare_main(argv: list[str]) -> None:
    """Build model, tokenizer and data; check the tokenizations agree; write prepared.json."""
    parser = argparse.ArgumentParser(prog="dpo_vs_trl.py prepare")
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    workload = Workload(**spec["workload"])
    model_dir, data = Path(spec["model_dir"]), Path(spec["data"])
    build_model(workload, model_dir)
    data.write_text("".join(json.dumps(p) + "\n" for p in synthetic_pairs(workload)))
    rows = preftune_rows(workload, model_dir, data)
    check_trl_tokenization(workload, model_dir, data, rows)
    write_json(args.out, {
        "order": preftune_order(workload.pairs, workload.seed),
        "digests": [ids_digest(*row) for row in rows],
        "pair_tokens": [2 * len(p) + len(c) + len(r) for p, c, r in rows],
    })


def model_config(w: Workload) -> Any:
    """The transformers config of the workload's shape: a real model's, or the sizes flags'."""
    from transformers import AutoConfig

    specials = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if w.shape in SHAPES:
        values = dict(SHAPES[w.shape])
        return AutoConfig.for_model(values.pop("model_type"), **values, **specials)
    return AutoConfig.for_model(
        "llama", vocab_size=w.vocab, hidden_size=w.hidden, num_hidden_layers=w.layers,
        num_attention_heads=w.heads, num_key_value_heads=w.heads,
        intermediate_size=w.intermediate, max_position_embeddings=max(2048, w.max_length),
        tie_word_embeddings=False, **specials)


def build_model(w: Workload, model_dir: Path) -> None:
    """A seeded random-init model of the workload's shape and its word-level tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model_config(w)
    if config.max_position_embeddings < w.max_length:
        sys.exit(f"{w.shape} takes {config.max_position_embeddings} positions; the data needs "
                 f"{w.max_length}")
    torch.manual_seed(w.seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    build_tokenizer(w.vocab).save_pretrained(model_dir)


def build_tokenizer(vocab: int) -> Any:
    """Words ``w0 w1 ...`` are one token each; encoding adds BOS only, as Llama's does.

    Adding BOS and not EOS is what makes TRL and preftune agree: both tokenize the prompt and
    prompt + response with the special tokens and take the response as the tail, and both end
    the response with EOS (TRL appends the EOS text, preftune the id).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {token: i for i, token in enumerate(SPECIALS)}
    ids.update({f"w{i}": len(SPECIALS) + i for i in range(vocab - len(SPECIALS))})
    tokenizer = Tokenizer(models.WordLevel(ids, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", ids["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def synthetic_pairs(w: Workload) -> list[dict[str, str]]:
    """Space-separated words: a prompt of ``prompt_tokens - 1`` words (BOS makes the rest),
    responses of ``response_min - 1`` to ``response_max - 1`` words (EOS makes the rest),
    each with a leading space so that prompt + response splits into the same words."""
    rng = random.Random(w.seed)
    words = w.vocab - len(SPECIALS)

    def text(n: int) -> str:
        return " ".join(f"w{rng.randrange(words)}" for _ in range(n))

    def response() -> str:
        return " " + text(rng.randint(w.response_min, w.response_max) - 1)

    return [{"prompt": text(w.prompt_tokens - 1), "chosen": response(), "rejected": response()}
            for _ in range(w.pairs)]


def preftune_rows(w: Workload, model_dir: Path, data: Path) -> list[list[list[int]]]:
    """``[prompt_ids, chosen_ids, rejected_ids]`` per pair, by ``tokenize_pairs``, untruncated."""
    from preftune.data.tokenize import tokenize_pairs
    from preftune.data.validate import load_preferences
    from preftune.models.load import load_tokenizer

    tokenized = tokenize_pairs(load_preferences(str(data)), load_tokenizer(str(model_dir)),
                               w.max_length, w.max_prompt_length)
    stats = tokenized.stats
    if (stats.pairs, stats.truncated_prompts, stats.truncated_responses,
            stats.boundary_mismatches) != (w.pairs, 0, 0, 0):
        sys.exit(f"preftune's tokenization is not the clean one this benchmark needs: {stats}")
    table = tokenized.rows.data.table
    if table.column("record").to_pylist() != list(range(w.pairs)):
        sys.exit("preftune's tokenized rows are not in file order")
    columns = [table.column(name).to_pylist() for name in ID_COLUMNS]
    return [list(row) for row in zip(*columns, strict=True)]


def check_trl_tokenization(w: Workload, model_dir: Path, data: Path,
                           expected: list[list[list[int]]]) -> None:
    """Run TRL's own dataset preparation on the file; exit naming the first pair that differs."""
    from types import SimpleNamespace

    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    raw = load_dataset("json", data_files=str(data), split="train")
    trainer = SimpleNamespace(_tokenizer=tokenizer)  # all that _prepare_dataset reads of self
    dataset = DPOTrainer._prepare_dataset(trainer, raw, tokenizer, trl_config(w, "unused"),
                                          "train")
    if len(dataset) != len(expected):
        sys.exit(f"TRL kept {len(dataset)} of {len(expected)} pairs after tokenizing")
    for i, (row, want) in enumerate(zip(dataset, expected, strict=True)):
        got = [row[name] for name in ID_COLUMNS]
        if got != want:
            diffs = [f"  {n}: TRL {g[:6]}...{g[-3:]} ({len(g)} ids), preftune {p[:6]}..."
                     f"{p[-3:]} ({len(p)} ids)"
                     for n, g, p in zip(ID_COLUMNS, got, want, strict=True) if g != p]
            sys.exit(f"pair {i}: TRL and preftune tokenize differently\n" + "\n".join(diffs))


def preftune_order(pairs: int, seed: int) -> list[int]:
    """Epoch 0's order as preftune's ``StepPlan.steps`` draws it (preftune/engine/loop.py)."""
    import torch

    return torch.randperm(pairs, generator=torch.Generator().manual_seed(seed)).tolist()


def ids_digest(prompt: list[int], chosen: list[int], rejected: list[int]) -> str:
    return hashlib.sha256(json.dumps([prompt, chosen, rejected]).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------- worker


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="dpo_vs_trl.py worker")
    parser.add_argument("--trainer", choices=TRAINERS, required=True)
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    result = (run_preftune(spec) if args.trainer == "preftune"
              else run_trl(spec, best=args.trainer == "trl-best"))
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_device_mb"] = peak_device_mb(spec)
    result["cpu_s"] = cpu_seconds()  # well under wall x cores: something else had the CPUs
    result["wall_s"] = time.perf_counter() - STARTED
    result["vm_hwm_mb"] = vm_hwm_mb()  # the kernel's per-process high-water mark, a cross-check
    write_json(args.out, result)


def run_preftune(spec: dict[str, Any]) -> dict[str, Any]:
    import transformers.modeling_utils  # noqa: F401  (TRL's worker has it loaded before t0 too)
    from transformers import AutoModelForCausalLM  # noqa: F401

    from preftune.config import TrainConfig
    from preftune.engine.loop import train
    from preftune.engine.report import Reporter

    imports_s = time.perf_counter() - STARTED
    t0 = time.perf_counter()

    class Clock(Reporter):
        """Every logged row (logging_steps=1: every step) with the time it arrived."""

        def __init__(self) -> None:
            self.ends: list[float] = []
            self.losses: list[float] = []
            self.rows: Any = None
            self.reference_at: float | None = None
            self.reference_cached = False
            self.started_at = 0.0
            self.training_peak_mb: float | None = None

        def data(self, data: Any) -> None:
            self.rows = data.train.rows

        def reference(self, pairs: int, cached: bool) -> None:
            self.reference_at, self.reference_cached = time.perf_counter(), cached

        def start(self, total_steps: int, done_steps: int) -> None:
            self.started_at = time.perf_counter()

        def step(self, row: dict[str, float]) -> None:
            self.ends.append(time.perf_counter())
            self.losses.append(row["loss"])
            self.training_peak_mb = vm_hwm_mb()

    cfg = TrainConfig(**preftune_values(spec))
    clock = Clock()
    outcome = train(cfg, reporter=clock)
    finished = time.perf_counter()
    if clock.reference_cached:
        sys.exit("preftune found cached reference log-probs: PREFTUNE_CACHE is not fresh")
    table = clock.rows.data.table
    ids = zip(*(table.column(name).to_pylist() for name in ID_COLUMNS), strict=True)
    reference_s = (clock.started_at - clock.reference_at) if clock.reference_at else None
    return {**timings(t0, clock.ends, finished, imports_s), "losses": clock.losses,
            "digests": by_record(table.column("record").to_pylist(), ids),
            "reference_s": reference_s, "phases": getattr(outcome, "phases", {}),
            "training_peak_mb": clock.training_peak_mb,
            "parameters": parameter_count(spec["model_dir"]),
            "options": {k: getattr(cfg, k) for k in (*FAST_PATHS, "group_by_length",
                                                     "logps_chunk_tokens")
                        if k in TrainConfig.model_fields}}


def preftune_values(spec: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig values matching TRL's setup; fast-path switches only where they exist."""
    from preftune.config import TrainConfig

    w = Workload(**spec["workload"])
    values: dict[str, Any] = {
        "model": spec["model_dir"], "dataset": spec["data"], "output_dir": spec["output_dir"],
        "algo": "dpo", "beta": w.beta, "learning_rate": w.lr, "lr_scheduler": "constant",
        "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": 1.0,
        "batch_size": w.batch_size, "grad_accum": 1, "epochs": 1, "seed": w.seed,
        "dtype": w.dtype, "max_length": w.max_length, "max_prompt_length": w.max_prompt_length,
        "logging_steps": 1, "eval_split": 0.0, "gradient_checkpointing": w.gradient_checkpointing,
        "lora": w.lora, "lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.0,
        "lora_target_modules": ["q_proj", "v_proj"],
    }
    fields = TrainConfig.model_fields
    if "group_by_length" in fields:
        values["group_by_length"] = False  # it reorders batches: TRL would see other ones
    if spec["plain"]:
        values.update({name: False for name in FAST_PATHS if name in fields})
    values.update(spec["preftune_options"])
    return values


def run_trl(spec: dict[str, Any], best: bool) -> dict[str, Any]:
    import torch
    from datasets import load_dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import DPOTrainer

    imports_s = time.perf_counter() - STARTED
    t0 = time.perf_counter()
    w = Workload(**spec["workload"])

    class Recording(DPOTrainer):
        """Reads the (pre-ordered) dataset front to back; keeps each step's exact loss."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.bench_losses: list[float] = []
            self.bench_tokens: list[int] = []
            super().__init__(*args, **kwargs)

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = self.train_dataset if train_dataset is None else train_dataset
            return torch.utils.data.SequentialSampler(dataset)

        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if model.training:  # logged losses are rounded: keep the tensor's value
                loss = out[0] if return_outputs else out
                self.bench_losses.append(loss.detach().item())
                self.bench_tokens.append(int(inputs["attention_mask"].sum()))
            return out

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.training_peak_mb: float | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.ends.append(time.perf_counter())  # after the optimizer step
            self.training_peak_mb = vm_hwm_mb()

    order = spec["order"]
    dataset = load_dataset("json", data_files=spec["data"], split="train").select(order)
    clock = Clock()
    trainer = Recording(model=spec["model_dir"],
                        args=trl_config(w, spec["output_dir"], best, spec.get("trl_options")),
                        train_dataset=dataset, callbacks=[clock], peft_config=lora_config(w),
                        processing_class=AutoTokenizer.from_pretrained(spec["model_dir"]))
    trainer.train()
    finished = time.perf_counter()
    ids = ([row[name] for name in ID_COLUMNS] for row in trainer.train_dataset)
    return {**timings(t0, clock.ends, finished, imports_s), "losses": trainer.bench_losses,
            "step_tokens": trainer.bench_tokens, "digests": by_record(order, ids),
            "training_peak_mb": clock.training_peak_mb,
            "options": {"optim": str(trainer.args.optim), "bf16": trainer.args.bf16,
                        "precompute_ref_log_probs": trainer.args.precompute_ref_log_probs,
                        "precompute_ref_batch_size": trainer.args.precompute_ref_batch_size,
                        "reference_copy": trainer.ref_model is not None,
                        "torch_compile": trainer.args.torch_compile,
                        "activation_checkpointing": trainer.args.activation_checkpointing}}


def trl_config(w: Workload, output_dir: str, best: bool = False,
               options: dict[str, Any] | None = None) -> Any:
    """DPOConfig matching preftune's run. TRL's defaults are kept except where they differ from
    it: bf16 (TRL: on, autocast even on CPU), gradient checkpointing (TRL: on), the schedule
    (TRL: linear decay), the learning rate and logging; ``optim`` stays adamw_torch_fused.

    ``best`` (the ``trl-best`` peer) adds what makes TRL 1.x fastest on the same hardware:
    reference log-probs computed once before training (``precompute_ref_log_probs``; with full
    fine-tuning TRL then loads no reference copy), in batches twice the training batch (no
    gradients are kept). TRL's fused LM head, which scores completion tokens without the full
    logits, is on in both. What else TRL offers does not apply here: ``padding_free`` is
    disabled in TRL 1.x (it warns and pads) and Liger kernels need Triton on a GPU.
    ``torch_compile`` is measured in BENCHMARKS.md (``--trl-option torch_compile=true``).
    ``options`` (``--trl-option``) are further DPOConfig values for this peer.
    """
    from trl import DPOConfig

    extra: dict[str, Any] = {}
    if best:
        extra = {"precompute_ref_log_probs": True,
                 "precompute_ref_batch_size": 2 * w.batch_size, **(options or {})}
    cuda = w.device == "cuda"
    if w.dtype == "bf16":  # bf16 weights, as preftune's dtype=bf16 loads them (TRL: float32)
        extra["model_init_kwargs"] = {"dtype": "bfloat16"}
    return DPOConfig(**extra,
        output_dir=output_dir, beta=w.beta, loss_type=["sigmoid"], learning_rate=w.lr,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        per_device_train_batch_size=w.batch_size, gradient_accumulation_steps=1,
        num_train_epochs=1, seed=w.seed, bf16=w.dtype == "bf16", fp16=False, use_cpu=not cuda,
        activation_checkpointing=w.gradient_checkpointing, max_length=w.max_length,
        report_to="none", save_strategy="no", logging_steps=1,
        dataloader_num_workers=0, dataloader_drop_last=False)


def lora_config(w: Workload) -> Any:
    if not w.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                      task_type="CAUSAL_LM")


def by_record(records: list[int], ids: Any) -> list[str]:
    """Digests of each row's (prompt, chosen, rejected) ids, put back in record order."""
    digests = dict(zip(records, (ids_digest(*row) for row in ids), strict=True))
    return [digests[i] for i in range(len(digests))]


def timings(t0: float, ends: list[float], finished: float, imports_s: float) -> dict[str, Any]:
    """Step end times relative to the worker's start (after imports)."""
    return {"imports_s": imports_s, "step_ends_s": [end - t0 for end in ends],
            "end_to_end_s": ends[-1] - t0 if ends else None,
            "first_step_s": ends[0] - t0 if ends else None,
            "after_training_s": finished - ends[-1] if ends else None}


def peak_device_mb(spec: dict[str, Any]) -> float | None:
    """Peak GPU memory the worker allocated through torch; None on a CPU run."""
    if spec["workload"].get("device") != "cuda":
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def parameter_count(model_dir: str) -> int:
    """Parameters of the saved model, tied weights counted once."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- orchestrate


@dataclass
class Figures:
    """One trainer's figures in one run."""

    pairs_per_s: float
    tokens_per_s: float
    end_to_end_s: float
    peak_mb: float
    first_step_s: float
    losses: list[float]
    mfu: float | None = None  # on a GPU: model FLOPs over end-to-end time, of the H100 peak


def parse_args(argv: list[str]) -> argparse.Namespace:
    d = Workload()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="tiny sizes: " + json.dumps(QUICK))
    p.add_argument("--shape", default="llama-4l",
                   help="model shape(s), comma-separated, or 'all': llama-4l (the sizes "
                        "flags), " + ", ".join(SHAPES) + " (real configs, random weights)")
    p.add_argument("--data", choices=sorted(DATA_SHAPES), default=None,
                   help="pairs by prompt:response ratio (long-prompt 1.5, short-prompt 0.4) "
                        "around a mean of --seq-len tokens; overrides the length flags")
    p.add_argument("--seq-len", type=int, default=256,
                   help="mean tokens of prompt + response for --data (default 256)")
    for name, help_ in (("hidden", "hidden size"), ("layers", "decoder layers"),
                        ("heads", "attention heads (= key/value heads)"),
                        ("intermediate", "MLP size"), ("vocab", "vocabulary size"),
                        ("pairs", "training pairs (one epoch)"),
                        ("prompt_tokens", "prompt tokens, BOS included"),
                        ("response_min", "shortest response, EOS included"),
                        ("response_max", "longest response, EOS included"),
                        ("batch_size", "pairs per optimizer step"), ("seed", "seed")):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help=f"{help_} (default {getattr(d, name)})")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default {d.lr})")
    p.add_argument("--lora", action="store_true", help="LoRA r16/alpha32 on q_proj, v_proj")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="on for all trainers (TRL's default is on, preftune's off)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: train on the GPU (peak memory is then torch's device peak)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="weights and compute dtype for all trainers (bf16 needs --device cuda)")
    p.add_argument("--steps-for-parity", type=int, default=20)
    p.add_argument("--warmup-steps", type=int, default=2, help="steps before timing windows")
    p.add_argument("--runs", type=int, default=1, help="repeat the comparison; medians last")
    p.add_argument("--peers", default="trl,trl-best",
                   help="TRL setups to compare with, comma-separated: trl (its defaults), "
                        "trl-best (reference precomputed); 'none' trains preftune alone")
    p.add_argument("--trainers", choices=("both", "preftune", "trl"), default=None,
                   help="older spelling: 'preftune' is --peers none, 'trl' and 'both' keep "
                        "the defaults peer alone")
    p.add_argument("--plain", action="store_true",
                   help="preftune with its fast paths off: " + ", ".join(FAST_PATHS))
    p.add_argument("--preftune-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a TrainConfig value for preftune, e.g. torch_compile=true")
    p.add_argument("--trl-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a DPOConfig value for the trl-best peer, e.g. torch_compile=true")
    p.add_argument("--workdir", type=Path, help="keep model, data, logs and results here")
    p.add_argument("--out", type=Path, help="write every figure as JSON here")
    return p.parse_args(argv)


def shapes_from(args: argparse.Namespace) -> list[str]:
    names = list(SHAPES) if args.shape == "all" else [n.strip() for n in args.shape.split(",")]
    unknown = [n for n in names if n != "llama-4l" and n not in SHAPES]
    if unknown or not names:
        sys.exit(f"unknown --shape {', '.join(unknown) or repr(args.shape)}; choose from "
                 f"llama-4l, {', '.join(SHAPES)} or all")
    return names


def trainers_from(args: argparse.Namespace) -> tuple[str, ...]:
    if args.trainers == "preftune":
        return ("preftune",)
    if args.trainers == "trl":
        return ("trl",)
    if args.trainers == "both":
        return ("preftune", "trl")
    peers = [] if args.peers == "none" else [n.strip() for n in args.peers.split(",")]
    if any(n not in PEERS for n in peers):
        sys.exit(f"unknown --peers {args.peers!r}; choose from {', '.join(PEERS)} or none")
    return ("preftune", *peers)


def workload_from(args: argparse.Namespace, shape: str = "llama-4l") -> Workload:
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    if args.data:
        values.update(data_shape(args.data, args.seq_len))
    for field in dataclasses.fields(Workload):
        given = getattr(args, field.name, None)
        if given is not None and not (args.data and field.name in (
                "prompt_tokens", "response_min", "response_max")):
            values[field.name] = given  # flags given override --quick's sizes
    values["shape"] = shape
    if shape in SHAPES:  # the real model's sizes, whatever the flags say
        config = SHAPES[shape]
        values.update(hidden=config["hidden_size"], layers=config["num_hidden_layers"],
                      heads=config["num_attention_heads"],
                      intermediate=config["intermediate_size"], vocab=config["vocab_size"])
    w = Workload(**values)
    if w.prompt_tokens < 2 or w.response_min < 2 or w.response_max < w.response_min:
        sys.exit("need prompt-tokens >= 2 and 2 <= response-min <= response-max "
                 "(BOS and EOS are one token each)")
    if w.dtype == "bf16" and w.device != "cuda":
        sys.exit("--dtype bf16 is for --device cuda: on a CPU TRL would autocast while "
                 "preftune casts the weights, and the runs would not compare")
    return w


def option_values(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            sys.exit(f"option {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def orchestrate(argv: list[str]) -> None:
    args = parse_args(argv)
    shapes, trainers = shapes_from(args), trainers_from(args)
    keep = args.workdir is not None
    root = args.workdir or Path(tempfile.mkdtemp(prefix="dpo-vs-trl-"))
    root.mkdir(parents=True, exist_ok=True)
    print(machine_line())
    report: dict[str, Any] = {"command": command_line(), "machine": machine_line(),
                              "versions": versions(), "shapes": {}}
    finals: list[str] = []
    for shape in shapes:
        workload = workload_from(args, shape)
        shape_root = root / shape if len(shapes) > 1 else root
        shape_root.mkdir(parents=True, exist_ok=True)
        runs = bench_shape(args, workload, trainers, shape_root)
        final = {peer: {k: statistics.median(r["ratios"][peer][k] for r in runs)
                        for k in runs[0]["ratios"][peer]} for peer in runs[0]["ratios"]}
        report["shapes"][shape] = {"workload": asdict(workload), "runs": runs, "final": final,
                                   "phases": median_phases(runs)}
        print_phases(shape, runs)
        for peer, ratios in final.items():
            finals.append(f"shape={shape} peer={peer} "
                          + " ".join(f"{k}={fmt_ratio(v)}" for k, v in ratios.items()))
        if not final:  # one trainer alone: its own figures, medians over the runs
            for trainer in trainers:
                figures = [r["figures"][trainer] for r in runs]
                finals.append(f"shape={shape} trainer={trainer} " + " ".join(
                    f"{k}={statistics.median(f[k] for f in figures):.3f}"
                    for k in ("pairs_per_s", "end_to_end_s", "peak_mb")))
        if args.out:  # after every shape: a long run interrupted keeps what it measured
            write_json(args.out, report)
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    print()
    for line in finals:
        print(line)


def bench_shape(args: argparse.Namespace, workload: Workload, trainers: tuple[str, ...],
                root: Path) -> list[dict[str, Any]]:
    print(f"\nshape {workload.shape}; workload: {json.dumps(asdict(workload))}")
    prepared = prepare(workload, root)
    base = {"workload": asdict(workload), "model_dir": str(root / "model"),
            "data": str(root / "pairs.jsonl"), "order": prepared["order"], "plain": args.plain,
            "preftune_options": option_values(args.preftune_option),
            "trl_options": option_values(args.trl_option)}
    runs = []
    for run in range(args.runs):
        results = {t: run_worker(t, base, root / f"run{run}", prepared) for t in trainers}
        figures = {t: figures_of(r, workload, prepared, args.warmup_steps)
                   for t, r in results.items()}
        ratios = {peer: run_ratios(figures["preftune"], figures[peer], args.steps_for_parity)
                  for peer in trainers if peer != "preftune" and "preftune" in figures}
        print_run(run, figures, ratios, results)
        runs.append({"results": results, "figures": {t: asdict(f) for t, f in figures.items()},
                     "ratios": ratios})
    return runs


def median_phases(runs: list[dict[str, Any]]) -> dict[str, float]:
    """preftune's seconds per phase, the median over the runs."""
    phases = [r["results"]["preftune"].get("phases") or {} for r in runs
              if "preftune" in r["results"]]
    names = [n for n in (phases[0] if phases else {})]
    return {n: statistics.median(p.get(n, 0.0) for p in phases) for n in names}


def print_phases(shape: str, runs: list[dict[str, Any]]) -> None:
    phases = median_phases(runs)
    if not phases:
        return
    total = sum(phases.values())
    print(f"\npreftune on {shape}, where the time goes (median of {len(runs)} run(s)):")
    for name, seconds in phases.items():
        print(f"  {name:<11}{seconds:>9.2f} s{100 * seconds / total:>7.1f}%")


def prepare(workload: Workload, root: Path) -> dict[str, Any]:
    spec = {"workload": asdict(workload), "model_dir": str(root / "model"),
            "data": str(root / "pairs.jsonl")}
    write_json(root / "prepare_spec.json", spec)
    started = time.perf_counter()
    subprocess_or_exit("prepare", ["prepare", "--spec", str(root / "prepare_spec.json"),
                                   "--out", str(root / "prepared.json")], root / "prepare.log",
                       worker_env(root / "prepare-cache"))
    print(f"prepared model, tokenizer and {workload.pairs} pairs in "
          f"{time.perf_counter() - started:.1f} s; TRL and preftune token ids match for every "
          "pair")
    return json.loads((root / "prepared.json").read_text())


def run_worker(trainer: str, base: dict[str, Any], run_dir: Path,
               prepared: dict[str, Any]) -> dict[str, Any]:
    """Train in a fresh process with fresh caches; check it trained on the prepared tokens."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in (run_dir / f"{trainer}-output", run_dir / f"{trainer}-cache"):
        shutil.rmtree(stale, ignore_errors=True)  # a --workdir used before: start afresh
    spec = {**base, "output_dir": str(run_dir / f"{trainer}-output")}
    spec_path, out = run_dir / f"{trainer}-spec.json", run_dir / f"{trainer}.json"
    write_json(spec_path, spec)
    busy, own, started = busy_cpu_s(), children_cpu_s(), time.perf_counter()
    subprocess_or_exit(trainer, ["worker", "--trainer", trainer, "--spec", str(spec_path),
                                 "--out", str(out)], run_dir / f"{trainer}.log",
                       worker_env(run_dir / f"{trainer}-cache"))
    others = (busy_cpu_s() - busy) - (children_cpu_s() - own)
    share = others / ((time.perf_counter() - started) * (os.cpu_count() or 1))
    if share > 0.05:
        print(f"warning: other processes used {share:.0%} of the CPUs while {trainer} trained; "
              "its timings are slower than on a quiet machine")
    result = {**json.loads(out.read_text()), "others_cpu_share": share}
    check_tokens(trainer, result, prepared, Workload(**base["workload"]))
    return result


def check_tokens(trainer: str, result: dict[str, Any], prepared: dict[str, Any],
                 w: Workload) -> None:
    """Exit unless the worker trained on the prepared ids, in the prepared batches."""
    bad = [i for i, (a, b) in enumerate(zip(result["digests"], prepared["digests"],
                                            strict=True)) if a != b]
    if bad:
        sys.exit(f"{trainer} trained on other token ids than prepared for pairs {bad[:10]}")
    if len(result["losses"]) != w.steps:
        sys.exit(f"{trainer} took {len(result['losses'])} steps, expected {w.steps}")
    if "step_tokens" in result and result["step_tokens"] != step_tokens(prepared, w):
        sys.exit(f"{trainer}'s batches hold other tokens than preftune's order gives: "
                 f"{result['step_tokens']} vs {step_tokens(prepared, w)}")


def busy_cpu_s() -> float:
    """CPU seconds every process on the machine has used since boot (Linux /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def worker_env(cache: Path) -> dict[str, str]:
    """Fresh caches, so that tokenization and the reference pass are really done and timed."""
    return {**os.environ, "PREFTUNE_CACHE": str(cache / "preftune"),
            "HF_DATASETS_CACHE": str(cache / "datasets"), "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1"}


def subprocess_or_exit(what: str, args: list[str], log: Path, env: dict[str, str]) -> None:
    with log.open("w") as f:
        code = subprocess.run([sys.executable, __file__, *args], stdout=f, stderr=subprocess.STDOUT,
                              env=env, check=False).returncode
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        sys.exit(f"{what} failed (exit {code}); last lines of {log}:\n{tail}")


def step_tokens(prepared: dict[str, Any], w: Workload) -> list[int]:
    order, tokens = prepared["order"], prepared["pair_tokens"]
    return [sum(tokens[i] for i in order[s:s + w.batch_size])
            for s in range(0, w.pairs, w.batch_size)]


def figures_of(result: dict[str, Any], w: Workload, prepared: dict[str, Any],
               warmup: int) -> Figures:
    ends = result["step_ends_s"]
    pairs = [min(w.batch_size, w.pairs - s) for s in range(0, w.pairs, w.batch_size)]
    device_peak = result.get("peak_device_mb")
    mfu = None
    if w.device == "cuda" and result.get("parameters"):
        mfu = model_flops(result["parameters"], sum(prepared["pair_tokens"])) / (
            result["end_to_end_s"] * H100_BF16_PEAK_FLOPS)
    return Figures(pairs_per_s=window_rate(ends, pairs, warmup),
                   tokens_per_s=window_rate(ends, step_tokens(prepared, w), warmup),
                   end_to_end_s=result["end_to_end_s"],
                   peak_mb=device_peak if device_peak is not None else (
                       result.get("training_peak_mb") or result["peak_rss_mb"]),
                   first_step_s=result["first_step_s"], losses=result["losses"], mfu=mfu)


def model_flops(parameters: int, tokens: int) -> float:
    """The epoch's model FLOPs, whatever a trainer computes: 6·N per token for the policy's
    forward and backward, 2·N per token for one reference forward."""
    return (6 + 2) * parameters * tokens


def window_rate(ends: list[float], amounts: list[int], warmup: int) -> float:
    """Median over up to 3 consecutive windows of the steps after ``warmup``: amount / time.

    ``ends[i]`` is when step i finished; a window of steps a..b lasts ``ends[b] - ends[a-1]``.
    """
    warmup = min(max(warmup, 1), len(ends) - 1)
    timed = list(range(warmup, len(ends)))
    if not timed:
        return math.nan
    count = min(WINDOWS, len(timed))
    bounds = [timed[len(timed) * k // count] for k in range(count)] + [len(ends)]
    rates = [sum(amounts[a:b]) / (ends[b - 1] - ends[a - 1])
             for a, b in zip(bounds, bounds[1:], strict=False)]
    return statistics.median(rates)


def run_ratios(p: Figures, t: Figures, parity_steps: int) -> dict[str, float]:
    """preftune (``p``) against one peer (``t``)."""
    n = min(parity_steps, len(p.losses), len(t.losses))
    return {"throughput_ratio": p.pairs_per_s / t.pairs_per_s,
            "end_to_end_ratio": t.end_to_end_s / p.end_to_end_s,
            "memory_ratio": p.peak_mb / t.peak_mb,
            "loss_rel_diff": max(abs(a - b) / abs(b)
                                 for a, b in zip(p.losses[:n], t.losses[:n], strict=True))}


def print_run(run: int, figures: dict[str, Figures], ratios: dict[str, dict[str, float]],
              results: dict[str, Any]) -> None:
    print(f"\nrun {run + 1}")
    gpu = any(f.mfu is not None for f in figures.values())
    header = (f"{'trainer':<10}{'pairs/s':>10}{'tokens/s':>11}{'end-to-end s':>14}"
              f"{'peak MB':>10}{'first step s':>14}" + (f"{'MFU':>8}" if gpu else ""))
    print(header)
    print("-" * len(header))
    for name, f in figures.items():
        mfu = f"{f.mfu:>8.1%}" if f.mfu is not None else ""
        print(f"{name:<10}{f.pairs_per_s:>10.3f}{f.tokens_per_s:>11.0f}{f.end_to_end_s:>14.1f}"
              f"{f.peak_mb:>10.0f}{f.first_step_s:>14.1f}{mfu}")
    for name, r in results.items():
        extra = f", reference pass {r['reference_s']:.1f} s" if r.get("reference_s") else ""
        print(f"{name}: imports {r['imports_s']:.1f} s and after training "
              f"{r['after_training_s']:.1f} s (neither counted){extra}; CPU {r['cpu_s']:.0f} s "
              f"in {r['wall_s']:.0f} s, other processes {r['others_cpu_share']:.0%} of the CPUs; "
              f"options {r['options']}")
    for peer, values in ratios.items():
        p, t = figures["preftune"].losses, figures[peer].losses
        print(f"loss parity with {peer} over the first {min(len(p), len(t))} steps: max "
              f"relative difference {values['loss_rel_diff']:.2e}; loss from step 1 to "
              f"{len(p)}: preftune {p[0]:.6f} -> {p[-1]:.6f}, {peer} {t[0]:.6f} -> {t[-1]:.6f}")
        print(f"run {run + 1} peer={peer}: "
              + " ".join(f"{k}={fmt_ratio(v)}" for k, v in values.items()))


def fmt_ratio(value: float) -> str:
    return f"{value:.3e}" if value != 0 and abs(value) < 1e-2 else f"{value:.3f}"


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    v = versions()
    return (f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {v['torch']}, transformers {v['transformers']}, trl {v['trl']}, "
            f"peft {v['peft']}\ncommand: {command_line()}")


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("torch", "transformers", "trl", "peft")}


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def write_json(path: Path, value: Any) -> None:
    """Write whole or not at all: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def trust_saved_tokenizer() -> None:
    """Load the benchmark's word-level tokenizer as saved, whatever the model type.

    For some model types (qwen2 among them) transformers 5 ignores the saved tokenizer class
    and rebuilds the tokenizer as that family's own (Qwen2Tokenizer), which would turn this
    benchmark's one-word-one-token vocabulary into unknown tokens. Every process that loads a
    tokenizer (prepare and all workers) calls this first, so all trainers read the same ids.
    """
    from transformers.models.auto import tokenization_auto

    forced = getattr(tokenization_auto, "MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS", None)
    if forced is not None:
        forced.difference_update(spec["model_type"] for spec in SHAPES.values())


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["prepare"], ["worker"]):
        trust_saved_tokenizer()
    if argv[:1] == ["prepare"]:
        prepare_main(argv[1:])
    elif argv[:1] == ["worker"]:
        worker_main(argv[1:])
    else:
        orchestrate(argv)


if __name__ == "__main__":
    main()
