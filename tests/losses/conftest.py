"""Random token-level batches, and the stand-ins that run TRL 1.16's own loss code on them.

The parity tests execute TRL's code, not a copy of its formulas. A trainer method is called on
an instance made with ``object.__new__(Trainer)`` (no ``__init__``: no model, dataset or
tokenizer to build) holding only the attributes that method reads; the model is a stand-in whose
output gives exactly the per-token log-probs drawn here. All offline, in milliseconds.

DPOTrainer runs on pairs (rows [chosen; rejected]); KTOTrainer on the same rows read as unpaired
examples (the first B rows) and their mismatched KL completions (the last B).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
import torch
from torch import Tensor
from trl import DPOTrainer, KTOTrainer
from trl.trainer.utils import FusedCausalLMOutput

from preftune.losses import ALGORITHMS, LossParams, PairLogps

PAIRS = 16
VOCAB = 8
MAX_PROMPT = 3
MAX_RESPONSE = 8

TrainerT = TypeVar("TrainerT")


@dataclass(frozen=True)
class TokenBatch:
    """Pairs laid out as TRL's collators do: rows [chosen; rejected], prompt then response.

    ``policy[:, t]`` is the policy log-prob of token ``t + 1``, zero off the response, so a
    row's sum is the response log-prob.
    """

    input_ids: Tensor        # (2B, T)
    attention_mask: Tensor   # (2B, T), 0 on padding
    completion_mask: Tensor  # (2B, T), 1 on response tokens
    policy: Tensor           # (2B, T-1)
    ref_logps: Tensor        # (2B,) summed reference log-probs of the responses

    @property
    def pairs(self) -> int:
        return self.input_ids.size(0) // 2

    @property
    def logps(self) -> PairLogps:
        """What preftune's losses take: the per-sequence sums and lengths."""
        sums = self.policy.sum(dim=1)  # (2B,)
        tokens = self.completion_mask.sum(dim=1)  # (2B,)
        b = self.pairs
        return PairLogps(sums[:b], sums[b:], tokens[:b], tokens[b:],
                         self.ref_logps[:b], self.ref_logps[b:])

    @property
    def weighted_logps(self) -> PairLogps:
        """`logps` with each sequence's WPO weight, from the same token log-probs."""
        weights = self.wpo_weights()  # (2B,)
        b = self.pairs
        return dataclasses.replace(self.logps, chosen_weight=weights[:b],
                                   rejected_weight=weights[b:])

    def log_sum_sq_probs(self) -> Tensor:
        """(2B, T-1) ``log sum_v p_v^2`` of each response position's distribution in `logits`
        (the drawn token at p, the other VOCAB - 1 at (1 - p) / (VOCAB - 1) each), 0 elsewhere."""
        p = self.policy.exp()
        sum_sq = p ** 2 + (1 - p) ** 2 / (VOCAB - 1)
        return torch.where(self.completion_mask[:, 1:].bool(), sum_sq.log(),
                           torch.zeros_like(sum_sq))

    def wpo_weights(self) -> Tensor:
        """(2B,) WPO's ``exp(mean over response tokens of log p - log sum p^2)``."""
        aligned = (self.policy - self.log_sum_sq_probs()).sum(dim=1)
        return torch.exp(aligned / self.completion_mask.sum(dim=1).clamp(min=1))

    def pair(self, i: int) -> TokenBatch:
        """The batch of pair i alone."""
        rows = [i, self.pairs + i]
        return TokenBatch(self.input_ids[rows], self.attention_mask[rows],
                          self.completion_mask[rows], self.policy[rows], self.ref_logps[rows])

    def labels(self) -> Tensor:
        """Token ids on the response, -100 elsewhere: the labels of TRL's CPO and ORPO batches."""
        return self.input_ids.masked_fill(self.completion_mask == 0, -100)

    def logits(self) -> Tensor:
        """(2B, T, V) logits whose log-softmax gives each response token its drawn log-prob.

        Each predicting row is already a log-distribution: the drawn log-prob on the next token,
        the rest of the mass spread evenly; rows that predict no response token are uniform.
        """
        predicts_response = self.completion_mask[:, 1:, None].bool()  # (2B, T-1, 1)
        rest = torch.log((1 - self.policy.exp()) / (VOCAB - 1))  # (2B, T-1)
        rows = rest[..., None].expand(-1, -1, VOCAB).clone()
        rows.scatter_(-1, self.input_ids[:, 1:, None], self.policy[..., None])
        rows = torch.where(predicts_response, rows, torch.zeros_like(rows))
        last = torch.zeros_like(rows[:, :1])  # the last position predicts nothing
        return torch.cat([rows, last], dim=1)

    def preference_inputs(self) -> dict[str, Tensor]:
        """The tokenized batch TRL's CPOTrainer and ORPOTrainer read."""
        b, labels = self.pairs, self.labels()
        inputs = {}
        for side, rows in (("chosen", slice(0, b)), ("rejected", slice(b, None))):
            inputs[f"{side}_input_ids"] = self.input_ids[rows]
            inputs[f"{side}_attention_mask"] = self.attention_mask[rows]
            inputs[f"{side}_labels"] = labels[rows]
        return inputs


