"""GRPO: group advantages and the clipped loss, with every expected value worked by hand."""

import math

import pytest
import torch
from torch.testing import assert_close

from preftune.errors import ConfigError
from preftune.rl.grpo import LOSS_TYPES, advantages_for_groups, group_advantages, grpo_loss

F64 = torch.float64


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


# ---------------------------------------------------------------------------- advantages


def test_advantages_use_the_population_std():
    """rewards [1, 0, 0, 1]: mean 0.5, deviations +-0.5.

    Population variance = (4 * 0.25) / 4 = 0.25, std = 0.5; A = +-0.5 / (0.5 + 1e-6)
    = +-0.999998. (The sample std, sqrt(1 / 3) = 0.57735, would give +-0.866024.)
    """
    advantages = group_advantages([1.0, 0.0, 0.0, 1.0])
    a = 0.5 / (0.5 + 1e-6)  # 0.999998000004
    assert_close(advantages, torch.tensor([a, -a, -a, a], dtype=F64))


def test_advantages_keep_a_float_tensors_dtype():
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert advantages.dtype == torch.float32
    assert advantages.tolist() == pytest.approx([0.999998, -0.999998, -0.999998, 0.999998])


def test_identical_rewards_give_exact_zeros():
    """0.1 * 3 / 3 is 0.10000000000000002 in float64; the result must still be exact zeros."""
    for scale in (True, False):
        assert group_advantages([0.1, 0.1, 0.1], scale=scale).tolist() == [0.0, 0.0, 0.0]
    assert group_advantages([7.0]).tolist() == [0.0]


def test_unscaled_advantages_are_reward_minus_mean():
    """Dr. GRPO: [1, 0, 0, 1] - 0.5 = [0.5, -0.5, -0.5, 0.5]; [3, 1, 2] - 2 = [1, -1, 0]."""
    assert group_advantages([1.0, 0.0, 0.0, 1.0], scale=False).tolist() == [0.5, -0.5, -0.5, 0.5]
    assert group_advantages([3.0, 1.0, 2.0], scale=False).tolist() == [1.0, -1.0, 0.0]


def test_advantages_for_groups_of_different_sizes():
    """[3, 1, 2]: mean 2, population std sqrt(2/3) = 0.816497, A = +-1 / 0.816498 = +-1.224743."""
    groups = advantages_for_groups([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0], [3.0, 1.0, 2.0]])
    a = 1 / (math.sqrt(2 / 3) + 1e-6)
    assert groups[0] == pytest.approx([0.999998, -0.999998, -0.999998, 0.999998], abs=1e-6)
    assert groups[1] == [0.0, 0.0]
    assert groups[2] == pytest.approx([a, -a, 0.0], abs=1e-12)
    assert a == pytest.approx(1.224743, abs=1e-6)
    assert advantages_for_groups([[3.0, 1.0, 2.0]], scale=False) == [[1.0, -1.0, 0.0]]


def test_advantages_reject_non_finite_rewards_and_bad_shapes():
    with pytest.raises(ValueError, match=r"positions \[1\]"):
        group_advantages([1.0, math.nan, 0.0])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        group_advantages([])


# -------------------------------------------------------------- aggregation at ratio 1

# Two sequences: row 0 has 3 tokens and A = 1, row 1 has 1 token (then 2 padding) and A = -0.5.
# At ratio 1 every token's loss is -A: -1, -1, -1 in row 0 and +0.5 in row 1. 4 tokens in all.
MASK = t([[1, 1, 1], [1, 0, 0]])
ADVANTAGES = torch.tensor([1.0, -0.5], dtype=F64)
POLICY = t([[-0.5, -1.0, -2.0], [-0.3, -0.7, -0.9]])


def test_loss_at_ratio_one_for_each_loss_type():
    """grpo:    row means -1 and 0.5, mean over 2 rows (-1 + 0.5) / 2 = -0.25.
    dapo:    token sum -3 + 0.5 = -2.5 over 4 tokens = -0.625.
    dr_grpo: -2.5 / (B * T) = -2.5 / (2 * 3) = -0.416667; with max_tokens 4: -2.5 / 8 = -0.3125.
    """
    expected = {"grpo": -0.25, "dapo": -0.625, "dr_grpo": -2.5 / 6}
    for loss_type, value in expected.items():
        out = grpo_loss(POLICY, None, ADVANTAGES, MASK, loss_type=loss_type)
        assert out.loss.item() == pytest.approx(value, abs=1e-12), loss_type
        assert out.metrics["loss"] == pytest.approx(value, abs=1e-12)
        assert out.metrics["ratio_mean"] == 1.0
        assert out.metrics["clip_frac"] == 0.0
    out = grpo_loss(POLICY, None, ADVANTAGES, MASK, loss_type="dr_grpo", max_tokens=4)
    assert out.loss.item() == pytest.approx(-0.3125, abs=1e-12)


