"""Preference losses: pure functions of per-sequence log-probs, picked by name from the table.

Every loss has the same signature, ``LossFn = Callable[[PairLogps, LossParams], LossOutput]``::

    from preftune.losses import LOSSES, REFERENCE_FREE, LossParams, PairLogps

    logps = PairLogps(
        policy_chosen=...,     # (B,) summed policy log-probs of the chosen response tokens
        policy_rejected=...,   # (B,)
        chosen_tokens=...,     # (B,) response lengths, float or int
        rejected_tokens=...,   # (B,)
        ref_chosen=...,        # (B,) the same sums under the reference model;
        ref_rejected=...,      #      None for the losses in REFERENCE_FREE
    )
    out = LOSSES["dpo"](logps, LossParams(beta=0.1))
    loss = out.losses.mean()                                     # out.losses is (B,)
    accuracy = (out.chosen_rewards > out.rejected_rewards).float().mean()

``LossParams(beta=0.1, label_smoothing=0.0, gamma_beta_ratio=0.5, sft_weight=0.0)``: beta for
every loss (lambda for orpo; unused by sft); label_smoothing for cdpo, robust and simpo;
gamma_beta_ratio for simpo; sft_weight adds ``sft_weight * (-policy_chosen / chosen_tokens)``
to every loss but sft and orpo, which already are or contain that NLL.

``LossOutput(losses, chosen_rewards, rejected_rewards)``: (B,) each, rewards detached. A loss
that needs the reference raises ValueError, naming itself, when ref_chosen or ref_rejected is
None.
"""

from preftune.losses.table import ALGORITHMS, HYPERPARAMETERS, Algorithm, mixture_loss, resolve
from preftune.losses.types import LossFn, LossOutput, LossParams, PairLogps

LOSSES: dict[str, LossFn] = {name: a.loss for name, a in ALGORITHMS.items()}

REFERENCE_FREE: frozenset[str] = frozenset(n for n, a in ALGORITHMS.items()
                                           if not a.needs_reference)

__all__ = ["ALGORITHMS", "HYPERPARAMETERS", "LOSSES", "REFERENCE_FREE", "Algorithm", "LossFn",
           "LossOutput", "LossParams", "PairLogps", "mixture_loss", "resolve"]
