"""Log-ratios and their f-divergence scores: values by hand, limits, the float16 clamp.

Parity of the scores with TRL runs through every loss that applies them, in test_dpo.py.
"""

import math

import pytest
import torch
from torch.testing import assert_close

from preftune.losses import PairLogps
from preftune.losses.ratios import f_score, log_ratios
from preftune.losses.types import F_DIVERGENCES, LossParams


def score(logratio: float, f_divergence: str, f_alpha: float = 0.5) -> float:
    value = torch.tensor([logratio], dtype=torch.float64)
    params = LossParams(f_divergence=f_divergence, f_alpha=f_alpha)
    return f_score(value, params).item()


def test_scores_by_hand():
    """u = pi / pi_ref = 2 (log u = log 2), and u = 4 for alpha.

    reverse_kl: log 2 = 0.693147. forward_kl: 1 - 1/2 = 0.5.
    js_divergence: log(2u / (1 + u)) = log(4/3) = 0.287682.
    alpha_divergence, a = 0.5, u = 4: (4^-0.5 - 1) / (0.5 - 1) = (0.5 - 1) / -0.5 = 1.
    """
    assert score(math.log(2), "reverse_kl") == pytest.approx(0.693147, abs=1e-6)
    assert score(math.log(2), "forward_kl") == pytest.approx(0.5, abs=1e-12)
    assert score(math.log(2), "js_divergence") == pytest.approx(0.287682, abs=1e-6)
    assert score(math.log(4), "alpha_divergence", 0.5) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("f_divergence", F_DIVERGENCES)
def test_every_score_is_zero_where_policy_equals_reference(f_divergence):
    assert score(0.0, f_divergence) == 0.0


@pytest.mark.parametrize("logratio", [-3.0, -0.2, 0.4, 2.5])
def test_alpha_divergence_runs_from_forward_kl_to_reverse_kl(logratio):
    """a -> 0 gives forward_kl; a within 1e-6 of 1 is taken as reverse_kl, its limit."""
    assert score(logratio, "alpha_divergence", 1e-9) == pytest.approx(
        score(logratio, "forward_kl"), rel=1e-6)
    assert score(logratio, "alpha_divergence", 1.0) == logratio
    assert score(logratio, "alpha_divergence", 1 - 1e-4) == pytest.approx(logratio, rel=1e-3)


def test_alpha_divergence_exponent_is_clamped_in_float16():
    """(a - 1) log u = 0.95 * 30 = 28.5 would overflow float16 (max 65504, about e^11.09): the
    exponent is clamped to 11, so the score is (e^11 - 1) / -0.95 = -63,024.

    The bound is TRL's and, as in TRL, it keeps exp() finite, not the score: dividing by
    (a - 1) overflows float16 all the same once 1 / (1 - a) exceeds 1.094 (a > 0.086).
    """
    logratio = torch.tensor([-30.0], dtype=torch.float16)
    value = f_score(logratio, LossParams(f_divergence="alpha_divergence", f_alpha=0.05))
    assert value.dtype == torch.float16 and torch.isfinite(value).all()
    assert value.item() == pytest.approx((math.exp(11) - 1) / -0.95, rel=1e-3)


def test_log_ratios_detach_the_reference_and_keep_the_policy():
    policy = torch.tensor([-1.0, -2.0], requires_grad=True)
    reference = torch.tensor([-1.5, -1.0], requires_grad=True)
    logps = PairLogps(policy[:1], policy[1:], torch.ones(1), torch.ones(1), reference[:1],
                      reference[1:])
    chosen, rejected = log_ratios(logps, "dpo")
    assert_close(torch.cat([chosen, rejected]), torch.tensor([0.5, -1.0]))
    (chosen + rejected).sum().backward()
    assert policy.grad is not None and reference.grad is None
