"""The default old model grown by +2 encoder and +2 decoder layers and FFN x2: `verify` in each mode.

Growth alone (no new languages), so every old direction is compared token by token: `preserve` must
keep max |Δ log-prob| <= 1e-4 with identical greedy output; `paper` shows how far it moves the model,
also with depth and width apart, to show which of the two moves it.
Prints the BENCHMARKS.md table and writes summary.json. Needs the trained default old model.

    .venv/bin/python benchmarks/old_model_growth.py --out runs/old_model_growth
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from mmt_upgrade.core.paths import cache_dir, runs_dir
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.runconfig import load_config

CLI = str(Path(sys.executable).parent / "mmt-upgrade")
DEEPER = ("--add-encoder-layers", "2", "--add-decoder-layers", "2")
WIDER = ("--widen-ffn", "2")
# (name, --grow-init, --grow-position, growth flags)
VARIANTS = [("both", "paper", "top", DEEPER + WIDER), ("both", "preserve", "top", DEEPER + WIDER),
            ("both", "paper", "interleave", DEEPER + WIDER), ("both", "preserve", "interleave", DEEPER + WIDER),
            ("deeper only", "paper", "top", DEEPER), ("wider only", "paper", "top", WIDER)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default=str(runs_dir() / "old_model" / "checkpoints" / "checkpoint_best.pt"))
    ap.add_argument("--out", default=str(runs_dir() / "old_model_growth"))
    ap.add_argument("--sentences", type=int, default=50)
    args = ap.parse_args()
    out = Path(args.out)
    data = prepare_data(load_config("old_model").data, cache_dir())
    rows = []
    for name, init, position, flags in VARIANTS:
        tag = f"{name.replace(' ', '_')}-{init}-{position}"
        target = out / tag
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([CLI, "upgrade", args.checkpoint, "--out", str(target), "--old-data", str(data.root),
                        "--new-langs", "", *flags, "--grow-init", init, "--grow-position", position],
                       check=True, capture_output=True)
        figures_path = out / f"verify-{tag}.json"
        proc = subprocess.run([CLI, "verify", args.checkpoint, str(target), "--old-data", str(data.root),
                               "--sentences", str(args.sentences), "--json", str(figures_path)],
                              capture_output=True, text=True)
        figures = json.loads(figures_path.read_text())
        report = json.loads((target / "upgrade.json").read_text())
        rows.append({"growth": name, "init": init, "position": position, "exit": proc.returncode, "ok": figures["ok"],
                     "tolerance": figures["tolerance"], "max_abs_logprob_diff": figures["max_abs_logprob_diff"],
                     "greedy_identical": figures["greedy_identical"], "sentences": figures["sentences"],
                     "model_flags": report["fairseq_model_flags"], "upgrade_wall_s": report["wall_s"]})
        print(json.dumps(rows[-1]), flush=True)
        (target / "checkpoint.pt").unlink()
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    flags = " ".join(f"--{k} {v}" for k, v in rows[0]["model_flags"].items())
    print(f"\nGrown model: {flags}\n")
    print("| growth | grow-init | position | max abs dlogp | greedy identical | promise | verify exit |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        promise = f"<= {r['tolerance']:g}" if r["tolerance"] is not None else "none (reported)"
        print(f"| {r['growth']} | {r['init']} | {r['position']} | {r['max_abs_logprob_diff']:.2e} | "
              f"{r['greedy_identical']}/{r['sentences']} | {promise} | {r['exit']} |")


if __name__ == "__main__":
    main()
