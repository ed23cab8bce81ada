"""Load tokenizers and models by alias, local directory, hub id or ``tiny``; add LoRA adapters.

Every name goes through ``resolve_model``: ``tiny`` is built locally (see ``tiny.py``), an
alias maps to a hub id, an existing directory is used as it is, and ``org/name`` is a hub
id (downloaded where the network allows). Anything else fails with exit code 4.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from preftune.errors import ConfigError, MissingError
from preftune.models.gguf import converted_dir, is_gguf

MODEL_ALIASES: dict[str, str] = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "pythia-160m": "EleutherAI/pythia-160m",
    "pythia-1b": "EleutherAI/pythia-1b",
    "pythia-2.8b": "EleutherAI/pythia-2.8b",
    "pythia-6.9b": "EleutherAI/pythia-6.9b",
    "zephyr": "HuggingFaceH4/zephyr-7b-beta",
    "mistral-7b": "mistralai/Mistral-7B-Instruct-v0.3",
    "llama3.2-1b": "meta-llama/Llama-3.2-1B-Instruct",
    "llama3.2-3b": "meta-llama/Llama-3.2-3B-Instruct",
    "llama3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B-Instruct",
    "qwen2.5-3b": "Qwen/Qwen2.5-3B-Instruct",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B-Instruct",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "qwen3-4b": "Qwen/Qwen3-4B-Instruct-2507",
    "qwen3-8b": "Qwen/Qwen3-8B",
    "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B-Instruct-2507",
}
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


_MARKERS = ("config.json", "adapter_config.json", "tokenizer_config.json", "tokenizer.json")


def resolve_model(name: str, what: str = "model") -> str:
    """The local path or hub id that ``name`` stands for (``what`` names it in errors).

    A GGUF file (or a directory holding one and no config.json) stands for its converted
    ``save_pretrained`` directory in the cache: converted on the first call, a ``stat`` after.
    """
    if name == "tiny":
        from preftune.models.tiny import tiny_path

        return str(tiny_path())
    if name in MODEL_ALIASES:
        return MODEL_ALIASES[name]
    path = Path(name).expanduser()
    if path.exists():
        if is_gguf(path):
            return str(converted_dir(path))
        if not any((path / marker).exists() for marker in _MARKERS):
            raise MissingError(f"{name} holds no {what}: none of {', '.join(_MARKERS)} "
                               "and no .gguf file",
                               ["pass a directory written by save_pretrained, or a .gguf file"])
        return str(path)
    if path.suffix.lower() == ".gguf":  # never an alias or a hub id either
        raise MissingError(f"no such file: {name}", [f"check the path of the {what} file"])
    if name.startswith(("/", ".", "~")):  # a path, never an alias or a hub id
        raise MissingError(f"no such directory: {name}",
                           [f"check the path of the {what} (or run) directory"])
    if _HUB_ID.fullmatch(name):
        return name
    raise MissingError(f"unknown {what} {name!r}", [
        "aliases: tiny, " + ", ".join(MODEL_ALIASES),
        "or a local directory written by save_pretrained, e.g. --model ./my-model",
        "or a hub id, e.g. --model Qwen/Qwen2.5-0.5B-Instruct",
    ])


def load_tokenizer(name: str) -> Any:
    """A tokenizer for ``name`` (any form ``resolve_model`` takes), with a pad token."""
    from transformers import AutoTokenizer

    source = resolve_model(name, "tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise _not_loadable("tokenizer", name, source, e) from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def torch_dtype(dtype: str) -> Any:
    """The torch dtype for a config value; ``auto`` is bf16 on a GPU that has it, else fp32."""
    import torch

    if dtype == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return getattr(torch, DTYPES[dtype])


ATTENTION_FALLBACKS = {"flex_attention": "sdpa", "sdpa": "eager"}


def load_model(name: str, dtype: str = "auto", load_in_4bit: bool = False,
               attn_implementation: str | None = None, attention_fallback: bool = False
               ) -> Any:
    """A causal LM for ``name``; 4-bit loading needs CUDA and bitsandbytes.

    An architecture without the asked attention kernel (Gemma 2 has no SDPA, GPT-2 no
    FlexAttention) is a ConfigError, or with ``attention_fallback`` loads with the next kernel
    it has (FlexAttention → SDPA → eager), with a warning.
    """
    import torch
    from transformers import AutoModelForCausalLM

    source = resolve_model(name)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if load_in_4bit:
        kwargs["quantization_config"] = _four_bit_config(torch.cuda.is_available(), kwargs)
    attention = attn_implementation
    while True:
        if attention is not None:
            kwargs["attn_implementation"] = attention
        try:
            return AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as e:
            if attention is None or not _lacks_attention(e, attention):
                raise _not_loadable("model", name, source, e) from e
            fallback = ATTENTION_FALLBACKS.get(attention)
            if not attention_fallback or fallback is None:
                raise ConfigError(
                    f"{name} cannot run attention implementation {attention!r}: transformers "
                    "has no such kernel for its architecture",
                    ["set attn_implementation=auto (the kernels it has are tried in turn), "
                     "or eager"]) from e
            warnings.warn(f"{name} has no {attention} attention; loading it with {fallback}",
                          stacklevel=2)
            attention = fallback


def _lacks_attention(error: Exception, attention: str) -> bool:
    """Whether transformers refused ``attention`` for the model's architecture."""
    text = str(error).lower()
    names = {"sdpa": "scaled_dot_product_attention", "flex_attention": "flex"}
    return "does not support" in text and (attention in text or names.get(attention, "@")
                                           in text)


def _four_bit_config(cuda: bool, kwargs: dict[str, Any]) -> Any:
    if not cuda:
        raise MissingError("4-bit loading needs a CUDA GPU (bitsandbytes); this machine has none",
                           ["drop load_in_4bit, or train on a machine with a CUDA GPU"])
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise MissingError("4-bit loading needs the bitsandbytes package",
                           ["pip install bitsandbytes"]) from e
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=kwargs["dtype"],
                              bnb_4bit_use_double_quant=True)


def add_lora(model: Any, rank: int, alpha: int, dropout: float,
             target_modules: list[str] | str) -> Any:
    """Wrap ``model`` with fresh LoRA adapters; only they train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=target_modules, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as e:  # e.g. dropout on a mixture of experts' fused weights
        raise ConfigError(f"cannot add LoRA adapters to this model: {e}",
                          ["check lora_target_modules, lora_rank and lora_dropout"]) from e


def disable_dropout(model: Any) -> Any:
    """Turn every dropout of ``model`` off: its Dropout modules (LoRA's included) and the
    attention-probability dropout models keep as a float. Preference training compares the
    policy with a reference scored without dropout; TRL does the same (``disable_dropout``)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name in ("attention_dropout", "attn_dropout", "dropout"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)
    return model


def _not_loadable(what: str, name: str, source: str, error: Exception) -> MissingError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    where = "" if source == name else f" ({source})"
    if Path(source).is_dir():
        hints = [f"check that {source} holds a complete {what} written by save_pretrained, "
                 "and that the installed transformers knows its architecture"]
    else:
        hints = ["check the name and that this machine can reach the hub",
                 "or pass a local directory written by save_pretrained"]
    return MissingError(f"cannot load the {what} of {name!r}{where}: {first}", hints)
