"""Per-token log-probs from hidden states and the LM head, a chunk of tokens at a time.

``log p(label) = h·w_label - logsumexp(h·W)``. Computing it for N tokens at once needs an
(N, V) logits tensor, kept for the backward pass; with a 32k-150k vocabulary that is most of a
DPO step's memory. Here only one (chunk, V) block exists at a time, in the forward pass and
again in the backward pass, which recomputes it: the gradient of ``log p(label)`` with
respect to the logits is ``onehot(label) - softmax``, and the softmax needs only the logits
and the saved (N,) log-sum-exp. When all N tokens fit one chunk, that one block is kept from
the forward pass instead of recomputed.

Models that soft-cap their logits (Gemma 2: ``cap * tanh(logits / cap)``) are scored with the
cap applied to each chunk; the backward pass multiplies by its derivative, ``1 - (capped / cap)²``.

The logits are computed in the weights' dtype and summed in float32, as in the plain path
(``logprobs.token_log_probs``); the tests hold the two to each other, gradients included.

WPO's weights also need ``log sum_v p_v²`` at every scored position, the log-probability the
model's own distribution gives to drawing the same token twice. ``chunked_token_logps_with_sq``
adds it from the same chunks: ``logsumexp(2 · logits) - 2 · lse``, the soft cap applied first,
without gradient. ``chunked_token_logps`` skips it. GRPO logs the entropy of the policy's
next-token distribution the same way (``chunked_token_logps_with_entropy``): ``-sum_v p_v log p_v``
per position, from the same chunks, without gradient.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# One chunk's float32 logits are chunk x vocabulary elements; the backward pass holds about
# three such blocks at once (logits, their softmax-gradient, its cast). This budget of
# elements per block keeps them near 256 MB each, whatever the vocabulary.
CHUNK_ELEMENTS = 2**26


def default_chunk_tokens(vocab: int) -> int:
    """Tokens per chunk for a vocabulary: the largest power of two, from 128 to 4096, whose
    (chunk, vocab) block stays within ``CHUNK_ELEMENTS``."""
    chunk = 4096
    while chunk > 128 and chunk * vocab > CHUNK_ELEMENTS:
        chunk //= 2
    return chunk


def chunked_token_logps(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                        labels: torch.Tensor, chunk_tokens: int,
                        softcap: float | None = None) -> torch.Tensor:
    """(N,) float32 log-probs of ``labels`` under ``softmax(hidden @ weight.T + bias)``, the
    logits soft-capped at ``softcap`` where given.

    hidden (N, H), weight (V, H), bias (V,) or None, labels (N,).
    """
    out, _ = _ChunkedLogps.apply(hidden, weight, bias, labels, chunk_tokens, softcap, None)
    return out


def chunked_token_logps_with_sq(hidden: torch.Tensor, weight: torch.Tensor,
                                bias: torch.Tensor | None, labels: torch.Tensor,
                                chunk_tokens: int, softcap: float | None = None
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``chunked_token_logps`` and, per position, the (N,) float32 ``log sum_v p_v²``
    (= ``logsumexp(2 * log_softmax(logits))``), which carries no gradient (WPO's weights)."""
    out, log_sum_sq = _ChunkedLogps.apply(hidden, weight, bias, labels, chunk_tokens, softcap,
                                          "sq")
    return out, log_sum_sq