def random_token_batch(dtype: torch.dtype = torch.float64, pairs: int = PAIRS,
                       chosen_tokens: int | None = None,
                       prompt_tokens: int | None = None) -> TokenBatch:
    """Seeded random pairs: prompts of 1..3 tokens, responses of 1..8, token log-probs in
    (-3, -0.05). `chosen_tokens` / `prompt_tokens` fix those lengths for every pair."""
    torch.manual_seed(0)
    rows = 2 * pairs
    prompt = torch.randint(1, MAX_PROMPT + 1, (rows,))
    response = torch.randint(1, MAX_RESPONSE + 1, (rows,))
    if prompt_tokens is not None:
        prompt.fill_(prompt_tokens)
    if chosen_tokens is not None:
        response[:pairs] = chosen_tokens
    width = int((prompt + response).max())
    position = torch.arange(width).expand(rows, -1)  # (2B, T)
    attention_mask = (position < (prompt + response)[:, None]).long()
    completion_mask = attention_mask * (position >= prompt[:, None]).long()
    input_ids = torch.randint(1, VOCAB, (rows, width)) * attention_mask  # 0 pads
    token_logps = torch.empty(rows, width - 1, dtype=dtype).uniform_(-3.0, -0.05)
    policy = token_logps * completion_mask[:, 1:]
    ref_logps = (torch.empty_like(policy).uniform_(-3.0, -0.05) * completion_mask[:, 1:]).sum(1)
    return TokenBatch(input_ids, attention_mask, completion_mask, policy, ref_logps)


def identity(tensor: Tensor) -> Tensor:
    return tensor


# Single process on CPU: gathering across ranks returns the tensor as is.
ACCELERATOR = SimpleNamespace(device=torch.device("cpu"), gather=identity,
                              gather_for_metrics=identity)


def bare_trainer(cls: type[TrainerT], **attributes: Any) -> TrainerT:
    """An instance of a TRL trainer class without running its __init__, holding `attributes`."""
    trainer = object.__new__(cls)
    vars(trainer).update(accelerator=ACCELERATOR, **attributes)
    return trainer


