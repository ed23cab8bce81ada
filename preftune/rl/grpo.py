"""The GRPO objective as pure functions: group advantages, and the clipped per-token loss.

Per-token log-probs and a completion mask in; a scalar loss and a metrics dict out. The loss
types differ only in how per-token losses are averaged (`grpo`, `dr_grpo`, `dapo`); the
advantage's std division is a separate switch (`scale`), so Dr. GRPO is ``scale=False`` *and*
``loss_type="dr_grpo"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from preftune.errors import ConfigError

LOSS_TYPES: tuple[str, ...] = ("grpo", "dr_grpo", "dapo")


def group_advantages(rewards_G: Tensor | Sequence[float], scale: bool = True,
                     eps: float = 1e-6) -> Tensor:
    """Advantages of one group of G completions of the same prompt, (G,).

    GRPO's outcome supervision (Shao et al. 2024, DeepSeekMath, §4.1.2):
    ``(r - mean(r)) / (std(r) + eps)``. ``scale=False`` gives ``r - mean(r)``, Dr. GRPO's
    advantage (Liu et al. 2025, "Understanding R1-Zero-Like Training"), which drops the std
    division because it up-weights prompts whose rewards barely vary (too easy or too hard).

    The std is the population std (divide by G, not G - 1). The group is the whole set being
    normalised, not a sample from which to estimate a wider spread; with it the scaled
    advantages have variance exactly 1 (up to eps), and a group of one has std 0 instead of
    NaN. The sample std would give advantages sqrt((G - 1) / G) times these.

    A group whose rewards are all equal carries no signal and gets exact zeros (computing
    ``r - mean`` in floating point may leave residues of 1e-17 that eps would not absorb).
    A list is read as float64; a floating tensor keeps its dtype.
    """
    if isinstance(rewards_G, Tensor) and rewards_G.is_floating_point():
        rewards = rewards_G.detach()
    else:
        rewards = torch.as_tensor(rewards_G, dtype=torch.float64)
    if rewards.dim() != 1 or rewards.numel() == 0:
        raise ValueError(f"a group's rewards must be a non-empty 1-D list or tensor, got shape "
                         f"{tuple(rewards.shape)}")
    if not torch.isfinite(rewards).all():
        bad = torch.nonzero(~torch.isfinite(rewards)).flatten().tolist()
        raise ValueError(f"rewards must be finite; positions {bad} of {rewards.tolist()} are not;"
                         " check the reward function's output for these completions")
    if not eps > 0:
        raise ConfigError(f"eps must be > 0, got {eps}")
    if bool((rewards == rewards[0]).all()):
        return torch.zeros_like(rewards)
    centred = rewards - rewards.mean()
    if not scale:
        return centred
    return centred / (rewards.std(correction=0) + eps)


def advantages_for_groups(groups: Sequence[Sequence[float]], scale: bool = True,
                          eps: float = 1e-6) -> list[list[float]]:
    """`group_advantages` of each group; groups may differ in size."""
    return [group_advantages(list(rewards), scale, eps).tolist() for rewards in groups]


@dataclass(frozen=True)
class GRPOOutput:
    """The scalar loss to minimise and detached metrics (see `grpo_loss` for each key)."""

    loss: Tensor
    metrics: dict[str, float]


def grpo_loss(policy_logps: Tensor, old_logps: Tensor | None, advantages: Tensor, mask: Tensor,
              *, clip_eps: float = 0.2, clip_eps_high: float | None = None,
              ref_logps: Tensor | None = None, kl_coef: float = 0.0, loss_type: str = "grpo",
              max_tokens: int | None = None, batch_sequences: int | None = None,
              batch_tokens: int | None = None) -> GRPOOutput:
    """GRPO's clipped surrogate with an optional k3 KL penalty (Shao et al. 2024, Eq. 3).

    Inputs: ``policy_logps`` (B, T) per-token log-probs of the completions under the policy
    being trained; ``old_logps`` (B, T) those under the policy that sampled them (the inference
    engine's, when the environment sent them), or None for ``policy_logps.detach()``: ratio 1,
    the plain policy gradient ``-A * grad(logp)`` (one update per batch); ``advantages`` (B,),
    one per completion (see `group_advantages`); ``mask`` (B, T), nonzero on completion tokens.

    Per token, with ratio ``r = exp(policy - old)``: the PPO clip (Schulman et al. 2017, Eq. 7)
    ``-min(r A, clip(r, 1 - clip_eps, 1 + clip_eps_high) A)``; DAPO's clip-higher
    (Yu et al. 2025) sets ``clip_eps_high`` above ``clip_eps`` (default: equal). Plus
    ``kl_coef`` times the k3 estimate of KL(policy || ref) (GRPO Eq. 4, after Schulman's
    "Approximating KL divergence"): ``exp(ref - policy) - (ref - policy) - 1``.

    Aggregation, by ``loss_type``:

    - ``grpo``: mean over each sequence's tokens, then over sequences (Eq. 3's 1/|o_i|). A row
      with no tokens counts as one token, so it adds 0 and still counts in the mean over B.
    - ``dapo``: the sum over all tokens / their count (DAPO Eq. 8). Eq. 8 normalises within a
      group; here the count is the whole batch's, which is the same when the batch is one group.
    - ``dr_grpo``: the sum over all tokens / (B * max_tokens), a constant (Liu et al. 2025),
      max_tokens being the generation budget (default T). Other loss types ignore max_tokens.

    A share of a batch (a micro-batch, one process's part): ``batch_sequences`` and
    ``batch_tokens`` give the whole batch's B and completion-token count, and the loss is the
    share's part of the whole batch's loss: the divisions above use the batch's counts, so the
    parts of a batch add up to its loss exactly. Left out, they are this share's own counts.

    Deviation from Eq. 3: old-policy log-probs from an inference engine make ``r`` absorb the
    engine-trainer numerical mismatch as well as the policy's drift; that is the caller's
    choice. Padding (mask 0) is removed with ``torch.where`` before any arithmetic, so inf/NaN
    log-probs there change neither the loss nor the gradient. ``old_logps``, ``ref_logps`` and
    ``advantages`` are constants of the objective (detached).

    Metrics (floats): ``loss``; ``clip_frac``, the share of completion tokens where the clip
    bound was the smaller term, which zeroes the token's gradient: ``r > 1 + clip_eps_high``
    with ``A > 0`` (``clip_frac_high``) or ``r < 1 - clip_eps`` with ``A < 0``
    (``clip_frac_low``), never ``A = 0``; ``ratio_mean`` over completion tokens; ``kl``, the
    mean k3 over completion tokens, only where ``ref_logps`` is given (computed whenever it is;
    without it the KL is not measured, and a 0 would read as "the policy has not moved");
    ``advantage_mean`` over the B sequences; ``tokens``, the number of completion tokens.
    """
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    _check_config(clip_eps, eps_high, kl_coef, loss_type, max_tokens)
    _check_shapes(policy_logps, old_logps, advantages, mask, ref_logps)
    if batch_sequences is not None and batch_sequences < policy_logps.size(0):
        raise ValueError(f"batch_sequences ({batch_sequences}) counts the whole batch, so it "
                         f"cannot be less than the {policy_logps.size(0)} sequences given")
    if kl_coef > 0 and ref_logps is None:
        raise ValueError(f"kl_coef={kl_coef} needs ref_logps, the reference model's per-token "
                         "log-probs; compute them, or set kl_coef=0")

    is_token = mask != 0  # (B, T)
    old = policy_logps.detach() if old_logps is None else old_logps.detach()
    log_ratio = torch.where(is_token, policy_logps - old, 0.0)  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T), 1 on padding
    adv = advantages.detach().to(policy_logps.dtype)[:, None]  # (B, 1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + eps_high) * adv
    token_losses = -torch.minimum(unclipped, clipped)  # (B, T)

    kl = torch.zeros_like(token_losses)  # (B, T)
    if ref_logps is not None:
        ref_minus_policy = torch.where(is_token, ref_logps.detach() - policy_logps, 0.0)
        kl = torch.exp(ref_minus_policy) - ref_minus_policy - 1
        token_losses = token_losses + kl_coef * kl
    token_losses = torch.where(is_token, token_losses, 0.0)

    tokens_B = is_token.sum(dim=1)  # (B,)
    sequences = policy_logps.size(0) if batch_sequences is None else batch_sequences
    if loss_type == "grpo":
        loss = (token_losses.sum(dim=1) / tokens_B.clamp(min=1)).sum() / sequences
    elif loss_type == "dapo":
        tokens = tokens_B.sum().clamp(min=1) if batch_tokens is None else max(batch_tokens, 1)
        loss = token_losses.sum() / tokens
    else:  # dr_grpo
        width = policy_logps.size(1) if max_tokens is None else max_tokens
        loss = token_losses.sum() / (sequences * width)

    with torch.no_grad():
        n_tokens = max(int(tokens_B.sum()), 1)
        high = is_token & (adv > 0) & (ratio > 1 + eps_high)
        low = is_token & (adv < 0) & (ratio < 1 - clip_eps)
        metrics = {
            "loss": float(loss),
            "clip_frac": float((high | low).sum()) / n_tokens,
            "clip_frac_low": float(low.sum()) / n_tokens,
            "clip_frac_high": float(high.sum()) / n_tokens,
            "ratio_mean": float(torch.where(is_token, ratio, 0.0).sum()) / n_tokens,
            "advantage_mean": float(advantages.float().mean()),
            "tokens": float(tokens_B.sum()),
        }
        if ref_logps is not None:
            metrics["kl"] = float(torch.where(is_token, kl, 0.0).sum()) / n_tokens
    return GRPOOutput(loss, metrics)


def _check_config(clip_eps: float, clip_eps_high: float, kl_coef: float, loss_type: str,
                  max_tokens: int | None) -> None:
    if loss_type not in LOSS_TYPES:
        raise ConfigError(f"unknown GRPO loss_type {loss_type!r}",
                          hints=[f"use one of: {', '.join(LOSS_TYPES)}"])
    if not 0 < clip_eps < 1:
        raise ConfigError(f"clip_eps must lie in (0, 1), got {clip_eps}",
                          hints=["0.2 is the usual value (PPO, GRPO)"])
    if not clip_eps_high > 0:
        raise ConfigError(f"clip_eps_high must be > 0, got {clip_eps_high}",
                          hints=["DAPO uses 0.28; leave it unset to use clip_eps"])
    if not kl_coef >= 0:
        raise ConfigError(f"kl_coef must be >= 0, got {kl_coef}")
    if max_tokens is not None and max_tokens < 1:
        raise ConfigError(f"max_tokens must be >= 1, got {max_tokens}",
                          hints=["pass the generation budget (max new tokens)"])


def _check_shapes(policy_logps: Tensor, old_logps: Tensor | None, advantages: Tensor,
                  mask: Tensor, ref_logps: Tensor | None) -> None:
    if policy_logps.dim() != 2:
        raise ValueError(f"policy_logps must be (B, T), got shape {tuple(policy_logps.shape)}")
    shape = policy_logps.shape
    for name, tensor in (("old_logps", old_logps), ("ref_logps", ref_logps), ("mask", mask)):
        if tensor is not None and tensor.shape != shape:
            raise ValueError(f"{name} must have policy_logps' shape {tuple(shape)}, got "
                             f"{tuple(tensor.shape)}")
    if advantages.shape != shape[:1]:
        raise ValueError(f"advantages must be (B,) = {tuple(shape[:1])}, one per completion, "
                         f"got {tuple(advantages.shape)}")