def chunked_token_logps_with_entropy(hidden: torch.Tensor, weight: torch.Tensor,
                                     bias: torch.Tensor | None, labels: torch.Tensor,
                                     chunk_tokens: int, softcap: float | None = None
                                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``chunked_token_logps`` and, per position, the (N,) float32 entropy of the next-token
    distribution, ``-sum_v p_v log p_v``, which carries no gradient (a GRPO metric)."""
    out, entropy = _ChunkedLogps.apply(hidden, weight, bias, labels, chunk_tokens, softcap,
                                       "entropy")
    return out, entropy


def soft_cap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """``cap * tanh(logits / cap)``, as Gemma 2 bounds its logits; the logits when no cap."""
    return logits if cap is None else torch.tanh(logits / cap) * cap


class _ChunkedLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                labels: torch.Tensor, chunk_tokens: int, softcap: float | None,
                extra: str | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = hidden.shape[0]
        logps = torch.empty(n, dtype=torch.float32, device=hidden.device)
        lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
        # extra: "sq" (log sum p²), "entropy", or None; per position, without gradient.
        per_position = torch.empty(n, dtype=torch.float32, device=hidden.device) if extra \
            else None
        logits = None
        for s in range(0, n, chunk_tokens):
            e = min(s + chunk_tokens, n)
            logits = soft_cap(F.linear(hidden[s:e], weight, bias).float(), softcap)  # (n, V)
            lse[s:e] = logits.logsumexp(-1)
            logps[s:e] = logits.gather(1, labels[s:e, None]).squeeze(1) - lse[s:e]
            if per_position is not None and extra == "sq":  # log sum p² = lse(2 z) - 2 lse(z)
                per_position[s:e] = logits.mul(2).logsumexp(-1) - 2 * lse[s:e]
            elif per_position is not None:  # entropy: -sum p log p, 0 log 0 taken as 0
                log_p = logits - lse[s:e, None]                              # (n, V)
                per_position[s:e] = -log_p.exp().mul_(log_p).nan_to_num_(nan=0.0).sum(-1)
        ctx.save_for_backward(hidden, weight, bias, labels, lse)
        ctx.chunk_tokens = chunk_tokens
        ctx.softcap = softcap
        # One chunk: its logits are kept for the backward pass instead of recomputed. That
        # spares a (n, V, H) matmul and adds no peak: the backward would rebuild this very
        # block first thing, and nothing runs between the head's forward and its backward.
        ctx.logits = logits if n <= chunk_tokens else None
        if per_position is not None:
            ctx.mark_non_differentiable(per_position)
        return logps, per_position

    @staticmethod
    def backward(ctx: Any, grad_logps: torch.Tensor, _grad_sq: Any) -> tuple[Any, ...]:
        hidden, weight, bias, labels, lse = ctx.saved_tensors
        needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        # Every row of grad_hidden is written once; the (V, H) weight gradient starts as the
        # first chunk's product (no zero-filled buffer: on a CPU, filling it costs as much as
        # a chunk's matmul) and is summed in float32, in place where the weights are float32
        # (no (V, H) temporary per chunk).
        grad_hidden = torch.empty_like(hidden) if needs_hidden else None
        grad_weight: torch.Tensor | None = None
        grad_bias = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) \
            if needs_bias and bias is not None else None
        n = hidden.shape[0]
        for s in range(0, n, ctx.chunk_tokens):
            e = min(s + ctx.chunk_tokens, n)
            g = grad_logps[s:e, None].float()                                # (n, 1)
            logits = ctx.logits if ctx.logits is not None else \
                soft_cap(F.linear(hidden[s:e], weight, bias).float(), ctx.softcap)
            # d log p(label) / d logits = onehot(label) - softmax(logits)
            grad_logits = (logits - lse[s:e, None]).exp_().mul_(-g)         # (n, V)
            grad_logits.scatter_add_(1, labels[s:e, None], g)
            if ctx.softcap is not None:  # through the cap: d(c tanh(x/c))/dx = 1 - (y/c)²
                grad_logits.mul_(1 - (logits / ctx.softcap).square_())
            if grad_bias is not None:
                grad_bias += grad_logits.sum(0)
            grad_logits = grad_logits.to(weight.dtype)
            if grad_hidden is not None:
                grad_hidden[s:e] = grad_logits @ weight                       # (n, H)
            if needs_weight:
                if grad_weight is None:
                    grad_weight = (grad_logits.t() @ hidden[s:e]).float()     # (V, H)
                elif grad_weight.dtype == grad_logits.dtype:  # float32: sum in place
                    grad_weight.addmm_(grad_logits.t(), hidden[s:e])
                else:
                    grad_weight += grad_logits.t() @ hidden[s:e]
        ctx.logits = None
        return (grad_hidden,
                None if grad_weight is None else grad_weight.to(weight.dtype),
                None if grad_bias is None else grad_bias.to(weight.dtype), None, None, None, None)
