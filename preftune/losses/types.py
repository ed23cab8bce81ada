"""What every loss takes and returns: per-sequence log-probs in, per-pair losses and rewards out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
    # Unpaired data (KTO): True where the example is desirable. The "chosen" fields then hold
    # the example's completion and the "rejected" fields a mismatched completion of the same
    # prompt, the sample the KL term is estimated from.
    labels: Tensor | None = None
    # WPO (use_weighting): each sequence's exp(mean over its tokens of log p - log sum p^2),
    # computed without gradients; None when weighting is off.
    chosen_weight: Tensor | None = None
    rejected_weight: Tensor | None = None

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
    f_divergence: str = "reverse_kl"  # reverse_kl, forward_kl, js_divergence, alpha_divergence
    f_alpha: float = 0.5  # the alpha of alpha_divergence
    discopop_tau: float = 0.05
    desirable_weight: float = 1.0  # KTO
    undesirable_weight: float = 1.0  # KTO
    use_weighting: bool = False  # WPO: each pair's loss times its sequences' weights

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must lie in [0, 0.5), got {self.label_smoothing}")
        if not self.gamma_beta_ratio >= 0:
            raise ValueError(f"gamma_beta_ratio must be >= 0, got {self.gamma_beta_ratio}")
        if not self.sft_weight >= 0:
            raise ValueError(f"sft_weight must be >= 0, got {self.sft_weight}")
        if self.f_divergence not in F_DIVERGENCES:
            raise ValueError(f"f_divergence must be one of {', '.join(F_DIVERGENCES)}, got "
                             f"{self.f_divergence!r}")
        if not self.discopop_tau > 0:
            raise ValueError(f"discopop_tau must be > 0, got {self.discopop_tau}")
        for name in ("desirable_weight", "undesirable_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")


@dataclass(frozen=True)
class LossOutput:
    """Per-pair losses (the caller takes the mean) and detached implicit rewards, (B,) each.

    Reward accuracy is ``chosen_rewards > rejected_rewards``, or ``correct`` where a loss sets
    it (KTO: whether each example's reward lies on its label's side of the KL baseline).
    ``metrics`` holds further detached (B,) values whose means are logged under their names
    (a mixture's ``loss/<component>``, KTO's ``kl``).
    """

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    correct: Tensor | None = None
    metrics: dict[str, Tensor] = field(default_factory=dict)


LossFn = Callable[[PairLogps, LossParams], LossOutput]
