"""Packed pair layouts: the prompt computed once, several pairs per row, no padding waste.

A pair is laid out as one *segment* ``prompt + chosen + rejected`` (``shared_prompt``) or as
two segments ``prompt + chosen`` and ``prompt + rejected``. Segments are packed into rows
(first-fit decreasing, rows as long as the longest segment), and an attention mask keeps them
apart: a token sees the earlier tokens of its own segment, except that rejected tokens never
see chosen ones. Positions of the rejected response continue from the prompt, so each response
reads exactly what it would read after the prompt alone.

A sliding window (Mistral, Gemma 2 and 3, Qwen2's windowed layers) counts in positions, not
row offsets: a query at position q sees keys at positions above ``q - window``, exactly what it
sees in a sequence of its own. Models whose layers differ take one mask per kind of layer.

Only the hidden states that predict a response token are scored: ``hidden_index`` points at
them (flat over rows × positions) and ``labels`` holds the token each one predicts. The first
token of both responses is predicted by the prompt's last position. ``owner`` maps each scored
token to its sequence: pair i's chosen response is sequence i, its rejected one ``B + i``.
With ``ld_alpha`` (LD-DPO), ``ld_weight`` holds each scored token's weight in its response's
sum, as ``logprobs.ld_weights`` defines it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from preftune.engine.logprobs import ld_weights

PROMPT, CHOSEN, REJECTED, PAD = 0, 1, 2, 3


@dataclass
class PackedPairs:
    input_ids: torch.Tensor     # (R, L)
    position_ids: torch.Tensor  # (R, L)
    segment_ids: torch.Tensor   # (R, L) segment number within its row; -1 on padding
    part: torch.Tensor          # (R, L) PROMPT, CHOSEN, REJECTED or PAD
    hidden_index: torch.Tensor  # (N,) flat index into R * L of each scored position
    labels: torch.Tensor        # (N,) the response token each scored position predicts
    owner: torch.Tensor         # (N,) sequence of each scored token: chosen i → i, rejected → B + i
    num_pairs: int
    ld_weight: torch.Tensor | None = None  # (N,) float32 LD-DPO weights; None: all 1

    def to(self, device: torch.device | str) -> PackedPairs:
        return PackedPairs(
            self.input_ids.to(device), self.position_ids.to(device), self.segment_ids.to(device),
            self.part.to(device), self.hidden_index.to(device), self.labels.to(device),
            self.owner.to(device), self.num_pairs,
            None if self.ld_weight is None else self.ld_weight.to(device))

    @property
    def num_tokens(self) -> int:
        """Tokens read by the model (padding excluded)."""
        return int((self.part != PAD).sum())

    def allowed(self, window: int | None = None) -> torch.Tensor:
        """(R, 1, L, L) bool: may query position q attend to key position k; with a sliding
        ``window``, only keys less than ``window`` positions back."""
        seg, part, pos = self.segment_ids, self.part, self.position_ids
        length = seg.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=seg.device).tril()
        same = seg[:, :, None] == seg[:, None, :]                                 # (R, L, L)
        crossing = (part[:, :, None] == REJECTED) & (part[:, None, :] == CHOSEN)  # (R, L, L)
        allowed = same & causal & ~crossing
        if window is not None:
            allowed &= pos[:, :, None] - pos[:, None, :] < window                 # (R, L, L)
        return allowed.unsqueeze(1)

    def attention_mask(self, implementation: str, dtype: torch.dtype,
                       window: int | None = None) -> Any:
        """The mask in the form ``implementation`` takes: a bool mask for SDPA, an additive
        float mask for eager attention, a BlockMask for FlexAttention."""
        if implementation == "flex_attention":
            return self.block_mask(window)
        allowed = self.allowed(window)
        if implementation == "sdpa":
            return allowed
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
            ~allowed, torch.finfo(dtype).min)

    def block_mask(self, window: int | None = None) -> Any:
        """A FlexAttention BlockMask of the same rule: blocks no pair reaches are skipped."""
        from torch.nn.attention.flex_attention import create_block_mask

        seg, part, pos = self.segment_ids, self.part, self.position_ids
        # Without a window every key of the segment is near: positions differ by less than L.
        reach = window if window is not None else seg.shape[1] + 1

        def mask_mod(b: Any, h: Any, q: Any, k: Any) -> Any:
            crossing = (part[b, q] == REJECTED) & (part[b, k] == CHOSEN)
            near = pos[b, q] - pos[b, k] < reach
            return (seg[b, q] == seg[b, k]) & (k <= q) & ~crossing & near

        rows, length = seg.shape
        return create_block_mask(mask_mod, B=rows, H=None, Q_LEN=length, KV_LEN=length,
                                 device=seg.device)


def pack_pairs(prompts: list[list[int]], chosen: list[list[int]], rejected: list[list[int]],
               pad_id: int, shared_prompt: bool = True, several_per_row: bool = True,
               ld_alpha: float | None = None) -> PackedPairs:
    """Lay out B pairs as packed rows (see the module docstring); with ``ld_alpha``, LD-DPO's
    weight of every scored token."""
    segments = _segments(prompts, chosen, rejected, shared_prompt)
    rows = _fill_rows([len(s.ids) for s in segments], several_per_row)
    width = max(sum(len(segments[i].ids) for i in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    segment_ids = torch.full((len(rows), width), -1, dtype=torch.long)
    part = torch.full((len(rows), width), PAD, dtype=torch.long)
    hidden_index: list[int] = []
    labels: list[int] = []
    owner: list[int] = []
    for r, row in enumerate(rows):
        offset = 0
        for number, i in enumerate(row):
            segment = segments[i]
            end = offset + len(segment.ids)
            input_ids[r, offset:end] = torch.tensor(segment.ids, dtype=torch.long)
            position_ids[r, offset:end] = torch.tensor(segment.positions, dtype=torch.long)
            segment_ids[r, offset:end] = number
            part[r, offset:end] = torch.tensor(segment.parts, dtype=torch.long)
            base = r * width + offset
            hidden_index += [base + k for k in segment.predictors]
            labels += segment.labels
            owner += segment.owners
            offset = end
    # Padding attends to itself only, so that no softmax row is empty.
    segment_ids[part == PAD] = -1 - torch.arange(int((part == PAD).sum()))
    owners = torch.tensor(owner, dtype=torch.long)
    return PackedPairs(input_ids, position_ids, segment_ids, part,
                       torch.tensor(hidden_index, dtype=torch.long),
                       torch.tensor(labels, dtype=torch.long), owners, len(prompts),
                       None if ld_alpha is None or ld_alpha == 1.0 else
                       _ld_weights(owners, 2 * len(prompts), ld_alpha))


def _ld_weights(owner: torch.Tensor, sequences: int, ld_alpha: float) -> torch.Tensor:
    """(N,) LD-DPO weights of the scored tokens, whose order within a response is its order."""
    counts = torch.bincount(owner, minlength=sequences)                 # (2B,)
    starts = counts.cumsum(0) - counts                                  # (2B,) in owner order
    order = torch.argsort(owner, stable=True)                           # tokens by sequence
    rank = torch.empty_like(owner)
    rank[order] = torch.arange(len(owner)) - starts[owner[order]]       # (N,)
    return ld_weights(rank, owner, counts, ld_alpha)


@dataclass
class _Segment:
    ids: list[int]
    positions: list[int]
    parts: list[int]
    predictors: list[int]  # offsets within the segment of the positions scored
    labels: list[int]
    owners: list[int]


def _segments(prompts: list[list[int]], chosen: list[list[int]], rejected: list[list[int]],
              shared_prompt: bool) -> list[_Segment]:
    b = len(prompts)
    segments = []
    for i, (p, c, r) in enumerate(zip(prompts, chosen, rejected, strict=True)):
        if shared_prompt:
            segments.append(_shared(p, c, r, i, b + i))
        else:
            segments += [_single(p, c, i), _single(p, r, b + i)]
    return segments


def _shared(prompt: list[int], chosen: list[int], rejected: list[int], chosen_owner: int,
            rejected_owner: int) -> _Segment:
    p, c, r = len(prompt), len(chosen), len(rejected)
    # Chosen token k is predicted at p - 1 + k; rejected token 0 by the prompt's last position,
    # rejected token k > 0 at its own position p + c + k - 1.
    rejected_predictors = [p - 1] * min(r, 1) + [p + c + k - 1 for k in range(1, r)]
    segment = _Segment(
        ids=prompt + chosen + rejected,
        positions=list(range(p + c)) + list(range(p, p + r)),
        parts=[PROMPT] * p + [CHOSEN] * c + [REJECTED] * r,
        predictors=[p - 1 + k for k in range(c)] + rejected_predictors,
        labels=chosen + rejected,
        owners=[chosen_owner] * c + [rejected_owner] * r)
    return _without_first_if_no_prompt(segment, p)


def _single(prompt: list[int], response: list[int], owner: int) -> _Segment:
    p, n = len(prompt), len(response)
    segment = _Segment(ids=prompt + response, positions=list(range(p + n)),
                       parts=[PROMPT] * p + [CHOSEN] * n,
                       predictors=[p - 1 + k for k in range(n)], labels=list(response),
                       owners=[owner] * n)
    return _without_first_if_no_prompt(segment, p)


def _without_first_if_no_prompt(segment: _Segment, prompt_length: int) -> _Segment:
    """With an empty prompt nothing predicts a response's first token: it is not scored, as in
    the unpacked computation."""
    if prompt_length > 0:
        return segment
    keep = [k for k, at in enumerate(segment.predictors) if at >= 0]
    return _Segment(segment.ids, segment.positions, segment.parts,
                    [segment.predictors[k] for k in keep], [segment.labels[k] for k in keep],
                    [segment.owners[k] for k in keep])


def _fill_rows(lengths: list[int], several_per_row: bool) -> list[list[int]]:
    """Segment indices per row: first-fit decreasing into rows of the longest segment's length,
    or one segment per row."""
    if not several_per_row:
        return [[i] for i in range(len(lengths))]
    capacity = max(lengths)
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows
