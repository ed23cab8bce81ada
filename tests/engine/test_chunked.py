import math

import pytest
import torch
import torch.nn.functional as F

from preftune.engine.chunked import chunked_token_logps
from preftune.engine.logprobs import token_log_probs


def _inputs(dtype, bias):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(13, 16, generator=g).to(dtype).requires_grad_()
    weight = torch.randn(50, 16, generator=g).to(dtype).requires_grad_()
    b = torch.randn(50, generator=g).to(dtype).requires_grad_() if bias else None
    labels = torch.randint(0, 50, (13,), generator=g)
    return hidden, weight, b, labels


@pytest.mark.parametrize("chunk", [1, 4, 13, 100])
@pytest.mark.parametrize("bias", [False, True])
def test_values_and_gradients_match_full_logits(chunk, bias):
    hidden, weight, b, labels = _inputs(torch.float32, bias)
    upstream = torch.linspace(-1.0, 2.0, 13)  # an uneven gradient, as a loss would send

    plain = token_log_probs(F.linear(hidden, weight, b), labels)
    grads_plain = torch.autograd.grad((plain * upstream).sum(),
                                      [t for t in (hidden, weight, b) if t is not None])
    chunked = chunked_token_logps(hidden, weight, b, labels, chunk)
    grads_chunked = torch.autograd.grad((chunked * upstream).sum(),
                                        [t for t in (hidden, weight, b) if t is not None])

    torch.testing.assert_close(chunked, plain, rtol=0, atol=1e-5)
    for got, want in zip(grads_chunked, grads_plain, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_bf16_follows_the_plain_rounding():
    hidden, weight, _, labels = _inputs(torch.bfloat16, False)
    plain = token_log_probs(F.linear(hidden, weight), labels)
    chunked = chunked_token_logps(hidden, weight, None, labels, 5)
    assert chunked.dtype == torch.float32
    torch.testing.assert_close(chunked, plain, rtol=0, atol=1e-5)
    g_plain = torch.autograd.grad(plain.sum(), hidden)[0]
    g_chunked = torch.autograd.grad(chunked.sum(), hidden)[0]
    torch.testing.assert_close(g_chunked.float(), g_plain.float(), rtol=2e-2, atol=2e-2)


def test_log_probs_of_equal_logits_are_minus_log_vocab():
    # A zero head gives uniform probabilities over 50 tokens: log p = -log 50 for every label.
    hidden = torch.randn(3, 4)
    out = chunked_token_logps(hidden, torch.zeros(50, 4), None, torch.tensor([0, 7, 49]), 2)
    torch.testing.assert_close(out, torch.full((3,), -torch.log(torch.tensor(50.0)).item()))


def test_default_chunk_keeps_a_block_within_the_budget():
    from preftune.engine.chunked import CHUNK_ELEMENTS, default_chunk_tokens

    assert default_chunk_tokens(32000) == 2048
    assert default_chunk_tokens(49152) == 1024
    assert default_chunk_tokens(151936) == 256
    assert default_chunk_tokens(262144) == 256
    assert default_chunk_tokens(1000) == 4096  # at most 4096
    assert default_chunk_tokens(4_000_000) == 128  # at least 128
    for vocab in (32000, 49152, 151936, 262144):
        assert default_chunk_tokens(vocab) * vocab <= CHUNK_ELEMENTS


@pytest.mark.parametrize("softcap", [None, 30.0, 2.0], ids=["nocap", "cap30", "cap2"])
@pytest.mark.parametrize("chunk", [1, 4, 13, 100])
@pytest.mark.parametrize("bias", [False, True])
def test_log_sum_sq_matches_full_logits(chunk, bias, softcap):
    # WPO's log sum_v p_v² is logsumexp(2 * log_softmax(logits)), the cap applied first (a cap of
    # 2 bends logits of size ~5 hard, so a missed cap would show).
    from preftune.engine.chunked import chunked_token_logps_with_sq, soft_cap

    hidden, weight, b, labels = _inputs(torch.float32, bias)
    hidden = hidden * 2  # logits of a few units, so the cap matters
    logits = soft_cap(F.linear(hidden, weight, b), softcap)                   # (13, 50)
    want = (2 * logits.log_softmax(-1)).logsumexp(-1)
    logps, log_sum_sq = chunked_token_logps_with_sq(hidden, weight, b, labels, chunk, softcap)
    torch.testing.assert_close(log_sum_sq, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(logps, chunked_token_logps(hidden, weight, b, labels, chunk,
                                                          softcap), rtol=0, atol=0)
    assert not log_sum_sq.requires_grad
    # The extra output leaves the gradient of the log-probs as it was.
    inputs = [t for t in (hidden, weight, b) if t is not None]
    upstream = torch.linspace(-1.0, 2.0, 13)
    got = torch.autograd.grad((logps * upstream).sum(), inputs)
    want_grads = torch.autograd.grad(
        (chunked_token_logps(hidden, weight, b, labels, chunk, softcap) * upstream).sum(), inputs)
    for g, w in zip(got, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_log_sum_sq_of_equal_logits_is_minus_log_vocab():
    # Uniform over 50 tokens: sum p² = 50 / 50² = 1/50.
    from preftune.engine.chunked import chunked_token_logps_with_sq

    _, log_sum_sq = chunked_token_logps_with_sq(torch.randn(3, 4), torch.zeros(50, 4), None,
                                                torch.tensor([0, 7, 49]), 2)
    torch.testing.assert_close(log_sum_sq, torch.full((3,), -torch.log(torch.tensor(50.0)).item()))


@pytest.mark.parametrize("chunk", [1, 4, 13, 100])
@pytest.mark.parametrize("cap", [None, 3.0])
def test_entropy_from_the_chunks_matches_full_logits(chunk, cap):
    """GRPO's entropy metric: -sum p log p of each position's softmax, computed from the same
    chunks as the log-probs, equals torch's Categorical entropy of the whole (capped) logits;
    the log-probs and their gradients are those of chunked_token_logps."""
    from preftune.engine.chunked import chunked_token_logps_with_entropy, soft_cap

    hidden, weight, b, labels = _inputs(torch.float32, True)
    logits = soft_cap(F.linear(hidden, weight, b), cap)
    want = torch.distributions.Categorical(logits=logits.detach()).entropy()
    logps, entropy = chunked_token_logps_with_entropy(hidden, weight, b, labels, chunk, cap)
    torch.testing.assert_close(entropy, want, rtol=0, atol=1e-5)
    assert not entropy.requires_grad
    torch.testing.assert_close(logps, chunked_token_logps(hidden, weight, b, labels, chunk, cap))
    # A uniform distribution over 50 tokens has entropy log 50.
    _, uniform = chunked_token_logps_with_entropy(hidden, torch.zeros(50, 16), None, labels, 5)
    torch.testing.assert_close(uniform, torch.full((13,), math.log(50)))
