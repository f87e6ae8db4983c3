"""Paired bootstrap resampling of the difference between two systems (sacrebleu's `paired_bs`), and the
verdict a report states from it.

sacrebleu's `PairedTest(test_type="bs")` reports each system's score, its bootstrap mean and 95 % half-width
and a p-value, but not the interval of the *difference*, which is what "helps / hurts" needs. So this module
runs sacrebleu's own test from its pieces: the resampled sentence indices drawn exactly as
`sacrebleu.significance._paired_bs_test` draws them (`numpy.random.default_rng(seed).choice`, seed
`SACREBLEU_SEED` or 12345, 1,000 resamples), the metric's sufficient statistics
(`_extract_corpus_statistics`) summed per resample in float32 and scored by `_compute_score_from_stats`,
sacrebleu's p-value (`_compute_p_value` on the centred absolute differences) and the percentile positions
of `estimate_ci` (the 1/40 tails). The system's mean and half-width and the p-value therefore equal
PairedTest's (tests/unit/test_significance.py checks it); the difference's interval is read from the same
resamples. Resampled sums are a matrix product of resample counts with the statistics (exact: the
statistics are integer counts well under 2^24), not 1,000 fancy-indexed copies of the corpus.
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.base import Metric
from sacrebleu.significance import _compute_p_value, estimate_ci

N_SAMPLES = 1000
METRICS = ("chrfpp", "bleu")  # the names `metric` knows: the report's two metrics
HELPS, HURTS, NO_CLEAR = "helps", "hurts", "no clear effect"


def metric(name: str) -> Metric:
    """chrF++ (`CHRF(word_order=2)`) or BLEU (`tok:13a`): the report's two metrics, as scoring.py computes them."""
    if name == "chrfpp":
        return CHRF(word_order=2)
    if name == "bleu":
        return BLEU()
    raise ValueError(f"unknown metric {name!r} (chrfpp, bleu)")


def sacrebleu_seed() -> int | None:
    """The seed sacrebleu's PairedTest uses (`SACREBLEU_SEED`, default 12345; `none`: unseeded)."""
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    return None if seed.lower() == "none" else int(seed)


@dataclass(frozen=True)
class SentenceStats:
    """A system's per-sentence sufficient statistics for one metric, and its corpus score."""
    metric: str
    stats: np.ndarray  # (sentences, statistics), integer counts
    score: float  # sacrebleu's corpus score (its `_aggregate_and_compute`)

    @classmethod
    def of(cls, metric_name: str, hyps: Sequence[str], refs: Sequence[str]) -> "SentenceStats":
        if len(hyps) != len(refs):
            raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
        m = metric(metric_name)
        stats = m._extract_corpus_statistics(list(hyps), [list(refs)])
        return cls(metric_name, np.asarray(stats, dtype=np.int64), float(m._aggregate_and_compute(stats).score))

    @classmethod
    def of_counts(cls, metric_name: str, stats: np.ndarray) -> "SentenceStats":
        """From statistics kept earlier (a report archive): (sentences, statistics) integer counts."""
        stats = np.asarray(stats, dtype=np.int64)
        return cls(metric_name, stats, float(metric(metric_name)._aggregate_and_compute(stats.tolist()).score))

    @classmethod
    def concat(cls, parts: Sequence["SentenceStats"]) -> "SentenceStats":
        """Several directions as one corpus (their sentences one after another, statistics pooled)."""
        return cls.of_counts(parts[0].metric, np.concatenate([p.stats for p in parts]))


@functools.lru_cache(maxsize=4)
def resample_counts(n: int, n_samples: int = N_SAMPLES, seed: int | None = 12345) -> np.ndarray:
    """How often each sentence occurs in each resample: (n_samples, n), from the indices sacrebleu draws."""
    idxs = np.random.default_rng(seed).choice(n, size=(n_samples, n), replace=True)
    flat = (np.arange(n_samples)[:, None] * n + idxs).ravel()
    return np.bincount(flat, minlength=n_samples * n).reshape(n_samples, n).astype(np.float64)


