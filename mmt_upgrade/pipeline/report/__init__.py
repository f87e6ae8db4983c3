"""`mmt-upgrade report RUN_DIR`: report.md, report.json and plots from an experiment's result files.

Every number comes from `runs/*/result.json` and `old_model/result.json` (`RunResult`s: curves of
chrF++/BLEU with the compute spent, the finals on the final test set) and the finals' kept translations and
references (significance). The old model's own training cost is reported apart, as in the paper, and beside
it in the total; the upgraded runs' compute counts only their own training.

`load.py` reads the files (several sittings' together), `archive.py` keeps them without text,
`significance.py` runs the paired bootstrap, `compute.py` the iso-quality readings,
`summary.py` assembles report.json, `markdown.py` and `plots.py` present it.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from mmt_upgrade.core.files import write_json_atomic, write_text_atomic
from mmt_upgrade.core.significance import N_SAMPLES
from mmt_upgrade.pipeline.report.archive import ARCHIVE, write_archive
from mmt_upgrade.pipeline.report.load import load_experiment
from mmt_upgrade.pipeline.report.markdown import markdown
from mmt_upgrade.pipeline.report.plots import plot
from mmt_upgrade.pipeline.report.significance import Significance
from mmt_upgrade.pipeline.report.summary import summarize_experiment
from mmt_upgrade.pipeline.rundir import ExperimentDir

__all__ = ["add_arguments", "run", "summarize_experiment", "write_report"]


def write_report(root: Path, out: Path | None = None, n_samples: int = N_SAMPLES, more: Sequence[Path] = ()
                 ) -> Path:
    """Write report.json, report.md and plots/ into `out` (default: the experiment directory), with the
    runs of `more` (archives of earlier sittings) that `root` lacks. A separate `out` also gets the archive
    of every run reported (`out/archive/`), so that a later sitting can add to it."""
    out_dir = ExperimentDir(Path(out) if out else Path(root))
    exp = load_experiment(Path(root), *map(Path, more))
    sig = Significance(exp, n_samples)
    s = summarize_experiment(exp, n_samples, sig)
    if out:
        write_archive(exp, sig, out_dir.root / ARCHIVE)
    write_json_atomic(out_dir.report_json, s)
    plot(s, out_dir.plots)
    write_text_atomic(out_dir.report_md, markdown(s, exp.config["name"]))
    return out_dir.report_md


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`mmt-upgrade report`."""
    parser.add_argument("run_dir", help="the experiment directory (runs/experiments/<name>)")
    parser.add_argument("more", nargs="*", metavar="ARCHIVE",
                        help="report archives of the same experiment (<report dir>/archive) whose runs to add")
    parser.add_argument("--out", help="where to write them (default: the experiment directory)")
    parser.add_argument("--bootstrap-samples", type=int, default=N_SAMPLES,
                        help="paired bootstrap resamples per comparison (sacrebleu's default: 1000)")


def run(args: argparse.Namespace) -> int:
    report = write_report(Path(args.run_dir), Path(args.out) if args.out else None, args.bootstrap_samples,
                          [Path(p) for p in args.more])
    print(report.read_text())
    print(report)
    return 0
