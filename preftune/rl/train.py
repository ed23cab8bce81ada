"""``preftune rl train``: GRPO on the batches the trajectory API forms, built from the offline
engine's pieces.

setup (run directory, processes, policy, optimizer and schedule, resume) → register with the
API → for each step: the main process pulls a batch (whole groups) and every process gets it
(``rl/batches.py``) → each process scores its share of the sequences: per-token log-probs of
the completion tokens from hidden states, a chunk of the vocabulary head at a time
(``rl/logps.py``) → GRPO loss (``rl/grpo.py``), the inference log-probs as the old policy when
sent → backward (gradients averaged over processes) → clip, optimizer step → log, checkpoint,
publish weights for the inference server (with ``vllm_url``, load the adapter into vLLM:
``rl/vllm.py``) → final model, charts, diagnosis (``runs/diagnose_rl.py``).

From the engine: the run directory and config.json with library versions (``engine/run``),
the policy, LoRA or full, its dtype and attention kernel (``engine/build``), the chunked head
(``engine/forward.head_logps``), fused AdamW (``engine/optim``), the schedule, checkpoints
recorded once durable (``engine/checkpoint``), SIGTERM checkpoint-and-stop (``engine/stop``),
each process's share of a step and FSDP's gathered state (``engine/distributed``), the final
save (``engine/loop.save_final``).

Several processes (``accelerate launch``, DDP or FSDP) train as one would on the same batches:
each takes every P-th sequence, ``grpo_loss`` divides its share by the whole batch's counts so
the shares add up to the batch's loss, and each share is scaled by P because DDP averages
gradients over processes. A resumed run registers at its next step, so an API that serves
batches by step gives it exactly the batches an uninterrupted run would have had.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from preftune.engine.build import ModelSpec, build_policy
from preftune.engine.checkpoint import Position, load_state, restore_rng
from preftune.engine.distributed import (
    gathered_policy_state,
    load_optimizer_state,
    on_main,
    process_share,
    save_checkpoint_all,
    summed_over_processes,
)
from preftune.engine.hooks import HookedConfig, RunHooks
from preftune.engine.loop import make_scheduler, peak_memory_mb, save_final
from preftune.engine.optim import adamw
from preftune.engine.run import StatusMarks, config_record, new_run, resume_run
from preftune.engine.steps import training_steps
from preftune.engine.stop import StopRequest, stop_on_sigterm
from preftune.errors import ConfigError, TrainingError, UsageError
from preftune.models.load import load_tokenizer
from preftune.rl.batches import Sequences, TrajectoryClient, flatten
from preftune.rl.grpo import grpo_loss
from preftune.rl.inference import publish_weights
from preftune.rl.logps import PROMPT, CompletionLogps, reference_logps
from preftune.rl.vllm import PublishError, VLLMAdapters
from preftune.rlconfig import GRPOConfig, build_config
from preftune.rundir import RunDir
from preftune.runs.artifacts import RunArtifacts, draw_plots
from preftune.runs.diagnose_rl import diagnose_grpo_run

COMMAND = "preftune rl train"
# Per-token means of grpo_loss's metrics: summed weighted by tokens over micro-batches and
# processes, then divided by the batch's completion tokens.
TOKEN_MEANS = ("clip_frac", "clip_frac_low", "clip_frac_high", "ratio_mean", "kl")
OOM_ADVICE = ["lower batch_size, or raise gradient_accumulation_steps to score fewer sequences "
              "at once", "lower seq_len, train a LoRA, or turn on gradient_checkpointing"]


# What a resumed run may change: where the processes it talks to listen now.
RESUME_OPTIONS = ("api_url", "vllm_url")


def train_grpo(cfg: GRPOConfig | None, resume: Path | None = None,
               on_step: Callable[[dict[str, float]], None] | None = None,
               hooks: RunHooks | None = None, where: dict[str, Any] | None = None) -> RunDir:
    """Run GRPO as ``cfg`` says (or continue the run in ``resume``, its ``RESUME_OPTIONS``
    replaced by ``where``); its run directory. ``on_step`` gets each logged row (main
    process). ``hooks`` are called as the offline engine calls them (default
    ``GRPOArtifacts``: trackers, charts, diagnosis.json). SIGTERM checkpoints after the current
    step and stops (``StoppedError``)."""
    with stop_on_sigterm() as stop, StatusMarks() as marks:
        return _train_grpo(cfg, resume, on_step, hooks or GRPOArtifacts(), stop, marks,
                           where or {})


class GRPOArtifacts(RunArtifacts):
    """A preference run's trackers and charts; diagnosis.json by the GRPO rules
    (``runs/diagnose_rl``). No live monitor: its rules read a preference loss's curve."""

    def start(self, cfg: HookedConfig, run_dir: Path) -> None:
        super().start(cfg, run_dir)
        self.monitor = None

    def finish(self, run_dir: Path) -> dict[str, Any]:
        draw_plots(run_dir)
        return diagnose_grpo_run(run_dir).to_dict()  # also written to diagnosis.json


