"""`mmt-upgrade experiment`: read and check the config, then plan, run (or resume) and report it."""
from __future__ import annotations

import argparse
from pathlib import Path

from mmt_upgrade.core.options import comma_list
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.paths import runs_dir
from mmt_upgrade.pipeline.experiment.run import run_experiment
from mmt_upgrade.pipeline.experiment.runner import ClusterOptions
from mmt_upgrade.pipeline.experiment.spec import ExperimentConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default="bible_upgrade",
                        help="experiment YAML, or the name of one in configs/ (default: bible_upgrade)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUBKEY=VALUE",
                        help="override one value, e.g. --set train.max-update=200 --set "
                             "runs.full.distill.kd-method=shared --set data.langs=[es,ru] (the old model's)")
    parser.add_argument("--out", help="experiment directory (default: runs/experiments/<name>)")
    parser.add_argument("--runs", help="run only these runs of the config (comma list), e.g. naive,full")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the config, print the plan and every run's fairseq command; run nothing")
    ClusterOptions.add_arguments(parser.add_argument_group("where runs execute"))


def parse_run_names(text: str) -> list[str]:
    names = comma_list(text)
    if not names:
        raise UserInputError("--runs: give run names, e.g. --runs naive,full")
    return names


def run(args: argparse.Namespace) -> int:
    cfg = ExperimentConfig.load(args.config, args.overrides)
    cluster = ClusterOptions.from_namespace(args)
    out = Path(args.out) if args.out else runs_dir() / "experiments" / cfg.name
    only = parse_run_names(args.runs) if args.runs else []
    report = run_experiment(cfg, out, cluster, dry_run=args.dry_run, only=only)
    if not args.dry_run:
        print(report.read_text())
        print(report)
    return 0
