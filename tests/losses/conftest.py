"""Random token-level batches, and the stand-ins that run TRL 1.16's own loss code on them.

The parity tests execute TRL's code, not a copy of its formulas. A trainer method is called on
an instance made with ``object.__new__(Trainer)`` (no ``__init__``: no model, dataset or
tokenizer to build) holding only the attributes that method reads; the model is a stand-in whose
output gives exactly the per-token log-probs drawn here. All offline, in milliseconds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
import torch
from torch import Tensor
from trl import DPOTrainer
from trl.trainer.utils import FusedCausalLMOutput

from preftune.losses import PairLogps

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
    ``fused_lm_head=True``: per-token log-probs of the labels, zero where the label is -100."""

    def __init__(self, token_logps: Tensor) -> None:
        super().__init__()
        self.token_logps = token_logps  # (2B, T-1)

    def forward(self, *, labels: Tensor, fused_lm_head: bool, **_: Any) -> FusedCausalLMOutput:
        assert fused_lm_head
        scored = labels[:, 1:] != -100  # (2B, T-1)
        zeros = torch.zeros_like(self.token_logps)
        return FusedCausalLMOutput(log_probs=self.token_logps.masked_fill(~scored, 0.0),
                                   entropy=zeros, mean_logits=zeros,
                                   is_top1=torch.zeros_like(scored))


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


def dpo_trainer(loss_types: list[str], beta: float, label_smoothing: float = 0.0,
                loss_weights: list[float] | None = None) -> DPOTrainer:
    """A DPOTrainer holding what ``_compute_loss`` reads, with precomputed reference log-probs
    (``precompute_ref_log_probs=True``), so that no reference model is called."""
    return bare_trainer(
        DPOTrainer, beta=beta, label_smoothing=label_smoothing, loss_types=loss_types,
        loss_weights=loss_weights or [1.0] * len(loss_types), f_divergence_type="reverse_kl",
        ld_alpha=None, precompute_ref_logps=True, use_weighting=False, aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1,
    )


def dpo_step(trainer: DPOTrainer, batch: TokenBatch) -> Tensor:
    """One ``DPOTrainer._compute_loss`` on `batch`: the mean loss over its pairs."""
    trainer.model = FusedHeadModel(batch.policy)
    b = batch.pairs
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
              "completion_mask": batch.completion_mask,
              "ref_chosen_logps": batch.ref_logps[:b], "ref_rejected_logps": batch.ref_logps[b:]}
    return trainer._compute_loss(trainer.model, inputs, return_outputs=False)


def trl_dpo_per_pair(batch: TokenBatch, loss_types: list[str], beta: float,
                     label_smoothing: float = 0.0,
                     loss_weights: list[float] | None = None) -> TrlPairs:
    """``DPOTrainer._compute_loss`` once per pair, since it returns only the batch mean; the
    rewards are read from the metrics it logs."""
    trainer = dpo_trainer(loss_types, beta, label_smoothing, loss_weights)
    losses = torch.stack([dpo_step(trainer, batch.pair(i)) for i in range(batch.pairs)])
    metrics = trainer._metrics["train"]
    return TrlPairs(losses,
                    torch.tensor(metrics["rewards/chosen"], dtype=batch.policy.dtype),
                    torch.tensor(metrics["rewards/rejected"], dtype=batch.policy.dtype))


def trl_dpo_batch_mean(batch: TokenBatch, loss_types: list[str], beta: float,
                       label_smoothing: float = 0.0) -> Tensor:
    """``DPOTrainer._compute_loss`` once on the whole batch: the mean loss."""
    return dpo_step(dpo_trainer(loss_types, beta, label_smoothing), batch)


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
def trl_trainer() -> Callable[..., Any]:
    """A TRL trainer instance, without __init__, holding the given attributes."""
    return bare_trainer


@pytest.fixture
def logits_model() -> Callable[[TokenBatch], LogitsModel]:
    """A stand-in causal LM whose logits give `batch`'s per-token log-probs."""
    return lambda batch: LogitsModel(batch.input_ids, batch.logits())
