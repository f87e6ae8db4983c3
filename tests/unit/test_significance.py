"""The paired bootstrap against sacrebleu's own PairedTest on the same sentences, and the verdict rule on
hand-made intervals."""
from __future__ import annotations

import random

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from mmt_upgrade.core.significance import (
    HELPS,
    HURTS,
    NO_CLEAR,
    Paired,
    SentenceStats,
    paired_bootstrap,
    resample_counts,
    seed_spread,
    summarize,
    verdict,
)

WORDS = "the of and to in he that shall unto for his a lord they be is him not them with all".split()


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(4, 14))) for _ in range(n)]


def degrade(lines: list[str], rate: float, seed: int) -> list[str]:
    """Each word replaced by a random one with probability `rate`: a worse system the lower the rate."""
    rng = random.Random(seed)
    return [" ".join(w if rng.random() > rate else rng.choice(WORDS) for w in line.split()) for line in lines]


REFS = corpus(120, 0)
GOOD, BAD = degrade(REFS, 0.3, 1), degrade(REFS, 0.6, 2)


@pytest.mark.parametrize("name, sacre", [("chrfpp", CHRF(word_order=2)), ("bleu", BLEU())])
def test_the_bootstrap_is_sacrebleus_paired_bs(name, sacre):
    _, scores = PairedTest([("bad", BAD), ("good", GOOD)], {name: sacre}, [REFS], test_type="bs", n_samples=1000)()
    [key] = [k for k in scores if k != "System"]
    expected = scores[key][1]  # the system against the baseline (position 0)
    got = paired_bootstrap(SentenceStats.of(name, BAD, REFS), SentenceStats.of(name, GOOD, REFS))
    assert got.system == pytest.approx(expected.score, abs=1e-9)
    assert got.baseline == pytest.approx(scores[key][0].score, abs=1e-9)
    assert got.p_value == pytest.approx(expected.p_value, abs=1e-12)
    assert got.system_mean == pytest.approx(expected.mean, abs=1e-9)
    assert got.system_ci == pytest.approx(expected.ci, abs=1e-9)
    assert got.delta == pytest.approx(expected.score - scores[key][0].score, abs=1e-9)
    assert got.low <= got.mean_delta <= got.high and got.low > 0  # GOOD is clearly better
    assert got.p_value < 0.01


def test_resample_counts_are_sacrebleus_indices():
    n, k = 37, 50
    idxs = np.random.default_rng(12345).choice(n, size=(k, n), replace=True)
    stats = np.random.default_rng(0).integers(0, 100, size=(n, 5))
    counts = resample_counts(n, k, 12345)
    assert np.array_equal(counts @ stats, np.stack([stats[i].sum(0) for i in idxs]))


def test_a_system_against_itself_has_no_effect():
    s = SentenceStats.of("chrfpp", GOOD, REFS)
    same = paired_bootstrap(s, s)
    assert same.delta == 0 and same.low == same.high == 0 and verdict([same]) == NO_CLEAR


def test_concatenated_directions_pool_their_statistics():
    a, b = SentenceStats.of("chrfpp", GOOD[:60], REFS[:60]), SentenceStats.of("chrfpp", GOOD[60:], REFS[60:])
    whole = SentenceStats.of("chrfpp", GOOD, REFS)
    joined = SentenceStats.concat([a, b])
    assert np.array_equal(joined.stats, whole.stats) and joined.score == pytest.approx(whole.score)


def paired(delta: float, low: float, high: float) -> Paired:
    return Paired("chrfpp", 20.0, 20.0 + delta, delta, delta, low, high, 0.01, 20.0 + delta, 1.0, 100, 1000)


@pytest.mark.parametrize("pairs, spread, expected", [
    ([paired(1.0, 0.2, 1.8)], 0.0, HELPS),                          # interval above 0
    ([paired(-1.0, -1.8, -0.2)], 0.0, HURTS),                       # below 0
    ([paired(0.6, -0.1, 1.3)], 0.0, NO_CLEAR),                      # interval holds 0
    ([paired(1.0, 0.2, 1.8), paired(0.8, 0.1, 1.5)], 0.5, HELPS),   # both seeds, mean 0.9 > spread 0.5
    ([paired(1.0, 0.2, 1.8), paired(0.8, 0.1, 1.5)], 1.2, NO_CLEAR),  # the seeds disagree by more than the effect
    ([paired(1.0, 0.2, 1.8), paired(0.4, -0.3, 1.1)], 0.1, NO_CLEAR),  # one seed pair is not significant
    ([paired(-0.9, -1.5, -0.3), paired(-1.1, -1.9, -0.4)], 0.2, HURTS),
])
def test_verdicts_need_every_interval_and_the_seed_spread(pairs, spread, expected):
    assert verdict(pairs, spread) == expected
    s = summarize(pairs, spread)
    assert s["verdict"] == expected and s["low"] == min(p.low for p in pairs)
    assert s["delta"] == pytest.approx(sum(p.delta for p in pairs) / len(pairs))


def test_seed_spread_is_the_range():
    assert seed_spread([30.0]) == 0.0 and seed_spread([30.0, 31.5, 30.5]) == 1.5
