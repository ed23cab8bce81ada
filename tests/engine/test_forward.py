import itertools
from dataclasses import replace

import pytest
import torch

from preftune.engine.forward import FastPaths, ResponseLogps, layout, score_batch
from preftune.engine.logprobs import TokenRows
from preftune.engine.reference import reference_logps
from preftune.models.load import add_lora, load_model

PLAIN = FastPaths(shared_prompt=False, pack_pairs=False, chunked_logps=False)
SWITCHES = [FastPaths(*flags, chunk_tokens=7)
            for flags in itertools.product([False, True], repeat=3) if any(flags)]


@pytest.fixture(scope="module")
def rows():
    g = torch.Generator().manual_seed(1)

    def ids(low, high):
        n = int(torch.randint(low, high, (1,), generator=g))
        return torch.randint(5, 2000, (n,), generator=g).tolist()

    return TokenRows([ids(3, 30) for _ in range(6)], [ids(1, 20) for _ in range(6)],
                     [ids(1, 20) for _ in range(6)])


def _scores_and_grads(model, rows, paths):
    model.zero_grad()
    logps = score_batch(ResponseLogps(model, paths), layout(rows, list(range(6)), 0, paths))
    # An uneven weighting of chosen and rejected, as a loss would give.
    (0.7 * logps.chosen.sum() - logps.rejected.sum()).backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return logps, grads


@pytest.mark.parametrize("paths", SWITCHES, ids=lambda p: f"shared{p.shared_prompt:d}"
                         f"-pack{p.pack_pairs:d}-chunked{p.chunked_logps:d}")
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_each_fast_path_matches_separate_forwards(paths, attention, rows):
    model = load_model("tiny", "fp32", attn_implementation=attention)
    want, want_grads = _scores_and_grads(model, rows, PLAIN)
    got, got_grads = _scores_and_grads(model, rows, paths)
    for name in ("chosen", "rejected"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-6, atol=0)
    assert torch.equal(got.chosen_tokens, want.chosen_tokens)
    assert torch.equal(got.rejected_tokens, want.rejected_tokens)
    assert (got_grads - want_grads).abs().max() <= 1e-5 * want_grads.abs().max()


def test_lora_reference_through_the_fast_path(rows):
    policy = add_lora(load_model("tiny", "fp32"), 8, 16, 0.0, "all-linear")
    with torch.no_grad():  # move the adapters off zero so that policy and reference differ
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    fast = FastPaths()
    batch = layout(rows, list(range(6)), 0, fast)
    ref_fast = reference_logps(policy, None, batch, fast)
    ref_plain = reference_logps(policy, None, layout(rows, list(range(6)), 0, PLAIN), PLAIN)
    base = load_model("tiny", "fp32")
    with torch.no_grad():
        base_logps = score_batch(ResponseLogps(base, PLAIN),
                                 layout(rows, list(range(6)), 0, PLAIN))
        adapted = score_batch(ResponseLogps(policy, fast), batch)
    torch.testing.assert_close(ref_fast.chosen, ref_plain.chosen, rtol=1e-6, atol=0)
    torch.testing.assert_close(ref_fast.rejected, base_logps.rejected, rtol=1e-6, atol=0)
    assert not torch.allclose(adapted.chosen, ref_fast.chosen)


@pytest.mark.slow
def test_flex_attention_block_mask_matches_sdpa(rows):
    # FlexAttention has no backward on CPU (CUDA trains with it); its forward runs here, so
    # the block mask (segments, rejected unable to see chosen) is checked against SDPA.
    fast = FastPaths()
    batch = layout(rows, list(range(6)), 0, fast)
    with torch.no_grad():
        flex = score_batch(ResponseLogps(load_model("tiny", "fp32", attn_implementation=
                                                    "flex_attention"), fast), batch)
        sdpa = score_batch(ResponseLogps(load_model("tiny", "fp32", attn_implementation="sdpa"),
                                         fast), batch)
    torch.testing.assert_close(flex.chosen, sdpa.chosen, rtol=1e-6, atol=0)
    torch.testing.assert_close(flex.rejected, sdpa.rejected, rtol=1e-6, atol=0)


@pytest.mark.slow
def test_compiled_body_matches_eager(rows):
    model = load_model("tiny", "fp32")
    want, want_grads = _scores_and_grads(model, rows, FastPaths())
    model.get_decoder().compile()
    got, got_grads = _scores_and_grads(model, rows, FastPaths())
    torch.testing.assert_close(got.chosen, want.chosen, rtol=1e-6, atol=0)
    assert (got_grads - want_grads).abs().max() <= 1e-5 * want_grads.abs().max()


def test_an_attention_kernel_without_masks_falls_back_to_the_plain_path():
    model = load_model("tiny", "fp32")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.warns(UserWarning, match="flash_attention_2"):
        paths = FastPaths().usable_with(model)
    assert not paths.packed


