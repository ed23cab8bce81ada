"""Preference losses: pure functions of per-sequence log-probs, picked by name from the table.

Every loss has the same signature, ``LossFn = Callable[[PairLogps, LossParams], LossOutput]``::

    from preftune.losses import ALGORITHMS, LossParams, PairLogps, mixture_loss

    logps = PairLogps(
        policy_chosen=...,     # (B,) summed policy log-probs of the chosen response tokens
        policy_rejected=...,   # (B,)
        chosen_tokens=...,     # (B,) response lengths, float or int
        rejected_tokens=...,   # (B,)
        ref_chosen=...,        # (B,) the same sums under the reference model;
        ref_rejected=...,      #      None for the losses in REFERENCE_FREE
    )
    loss_fn = mixture_loss(["dpo"])                  # or ["dpo", "bco_pair", "sft"], weights
    out = loss_fn(logps, LossParams(beta=0.1))
    loss = out.losses.mean()                                     # out.losses is (B,)
    accuracy = (out.chosen_rewards > out.rejected_rewards).float().mean()  # or out.correct

`ALGORITHMS` (``table.py``) is the one list of training objectives: loss, reference or not,
data kind, hyperparameters, start value, paper, TRL's name; ``LOSSES`` and ``REFERENCE_FREE``
are read from it, and ``docs/algorithms.md`` lists it. The losses live by family:
``dpo.py`` (losses of a chosen-minus-rejected margin: dpo, cdpo, robust, hinge, ipo,
sigmoid_norm, exo_pair, discopop), ``anchored.py`` (each log-ratio against a fixed target:
nca_pair, bco_pair, sppo_hard, apo_zero, apo_down), ``aot.py`` (sorted across the batch: aot,
aot_unpaired), ``kto.py`` (unpaired data: kto, apo_zero_unpaired), ``simpo.py``, ``orpo.py``,
``sft.py``; ``ratios.py`` holds the log-ratios and their f-divergence scores.

``LossParams``: beta for every loss (lambda for orpo; unused by sft); label_smoothing for cdpo,
robust, exo_pair (> 0), aot and simpo; gamma_beta_ratio for simpo; sft_weight adds
``sft_weight * (-policy_chosen / chosen_tokens)`` to the losses that list it; f_divergence and
f_alpha replace the log-ratios in the margin losses' margins (f-DPO); discopop_tau for discopop;
desirable_weight and undesirable_weight for the unpaired losses; use_weighting multiplies each
pair's loss by ``chosen_weight * rejected_weight`` (WPO), in `mixture_loss`, so call the losses
through it.

Unpaired data (kto, apo_zero_unpaired): ``PairLogps.labels`` (B,) is True for a desirable
example, the chosen fields hold the example's completion and the rejected fields a mismatched
completion of the same prompt (KTO's KL sample).

``LossOutput(losses, chosen_rewards, rejected_rewards, correct, metrics)``: (B,) each, rewards
detached; ``correct`` where accuracy is not the reward order (KTO), ``metrics`` detached
per-example values to log (``loss/<part>``, ``kl``, ``wpo_weight``). A loss that needs the
reference raises ValueError, naming itself, when ref_chosen or ref_rejected is None; an unpaired
loss likewise when labels is None.
"""

from preftune.losses.table import ALGORITHMS, HYPERPARAMETERS, Algorithm, mixture_loss, resolve
from preftune.losses.types import LossFn, LossOutput, LossParams, PairLogps

LOSSES: dict[str, LossFn] = {name: a.loss for name, a in ALGORITHMS.items()}

REFERENCE_FREE: frozenset[str] = frozenset(n for n, a in ALGORITHMS.items()
                                           if not a.needs_reference)

__all__ = ["ALGORITHMS", "HYPERPARAMETERS", "LOSSES", "REFERENCE_FREE", "Algorithm", "LossFn",
           "LossOutput", "LossParams", "PairLogps", "mixture_loss", "resolve"]
