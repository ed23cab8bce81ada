"""The embedded default model: a small Llama built locally, deterministically, with no network.

The tokenizer is a byte-level BPE trained on the sample generator's text, with a chat
template; the model is a randomly initialised 2-layer Llama sized for a CPU. Both are built
once into the cache directory and loaded from there with ``from_pretrained`` like any model,
so ``--model tiny`` exercises the same loading, LoRA and checkpoint code as a real model.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from preftune import settings

VERSION = 1  # bump when the recipe changes: a new directory is built, old ones are left alone
VOCAB_SIZE = 2048
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
# Each message is "<|role|>\n content </s>"; the prompt of a conversation is therefore an
# exact prefix of the conversation, and an assistant reply ends with EOS.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{{ message['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_CORPUS_SAMPLES = 3000


def tiny_path() -> Path:
    """The directory of the tiny model, built on first use."""
    path = settings.cache_dir() / f"tiny-v{VERSION}"
    if not (path / "config.json").exists():
        build_tiny(path)
    return path


def build_tiny(path: Path) -> None:
    """Build tokenizer and model into ``path`` (atomically: a temporary directory, renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tokenizer = _build_tokenizer()
        tokenizer.save_pretrained(tmp)
        _build_model(tokenizer).save_pretrained(tmp)
        try:
            tmp.rename(path)
        except OSError:
            if not (path / "config.json").exists():  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from preftune.data.sample import iter_samples

    texts: list[str] = []
    for sample in iter_samples(_CORPUS_SAMPLES, seed=0):
        texts.append(sample.prompt)
        texts.extend(sample.responses)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(texts, trainer)
    # Like Llama's tokenizers: text gets a BOS; a chat template writes its own.
    bos = SPECIAL_TOKENS.index("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        additional_special_tokens=SPECIAL_TOKENS[3:], model_max_length=1024,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _build_model(tokenizer: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=176,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    return model
