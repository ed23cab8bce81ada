"""Benchmark: preftune's DPO trainer against ``trl.DPOTrainer``, same model, tokens and batches.

    python bench/dpo_vs_trl.py [--lora] [--runs 3] [--out results.json]
    python bench/dpo_vs_trl.py --quick        # tiny sizes: both trainers in well under a minute

Default workload (CPU): a random-init Llama-shaped model (hidden 512, 4 layers, 8 heads of 64,
intermediate 1376 = 8/3 * 512 rounded up to a multiple of 32, vocabulary 32,000, untied
embeddings), 160 synthetic pairs with prompts of 192 tokens and chosen and rejected responses
of 64-128 tokens each (drawn independently; counts include BOS and EOS), batch 8, fp32, full
fine-tuning, sigmoid DPO with beta 0.1, AdamW at a constant 1e-5 (no warm-up, no weight decay,
max_grad_norm 1.0), one epoch: 20 optimizer steps.

How it runs. This process imports nothing heavy: a child's ``ru_maxrss`` starts at its
parent's peak (Linux carries it across fork and exec), so a large parent would inflate every
worker's figure. It starts, as subprocesses:

1. ``prepare``: builds the model from a config (seeded random init, ``save_pretrained``), a
   word-level tokenizer saved beside it, and the pairs as JSONL whose words are exactly one
   token each; then checks that TRL's tokenization and preftune's ``tokenize_pairs`` give the
   same ids for every pair, and fails before any training if they do not.
2. per run, ``worker --trainer preftune`` and ``worker --trainer trl``: each trains one epoch
   over the pairs in preftune's batch order and writes per-step losses and clock times, digests
   of the token ids it trained on and its peak RSS. The orchestrator checks the digests (and,
   for TRL, the tokens of every batch) against what ``prepare`` computed.

Figures, per trainer:

- pairs/s: the steps after ``--warmup-steps`` are split into 3 consecutive windows; each
  window's pairs over its wall time (end of the step before it to the end of its last step);
  the median of the windows.
- tokens/s: the same windows, counting the non-padding tokens of prompt+chosen and
  prompt+rejected (2 * prompt + chosen + rejected per pair) for both trainers alike, whatever
  either computes internally.
- end-to-end: from the worker's start (after its imports) to the end of the last optimizer
  step: model loading, reading and tokenizing the data, reference log-probs (preftune: one
  pass before training, its default; TRL: a reference forward in every step, its default) and
  training. preftune's end-of-run checkpoint, final save and charts come after that and are
  not counted (``after_training_s`` in the JSON).
- first step: from the worker's start (after imports) to the end of the first optimizer step.
- peak MB: the worker's own ``ru_maxrss``.
- loss_rel_diff: max over the first ``--steps-for-parity`` steps of ``|l_p - l_t| / |l_t|``.

Timings are only as good as the machine is quiet: after each worker the share of the CPUs that
other processes used meanwhile is computed from /proc/stat, printed, and warned about above 5%.

The last line printed is ``throughput_ratio=<x> end_to_end_ratio=<w> memory_ratio=<y>
loss_rel_diff=<z>``: preftune pairs/s over TRL's, TRL end-to-end time over preftune's,
preftune peak over TRL's; with ``--runs N``, the medians over the runs.
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
TRAINERS = ("preftune", "trl")
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

    @property
    def max_prompt_length(self) -> int:
        return self.prompt_tokens

    @property
    def max_length(self) -> int:
        return self.prompt_tokens + self.response_max  # exactly the longest sequence

    @property
    def steps(self) -> int:
        return math.ceil(self.pairs / self.batch_size)


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


def build_model(w: Workload, model_dir: Path) -> None:
    """A seeded random-init Llama-shaped model and its word-level tokenizer, in ``model_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=w.vocab, hidden_size=w.hidden, num_hidden_layers=w.layers,
                         num_attention_heads=w.heads, num_key_value_heads=w.heads,
                         intermediate_size=w.intermediate,
                         max_position_embeddings=max(2048, w.max_length),
                         pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         tie_word_embeddings=False)
    torch.manual_seed(w.seed)
    LlamaForCausalLM(config).save_pretrained(model_dir)
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
    result = run_preftune(spec) if args.trainer == "preftune" else run_trl(spec)
    result["peak_rss_mb"] = peak_rss_mb()
    result["cpu_s"] = cpu_seconds()  # well under wall x cores: something else had the CPUs
    result["wall_s"] = time.perf_counter() - STARTED
    result["vm_hwm_mb"] = vm_hwm_mb()  # the kernel's per-process high-water mark, a cross-check
    write_json(args.out, result)