def _full_logits_oracle(model, rows, ld_alpha):
    """Per-sequence LD sums and WPO weights straight from the full logits of the padded batch,
    with TRL's masks (dpo_trainer.py, _compute_loss): the computation the fast paths replace."""
    batch = layout(rows, list(range(6)), 0, PLAIN)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    log_softmax = logits[:, :-1].float().log_softmax(-1)                    # (2B, T-1, V)
    per_token = log_softmax.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    mask = batch.response_mask[:, 1:]
    per_token = per_token * mask
    position = mask.cumsum(1)
    lengths = mask.sum(1)
    shared = torch.minimum(*lengths.chunk(2)).repeat(2)[:, None]
    sums = (per_token * ((position > 0) & (position <= shared))).sum(1) + ld_alpha * (
        per_token * (position > shared)).sum(1)
    log_sum_sq = (2 * log_softmax).logsumexp(-1)                            # (2B, T-1)
    weights = torch.exp(((per_token - log_sum_sq) * mask).sum(1) / lengths.clamp(min=1))
    return sums, weights


@pytest.mark.parametrize("paths", [PLAIN, *SWITCHES], ids=lambda p: f"shared{p.shared_prompt:d}"
                         f"-pack{p.pack_pairs:d}-chunked{p.chunked_logps:d}")
def test_ld_sums_and_wpo_weights_match_full_logits(paths, rows):
    model = load_model("tiny", "fp32")
    want_sums, want_weights = _full_logits_oracle(model, rows, 0.5)
    variant = replace(paths, ld_alpha=0.5, wpo=True)
    with torch.no_grad():
        got = score_batch(ResponseLogps(model, variant), layout(rows, list(range(6)), 0, variant))
    torch.testing.assert_close(torch.cat([got.chosen, got.rejected]), want_sums,
                               rtol=1e-6, atol=0)
    torch.testing.assert_close(torch.cat([got.chosen_weight, got.rejected_weight]),
                               want_weights, rtol=1e-5, atol=0)


@pytest.mark.parametrize("paths", SWITCHES, ids=lambda p: f"shared{p.shared_prompt:d}"
                         f"-pack{p.pack_pairs:d}-chunked{p.chunked_logps:d}")
def test_ld_and_wpo_fast_paths_match_the_plain_path(paths, rows):
    model = load_model("tiny", "fp32")
    plain = replace(PLAIN, ld_alpha=0.5, wpo=True)
    want, want_grads = _scores_and_grads(model, rows, plain)
    got, got_grads = _scores_and_grads(model, rows, replace(paths, ld_alpha=0.5, wpo=True))
    for name in ("chosen", "rejected", "chosen_weight", "rejected_weight"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-5, atol=0)
    assert torch.equal(got.chosen_tokens, want.chosen_tokens)
    assert not got.chosen_weight.requires_grad and not want.chosen_weight.requires_grad
    assert (got_grads - want_grads).abs().max() <= 1e-5 * want_grads.abs().max()
    # The weights are not part of the graph: the gradient is that of the LD sums alone.
    ld_only, ld_grads = _scores_and_grads(model, rows, replace(paths, ld_alpha=0.5))
    assert ld_only.chosen_weight is None
    assert torch.equal(ld_grads, got_grads)


@pytest.mark.parametrize("paths", [PLAIN, *SWITCHES], ids=lambda p: f"shared{p.shared_prompt:d}"
                         f"-pack{p.pack_pairs:d}-chunked{p.chunked_logps:d}")
def test_ld_alpha_none_or_one_gives_todays_sums_exactly(paths, rows):
    model = load_model("tiny", "fp32")
    with torch.no_grad():
        today = score_batch(ResponseLogps(model, paths), layout(rows, list(range(6)), 0, paths))
        for alpha in (None, 1.0):
            variant = replace(paths, ld_alpha=alpha)
            got = score_batch(ResponseLogps(model, variant),
                              layout(rows, list(range(6)), 0, variant))
            assert torch.equal(got.chosen, today.chosen)
            assert torch.equal(got.rejected, today.rejected)
        # LD weighting moves every pair whose responses differ in length.
        half = replace(paths, ld_alpha=0.5)
        moved = score_batch(ResponseLogps(model, half), layout(rows, list(range(6)), 0, half))
    differ = torch.tensor([len(c) != len(r) for c, r in zip(rows.chosen_ids, rows.rejected_ids,
                                                              strict=True)])
    assert torch.equal(moved.chosen != today.chosen, differ & (today.chosen_tokens >
                                                               today.rejected_tokens))
    assert torch.equal(moved.rejected != today.rejected, differ & (today.rejected_tokens >
                                                                   today.chosen_tokens))


def test_fast_paths_take_ld_alpha_and_wpo_from_the_config_and_keep_them_in_fallback():
    from types import SimpleNamespace

    cfg = SimpleNamespace(shared_prompt=True, pack_pairs=True, chunked_logps=True,
                          logps_chunk_tokens=None, ld_alpha=0.3, use_weighting=True)
    paths = FastPaths.from_config(cfg)
    assert (paths.ld_alpha, paths.wpo) == (0.3, True)
    model = load_model("tiny", "fp32")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.warns(UserWarning):
        fallback = paths.usable_with(model)
    assert not fallback.packed and (fallback.ld_alpha, fallback.wpo) == (0.3, True)
    with pytest.raises(ValueError, match="ld_alpha must lie in \\[0, 1\\].*1.5"):
        FastPaths(ld_alpha=1.5)
