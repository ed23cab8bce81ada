"""Scoring pairs: policy log-probs, reference log-probs, the loss; and whole-set evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from preftune.engine.forward import FastPaths, ResponseLogps, layout, score_batch
from preftune.engine.logprobs import PairBatch, SequenceLogps, TokenRows
from preftune.engine.packing import PackedPairs
from preftune.engine.reference import reference_logps
from preftune.losses import LossFn, LossOutput, LossParams, PairLogps


@dataclass(frozen=True)
class RowLogps:
    """Precomputed reference log-prob sums of every row."""

    chosen: torch.Tensor  # (N,)
    rejected: torch.Tensor  # (N,)


@dataclass
class Scorer:
    """What turns a batch of pairs into losses: the policy, its reference and the loss."""

    policy: Any  # the model itself (what reference and saving use)
    ref_model: Any | None  # a frozen copy, or None (LoRA: the policy without adapters)
    loss_fn: LossFn
    params: LossParams
    needs_ref: bool
    pad_id: int
    device: torch.device
    paths: FastPaths = FastPaths()
    # The weight of a mixture-of-experts router's load-balancing loss in the training loss.
    router_aux_coef: float = 0.0
    # What the forward pass calls: ResponseLogps over the policy, or its DDP/FSDP wrapper.
    model: Any = None

    def __post_init__(self) -> None:
        self.paths = self.paths.usable_with(self.policy)
        if self.model is None:
            self.model = ResponseLogps(self.policy, self.paths,
                                       router_aux=self.router_aux_coef > 0)

    def batch(self, rows: TokenRows, indices: list[int]) -> PairBatch | PackedPairs:
        return layout(rows, indices, self.pad_id, self.paths).to(self.device)

    def score(self, rows: TokenRows, indices: list[int], ref: RowLogps | None
              ) -> tuple[LossOutput, SequenceLogps, PairBatch | PackedPairs]:
        batch = self.batch(rows, indices)
        logps = score_batch(self.model, batch)
        ref_chosen = ref_rejected = None
        if self.needs_ref and ref is not None:
            ref_chosen = ref.chosen[indices].to(self.device)
            ref_rejected = ref.rejected[indices].to(self.device)
        elif self.needs_ref:
            live = reference_logps(self.policy, self.ref_model, batch, self.paths)
            ref_chosen, ref_rejected = live.chosen, live.rejected
        labels = None
        if rows.labels is not None:
            labels = torch.tensor([rows.labels[i] for i in indices], device=self.device)
        pair = PairLogps(policy_chosen=logps.chosen, policy_rejected=logps.rejected,
                         chosen_tokens=logps.chosen_tokens,
                         rejected_tokens=logps.rejected_tokens,
                         ref_chosen=ref_chosen, ref_rejected=ref_rejected, labels=labels,
                         chosen_weight=logps.chosen_weight, rejected_weight=logps.rejected_weight)
        return self.loss_fn(pair, self.params), logps, batch


@torch.no_grad()
def evaluate_rows(scorer: Scorer, rows: TokenRows, ref: RowLogps | None,
                  batch_size: int) -> dict[str, float]:
    """Mean loss, preference accuracy, reward margin and log-probs over every row."""
    was_training = scorer.policy.training
    scorer.policy.eval()
    sums: dict[str, float] = {}
    try:
        for start in range(0, len(rows), batch_size):
            indices = list(range(start, min(start + batch_size, len(rows))))
            out, logps, _ = scorer.score(rows, indices, ref)
            add_pair_sums(sums, out, logps)
    finally:
        scorer.policy.train(was_training)
    n = max(len(rows), 1)
    return {key: value / n for key, value in sums.items()}


def add_pair_sums(sums: dict[str, float], out: LossOutput, logps: SequenceLogps) -> None:
    """Add a batch's per-pair values to running sums (divide by the pair count for means):
    the standard ones, and whatever further metrics the loss reports (``loss/<part>``, ``kl``).

    Accuracy is the share of pairs whose chosen reward beats the rejected one, or of examples
    the loss counts as correct where it says (KTO)."""
    margin = out.chosen_rewards - out.rejected_rewards
    correct = out.correct if out.correct is not None else margin > 0
    values = {
        "loss": out.losses.detach().sum(),
        "accuracy": correct.float().sum(),
        "margin": margin.sum(),
        "chosen_reward": out.chosen_rewards.sum(),
        "rejected_reward": out.rejected_rewards.sum(),
        "chosen_logps": logps.chosen.detach().sum(),
        "rejected_logps": logps.rejected.detach().sum(),
        **{key: value.detach().sum() for key, value in out.metrics.items()},
    }
    for key, value in values.items():
        sums[key] = sums.get(key, 0.0) + float(value)
