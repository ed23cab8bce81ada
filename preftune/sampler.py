"""Generate text from a trained run or any model.

    sampler = Sampler("experiments/my-run", temperature=0.7, max_tokens=256)
    sampler.complete("Explain recursion to a child.")       # one completion
    sampler.sample(["Hi!", "2+2?"], num_samples=3)           # batched: 3 completions each

A run directory gives its final model, or a checkpoint from ``checkpoints.jsonl``
(``checkpoint="latest"`` or a name). Prompts go through the tokenizer's chat template when it
has one; a prompt may also be a list of ``{role, content}`` messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from preftune.data.records import Message
from preftune.errors import UsageError
from preftune.models.load import load_tokenizer
from preftune.models.locate import load_located, locate

Prompt = str | list[Message]


class Sampler:
    def __init__(self, source: str | Path, temperature: float = 0.7, max_tokens: int = 256,
                 top_p: float = 1.0, checkpoint: str | None = None, seed: int | None = None,
                 batch_size: int = 8) -> None:
        if temperature < 0 or not 0 < top_p <= 1 or max_tokens < 1 or batch_size < 1:
            raise UsageError(f"bad sampling settings: temperature={temperature}, top_p={top_p}, "
                             f"max_tokens={max_tokens}, batch_size={batch_size}",
                             ["temperature >= 0 (0: greedy), 0 < top_p <= 1, max_tokens >= 1"])
        self.located = locate(source, checkpoint)
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.batch_size = batch_size
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = load_tokenizer(self.located.tokenizer_dir)
        self.tokenizer.padding_side = "left"  # generation continues every row at the right
        model = load_located(self.located)
        if self.located.is_adapter:
            model = model.merge_and_unload()  # one plain model samples faster than base + adapter
        self.model = model.to(self.device).eval()
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def complete(self, prompt: Prompt) -> str:
        """One completion of ``prompt``."""
        return self.sample([prompt], num_samples=1)[0][0]

    def sample(self, prompts: list[Prompt], num_samples: int = 1) -> list[list[str]]:
        """``num_samples`` completions of each prompt, generated in batches."""
        out: list[list[str]] = []
        for start in range(0, len(prompts), self.batch_size):
            out.extend(self._batch(prompts[start:start + self.batch_size], num_samples))
        return out

    def _batch(self, prompts: list[Prompt], num_samples: int) -> list[list[str]]:
        texts = [self.render(p) for p in prompts]
        templated = bool(getattr(self.tokenizer, "chat_template", None))
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True,
                                 add_special_tokens=not templated).to(self.device)
        if self.generator is not None:
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,),
                                                generator=self.generator)))
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
            if self.temperature > 0 else {"do_sample": False})
        with torch.no_grad():
            generated = self.model.generate(
                **encoded, max_new_tokens=self.max_tokens, num_return_sequences=num_samples,
                pad_token_id=self.tokenizer.pad_token_id, **sampling)
        new_tokens = generated[:, encoded["input_ids"].shape[1]:]     # (P·n, new)
        texts_out = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [texts_out[i * num_samples:(i + 1) * num_samples] for i in range(len(prompts))]

    def render(self, prompt: Prompt) -> str:
        """The text the model sees: the chat template's rendering when there is one."""
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) \
                else prompt
            return str(self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=True))
        if isinstance(prompt, str):
            return prompt
        return "".join(f"{m['role']}: {m['content']}\n" for m in prompt) + "assistant: "
