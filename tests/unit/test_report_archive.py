"""The report's archive: a report rebuilt from it alone equals the report from the experiment directory, two
sittings' runs merged through it equal one sitting with all of them, and an archive of another experiment or
another old model is refused by name."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.pipeline.records import RunResult, read_record, write_record
from mmt_upgrade.pipeline.report import write_report
from mmt_upgrade.pipeline.report.load import load_experiment
from mmt_upgrade.pipeline.report.summary import summarize_experiment
from mmt_upgrade.pipeline.rundir import ExperimentDir
from tests.unit.test_report import write_experiment

SAMPLES = 100


def summary(*roots: Path) -> dict:
    return summarize_experiment(load_experiment(*roots), n_samples=SAMPLES)


def sitting(full: Path, to: Path, keep: set[str]) -> Path:
    """A copy of the experiment in which only the runs `keep` have finished."""
    shutil.copytree(full, to)
    for run in ExperimentDir(to).root.glob("runs/*"):
        if run.name not in keep:
            shutil.rmtree(run)
    return to


def test_the_archive_alone_gives_the_same_report_without_any_text(tmp_path):
    exp = write_experiment(tmp_path / "exp")
    write_report(exp.root, tmp_path / "out", n_samples=SAMPLES)
    archive = tmp_path / "out" / "archive"
    assert summary(archive) == summary(exp.root)  # every comparison's interval, from the statistics alone
    files = sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file())
    assert files == ["old_model/result.json", "old_model/sentence_stats.npz", "plan.json",
                     *[f"runs/{r}/{f}" for r in sorted(p.name for p in exp.root.glob("runs/*"))
                       for f in ("result.json", "sentence_stats.npz")]]
    with np.load(archive / "runs" / "full@s1" / "sentence_stats.npz") as f:
        assert sorted(f.files) == sorted(f"{m}/{d}" for m in ("chrfpp", "bleu")
                                         for d in ("es-en", "en-es", "it-en", "en-it"))
        assert all(f[k].dtype == np.uint16 for k in f.files)  # counts, compact


def test_two_sittings_report_as_one(tmp_path):
    exp = write_experiment(tmp_path / "exp")
    later = {"full@s1", "full@s2", "-init"}
    first = sitting(exp.root, tmp_path / "first", {p.name for p in exp.root.glob("runs/*")} - later)
    write_report(first, tmp_path / "out", n_samples=SAMPLES)
    missing = json.loads((tmp_path / "out" / "report.json").read_text())["missing_runs"]
    assert missing == ["full@s1", "full@s2", "-init"]  # plan order
    second = sitting(exp.root, tmp_path / "second", later)
    write_report(second, tmp_path / "out", n_samples=SAMPLES, more=[tmp_path / "out" / "archive"])
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == json.loads(json.dumps(summary(exp.root)))
    assert summary(tmp_path / "out" / "archive") == summary(exp.root)  # the archive now holds both sittings


def test_an_archive_of_another_old_model_or_plan_is_refused(tmp_path):
    exp = write_experiment(tmp_path / "exp")
    write_report(exp.root, tmp_path / "out", n_samples=SAMPLES)
    archive = ExperimentDir(tmp_path / "out" / "archive")
    old = read_record(RunResult, archive.old_model.result)
    point = old.final_point
    changed = {**point.directions, "es-en": type(point.directions["es-en"])(99.0, 1.0)}
    write_record(archive.old_model.result, RunResult(**{**old.__dict__, "final_point": type(point)(
        **{**point.__dict__, "directions": changed})}))
    with pytest.raises(UserInputError, match=r"archive: its old model scores differently .*\(es-en: "):
        load_experiment(exp.root, archive.root)
    plan = json.loads(archive.plan.read_text())
    plan["config"]["new_langs"] = ["ar"]
    archive.plan.write_text(json.dumps(plan))
    with pytest.raises(UserInputError, match=r"archive: another experiment's results .* in new_langs"):
        load_experiment(exp.root, archive.root)
