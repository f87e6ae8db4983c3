"""`mmt-upgrade pipeline`: data -> train -> evaluate on a run config (the main job), each stage reusing what
an earlier call finished."""
from __future__ import annotations

import argparse
import time

from mmt_upgrade.core.files import log, write_json_atomic
from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.evaluate import evaluate, format_table
from mmt_upgrade.pipeline.runconfig import add_config_arguments, load_config, run_dir_of
from mmt_upgrade.pipeline.rundir import RunDir
from mmt_upgrade.pipeline.train import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    run_dir = RunDir(run_dir_of(args, cfg))
    timings: dict[str, float] = {}
    start = time.monotonic()
    log(f"pipeline [1/3] data ({cfg.source})")
    data = prepare_data(cfg.data, cache_dir())
    timings["data_s"] = round(time.monotonic() - start, 1)
    log(f"pipeline [2/3] train -> {run_dir.root}")
    checkpoint = train(cfg, data, run_dir.root)
    timings["train_s"] = round(time.monotonic() - start - timings["data_s"], 1)
    log("pipeline [3/3] evaluate")
    results = evaluate(checkpoint, data, run_dir.eval, cfg.evaluate)
    timings["evaluate_s"] = round(time.monotonic() - start - timings["data_s"] - timings["train_s"], 1)
    write_json_atomic(run_dir.root / "timings.json", timings)
    print(format_table(results))
    print(f"\nresults: {run_dir.eval_results}  (stage wall times: {timings})")
    return 0
