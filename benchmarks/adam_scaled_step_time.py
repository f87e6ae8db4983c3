"""Step time of `--optimizer adam_scaled` against plain `adam`, side by side, on the upgraded default model.

The default old model upgraded with it and ar (`extend`, `<unk>` init; built if missing) is fine-tuned on
old + new data with the default config's flags, once with `adam` and once with `adam_scaled
--lr-scale-old 0.1 --lr-scale-new 1.0` (groups plus a per-row rescale of the shared embedding), in
alternating legs. Step-time ratio = median words/s of adam / median words/s of adam_scaled, over
the log intervals after each leg's first. Training words/s on 2 shared cores is noisy, so the optimizer
step alone is also timed side by side (both optimizers on the upgraded model's parameters with the same
random gradients, alternating), and its extra cost is put in proportion to the measured update time.

    .venv/bin/python benchmarks/adam_scaled_step_time.py --updates 200 --leg 50
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

from legs import (  # benchmarks/ is the script's directory
    inner_lines,
    run_legs,
    steady_wps,
)

from mmt_upgrade.core.paths import cache_dir, runs_dir
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.runconfig import load_config

LOG_INTERVAL = 10


def optimizer_step_times(checkpoint: Path, repeats: int) -> dict[str, float]:
    """Median seconds of one `step()` of adam and adam_scaled over the model's parameters."""
    import time
    from argparse import Namespace

    import torch
    from fairseq import utils
    from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig

    from mmt_upgrade.core.paths import PLUGIN_DIR
    from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint

    utils.import_user_module(Namespace(user_dir=str(PLUGIN_DIR)))  # as fairseq-train does
    from fairseq_plugins.optim.adam_scaled import AdamScaled, AdamScaledConfig

    model = read_checkpoint(checkpoint)["model"]
    params, seen = [], set()
    for name, t in model.items():
        if not t.is_floating_point() or name.endswith("_float_tensor") or t.untyped_storage().data_ptr() in seen:
            continue
        seen.add(t.untyped_storage().data_ptr())
        p = torch.nn.Parameter(t.float().clone())
        p.param_group = name
        params.append(p)
    grads = [torch.randn_like(p) for p in params]
    optimizers = {
        "adam": FairseqAdam(FairseqAdamConfig(lr=[1e-3], adam_betas="(0.9,0.98)"), params),
        "adam_scaled": AdamScaled(AdamScaledConfig(lr=[1e-3], adam_betas="(0.9,0.98)", lr_scale_old=0.1,
                                                   save_dir="/nonexistent", restore_file="checkpoint_last.pt",
                                                   finetune_from_model=str(checkpoint)), params),
    }
    times: dict[str, list[float]] = {k: [] for k in optimizers}
    for _ in range(repeats):
        for name, opt in optimizers.items():
            for p, g in zip(params, grads):
                p.grad = g
            start = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--upgraded", default=str(runs_dir() / "old_model_upgrade" / "extend-unk"))
    ap.add_argument("--updates", type=int, default=200)
    ap.add_argument("--leg", type=int, default=50)
    ap.add_argument("--out", default=str(runs_dir() / "bench_adam_scaled"))
    ap.add_argument("--repeats", type=int, default=30, help="optimizer steps timed per optimizer")
    args = ap.parse_args()
    upgraded, out = Path(args.upgraded), Path(args.out)
    old_cfg = load_config("old_model")
    if not (upgraded / "checkpoint.pt").exists():
        old_data = prepare_data(old_cfg.data, cache_dir())
        subprocess.run([str(Path(sys.executable).parent / "mmt-upgrade"), "upgrade",
                        str(runs_dir() / "old_model" / "checkpoints" / "checkpoint_best.pt"), "--out", str(upgraded),
                        "--old-data", str(old_data.root), "--new-langs", "it,ar"], check=True)
    cfg = load_config("old_model", ["data.langs=[es,fr,de,ru,it,ar]", f"data.tokenizer={upgraded}"])
    data = prepare_data(cfg.data, cache_dir())
    start = {"finetune-from-model": str(upgraded / "checkpoint.pt")}
    variants = {"adam": start,
                "adam_scaled": {**start, "optimizer": "adam_scaled", "lr-scale-old": 0.1, "lr-scale-new": 1.0}}
    run_legs(cfg, data, out, variants, args.updates, args.leg, LOG_INTERVAL)
    summary = {"updates": args.updates, "leg": args.leg}
    logs = {name: (out / name / "train.log").read_text() for name in variants}
    for name in variants:
        wps = steady_wps(logs[name], args.leg, LOG_INTERVAL)
        summary[name] = {"median_wps": statistics.median(wps), "intervals": len(wps)}
    summary["step_time_ratio_scaled_over_adam"] = round(
        summary["adam"]["median_wps"] / summary["adam_scaled"]["median_wps"], 3)
    # both variants see the same batches at the same update: pair the intervals
    steady = {name: {u: w for u, _, w in inner_lines(logs[name]) if u % args.leg != LOG_INTERVAL % args.leg}
              for name in variants}
    paired = sorted(steady["adam"][u] / steady["adam_scaled"][u] for u in steady["adam"] if u in steady["adam_scaled"])
    summary["paired_interval_ratio"] = {"median": round(statistics.median(paired), 3),
                                        "quartiles": [round(q, 3) for q in statistics.quantiles(paired, n=4)],
                                        "intervals": len(paired)}
    steps = optimizer_step_times(upgraded / "checkpoint.pt", args.repeats)
    wpb = statistics.median(float(x) for x in re.findall(r"wpb=([\d.]+)", (out / "adam" / "train.log").read_text()))
    update_s = wpb / summary["adam"]["median_wps"]
    summary["optimizer_step_s"] = {k: round(v, 5) for k, v in steps.items()}
    summary["median_update_s_adam"] = round(update_s, 3)
    summary["update_time_ratio_from_optimizer_step"] = round(
        (update_s + steps["adam_scaled"] - steps["adam"]) / update_s, 4)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
