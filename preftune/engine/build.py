"""Building the model a run trains: the policy (a checkpoint's weights when resuming), and a
frozen reference copy where a run asks for one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from preftune.models.load import add_lora, disable_dropout, load_model


@dataclass(frozen=True)
class ModelSpec:
    """What to load and how: the part of a run's config that builds its policy."""

    model: str  # tiny, an alias, a hub id or a local directory
    dtype: str  # the weights' dtype: auto, fp32, bf16
    lora: bool
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | str = "all-linear"
    load_in_4bit: bool = False
    attention: str = "sdpa"  # the attention implementation to load
    attention_fallback: bool = True  # the next kernel the model has where it lacks that one
    disable_dropout: bool = True
    gradient_checkpointing: bool = False
    torch_compile: bool = False


def build_policy(spec: ModelSpec, run_path: Path, checkpoint: dict[str, Any] | None,
                 device: torch.device, with_reference: bool) -> tuple[Any, Any]:
    """The policy on ``device`` and, with ``with_reference`` and no LoRA, a frozen copy of the
    starting model (with LoRA the reference is the policy with its adapters disabled).

    A LoRA run resumes by loading the checkpoint's adapter onto the base model; a full one
    loads the checkpoint's weights.
    """
    ref_model = None
    if spec.lora:
        policy = load_model(spec.model, spec.dtype, spec.load_in_4bit, spec.attention,
                            spec.attention_fallback)
        if checkpoint is not None:
            from peft import PeftModel

            policy = PeftModel.from_pretrained(policy, run_path / checkpoint["model_path"],
                                               is_trainable=True)
        else:
            policy = add_lora(policy, spec.lora_rank, spec.lora_alpha, spec.lora_dropout,
                              spec.lora_target_modules)
    else:
        start = str(run_path / checkpoint["model_path"]) if checkpoint else spec.model
        policy = load_model(start, spec.dtype, spec.load_in_4bit, spec.attention,
                            spec.attention_fallback)
        if with_reference:
            ref_model = load_model(spec.model, spec.dtype, spec.load_in_4bit,
                                   policy.config._attn_implementation).to(device).eval()
            ref_model.requires_grad_(False)
    if spec.disable_dropout:
        disable_dropout(policy)
    if spec.gradient_checkpointing:
        # transformers 5 renamed it; older versions only have the gradient_ name.
        enable = getattr(policy, "activation_checkpointing_enable", None)
        (enable or policy.gradient_checkpointing_enable)()
        if spec.lora:
            policy.enable_input_require_grads()
    if spec.torch_compile:
        # The transformer body only: the log-prob head runs a Python loop over chunks.
        policy.get_decoder().compile()
    return policy.to(device), ref_model
