"""``preftune rl train``: the GRPO trainer that pulls scored groups from the trajectory API.

register with the API → for each step: pull a batch (whole groups) → advantages (the
environment's, or group-normalised scores) → per-token log-probs of the completions → GRPO
loss (``rl/grpo.py``), with the inference log-probs as the old policy when sent → optimizer
step → log, checkpoint, publish weights for the inference server (and, with ``vllm_url``,
load the adapter into vLLM: ``rl/vllm.py``).

The run directory is an ordinary one (``runs/rundir.py``): ``config.json``,
``metrics.jsonl`` (mean reward, reward std, KL, clip fraction, tokens/s, ...),
``checkpoints.jsonl`` and ``checkpoints/``, ``final/``; ``--resume`` continues from the last
checkpoint and tells the API the step it starts at.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from preftune.engine.checkpoint import Position, load_state, restore_rng, save_checkpoint
from preftune.engine.logprobs import token_log_probs
from preftune.engine.optim import adamw
from preftune.errors import ConfigError, TrainingError, UsageError
from preftune.fsutil import atomic_dir
from preftune.models.load import add_lora, load_model, load_tokenizer
from preftune.rl.grpo import group_advantages, grpo_loss
from preftune.rl.inference import publish_weights
from preftune.rl.vllm import PublishError, VLLMAdapters
from preftune.rundir import RunDir

PROMPT = -100  # the mask value of prompt tokens, as Atropos environments send it


class GRPOConfig(BaseModel):
    """Every option of a GRPO run (flag names as the Atropos example trainer spells them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field("tiny", description="The policy: tiny, an alias, a hub id or a "
                            "local directory.")
    training_steps: int = Field(20, ge=1, description="Optimizer steps to take.")
    batch_size: int = Field(8, ge=1, description="Sequences per step (the API's batch).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per step.")
    seq_len: int = Field(512, ge=8, description="Longest sequence; longer ones are cut.")
    learning_rate: float = Field(1e-5, gt=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: the GPU when "
                                                     "there is one.")
    dtype: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 weights "
                                                   "under a LoRA on a GPU with bf16, else fp32.")
    lora: bool = True
    lora_rank: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    kl_coef: float = Field(0.0, ge=0, description="Weight of the KL penalty to the starting "
                           "model (0: none, and no reference pass).")
    clip_eps: float = Field(0.2, gt=0, lt=1)
    clip_eps_high: float | None = Field(None, gt=0, description="DAPO's upper clip (default: "
                                        "clip_eps).")
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = "grpo"
    scale_rewards: bool | None = Field(None, description="Divide advantages by the group's "
                                       "std (default: true, false for dr_grpo).")
    api_url: str = Field("http://127.0.0.1:8000", description="The trajectory API.")
    weights_dir: str | None = Field(None, description="Where weights are published for the "
                                    "inference server (default: <run>/published).")
    publish_every: int = Field(1, ge=1, description="Publish weights every N steps.")
    vllm_url: str | None = Field(None, description="A running vLLM server to load each "
                                 "published LoRA adapter into (POST /v1/load_lora_adapter).")
    vllm_lora_name: str = Field("policy", min_length=1, description="The name vLLM serves "
                                "the adapter under: the environments' model_name.")
    save_steps: int = Field(10, ge=1, description="Checkpoint every N steps (and at the end).")
    output_dir: str | None = None
    seed: int = 42
    batch_timeout_s: float = Field(600.0, gt=0, description="Give up when no batch comes for "
                                   "this long.")

    @model_validator(mode="after")
    def _vllm_takes_adapters(self) -> GRPOConfig:
        if self.vllm_url and not self.lora:
            raise ValueError("vLLM loads LoRA adapters at run time, not full weights: train "
                             "with lora, or serve with preftune rl serve-model")
        return self

    @property
    def scale(self) -> bool:
        return self.loss_type != "dr_grpo" if self.scale_rewards is None else self.scale_rewards


