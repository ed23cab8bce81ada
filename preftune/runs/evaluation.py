"""Score models on preference data: preference accuracy, reward margin, loss, log-probs.

What a name stands for comes from ``models.locate``. How pairs are scored (``Scoring``): by
the run's loss against its reference (the base model; for a LoRA run, the same weights with
adapters disabled), reference-free for SimPO/ORPO/SFT, and by average log-probability when
no reference is known. The reference itself is never scored against itself (every reward
would be 0): ``Scoring.for_model`` scores it by average log-probability, and
``average_logps_views`` scores the other models that way beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from preftune.config import TrainConfig
from preftune.data.records import PreferenceDataset
from preftune.data.tokenize import tokenize_pairs
from preftune.engine.evaluate import Scorer
from preftune.engine.logprobs import TokenRows
from preftune.errors import MissingError
from preftune.losses import LOSSES, REFERENCE_FREE, LossOutput, LossParams, PairLogps
from preftune.models.load import load_model, load_tokenizer, resolve_model
from preftune.models.locate import Located, load_located


@dataclass(frozen=True)
class Scoring:
    """How pairs are scored: a loss from the registry, its parameters, and the reference."""

    algo: str
    params: LossParams
    reference: str | None  # a model name; None for reference-free scoring
    description: str

    @classmethod
    def choose(cls, primary: Located, algo: str | None = None, beta: float | None = None,
               reference: str | None = None, reference_free: bool = False) -> Scoring:
        """The run's loss and reference by default; flags override; no reference known means
        reference-free scoring by average log-probability."""
        cfg = primary.run_config or TrainConfig()
        name = algo or (cfg.scoring_algo if primary.run_config else "dpo")
        params = LossParams(beta=beta if beta is not None else cfg.beta,
                            label_smoothing=cfg.label_smoothing,
                            gamma_beta_ratio=cfg.gamma_beta_ratio, sft_weight=0.0)
        if reference_free or name == "sft" or (name not in REFERENCE_FREE and reference is None
                                               and primary.run_config is None):
            return cls.average_logps(params)
        if name in REFERENCE_FREE:
            return cls(name, params, None, f"{name} (reference-free)")
        ref = reference or cfg.model
        return cls(name, params, ref, f"{name}, beta {params.beta:g}, reference {ref}")

    @classmethod
    def average_logps(cls, params: LossParams) -> Scoring:
        """Reference-free: a response's reward is its mean token log-prob (the sft loss)."""
        return cls("sft", params, None, "reference-free: rewards are average log-probabilities")

    @property
    def label(self) -> str:
        """A column header's worth: the loss, or "reference-free" for average log-probs."""
        return "reference-free" if self.algo == "sft" else self.algo

    def is_reference(self, located: Located) -> bool:
        """Whether ``located`` is this scoring's reference model itself (not an adapter on it)."""
        return (self.reference is not None and not located.is_adapter
                and _same_model(self.reference, located.model_dir))

    def for_model(self, located: Located) -> Scoring:
        """This scoring, or average log-probs for the reference (against itself all is 0)."""
        return Scoring.average_logps(self.params) if self.is_reference(located) else self


@dataclass
class EvalResult:
    name: str
    scoring: Scoring  # what every reward, margin and loss here was scored by
    summary: dict[str, float]
    per_pair: list[dict[str, float]] = field(default_factory=list)


