"""The default old model upgraded with it and ar: what the vocabulary upgrade did, and `verify`.

Runs `mmt-upgrade upgrade` in `extend` mode once per init method and `verify` on each (the first
`--sentences` dev pairs of every old direction), then once in `retrain` mode; prints the BENCHMARKS.md
section (markdown) and writes summary.json. Needs the trained default old model
(`bash scripts/main.sh`, or `mmt-upgrade train old_model`).

    .venv/bin/python benchmarks/old_model_upgrade.py --out runs/old_model_upgrade
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from mmt_upgrade.core.embeddings import INIT_METHODS
from mmt_upgrade.core.paths import cache_dir, runs_dir
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.runconfig import load_config

CLI = str(Path(sys.executable).parent / "mmt-upgrade")


def run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"mmt-upgrade {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default=str(runs_dir() / "old_model" / "checkpoints" / "checkpoint_best.pt"))
    ap.add_argument("--out", default=str(runs_dir() / "old_model_upgrade"))
    ap.add_argument("--sentences", type=int, default=50)
    args = ap.parse_args()
    out = Path(args.out)
    old_data = prepare_data(load_config("old_model").data, cache_dir())
    summary: dict = {"checkpoint": args.checkpoint, "sentences_per_direction": args.sentences, "extend": {}}
    for init in INIT_METHODS:
        target = out / f"extend-{init}"
        shutil.rmtree(target, ignore_errors=True)
        run("upgrade", args.checkpoint, "--out", str(target), "--old-data", str(old_data.root), "--init", init,
            "--langtok-init", "it=es")
        v = run("verify", args.checkpoint, str(target), "--old-data", str(old_data.root),
                "--sentences", str(args.sentences), "--json", str(out / f"verify-{init}.json"))
        report = json.loads((target / "upgrade.json").read_text())
        figures = json.loads((out / f"verify-{init}.json").read_text())
        masses = [d["new_symbol_mass_mean"] for d in figures["directions"].values()]
        summary["extend"][init] = {"vocab": report["vocab"], "segmentation_change": report["segmentation_change"],
                                   "segmentation": report["segmentation"], "verify_ok": figures["ok"],
                                   "verify_exit": v.returncode,
                                   "max_abs_logprob_diff": figures["max_abs_logprob_diff"],
                                   "greedy_identical": f"{figures['greedy_identical']}/{figures['sentences']}",
                                   "new_symbol_mass_mean": sum(masses) / len(masses), "upgrade_wall_s": report["wall_s"]}
        print(f"extend {init}: {summary['extend'][init]['max_abs_logprob_diff']:.2e} "
              f"{summary['extend'][init]['greedy_identical']} mass {summary['extend'][init]['new_symbol_mass_mean']:.4f}",
              flush=True)
        if init != "unk":
            (target / "checkpoint.pt").unlink()
    target = out / "retrain"
    shutil.rmtree(target, ignore_errors=True)
    run("upgrade", args.checkpoint, "--out", str(target), "--old-data", str(old_data.root), "--vocab-mode", "retrain")
    report = json.loads((target / "upgrade.json").read_text())
    summary["retrain"] = {"vocab": report["vocab"], "segmentation_change": report["segmentation_change"],
                          "segmentation": report["segmentation"]}
    (target / "checkpoint.pt").unlink()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(markdown(summary))


def markdown(s: dict) -> str:
    unk = s["extend"]["unk"]
    v, r = unk["vocab"], s["retrain"]["vocab"]
    change = lambda seg: ", ".join(f"{k} {x['changed']}/{x['sentences']}" for k, x in seg.items())  # noqa: E731
    lines = [
        f"- extend: {v['kept']} old pieces kept at their ids, {v['added']} added, {v['shared']} of the "
        f"{v['new_model_pieces']}-piece it+ar model already in the old vocabulary "
        f"({v['shared_fraction_of_new_model']:.1%}).",
        f"- extend, old-language dev sentences segmented differently: {change(unk['segmentation_change'])}.",
        f"- retrain ({r['new_model_pieces']} pieces): {r['kept']} of {r['old_pieces']} old pieces kept "
        f"(overlap {r['overlap_fraction_of_old']:.1%}); segmentation changed: {change(s['retrain']['segmentation_change'])}.",
        "",
        "| lang | pieces/word old SPM | extend | retrain | byte-fallback share old SPM | extend |",
        "|---|---|---|---|---|---|",
    ]
    for lang, seg in unk["segmentation"].items():
        rt = s["retrain"]["segmentation"][lang]["upgraded"]
        lines.append(f"| {lang} | {seg['old']['pieces_per_word']} | {seg['upgraded']['pieces_per_word']} | "
                     f"{rt['pieces_per_word']} | {seg['old']['byte_fallback_fraction']:.1%} | "
                     f"{seg['upgraded']['byte_fallback_fraction']:.1%} |")
    lines += ["", f"`verify` ({s['sentences_per_direction']} dev pairs x 8 old directions, new pieces and language "
              "tokens masked), and the probability mass the unmasked new rows take at step 0:", "",
              "| init | max abs dlogp | greedy identical | new-row mass (mean per target token) | verify |",
              "|---|---|---|---|---|"]
    for init, e in s["extend"].items():
        lines.append(f"| {init} | {e['max_abs_logprob_diff']:.1e} | {e['greedy_identical']} | "
                     f"{e['new_symbol_mass_mean']:.4f} | {'OK' if e['verify_ok'] else 'BROKEN'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
