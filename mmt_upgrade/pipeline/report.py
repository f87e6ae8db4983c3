"""`mmt-upgrade report RUN_DIR`: report.md, report.json and plots from an experiment's result files.

Every number comes from `runs/*/result.json` and `old_model/result.json` (`RunResult`s: curves of
chrF++/BLEU with the compute spent: updates, target tokens, training wall time). The old model's own
training cost is reported apart, as in the paper; the upgraded runs' compute counts only their own training.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import write_json_atomic, write_text_atomic
from mmt_upgrade.pipeline.records import (
    PLAN,
    REPORT,
    CurvePoint,
    RunResult,
    check_format,
    format_field,
    read_json,
    read_record,
)
from mmt_upgrade.pipeline.rundir import ExperimentDir

COMPUTE = ("updates", "target_tokens", "train_wall_s")
GROUPS = ("new", "old", "all")
NOISE = 0.5  # chrF++ differences below this are reported as no clear effect (a few hundred test sentences)


def load_results(root: Path) -> tuple[dict, RunResult, dict[str, RunResult]]:
    """plan.json, the old model's result and each run's, in plan order (unfinished runs left out)."""
    exp = ExperimentDir(Path(root))
    if not exp.plan.exists():
        raise UserInputError(f"{root} is not an experiment directory (no plan.json); run `mmt-upgrade experiment`")
    plan = read_json(exp.plan)
    check_format(plan, PLAN, 1, exp.plan)
    old_file = exp.old_model.result
    if not old_file.exists():
        raise UserInputError(f"{old_file} is missing: the old model has not been evaluated yet")
    runs = {name: read_record(RunResult, exp.run(name).result) for name in plan["runs"]
            if exp.run(name).result.exists()}
    if not runs:
        raise UserInputError(f"{root}: no run has finished yet (no runs/*/{old_file.name})")
    return plan, read_record(RunResult, old_file), runs


def compute(point: CurvePoint) -> dict[str, Any]:
    return {k: getattr(point, k) for k in COMPUTE}


def first_reaching(curve: Sequence[CurvePoint], group: str, target: float) -> CurvePoint | None:
    """The earliest point (by updates) whose chrF++ on `group` reaches `target`."""
    for point in sorted(curve, key=lambda p: p.updates):
        if point.chrfpp(group) >= target:
            return point
    return None


def compute_fraction(point: CurvePoint, reference: CurvePoint) -> dict[str, float | None]:
    """Each compute measure of `point` over the reference's (None where either is unknown or zero)."""
    mine, ref = compute(point), compute(reference)
    return {k: (mine[k] / ref[k] if mine[k] is not None and ref[k] else None) for k in COMPUTE}


def effect(delta: float) -> str:
    if abs(delta) < NOISE:
        return "no clear effect"
    return "helps" if delta > 0 else "hurts"


def reach(run: RunResult, reference: RunResult, group: str) -> dict[str, Any]:
    """When `run` first reaches the reference's final chrF++ on `group`, and at which share of its compute."""
    ref = reference.final
    target = ref.chrfpp(group)
    hit = first_reaching(run.curve, group, target)
    return {"scratch_final_chrfpp": target, "best_chrfpp": max(p.chrfpp(group) for p in run.curve),
            "reached_at": compute(hit) if hit else None,
            "fraction_of_scratch_compute": compute_fraction(hit, ref) if hit else None}


