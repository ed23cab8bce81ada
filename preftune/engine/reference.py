"""Reference log-probs: one no-grad pass before training, cached across runs.

With LoRA the reference is the base model with its adapters disabled, never a second copy;
without LoRA it is the policy itself before its first update (precomputed log-probs) or a
frozen copy of the starting weights (log-probs computed during training, or a resumed run).
The cache key covers the model's identity, its dtype and the exact token ids, so a sweep over
beta or the learning rate on the same model and data computes the reference once.

LD-DPO (``ld_alpha``) changes the reference sums as it changes the policy's: the batches carry
its token weights (``forward.layout``), and the reference scores them as they are. Precomputed
and cached reference log-probs therefore depend on ``ld_alpha``, and so does the cache key.
WPO weights come from the policy only: the reference pass never computes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from preftune.engine.forward import FastPaths, ResponseLogps, score_batch
from preftune.engine.logprobs import PairBatch, SequenceLogps
from preftune.engine.packing import PackedPairs
from preftune.fsutil import atomic_path


@torch.no_grad()
def reference_logps(policy: Any, ref_model: Any | None, batch: PairBatch | PackedPairs,
                    paths: FastPaths, policy_is_reference: bool = False) -> SequenceLogps:
    """The reference's log-probs for one batch: the frozen copy, the policy sans adapters, or,
    with ``policy_is_reference`` (full fine-tuning before its first update), the policy.
    LD-DPO weights are the batch's own (laid out with ``paths.ld_alpha``); no WPO weights."""
    paths = replace(paths, wpo=False)
    if ref_model is not None:
        return score_batch(ResponseLogps(ref_model, paths), batch)
    if policy_is_reference:
        return score_batch(ResponseLogps(policy, paths), batch)
    with policy.disable_adapter():
        return score_batch(ResponseLogps(policy, paths), batch)


def reference_pass(policy: Any, ref_model: Any | None, batches: Iterable[PairBatch | PackedPairs],
                   paths: FastPaths, policy_is_reference: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(N,) chosen and rejected reference log-prob sums of every pair, in order.

    ``policy_is_reference``: the policy holds the starting weights (no step taken yet), so it
    is scored as it is and no frozen copy needs loading.
    """
    chosen: list[np.ndarray] = []
    rejected: list[np.ndarray] = []
    was_training = policy.training
    policy.eval()  # no dropout in the reference
    try:
        for batch in batches:
            logps = reference_logps(policy, ref_model, batch, paths, policy_is_reference)
            chosen.append(logps.chosen.float().cpu().numpy())
            rejected.append(logps.rejected.float().cpu().numpy())
    finally:
        policy.train(was_training)
    if not chosen:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(chosen), np.concatenate(rejected)


def cache_key(model_source: str, dtype: str, rows: pa.Table,
              ld_alpha: float | None = None) -> str:
    """A key that changes when the model, its dtype, any token id or LD-DPO's ``ld_alpha``
    changes (None and 1.0 both mean plain sums: the key of a run without LD-DPO)."""
    h = hashlib.sha256()
    identity = {"model": _model_identity(model_source), "dtype": dtype}
    if ld_alpha not in (None, 1.0):
        identity["ld_alpha"] = float(ld_alpha)
    h.update(json.dumps(identity).encode())
    for name in ("prompt_ids", "chosen_ids", "rejected_ids"):
        column = rows.column(name).combine_chunks()
        h.update(np.asarray(column.offsets).tobytes())
        h.update(np.asarray(column.values).tobytes())
    return h.hexdigest()[:32]


def _model_identity(source: str) -> Any:
    path = Path(source)
    if not path.is_dir():
        return source  # a hub id: its revision is whatever the hub serves under that name
    files = sorted(p for p in path.iterdir()
                   if p.suffix in (".safetensors", ".bin", ".json") and p.is_file())
    return [str(path.resolve())] + [[p.name, p.stat().st_size, p.stat().st_mtime_ns]
                                    for p in files]


def load_cached(cache_dir: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    path = cache_dir / f"{key}.npz"
    if not path.exists():
        return None
    with np.load(path) as data:
        return data["chosen"], data["rejected"]


def store_cached(cache_dir: Path, key: str, chosen: np.ndarray, rejected: np.ndarray) -> None:
    with atomic_path(cache_dir / f"{key}.npz") as tmp, tmp.open("wb") as f:
        np.savez(f, chosen=chosen, rejected=rejected)
