"""The typed records of a run's JSON files: round trips, files older than the `format` field, unknown formats."""
from __future__ import annotations

import json

import pytest

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.pipeline.records import (
    TRAIN_LOG,
    CurvePoint,
    RunResult,
    Scores,
    TrainDone,
    check_format,
    max_update_of,
    read_record,
    write_record,
)
from mmt_upgrade.pipeline.rundir import ExperimentDir, RunDir

ARGV = ["data-bin", "--save-dir", "ckpt", "--max-update", "40", "--lr", "0.003"]


def point(updates: int, new: float, tokens: int | None = 1000) -> CurvePoint:
    return CurvePoint(updates=updates, target_tokens=tokens, train_wall_s=1.5 * updates,
                      groups={"new": Scores(new, new / 2), "old": Scores(40.0, 20.0), "all": Scores(30.0, 15.0)},
                      directions={"en-it": Scores(new, new / 2)})


def test_a_run_result_round_trips_through_its_file(tmp_path):
    result = RunResult(name="full", argv=ARGV, planned_updates=40, trained_updates=40,
                       curve=[point(0, 1.0, 0), point(20, 10.5), point(40, 20.25, None)])
    write_record(tmp_path / "result.json", result)
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["format"] == "run-result/3" and data["curve"][1]["format"] == "curve-point/2"
    assert read_record(RunResult, tmp_path / "result.json") == result
    assert result.final == point(40, 20.25, None)


def test_a_curve_point_keeps_where_its_tokens_come_from():
    estimated = CurvePoint(**{**point(20, 3.0).__dict__, "target_tokens_from": TRAIN_LOG})
    assert CurvePoint.from_json(estimated.to_json()) == estimated
    assert CurvePoint.from_json(estimated.to_json()).target_tokens_from == "train.log"


def test_a_final_point_its_files_and_train_stats_round_trip(tmp_path):
    results = {"split": "test", "beam": 5,
               "groups": {"new": {"chrfpp": 20.0, "bleu": 3.0, "spbleu": 4.0}},
               "directions": {"en-it": {"chrfpp": 20.0, "bleu": 3.0, "n": 1137}, "it-en": {"chrfpp": 21.0,
                                                                                          "bleu": 4.0, "n": 1130}},
               "baseline_groups": {"copy_source": {"new": {"chrfpp": 11.0, "bleu": 0.5, "spbleu": 0.1}}}}
    final = CurvePoint.scored(40, 900, 12.0, results)
    assert (final.split, final.beam, final.sentences) == ("test", 5, 1137)
    assert final.baselines == {"copy_source": {"new": Scores(11.0, 0.5)}}
    final = CurvePoint(**{**final.__dict__, "eval_dir": "evals/final", "references": "../../references/test-all"})
    result = RunResult(name="full@s2", argv=ARGV, planned_updates=40, trained_updates=40,
                       curve=[point(0, 1.0, 0), point(40, 20.25)], final_point=final,
                       train_stats=[{"num_updates": 20.0, "loss": 5.1, "kd_loss": 0.2}])
    write_record(tmp_path / "result.json", result)
    back = read_record(RunResult, tmp_path / "result.json")
    assert back == result and back.final_scored == final and back.final == point(40, 20.25)
    assert back.final_point.eval_dir == "evals/final"
    v2 = {k: v for k, v in result.to_json().items() if k not in ("final_point", "train_stats")}
    older = RunResult.from_json({**v2, "format": "run-result/2"})
    assert older.final_point is None and older.final_scored == point(40, 20.25) and older.train_stats == []


def test_a_curve_point_from_an_evaluation_keeps_chrfpp_and_bleu_only():
    results = {"groups": {"all": {"chrfpp": 31.0, "bleu": 9.0, "spbleu": 12.0}},
               "directions": {"en-es": {"chrfpp": 31.0, "bleu": 9.0, "spbleu": 12.0, "skipped_too_long": 0}}}
    p = CurvePoint.scored(10, 500, 2.5, results)
    assert p.groups == {"all": Scores(31.0, 9.0)} and p.directions == {"en-es": Scores(31.0, 9.0)}
    assert p.chrfpp("all") == 31.0