def summarize_experiment(plan: Mapping[str, Any], old: RunResult, runs: Mapping[str, RunResult]) -> dict[str, Any]:
    """report.json: the final table, the headline (a, b), the ladder's verdicts (c) and the curves."""
    specs = plan["config"]["runs"]
    old_point = old.final
    old_chrf = old_point.chrfpp("all")  # the old model knows only old directions
    table = {}
    for name, res in runs.items():
        p = res.final
        table[name] = {**compute(p), **{f"chrfpp_{g}": p.chrfpp(g) for g in GROUPS},
                       **{f"bleu_{g}": p.groups[g].bleu for g in GROUPS},
                       "forgetting_chrfpp": p.chrfpp("old") - old_chrf}
    scratch = next((n for n in runs if specs[n].get("start") == "scratch"), None)
    headline_run = "full" if "full" in runs else list(runs)[-1]
    headline: dict[str, Any] = {"run": headline_run, "reference": scratch}
    if scratch and headline_run != scratch:
        for group in ("new", "all"):
            headline[f"reach_{group}"] = reach(runs[headline_run], runs[scratch], group)
    headline["old_minus_old_model_chrfpp"] = table[headline_run]["forgetting_chrfpp"]
    ladder = []
    for name in runs:
        base = specs[name].get("base")
        while base and base not in runs:  # a step of the ladder that was not run: compare with the one below
            base = specs[base].get("base")
        if base:
            d = {g: table[name][f"chrfpp_{g}"] - table[base][f"chrfpp_{g}"] for g in GROUPS}
            ladder.append({"step": name, "over": base, "delta_chrfpp": d,
                           "verdict": {g: effect(v) for g, v in d.items()}})
    return {**format_field(REPORT),
            "old_model": {"chrfpp_old": old_chrf, "bleu_old": old_point.groups["all"].bleu, **compute(old_point),
                          "target_tokens_from": old_point.target_tokens_from, "trained_updates": old.trained_updates},
            "runs": table, "headline": headline, "ladder": ladder,
            "curves": {n: [p.to_json() for p in r.curve] for n, r in runs.items()}, "noise_chrfpp": NOISE,
            "eval": plan["config"]["evaluate"], "missing_runs": [n for n in plan["runs"] if n not in runs]}


def curves(s: Mapping[str, Any]) -> dict[str, list[CurvePoint]]:
    """The summary's curves as points, in update order."""
    return {run: sorted((CurvePoint.from_json(p, f"report curve {run}") for p in c), key=lambda p: p.updates)
            for run, c in s["curves"].items()}


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def headline_lines(s: Mapping[str, Any]) -> list[str]:
    h = s["headline"]
    run, ref = h["run"], h["reference"]
    lines = []
    for group, label in (("new", "new directions"), ("all", "all directions")):
        r = h.get(f"reach_{group}")
        if r is None:
            lines.append(f"- (a) {label}: no `scratch` run to compare with.")
        elif r["fraction_of_scratch_compute"] is None:
            lines.append(f"- (a) {label}: `{run}` does not reach `{ref}`'s final chrF++ {r['scratch_final_chrfpp']:.1f} "
                         f"within its budget (best {r['best_chrfpp']:.1f}).")
        else:
            f = r["fraction_of_scratch_compute"]
            lines.append(f"- (a) {label}: `{run}` first reaches `{ref}`'s final chrF++ {r['scratch_final_chrfpp']:.1f} "
                         f"at {_fmt(r['reached_at']['updates'])} updates: {_fmt(f['updates'], 2)} of `{ref}`'s updates, "
                         f"{_fmt(f['target_tokens'], 2)} of its target tokens, {_fmt(f['train_wall_s'], 2)} of its "
                         f"training wall time.")
    if ref:
        r, o = s["runs"][ref], s["old_model"]
        lines.append(f"- For scale: `{ref}` trained {_fmt(r['updates'])} updates ({_fmt(r['target_tokens'])} target tokens); "
                     f"the old model {_fmt(o['updates'])} ({_fmt(o['target_tokens'])}), not counted in (a).")
    lines.append(f"- (b) old directions: `{run}` minus the old model: {h['old_minus_old_model_chrfpp']:+.1f} chrF++.")
    for step in s["ladder"]:
        d, v = step["delta_chrfpp"], step["verdict"]
        lines.append(f"- (c) `{step['step']}` over `{step['over']}`: new {d['new']:+.1f} ({v['new']}), "
                     f"old {d['old']:+.1f} ({v['old']}), all {d['all']:+.1f} chrF++.")
    return lines