def build_config(values: dict[str, Any]) -> GRPOConfig:
    try:
        return GRPOConfig(**values)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "options"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"invalid GRPO {where}: {message}",
                          ["see: preftune rl train --help"]) from e


@dataclass
class Sequences:
    """A batch flattened to sequences: input ids, per-token targets and what goes with them."""

    input_ids: torch.Tensor  # (B, T) right-padded, the last token dropped
    labels: torch.Tensor  # (B, T) next token, PROMPT where not a completion token
    advantages: torch.Tensor  # (B,)
    old_logps: torch.Tensor | None  # (B, T) inference log-probs aligned with labels
    scores: list[float]

    def to(self, device: torch.device) -> Sequences:
        old = self.old_logps.to(device) if self.old_logps is not None else None
        return Sequences(self.input_ids.to(device), self.labels.to(device),
                         self.advantages.to(device), old, self.scores)


def flatten(batch: list[dict[str, Any]], seq_len: int, scale: bool) -> Sequences:
    """Whole groups → sequences; advantages per group where the environment sent none."""
    ids: list[list[int]] = []
    labels: list[list[int]] = []
    advantages: list[float] = []
    inference: list[list[float]] | None = []
    scores: list[float] = []
    for group in batch:
        sent = group.get("advantages")
        computed = group_advantages(group["scores"], scale=scale).tolist()
        for i, tokens in enumerate(group["tokens"]):
            tokens, mask = tokens[:seq_len + 1], group["masks"][i][:seq_len + 1]
            ids.append(tokens[:-1])
            labels.append([t if m != PROMPT else PROMPT for t, m in zip(tokens[1:], mask[1:],
                                                                         strict=True)])
            # An advantage per token may be sent; GRPO's is one per sequence: their mean.
            advantages.append(float(sum(sent[i]) / len(sent[i])) if sent and sent[i]
                              else computed[i])
            scores.append(float(group["scores"][i]))
            logps = (group.get("inference_logprobs") or [None] * len(group["tokens"]))[i]
            if logps is None or inference is None:
                inference = None
            else:
                inference.append(list(logps[1:seq_len + 1]))
    width = max(len(x) for x in ids)

    def pad(rows: list[list[Any]], value: Any, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=dtype)

    return Sequences(pad(ids, 0, torch.long), pad(labels, PROMPT, torch.long),
                     torch.tensor(advantages, dtype=torch.float32),
                     pad(inference, 0.0, torch.float32) if inference else None, scores)