class FusedHeadModel(torch.nn.Module):
    """Stands in for a model patched by TRL's ``add_fused_lm_head``, called with
    ``fused_lm_head=True``: per-token log-probs of the labels (and WPO's ``log sum p^2``), zero
    where the label is -100. Given `input_ids`, it checks that it is called with that batch."""

    def __init__(self, token_logps: Tensor, log_sum_sq_probs: Tensor | None = None,
                 input_ids: Tensor | None = None) -> None:
        super().__init__()
        self.token_logps = token_logps  # (2B, T-1)
        self.log_sum_sq_probs = log_sum_sq_probs
        self.input_ids = input_ids

    @classmethod
    def of(cls, batch: TokenBatch, rows: slice = slice(None)) -> FusedHeadModel:
        """The stand-in for `batch`'s `rows`."""
        return cls(batch.policy[rows], batch.log_sum_sq_probs()[rows], batch.input_ids[rows])

    def forward(self, *, labels: Tensor, fused_lm_head: bool, input_ids: Tensor | None = None,
                **_: Any) -> FusedCausalLMOutput:
        assert fused_lm_head
        if self.input_ids is not None:
            assert input_ids is not None and torch.equal(input_ids, self.input_ids)
        scored = labels[:, 1:] != -100  # (2B, T-1)
        zeros = torch.zeros_like(self.token_logps)
        log_sum_sq = None
        if self.log_sum_sq_probs is not None:
            log_sum_sq = self.log_sum_sq_probs.masked_fill(~scored, 0.0)
        return FusedCausalLMOutput(log_probs=self.token_logps.masked_fill(~scored, 0.0),
                                   entropy=zeros, mean_logits=zeros, log_sum_sq_probs=log_sum_sq,
                                   is_top1=torch.zeros_like(scored))


class UnpairedModel(torch.nn.Module):
    """Stands in for the policy under KTOTrainer: the examples' stand-in or the KL completions',
    by the batch it is called with."""

    def __init__(self, examples: FusedHeadModel, mismatched: FusedHeadModel) -> None:
        super().__init__()
        self.examples, self.mismatched = examples, mismatched

    def forward(self, *, input_ids: Tensor, **kwargs: Any) -> FusedCausalLMOutput:
        assert not torch.equal(self.examples.input_ids, self.mismatched.input_ids)
        if torch.equal(input_ids, self.mismatched.input_ids):
            return self.mismatched(input_ids=input_ids, **kwargs)
        return self.examples(input_ids=input_ids, **kwargs)


class LogitsModel:
    """Stands in for a causal LM: returns the given logits for the batch it was built for."""

    def __init__(self, input_ids: Tensor, logits: Tensor) -> None:
        self.input_ids, self.logits = input_ids, logits

    def __call__(self, input_ids: Tensor, **_: Any) -> SimpleNamespace:
        assert torch.equal(input_ids, self.input_ids), "called with another batch than built for"
        return SimpleNamespace(logits=self.logits)


@dataclass(frozen=True)
class TrlPairs:
    """Per-pair losses and rewards from TRL, (B,) each."""

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor


def dpo_trainer(loss_types: list[str], params: LossParams,
                loss_weights: list[float] | None = None) -> DPOTrainer:
    """A DPOTrainer holding what ``_compute_loss`` reads, set as `params` say, with
    precomputed reference log-probs (``precompute_ref_log_probs=True``), so that no reference
    model is called."""
    return bare_trainer(
        DPOTrainer, beta=params.beta, label_smoothing=params.label_smoothing,
        loss_types=loss_types, loss_weights=loss_weights or [1.0] * len(loss_types),
        f_divergence_type=params.f_divergence, f_alpha_divergence_coef=params.f_alpha,
        args=SimpleNamespace(discopop_tau=params.discopop_tau), ld_alpha=None,
        precompute_ref_logps=True, use_weighting=params.use_weighting, aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1,
    )


def dpo_step(trainer: DPOTrainer, batch: TokenBatch) -> Tensor:
    """One ``DPOTrainer._compute_loss`` on `batch`: the mean loss over its pairs."""
    trainer.model = FusedHeadModel.of(batch)
    b = batch.pairs
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
              "completion_mask": batch.completion_mask,
              "ref_chosen_logps": batch.ref_logps[:b], "ref_rejected_logps": batch.ref_logps[b:]}
    return trainer._compute_loss(trainer.model, inputs, return_outputs=False)


def trl_dpo_per_pair(batch: TokenBatch, loss_types: list[str], params: LossParams,
                     loss_weights: list[float] | None = None) -> TrlPairs:
    """``DPOTrainer._compute_loss`` once per pair, since it returns only the batch mean; the
    rewards are read from the metrics it logs."""
    trainer = dpo_trainer(loss_types, params, loss_weights)
    losses = torch.stack([dpo_step(trainer, batch.pair(i)) for i in range(batch.pairs)])
    metrics = trainer._metrics["train"]
    return TrlPairs(losses,
                    torch.tensor(metrics["rewards/chosen"], dtype=batch.policy.dtype),
                    torch.tensor(metrics["rewards/rejected"], dtype=batch.policy.dtype))


