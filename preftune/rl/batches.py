"""Batches from the trajectory API: the trainer's client, and whole groups flattened into the
tensors a GRPO step takes (next-token labels, one advantage per sequence, the inference
engine's log-probs aligned with the labels)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import torch

from preftune.errors import TrainingError, UsageError
from preftune.rl.grpo import group_advantages
from preftune.rl.logps import PROMPT


@dataclass
class Sequences:
    """A batch flattened to sequences: input ids, per-token targets and what goes with them."""

    input_ids: torch.Tensor  # (B, T) right-padded, the last token dropped
    labels: torch.Tensor  # (B, T) next token, PROMPT where not a completion token
    advantages: torch.Tensor  # (B,)
    old_logps: torch.Tensor | None  # (B, T) inference log-probs aligned with labels
    scores: list[float]

    def to(self, device: torch.device) -> Sequences:
        old = self.old_logps.to(device) if self.old_logps is not None else None
        return Sequences(self.input_ids.to(device), self.labels.to(device),
                         self.advantages.to(device), old, self.scores)

    def select(self, rows: list[int]) -> Sequences:
        """Sequences ``rows``, cut after the last completion token any of them has: what
        follows it changes nothing that is scored (attention is causal)."""
        labels = self.labels[rows]
        scored = (labels != PROMPT).any(0).nonzero()
        width = int(scored.max()) + 1 if len(scored) else 1
        old = self.old_logps[rows, :width] if self.old_logps is not None else None
        return Sequences(self.input_ids[rows, :width], labels[:, :width],
                         self.advantages[rows], old, [self.scores[i] for i in rows])


def flatten(batch: list[dict[str, Any]], seq_len: int, scale: bool) -> Sequences:
    """Whole groups → sequences; advantages per group where the environment sent none."""
    ids: list[list[int]] = []
    labels: list[list[int]] = []
    advantages: list[float] = []
    inference: list[list[float]] | None = []
    scores: list[float] = []
    for group in batch:
        sent = group.get("advantages")
        computed = group_advantages(group["scores"], scale=scale).tolist()
        for i, tokens in enumerate(group["tokens"]):
            tokens, mask = tokens[:seq_len + 1], group["masks"][i][:seq_len + 1]
            ids.append(tokens[:-1])
            labels.append([t if m != PROMPT else PROMPT for t, m in zip(tokens[1:], mask[1:],
                                                                         strict=True)])
            # An advantage per token may be sent; GRPO's is one per sequence: their mean.
            advantages.append(float(sum(sent[i]) / len(sent[i])) if sent and sent[i]
                              else computed[i])
            scores.append(float(group["scores"][i]))
            logps = (group.get("inference_logprobs") or [None] * len(group["tokens"]))[i]
            if logps is None or inference is None:
                inference = None
            else:
                inference.append(list(logps[1:seq_len + 1]))
    width = max(len(x) for x in ids)

    def pad(rows: list[list[Any]], value: Any, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=dtype)

    return Sequences(pad(ids, 0, torch.long), pad(labels, PROMPT, torch.long),
                     torch.tensor(advantages, dtype=torch.float32),
                     pad(inference, 0.0, torch.float32) if inference else None, scores)


class TrajectoryClient:
    """The trainer's side of the trajectory API: register, then pull batches."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def register(self, batch_size: int, seq_len: int, weights_dir: Path, publish_every: int,
                 starting_step: int, num_steps: int) -> None:
        """Tell the API the batches to form and the step training starts at (a resumed run's
        next step), as Atropos' trainers do."""
        body = {"wandb_group": "", "wandb_project": "", "batch_size": batch_size,
                "max_token_len": seq_len, "checkpoint_dir": str(weights_dir),
                "save_checkpoint_interval": publish_every, "starting_step": starting_step,
                "num_steps": num_steps}
        self._call("POST", "/register", json=body)

    def batch(self, timeout_s: float, poll_s: float = 0.2) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._call("GET", "/batch").get("batch")
            if found:
                return list(found)
            if time.monotonic() > deadline:
                raise TrainingError(f"no batch from the trajectory API at {self.url} for "
                                    f"{timeout_s:.0f} s", [
                                        "check that an environment is running and sending "
                                        "groups (preftune rl env serve)"])
            time.sleep(poll_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, **kwargs)
            response.raise_for_status()
        except httpx.TransportError as e:
            raise UsageError(f"cannot reach the trajectory API at {self.url}: {e}",
                             ["start it with: preftune rl api"]) from e
        except httpx.HTTPStatusError as e:
            raise TrainingError(f"the trajectory API refused {method} {path}: "
                                f"{e.response.text[:300]}") from e
        body = response.json()
        return body if isinstance(body, dict) else {}
