"""``train(cfg)``: the training loop, top to bottom.

setup (run directory, seed, device) → data (validated, tokenized) → models (policy,
reference) → reference log-probs (once, cached) → optimizer and schedule → resume →
steps (forward, loss, backward, clip, step; log, evaluate, checkpoint) → final model.
The caller's ``RunHooks`` see the run start, each logged row, and its end (``engine.hooks``).

A step is ``grad_accum`` micro-batches of ``batch_size`` pairs; its loss is the mean over all
its pairs. Data order is a permutation seeded by (seed, epoch), so a resumed run skips the
steps already taken and sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import functools
import math
import resource
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator

from preftune import settings
from preftune.config import TrainConfig
from preftune.engine.build import ModelSpec, build_policy
from preftune.engine.checkpoint import Position, load_state, restore_rng
from preftune.engine.data import prepare_data
from preftune.engine.distributed import (
    gathered_policy_state,
    load_optimizer_state,
    process_share,
    save_checkpoint_all,
    summed_over_processes,
)
from preftune.engine.evaluate import RowLogps, Scorer, add_pair_sums, evaluate_rows
from preftune.engine.forward import FastPaths, router_aux_coef
from preftune.engine.hooks import RunHooks
from preftune.engine.logprobs import TokenRows
from preftune.engine.optim import adamw
from preftune.engine.phases import PhaseClock
from preftune.engine.reference import cache_key, load_cached, reference_pass, store_cached
from preftune.engine.report import Reporter, RunResult
from preftune.engine.run import StatusMarks, open_run, run_record
from preftune.engine.steps import training_steps
from preftune.engine.stop import StopRequest, stop_on_sigterm
from preftune.errors import TrainingError
from preftune.fsutil import atomic_dir
from preftune.losses.table import mixture_loss, needs_reference
from preftune.models.load import load_tokenizer, resolve_model
from preftune.rundir import RunDir


def nan_advice(cfg: TrainConfig) -> list[str]:
    """What to change after a loss that is no longer finite, from the run's own values."""
    warmup = max(2 * cfg.warmup_steps, cfg.warmup_steps + 10)
    return [f"lower the learning rate from {cfg.learning_rate:g} to {cfg.learning_rate / 2:g}",
            f"lower beta from {cfg.beta:g} to {cfg.beta / 2:g}",
            f"raise warmup_steps from {cfg.warmup_steps} to {warmup}"]


OOM_ADVICE = [
    "lower batch_size (and raise grad_accum to keep the effective batch)",
    "lower max_length, use LoRA or gradient_checkpointing, or a smaller model",
]


def train(cfg: TrainConfig | None, train_data: Any = None, eval_data: Any = None,
          resume: str | Path | None = None, reporter: Reporter | None = None,
          hooks: RunHooks | None = None) -> RunResult:
    """Train as ``cfg`` says; with ``resume`` (and no cfg), continue that run from its last
    checkpoint with the config it was started with. SIGTERM checkpoints and stops
    (``StoppedError``). ``hooks`` add what the run directory holds beyond the engine's own
    files (``runs.artifacts.RunArtifacts``: trackers, live warnings, charts, diagnosis)."""
    with stop_on_sigterm() as stop, StatusMarks() as marks:
        return _train(cfg, train_data, eval_data, resume, reporter, hooks or RunHooks(), stop,
                      marks)