def _train_grpo(given: GRPOConfig | None, resume: Path | None,
                on_step: Callable[[dict[str, float]], None] | None, hooks: RunHooks,
                stop: StopRequest, marks: StatusMarks, where: dict[str, Any]) -> RunDir:
    cfg, resumed, checkpoint = _config(given, resume)
    if resumed is not None and where:
        cfg = build_config({**cfg.model_dump(), **{k: where[k] for k in RESUME_OPTIONS
                                                   if k in where}})
    hooks.check(cfg)  # a missing tracker package fails before any work
    torch.manual_seed(cfg.seed)
    device_type, dtype = _placement(cfg)
    accelerator = Accelerator(mixed_precision="no", cpu=device_type == "cpu")
    main = accelerator.is_main_process
    run = resumed or new_run(on_main(accelerator, lambda: _run_path(cfg)), COMMAND)
    tokenizer = load_tokenizer(cfg.model_name)  # an unknown name fails before any write
    accelerator.wait_for_everyone()  # every process saw the directory free before it is taken
    if resume is None and main:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(config_record(cfg.model_dump(mode="json"), kind="grpo"))
    if main:
        marks.running(run)

    policy, reference = build_policy(model_spec(cfg, dtype), run.path, checkpoint,
                                     accelerator.device, cfg.kl_coef > 0 and not cfg.lora)
    scorer = CompletionLogps(policy, cfg.chunked_logps, cfg.logps_chunk_tokens)
    optimizer = adamw([p for p in policy.parameters() if p.requires_grad], cfg.learning_rate,
                      cfg.weight_decay)
    # DDP wraps the scorer, FSDP shards it; the unwrapped scorer stays for the reference pass.
    model, optimizer = accelerator.prepare(scorer, optimizer)
    scheduler = make_scheduler(optimizer, cfg, cfg.training_steps)
    step = 0
    if checkpoint is not None:
        state, position = load_state(run, checkpoint)
        load_optimizer_state(accelerator, model, optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"])
        step = position.step
    publisher = Publisher(cfg, run, accelerator)  # with vllm_url, checks that vLLM answers
    client = TrajectoryClient(cfg.api_url) if main else None
    if main:
        run.truncate_metrics(step)  # rows a killed run logged after its checkpoint
        hooks.start(cfg, run.path)

    def save_at(at: int) -> None:
        save_checkpoint_all(accelerator, run, model, policy, optimizer, scheduler,
                            Position(0, at, at), None, cfg.save_total_limit)

    with contextlib.closing(publisher), \
            training_steps(stop, hooks if main else None, lambda: step, OOM_ADVICE):
        if cfg.vllm_url:  # environments ask vLLM for the adapter from their first request on
            publisher.publish(model, policy, step)
        on_main(accelerator, lambda: _client(client).register(
            cfg.batch_size, cfg.seq_len, publisher.weights_dir, cfg.publish_every, step,
            cfg.training_steps))
        model.train()
        while step < cfg.training_steps:
            started = time.perf_counter()
            groups = on_main(accelerator, lambda: _client(client).batch(cfg.batch_timeout_s))
            batch = flatten(groups, cfg.seq_len, cfg.scale)
            sums = grpo_step(accelerator, model, scorer, reference, batch, cfg)
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
            if not (math.isfinite(sums["loss"]) and math.isfinite(grad_norm)):
                raise TrainingError(f"the GRPO loss or gradient became NaN or infinite at step "
                                    f"{step + 1}; training stopped before the update, and the "
                                    "last good checkpoint is kept",
                                    [f"lower the learning rate from {cfg.learning_rate:g}",
                                     "check the environment's scores"])
            learning_rate = float(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            row = step_row(step, sums, batch, grad_norm, learning_rate,
                           time.perf_counter() - started, accelerator.device)
            if main:
                run.log(row)
                hooks.log(row)
                if on_step is not None:
                    on_step(row)
            done = step == cfg.training_steps
            saved = step % cfg.save_steps == 0 or done
            if saved:
                save_at(step)
            if step % cfg.publish_every == 0 or done:
                try:
                    publisher.publish(model, policy, step)
                except PublishError as e:  # every process gets it (on_main)
                    if not saved:
                        save_at(step)
                    e.hints.append(f"step {step} is checkpointed: once vLLM is back, "
                                   f"continue with {COMMAND} --resume {run.path}")
                    raise
            if not done:
                stop.stop_after(accelerator, step, saved, functools.partial(save_at, step),
                                f"{COMMAND} --resume {run.path}")

    weights = gathered_policy_state(accelerator, model)  # every process takes part
    if main:
        save_final(run, policy, tokenizer, weights)
        hooks.finish(run.path)
        marks.finished()
    accelerator.wait_for_everyone()
    return run


# ------------------------------------------------------------------------------------ setup


def _config(cfg: GRPOConfig | None, resume: Path | None
            ) -> tuple[GRPOConfig, RunDir | None, dict[str, Any] | None]:
    """The config to run; resuming, also the run and its last durable checkpoint."""
    if resume is not None:
        run, saved, checkpoint = resume_run(resume, build_config, COMMAND)
        return saved, run, checkpoint
    if cfg is None:
        raise UsageError("nothing to train: give options, or a run directory to resume")
    return cfg, None, None


def _run_path(cfg: GRPOConfig) -> Path:
    """``output_dir``, or ``experiments/grpo_<time>`` (chosen once, by the main process)."""
    if cfg.output_dir:
        return Path(cfg.output_dir)
    return Path("experiments") / f"grpo_{datetime.now(UTC).strftime('%Y-%m-%d_%H%M%S')}"


def _placement(cfg: GRPOConfig) -> tuple[str, str]:
    """The device type and the weights' dtype ``cfg`` asks for."""
    cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not cuda:
        raise ConfigError("device is cuda, but torch sees no CUDA GPU here",
                          ["use device auto or cpu"])
    device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and cuda) else "cpu"
    if cfg.dtype != "auto":
        return device, cfg.dtype
    # Under a LoRA the trained weights stay fp32 (PEFT keeps adapters in fp32 over a bf16
    # base); full fine-tuning keeps fp32 weights for AdamW.
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported() and cfg.lora
    return device, "bf16" if bf16 else "fp32"


def model_spec(cfg: GRPOConfig, dtype: str) -> ModelSpec:
    """The policy to build. Dropout stays off: the ratio to the sampling policy and the KL to
    the reference compare the same function, evaluated twice."""
    attention = "sdpa" if cfg.attn_implementation == "auto" else cfg.attn_implementation
    return ModelSpec(cfg.model_name, dtype, cfg.lora, cfg.lora_rank, cfg.lora_alpha,
                     lora_dropout=0.0, attention=attention,
                     attention_fallback=cfg.attn_implementation == "auto",
                     gradient_checkpointing=cfg.gradient_checkpointing)


def _client(client: TrajectoryClient | None) -> TrajectoryClient:
    """The main process's client (only it talks to the API)."""
    if client is None:
        raise RuntimeError("only the main process talks to the trajectory API")
    return client


class Publisher:
    """The policy's weights for the inference server, every ``publish_every`` steps: written by
    the main process (``weights_dir/step-N``, then ``latest``) and, with ``vllm_url``, loaded
    into vLLM. Every process calls ``publish`` (FSDP gathers the weights from all of them)."""

    def __init__(self, cfg: GRPOConfig, run: RunDir, accelerator: Accelerator) -> None:
        self.weights_dir = Path(cfg.weights_dir) if cfg.weights_dir else run.path / "published"
        self.accelerator = accelerator
        self.adapters: VLLMAdapters | None = None
        if cfg.vllm_url:
            on_main(accelerator, lambda: self._connect(cfg))

    def _connect(self, cfg: GRPOConfig) -> None:
        """Check that vLLM answers before training starts."""
        adapters = VLLMAdapters(str(cfg.vllm_url), cfg.vllm_lora_name,
                                api_key=os.environ.get("VLLM_API_KEY"))
        try:
            adapters.check()
        except BaseException:
            adapters.close()
            raise
        self.adapters = adapters

    def publish(self, model: Any, policy: Any, step: int) -> None:
        weights = gathered_policy_state(self.accelerator, model)
        on_main(self.accelerator, lambda: self._write(policy, weights, step))

    def _write(self, policy: Any, weights: dict[str, torch.Tensor] | None, step: int) -> None:
        published = publish_weights(policy, self.weights_dir, step, state_dict=weights)
        if self.adapters is not None:
            self.adapters.load(published)

    def close(self) -> None:
        if self.adapters is not None:
            self.adapters.close()


# ------------------------------------------------------------------------------------ steps


def grpo_step(accelerator: Accelerator, model: Any, scorer: CompletionLogps, reference: Any,
              batch: Sequences, cfg: GRPOConfig) -> dict[str, float]:
    """Forward and backward over this process's share of the batch; the step's sums over all
    processes (``loss``, ``tokens``, and what ``step_row`` turns into means).

    ``gradient_accumulation_steps`` cuts the batch into micro-batches of ceil(B / steps)
    sequences; each process scores every P-th sequence in micro-batches of that size, so P
    processes run fewer micro-batches each, of the same size. A process with nothing left
    scores one sequence with weight 0: all take part in each synchronisation.
    """
    n = batch.input_ids.shape[0]
    batch_tokens = int((batch.labels != PROMPT).sum())
    size = math.ceil(n / cfg.gradient_accumulation_steps)
    micro_batches = process_share(list(range(n)), size, accelerator)
    # The KL is measured only against a reference, which the trainer keeps for kl_coef > 0.
    means = [key for key in TOKEN_MEANS if key != "kl" or cfg.kl_coef > 0]
    sums = dict.fromkeys(("loss", "tokens", "entropy", "advantage", *means), 0.0)
    for k, rows in enumerate(micro_batches):
        part = batch.select(rows or [0]).to(accelerator.device)
        sync = k == len(micro_batches) - 1
        with contextlib.nullcontext() if sync else accelerator.no_sync(model):
            logps, entropy = model(part.input_ids, part.labels)              # (b, T), (b, T)
            ref = reference_logps(scorer, reference, part.input_ids, part.labels) \
                if cfg.kl_coef > 0 else None
            out = grpo_loss(logps, part.old_logps, part.advantages, part.labels != PROMPT,
                            clip_eps=cfg.clip_eps, clip_eps_high=cfg.clip_eps_high,
                            ref_logps=ref, kl_coef=cfg.kl_coef, loss_type=cfg.loss_type,
                            max_tokens=cfg.seq_len, batch_sequences=n,
                            batch_tokens=batch_tokens)
            # DDP averages the processes' gradients: P times each share sums them.
            accelerator.backward(out.loss * (accelerator.num_processes if rows else 0.0))
        if rows:
            tokens = out.metrics["tokens"]
            sums["loss"] += out.metrics["loss"]
            sums["tokens"] += tokens
            sums["entropy"] += float(entropy.sum()) if entropy is not None else 0.0
            sums["advantage"] += out.metrics["advantage_mean"] * len(rows)
            for key in means:
                sums[key] += out.metrics[key] * tokens
    return summed_over_processes(accelerator, sums)


def step_row(step: int, sums: dict[str, float], batch: Sequences, grad_norm: float,
             learning_rate: float, seconds: float, device: torch.device) -> dict[str, float]:
    """metrics.jsonl's row of a step: the loss, per-token means over the batch's completion
    tokens, the scores and advantages of its sequences, speed and memory."""
    tokens = max(sums["tokens"], 1.0)
    scores = torch.tensor(batch.scores, dtype=torch.float64)
    return {"step": step, "loss": sums["loss"],
            **{key: sums[key] / tokens for key in TOKEN_MEANS if key in sums},
            "entropy": sums["entropy"] / tokens,
            "mean_reward": float(scores.mean()), "reward_std": float(scores.std(correction=0)),
            "advantage_mean": sums["advantage"] / len(batch.scores),
            "zero_advantage_frac": float((batch.advantages == 0).float().mean()),
            "grad_norm": grad_norm, "learning_rate": learning_rate,
            "sequences": float(len(batch.scores)), "tokens": sums["tokens"],
            "tokens_per_second": sums["tokens"] / max(seconds, 1e-9),
            "peak_memory_mb": peak_memory_mb(device)}