class TrajectoryClient:
    """The trainer's side of the trajectory API: register, then pull batches."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def register(self, cfg: GRPOConfig, run: RunDir, starting_step: int) -> None:
        body = {"wandb_group": "", "wandb_project": "", "batch_size": cfg.batch_size,
                "max_token_len": cfg.seq_len, "checkpoint_dir": str(run.path / "published"),
                "save_checkpoint_interval": cfg.publish_every, "starting_step": starting_step,
                "num_steps": cfg.training_steps}
        self._call("POST", "/register", json=body)

    def batch(self, timeout_s: float, poll_s: float = 0.2) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._call("GET", "/batch").get("batch")
            if found:
                return list(found)
            if time.monotonic() > deadline:
                raise TrainingError(f"no batch from the trajectory API at {self.url} for "
                                    f"{timeout_s:.0f} s", [
                                        "check that an environment is running and sending "
                                        "groups (preftune rl env serve)"])
            time.sleep(poll_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, **kwargs)
            response.raise_for_status()
        except httpx.TransportError as e:
            raise UsageError(f"cannot reach the trajectory API at {self.url}: {e}",
                             ["start it with: preftune rl api"]) from e
        except httpx.HTTPStatusError as e:
            raise TrainingError(f"the trajectory API refused {method} {path}: "
                                f"{e.response.text[:300]}") from e
        body = response.json()
        return body if isinstance(body, dict) else {}


def train_grpo(cfg: GRPOConfig | None, resume: Path | None = None,
               on_step: Callable[[dict[str, float]], None] | None = None) -> RunDir:
    """Run GRPO as ``cfg`` says (or continue the run in ``resume``); its run directory."""
    run, cfg, checkpoint = _open(cfg, resume)
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model_name)
    device, dtype = _placement(cfg)
    policy = load_model(cfg.model_name, dtype)
    if checkpoint is not None and cfg.lora:
        from peft import PeftModel

        policy = PeftModel.from_pretrained(policy, run.path / checkpoint["model_path"],
                                           is_trainable=True)
    elif checkpoint is not None:
        policy = load_model(str(run.path / checkpoint["model_path"]), dtype)
    elif cfg.lora:
        policy = add_lora(policy, cfg.lora_rank, cfg.lora_alpha, 0.0, "all-linear")
    policy = policy.to(device)
    reference = None
    if cfg.kl_coef > 0 and not cfg.lora:
        reference = load_model(cfg.model_name, dtype).to(device).eval().requires_grad_(False)
    optimizer = adamw([p for p in policy.parameters() if p.requires_grad], cfg.learning_rate,
                      weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    step = 0
    if checkpoint is not None:
        state, position = load_state(run, checkpoint)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        restore_rng(state["rng"])
        step = position.step
        run.truncate_metrics(step)
    weights_dir = Path(cfg.weights_dir) if cfg.weights_dir else run.path / "published"
    adapters = _vllm(cfg)
    try:
        if adapters is not None:
            # Environments ask vLLM for the adapter by name from their first request on.
            adapters.load(publish_weights(policy, weights_dir, step))
        client = TrajectoryClient(cfg.api_url)
        client.register(cfg, run, step)
        policy.train()
        while step < cfg.training_steps:
            started = time.perf_counter()
            batch = flatten(client.batch(cfg.batch_timeout_s), cfg.seq_len,
                            cfg.scale).to(device)
            row = _step(cfg, policy, reference, optimizer, batch)
            step += 1
            row.update(step=step,
                       tokens_per_second=row["tokens"] / (time.perf_counter() - started),
                       learning_rate=float(schedule.get_last_lr()[0]))
            run.log(row)
            if on_step is not None:
                on_step(row)
            last = step == cfg.training_steps
            saved = step % cfg.save_steps == 0 or last
            if saved:
                _checkpoint(run, step, policy, optimizer, schedule)
            if step % cfg.publish_every == 0 or last:
                published = publish_weights(policy, weights_dir, step)
                if adapters is not None:
                    try:
                        adapters.load(published)
                    except PublishError as e:
                        if not saved:
                            _checkpoint(run, step, policy, optimizer, schedule)
                        e.hints.append(f"step {step} is checkpointed: once vLLM is back, "
                                       f"continue with preftune rl train --resume {run.path}")
                        raise
    finally:
        if adapters is not None:
            adapters.close()
    with atomic_dir(run.final_path) as tmp:
        policy.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return run


def _placement(cfg: GRPOConfig) -> tuple[torch.device, str]:
    """The device and the weights' dtype ``cfg`` asks for."""
    cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not cuda:
        raise ConfigError("device is cuda, but torch sees no CUDA GPU here",
                          ["use device auto or cpu"])
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and cuda)
                          else "cpu")
    if cfg.dtype != "auto":
        return device, cfg.dtype
    # Under a LoRA the trained weights stay fp32 (PEFT keeps adapters in fp32 over a bf16
    # base); full fine-tuning keeps fp32 weights for AdamW.
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported() and cfg.lora
    return device, "bf16" if bf16 else "fp32"


def _checkpoint(run: RunDir, step: int, policy: Any, optimizer: torch.optim.Optimizer,
                schedule: Any) -> None:
    save_checkpoint(run, f"step-{step}", policy, optimizer.state_dict(), schedule,
                    Position(0, step, step), float(step), None)


