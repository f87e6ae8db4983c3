"""A report's archive: what `mmt-upgrade report` needs to state every number again, without any text.

An experiment directory keeps checkpoints, translations and references; none of them can be committed or
outlive the machine. The archive (`<report dir>/archive/`) keeps the small records — plan.json, the old
model's and every finished run's result.json — and, beside each result, the final's per-sentence
sufficient statistics of chrF++ and BLEU (`sentence_stats.npz`: integer counts, no words; about 0.45 MB per
run of 12 directions x 1,137 sentences), from which the paired bootstrap runs exactly as from the text.
The archive is itself an experiment directory for `load_experiment`, so a later sitting's runs (on a new
machine, with the old model retrained) are reported together with it:
`mmt-upgrade report runs/experiments/NAME results/NAME/archive --out results/NAME`.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

import numpy as np

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import atomic_path, write_json_atomic
from mmt_upgrade.core.significance import METRICS, SentenceStats
from mmt_upgrade.pipeline.records import write_record
from mmt_upgrade.pipeline.report.load import Experiment, Replica
from mmt_upgrade.pipeline.rundir import ExperimentDir

ARCHIVE = "archive"  # inside a report directory


def key(metric: str, direction: str) -> str:
    return f"{metric}/{direction}"


@functools.lru_cache(maxsize=64)
def _arrays(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def read_sentence_stats(path: Path, direction: str, metric: str) -> np.ndarray:
    """(sentences, statistics) counts of one direction's final from an archive's `sentence_stats.npz`."""
    arrays = _arrays(str(path))
    if key(metric, direction) not in arrays:
        raise UserInputError(f"{path}: no {metric} statistics for {direction} (it holds {', '.join(arrays)})")
    return arrays[key(metric, direction)]


class StatsSource(Protocol):
    """Where the statistics come from: the report's `Significance` (which reads archives through this module)."""
    def has_sentences(self, replica: Replica) -> bool: ...

    def sentence_stats(self, replica: Replica, direction: str, metric: str) -> SentenceStats: ...


def compact(counts: np.ndarray) -> np.ndarray:
    """uint16 where every count fits (sentence-level counts nearly always do), else int32."""
    return counts.astype(np.uint16 if counts.min(initial=0) >= 0 and counts.max(initial=0) < 2 ** 16 else np.int32)


def write_archive(exp: Experiment, sig: StatsSource, out: Path) -> Path:
    """Write `exp`'s records and its finals' sentence statistics (`sig`: the report's `Significance`) into
    `out`. Every array is read before anything is written, so `out` may be one of the archives `exp` was
    loaded from."""
    target = ExperimentDir(Path(out))
    replicas = {"old_model": exp.old, **{r.result_dir.name: r for r in exp.replicas.values()}}  # aliases: once
    arrays = {name: {key(m, d): compact(sig.sentence_stats(r, d, m).stats)
                     for d in r.final.directions for m in METRICS} if sig.has_sentences(r) else None
              for name, r in replicas.items()}
    write_json_atomic(target.plan, exp.plan)
    for name, r in replicas.items():
        run = target.old_model if name == "old_model" else target.run(name)
        write_record(run.result, r.result)
        if arrays[name] is not None:
            with atomic_path(run.sentence_stats) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays[name])
        elif run.sentence_stats.exists():
            run.sentence_stats.unlink()
    _arrays.cache_clear()  # files this call replaced
    return target.root

