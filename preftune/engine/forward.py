"""The forward pass that scores pairs: plain, or through the fast paths.

Plain: 2B padded sequences through the whole model, full-vocabulary logits at every position
(``logprobs.sequence_logps``). Fast (each part switchable in the config):

- ``shared_prompt``: prompt + chosen + rejected in one segment, prompt computed once;
- ``pack_pairs``: several segments per row, no padding beyond the row's end;
- ``chunked_logps``: the LM head only at response positions, a chunk of tokens at a time.

Both give the same (B,) sums; the tests hold them to each other, on every model family in
``tests/engine/test_families.py``. The packed mask follows the model's own attention: sliding
windows (one mask per kind of layer where layers differ, as Gemma 2 and 3 have), soft-capped
logits (Gemma 2) in the chunked head. What the packed pass cannot reproduce it refuses, with a
warning, and the plain path runs.

Mixture-of-experts models whose config asks for it (``output_router_logits``) also return the
router's load-balancing loss, computed over the same tokens in either layout.

Two variants of the sums, the same in either layout (see ``logprobs``): LD-DPO's ``ld_alpha``,
a per-token weight fixed when the batch is laid out, and WPO's per-response weights, from a
``log sum p²`` reduction the chunked head adds only when ``wpo`` asks for it.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, replace
from typing import Any

import torch

from preftune.engine.chunked import (
    chunked_token_logps,
    chunked_token_logps_with_entropy,
    chunked_token_logps_with_sq,
    default_chunk_tokens,
    soft_cap,
)
from preftune.engine.logprobs import (
    PairBatch,
    SequenceLogps,
    TokenRows,
    log_sum_sq_probs,
    router_loss,
    sequence_logps,
    token_entropy,
    wpo_weights,
)
from preftune.engine.logprobs import token_log_probs as plain_token_log_probs
from preftune.engine.packing import PAD, PROMPT, PackedPairs, pack_pairs

MASKED_ATTENTION = ("sdpa", "eager", "flex_attention")
LAYER_KINDS = ("full_attention", "sliding_attention")


@dataclass(frozen=True)
class FastPaths:
    """How batches are laid out and scored: the fast paths, and two variants of the sums.

    ``ld_alpha`` (LD-DPO): the weight of response tokens past the shorter response's length;
    None or 1.0 gives the plain sums exactly. ``layout`` writes it into the batch, so the policy
    and the reference scoring that batch apply the same weights; precomputed reference
    log-probs therefore depend on it (``reference.cache_key`` takes it).
    ``wpo``: the policy's pass also returns WPO's per-response weights
    (``SequenceLogps.chosen_weight`` / ``rejected_weight``); the reference pass never does.
    """

    shared_prompt: bool = True
    pack_pairs: bool = True
    chunked_logps: bool = True
    chunk_tokens: int | None = None  # None: by the vocabulary (default_chunk_tokens)
    ld_alpha: float | None = None
    wpo: bool = False

    def __post_init__(self) -> None:
        if self.ld_alpha is not None and not 0.0 <= self.ld_alpha <= 1.0:
            raise ValueError(f"ld_alpha must lie in [0, 1] (or be None), got {self.ld_alpha}")

    @classmethod
    def from_config(cls, cfg: Any) -> FastPaths:
        return cls(cfg.shared_prompt, cfg.pack_pairs, cfg.chunked_logps, cfg.logps_chunk_tokens,
                   ld_alpha=cfg.ld_alpha, wpo=cfg.use_weighting)

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
        return replace(self, shared_prompt=False, pack_pairs=False, chunked_logps=False)


def unsupported_reason(model: Any) -> str | None:
    """Why the packed pass would not compute what ``model`` computes, or None."""
    config = model.config
    implementation = getattr(config, "_attn_implementation", None) or "eager"
    if implementation not in MASKED_ATTENTION:
        return (f"attention implementation {implementation!r} takes no custom mask "
                f"(use one of {', '.join(MASKED_ATTENTION)})")
    head = head_unsupported_reason(config)
    if head is not None:
        return head
    kinds = set(getattr(config, "layer_types", None) or ())
    if kinds - set(LAYER_KINDS):
        return f"layers of kind {', '.join(sorted(kinds - set(LAYER_KINDS)))} take no packed mask"
    if len(layer_windows(config)) > 1 and not _takes_mask_per_layer_kind(model):
        return ("its layers differ in attention window, and its forward pass takes one mask "
                "for all of them")
    return None


def head_unsupported_reason(config: Any) -> str | None:
    """Why scoring from the decoder's hidden states through the output head would not give
    the model's own log-probs, or None."""
    for name in ("logit_scale", "logits_scaling"):
        if getattr(config, name, None) not in (None, 1.0):
            return f"the model transforms its logits ({name})"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models are scored whole"
    return None