def test_loss_types_agree_when_every_row_is_full():
    """Both rows of 3 tokens, A = [1, -0.5]: grpo (-1 + 0.5) / 2 = -0.25, dapo (-3 + 1.5) / 6
    = -0.25, dr_grpo with T = 3: -1.5 / 6 = -0.25."""
    full = torch.ones(2, 3, dtype=F64)
    for loss_type in LOSS_TYPES:
        out = grpo_loss(POLICY, None, ADVANTAGES, full, loss_type=loss_type)
        assert out.loss.item() == pytest.approx(-0.25, abs=1e-12), loss_type


def test_gradient_at_ratio_one_is_the_normalised_policy_gradient():
    """d loss / d logp[b, t] = -A_b * w_b on tokens, 0 on padding, where w_b is the token weight:
    grpo:    1 / (B * |o_b|): row 0 -1 / (2 * 3) = -1/6, row 1 0.5 / (2 * 1) = 0.25.
    dapo:    1 / 4 tokens:    row 0 -1/4 = -0.25,        row 1 0.5 / 4 = 0.125.
    dr_grpo: 1 / (B * T = 6): row 0 -1/6,                row 1 0.5 / 6 = 0.083333.
    """
    expected = {
        "grpo": [[-1 / 6, -1 / 6, -1 / 6], [0.25, 0.0, 0.0]],
        "dapo": [[-0.25, -0.25, -0.25], [0.125, 0.0, 0.0]],
        "dr_grpo": [[-1 / 6, -1 / 6, -1 / 6], [0.5 / 6, 0.0, 0.0]],
    }
    for loss_type, grad in expected.items():
        policy = POLICY.clone().requires_grad_(True)
        grpo_loss(policy, None, ADVANTAGES, MASK, loss_type=loss_type).loss.backward()
        assert policy.grad is not None
        assert_close(policy.grad, t(grad), msg=loss_type)


def test_shares_of_a_batch_add_up_to_its_loss():
    """Each row alone, told the batch has B = 2 sequences and 4 completion tokens:
    grpo:    row 0 -1 / 2 = -0.5,            row 1 0.5 / 2 = 0.25;         sum -0.25.
    dapo:    row 0 -3 / 4 = -0.75,           row 1 0.5 / 4 = 0.125;        sum -0.625.
    dr_grpo: row 0 -3 / (2 * 3) = -0.5,      row 1 0.5 / 6 = 0.083333;     sum -2.5 / 6.
    The sums are the whole batch's losses (test_loss_at_ratio_one_for_each_loss_type).
    """
    expected = {"grpo": (-0.5, 0.25), "dapo": (-0.75, 0.125), "dr_grpo": (-0.5, 0.5 / 6)}
    for loss_type, parts in expected.items():
        got = [grpo_loss(POLICY[[row]], None, ADVANTAGES[[row]], MASK[[row]],
                         loss_type=loss_type, max_tokens=3, batch_sequences=2,
                         batch_tokens=4).loss.item() for row in (0, 1)]
        assert got == pytest.approx(parts, abs=1e-12), loss_type


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_shares_give_the_whole_batchs_loss_and_gradient(loss_type):
    """Four uneven rows with old and reference log-probs (clip and KL both act), cut into the
    shares two processes take (rows 0, 2 and 1, 3): the shares' losses and gradients sum to
    the whole batch's."""
    g = torch.Generator().manual_seed(0)
    mask = t([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]])
    policy = (-torch.rand(4, 4, generator=g, dtype=F64) * 3).requires_grad_(True)
    old = policy.detach() + 0.4 * torch.randn(4, 4, generator=g, dtype=F64)
    ref = policy.detach() + 0.2 * torch.randn(4, 4, generator=g, dtype=F64)
    advantages = torch.tensor([1.0, -0.5, 0.3, -0.8], dtype=F64)
    kwargs = {"ref_logps": ref, "kl_coef": 0.1, "loss_type": loss_type, "max_tokens": 4}
    whole = grpo_loss(policy, old, advantages, mask, **kwargs)
    want = torch.autograd.grad(whole.loss, policy)[0]
    total, grad = 0.0, torch.zeros_like(policy)
    for rows in ([0, 2], [1, 3]):
        share = grpo_loss(policy[rows], old[rows], advantages[rows], mask[rows],
                          **{**kwargs, "ref_logps": ref[rows]}, batch_sequences=4,
                          batch_tokens=int(mask.sum()))
        total += share.loss.item()
        grad += torch.autograd.grad(share.loss, policy)[0]
    assert whole.metrics["clip_frac"] > 0 and whole.metrics["kl"] > 0
    assert total == pytest.approx(whole.loss.item(), abs=1e-12)
    assert_close(grad, want)