def _train(cfg: TrainConfig | None, train_data: Any, eval_data: Any,
           resume: str | Path | None, reporter: Reporter | None, hooks: RunHooks,
           stop: StopRequest, marks: StatusMarks) -> RunResult:
    started = time.perf_counter()
    report = reporter or Reporter()
    run, cfg, checkpoint = open_run(cfg, resume)
    hooks.check(cfg)
    torch.manual_seed(cfg.seed)
    accelerator = Accelerator(mixed_precision="fp16" if cfg.dtype == "fp16" else "no",
                              cpu=not torch.cuda.is_available())
    device = accelerator.device
    clock = PhaseClock(device)
    main = accelerator.is_main_process

    with clock.phase("load"):
        resolve_model(cfg.model)  # an unknown name fails here, before anything is written
        tokenizer = load_tokenizer(cfg.model)
    with clock.phase("tokenize"):
        data = prepare_data(cfg, tokenizer, train_data, eval_data)
    if resume is None and main:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(run_record(cfg, data))
    if main:
        marks.running(run)
    report.data(data)
    train_rows = TokenRows.from_dataset(data.train.rows)
    eval_rows = TokenRows.from_dataset(data.eval.rows) if data.eval is not None else None

    with clock.phase("load"):
        policy, ref_model = build_models(cfg, run, checkpoint, device)
    scorer = Scorer(policy, ref_model, mixture_loss(cfg.algorithms, cfg.loss_weights),
                    cfg.loss_params(), needs_ref=needs_reference(cfg.algorithms),
                    pad_id=tokenizer.pad_token_id,
                    device=device, paths=FastPaths.from_config(cfg),
                    router_aux_coef=router_aux_coef(policy.config, cfg.router_aux_loss_coef))
    train_ref = eval_ref = None
    if scorer.needs_ref and cfg.precompute_ref_logprobs:
        with clock.phase("reference"):
            train_ref = cached_reference(cfg, scorer, data.train.rows, train_rows, report)
            if data.eval is not None and eval_rows is not None:
                eval_ref = cached_reference(cfg, scorer, data.eval.rows, eval_rows, report)
        scorer.ref_model = ref_model = None  # never needed again: free the frozen copy

    optimizer = adamw([p for p in policy.parameters() if p.requires_grad],
                      cfg.learning_rate, cfg.weight_decay)
    # Under `accelerate launch` the scoring module is wrapped for DDP or sharded for FSDP. FSDP
    # replaces the parameters, so model and optimizer are prepared together, and gradients are
    # clipped over the prepared module's parameters. The scorer keeps the unwrapped policy for
    # what the wrapper hides (disabling adapters for the reference, saving).
    scorer.model, optimizer = accelerator.prepare(scorer.model, optimizer)
    plan = step_plan(cfg, train_rows)
    scheduler = make_scheduler(optimizer, cfg, plan.total_steps)

    position = Position(epoch=0, epoch_step=0, step=0)
    if checkpoint is not None:
        state, position = load_state(run, checkpoint)
        load_optimizer_state(accelerator, scorer.model, optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"])
    if main:
        run.truncate_metrics(position.step)  # rows a crashed run logged after its checkpoint
        hooks.start(cfg, run.path)

    def record(row: dict[str, float]) -> Any:
        """Log ``row`` and hand it to the hooks (main process); what they warn about."""
        if not main:
            return None
        run.log(row)
        return hooks.log(row)

    window = MetricWindow()
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    policy.train()
    report.start(plan.total_steps, position.step)

    def save_at(resume_at: Position, progress: float) -> None:
        save_checkpoint_all(accelerator, run, scorer.model, policy, optimizer, scheduler,
                            resume_at, progress, cfg.save_total_limit)

    with training_steps(stop, hooks if main else None, lambda: position.step, OOM_ADVICE):
        for epoch, epoch_step, micro_batches in plan.steps(cfg.seed, position):
            step_started = time.perf_counter()
            sums = train_step(accelerator, scorer, train_rows, micro_batches, train_ref, clock)
            with clock.phase("optimizer"):
                lr = float(scheduler.get_last_lr()[0])
                grad_norm = float(accelerator.clip_grad_norm_(scorer.model.parameters(),
                                                              cfg.max_grad_norm))
                if not (math.isfinite(sums["loss"]) and math.isfinite(grad_norm)):
                    raise TrainingError(
                        f"the loss became {sums['loss'] / sums['pairs']:g} at step "
                        f"{position.step + 1}; training "
                        "stopped before the update, and the last good checkpoint is kept",
                        nan_advice(cfg))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            position = Position(epoch, epoch_step + 1, position.step + 1)
            window.add(sums, grad_norm, lr, time.perf_counter() - step_started)

            progress = epoch + (epoch_step + 1) / plan.steps_per_epoch
            end_of_epoch = epoch_step + 1 == plan.steps_per_epoch
            done = position.step == plan.total_steps
            if position.step % cfg.logging_steps == 0 or done:
                with clock.phase("logging"):
                    last = window.row(position.step, progress, device)
                    first = first or last
                    finding = record(last)
                    if main:
                        report.step(last)
                        if finding is not None:
                            report.warning(finding)
                    window = MetricWindow()
            if eval_rows is not None and (
                    done or (cfg.eval_steps and position.step % cfg.eval_steps == 0)):
                with clock.phase("evaluation"):
                    scores = evaluate_rows(scorer, eval_rows, eval_ref, cfg.batch_size)
                    row = {"step": position.step, "epoch": round(progress, 4),
                           **{f"eval/{k}": v for k, v in scores.items()}}
                    record(row)
                    if main:
                        report.evaluation(row)
                    last = {**last, **row}
            resume_at = Position(epoch + 1, 0, position.step) if end_of_epoch else position
            saved = end_of_epoch or bool(cfg.save_steps and position.step % cfg.save_steps == 0)
            if saved:
                with clock.phase("checkpoint"):
                    save_at(resume_at, progress)
            if done:
                break
            stop.stop_after(accelerator, position.step, saved,
                            functools.partial(save_at, resume_at, progress),
                            f"preftune train --resume {run.path}")

    diagnosis = None
    with clock.phase("final"):
        weights = gathered_policy_state(accelerator, scorer.model)  # every process takes part
        if main:
            save_final(run, policy, tokenizer, weights)
            diagnosis = hooks.finish(run.path)
            marks.finished()
        accelerator.wait_for_everyone()
    result = RunResult(run.path, last, first, position.step, time.perf_counter() - started,
                       diagnosis, clock.summary())
    if main:
        report.finish(result)
    return result


# ------------------------------------------------------------------------------------ setup


def build_models(cfg: TrainConfig, run: RunDir, checkpoint: dict[str, Any] | None,
                 device: torch.device) -> tuple[Any, Any]:
    """The policy (a checkpoint's weights when resuming) and, without LoRA, a frozen reference.

    With LoRA the reference is the policy with its adapters disabled, never a second copy.
    Full fine-tuning that computes every reference log-prob before its first step scores the
    starting policy itself, so no copy is loaded then either (``starting_reference``).
    """
    spec = ModelSpec(
        cfg.model,
        # fp16 trains with fp32 master weights under accelerate's mixed precision (loss scaling).
        dtype="fp32" if cfg.dtype == "fp16" else cfg.dtype,
        lora=cfg.lora, lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
        # With dropout disabled, LoRA's is 0 from the start (peft's adapters on a mixture of
        # experts' fused weights accept no other).
        lora_dropout=0.0 if cfg.disable_dropout else cfg.lora_dropout,
        lora_target_modules=cfg.lora_target_modules, load_in_4bit=cfg.load_in_4bit,
        attention=attention_kernel(cfg, device),
        attention_fallback=cfg.attn_implementation == "auto",
        disable_dropout=cfg.disable_dropout, gradient_checkpointing=cfg.gradient_checkpointing,
        torch_compile=cfg.torch_compile)
    with_reference = needs_reference(cfg.algorithms) and not starting_reference(cfg, checkpoint)
    return build_policy(spec, run.path, checkpoint, device, with_reference)


def starting_reference(cfg: TrainConfig, checkpoint: dict[str, Any] | None) -> bool:
    """Full fine-tuning whose reference log-probs are all computed before the first step,
    from a policy that still holds the starting weights: no frozen copy is loaded."""
    return not cfg.lora and cfg.precompute_ref_logprobs and checkpoint is None


def attention_kernel(cfg: TrainConfig, device: torch.device) -> str:
    """The attention implementation to load: FlexAttention on CUDA for packed batches (its
    block masks skip what a pair cannot see), SDPA with a dense mask elsewhere."""
    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation
    packed = cfg.shared_prompt or cfg.pack_pairs
    return "flex_attention" if device.type == "cuda" and packed else "sdpa"


def cached_reference(cfg: TrainConfig, scorer: Scorer, dataset: Any, rows: TokenRows,
                     report: Reporter) -> RowLogps:
    """Reference log-probs of every row, from the cache when model and tokens are the same."""
    key = cache_key(resolve_model(cfg.model), cfg.dtype, dataset.data.table, cfg.ld_alpha)
    cache = settings.cache_dir() / "reference"
    cached = load_cached(cache, key)
    report.reference(len(rows), cached is not None)
    if cached is None:
        size = cfg.batch_size * 2  # no gradients: twice the training batch fits
        batches = (scorer.batch(rows, list(range(i, min(i + size, len(rows)))))
                   for i in range(0, len(rows), size))
        cached = reference_pass(scorer.policy, scorer.ref_model, batches, scorer.paths,
                                policy_is_reference=scorer.ref_model is None and not cfg.lora)
        store_cached(cache, key, *cached)
    return RowLogps(torch.from_numpy(cached[0]), torch.from_numpy(cached[1]))


class ScheduleOptions(Protocol):
    """What a schedule reads from a config (TrainConfig's and GRPOConfig's fields)."""

    @property
    def warmup_steps(self) -> int: ...
    @property
    def lr_scheduler(self) -> str: ...


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleOptions,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak, then linear or cosine decay to zero, or constant."""
    warmup = min(cfg.warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.lr_scheduler == "constant":
            return 1.0
        done = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        if cfg.lr_scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * done))
        return 1.0 - done

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ------------------------------------------------------------------------------------ steps


@dataclass(frozen=True)
class StepPlan:
    """Which pairs each optimizer step sees, in every epoch."""

    num_pairs: int
    batch_size: int
    grad_accum: int
    epochs: int
    max_steps: int | None
    lengths: tuple[int, ...] | None = None  # tokens per pair, to group pairs by length
    # Micro-batches are the data's consecutive runs of batch_size rows, in shuffled order:
    # unpaired rows, whose KL completions were drawn from the rows of their own batch.
    fixed_batches: bool = False

    @property
    def steps_per_epoch(self) -> int:
        micro_batches = math.ceil(self.num_pairs / self.batch_size)
        return math.ceil(micro_batches / self.grad_accum)

    @property
    def total_steps(self) -> int:
        planned = self.steps_per_epoch * self.epochs
        return min(planned, self.max_steps) if self.max_steps else planned

    def steps(self, seed: int, start: Position) -> Iterator[tuple[int, int, list[list[int]]]]:
        """(epoch, step within the epoch, micro-batches of row indices), from ``start`` on,
        up to ``total_steps`` in all (none left when a run resumes from its last step)."""
        remaining = self.total_steps - start.step
        for epoch in range(start.epoch, self.epochs):
            micro = self.micro_batches(torch.Generator().manual_seed(seed + epoch))
            first = start.epoch_step if epoch == start.epoch else 0
            for epoch_step in range(first, self.steps_per_epoch):
                if remaining <= 0:
                    return
                remaining -= 1
                yield epoch, epoch_step, micro[epoch_step * self.grad_accum:
                                               (epoch_step + 1) * self.grad_accum]

    def micro_batches(self, generator: torch.Generator) -> list[list[int]]:
        """An epoch's micro-batches: a seeded permutation of the pairs, cut in order; grouped
        by length, each window of GROUP_WINDOW micro-batches is sorted by length before it is
        cut, and the micro-batches are then shuffled."""
        size = self.batch_size
        if self.fixed_batches:
            fixed = [list(range(i, min(i + size, self.num_pairs)))
                     for i in range(0, self.num_pairs, size)]
            return [fixed[k] for k in torch.randperm(len(fixed), generator=generator).tolist()]
        order = torch.randperm(self.num_pairs, generator=generator).tolist()
        if self.lengths is None:
            return [order[i:i + size] for i in range(0, self.num_pairs, size)]
        lengths = self.lengths
        window = size * GROUP_WINDOW
        order = [i for w in range(0, self.num_pairs, window)
                 for i in sorted(order[w:w + window], key=lambda i: -lengths[i])]
        micro = [order[i:i + size] for i in range(0, self.num_pairs, size)]
        shuffled = torch.randperm(len(micro), generator=generator).tolist()
        return [micro[k] for k in shuffled]


GROUP_WINDOW = 64  # micro-batches sorted together by group_by_length


def step_plan(cfg: TrainConfig, rows: TokenRows) -> StepPlan:
    """The run's plan: unpaired rows keep the batches their KL completions were drawn from
    (group_by_length does not apply to them)."""
    unpaired = rows.labels is not None
    if unpaired and cfg.group_by_length:
        warnings.warn("group_by_length is off for unpaired data: each batch keeps the rows its "
                      "KL completions were drawn from", stacklevel=2)
    lengths = pair_lengths(rows) if cfg.group_by_length and not unpaired else None
    return StepPlan(len(rows), cfg.batch_size, cfg.grad_accum, cfg.epochs, cfg.max_steps,
                    lengths, fixed_batches=unpaired)


def pair_lengths(rows: TokenRows) -> tuple[int, ...]:
    return tuple(len(p) + len(c) + len(r) for p, c, r in
                 zip(rows.prompt_ids, rows.chosen_ids, rows.rejected_ids, strict=True))


def train_step(accelerator: Accelerator, scorer: Scorer, rows: TokenRows,
               micro_batches: list[list[int]], ref: RowLogps | None,
               clock: PhaseClock | None = None) -> dict[str, float]:
    """Forward and backward over one step's pairs; the step's sums over all processes.

    Each process takes every P-th pair of the step. Its losses are scaled by P / step pairs,
    so that the gradient DDP averages over processes is the mean over the step's pairs.
    Gradients are synchronised once, on each process's last micro-batch.
    """
    step = [i for m in micro_batches for i in m]
    size = max(len(m) for m in micro_batches)
    mine = process_share(step, size, accelerator)
    scale = accelerator.num_processes / len(step)
    clock = clock or PhaseClock()
    sums: dict[str, float] = {"tokens": 0.0}
    for k, indices in enumerate(mine):
        sync = k == len(mine) - 1
        with contextlib.nullcontext() if sync else accelerator.no_sync(scorer.model):
            # A process out of pairs scores one with weight 0: it joins, adding nothing.
            with clock.phase("forward"):
                out, logps, batch = scorer.score(rows, indices or step[:1], ref)
                loss = out.losses.sum()
                if scorer.router_aux_coef > 0:  # as TRL: preference loss + coef * router loss
                    loss = loss + scorer.router_aux_coef * len(indices) * logps.router_aux
            with clock.phase("backward"):
                accelerator.backward(loss * (scale if indices else 0.0))
        if indices:
            add_pair_sums(sums, out, logps)
            sums["tokens"] += batch.num_tokens
            if scorer.router_aux_coef > 0:
                sums["router_aux_loss"] = (sums.get("router_aux_loss", 0.0)
                                           + float(logps.router_aux) * len(indices))
    sums["pairs"] = float(sum(len(m) for m in mine))
    return summed_over_processes(accelerator, sums)


class MetricWindow:
    """Sums over the steps since the last log row; ``row`` turns them into means."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.seconds = 0.0
        self.grad_norm = 0.0
        self.lr = 0.0

    def add(self, sums: dict[str, float], grad_norm: float, lr: float, seconds: float) -> None:
        for key, value in sums.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1
        self.seconds += seconds
        self.grad_norm += grad_norm
        self.lr = lr

    def row(self, step: int, epoch: float, device: torch.device) -> dict[str, float]:
        pairs = self.sums["pairs"]
        seconds = max(self.seconds, 1e-9)
        row: dict[str, float] = {"step": step, "epoch": round(epoch, 4)}
        for key in ("loss", "accuracy", "margin", "chosen_reward", "rejected_reward",
                    "chosen_logps", "rejected_logps"):
            row[key] = self.sums[key] / pairs
        for key in sorted(self.sums):  # what the loss adds: loss/<part>, kl, router_aux_loss
            if key not in row and key not in ("pairs", "tokens"):
                row[key] = self.sums[key] / pairs
        row.update(learning_rate=self.lr, grad_norm=self.grad_norm / self.steps,
                   tokens=self.sums["tokens"], tokens_per_second=self.sums["tokens"] / seconds,
                   examples_per_second=pairs / seconds, peak_memory_mb=peak_memory_mb(device))
        return row


def peak_memory_mb(device: torch.device) -> float:
    """Peak device memory on a GPU; peak resident memory of the process on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save_final(run: RunDir, policy: Any, tokenizer: Any,
               weights: dict[str, torch.Tensor] | None) -> None:
    """``final/``: the model (or adapter) and the tokenizer, loadable with from_pretrained."""
    with atomic_dir(run.final_path) as tmp:
        policy.save_pretrained(tmp, state_dict=weights)
        tokenizer.save_pretrained(tmp)