def run_preftune(spec: dict[str, Any]) -> dict[str, Any]:
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

        def data(self, data: Any) -> None:
            self.rows = data.train.rows

        def reference(self, pairs: int, cached: bool) -> None:
            self.reference_at, self.reference_cached = time.perf_counter(), cached

        def start(self, total_steps: int, done_steps: int) -> None:
            self.started_at = time.perf_counter()

        def step(self, row: dict[str, float]) -> None:
            self.ends.append(time.perf_counter())
            self.losses.append(row["loss"])

    cfg = TrainConfig(**preftune_values(spec))
    clock = Clock()
    train(cfg, reporter=clock)
    finished = time.perf_counter()
    if clock.reference_cached:
        sys.exit("preftune found cached reference log-probs: PREFTUNE_CACHE is not fresh")
    table = clock.rows.data.table
    ids = zip(*(table.column(name).to_pylist() for name in ID_COLUMNS), strict=True)
    reference_s = (clock.started_at - clock.reference_at) if clock.reference_at else None
    return {**timings(t0, clock.ends, finished, imports_s), "losses": clock.losses,
            "digests": by_record(table.column("record").to_pylist(), ids),
            "reference_s": reference_s,
            "options": {k: getattr(cfg, k) for k in (*FAST_PATHS, "group_by_length")
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
        "dtype": "fp32", "max_length": w.max_length, "max_prompt_length": w.max_prompt_length,
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


def run_trl(spec: dict[str, Any]) -> dict[str, Any]:
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

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.ends.append(time.perf_counter())  # after the optimizer step

    order = spec["order"]
    dataset = load_dataset("json", data_files=spec["data"], split="train").select(order)
    clock = Clock()
    trainer = Recording(model=spec["model_dir"], args=trl_config(w, spec["output_dir"]),
                        train_dataset=dataset, callbacks=[clock], peft_config=lora_config(w),
                        processing_class=AutoTokenizer.from_pretrained(spec["model_dir"]))
    trainer.train()
    finished = time.perf_counter()
    ids = ([row[name] for name in ID_COLUMNS] for row in trainer.train_dataset)
    return {**timings(t0, clock.ends, finished, imports_s), "losses": trainer.bench_losses,
            "step_tokens": trainer.bench_tokens, "digests": by_record(order, ids),
            "options": {"optim": str(trainer.args.optim), "bf16": trainer.args.bf16,
                        "precompute_ref_log_probs": trainer.args.precompute_ref_log_probs,
                        "activation_checkpointing": trainer.args.activation_checkpointing}}


def trl_config(w: Workload, output_dir: str) -> Any:
    """DPOConfig matching preftune's run. TRL's defaults are kept except where they differ from
    it: bf16 (TRL: on, autocast even on CPU), gradient checkpointing (TRL: on), the schedule
    (TRL: linear decay), the learning rate and logging; ``optim`` stays adamw_torch_fused."""
    from trl import DPOConfig

    return DPOConfig(
        output_dir=output_dir, beta=w.beta, loss_type=["sigmoid"], learning_rate=w.lr,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        per_device_train_batch_size=w.batch_size, gradient_accumulation_steps=1,
        num_train_epochs=1, seed=w.seed, bf16=False, fp16=False, use_cpu=True,
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    d = Workload()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="tiny sizes: " + json.dumps(QUICK))
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
                   help="on for both trainers (TRL's default is on, preftune's off)")
    p.add_argument("--steps-for-parity", type=int, default=20)
    p.add_argument("--warmup-steps", type=int, default=2, help="steps before timing windows")
    p.add_argument("--runs", type=int, default=1, help="repeat the comparison; medians last")
    p.add_argument("--trainers", choices=("both", *TRAINERS), default="both")
    p.add_argument("--plain", action="store_true",
                   help="preftune with its fast paths off: " + ", ".join(FAST_PATHS))
    p.add_argument("--preftune-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a TrainConfig value for preftune, e.g. torch_compile=true")
    p.add_argument("--workdir", type=Path, help="keep model, data, logs and results here")
    p.add_argument("--out", type=Path, help="write every figure as JSON here")
    return p.parse_args(argv)


def workload_from(args: argparse.Namespace) -> Workload:
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    for field in dataclasses.fields(Workload):
        given = getattr(args, field.name, None)
        if given is not None:  # flags given override --quick's sizes
            values[field.name] = given
    w = Workload(**values)
    if w.prompt_tokens < 2 or w.response_min < 2 or w.response_max < w.response_min:
        sys.exit("need prompt-tokens >= 2 and 2 <= response-min <= response-max "
                 "(BOS and EOS are one token each)")
    return w


def option_values(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            sys.exit(f"--preftune-option {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def orchestrate(argv: list[str]) -> None:
    args = parse_args(argv)
    workload = workload_from(args)
    trainers = TRAINERS if args.trainers == "both" else (args.trainers,)
    keep = args.workdir is not None
    root = args.workdir or Path(tempfile.mkdtemp(prefix="dpo-vs-trl-"))
    root.mkdir(parents=True, exist_ok=True)
    print(machine_line())
    print(f"workload: {json.dumps(asdict(workload))}")
    prepared = prepare(workload, root)
    base = {"workload": asdict(workload), "model_dir": str(root / "model"),
            "data": str(root / "pairs.jsonl"), "order": prepared["order"], "plain": args.plain,
            "preftune_options": option_values(args.preftune_option)}
    runs = []
    for run in range(args.runs):
        results = {t: run_worker(t, base, root / f"run{run}", prepared) for t in trainers}
        figures = {t: figures_of(r, workload, prepared, args.warmup_steps)
                   for t, r in results.items()}
        ratios = run_ratios(figures, args.steps_for_parity)
        print_run(run, figures, ratios, results)
        runs.append({"results": results, "figures": {t: asdict(f) for t, f in figures.items()},
                     "ratios": ratios})
    final = {k: statistics.median(r["ratios"][k] for r in runs) for k in runs[0]["ratios"]}
    if args.out:
        write_json(args.out, {"command": command_line(), "machine": machine_line(),
                              "versions": versions(), "workload": asdict(workload),
                              "runs": runs, "final": final})
    if not keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    print(" ".join(f"{k}={fmt_ratio(v)}" for k, v in final.items()))


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
    return Figures(pairs_per_s=window_rate(ends, pairs, warmup),
                   tokens_per_s=window_rate(ends, step_tokens(prepared, w), warmup),
                   end_to_end_s=result["end_to_end_s"], peak_mb=result["peak_rss_mb"],
                   first_step_s=result["first_step_s"], losses=result["losses"])


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


def run_ratios(figures: dict[str, Figures], parity_steps: int) -> dict[str, float]:
    if len(figures) < 2:
        return dict.fromkeys(("throughput_ratio", "end_to_end_ratio", "memory_ratio",
                              "loss_rel_diff"), math.nan)
    p, t = figures["preftune"], figures["trl"]
    n = min(parity_steps, len(p.losses), len(t.losses))
    return {"throughput_ratio": p.pairs_per_s / t.pairs_per_s,
            "end_to_end_ratio": t.end_to_end_s / p.end_to_end_s,
            "memory_ratio": p.peak_mb / t.peak_mb,
            "loss_rel_diff": max(abs(a - b) / abs(b)
                                 for a, b in zip(p.losses[:n], t.losses[:n], strict=True))}


def print_run(run: int, figures: dict[str, Figures], ratios: dict[str, float],
              results: dict[str, Any]) -> None:
    print(f"\nrun {run + 1}")
    header = (f"{'trainer':<10}{'pairs/s':>10}{'tokens/s':>11}{'end-to-end s':>14}"
              f"{'peak MB':>10}{'first step s':>14}")
    print(header)
    print("-" * len(header))
    for name, f in figures.items():
        print(f"{name:<10}{f.pairs_per_s:>10.3f}{f.tokens_per_s:>11.0f}{f.end_to_end_s:>14.1f}"
              f"{f.peak_mb:>10.0f}{f.first_step_s:>14.1f}")
    for name, r in results.items():
        extra = f", reference pass {r['reference_s']:.1f} s" if r.get("reference_s") else ""
        print(f"{name}: imports {r['imports_s']:.1f} s and after training "
              f"{r['after_training_s']:.1f} s (neither counted){extra}; CPU {r['cpu_s']:.0f} s "
              f"in {r['wall_s']:.0f} s, other processes {r['others_cpu_share']:.0%} of the CPUs; "
              f"options {r['options']}")
    if "preftune" in figures and "trl" in figures:
        p, t = figures["preftune"].losses, figures["trl"].losses
        print(f"loss parity over the first {min(len(p), len(t))} steps: max relative difference "
              f"{ratios['loss_rel_diff']:.2e}; loss from step 1 to {len(p)}: preftune "
              f"{p[0]:.6f} -> {p[-1]:.6f}, TRL {t[0]:.6f} -> {t[-1]:.6f}")
    print(f"run {run + 1}: " + " ".join(f"{k}={fmt_ratio(v)}" for k, v in ratios.items()))


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


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["prepare"]:
        prepare_main(argv[1:])
    elif argv[:1] == ["worker"]:
        worker_main(argv[1:])
    else:
        orchestrate(argv)


if __name__ == "__main__":
    main()
