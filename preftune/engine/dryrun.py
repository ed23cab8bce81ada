"""``--dry-run``: everything short of training. Validate and tokenize the data, read the model's
configuration without loading its weights, count parameters and estimate memory.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from preftune.config import TrainConfig
from preftune.engine.chunked import default_chunk_tokens
from preftune.engine.data import prepare_data
from preftune.engine.logprobs import TokenRows
from preftune.engine.loop import step_plan
from preftune.errors import MissingError
from preftune.losses.table import ALGORITHMS, data_kind, needs_reference
from preftune.models.load import load_tokenizer, resolve_model, torch_dtype


def dry_run(cfg: TrainConfig, train_data: Any = None, eval_data: Any = None) -> dict[str, Any]:
    """The plan of a run as a dict: data, model, steps and a memory estimate."""
    tokenizer = load_tokenizer(cfg.model)
    data = prepare_data(cfg, tokenizer, train_data, eval_data)
    model = _model_shape(cfg)
    plan = step_plan(cfg, TokenRows.from_dataset(data.train.rows))
    lengths = [len(p) + max(len(c), len(r)) for p, c, r in zip(
        *(data.train.rows.data.table.column(n).to_pylist()
          for n in ("prompt_ids", "chosen_ids", "rejected_ids")), strict=True)]
    longest = max(lengths, default=0)
    unit = "examples" if data_kind(cfg.algorithms) == "unpaired" else "pairs"
    return {
        "objective": {"algo": cfg.algo_label, "data": data_kind(cfg.algorithms),
                      "needs_reference": needs_reference(cfg.algorithms),
                      "papers": {n: ALGORITHMS[n].paper for n in cfg.algorithms}},
        "data": {"source": data.source, "train": data.train.stats.__dict__,
                 "eval": data.eval.stats.__dict__ if data.eval is not None else None,
                 "longest_sequence_tokens": longest},
        "model": model,
        "steps": {"per_epoch": plan.steps_per_epoch, "total": plan.total_steps,
                  f"{unit}_per_step": cfg.batch_size * cfg.grad_accum},
        "memory_estimate_mb": _memory_mb(cfg, model, longest),
    }


def _model_shape(cfg: TrainConfig) -> dict[str, Any]:
    """Parameter counts from the config alone: the model is built on the meta device."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source = resolve_model(cfg.model)
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise MissingError(f"cannot read the configuration of {cfg.model!r}: {e}",
                           ["check the model name, path or network access"]) from e
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    trainable = total
    if cfg.lora:
        from preftune.models.load import add_lora

        model = add_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout,
                         cfg.lora_target_modules)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "source": source,
        "architecture": config.architectures[0] if config.architectures else config.model_type,
        "parameters": total, "trainable_parameters": trainable,
        "hidden_size": getattr(config, "hidden_size", None),
        "layers": getattr(config, "num_hidden_layers", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "dtype": str(torch_dtype(cfg.dtype)).removeprefix("torch."),
    }


def _memory_mb(cfg: TrainConfig, model: dict[str, Any], longest: int) -> dict[str, float]:
    """A rough peak: weights + gradients and AdamW moments of trainable weights + activations.

    Activations: about 16 values per hidden unit, token and layer (2 with gradient
    checkpointing) over the batch's tokens (2·batch_size sequences, or about 1.5 with the prompt
    shared), plus float32 logits: for every token, or for one chunk with chunked_logps.
    """
    weight_bytes = 0.5 if cfg.load_in_4bit else torch_dtype(cfg.dtype).itemsize
    weights = model["parameters"] * weight_bytes
    optimizer = model["trainable_parameters"] * (4 + 8)  # fp32 gradient + two Adam moments
    tokens = cfg.batch_size * longest * (1.5 if cfg.shared_prompt else 2)
    per_layer = 2 if cfg.gradient_checkpointing else 16
    hidden, layers = model["hidden_size"] or 0, model["layers"] or 0
    activations = tokens * hidden * layers * per_layer * 2
    # chunked: a chunk's logits, their softmax and its gradient exist at once
    vocab = model["vocab_size"] or 0
    chunk = cfg.logps_chunk_tokens or default_chunk_tokens(max(vocab, 1))
    logit_rows = min(chunk, tokens) * 3 if cfg.chunked_logps else tokens
    if cfg.use_weighting:  # WPO's log sum p^2 holds one more block of the same size
        logit_rows += min(chunk, tokens) if cfg.chunked_logps else tokens
    logits = logit_rows * vocab * 4
    # A frozen copy lives through training only when the reference is not precomputed.
    reference = 0 if (cfg.lora or not needs_reference(cfg.algorithms)
                      or cfg.precompute_ref_logprobs) else weights
    mb = {"weights": weights, "reference_copy": reference, "gradients_and_optimizer": optimizer,
          "activations": activations + logits}
    out = {k: math.ceil(v / 2**20) for k, v in mb.items()}
    out["total"] = sum(out.values())
    return out