def test_old_logps_equal_to_policy_give_the_same_loss_and_gradient_as_none():
    policy = POLICY.clone().requires_grad_(True)
    with_old = grpo_loss(policy, POLICY.clone(), ADVANTAGES, MASK)
    with_old.loss.backward()
    grad_with_old = policy.grad
    policy.grad = None
    without = grpo_loss(policy, None, ADVANTAGES, MASK)
    without.loss.backward()
    assert with_old.loss.item() == pytest.approx(without.loss.item(), abs=1e-15)
    assert_close(grad_with_old, policy.grad)


# ------------------------------------------------------------------------------ clipping


def one_token(ratio: float, advantage: float, **kwargs) -> tuple[float, float, dict]:
    """Loss, gradient w.r.t. the policy log-prob, and metrics of one token with this ratio
    (old log-prob 0, policy log-prob log(ratio)); with B = T = 1 all loss types agree."""
    policy = torch.tensor([[math.log(ratio)]], dtype=F64, requires_grad=True)
    out = grpo_loss(policy, torch.zeros(1, 1, dtype=F64), torch.tensor([advantage], dtype=F64),
                    torch.ones(1, 1), **kwargs)
    out.loss.backward()
    assert policy.grad is not None
    return out.loss.item(), policy.grad.item(), out.metrics


def test_ratio_above_the_upper_bound_with_positive_advantage_is_clipped():
    """r = 1.5, A = 2, eps 0.2: min(1.5 * 2, 1.2 * 2) = min(3, 2.4) = 2.4; loss -2.4.
    The clipped term is a constant, so the gradient is 0."""
    loss, grad, metrics = one_token(1.5, 2.0)
    assert loss == pytest.approx(-2.4, abs=1e-12)
    assert grad == 0.0
    assert metrics["clip_frac"] == metrics["clip_frac_high"] == 1.0


def test_ratio_above_the_upper_bound_with_negative_advantage_is_not_clipped():
    """r = 1.5, A = -2: min(1.5 * -2, 1.2 * -2) = min(-3, -2.4) = -3, the unclipped term; loss 3.
    Gradient of -r A w.r.t. logp: -A * r = 2 * 1.5 = 3 (dr/dlogp = r)."""
    loss, grad, metrics = one_token(1.5, -2.0)
    assert loss == pytest.approx(3.0, abs=1e-12)
    assert grad == pytest.approx(3.0, abs=1e-12)
    assert metrics["clip_frac"] == 0.0


def test_ratio_below_the_lower_bound():
    """r = 0.5, eps 0.2, lower bound 0.8.
    A = -1: min(-0.5, -0.8) = -0.8, clipped: loss 0.8, gradient 0.
    A = +1: min(0.5, 0.8) = 0.5, unclipped: loss -0.5, gradient -A r = -0.5."""
    loss, grad, metrics = one_token(0.5, -1.0)
    assert (loss, grad) == (pytest.approx(0.8, abs=1e-12), 0.0)
    assert metrics["clip_frac"] == metrics["clip_frac_low"] == 1.0
    loss, grad, metrics = one_token(0.5, 1.0)
    assert (loss, grad) == (pytest.approx(-0.5, abs=1e-12), pytest.approx(-0.5, abs=1e-12))
    assert metrics["clip_frac"] == 0.0


