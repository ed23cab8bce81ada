"""The options of a GRPO run (``preftune rl train``), apart from the trainer: the service
checks a reinforcement job's options against them without importing the training stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from preftune.config import (
    Schema,
    TrackerNames,
    as_overrides,
    canonical_keys,
    config_error,
    parse_overrides,
    read_yaml,
)


class GRPOConfig(BaseModel):
    """Every option of a GRPO run (flag names as the Atropos example trainer spells them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field("tiny", description="The policy: tiny, an alias, a hub id or a "
                            "local directory.")
    training_steps: int = Field(20, ge=1, description="Optimizer steps to take.")
    batch_size: int = Field(8, ge=1, description="Sequences per step (the API's batch), over "
                            "all processes together.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per step, "
                                             "over all processes together.")
    seq_len: int = Field(512, ge=8, description="Longest sequence; longer ones are cut.")
    learning_rate: float = Field(1e-5, gt=0, lt=1)
    warmup_steps: int = Field(0, ge=0, description="Steps of linear warm-up.")
    lr_scheduler: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="Learning-rate decay after warm-up.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: the GPU when "
                                                     "there is one.")
    dtype: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 weights "
                                                   "under a LoRA on a GPU with bf16, else fp32.")
    attn_implementation: Literal["auto", "sdpa", "eager", "flex_attention"] = Field(
        "auto", description="Attention kernel: auto is SDPA, or the next one a model has.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    chunked_logps: bool = Field(True, description="Log-probs from hidden states at completion "
                                "positions, a chunk at a time: no full-vocabulary logits.")
    logps_chunk_tokens: int | None = Field(None, ge=1, description="Tokens per chunk of "
                                           "chunked_logps (default: by vocabulary).")
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
    save_total_limit: int | None = Field(None, ge=1, description="Keep at most N "
                                         "checkpoints.")
    output_dir: str | None = None
    seed: int = 42
    batch_timeout_s: float = Field(600.0, gt=0, description="Give up when no batch comes for "
                                   "this long.")
    report_to: TrackerNames = Field(default_factory=list, description="Trackers that get "
                                    "each step's metrics too (wandb, tensorboard, mlflow).")
    wandb_project: str | None = Field(None, description="Weights & Biases project (default: "
                                      "preftune).")
    wandb_name: str | None = Field(None, description="default: the run directory's name")

    @model_validator(mode="after")
    def _vllm_takes_adapters(self) -> GRPOConfig:
        if self.vllm_url and not self.lora:
            raise ValueError("vLLM loads LoRA adapters at run time, not full weights: train "
                             "with lora, or serve with preftune rl serve-model")
        return self

    @property
    def scale(self) -> bool:
        return self.loss_type != "dr_grpo" if self.scale_rewards is None else self.scale_rewards


# Names TRL's GRPOConfig and the Atropos example trainer give these options.
GRPO_ALIASES: dict[str, str] = {
    "model": "model_name",
    "model_name_or_path": "model_name",
    "max_steps": "training_steps",
    "num_steps": "training_steps",
    "lr": "learning_rate",
    "warmup": "warmup_steps",
    "max_length": "seq_len",
    "max_seq_length": "seq_len",
    "beta": "kl_coef",
    "kl_beta": "kl_coef",
    "epsilon": "clip_eps",
    "epsilon_high": "clip_eps_high",
    "lora_r": "lora_rank",
    "log_path": "output_dir",
}
GRPO_SCHEMA = Schema(GRPOConfig, GRPO_ALIASES, "preftune rl train --help")


def build_config(values: dict[str, Any]) -> GRPOConfig:
    """Validate ``values`` (field names or their aliases) as the offline config is validated;
    on failure a ``ConfigError`` quoting each bad value."""
    canonical = canonical_keys(values, GRPO_SCHEMA)
    try:
        return GRPOConfig(**canonical)
    except ValidationError as e:
        raise config_error(e, canonical, GRPO_SCHEMA) from None


def grpo_config(file: Path | None, flags: dict[str, Any],
                overrides: list[str] | None) -> GRPOConfig:
    """A GRPO config from a YAML file, then flags, then key=value, all read by the offline
    config's parser (so aliases, lists and errors behave alike)."""
    values = read_yaml(file, GRPO_SCHEMA) if file is not None else {}
    values.update(parse_overrides(as_overrides(flags), GRPO_SCHEMA))
    values.update(parse_overrides(overrides or [], GRPO_SCHEMA))
    return build_config(values)
