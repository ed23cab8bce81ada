"""The forward pass that scores pairs: plain, or through the fast paths.

Plain: 2B padded sequences through the whole model, full-vocabulary logits at every position
(``logprobs.sequence_logps``). Fast (each part switchable in the config):

- ``shared_prompt``: prompt + chosen + rejected in one segment, prompt computed once;
- ``pack_pairs``: several segments per row, no padding beyond the row's end;
- ``chunked_logps``: the LM head only at response positions, a chunk of tokens at a time.

Both give the same (B,) sums; the tests hold them to each other.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from preftune.engine.chunked import chunked_token_logps
from preftune.engine.logprobs import PairBatch, SequenceLogps, TokenRows, sequence_logps
from preftune.engine.logprobs import token_log_probs as plain_token_log_probs
from preftune.engine.packing import PackedPairs, pack_pairs

MASKED_ATTENTION = ("sdpa", "eager", "flex_attention")


@dataclass(frozen=True)
class FastPaths:
    shared_prompt: bool = True
    pack_pairs: bool = True
    chunked_logps: bool = True
    chunk_tokens: int = 1024

    @classmethod
    def from_config(cls, cfg: Any) -> FastPaths:
        return cls(cfg.shared_prompt, cfg.pack_pairs, cfg.chunked_logps, cfg.logps_chunk_tokens)

    @property
    def packed(self) -> bool:
        """Whether batches take the packed layout (anything but the plain path does)."""
        return self.shared_prompt or self.pack_pairs or self.chunked_logps

    def usable_with(self, model: Any) -> FastPaths:
        """These paths, less what ``model`` cannot take (with a warning saying why)."""
        reason = unsupported_reason(model)
        if reason is None or not self.packed:
            return self
        warnings.warn(f"the packed forward pass is off: {reason}", stacklevel=2)
        return FastPaths(False, False, False, self.chunk_tokens)


def unsupported_reason(model: Any) -> str | None:
    config = model.config
    implementation = getattr(config, "_attn_implementation", None) or "eager"
    if implementation not in MASKED_ATTENTION:
        return (f"attention implementation {implementation!r} takes no custom mask "
                f"(use one of {', '.join(MASKED_ATTENTION)})")
    for name in ("final_logit_softcapping", "logit_scale"):
        if getattr(config, name, None) not in (None, 1.0):
            return f"the model transforms its logits ({name})"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models are scored whole"
    return None


def layout(rows: TokenRows, indices: list[int], pad_id: int,
           paths: FastPaths) -> PairBatch | PackedPairs:
    """The batch of pairs ``indices`` in the layout ``paths`` asks for."""
    if not paths.packed:
        return rows.batch(indices, pad_id)
    return pack_pairs([rows.prompt_ids[i] for i in indices],
                      [rows.chosen_ids[i] for i in indices],
                      [rows.rejected_ids[i] for i in indices], pad_id,
                      shared_prompt=paths.shared_prompt, several_per_row=paths.pack_pairs)


class ResponseLogps(torch.nn.Module):
    """A causal LM whose forward returns summed response log-probs: what DDP or FSDP wraps.

    ``forward(batch)`` returns (2B,) sums and (2B,) token counts, chosen sequences first.
    """

    def __init__(self, lm: Any, paths: FastPaths) -> None:
        super().__init__()
        self.lm = lm
        self.paths = paths

    def forward(self, batch: PairBatch | PackedPairs) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(batch, PairBatch):
            plain = sequence_logps(self.lm, batch)
            return (torch.cat([plain.chosen, plain.rejected]),
                    torch.cat([plain.chosen_tokens, plain.rejected_tokens]))
        decoder = self.lm.get_decoder()
        implementation = self.lm.config._attn_implementation or "eager"
        mask = batch.attention_mask(implementation, decoder.get_input_embeddings().weight.dtype)
        hidden = decoder(input_ids=batch.input_ids, attention_mask=mask,
                         position_ids=batch.position_ids, use_cache=False).last_hidden_state
        scored = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.hidden_index)
        token_logps = self.token_logps(scored, batch.labels)                # (N,)
        sequences = 2 * batch.num_pairs
        sums = token_logps.new_zeros(sequences).index_add(0, batch.owner, token_logps)
        counts = torch.bincount(batch.owner, minlength=sequences).to(sums.dtype)
        return sums, counts

    def token_logps(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) log-probs of ``labels`` given final hidden states (N, H)."""
        head = self.lm.get_output_embeddings()
        if self.paths.chunked_logps and type(head) is torch.nn.Linear:
            return chunked_token_logps(hidden, head.weight, head.bias, labels,
                                       self.paths.chunk_tokens)
        # A head that is not a plain linear layer (a LoRA-adapted one): whole logits, but at
        # the response positions only.
        return plain_token_log_probs(head(hidden), labels)


def score_batch(module: Any, batch: PairBatch | PackedPairs) -> SequenceLogps:
    """Run ``module`` (a ResponseLogps or its wrapper) on ``batch``; per-pair sums and counts."""
    sums, counts = module(batch)
    b = batch.num_pairs
    return SequenceLogps(sums[:b], sums[b:], counts[:b], counts[b:])
