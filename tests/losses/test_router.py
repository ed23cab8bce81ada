import pytest
import torch
from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

from preftune.losses.router import load_balancing_loss


def test_one_token_worked_by_hand():
    # probabilities (0.75, 0.25): top-1 picks expert 0, f = (1, 0), P = (0.75, 0.25)
    logits = torch.log(torch.tensor([[0.75, 0.25]]))
    loss = load_balancing_loss([logits], torch.ones(1), num_experts=2, top_k=1)
    assert float(loss) == pytest.approx(2 * 0.75)


def test_balanced_routing_gives_the_minimum():
    # two tokens sure of different experts, top-1: f = P = (0.5, 0.5), loss 2 · 0.5 = 1
    logits = torch.tensor([[20.0, -20.0], [-20.0, 20.0]])
    assert float(load_balancing_loss([logits], torch.ones(2), 2, 1)) == pytest.approx(1.0)


def test_equals_transformers_on_masked_tokens():
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])              # (B, T)
    layers = tuple(torch.randn(12, 6, generator=g) for _ in range(3))            # (B*T, E)
    want = load_balancing_loss_func(layers, num_experts=6, top_k=2, attention_mask=mask)
    got = load_balancing_loss(layers, mask, num_experts=6, top_k=2)
    torch.testing.assert_close(got, want.float(), rtol=1e-6, atol=0)


def test_a_token_of_weight_two_counts_as_two_tokens():
    # a shared prompt's token, read once for two sequences, weighs 2
    g = torch.Generator().manual_seed(1)
    once = torch.randn(3, 4, generator=g)
    twice = torch.cat([once, once[:1]])
    want = load_balancing_loss([twice], torch.ones(4), 4, 2)
    got = load_balancing_loss([once], torch.tensor([2.0, 1.0, 1.0]), 4, 2)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
