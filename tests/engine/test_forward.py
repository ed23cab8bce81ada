import itertools

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