def test_files_without_a_format_read_as_version_1(tmp_path):
    v1_point = {k: v for k, v in point(20, 5.0).to_json().items() if k not in ("format", "target_tokens_from")}
    v1 = {"name": "old_model", "argv": ARGV, "curve": [v1_point]}
    (tmp_path / "result.json").write_text(json.dumps(v1))
    result = read_record(RunResult, tmp_path / "result.json")
    assert result.trained_updates is None and result.planned_updates == 40  # from the command's --max-update
    assert result.curve == [point(20, 5.0)]
    done = TrainDone.from_json({"num_updates": 268, "checkpoint_best_sha256": "ab", "argv": [*ARGV[:3], "--max-update", "2600"]})
    assert not done.finished and done.planned_updates == 2600


def test_train_done_is_finished_only_at_its_planned_updates():
    assert TrainDone(argv=ARGV, num_updates=40, checkpoint_best_sha256="x").finished
    assert not TrainDone(argv=ARGV, num_updates=39, checkpoint_best_sha256="x").finished
    assert TrainDone(argv=["data-bin"], num_updates=3, checkpoint_best_sha256="x").finished  # no --max-update
    done = TrainDone(argv=ARGV, num_updates=12, checkpoint_best_sha256="x")
    assert TrainDone.from_json(done.to_json()) == done and done.to_json()["planned_updates"] == 40
    assert max_update_of(ARGV) == 40 and max_update_of([]) == 0


@pytest.mark.parametrize("record, data", [
    (RunResult, {"format": "run-result/4", "name": "x", "argv": [], "curve": []}),
    (CurvePoint, {"format": "point/1", "updates": 1}),
    (TrainDone, {"format": "train-done/9"}),
])
def test_an_unknown_format_is_one_error_naming_the_file(tmp_path, record, data):
    path = tmp_path / "some.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserInputError, match=rf"{path}: unknown format '{data['format']}'; this mmt-upgrade reads"):
        read_record(record, path)


def test_a_file_that_is_not_a_record_is_one_error(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UserInputError, match="broken.json: not valid JSON"):
        read_record(RunResult, tmp_path / "broken.json")
    with pytest.raises(UserInputError, match="list.json: not a run-result record"):
        check_format([1, 2], "run-result", 2, tmp_path / "list.json")


def test_the_directory_objects_name_every_file(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.last == tmp_path / "r/checkpoints/checkpoint_last.pt"
    assert run.best == tmp_path / "r/checkpoints/checkpoint_best.pt"
    assert (run.done, run.result, run.train_log) == (tmp_path / "r/train_done.json", tmp_path / "r/result.json",
                                                     tmp_path / "r/train.log")
    assert run.eval_dir(20) == tmp_path / "r/evals/0000020" and run.eval_dir(None) == tmp_path / "r/evals/best"
    run.checkpoints.mkdir(parents=True)
    for name in ("checkpoint_1_20.pt", "checkpoint_2_200.pt", "checkpoint_3_20.pt", "checkpoint_last.pt"):
        (run.checkpoints / name).touch()
    assert [p.name for p in run.interval_checkpoints(20)] == ["checkpoint_1_20.pt", "checkpoint_3_20.pt"]
    assert run.is_kept(run.last) and not run.is_kept(run.checkpoints / "checkpoint_1_20.pt")
    exp = ExperimentDir(tmp_path / "e")
    assert exp.run("full").root == tmp_path / "e/runs/full" and exp.old_model.result == tmp_path / "e/old_model/result.json"
    assert exp.upgrade_eval("ab12") == tmp_path / "e/upgrades/ab12.eval" and exp.jobs_file == tmp_path / "e/jobs/jobs.json"
