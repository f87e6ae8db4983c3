"""Compute at equal quality: what a reference trained from scratch spends to reach a given score, read off
its curve by linear interpolation, and the paper's ratios against it.

A curve is a list of (score, compute) points in training order, compute a mapping of measures (updates,
target tokens, wall seconds) to numbers. The reading is at the first crossing of the target: between the
last point below it and the next one, each measure interpolated linearly in the score. A target at or
below the first point's score is reached "by" that point (an upper bound: the curve holds nothing
earlier); a target above every point is not reached, and the reference's last point is then a lower bound
("more than" it), which turns the ratios into upper bounds.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

MEASURES = ("updates", "target_tokens", "train_wall_s")
Point = tuple[float, Mapping[str, float | None]]


def _lerp(a: float | None, b: float | None, t: float) -> float | None:
    return None if a is None or b is None else a + (b - a) * t


def compute_to_reach(curve: Sequence[Point], target: float) -> dict[str, Any]:
    """`{"reached": bool, "bound": "interpolated" | "at most" | "more than", "compute": {measure: value}}`."""
    if not curve:
        raise ValueError("compute_to_reach: empty curve")
    first_score, first = curve[0]
    if target <= first_score:
        return {"reached": True, "bound": "at most", "compute": {k: first.get(k) for k in MEASURES}}
    for (s0, c0), (s1, c1) in zip(curve, curve[1:]):
        if s0 < target <= s1:
            t = (target - s0) / (s1 - s0)
            return {"reached": True, "bound": "interpolated",
                    "compute": {k: _lerp(c0.get(k), c1.get(k), t) for k in MEASURES}}
    return {"reached": False, "bound": "more than", "compute": {k: curve[-1][1].get(k) for k in MEASURES}}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def compute_fractions(spent: Mapping[str, float | None], old: Mapping[str, float | None],
                      scratch: Mapping[str, float | None]) -> dict[str, dict[str, float | None]]:
    """The paper's accounting against scratch's compute at equal quality: `upgrade` = the upgrade's own
    compute / scratch's; `total` = (the old model's + the upgrade's) / scratch's."""
    total = {k: (spent.get(k) + old.get(k)) if spent.get(k) is not None and old.get(k) is not None else None
             for k in MEASURES}
    return {"upgrade": {k: _ratio(spent.get(k), scratch.get(k)) for k in MEASURES},
            "total": {k: _ratio(total[k], scratch.get(k)) for k in MEASURES}}
