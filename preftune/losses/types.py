"""What every loss takes and returns: per-sequence log-probs in, per-pair losses and rewards out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class PairLogps:
    """Summed response log-probs of a batch of B preference pairs, and the response lengths.

    Every field is (B,). The reference fields are None for the reference-free losses.
    """

    policy_chosen: Tensor
    policy_rejected: Tensor
    chosen_tokens: Tensor
    rejected_tokens: Tensor
    ref_chosen: Tensor | None = None
    ref_rejected: Tensor | None = None

    def per_token(self, chosen: Tensor, rejected: Tensor) -> tuple[Tensor, Tensor]:
        """Divide per-response sums by the response lengths, (B,) each.

        An empty response counts as one token (as TRL's IPO does), so its average is 0, not NaN.
        """
        chosen_tokens = self.chosen_tokens.clamp(min=1)  # (B,)
        rejected_tokens = self.rejected_tokens.clamp(min=1)
        return chosen / chosen_tokens, rejected / rejected_tokens


@dataclass(frozen=True)
class LossParams:
    """The hyperparameters of the losses; each loss reads the fields it needs."""

    beta: float = 0.1
    label_smoothing: float = 0.0
    gamma_beta_ratio: float = 0.5
    sft_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must lie in [0, 0.5), got {self.label_smoothing}")
        if not self.gamma_beta_ratio >= 0:
            raise ValueError(f"gamma_beta_ratio must be >= 0, got {self.gamma_beta_ratio}")
        if not self.sft_weight >= 0:
            raise ValueError(f"sft_weight must be >= 0, got {self.sft_weight}")


@dataclass(frozen=True)
class LossOutput:
    """Per-pair losses (the caller takes the mean) and detached implicit rewards, (B,) each.

    Reward accuracy is ``chosen_rewards > rejected_rewards``.
    """

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor


LossFn = Callable[[PairLogps, LossParams], LossOutput]
