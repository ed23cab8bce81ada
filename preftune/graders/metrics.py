"""The text-similarity metrics of OpenAI's ``text_similarity`` grader, written out here.

Every metric compares a hypothesis (the grader's ``input``) with a reference and returns a value
in [0, 1]. Word metrics tokenize both texts the same way: lowercase, then the runs of word
characters (``\\w+``), so punctuation separates words and is dropped. ``fuzzy_match`` works on the
raw strings instead. No stemming, synonyms or paraphrase tables are used anywhere.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

BLEU_EPSILON = 0.1  # smoothing for an n-gram order with no match (Chen & Cherry 2014, method 1)
METEOR_ALPHA, METEOR_BETA, METEOR_GAMMA = 0.9, 3.0, 0.5  # Lavie & Agarwal 2007 defaults

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lowercase words: ``"The cat, sat."`` -> ``["the", "cat", "sat"]``."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """The n-grams of ``tokens`` with their counts."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _overlap(hyp: Counter[tuple[str, ...]], ref: Counter[tuple[str, ...]]) -> int:
    """Matches with clipped counts: each hypothesis n-gram counts at most as often as in ref."""
    return sum(min(count, ref[gram]) for gram, count in hyp.items())


def _f1(matches: float, hyp_total: float, ref_total: float) -> float:
    if matches == 0 or hyp_total == 0 or ref_total == 0:
        return 0.0
    precision, recall = matches / hyp_total, matches / ref_total
    return 2 * precision * recall / (precision + recall)


def fuzzy_match(hypothesis: str, reference: str) -> float:
    """difflib's ``SequenceMatcher.ratio`` on the raw strings: 2·M / (len(a) + len(b)).

    M is the number of characters in the matching blocks difflib finds (autojunk off). This is
    close to, not always equal to, rapidfuzz's ``fuzz.ratio``/100 (an optimal-alignment Indel
    ratio): difflib's block search is greedy. Two empty strings match fully.
    """
    if not hypothesis and not reference:
        return 1.0
    return difflib.SequenceMatcher(None, hypothesis, reference, autojunk=False).ratio()


def bleu(hypothesis: str, reference: str, max_n: int = 4) -> float:
    """Sentence BLEU (Papineni et al. 2002) against one reference, uniform weights up to 4-grams.

    BLEU = BP · exp(mean_n log p_n), p_n the clipped n-gram precision, BP = 1 when the hypothesis
    is longer than the reference, else exp(1 - r/c). Smoothing: an order with no match uses
    p_n = ε / max(l_n, 1), ε = 0.1 (Chen & Cherry 2014 method 1; l_n the hypothesis's n-gram
    count, so a hypothesis shorter than n words also gets ε). No unigram match gives 0.
    """
    hyp, ref = tokenize(hypothesis), tokenize(reference)
    if not hyp or not ref:
        return 0.0
    log_precisions = []
    for n in range(1, max_n + 1):
        hyp_grams = ngrams(hyp, n)
        matches, total = _overlap(hyp_grams, ngrams(ref, n)), sum(hyp_grams.values())
        if n == 1 and matches == 0:
            return 0.0
        precision = matches / total if matches else BLEU_EPSILON / max(total, 1)
        log_precisions.append(math.log(precision))
    brevity = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return brevity * math.exp(sum(log_precisions) / max_n)


def gleu(hypothesis: str, reference: str, max_n: int = 4) -> float:
    """Google's sentence GLEU (Wu et al. 2016, §7): min(precision, recall) over all 1..4-grams.

    The n-grams of every order are pooled: matches / hypothesis n-grams is the precision,
    matches / reference n-grams the recall.
    """
    hyp, ref = tokenize(hypothesis), tokenize(reference)
    matches = hyp_total = ref_total = 0
    for n in range(1, max_n + 1):
        hyp_grams, ref_grams = ngrams(hyp, n), ngrams(ref, n)
        matches += _overlap(hyp_grams, ref_grams)
        hyp_total += sum(hyp_grams.values())
        ref_total += sum(ref_grams.values())
    if hyp_total == 0 or ref_total == 0:
        return 0.0
    return min(matches / hyp_total, matches / ref_total)


def _align(hyp: Sequence[str], ref: Sequence[str]) -> list[tuple[int, int]]:
    """Exact-match unigram alignment: each hypothesis word, left to right, takes the leftmost
    reference position with the same word not taken yet. Pairs (hyp index, ref index)."""
    free: dict[str, list[int]] = {}
    for j, word in enumerate(ref):
        free.setdefault(word, []).append(j)
    pairs = []
    for i, word in enumerate(hyp):
        if free.get(word):
            pairs.append((i, free[word].pop(0)))
    return pairs


def meteor(hypothesis: str, reference: str) -> float:
    """METEOR (Banerjee & Lavie 2005; parameters of Lavie & Agarwal 2007), exact matches only.

    m aligned unigrams (``_align``); P = m/|hyp|, R = m/|ref|;
    Fmean = P·R / (α·P + (1-α)·R), α = 0.9; a chunk is a run of aligned words adjacent in both
    texts; penalty = γ·(chunks/m)^β, γ = 0.5, β = 3; score = Fmean·(1 - penalty).
    Unlike full METEOR there is no stemming, synonym or paraphrase stage, and the alignment is
    the greedy one above rather than the one with the fewest crossings.
    """
    hyp, ref = tokenize(hypothesis), tokenize(reference)
    pairs = _align(hyp, ref)
    m = len(pairs)
    if m == 0:
        return 0.0
    precision, recall = m / len(hyp), m / len(ref)
    fmean = precision * recall / (METEOR_ALPHA * precision + (1 - METEOR_ALPHA) * recall)
    chunks = 1 + sum(1 for (i0, j0), (i1, j1) in zip(pairs, pairs[1:], strict=False)
                     if not (i1 == i0 + 1 and j1 == j0 + 1))
    penalty = METEOR_GAMMA * (chunks / m) ** METEOR_BETA
    return fmean * (1 - penalty)


def rouge_n(hypothesis: str, reference: str, n: int) -> float:
    """ROUGE-N F1 (Lin 2004): clipped n-gram overlap over hypothesis (P) and reference (R)."""
    hyp_grams, ref_grams = ngrams(tokenize(hypothesis), n), ngrams(tokenize(reference), n)
    return _f1(_overlap(hyp_grams, ref_grams), sum(hyp_grams.values()), sum(ref_grams.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, by the row-by-row dynamic programme."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 (Lin 2004): P = LCS/|hyp|, R = LCS/|ref| over words, F1 = 2PR/(P+R)."""
    hyp, ref = tokenize(hypothesis), tokenize(reference)
    return _f1(lcs_length(hyp, ref), len(hyp), len(ref))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors; 0 when either is all zeros."""
    if len(a) != len(b):
        raise ValueError(f"embeddings differ in length ({len(a)} and {len(b)})")
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


# The text metrics by OpenAI's names (``cosine`` needs an embedder and is handled by the grader).
TEXT_METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": functools.partial(rouge_n, n=n) for n in range(1, 6)},
    "rouge_l": rouge_l,
}