def trl_dpo_batch_mean(batch: TokenBatch, loss_types: list[str], params: LossParams,
                       loss_weights: list[float] | None = None) -> Tensor:
    """``DPOTrainer._compute_loss`` once on the whole batch: the mean loss."""
    return dpo_step(dpo_trainer(loss_types, params, loss_weights), batch)


@dataclass(frozen=True)
class TrlUnpaired:
    """KTOTrainer's mean loss over a batch and the metrics it logged for it."""

    loss: Tensor
    metrics: dict[str, float]


def trl_kto_batch(batch: TokenBatch, labels: Tensor, loss_type: str,
                  params: LossParams) -> TrlUnpaired:
    """``KTOTrainer._compute_loss`` once on `batch` read as unpaired examples: the first B
    rows are the examples' completions, labelled by `labels` (B,), and the last B their
    mismatched KL completions; reference log-probs precomputed."""
    kl = loss_type != "apo_zero_unpaired"  # as KTOTrainer's calculate_KL
    trainer = bare_trainer(
        KTOTrainer, loss_type=loss_type, beta=params.beta, calculate_KL=kl,
        desirable_weight=params.desirable_weight, undesirable_weight=params.undesirable_weight,
        precompute_ref_logps=True, aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1,
    )
    examples, mismatched = slice(None, batch.pairs), slice(batch.pairs, None)
    trainer.model = UnpairedModel(FusedHeadModel.of(batch, examples),
                                  FusedHeadModel.of(batch, mismatched))
    inputs = {"input_ids": batch.input_ids[examples],
              "attention_mask": batch.attention_mask[examples],
              "completion_mask": batch.completion_mask[examples],
              "label": labels, "ref_logps": batch.ref_logps[examples]}
    if kl:
        inputs.update(KL_input_ids=batch.input_ids[mismatched],
                      KL_attention_mask=batch.attention_mask[mismatched],
                      KL_completion_mask=batch.completion_mask[mismatched],
                      ref_KL_logps=batch.ref_logps[mismatched])
    loss = trainer._compute_loss(trainer.model, inputs, return_outputs=False)
    metrics = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    return TrlUnpaired(loss, metrics)


@pytest.fixture
def token_batch() -> Callable[..., TokenBatch]:
    """Seeded random pairs at token level; see `random_token_batch`."""
    return random_token_batch


@pytest.fixture
def trl_dpo() -> Callable[..., TrlPairs]:
    """Per-pair results of TRL's ``DPOTrainer._compute_loss``; see `trl_dpo_per_pair`."""
    return trl_dpo_per_pair


@pytest.fixture
def trl_dpo_mean() -> Callable[..., Tensor]:
    """TRL's ``DPOTrainer._compute_loss`` on a whole batch; see `trl_dpo_batch_mean`."""
    return trl_dpo_batch_mean


@pytest.fixture
def trl_kto() -> Callable[..., TrlUnpaired]:
    """TRL's ``KTOTrainer._compute_loss`` on a batch read as unpaired; see `trl_kto_batch`."""
    return trl_kto_batch


@pytest.fixture
def algorithm_params() -> Callable[..., LossParams]:
    """LossParams with an algorithm's recommended defaults (the table's), then `overrides`."""
    def params(name: str, **overrides: Any) -> LossParams:
        defaults = {k: v for k, v in ALGORITHMS[name].defaults.items()
                    if k in LossParams.__dataclass_fields__}
        return LossParams(**{**defaults, **overrides})
    return params


@pytest.fixture
def trl_trainer() -> Callable[..., Any]:
    """A TRL trainer instance, without __init__, holding the given attributes."""
    return bare_trainer


@pytest.fixture
def logits_model() -> Callable[[TokenBatch], LogitsModel]:
    """A stand-in causal LM whose logits give `batch`'s per-token log-probs."""
    return lambda batch: LogitsModel(batch.input_ids, batch.logits())
