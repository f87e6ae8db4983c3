"""The report's logic on hand-made curves: when a run first reaches the scratch run's final chrF++, at which
fraction of its compute, the verdict of each ladder step, and the headline written from the result files."""
from __future__ import annotations

import json

import pytest

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import write_json_atomic
from mmt_upgrade.pipeline.records import CurvePoint, RunResult, Scores, write_record
from mmt_upgrade.pipeline.report import (
    NOISE,
    compute_fraction,
    effect,
    first_reaching,
    summarize_experiment,
    write_report,
)
from mmt_upgrade.pipeline.rundir import ExperimentDir


def pt(updates: int, new: float, old: float, tokens: int | None, wall: float, all_: float | None = None) -> CurvePoint:
    scores = {"new": Scores(new, new / 4), "old": Scores(old, old / 4)}
    scores["all"] = Scores(all_ if all_ is not None else (new + old) / 2, 1.0)
    return CurvePoint(updates=updates, target_tokens=tokens, train_wall_s=wall, groups=scores,
                      directions={"en-it": scores["new"], "en-es": scores["old"]})


def run(name: str, *curve: CurvePoint) -> RunResult:
    top = max(p.updates for p in curve)
    return RunResult(name=name, argv=["--max-update", str(top)], planned_updates=top, trained_updates=top,
                     curve=list(curve))


# scratch ends at new 20.0 / all 30.0 after 200 updates, 2,000 target tokens, 100 s.
SCRATCH = run("scratch", pt(100, 10.0, 30.0, 1000, 50.0), pt(200, 20.0, 40.0, 2000, 100.0))
# full (listed out of order on purpose) first reaches new 20.0 at update 100 (20.0 >= 20.0), all 30.0 at 150.
FULL = run("full", pt(150, 24.0, 37.0, 1200, 45.0), pt(0, 2.0, 30.0, 0, 0.0), pt(50, 19.9, 36.0, 400, 15.0),
           pt(100, 20.0, 39.0, 800, 30.0), pt(200, 26.0, 38.0, 1600, 60.0))
NAIVE = run("naive", pt(0, 1.0, 20.0, 0, 0.0), pt(200, 25.7, 38.3, 1600, 55.0))
OLD = RunResult(name="old_model", argv=["--max-update", "2600"], planned_updates=2600, trained_updates=2600,
                curve=[pt(1950, 0.0, 0.0, 9_000_000, 3000.0, all_=41.0)])
SPECS = {"scratch": {"start": "scratch", "base": ""}, "naive": {"start": "", "base": ""},
         "+lr": {"start": "", "base": "naive"}, "full": {"start": "", "base": "+lr"}}
EVAL = {"every": 50, "split": "test", "max_pairs": 200, "beam": 2, "max_tokens": 6000, "at_start": True}
PLAN = {"format": "plan/1", "config": {"name": "hand", "runs": SPECS, "evaluate": EVAL},
        "runs": {name: {} for name in SPECS}}


def test_first_reaching_is_the_earliest_update_at_or_above_the_target():
    assert first_reaching(FULL.curve, "new", 20.0).updates == 100  # not 150, listed first; 19.9 at 50 is below
    assert first_reaching(FULL.curve, "all", 30.0).updates == 150  # (24 + 37) / 2 = 30.5; at 100: 29.5
    assert first_reaching(FULL.curve, "new", 26.01) is None


def test_compute_fraction_divides_each_measure_and_leaves_unknowns_out():
    assert compute_fraction(pt(100, 0, 0, 800, 30.0), SCRATCH.final) == {
        "updates": 0.5, "target_tokens": 0.4, "train_wall_s": 0.3}
    unknown = compute_fraction(pt(100, 0, 0, None, 30.0), pt(200, 0, 0, 0, 100.0))
    assert unknown == {"updates": 0.5, "target_tokens": None, "train_wall_s": 0.3}


@pytest.mark.parametrize("delta, verdict", [
    (NOISE, "helps"), (NOISE - 0.01, "no clear effect"), (0.0, "no clear effect"),
    (-(NOISE - 0.01), "no clear effect"), (-NOISE, "hurts"), (3.0, "helps"), (-3.0, "hurts"),
])
def test_effect_calls_differences_under_the_noise_level_no_clear_effect(delta, verdict):
    assert effect(delta) == verdict


