"""Per-sequence log-probs of responses: batches of token ids in, (B,) sums and counts out.

A batch of B pairs becomes 2B right-padded sequences, chosen ones first:
``prompt + chosen`` and ``prompt + rejected``. Only response positions count; the prompt
is context. Per-token log-probs are ``logit[label] - logsumexp(logits)``, which never
materialises a second (2B, T, V) tensor of log-softmax values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from preftune.losses.router import load_balancing_loss


@dataclass
class PairBatch:
    input_ids: torch.Tensor       # (2B, T) chosen sequences first, then rejected
    attention_mask: torch.Tensor  # (2B, T)
    response_mask: torch.Tensor   # (2B, T) 1 where the token at t is a response token
    num_pairs: int

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(self.input_ids.to(device), self.attention_mask.to(device),
                         self.response_mask.to(device), self.num_pairs)

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


@dataclass(frozen=True)
class TokenRows:
    """Tokenized pairs as plain lists, indexed by row."""

    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]
    # Unpaired rows (KTO): True where the example is desirable; chosen_ids is its completion
    # and rejected_ids a mismatched one, for the KL estimate. None for pairs.
    labels: list[bool] | None = None

    @classmethod
    def from_dataset(cls, rows: Any) -> TokenRows:
        """From a ``datasets.Dataset`` with prompt_ids, chosen_ids and rejected_ids columns (and
        a label column for unpaired rows)."""
        table = rows.data.table
        labels = table.column("label").to_pylist() if "label" in table.column_names else None
        return cls(table.column("prompt_ids").to_pylist(), table.column("chosen_ids").to_pylist(),
                   table.column("rejected_ids").to_pylist(), labels)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def batch(self, indices: list[int], pad_id: int) -> PairBatch:
        return collate_pairs([self.prompt_ids[i] for i in indices],
                             [self.chosen_ids[i] for i in indices],
                             [self.rejected_ids[i] for i in indices], pad_id)


def collate_pairs(prompts: list[list[int]], chosen: list[list[int]],
                  rejected: list[list[int]], pad_id: int) -> PairBatch:
    """Right-padded ``prompt + chosen`` sequences, then ``prompt + rejected`` ones."""
    sequences = [p + c for p, c in zip(prompts, chosen, strict=True)]
    sequences += [p + r for p, r in zip(prompts, rejected, strict=True)]
    prompt_lengths = [len(p) for p in prompts] * 2
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    response_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, (seq, start) in enumerate(zip(sequences, prompt_lengths, strict=True)):
        input_ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[i, :len(seq)] = 1
        response_mask[i, start:len(seq)] = 1
    return PairBatch(input_ids, attention_mask, response_mask, len(prompts))


@dataclass
class SequenceLogps:
    chosen: torch.Tensor           # (B,) summed response log-probs
    rejected: torch.Tensor         # (B,)
    chosen_tokens: torch.Tensor    # (B,) response token counts
    rejected_tokens: torch.Tensor  # (B,)
    router_aux: torch.Tensor       # () a mixture-of-experts router's balancing loss, or 0


def sequence_logps(model: Any, batch: PairBatch, router_aux: bool = False) -> SequenceLogps:
    """Run ``model`` on the batch and sum the log-probs of each response's tokens; with
    ``router_aux``, also the router's load-balancing loss over the unpadded tokens."""
    extra = {"output_router_logits": True} if router_aux else {}
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                use_cache=False, **extra)
    logits = out.logits                                          # (2B, T, V)
    # The logit at position t predicts the token at t + 1.
    logits = logits[:, :-1, :]
    labels = batch.input_ids[:, 1:]                              # (2B, T-1)
    mask = batch.response_mask[:, 1:].to(logits.dtype)           # (2B, T-1)
    token_logps = token_log_probs(logits, labels)                # (2B, T-1)
    sums = (token_logps * mask).sum(-1)                          # (2B,)
    counts = mask.sum(-1)                                        # (2B,)
    b = batch.num_pairs
    aux = router_loss(model.config, out.router_logits, batch.attention_mask) if router_aux \
        else sums.new_zeros(())
    return SequenceLogps(sums[:b], sums[b:], counts[:b], counts[b:], aux)


def router_loss(config: Any, router_logits: Any, weights: torch.Tensor) -> torch.Tensor:
    """The load-balancing loss of a mixture-of-experts model's router logits (one tensor per
    layer), tokens weighted by ``weights``."""
    experts = getattr(config, "num_experts", None) or config.num_local_experts
    return load_balancing_loss(tuple(router_logits), weights, experts,
                               config.num_experts_per_tok)


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[label] per position, in float32 for stable sums."""
    logits = logits.float()
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # (N, T)
    return picked - logits.logsumexp(-1)