def evaluate(located: Located, dataset: PreferenceDataset, scoring: Scoring,
             batch_size: int = 8, max_length: int = 1024, max_prompt_length: int = 512,
             progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Score every pair of ``dataset`` with the model of ``located``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(located.tokenizer_dir)
    tokens = tokenize_pairs(dataset, tokenizer, max_length, max_prompt_length)
    rows = TokenRows.from_dataset(tokens.rows)
    policy = load_located(located).to(device).eval()
    ref_model = None
    if scoring.reference is not None:
        # A LoRA model's base is its reference when the scoring asks for that very base.
        same_base = (located.is_adapter and located.base is not None
                     and _same_model(scoring.reference, located.base))
        if not same_base:
            ref_model = load_model(scoring.reference).to(device).eval()
            ref_model.requires_grad_(False)
    scorer = Scorer(policy, ref_model, LOSSES[scoring.algo], scoring.params,
                    needs_ref=scoring.reference is not None,
                    pad_id=tokenizer.pad_token_id, device=device)
    per_pair: list[dict[str, float]] = []
    records = tokens.rows.data.table.column("record").to_pylist()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            indices = list(range(start, min(start + batch_size, len(rows))))
            out, logps, _ = scorer.score(rows, indices, None)
            pair_logps = PairLogps(logps.chosen, logps.rejected, logps.chosen_tokens,
                                   logps.rejected_tokens)
            per_pair += _pair_rows(indices, [records[i] for i in indices], pair_logps, out)
            if progress is not None:
                progress(min(start + batch_size, len(rows)), len(rows))
    return EvalResult(located.name, scoring, summarize(per_pair), per_pair)


def rescore(result: EvalResult, scoring: Scoring) -> EvalResult:
    """``result``'s pairs under a reference-free ``scoring``, from the log-probs it already
    holds: no model is loaded and nothing runs forward again."""
    if scoring.reference is not None:
        raise ValueError(f"rescore needs a reference-free scoring, got {scoring.description}")
    rows = result.per_pair

    def column(key: str) -> torch.Tensor:
        return torch.tensor([p[key] for p in rows], dtype=torch.float64)  # (N,)

    logps = PairLogps(column("chosen_logps"), column("rejected_logps"),
                      column("chosen_tokens"), column("rejected_tokens"))
    out = LOSSES[scoring.algo](logps, scoring.params)
    per_pair = _pair_rows([int(p["pair"]) for p in rows], [p["record"] for p in rows],
                          logps, out)
    return EvalResult(result.name, scoring, summarize(per_pair), per_pair)


def average_logps_views(results: list[EvalResult]) -> list[EvalResult | None]:
    """For each result scored against a reference, the same pairs by average log-prob, when
    another model was scored that way (being the reference): so that every model has numbers
    on one scale. None where a result needs no second view, or when none does."""
    if not any(r.scoring.algo == "sft" for r in results):
        return [None] * len(results)
    return [None if r.scoring.reference is None
            else rescore(r, Scoring.average_logps(r.scoring.params)) for r in results]


def _pair_rows(indices: list[int], records: list[Any], logps: PairLogps,
               out: LossOutput) -> list[dict[str, float]]:
    """One row per pair: its log-probs, response lengths, rewards, margin, correct, loss."""
    rows = []
    for k, i in enumerate(indices):
        chosen_r = float(out.chosen_rewards[k])
        rejected_r = float(out.rejected_rewards[k])
        rows.append({
            "pair": i, "record": records[k], "loss": float(out.losses[k]),
            "chosen_logps": float(logps.policy_chosen[k]),
            "rejected_logps": float(logps.policy_rejected[k]),
            "chosen_tokens": float(logps.chosen_tokens[k]),
            "rejected_tokens": float(logps.rejected_tokens[k]),
            "chosen_reward": chosen_r, "rejected_reward": rejected_r,
            "margin": chosen_r - rejected_r, "correct": float(chosen_r > rejected_r),
        })
    return rows


def summarize(per_pair: list[dict[str, float]]) -> dict[str, float]:
    n = max(len(per_pair), 1)

    def mean(key: str) -> float:
        return sum(p[key] for p in per_pair) / n

    return {"pairs": float(len(per_pair)), "preference_accuracy": mean("correct"),
            "reward_margin": mean("margin"), "loss": mean("loss"),
            "chosen_logps": mean("chosen_logps"), "rejected_logps": mean("rejected_logps")}


def _same_model(a: str, b: str) -> bool:
    """Whether model names ``a`` and ``b`` resolve to the same model (directory or hub id)."""
    try:
        return _resolved(a) == _resolved(b)
    except MissingError:
        return False


def _resolved(name: str) -> str:
    resolved = resolve_model(name)
    path = Path(resolved)
    return str(path.resolve()) if path.exists() else resolved