def _vllm(cfg: GRPOConfig) -> VLLMAdapters | None:
    """The vLLM publisher ``cfg`` asks for, after checking the server answers."""
    if not cfg.vllm_url:
        return None
    adapters = VLLMAdapters(cfg.vllm_url, cfg.vllm_lora_name,
                            api_key=os.environ.get("VLLM_API_KEY"))
    try:
        adapters.check()
    except BaseException:
        adapters.close()
        raise
    return adapters


def _step(cfg: GRPOConfig, policy: Any, reference: Any, optimizer: torch.optim.Optimizer,
          batch: Sequences) -> dict[str, float]:
    """One optimizer step over the batch, in ``gradient_accumulation_steps`` micro-batches."""
    n = batch.input_ids.shape[0]
    chunks = [list(range(i, n, cfg.gradient_accumulation_steps))
              for i in range(min(cfg.gradient_accumulation_steps, n))]
    totals: dict[str, float] = {}
    for rows in chunks:
        ids, labels = batch.input_ids[rows], batch.labels[rows]
        mask = labels != PROMPT                                           # (b, T)
        targets = torch.where(mask, labels, torch.zeros_like(labels))
        attention = torch.ones_like(ids)
        logps = token_log_probs(policy(input_ids=ids, attention_mask=attention).logits,
                                targets)                                  # (b, T)
        ref = None
        if cfg.kl_coef > 0:
            with torch.no_grad():
                if reference is not None:
                    ref_logits = reference(input_ids=ids, attention_mask=attention).logits
                else:
                    with policy.disable_adapter():
                        ref_logits = policy(input_ids=ids, attention_mask=attention).logits
                ref = token_log_probs(ref_logits, targets)
        old = batch.old_logps[rows] if batch.old_logps is not None else None
        out = grpo_loss(logps, old, batch.advantages[rows], mask, clip_eps=cfg.clip_eps,
                        clip_eps_high=cfg.clip_eps_high, ref_logps=ref, kl_coef=cfg.kl_coef,
                        loss_type=cfg.loss_type, max_tokens=cfg.seq_len)
        (out.loss * len(rows) / n).backward()
        for key, value in out.metrics.items():
            weight = value if key == "tokens" else value * len(rows) / n
            totals[key] = totals.get(key, 0.0) + weight
    grad_norm = float(torch.nn.utils.clip_grad_norm_(
        [p for p in policy.parameters() if p.requires_grad], cfg.max_grad_norm))
    if not math.isfinite(grad_norm):
        raise TrainingError("the GRPO gradient became NaN or infinite; the step was skipped",
                            ["lower the learning rate", "check the environment's scores"])
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scores = torch.tensor(batch.scores)
    return {**totals, "grad_norm": grad_norm, "mean_reward": float(scores.mean()),
            "reward_std": float(scores.std(unbiased=False)), "sequences": float(n)}


def _open(cfg: GRPOConfig | None, resume: Path | None
          ) -> tuple[RunDir, GRPOConfig, dict[str, Any] | None]:
    if resume is not None:
        run = RunDir(resume)
        if not run.config_path.exists():
            raise UsageError(f"{resume} is not a GRPO run directory: it has no config.json")
        run.remove_partial_writes()
        saved = json.loads(run.config_path.read_text(encoding="utf-8"))["config"]
        rows = run.checkpoints()
        return run, build_config(saved), (rows[-1] if rows else None)
    if cfg is None:
        raise UsageError("nothing to train: give options, or a run directory to resume")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H%M%S")
    path = Path(cfg.output_dir) if cfg.output_dir else Path("experiments") / f"grpo_{stamp}"
    run = RunDir(path)
    if run.config_path.exists():
        raise ConfigError(f"run directory {path} already holds a run",
                          [f"continue it with: preftune rl train --resume {path}"])
    path.mkdir(parents=True, exist_ok=True)
    run.write_config({"config": cfg.model_dump(mode="json"), "kind": "grpo",
                      "created": datetime.now(UTC).isoformat(timespec="seconds")})
    return run, cfg, None
