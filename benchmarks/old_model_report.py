"""Print the BENCHMARKS.md section of a finished `mmt-upgrade pipeline` run, from its own files.

Reads `<run>/eval/results.json`, `<run>/train.log` (fairseq's), `<run>/train_done.json` and, where the
pipeline wrote one, `<run>/timings.json`; nothing is typed by hand.

    .venv/bin/python benchmarks/old_model_report.py runs/old_model
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path


def main(run: Path) -> None:
    results = json.loads((run / "eval" / "results.json").read_text())
    done = json.loads((run / "train_done.json").read_text())
    log = (run / "train.log").read_text()
    # fairseq writes a log line once per handler it added (one more each epoch): key by update
    wps = list({int(u): float(w) for w, u in re.findall(r"wps=([\d.]+), ups=.*?num_updates=(\d+)", log)}.values())
    train_s = re.findall(r"done training in ([\d.]+) seconds", log)
    valid = {int(u): loss for loss, u in re.findall(r"valid on 'valid' subset \| loss ([\d.]+).*?num_updates (\d+)", log)}
    timings = json.loads((run / "timings.json").read_text()) if (run / "timings.json").exists() else {}
    print(f"- updates: {done['num_updates']}; fairseq training wall time: {float(train_s[-1]) / 60:.1f} min"
          if train_s else f"- updates: {done['num_updates']}")
    print(f"- training target words/s (fairseq `wps`, per {len(wps)} log intervals): median {statistics.median(wps):.0f}, "
          f"min {min(wps):.0f}, max {max(wps):.0f}")
    print("- valid loss by update: " + ", ".join(f"{u}: {loss}" for u, loss in valid.items()))
    if timings:
        print("- stage wall times: " + ", ".join(f"{k[:-2]} {v / 60:.1f} min" for k, v in timings.items()))
    print(f"\nTest split ({results['split']}, beam {results['beam']}), {next(iter(results['directions'].values()))['n']} "
          "verses per direction:\n")
    print("| direction | BLEU | chrF++ | spBLEU | copy-source BLEU | copy-source chrF++ | most-frequent chrF++ |")
    print("|---|---|---|---|---|---|---|")
    rows = list(results["directions"].items()) + [(f"mean {g}", s) for g, s in results["groups"].items()]
    for name, s in rows:
        b = s.get("baselines") or {
            k: results["baseline_groups"][k][name[5:]] for k in ("copy_source", "most_frequent_target")
        }
        print(f"| {name} | {s['bleu']:.1f} | {s['chrfpp']:.1f} | {s['spbleu']:.1f} | {b['copy_source']['bleu']:.1f} | "
              f"{b['copy_source']['chrfpp']:.1f} | {b['most_frequent_target']['chrfpp']:.1f} |")
    print()
    for k, v in results["signatures"].items():
        print(f"- {k}: `{v}`")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/old_model"))