def resampled_scores(s: SentenceStats, counts: np.ndarray) -> np.ndarray:
    """The metric on every resample, as sacrebleu computes it (float32 sums of the statistics)."""
    m = metric(s.metric)
    sums = (counts @ s.stats.astype(np.float64)).astype(np.float32)
    return np.array([m._compute_score_from_stats(row).score for row in sums])


@dataclass(frozen=True)
class Paired:
    """System minus baseline on one corpus: observed, bootstrap mean, 95 % interval, p-value."""
    metric: str
    baseline: float
    system: float
    delta: float  # system - baseline, on the whole corpus
    mean_delta: float
    low: float
    high: float
    p_value: float  # sacrebleu's paired_bs p-value (two-sided, H0: no difference)
    system_mean: float  # sacrebleu's bootstrap mean and 95 % half-width of the system's score
    system_ci: float
    sentences: int
    n_samples: int

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def paired_bootstrap(baseline: SentenceStats, system: SentenceStats, n_samples: int = N_SAMPLES,
                     seed: int | None | str = "sacrebleu") -> Paired:
    """sacrebleu's paired bootstrap test of `system` against `baseline` (the same sentences, in order)."""
    if baseline.stats.shape != system.stats.shape or baseline.metric != system.metric:
        raise ValueError("paired bootstrap: the two systems must be scored on the same sentences and metric")
    seed = sacrebleu_seed() if seed == "sacrebleu" else seed
    n = len(system.stats)
    counts = resample_counts(n, n_samples, seed)
    bl, sys = resampled_scores(baseline, counts), resampled_scores(system, counts)
    sample_diffs = np.abs(sys - bl)
    p = _compute_p_value(sample_diffs - sample_diffs.mean(), abs(baseline.score - system.score))
    sys_mean, sys_ci = estimate_ci(sys)
    diffs = np.sort(sys - bl)
    lower = len(diffs) // 40  # estimate_ci's positions: the 95 % percentile interval
    return Paired(metric=system.metric, baseline=baseline.score, system=system.score,
                  delta=system.score - baseline.score, mean_delta=float(diffs.mean()), low=float(diffs[lower]),
                  high=float(diffs[len(diffs) - lower - 1]), p_value=float(p), system_mean=float(sys_mean),
                  system_ci=float(sys_ci), sentences=n, n_samples=n_samples)


def seed_spread(scores: Sequence[float]) -> float:
    """The range (max - min) of one run's scores over its seeds (0 with one seed)."""
    return float(max(scores) - min(scores)) if scores else 0.0


def verdict(pairs: Sequence[Paired], spread: float = 0.0) -> str:
    """`helps` when every seed pair's 95 % interval lies above 0 and the mean difference exceeds the seed
    spread (the larger range of the two runs' scores over their seeds); `hurts` mirrored; else
    `no clear effect`. With one seed each the spread is 0 and the rule is the bootstrap interval's."""
    if not pairs:
        raise ValueError("verdict: no comparison")
    mean = float(np.mean([p.delta for p in pairs]))
    if all(p.low > 0 for p in pairs) and mean > spread:
        return HELPS
    if all(p.high < 0 for p in pairs) and mean < -spread:
        return HURTS
    return NO_CLEAR


def summarize(pairs: Sequence[Paired], spread: float = 0.0) -> dict[str, float | str | int]:
    """A comparison over seed pairs: mean observed difference, the envelope of the pairs' 95 % intervals,
    the largest p-value, the seed spread and the verdict."""
    return {"delta": float(np.mean([p.delta for p in pairs])), "low": min(p.low for p in pairs),
            "high": max(p.high for p in pairs), "p_value": max(p.p_value for p in pairs), "spread": spread,
            "pairs": len(pairs), "verdict": verdict(pairs, spread)}
