"""`mmt-upgrade data`: prepare a run config's data; every `data:` key is also a flag (DataConfig's)."""
from __future__ import annotations

import argparse
from pathlib import Path

from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.pipeline.data.prepare import DataConfig, prepare_data
from mmt_upgrade.pipeline.runconfig import add_config_arguments, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, run_dir=False)
    DataConfig.add_arguments(parser.add_argument_group("data (over the config's data: section)"), overrides=True)
    parser.add_argument("--out", help="output directory (default: a cache directory keyed by the configuration)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides, data=DataConfig.given(args))
    data = prepare_data(cfg.data, cache_dir(), Path(args.out) if args.out else None)
    for pair, counts in data.manifest["pairs"].items():
        print(f"{pair}: " + " ".join(f"{s}={n}" for s, n in counts.items()))
    print(data.root)
    return 0