def test_clip_eps_high_moves_only_the_upper_bound():
    """DAPO clip-higher, eps_low 0.2, eps_high 0.28: bounds [0.8, 1.28].
    r = 1.25, A = 1: under eps 0.2 clipped to 1.2 (loss -1.2, gradient 0); under 1.28
    unclipped (loss -1.25, gradient -A r = -1.25).
    r = 1.5, A = 2: clipped at 1.28, loss -2.56.
    r = 0.5, A = -1: the lower bound is still 0.8: loss 0.8."""
    assert one_token(1.25, 1.0)[:2] == (pytest.approx(-1.2, abs=1e-12), 0.0)
    loss, grad, _ = one_token(1.25, 1.0, clip_eps_high=0.28)
    assert (loss, grad) == (pytest.approx(-1.25, abs=1e-12), pytest.approx(-1.25, abs=1e-12))
    assert one_token(1.5, 2.0, clip_eps_high=0.28)[0] == pytest.approx(-2.56, abs=1e-12)
    assert one_token(0.5, -1.0, clip_eps_high=0.28)[0] == pytest.approx(0.8, abs=1e-12)


def test_clip_fraction_counts_only_tokens_whose_gradient_the_clip_removed():
    """Ratios per token (old = 0, policy = log ratio), eps 0.2, bounds [0.8, 1.2]; x = padding:

    row 0, A = +1: 1.5 (high clip: counted), 0.5 (A > 0 takes 0.5 < 0.8: not), 1.1, x = 100
    row 1, A = -1: 1.5 (A < 0 takes -1.5 < -1.2: not), 0.5 (low clip: counted), 1.0, 0.9
    row 2, A =  0: 1.5 (A = 0: never counted), x, x, x
    8 tokens: clip_frac 2/8 = 0.25, low 1/8, high 1/8.
    ratio_mean = (1.5 + 0.5 + 1.1 + 1.5 + 0.5 + 1.0 + 0.9 + 1.5) / 8 = 8.5 / 8 = 1.0625.
    advantage_mean = (1 - 1 + 0) / 3 = 0.
    """
    ratios = t([[1.5, 0.5, 1.1, 100.0], [1.5, 0.5, 1.0, 0.9], [1.5, 100.0, 100.0, 100.0]])
    mask = t([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    out = grpo_loss(ratios.log(), torch.zeros(3, 4, dtype=F64),
                    torch.tensor([1.0, -1.0, 0.0], dtype=F64), mask)
    assert out.metrics["clip_frac"] == 0.25
    assert out.metrics["clip_frac_low"] == 0.125
    assert out.metrics["clip_frac_high"] == 0.125
    assert out.metrics["ratio_mean"] == pytest.approx(1.0625, abs=1e-12)
    assert out.metrics["advantage_mean"] == 0.0
    assert out.metrics["tokens"] == 8.0


# ------------------------------------------------------------------------------------ KL


def test_kl_is_zero_when_the_reference_is_the_policy():
    out = grpo_loss(POLICY, None, ADVANTAGES, MASK, ref_logps=POLICY.clone(), kl_coef=0.5)
    assert out.metrics["kl"] == 0.0
    assert out.loss.item() == pytest.approx(-0.25, abs=1e-12)  # the grpo value without KL


def test_k3_by_hand_and_scaled_into_the_loss():
    """ref - policy = 0.1 on every token: k3 = e^0.1 - 0.1 - 1 = 1.105170918 - 1.1
    = 0.005170918. With A = 0 and kl_coef 0.5 the loss is 0.5 * 0.005170918 = 0.002585459
    for every loss type over full rows. d k3 / d policy = 1 - e^(ref - policy) = -0.105170918,
    so for grpo over 2 rows of 3 tokens each token's gradient is 0.5 * -0.105170918 / 6."""
    k3 = math.exp(0.1) - 0.1 - 1
    assert k3 == pytest.approx(0.005170918, abs=1e-9)
    full = torch.ones(2, 3, dtype=F64)
    zero_adv = torch.zeros(2, dtype=F64)
    policy = POLICY.clone().requires_grad_(True)
    out = grpo_loss(policy, None, zero_adv, full, ref_logps=POLICY + 0.1, kl_coef=0.5)
    assert out.metrics["kl"] == pytest.approx(k3, abs=1e-12)
    assert out.loss.item() == pytest.approx(0.5 * k3, abs=1e-12)
    out.loss.backward()
    assert policy.grad is not None
    assert_close(policy.grad, torch.full((2, 3), 0.5 * (1 - math.exp(0.1)) / 6, dtype=F64))


def test_kl_coef_adds_to_the_policy_term_and_is_logged_without_a_coefficient():
    """ADVANTAGES and MASK (grpo -0.25 at ratio 1), ref - policy = 0.1: each token adds
    kl_coef * k3, which per-row means leave as kl_coef * k3: loss = -0.25 + 2 * 0.005170918.
    With kl_coef 0 the loss is -0.25 and the kl metric is still k3; with no reference there is
    no kl metric (not a 0, which would read as "the policy has not moved")."""
    k3 = math.exp(0.1) - 0.1 - 1
    ref = POLICY + 0.1
    out = grpo_loss(POLICY, None, ADVANTAGES, MASK, ref_logps=ref, kl_coef=2.0)
    assert out.loss.item() == pytest.approx(-0.25 + 2 * k3, abs=1e-12)
    out = grpo_loss(POLICY, None, ADVANTAGES, MASK, ref_logps=ref)
    assert out.loss.item() == pytest.approx(-0.25, abs=1e-12)
    assert out.metrics["kl"] == pytest.approx(k3, abs=1e-12)
    assert "kl" not in grpo_loss(POLICY, None, ADVANTAGES, MASK).metrics


def test_kl_coef_without_a_reference_is_an_error():
    with pytest.raises(ValueError, match="kl_coef=0.1 needs ref_logps"):
        grpo_loss(POLICY, None, ADVANTAGES, MASK, kl_coef=0.1)


# --------------------------------------------------------------------------------- masks


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_garbage_in_padding_changes_neither_loss_nor_gradient(loss_type):
    """NaN policy, inf old and -inf reference log-probs where mask is 0 must give the same loss,
    metrics and gradient as zeros there; the padding's gradient is exactly 0."""
    pad = MASK == 0
    old = POLICY - 0.3  # ratio e^0.3 = 1.35: clipped for row 0 (A > 0), not for row 1
    ref = POLICY + 0.1

    def run(policy_pad: float, old_pad: float, ref_pad: float):
        policy = POLICY.masked_fill(pad, policy_pad).requires_grad_(True)
        out = grpo_loss(policy, old.masked_fill(pad, old_pad), ADVANTAGES, MASK,
                        ref_logps=ref.masked_fill(pad, ref_pad), kl_coef=0.5,
                        loss_type=loss_type)
        out.loss.backward()
        return out, policy.grad

    clean, clean_grad = run(0.0, 0.0, 0.0)
    dirty, dirty_grad = run(math.nan, math.inf, -math.inf)
    assert torch.isfinite(dirty.loss)
    assert dirty.loss.item() == clean.loss.item()
    assert dirty.metrics == clean.metrics
    assert_close(dirty_grad, clean_grad)
    assert dirty_grad[pad].eq(0).all()


def test_a_float_or_bool_mask_gives_the_same_loss():
    as_bool = grpo_loss(POLICY, None, ADVANTAGES, MASK.bool())
    as_float = grpo_loss(POLICY, None, ADVANTAGES, MASK)
    assert as_bool.loss.item() == as_float.loss.item() == pytest.approx(-0.25, abs=1e-12)


# -------------------------------------------------------------------------------- errors


def test_unknown_loss_type_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown GRPO loss_type 'ppo'") as info:
        grpo_loss(POLICY, None, ADVANTAGES, MASK, loss_type="ppo")
    assert info.value.hints == ["use one of: grpo, dr_grpo, dapo"]


def test_bad_clip_and_shapes_are_errors():
    with pytest.raises(ConfigError, match="clip_eps must lie in"):
        grpo_loss(POLICY, None, ADVANTAGES, MASK, clip_eps=1.0)
    with pytest.raises(ConfigError, match="max_tokens must be >= 1"):
        grpo_loss(POLICY, None, ADVANTAGES, MASK, loss_type="dr_grpo", max_tokens=0)
    with pytest.raises(ValueError, match=r"advantages must be \(B,\) = \(2,\)"):
        grpo_loss(POLICY, None, ADVANTAGES[:1], MASK)
    with pytest.raises(ValueError, match="mask must have policy_logps' shape"):
        grpo_loss(POLICY, None, ADVANTAGES, MASK[:, :2])
    with pytest.raises(ValueError, match=r"batch_sequences \(1\) counts the whole batch"):
        grpo_loss(POLICY, None, ADVANTAGES, MASK, batch_sequences=1)
