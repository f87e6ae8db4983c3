"""Compute at equal quality (`core/iso_compute.py`) for every upgraded run: for its final and each curve point,
what `scratch` spends to reach the same chrF++, read off scratch's curve, with the paper's ratios.

Both sides are curve points (the same fixed sample and decoding), so like is compared with like; the
finals on the whole test set are for the tables and the significance tests."""
from __future__ import annotations

from statistics import fmean
from typing import Any, Sequence

from mmt_upgrade.core.iso_compute import MEASURES, compute_fractions, compute_to_reach
from mmt_upgrade.pipeline.records import CurvePoint
from mmt_upgrade.pipeline.report.load import Experiment, Replica

GROUPS = ("new", "all")


def reading(point: CurvePoint, scratch: Sequence[CurvePoint], old: dict[str, Any], group: str) -> dict[str, Any]:
    """Scratch's compute to reach `point`'s chrF++ on `group`, and the fractions (upgrade, total)."""
    curve = [(p.chrfpp(group), p.compute) for p in sorted(scratch, key=lambda p: p.updates)]
    target = point.chrfpp(group)
    reach = compute_to_reach(curve, target)
    return {"updates": point.updates, "chrfpp": target, **reach,
            "fractions": compute_fractions(point.compute, old, reach["compute"])}


def iso_quality(exp: Experiment) -> dict[str, Any]:
    """`{"scratch": run, "old_compute": {...}, "runs": {replica: {group: {"final": reading, "curve": [...]}}},
    "groups": {run: {group: {fraction means over replicas}}}}` (empty without a scratch run)."""
    scratch_group = exp.first("scratch")
    if scratch_group is None:
        return {}
    scratch = exp.groups()[scratch_group][0]  # one reference curve: the first seed's
    old = exp.old.result.final.compute
    out: dict[str, Any] = {"scratch": scratch.name, "old_compute": old, "runs": {}, "groups": {},
                           "scratch_final": {g: scratch.result.final.chrfpp(g) for g in GROUPS},
                           "scratch_compute": scratch.result.final.compute}
    for r in upgraded(exp):
        curve = sorted(r.result.curve, key=lambda p: p.updates)
        out["runs"][r.name] = {g: {"final": reading(r.result.final, scratch.result.curve, old, g),
                                   "curve": [reading(p, scratch.result.curve, old, g) for p in curve]}
                               for g in GROUPS}
    for group, reps in exp.groups().items():
        if reps[0].name not in out["runs"]:
            continue
        out["groups"][group] = {g: summary([out["runs"][r.name][g]["final"] for r in reps]) for g in GROUPS}
    return out


def upgraded(exp: Experiment) -> list[Replica]:
    return [r for r in exp.replicas.values() if r.start == "upgrade" and r.split == exp.eval_split]


def summary(readings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean over replicas of each fraction. `bound`: "interpolated"; "at most" (scratch's compute; the
    fractions at least) when a replica's point lies below scratch's first; "more than" (the fractions at
    most) when one lies above scratch's whole curve; no fractions when the replicas bound opposite sides."""
    bounds = {x["bound"] for x in readings}
    out: dict[str, Any] = {"reached": all(x["reached"] for x in readings), "replicas": len(readings),
                           "chrfpp": fmean(x["chrfpp"] for x in readings)}
    if {"at most", "more than"} <= bounds:
        return {**out, "bound": "mixed"}
    for kind in ("upgrade", "total"):
        out[kind] = {m: _mean([x["fractions"][kind][m] for x in readings]) for m in MEASURES}
    out["scratch_compute"] = {m: _mean([x["compute"][m] for x in readings]) for m in MEASURES}
    out["bound"] = next((b for b in ("more than", "at most") if b in bounds), "interpolated")
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else fmean(values)
