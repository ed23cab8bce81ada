import math
from types import SimpleNamespace

import pytest
import torch

from preftune.engine.logprobs import collate_pairs, sequence_logps

VOCAB = 10
# The log-prob the stub model gives each response token (every token id is used once).
LOGPS = {4: -1.0, 5: -2.0, 6: -0.5, 7: -1.5, 8: -3.0, 9: -4.0}


class KnownLogps(torch.nn.Module):
    """A 'model' whose next-token distribution puts probability q = exp(LOGPS[label]) on the
    token that follows and spreads 1 - q over the other VOCAB - 1 tokens; its logits are those
    log-probabilities, so log_softmax gives them back."""

    def forward(self, input_ids, attention_mask, use_cache):
        n, t = input_ids.shape
        following = torch.cat([input_ids[:, 1:], input_ids[:, -1:]], 1)          # (2B, T)
        q = torch.tensor([[math.exp(LOGPS.get(int(k), math.log(0.5))) for k in row]
                          for row in following], dtype=torch.float64)
        logits = ((1 - q) / (VOCAB - 1)).log()[..., None].repeat(1, 1, VOCAB)     # (2B, T, V)
        logits.scatter_(2, following[..., None], q.log()[..., None])
        return SimpleNamespace(logits=logits.float())


def _pair(ld_alpha):
    # prompt [1, 2], chosen [4, 5] (2 tokens), rejected [6, 7, 8, 9] (4 tokens)
    return collate_pairs([[1, 2]], [[4, 5]], [[6, 7, 8, 9]], pad_id=0, ld_alpha=ld_alpha)


def test_ld_sums_worked_by_hand():
    # Shared length min(2, 4) = 2. Chosen: -1 - 2 = -3, no tail. Rejected: shared -0.5 - 1.5
    # = -2, tail -3 - 4 = -7, so -2 + 0.5 * -7 = -5.5 (plain sum -9). Counts stay 2 and 4.
    logps = sequence_logps(KnownLogps(), _pair(0.5))
    torch.testing.assert_close(logps.chosen, torch.tensor([-3.0]))
    torch.testing.assert_close(logps.rejected, torch.tensor([-5.5]))
    assert logps.chosen_tokens.tolist() == [2] and logps.rejected_tokens.tolist() == [4]
    plain = sequence_logps(KnownLogps(), _pair(None))
    torch.testing.assert_close(plain.rejected, torch.tensor([-9.0]))
    zero = sequence_logps(KnownLogps(), _pair(0.0))  # alpha 0: the tail does not count
    torch.testing.assert_close(zero.rejected, torch.tensor([-2.0]))


def test_ld_alpha_one_is_the_plain_sum_exactly():
    one, none = _pair(1.0), _pair(None)
    assert one.ld_weight is None and none.ld_weight is None
    a, b = sequence_logps(KnownLogps(), one), sequence_logps(KnownLogps(), none)
    assert torch.equal(a.chosen, b.chosen) and torch.equal(a.rejected, b.rejected)


def test_ld_weight_of_the_padded_layout():
    batch = collate_pairs([[1, 2], [3]], [[4, 4, 4], [5, 5]], [[6], [7, 7]], pad_id=0,
                          ld_alpha=0.25)
    scored = batch.response_mask.bool()
    weights = [batch.ld_weight[i][scored[i]].tolist() for i in range(4)]
    assert weights == [[1, 0.25, 0.25], [1, 1], [1], [1, 1]]


def test_wpo_weights_worked_by_hand():
    # Each token: log p = log q, sum_v p_v² = q² + (1 - q)² / (V - 1); the weight is exp of the
    # mean over the response of log q - log sum p². LD weighting leaves it alone.
    def weight(tokens):
        terms = []
        for k in tokens:
            q = math.exp(LOGPS[k])
            terms.append(math.log(q) - math.log(q * q + (1 - q) ** 2 / (VOCAB - 1)))
        return math.exp(sum(terms) / len(terms))

    for alpha in (None, 0.5):
        logps = sequence_logps(KnownLogps(), _pair(alpha), wpo=True)
        assert float(logps.chosen_weight[0]) == pytest.approx(weight([4, 5]), rel=1e-5)
        assert float(logps.rejected_weight[0]) == pytest.approx(weight([6, 7, 8, 9]), rel=1e-5)
    assert sequence_logps(KnownLogps(), _pair(None)).chosen_weight is None


def test_an_empty_response_weighs_one():
    # Nothing scored (a one-token response after an empty prompt): mean 0, weight 1, as TRL.
    batch = collate_pairs([[]], [[4]], [[6, 7]], pad_id=0)
    logps = sequence_logps(KnownLogps(), batch, wpo=True)
    assert logps.chosen_tokens.tolist() == [0]
    assert logps.chosen_weight.tolist() == [1.0]