def layer_windows(config: Any) -> dict[str, int | None]:
    """The sliding window of each kind of attention layer the model has (None: no window).

    Models with ``layer_types`` window their ``sliding_attention`` layers only (Gemma 2 and 3,
    Qwen2 with use_sliding_window); models without window every layer by ``sliding_window``
    where it is set (Mistral, Phi-3).
    """
    window = getattr(config, "sliding_window", None)
    kinds = getattr(config, "layer_types", None)
    if not kinds:
        return {"sliding_attention": window} if window else {"full_attention": None}
    return {kind: window if kind == "sliding_attention" else None for kind in sorted(set(kinds))}


def _takes_mask_per_layer_kind(model: Any) -> bool:
    """Whether the model's decoder accepts a dict of masks keyed by layer kind, as the
    transformers models with mixed layers do (``causal_mask_mapping``)."""
    try:
        source = inspect.getsource(type(model.get_decoder()).forward)
    except (OSError, TypeError):
        return False
    return "causal_mask_mapping" in source


def router_aux_coef(config: Any, override: float | None = None) -> float:
    """The weight of the router load-balancing loss: ``override`` when given, else the model's
    ``router_aux_loss_coef`` when its config sets ``output_router_logits`` (as TRL does); 0 for
    models without a router."""
    if not hasattr(config, "router_aux_loss_coef"):
        return 0.0
    if override is not None:
        return override
    return float(config.router_aux_loss_coef) if getattr(config, "output_router_logits",
                                                         False) else 0.0


def layout(rows: TokenRows, indices: list[int], pad_id: int,
           paths: FastPaths) -> PairBatch | PackedPairs:
    """The batch of pairs ``indices`` in the layout ``paths`` asks for, with LD-DPO's token
    weights where ``paths.ld_alpha`` sets them."""
    if not paths.packed:
        return rows.batch(indices, pad_id, paths.ld_alpha)
    return pack_pairs([rows.prompt_ids[i] for i in indices],
                      [rows.chosen_ids[i] for i in indices],
                      [rows.rejected_ids[i] for i in indices], pad_id,
                      shared_prompt=paths.shared_prompt, several_per_row=paths.pack_pairs,
                      ld_alpha=paths.ld_alpha)