def markdown(s: Mapping[str, Any], name: str) -> str:
    o, e = s["old_model"], s["eval"]
    lines = [f"# Experiment `{name}`", "",
             f"Test: {e['max_pairs']} sentences per direction (`{e['split']}`, the same for every run and the old "
             f"model), beam {e['beam']}; checkpoints evaluated every {e['every']} updates. chrF++ = "
             f"sacrebleu `CHRF(word_order=2)`, BLEU `tok:13a`. Differences under {s['noise_chrfpp']} chrF++ are "
             "reported as no clear effect.", "", "## Headline", "", *headline_lines(s), "",
             "## Old model (its own training, reported apart)", "",
             f"chrF++ {o['chrfpp_old']:.1f} / BLEU {o['bleu_old']:.1f} on the old directions; "
             f"{_fmt(o['updates'])} updates, {_fmt(o['target_tokens'])} target tokens "
             f"({o['target_tokens_from']}), {_fmt(o['train_wall_s'])} s of training.", "",
             "## Runs (final checkpoint)", "",
             "| run | updates | target tokens | train s | chrF++ new | chrF++ old | chrF++ all | BLEU new | BLEU old "
             "| old − old model |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run, r in s["runs"].items():
        lines.append(f"| {run} | {_fmt(r['updates'])} | {_fmt(r['target_tokens'])} | {_fmt(r['train_wall_s'], 0)} | "
                     f"{r['chrfpp_new']:.1f} | {r['chrfpp_old']:.1f} | {r['chrfpp_all']:.1f} | {r['bleu_new']:.1f} | "
                     f"{r['bleu_old']:.1f} | {r['forgetting_chrfpp']:+.1f} |")
    lines += ["", "## Curves (chrF++ new / old at each evaluated checkpoint)", ""]
    for run, curve in curves(s).items():
        pts = ", ".join(f"{p.updates}: {p.chrfpp('new'):.1f} / {p.chrfpp('old'):.1f}" for p in curve)
        lines.append(f"- {run}: {pts}")
    if s["missing_runs"]:
        lines += ["", f"Not finished (left out): {', '.join(s['missing_runs'])}."]
    lines += ["", "Plots: `plots/curves.png` (chrF++ against target tokens and training wall time), "
              "`plots/forgetting.png` (old-direction chrF++ minus the old model's).", ""]
    return "\n".join(lines)


def plot(s: Mapping[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    old_chrf = s["old_model"]["chrfpp_old"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharey="row")
    for row, group in enumerate(("new", "old")):
        for col, (key, label, scale) in enumerate((("target_tokens", "target tokens (millions)", 1e-6),
                                                  ("train_wall_s", "training wall time (min)", 1 / 60))):
            ax = axes[row][col]
            for run, curve in curves(s).items():
                pts = [p for p in curve if getattr(p, key) is not None]
                ax.plot([getattr(p, key) * scale for p in pts], [p.chrfpp(group) for p in pts], marker="o",
                        label=run)
            if group == "old":
                ax.axhline(old_chrf, color="black", linestyle="--", linewidth=1, label="old model")
            ax.set_xlabel(label)
            ax.set_ylabel(f"chrF++ ({group} directions)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    axes[1][0].legend(fontsize=8)
    fig.tight_layout()
    curves_png = out / "curves.png"
    fig.savefig(curves_png, dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(s["runs"])
    ax.bar(names, [s["runs"][n]["forgetting_chrfpp"] for n in names])
    ax.axhline(0, color="black", linewidth=1)
    ax.set_ylabel("old-direction chrF++ − old model's")
    ax.set_title("forgetting (final checkpoints)")
    fig.tight_layout()
    forgetting_png = out / "forgetting.png"
    fig.savefig(forgetting_png, dpi=110)
    plt.close(fig)
    return [curves_png, forgetting_png]


def write_report(root: Path, out: Path | None = None) -> Path:
    """Write report.json, report.md and plots/ into `out` (default: the experiment directory)."""
    out_dir = ExperimentDir(Path(out) if out else Path(root))
    plan, old, runs = load_results(Path(root))
    s = summarize_experiment(plan, old, runs)
    write_json_atomic(out_dir.report_json, s)
    plot(s, out_dir.plots)
    write_text_atomic(out_dir.report_md, markdown(s, plan["config"]["name"]))
    return out_dir.report_md


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`mmt-upgrade report`."""
    parser.add_argument("run_dir", help="the experiment directory (runs/experiments/<name>)")
    parser.add_argument("--out", help="where to write them (default: the experiment directory)")


def run(args: argparse.Namespace) -> int:
    report = write_report(Path(args.run_dir), Path(args.out) if args.out else None)
    print(report.read_text())
    print(report)
    return 0
