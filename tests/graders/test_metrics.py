"""The text-similarity metrics against values worked out by hand.

Most tests use one pair, tokenized (lowercase words):

    hyp = the cat sat on a   mat        (6 words)
    ref = the cat sat on the mat        (6 words)
"""

import math

import pytest

from preftune.graders import metrics

HYP = "The cat sat on a mat."
REF = "the cat sat on the mat"


def test_tokenize_lowercases_and_drops_punctuation():
    assert metrics.tokenize("The cat, sat. On-it!") == ["the", "cat", "sat", "on", "it"]


def test_fuzzy_match_is_difflib_ratio_on_raw_strings():
    """'the cat sat on a mat' (20 chars) vs 'the cat sat on the mat' (22 chars): matching blocks
    'the cat sat on ' (15) and ' mat' (4), M = 19; ratio = 2·19 / 42 = 0.904762."""
    assert metrics.fuzzy_match("the cat sat on a mat", REF) == pytest.approx(38 / 42)
    assert metrics.fuzzy_match("abc", "abc") == 1.0
    assert metrics.fuzzy_match("", "") == 1.0
    assert metrics.fuzzy_match("abc", "xyz") == 0.0


def test_bleu_by_hand():
    """Clipped precisions: 1-grams 5/6 ('the' counts once: hyp has one, ref two; 'a' misses),
    2-grams 3/5 (the cat, cat sat, sat on), 3-grams 2/4, 4-grams 1/3 (the cat sat on).
    Equal lengths: BP = 1. BLEU = (5/6 · 3/5 · 2/4 · 1/3)^(1/4) = (1/12)^(1/4) = 0.537285."""
    assert metrics.bleu(HYP, REF) == pytest.approx((1 / 12) ** 0.25)


def test_bleu_brevity_penalty_and_smoothing():
    """hyp 'the cat' vs ref 'the cat sat on the mat': p1 = 2/2, p2 = 1/1, no 3- or 4-grams in
    the hypothesis, so p3 = p4 = ε/1 = 0.1. BP = exp(1 - 6/2) = e^-2.
    BLEU = e^-2 · (1 · 1 · 0.1 · 0.1)^(1/4) = e^-2 · 0.1^0.5 = 0.042796."""
    assert metrics.bleu("the cat", REF) == pytest.approx(math.exp(-2) * 0.1 ** 0.5)
    assert metrics.bleu("dog", REF) == 0.0
    assert metrics.bleu(REF, REF) == pytest.approx(1.0)


def test_gleu_by_hand():
    """All 1..4-grams pooled: matches 5 + 3 + 2 + 1 = 11; hypothesis n-grams 6 + 5 + 4 + 3 = 18,
    reference the same 18. GLEU = min(11/18, 11/18) = 0.611111."""
    assert metrics.gleu(HYP, REF) == pytest.approx(11 / 18)


def test_gleu_takes_the_smaller_of_precision_and_recall():
    """hyp 'the cat' (1-grams 2, 2-grams 1: 3 n-grams, all matching) against REF's 18 n-grams:
    precision 3/3, recall 3/18; GLEU = 1/6."""
    assert metrics.gleu("the cat", REF) == pytest.approx(3 / 18)


def test_meteor_by_hand():
    """Alignment: the→0, cat→1, sat→2, on→3, mat→5 ('a' unmatched): m = 5, P = R = 5/6, so
    Fmean = P·R / (0.9·P + 0.1·R) = 5/6. Chunks: [the cat sat on] and [mat] = 2;
    penalty = 0.5 · (2/5)^3 = 0.032. METEOR = 5/6 · 0.968 = 0.806667."""
    assert metrics.meteor(HYP, REF) == pytest.approx(5 / 6 * (1 - 0.5 * 0.4 ** 3))


def test_meteor_weights_recall_over_precision():
    """hyp 'the cat' vs REF: m = 2, P = 1, R = 2/6. Fmean = (1/3) / (0.9 + 0.1/3) = 0.357143;
    one chunk: penalty 0.5 · (1/2)^3 = 0.0625; METEOR = 0.357143 · 0.9375 = 0.334821."""
    fmean = (1 / 3) / (0.9 * 1 + 0.1 * (1 / 3))
    assert metrics.meteor("the cat", REF) == pytest.approx(fmean * (1 - 0.5 * 0.5 ** 3))
    assert metrics.meteor("dog", REF) == 0.0


@pytest.mark.parametrize(("n", "expected"), [
    (1, 5 / 6),   # 5 matching unigrams of 6 each side
    (2, 3 / 5),   # 3 of 5
    (3, 2 / 4),   # 2 of 4
    (4, 1 / 3),   # 1 of 3
    (5, 0.0),     # hyp 5-grams: 'the cat sat on a', 'cat sat on a mat': neither in ref
])
def test_rouge_n_f1_by_hand(n, expected):
    """Equal n-gram counts on both sides make P = R, so F1 = the overlap fraction."""
    assert metrics.rouge_n(HYP, REF, n) == pytest.approx(expected)


def test_rouge_l_by_worked_lcs():
    """hyp 'a b c d', ref 'a c b d e'. LCS table (rows hyp, columns ref a c b d e):

        a: 1 1 1 1 1
        b: 1 1 2 2 2
        c: 1 2 2 2 2
        d: 1 2 2 3 3      LCS = 3 ('a b d' or 'a c d')

    P = 3/4, R = 3/5, F1 = 2 · 0.45 / 1.35 = 2/3."""
    assert metrics.lcs_length("abcd", "acbde") == 3
    assert metrics.rouge_l("a b c d", "a c b d e") == pytest.approx(2 / 3)
    assert metrics.rouge_l(HYP, REF) == pytest.approx(5 / 6)  # LCS 'the cat sat on mat'


def test_cosine():
    """(1, 0) · (1, 1) = 1; norms 1 and √2: cos = 1/√2."""
    assert metrics.cosine([1.0, 0.0], [1.0, 1.0]) == pytest.approx(1 / math.sqrt(2))
    assert metrics.cosine([0.0, 0.0], [1.0, 1.0]) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        metrics.cosine([1.0], [1.0, 2.0])


def test_every_openai_metric_but_cosine_is_in_the_table():
    assert set(metrics.TEXT_METRICS) == {
        "fuzzy_match", "bleu", "gleu", "meteor",
        "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l",
    }
    for metric in metrics.TEXT_METRICS.values():
        assert metric("", "") in (0.0, 1.0)
        assert 0.0 <= metric(HYP, REF) <= 1.0
