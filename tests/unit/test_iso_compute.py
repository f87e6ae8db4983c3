"""Compute at equal quality read off a scratch curve: linear interpolation at the first crossing, the bound
before the first point, "not reached" above the curve (the last point a lower bound), and the paper's ratios."""
from __future__ import annotations

import pytest

from mmt_upgrade.core.iso_compute import compute_fractions, compute_to_reach

CURVE = [(10.0, {"updates": 100, "target_tokens": 1000, "train_wall_s": 50.0}),
         (20.0, {"updates": 200, "target_tokens": 2000, "train_wall_s": 100.0}),
         (18.0, {"updates": 300, "target_tokens": 3000, "train_wall_s": 150.0}),  # a dip: the first crossing counts
         (30.0, {"updates": 400, "target_tokens": 4000, "train_wall_s": None})]


def test_interpolated_at_the_first_crossing():
    r = compute_to_reach(CURVE, 15.0)
    assert r["reached"] and r["bound"] == "interpolated"
    assert r["compute"] == pytest.approx({"updates": 150, "target_tokens": 1500, "train_wall_s": 75.0})
    r = compute_to_reach(CURVE, 19.0)  # 10 -> 20 crosses it first, not 18 -> 30
    assert r["compute"]["updates"] == pytest.approx(190)
    r = compute_to_reach(CURVE, 25.0)  # 18 -> 30; the wall time of the later point is unknown
    assert r["compute"]["updates"] == pytest.approx(300 + 100 * 7 / 12) and r["compute"]["train_wall_s"] is None


def test_below_the_first_point_and_above_the_curve_are_bounds():
    assert compute_to_reach(CURVE, 4.0) == {"reached": True, "bound": "at most", "compute": CURVE[0][1]}
    assert compute_to_reach(CURVE, 20.0)["compute"]["updates"] == pytest.approx(200)  # exactly on a point
    assert compute_to_reach(CURVE, 30.5) == {"reached": False, "bound": "more than", "compute": CURVE[-1][1]}


def test_fractions_upgrade_and_total():
    f = compute_fractions({"updates": 100, "target_tokens": 800, "train_wall_s": 30.0},
                          {"updates": 2600, "target_tokens": 9000, "train_wall_s": 3000.0},
                          {"updates": 150, "target_tokens": 1500, "train_wall_s": 75.0})
    assert f["upgrade"] == pytest.approx({"updates": 100 / 150, "target_tokens": 800 / 1500, "train_wall_s": 0.4})
    assert f["total"] == pytest.approx({"updates": 2700 / 150, "target_tokens": 9800 / 1500, "train_wall_s": 3030 / 75})
    unknown = compute_fractions({"updates": 100, "target_tokens": None, "train_wall_s": 3.0},
                                {"updates": 10, "target_tokens": 5, "train_wall_s": 1.0},
                                {"updates": 200, "target_tokens": 10, "train_wall_s": 0.0})
    assert unknown["upgrade"] == {"updates": 0.5, "target_tokens": None, "train_wall_s": None}
