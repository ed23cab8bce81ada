"""GRPO's forward pass: per-token log-probs of the completion tokens, and the policy's entropy
there, through the engine's chunked head.

The decoder runs over the whole sequence; the output head runs only at completion positions,
a chunk of tokens at a time (``engine.forward.head_logps``): no (B, T, V) logits tensor, which
at a 152k vocabulary is most of a step's memory. ``chunked_logps=False`` scores from the
model's own full logits instead (the plain path the tests hold the chunked one to).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from preftune.engine.forward import FastPaths, head_logps, head_unsupported_reason
from preftune.engine.logprobs import token_entropy, token_log_probs

PROMPT = -100  # the label of a position that is no completion token, as Atropos masks them


class CompletionLogps(torch.nn.Module):
    """A causal LM whose forward returns the completion tokens' log-probs: what DDP or FSDP
    wraps (the policy is ``lm``, as the engine's gathering of FSDP shards expects).

    ``forward(input_ids, labels)``: input ids (b, T) and next-token labels (b, T), PROMPT where
    the next token is no completion token; returns (b, T) float32 log-probs of the labels and
    (b, T) entropies of the next-token distribution (without gradient), both 0 off completion
    tokens. ``with_entropy=False`` returns None for the entropies.
    """

    def __init__(self, lm: Any, chunked: bool = True, chunk_tokens: int | None = None) -> None:
        super().__init__()
        self.lm = lm
        reason = head_unsupported_reason(lm.config) if chunked else None
        if reason is not None:
            warnings.warn(f"GRPO scores from full logits: {reason}", stacklevel=2)
        self.paths = FastPaths(chunked_logps=chunked and reason is None,
                               chunk_tokens=chunk_tokens)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, with_entropy: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = labels != PROMPT                                              # (b, T)
        if not self.paths.chunked_logps:
            return self._plain(input_ids, labels, mask, with_entropy)
        out = self.lm.get_decoder()(input_ids=input_ids, use_cache=False)
        hidden = out.last_hidden_state[mask]                                 # (N, H)
        token_logps, entropy = head_logps(self.lm, hidden, labels[mask], self.paths,
                                          "entropy" if with_entropy else None)  # (N,), (N,)
        return (_spread(mask, token_logps),
                None if entropy is None else _spread(mask, entropy))

    def _plain(self, input_ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
               with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.lm(input_ids=input_ids, use_cache=False).logits        # (b, T, V)
        token_logps = token_log_probs(logits, torch.where(mask, labels, 0))  # (b, T)
        entropy = None
        if with_entropy:
            with torch.no_grad():  # a row at a time: no second (b, T, V) block
                entropy = torch.stack([token_entropy(row) for row in logits])
            entropy = torch.where(mask, entropy, 0.0)
        return torch.where(mask, token_logps, 0.0), entropy


def _spread(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(N,) values of the True positions of ``mask`` (b, T) as a (b, T) tensor, 0 elsewhere."""
    return values.new_zeros(mask.shape).masked_scatter(mask, values)


@torch.no_grad()
def reference_logps(scorer: CompletionLogps, reference: Any | None, input_ids: torch.Tensor,
                    labels: torch.Tensor) -> torch.Tensor:
    """(b, T) log-probs of the labels under the reference: the frozen copy where there is one,
    else the policy with its LoRA adapters disabled."""
    if reference is not None:
        frozen = CompletionLogps(reference, scorer.paths.chunked_logps, scorer.paths.chunk_tokens)
        return frozen(input_ids, labels, with_entropy=False)[0]
    with scorer.lm.disable_adapter():
        return scorer(input_ids, labels, with_entropy=False)[0]