class ResponseLogps(torch.nn.Module):
    """A causal LM whose forward returns summed response log-probs: what DDP or FSDP wraps.

    ``forward(batch)`` returns (2B,) sums (LD-weighted where the batch carries weights) and
    (2B,) token counts, chosen sequences first; the router load-balancing loss (a scalar; 0
    unless ``router_aux``); and (2B,) WPO weights without gradient, or None unless
    ``paths.wpo``. ``score_batch`` splits them into a ``SequenceLogps``.
    """

    def __init__(self, lm: Any, paths: FastPaths, router_aux: bool = False) -> None:
        super().__init__()
        self.lm = lm
        self.paths = paths
        self.router_aux = router_aux

    def forward(self, batch: PairBatch | PackedPairs
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if isinstance(batch, PairBatch):
            plain = sequence_logps(self.lm, batch, self.router_aux, self.paths.wpo)
            weights = None if plain.chosen_weight is None or plain.rejected_weight is None \
                else torch.cat([plain.chosen_weight, plain.rejected_weight])
            return (torch.cat([plain.chosen, plain.rejected]),
                    torch.cat([plain.chosen_tokens, plain.rejected_tokens]), plain.router_aux,
                    weights)
        decoder = self.lm.get_decoder()
        extra = {"output_router_logits": True} if self.router_aux else {}
        out = decoder(input_ids=batch.input_ids, attention_mask=self.mask(batch),
                      position_ids=batch.position_ids, use_cache=False, **extra)
        hidden = out.last_hidden_state
        scored = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.hidden_index)
        token_logps, log_sum_sq = self.token_logps(scored, batch.labels)    # (N,), (N,) or None
        sequences = 2 * batch.num_pairs
        weighted = token_logps if batch.ld_weight is None else token_logps * batch.ld_weight
        sums = token_logps.new_zeros(sequences).index_add(0, batch.owner, weighted)
        counts = torch.bincount(batch.owner, minlength=sequences).to(sums.dtype)
        aux = self.packed_router_loss(out.router_logits, batch) if self.router_aux \
            else sums.new_zeros(())
        weights = None
        if log_sum_sq is not None:
            with torch.no_grad():
                aligned = sums.new_zeros(sequences).index_add(0, batch.owner,
                                                              token_logps - log_sum_sq)
                weights = wpo_weights(aligned, counts)                       # (2B,)
        return sums, counts, aux, weights

    def mask(self, batch: PackedPairs) -> Any:
        """The packed mask, windowed as the model's layers are: one mask, or one per kind of
        layer where they differ."""
        implementation = self.lm.config._attn_implementation or "eager"
        dtype = self.lm.get_decoder().get_input_embeddings().weight.dtype
        masks = {kind: batch.attention_mask(implementation, dtype, window)
                 for kind, window in layer_windows(self.lm.config).items()}
        return next(iter(masks.values())) if len(masks) == 1 else masks

    def packed_router_loss(self, router_logits: Any, batch: PackedPairs) -> torch.Tensor:
        # A shared prompt is read once for two sequences: its tokens count twice.
        prompt_weight = 2.0 if self.paths.shared_prompt else 1.0
        weights = (batch.part != PAD).float()                                # (R, L)
        weights = torch.where(batch.part == PROMPT, weights * prompt_weight, weights)
        return router_loss(self.lm.config, router_logits, weights)

    def token_logps(self, hidden: torch.Tensor, labels: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N,) log-probs of ``labels`` given final hidden states (N, H); with ``paths.wpo``
        also (N,) ``log sum_v p_v²`` without gradient, else None."""
        return head_logps(self.lm, hidden, labels, self.paths, "sq" if self.paths.wpo else None)


def head_logps(lm: Any, hidden: torch.Tensor, labels: torch.Tensor, paths: FastPaths,
               extra: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N,) log-probs of ``labels`` given ``lm``'s final hidden states (N, H), through its
    output head: a chunk of tokens at a time where ``paths.chunked_logps`` and the head is a
    plain linear layer, else whole logits at these N positions only. ``extra`` adds a
    per-position (N,) value without gradient: ``"sq"``, ``log sum_v p_v²`` (WPO), or
    ``"entropy"``, ``-sum_v p_v log p_v``; None: none."""
    head = lm.get_output_embeddings()
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if paths.chunked_logps and type(head) is torch.nn.Linear:
        chunk = paths.chunk_tokens or default_chunk_tokens(head.weight.shape[0])
        if extra == "sq":
            return chunked_token_logps_with_sq(hidden, head.weight, head.bias, labels, chunk,
                                               cap)
        if extra == "entropy":
            return chunked_token_logps_with_entropy(hidden, head.weight, head.bias, labels,
                                                    chunk, cap)
        return chunked_token_logps(hidden, head.weight, head.bias, labels, chunk, cap), None
    # A head that is not a plain linear layer (a LoRA-adapted one): whole logits, but at
    # the response positions only.
    logits = soft_cap(head(hidden), cap)                                     # (N, V)
    if extra is None:
        return plain_token_log_probs(logits, labels), None
    with torch.no_grad():
        per_position = log_sum_sq_probs(logits) if extra == "sq" else token_entropy(logits)
    return plain_token_log_probs(logits, labels), per_position


def score_batch(module: Any, batch: PairBatch | PackedPairs) -> SequenceLogps:
    """Run ``module`` (a ResponseLogps or its wrapper) on ``batch``; per-pair sums and counts,
    and WPO weights where its paths ask for them."""
    sums, counts, aux, weights = module(batch)
    b = batch.num_pairs
    return SequenceLogps(sums[:b], sums[b:], counts[:b], counts[b:], aux,
                         None if weights is None else weights[:b],
                         None if weights is None else weights[b:])
