"""CPU bf16 autocast against fp32: speed, loss curve and dev chrF++, trained side by side in one run.

Both runs use the same config, data, seed and number of updates; only `--cpu-bf16` differs. The
runs alternate in short legs (resuming from their own checkpoints), so machine noise hits both alike.
Prints a JSON summary: median words/s of each, their ratio, train loss at matched updates, final
valid loss and dev chrF++ (beam 5) on the chosen directions.

    .venv/bin/python benchmarks/cpu_bf16.py --updates 600 --leg 150 --out runs/bench_bf16
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from legs import (  # benchmarks/ is the script's directory
    inner_lines,
    run_legs,
    steady_wps,
)

from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.evaluate import evaluate
from mmt_upgrade.pipeline.runconfig import EvalOptions, load_config

LOG_INTERVAL = 25
VALID = re.compile(r"valid on 'valid' subset \| loss ([\d.]+).*?num_updates (\d+)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="old_model")
    ap.add_argument("--updates", type=int, default=600)
    ap.add_argument("--leg", type=int, default=150, help="updates per leg before switching runs")
    ap.add_argument("--directions", default="es-en,en-ru")
    ap.add_argument("--out", default="runs/bench_bf16")
    args = ap.parse_args()
    out = Path(args.out)
    modes = ("always", "never")
    cfg = load_config(args.config)
    data = prepare_data(cfg.data, cache_dir())
    run_legs(cfg, data, out, {mode: {"cpu-bf16": mode} for mode in modes}, args.updates, args.leg, LOG_INTERVAL)
    directions = [tuple(d.split("-")) for d in args.directions.split(",")]
    summary = {"config": args.config, "updates": args.updates, "directions": args.directions}
    for mode in modes:
        run = out / mode
        text = (run / "train.log").read_text()
        inner = inner_lines(text)
        valid = [(int(u), float(loss)) for loss, u in VALID.findall(text)]
        steady = steady_wps(text, args.leg, LOG_INTERVAL)
        res = evaluate(run / "checkpoints" / "checkpoint_last.pt", data, run / "eval",
                       EvalOptions(beam=5, max_tokens=6000, split="valid"), directions=directions)
        summary[mode] = {
            "median_wps": statistics.median(steady),
            "train_loss": {u: loss for u, loss, _ in inner},
            "valid_loss": valid[-1][1] if valid else None,
            "dev_chrfpp": {d: s["chrfpp"] for d, s in res["directions"].items()},
            "dev_chrfpp_mean": res["groups"]["all"]["chrfpp"],
        }
    summary["speedup_bf16_over_fp32"] = round(summary["always"]["median_wps"] / summary["never"]["median_wps"], 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
