"""The file names of a run directory and of an experiment directory, in one place (formats: docs/results.md).

Run directory (`mmt-upgrade train`, `pipeline`, one run of an experiment):
    checkpoints/                   fairseq's --save-dir: checkpoint_last.pt, checkpoint_best.pt and the interval
                                   checkpoints checkpoint_<epoch>_<updates>.pt
    train.log                      fairseq's --log-file
    train_done.json                written only when training reached its planned --max-update
    eval/results.json              `mmt-upgrade evaluate` / `pipeline`
    evals/<updates>/point.json     an experiment's evaluation of one checkpoint (7-digit updates, or `best`),
                                   beside evaluate's results.json and translations/
    evals/final/point.json         the final checkpoint on the experiment's final test set (when it has one)
    result.json                    an experiment run's result: written when its curve is complete

Experiment directory:
    plan.json                      the resolved plan (every run's upgrade options and fairseq command)
    upgrades/<key>/                one upgraded model per distinct set of upgrade options (shared by runs)
    upgrades/<key>.eval/           the upgraded model before training (update 0), shared by its runs
                                   (`<key>.eval-valid/` for runs evaluated on the dev split)
    references/<split>-<n>/        the reference lines of a test set (`<src>-<tgt>.<tgt>`; n: per direction
                                   or `all`), beside which the finals' translations are kept
    old_model/                     the old model's result directory (evals/best/, result.json); it trains once,
                                   in the runs directory, and is reused by every experiment
    runs/<run>/                    each run's run directory
    jobs/                          submitit's pickles and job logs; jobs.json maps runs to job ids
    report.json, report.md, plots/ `mmt-upgrade report`
    .lock                          held by the experiment process that owns the directory
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmt_upgrade.fairseq_io.checkpoint import BEST, INTERVAL, LAST

POINT = "point.json"
EVAL_RESULTS = "results.json"  # what `pipeline.evaluate.evaluate` writes into its output directory


def point_file(eval_dir: Path) -> Path:
    """The curve point an experiment keeps of the evaluation in `eval_dir`."""
    return Path(eval_dir) / POINT


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / LAST

    @property
    def best(self) -> Path:
        return self.checkpoints / BEST

    def interval_checkpoints(self, updates: int) -> list[Path]:
        return sorted(self.checkpoints.glob(INTERVAL.format(updates=updates)))

    def is_kept(self, checkpoint: Path) -> bool:
        """checkpoint_last.pt (resumed from) and checkpoint_best.pt stay; interval ones may go once used."""
        return checkpoint.name in (LAST, BEST)

    @property
    def train_log(self) -> Path:
        return self.root / "train.log"

    @property
    def done(self) -> Path:
        return self.root / "train_done.json"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def eval_results(self) -> Path:
        return self.eval / EVAL_RESULTS

    @property
    def evals(self) -> Path:
        return self.root / "evals"

    def eval_dir(self, updates: int | None) -> Path:
        """evals/<updates> (seven digits, so they sort), or evals/best for checkpoint_best.pt."""
        return self.evals / (f"{updates:07d}" if updates is not None else "best")

    @property
    def final_eval(self) -> Path:
        """evals/final: the final checkpoint on the final test set."""
        return self.evals / "final"

    def points(self) -> list[Path]:
        return sorted(self.evals.glob(f"*/{POINT}"))

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def sentence_stats(self) -> Path:
        """A report archive's per-sentence metric statistics of the final (in place of its text)."""
        return self.root / "sentence_stats.npz"


@dataclass(frozen=True)
class ExperimentDir:
    root: Path

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def upgrade(self, key: str) -> Path:
        return self.root / "upgrades" / key

    def upgrade_eval(self, key: str, split: str = "") -> Path:
        """The upgraded start's evaluation; `split`: another split than the experiment's (the dev sweep)."""
        return self.root / "upgrades" / (f"{key}.eval-{split}" if split else f"{key}.eval")

    def references(self, split: str, pairs: int) -> Path:
        """The references of a test set: `split`, `pairs` sentences per direction (0: the whole split)."""
        return self.root / "references" / f"{split}-{pairs or 'all'}"

    @property
    def old_model(self) -> RunDir:
        return RunDir(self.root / "old_model")

    @property
    def old_tokenizer(self) -> Path:
        """The old model's own SentencePiece model and dictionary, to cut the experiment's test sample."""
        return self.old_model.root / "tokenizer"

    def run(self, name: str) -> RunDir:
        return RunDir(self.root / "runs" / name)

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def jobs_file(self) -> Path:
        return self.jobs / "jobs.json"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"
