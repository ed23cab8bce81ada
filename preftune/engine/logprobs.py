"""Per-sequence log-probs of responses: batches of token ids in, (B,) sums and counts out.

A batch of B pairs becomes 2B right-padded sequences, chosen ones first:
``prompt + chosen`` and ``prompt + rejected``. Only response positions count; the prompt
is context. Per-token log-probs are ``logit[label] - logsumexp(logits)``, which never
materialises a second (2B, T, V) tensor of log-softmax values.

Two variants of TRL's DPOTrainer change what is summed or returned:

- LD-DPO (``ld_alpha``; Liu et al. 2024, arXiv:2409.06411, Eq. 9): a response's sum is
  ``shared + ld_alpha * tail``, "shared" its first min(len_chosen, len_rejected) scored tokens
  and "tail" the rest. The weight of each token is fixed when the batch is laid out
  (``ld_weights``), so the policy and the reference scoring the same batch weight alike.
  Token counts stay the real counts.
- WPO (``wpo``; Zhou et al. 2024, arXiv:2406.11827, Eq. 2): each sequence's weight
  ``exp(mean over its scored tokens of log p(token) - log sum_v p_v²)``, without gradient.
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
    # (2B, T) float32 LD-DPO weight of the token at t in its response's sum (1 shared, alpha
    # tail); None: every token 1, the plain sum.
    ld_weight: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(self.input_ids.to(device), self.attention_mask.to(device),
                         self.response_mask.to(device), self.num_pairs,
                         None if self.ld_weight is None else self.ld_weight.to(device))

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

    def batch(self, indices: list[int], pad_id: int, ld_alpha: float | None = None
              ) -> PairBatch:
        return collate_pairs([self.prompt_ids[i] for i in indices],
                             [self.chosen_ids[i] for i in indices],
                             [self.rejected_ids[i] for i in indices], pad_id, ld_alpha)


def collate_pairs(prompts: list[list[int]], chosen: list[list[int]],
                  rejected: list[list[int]], pad_id: int,
                  ld_alpha: float | None = None) -> PairBatch:
    """Right-padded ``prompt + chosen`` sequences, then ``prompt + rejected`` ones; with
    ``ld_alpha``, LD-DPO's weight of every token."""
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
    ld_weight = None
    if ld_alpha is not None and ld_alpha != 1.0:
        scored = response_mask[:, 1:]                         # (2B, T-1) what the sums count
        rank = scored.cumsum(1) - 1                           # (2B, T-1) index among them
        owner = torch.arange(len(sequences))[:, None]         # (2B, 1)
        ld_weight = torch.ones(response_mask.shape, dtype=torch.float32)
        ld_weight[:, 1:] = ld_weights(rank, owner, scored.sum(1), ld_alpha)
    return PairBatch(input_ids, attention_mask, response_mask, len(prompts), ld_weight)


def ld_weights(rank: torch.Tensor, owner: torch.Tensor, counts: torch.Tensor,
               ld_alpha: float) -> torch.Tensor:
    """LD-DPO's weight of each scored token: 1 among its response's first
    min(len_chosen, len_rejected) tokens, ``ld_alpha`` after (Liu et al. 2024, Eq. 9).

    ``rank``: each token's index among its response's scored tokens; ``owner``: its sequence
    (chosen i is i, rejected i is B + i), same shape or broadcastable; ``counts``: (2B,) scored
    tokens per sequence. E.g. chosen of 2 tokens, rejected of 4, alpha 0.5: chosen weights
    [1, 1], rejected [1, 1, 0.5, 0.5].
    """
    b = counts.shape[0] // 2
    shared = torch.minimum(counts[:b], counts[b:]).repeat(2)  # (2B,)
    return torch.where(rank < shared[owner], 1.0, ld_alpha).float()


@dataclass
class SequenceLogps:
    chosen: torch.Tensor           # (B,) summed response log-probs (LD-weighted with ld_alpha)
    rejected: torch.Tensor         # (B,)
    chosen_tokens: torch.Tensor    # (B,) response token counts (real counts, whatever ld_alpha)
    rejected_tokens: torch.Tensor  # (B,)
    router_aux: torch.Tensor       # () a mixture-of-experts router's balancing loss, or 0
    # (B,) WPO weights exp(mean log p - log sum p²) of each response, no gradient; None unless
    # the pass was asked for them (wpo).
    chosen_weight: torch.Tensor | None = None
    rejected_weight: torch.Tensor | None = None


def sequence_logps(model: Any, batch: PairBatch, router_aux: bool = False,
                   wpo: bool = False) -> SequenceLogps:
    """Run ``model`` on the batch and sum the log-probs of each response's tokens (weighted by
    ``batch.ld_weight`` where set); with ``router_aux``, also the router's load-balancing loss
    over the unpadded tokens; with ``wpo``, WPO's weight of each response."""
    extra = {"output_router_logits": True} if router_aux else {}
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                use_cache=False, **extra)
    logits = out.logits                                          # (2B, T, V)
    # The logit at position t predicts the token at t + 1.
    logits = logits[:, :-1, :]
    labels = batch.input_ids[:, 1:]                              # (2B, T-1)
    mask = batch.response_mask[:, 1:].to(logits.dtype)           # (2B, T-1)
    token_logps = token_log_probs(logits, labels)                # (2B, T-1)
    weight = mask if batch.ld_weight is None else mask * batch.ld_weight[:, 1:]
    sums = (token_logps * weight).sum(-1)                        # (2B,)
    counts = mask.sum(-1)                                        # (2B,)
    b = batch.num_pairs
    aux = router_loss(model.config, out.router_logits, batch.attention_mask) if router_aux \
        else sums.new_zeros(())
    weights = None
    if wpo:
        with torch.no_grad():
            aligned = ((token_logps - log_sum_sq_probs(logits)) * mask).sum(-1)  # (2B,)
            weights = wpo_weights(aligned, counts)
    return SequenceLogps(sums[:b], sums[b:], counts[:b], counts[b:], aux,
                         None if weights is None else weights[:b],
                         None if weights is None else weights[b:])


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


def log_sum_sq_probs(logits: torch.Tensor) -> torch.Tensor:
    """log sum_v p_v² per position, in float32: ``logsumexp(2 * log_softmax(logits))``, computed
    as ``logsumexp(2 z) - 2 logsumexp(z)`` (no log-softmax tensor)."""
    logits = logits.float()
    return logits.mul(2).logsumexp(-1) - 2 * logits.logsumexp(-1)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The entropy ``-sum_v p_v log p_v`` of each position's distribution, in float32."""
    log_p = logits.float().log_softmax(-1)
    return -(log_p.exp() * log_p).nan_to_num(nan=0.0).sum(-1)


def wpo_weights(aligned_sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """WPO's weight of each sequence (Zhou et al. 2024, Eq. 2, as TRL computes it):
    ``exp(aligned_sums / counts)``, the sums being of ``log p(token) - log sum_v p_v²`` over the
    sequence's scored tokens. An empty response averages 0 (weight 1), as in TRL."""
    return torch.exp(aligned_sums / counts.clamp(min=1))