def test_the_summary_headline_forgetting_and_ladder():
    s = summarize_experiment(PLAN, OLD, {"scratch": SCRATCH, "naive": NAIVE, "full": FULL})
    h = s["headline"]
    assert (h["run"], h["reference"]) == ("full", "scratch")
    assert h["reach_new"] == {"scratch_final_chrfpp": 20.0, "best_chrfpp": 26.0,
                              "reached_at": {"updates": 100, "target_tokens": 800, "train_wall_s": 30.0},
                              "fraction_of_scratch_compute": {"updates": 0.5, "target_tokens": 0.4,
                                                              "train_wall_s": 0.3}}
    assert h["reach_all"]["reached_at"]["updates"] == 150
    assert h["reach_all"]["fraction_of_scratch_compute"] == {"updates": 0.75, "target_tokens": 0.6,
                                                             "train_wall_s": 0.45}
    # (b): full's final old-direction chrF++ minus the old model's (its `all`: it knows only old directions)
    assert h["old_minus_old_model_chrfpp"] == pytest.approx(38.0 - 41.0)
    assert s["runs"]["naive"]["forgetting_chrfpp"] == pytest.approx(38.3 - 41.0)
    # (c): +lr was not run, so full is compared with naive, the step below it
    [step] = s["ladder"]
    assert (step["step"], step["over"]) == ("full", "naive")
    assert step["delta_chrfpp"] == pytest.approx({"new": 0.3, "old": -0.3, "all": 0.0})
    assert step["verdict"] == {"new": "no clear effect", "old": "no clear effect", "all": "no clear effect"}
    assert s["missing_runs"] == ["+lr"]
    assert s["old_model"]["updates"] == 1950 and s["old_model"]["trained_updates"] == 2600
    assert s["runs"]["full"]["updates"] == 200 and s["runs"]["full"]["target_tokens"] == 1600


def test_a_run_that_never_reaches_scratch_has_no_fraction():
    slow = run("full", pt(100, 5.0, 30.0, 800, 30.0), pt(200, 19.0, 38.0, 1600, 60.0))
    s = summarize_experiment(PLAN, OLD, {"scratch": SCRATCH, "full": slow})
    assert s["headline"]["reach_new"]["reached_at"] is None
    assert s["headline"]["reach_new"]["fraction_of_scratch_compute"] is None
    assert s["headline"]["reach_new"]["best_chrfpp"] == 19.0


def test_the_report_is_written_from_the_result_files_alone(tmp_path):
    exp = ExperimentDir(tmp_path / "exp")
    write_json_atomic(exp.plan, PLAN)
    write_record(exp.old_model.result, OLD)
    for result in (SCRATCH, NAIVE, FULL):
        write_record(exp.run(result.name).result, result)
    md = write_report(exp.root, tmp_path / "out").read_text()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["format"] == "report/1" and report["headline"]["reach_new"]["reached_at"]["updates"] == 100
    assert [p["updates"] for p in report["curves"]["full"]] == [150, 0, 50, 100, 200]  # as in result.json
    assert ("- (a) new directions: `full` first reaches `scratch`'s final chrF++ 20.0 at 100 updates: 0.50 of "
            "`scratch`'s updates, 0.40 of its target tokens, 0.30 of its training wall time.") in md
    assert "- (b) old directions: `full` minus the old model: -3.0 chrF++." in md
    assert "- (c) `full` over `naive`: new +0.3 (no clear effect), old -0.3 (no clear effect), all +0.0 chrF++." in md
    assert "- full: 0: 2.0 / 30.0, 50: 19.9 / 36.0, 100: 20.0 / 39.0, 150: 24.0 / 37.0, 200: 26.0 / 38.0" in md
    assert "Not finished (left out): +lr." in md


def test_an_experiment_without_finished_runs_has_no_report(tmp_path):
    exp = ExperimentDir(tmp_path / "exp")
    with pytest.raises(UserInputError, match="no plan.json"):
        write_report(exp.root)
    write_json_atomic(exp.plan, PLAN)
    write_record(exp.old_model.result, OLD)
    with pytest.raises(UserInputError, match="no run has finished yet"):
        write_report(exp.root)
