"""report.json: every number the report states, from the result files (and the finals' kept hypotheses)."""
from __future__ import annotations

from statistics import fmean
from typing import Any

from mmt_upgrade.core.significance import METRICS, N_SAMPLES, seed_spread
from mmt_upgrade.pipeline.records import REPORT, CurvePoint, format_field
from mmt_upgrade.pipeline.report.compute import iso_quality
from mmt_upgrade.pipeline.report.load import OLD, Experiment, Replica
from mmt_upgrade.pipeline.report.significance import Significance

VERSION = 2
GROUPS = ("new", "old", "all")
KD_FIGURES = ("loss", "ce_loss", "kd_loss", "nll_loss", "kd_share", "kd_aligned")


def old_chrfpp(point: CurvePoint) -> float:
    """Old-direction chrF++ (the old model's `all`: it knows only old directions)."""
    return point.chrfpp("old" if "old" in point.groups else "all")


def scores(point: CurvePoint) -> dict[str, float]:
    return {f"{m}_{g}": getattr(point.groups[g], m) for g in GROUPS if g in point.groups for m in METRICS}


def run_row(r: Replica, old: float, cont: float | None, on_eval_split: bool) -> dict[str, Any]:
    """A replica's final figures; forgetting only for finals on the split the old model was scored on (a dev
    sweep run's scores are of other sentences)."""
    p = r.final
    row = {"run": r.group, "seed": r.seed, "start": r.start, "split": r.split, **p.compute,
           "sentences": p.sentences, "beam": p.beam, **scores(p)}
    if on_eval_split and ("old" in p.groups or r.start == "continue"):
        row["forgetting_chrfpp"] = old_chrfpp(p) - old
        row["forgetting_vs_continue_chrfpp"] = old_chrfpp(p) - cont if cont is not None else None
    return row


def group_row(reps: list[Replica], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread (max - min over seeds) of each final figure of one run."""
    out: dict[str, Any] = {"replicas": [r.name for r in reps], "seeds": [r.seed for r in reps]}
    for key in rows[reps[0].name]:
        values = [rows[r.name].get(key) for r in reps]
        if key.startswith(("chrfpp_", "bleu_", "forgetting")) and all(v is not None for v in values):
            out[key] = {"mean": fmean(values), "spread": seed_spread(values)}
        elif key in ("updates", "target_tokens", "train_wall_s") and all(v is not None for v in values):
            out[key] = fmean(values)
    return out


def plan_comparisons(exp: Experiment) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(kind, a, b, groups): the report states a minus b. Ladder steps and variants against their base
    (`steps` where runs between them were not run: several techniques at once),
    leave-one-out as the base minus the run (what the left-out technique adds), full against naive, every
    upgraded run against `continue` and the old model on the old directions (forgetting)."""
    groups, specs = exp.groups(), exp.config["runs"]
    main = [g for g, rs in groups.items() if rs[0].split == exp.eval_split]
    out = []
    for g in main:
        base, skipped = groups[g][0].base, False
        while base and base not in groups:  # a step of the ladder that was not run: the one below it
            base, skipped = specs.get(base, {}).get("base"), True
        if base:
            kind = groups[g][0].ablation or "step"
            kind = "steps" if kind == "step" and skipped else kind  # bundles the techniques of the missing runs
            out.append((kind, base, g, GROUPS) if kind == "leave-one-out" else (kind, g, base, GROUPS))
    stated = {(a, b) for _, a, b, _ in out}  # a ladder with gaps already steps from full down to naive
    if "full" in groups and "naive" in groups and ("full", "naive") not in stated:
        out.append(("full-vs-naive", "full", "naive", GROUPS))
    cont = exp.first("continue")
    for g in main:
        if groups[g][0].start == "upgrade":
            out += [("forgetting-vs-continue", g, cont, ("old",))] if cont else []
            out.append(("forgetting-vs-old-model", g, OLD, ("old",)))
    if cont:
        out.append(("forgetting-vs-old-model", cont, OLD, ("old",)))
    return out


def comparisons(exp: Experiment, sig: Significance) -> list[dict[str, Any]]:
    reps = {**exp.groups(), OLD: [exp.old]}
    out = []
    for kind, a, b, groups in plan_comparisons(exp):
        for group in groups:
            for metric in METRICS:
                mean = lambda run: fmean(getattr(r.final.groups[group], metric) if group in r.final.groups  # noqa: E731
                                         else getattr(r.final.groups["all"], metric) for r in reps[run])
                test = sig.compare(reps[a], reps[b], group, metric)
                out.append({"kind": kind, "a": a, "b": b, "group": group, "metric": metric,
                            "delta_of_means": mean(a) - mean(b),
                            **(test or {"verdict": "untested (no kept hypotheses)"})})
    return out


def kd_stats(r: Replica) -> list[dict[str, float]]:
    return [{k: s[k] for k in ("num_updates", *KD_FIGURES) if k in s} for s in r.result.train_stats if "kd_loss" in s]


def summarize_experiment(exp: Experiment, n_samples: int = N_SAMPLES, sig: Significance | None = None
                         ) -> dict[str, Any]:
    """report.json (`report/2`, fields in docs/results.md). `sig`: a `Significance` already holding sentence
    statistics (its resample count then replaces `n_samples`)."""
    sig = sig or Significance(exp, n_samples)
    old_point = exp.old.final
    old = old_chrfpp(old_point)
    groups = exp.groups()
    cont = exp.first("continue")
    cont_old = fmean(old_chrfpp(r.final) for r in groups[cont]) if cont else None
    on_eval = [n for n, r in exp.replicas.items() if r.split == exp.eval_split]
    rows = {n: run_row(r, old, cont_old, n in on_eval) for n, r in exp.replicas.items()}
    sweep = {g: {"replicas": [r.name for r in rs], "split": rs[0].split,
                 **{k: fmean(getattr(r.result.final.groups[gr], "chrfpp") for r in rs)
                    for gr in GROUPS if gr in rs[0].result.final.groups for k in [f"chrfpp_{gr}"]}}
             for g, rs in groups.items() if rs[0].split != exp.eval_split}
    chosen = max(sweep, key=lambda g: (sweep[g].get("chrfpp_all", 0.0), sweep[g].get("chrfpp_old", 0.0)),
                 default=None)
    return {**format_field(REPORT, VERSION),
            "old_model": {**scores(old_point), "chrfpp_old": old, **old_point.compute,
                          "target_tokens_from": old_point.target_tokens_from,
                          "trained_updates": exp.old.result.trained_updates, "sentences": old_point.sentences,
                          "beam": old_point.beam, "baselines": _baselines(old_point)},
            "runs": rows, "groups": {g: group_row(rs, rows) for g, rs in groups.items()},
            "references": {"scratch": exp.first("scratch"), "continue": cont},
            "comparisons": comparisons(exp, sig), "iso_quality": iso_quality(exp),
            "sweep": {"runs": sweep, "chosen": chosen, "rule": "highest dev chrF++ on all directions (then "
                                                             "the old ones)"},
            "distillation": {n: kd_stats(r) for n, r in exp.replicas.items() if kd_stats(r)},
            "baselines": {n: _baselines(exp.replicas[n].final) for n in on_eval[:1]},
            "curves": {n: [p.to_json() for p in r.result.curve] for n, r in exp.replicas.items()},
            "n_samples": sig.n_samples, "eval": exp.config["evaluate"], "missing_runs": exp.missing}


def _baselines(point: CurvePoint) -> dict[str, dict[str, float]]:
    return {b: {g: s.chrfpp for g, s in v.items()} for b, v in point.baselines.items()}
