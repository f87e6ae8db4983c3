"""The report's significance tests: sacrebleu's paired bootstrap (`core/significance.py`) on the finals'
kept hypotheses (or, for runs read from a report archive, their per-sentence statistics), per language group.

A group's directions are concatenated into one corpus (their sentences one after another; every direction
has the same number of test sentences, so each weighs the same) and the corpus chrF++ / BLEU of that
concatenation is what is resampled. Replicas are paired by seed (a run with one replica is paired with each
of the other's); the verdict needs every pair's interval on one side of 0 and the mean difference beyond the
larger seed spread of the two runs (`core.significance.verdict`)."""
from __future__ import annotations

from typing import Any, Sequence

from mmt_upgrade.core.scoring import direction_groups
from mmt_upgrade.core.significance import N_SAMPLES, SentenceStats, paired_bootstrap, seed_spread, summarize
from mmt_upgrade.fairseq_io.drivers import read_lines
from mmt_upgrade.pipeline.report.archive import read_sentence_stats
from mmt_upgrade.pipeline.report.load import Experiment, Replica
from mmt_upgrade.pipeline.rundir import RunDir


class Significance:
    """Paired comparisons of finished replicas, their sentence statistics computed once each."""

    def __init__(self, exp: Experiment, n_samples: int = N_SAMPLES) -> None:
        self.pivot = exp.config["old"]["data"]["pivot"]
        self.new_langs = list(exp.config["new_langs"])
        self.n_samples = n_samples
        self._stats: dict[tuple[str, str, str], SentenceStats] = {}

    def groups(self, replica: Replica) -> dict[str, list[str]]:
        """Its final's directions by group (all, old, new, into_/out_of_ the pivot)."""
        dirs = [tuple(d.split("-")) for d in replica.final.directions]
        return {g: d for g, d in direction_groups(dirs, self.pivot, self.new_langs).items() if d}

    def has_sentences(self, replica: Replica) -> bool:
        """Its final's hypotheses and references are kept, or their statistics (a report archive)."""
        if RunDir(replica.result_dir).sentence_stats.exists():
            return True
        paths = [f(d) for d in replica.final.directions for f in (replica.translations, replica.references)]
        return all(p is not None and p.exists() for p in paths)

    def sentence_stats(self, replica: Replica, direction: str, metric: str) -> SentenceStats:
        """One direction's statistics: from the kept text, else from the archive beside the result."""
        key = (str(replica.result_dir), direction, metric)
        if key not in self._stats:
            archive = RunDir(replica.result_dir).sentence_stats
            if archive.exists():
                self._stats[key] = SentenceStats.of_counts(metric, read_sentence_stats(archive, direction, metric))
            else:
                self._stats[key] = SentenceStats.of(metric, read_lines(replica.translations(direction)),
                                                    read_lines(replica.references(direction)))
        return self._stats[key]

    def stats(self, replica: Replica, directions: Sequence[str], metric: str) -> SentenceStats:
        return SentenceStats.concat([self.sentence_stats(replica, d, metric) for d in directions])

    def compare(self, a: Sequence[Replica], b: Sequence[Replica], group: str, metric: str) -> dict[str, Any] | None:
        """`a` minus `b` on `group` (runs as lists of replicas); None without kept hypotheses or directions."""
        if not all(self.has_sentences(r) for r in (*a, *b)):
            return None
        dirs = sorted(set.intersection(*(set(self.groups(r).get(group, [])) for r in (*a, *b))))
        if not dirs:
            return None
        score = {r.name: self.stats(r, dirs, metric) for r in (*a, *b)}
        pairs = [paired_bootstrap(score[y.name], score[x.name], self.n_samples) for x, y in seed_pairs(a, b)]
        spread = max(seed_spread([score[r.name].score for r in side]) for side in (a, b))
        return {**summarize(pairs, spread), "directions": dirs, "sentences": pairs[0].sentences,
                "score_a": sum(score[r.name].score for r in a) / len(a),
                "score_b": sum(score[r.name].score for r in b) / len(b)}


def seed_pairs(a: Sequence[Replica], b: Sequence[Replica]) -> list[tuple[Replica, Replica]]:
    """Replicas paired by seed; one replica pairs with each of the other's; else in order."""
    if len(a) == 1 or len(b) == 1:
        return [(x, y) for x in a for y in b]
    by_seed = {r.seed: r for r in b}
    common = [(x, by_seed[x.seed]) for x in a if x.seed in by_seed]
    return common or list(zip(a, b))
