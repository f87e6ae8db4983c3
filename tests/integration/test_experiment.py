"""`mmt-upgrade experiment` / `report` / `train`: config checks, the printed plan, the tiny experiment end to end
through submitit's local executor (real fairseq-train, fairseq-generate, sacrebleu), resume after a kill, and a
run the time guard stopped early (not finished, resumed to its plan, never upgraded)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.paths import CONFIG_DIR
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_num_updates, read_checkpoint, training_clock
from mmt_upgrade.pipeline.experiment.plan import build_plan
from mmt_upgrade.pipeline.experiment.runner import progress
from mmt_upgrade.pipeline.experiment.spec import ExperimentConfig
from mmt_upgrade.pipeline.records import RunResult, TrainDone, read_record
from mmt_upgrade.pipeline.rundir import ExperimentDir, RunDir

from ..conftest import BIN, REPO_ROOT, run_cli

TINY = yaml.safe_load((CONFIG_DIR / "tiny_upgrade.yaml").read_text())


# fairseq's interval lines in a --log-file (its simple format): "epoch 001:     10 / 38 loss=9.1, ..., lr=0.003, ..."
TRAIN_INNER = re.compile(r"^epoch \d+:\s+\d+ / \d+ (.*)$", re.M)


def train_inner_stats(log_text: str) -> list[dict[str, float]]:
    """The figures of every training interval line of a fairseq log, by name."""
    return [{k: float(v) for k, v in (kv.split("=", 1) for kv in line.split(", "))}
            for line in TRAIN_INNER.findall(log_text)]


def write_config(path: Path, **changes) -> Path:
    tree = {**TINY, **changes}
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.fixture(scope="module")
def experiment_env(tmp_path_factory) -> dict[str, str]:
    """A private runs directory: the tiny old model is trained there once by the first experiment."""
    env = dict(os.environ, MMT_UPGRADE_RUNS=str(tmp_path_factory.mktemp("runs")), PYTHONUNBUFFERED="1")
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    return env


def experiment(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "mmt-upgrade"), "experiment", *args, "--poll-seconds", "0.5"], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"experiment {' '.join(args)} exited {proc.returncode}\n{proc.stderr[-6000:]}")
    return proc


@pytest.mark.parametrize("change, message", [
    ({"runs": {"a": {"base": "b"}, "b": {"base": "a"}}}, "form a cycle"),
    ({"runs": {"a": {"base": "nope"}}}, "which is not a run"),
    ({"runs": {"a": {"upgrade": {"initt": "unk"}}}}, "run a: upgrade: unknown key 'initt'"),
    ({"runs": {"a": {"train": {"finetune-from-model": "x.pt"}}}}, "set by the experiment itself"),
    ({"runs": {"a": {"start": "scratch", "distill": {"kd-method": "alm"}}}}, "starts from scratch"),
    ({"runs": {"a": {"start": "middle"}}}, "start must be one of"),
    ({"runs": {"a": {"upgrade": {"init": "zeros"}}}}, "run a: upgrade: init: 'zeros' is not one of"),
    ({"train": {}}, "set train.max-update"),
    ({"new_langs": ["es"]}, "already in the old model"),
    ({"evaluate": {"every": 0}}, "evaluate: every must be a positive number"),
])
def test_bad_experiment_configs_are_refused_naming_the_problem(tmp_path, change, message):
    path = write_config(tmp_path / "bad.yaml", **change)
    with pytest.raises(UserInputError, match=message) as err:
        build_plan(ExperimentConfig.load(str(path)), tmp_path / "exp", prepare=False)
    assert str(path) in str(err.value)


def test_a_run_config_is_not_an_experiment():
    with pytest.raises(UserInputError, match="needs `old_model` and `runs`"):
        ExperimentConfig.load("tiny")


def test_ladder_runs_inherit_their_base():
    runs = ExperimentConfig.load("bible_upgrade").resolved()
    assert runs["full"].upgrade == {**runs["+grow"].upgrade}
    assert runs["full"].train["optimizer"] == "adam_scaled" and runs["full"].distill == {"kd-method": "alm"}
    assert runs["+lr"].distill == {} and "upsample-langs" not in runs["+lr"].train
    assert runs["naive"].upgrade == {"init": "random"} and runs["scratch"].start == "scratch"


def test_dry_run_prints_every_run_and_its_fairseq_command_and_runs_nothing(tmp_path, experiment_env):
    out = tmp_path / "exp"
    text = experiment(experiment_env, "tiny_upgrade", "--dry-run", "--out", str(out)).stdout
    lines = text.splitlines()
    runs = [x for x in lines if x.startswith("[")]
    assert [x.split(":")[0] for x in runs] == ["[1/3] scratch", "[2/3] naive", "[3/3] full"]
    commands = {r.split(":")[0].split()[1]: lines[lines.index(r) + 1] for r in runs}
    assert all(c.strip().startswith("fairseq-train") for c in commands.values())
    assert "--finetune-from-model" not in commands["scratch"] and "--finetune-from-model" in commands["naive"]
    assert "--criterion cross_vocab_distillation" in commands["full"] and "--teacher-path" in commands["full"]
    # scratch is the size of full's grown model (1 + 1 encoder layers, FFN 64 x 1.5)
    for flag in ("--encoder-layers 2", "--encoder-ffn-embed-dim 96"):
        assert flag in commands["scratch"] and flag in commands["full"] and flag not in commands["naive"]
    assert not (out / "plan.json").exists() and not (out / "runs").exists()


# `full` distils with the shared-piece KL, weighted up, so that its term can be read back from fairseq's log
# (3 decimals): on a model this small ALM's (a binary KL of chunk likelihoods at tau = 100) rounds to 0.000,
# the shared KL's at its weight 0.5 to about 0.003.
KD_SHARED = ("--set", "runs.full.distill.kd-method=shared", "--set", "runs.full.distill.kd-weight=50")
# The finals (the curve's last checkpoints, scored once more) by CTranslate2, the curve points by fairseq-generate.
FINALS_CT2 = ("--set", "evaluate.final_backend=ct2", "--set", "evaluate.ct2_quantization=float32")


def test_tiny_experiment_end_to_end_then_skipped_when_rerun(tmp_path, experiment_env):
    out = tmp_path / "exp"
    # Two sittings: `--runs naive` first; its plan and report still cover every run of the config.
    experiment(experiment_env, "tiny_upgrade", *KD_SHARED, *FINALS_CT2, "--runs", "naive", "--out", str(out),
               timeout=1200)
    partial = json.loads((out / "report.json").read_text())
    assert list(partial["runs"]) == ["naive"] and partial["missing_runs"] == ["scratch", "full"]
    assert not (out / "runs" / "full").exists()
    run_cli("mmt-upgrade", "report", str(out), "--out", str(tmp_path / "sitting1"))  # its archive: naive alone
    first = experiment(experiment_env, "tiny_upgrade", *KD_SHARED, *FINALS_CT2, "--out", str(out), timeout=1200)
    assert "naive: finished earlier; skipping" in first.stderr
    report = json.loads((out / "report.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    assert list(report["runs"]) == ["scratch", "naive", "full"] and not report["missing_runs"]
    for name, curve in report["curves"].items():
        ups = [p["updates"] for p in curve]
        assert ups == ([10, 20] if name == "scratch" else [0, 10, 20]), (name, ups)
        trained = [p for p in curve if p["updates"]]
        tokens = [p["target_tokens"] for p in trained]
        assert all(t > 0 for t in tokens) and tokens == sorted(set(tokens)), (name, tokens)
        assert all(p["train_wall_s"] > 0 for p in trained)
        for p in curve:
            assert set(p["groups"]) >= {"all", "old", "new"} and len(p["directions"]) == 6
    # The report's numbers are the result files' numbers; results record the updates actually trained.
    exp = ExperimentDir(out)
    old, full = read_record(RunResult, exp.old_model.result), read_record(RunResult, exp.run("full").result)
    assert report["runs"]["full"]["forgetting_chrfpp"] == pytest.approx(
        full.final_scored.chrfpp("old") - old.final_scored.chrfpp("all"))
    assert (old.planned_updates, old.trained_updates, full.planned_updates, full.trained_updates) == (30, 30, 20, 20)
    # Progress counts the update-0 evaluation (in upgrades/<key>.eval) and the final with the run's own.
    plans = build_plan(ExperimentConfig.load("tiny_upgrade", (KD_SHARED + FINALS_CT2)[1::2]), out, prepare=False).runs
    assert progress(plans["naive"]) == "update 20/20, 4 evaluation(s) done"  # updates 0, 10, 20 and the final
    assert progress(plans["scratch"]) == "update 20/20, 3 evaluation(s) done"
    assert report["references"] == {"scratch": "scratch", "continue": None}
    steps = [c for c in report["comparisons"] if c["kind"] == "step"]
    assert {(c["a"], c["b"]) for c in steps} == {("full", "naive")} and all("p_value" in c for c in steps)
    # every number can be recomputed: the finals' translations and their references are kept
    final = full.final_scored
    assert final.references and (exp.run("full").root / final.references / "en-it.it").exists()
    assert (exp.run("full").root / final.eval_dir / "translations" / "test.en-it.it").exists()
    # ...translated by CTranslate2 (the old model's final too), the curve by fairseq-generate
    for root, point in ((exp.run("full").root, final), (exp.old_model.root, old.final_scored)):
        signature = json.loads((root / point.eval_dir / "results.json").read_text())["signatures"]["backend"]
        assert signature.startswith("backend:ct2|") and "quantization:float32" in signature, signature
    curve_dir = exp.run("full").root / full.curve[-1].eval_dir
    assert json.loads((curve_dir / "results.json").read_text())["signatures"]["backend"].startswith("backend:fairseq")
    md = (out / "report.md").read_text()
    assert "(a) new directions" in md and "(b) `full` forgetting vs the old model" in md
    assert "(c) cumulative step `full` − `naive`, new: " in md
    for png in ("curves.png", "forgetting.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every technique really reached fairseq, read from its training interval lines (updates 10 and 20):
    inner = train_inner_stats(exp.run("full").train_log.read_text())
    assert [s["num_updates"] for s in inner] == [10, 20]
    for stats in inner:
        # adam_scaled: each group's lr is its multiplier (lr-scale-old 0.1, -new 1.0) times the schedule's lr
        assert stats["lr_old"] == pytest.approx(0.1 * stats["lr"], rel=1e-4)
        assert stats["lr_new"] == pytest.approx(stats["lr"], rel=1e-4)
        # cross_vocab_distillation: the loss is the label-smoothed cross-entropy plus a non-zero KD term
        # (each logged rounded to 3 decimals)
        assert stats["kd_loss"] > 0.05
        assert stats["loss"] == pytest.approx(stats["ce_loss"] + stats["kd_loss"], abs=2e-3)
    naive = train_inner_stats(exp.run("naive").train_log.read_text())  # plain Adam and cross-entropy
    assert naive and not any({"lr_old", "kd_loss"} & set(s) for s in naive)
    sampling = json.loads((out / "runs" / "full" / "checkpoints" / "sampling.json").read_text())
    assert sampling["upsample"] == {"langs": ["it"], "factor": 2.0}
    assert plan["runs"]["scratch"]["start_checkpoint"] is None
    # Upgraded runs count their own training time, not the old model's (fairseq carries a clock over).
    for upgraded in out.glob("upgrades/*/checkpoint.pt"):
        state = torch.load(upgraded, map_location="cpu", weights_only=False)
        assert state["extra_state"]["previous_training_time"] == 0.0
        assert "target_tokens" not in state["task_state"]
    # Interval checkpoints are deleted once evaluated; the last one stays for resuming.
    assert sorted(p.name for p in (out / "runs" / "naive" / "checkpoints").glob("*.pt")) == [
        "checkpoint_best.pt", "checkpoint_last.pt"]
    # Run again: nothing is trained or evaluated again.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    again = experiment(experiment_env, "tiny_upgrade", *KD_SHARED, *FINALS_CT2, "--out", str(out))
    assert again.stderr.count("finished earlier; skipping") == 4  # the old model and the three runs
    assert "submitted job" not in again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")} == stamps
    # `mmt-upgrade report` reproduces the report from the result files alone.
    run_cli("mmt-upgrade", "report", str(out), "--out", str(tmp_path / "again"))
    assert json.loads((tmp_path / "again" / "report.json").read_text()) == report
    # ... and from its archive alone (no text: per-sentence statistics of the real finals), and a later
    # sitting that lacks `naive` reports it from the first sitting's archive.
    run_cli("mmt-upgrade", "report", str(tmp_path / "again" / "archive"), "--out", str(tmp_path / "from_archive"))
    assert json.loads((tmp_path / "from_archive" / "report.json").read_text()) == report
    shutil.copytree(out, tmp_path / "sitting2", ignore=shutil.ignore_patterns("naive"))
    run_cli("mmt-upgrade", "report", str(tmp_path / "sitting2"), str(tmp_path / "sitting1" / "archive"),
            "--out", str(tmp_path / "merged"))
    assert json.loads((tmp_path / "merged" / "report.json").read_text()) == report
    assert "update 20/20" in first.stderr  # progress was shown


def test_killed_experiment_resumes_the_interrupted_run_and_skips_finished_ones(tmp_path, experiment_env):
    """The experiment process dies mid-run and its local job lives on, orphaned (suspended here, so that it
    is still mid-run when the experiment restarts); the restart stops that job, resumes the run from its
    last checkpoint and leaves the finished run alone."""
    config = write_config(tmp_path / "resume.yaml", name="resume", runs={
        "first": {"upgrade": {"init": "unk"}},
        "second": {"base": "first", "train": {"max-update": 60}},
    }, evaluate={**TINY["evaluate"], "every": 20})
    out = tmp_path / "exp"
    cmd = [str(BIN / "mmt-upgrade"), "experiment", str(config), "--out", str(out), "--poll-seconds", "0.2"]
    proc = subprocess.Popen(cmd, env=experiment_env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = out / "runs" / "second" / "checkpoints" / "checkpoint_last.pt"
    deadline = time.monotonic() + 480
    try:
        while not last.exists():  # the second run has saved its first checkpoint (update 20 of 60)
            assert proc.poll() is None, "the experiment ended before it could be interrupted"
            assert time.monotonic() < deadline, "the second run never saved a checkpoint"
            time.sleep(0.1)
    finally:
        proc.kill()  # the experiment only: its job is orphaned
        proc.wait()
    orphans = subprocess.run(["pgrep", "-f", f"submitit.*{out}"], capture_output=True, text=True).stdout.split()
    assert orphans, "the job died with the experiment: nothing orphaned to test"
    for pid in orphans:
        os.kill(int(pid), signal.SIGSTOP)
    first_result = out / "runs" / "first" / "result.json"
    stamp = first_result.stat().st_mtime_ns
    again = experiment(experiment_env, str(config), "--out", str(out))
    assert "first: finished earlier; skipping" in again.stderr
    assert "second: stopping job" in again.stderr, "the orphaned job was not stopped before resubmitting"
    assert first_result.stat().st_mtime_ns == stamp
    result = read_record(RunResult, ExperimentDir(out).run("second").result)
    assert [p.updates for p in result.curve] == [0, 20, 40, 60] and result.trained_updates == 60
    job = json.loads((out / "jobs" / "jobs.json").read_text())["jobs"]["second"]["job_id"]
    log = (out / "jobs" / f"{job}_0_log.err").read_text()  # the resubmitted job's own log
    resumed = [int(x) for x in re.findall(r"Loaded checkpoint \S+checkpoint_last\.pt \(epoch \d+ @ (\d+) updates\)", log)]
    assert resumed and 20 <= resumed[0] < 60, f"the interrupted run did not resume mid-run: {resumed}"
    leftover = subprocess.run(["pgrep", "-f", f"submitit.*{out}"], capture_output=True, text=True).stdout
    assert not leftover.strip(), f"job processes left running: {leftover}"


GUARD = 1e-5  # hours (36 ms of fairseq's training clock): stops the tiny model after its first update or so


def test_a_run_the_time_guard_stopped_is_not_finished_and_resumes_to_its_plan(tmp_path):
    run = RunDir(tmp_path / "tiny")
    train = ["train", "tiny", "--run-dir", str(run.root)]
    first = run_cli("mmt-upgrade", *train, "--set", f"train.stop-time-hours={GUARD}", check=False)
    stopped = checkpoint_num_updates(run.last)
    assert 1 <= stopped < 30, stopped
    message = (f"tiny stopped at update {stopped} of 30 planned (--stop-time-hours {GUARD} is set: the time guard): "
               "NOT finished, so not reused, upgraded or reported; run the same command again to resume it")
    assert first.returncode == 2 and f"mmt-upgrade train: error: {message}" in first.stderr, first.stderr[-3000:]
    assert f"WARNING: train: {message}" in first.stderr
    assert not run.done.exists()
    # The same guarded command again makes progress: fairseq's clock carries over in the checkpoint, so the
    # guard it is given is this call's budget on top of that clock, not the bare flag (which would stop at once).
    clock = training_clock(read_checkpoint(run.last))
    again = run_cli("mmt-upgrade", *train, "--set", f"train.stop-time-hours={GUARD}", check=False)
    assert again.returncode == 2 and not run.done.exists()
    assert checkpoint_num_updates(run.last) > stopped
    given = [float(x) for x in re.findall(r"'stop_time_hours': ([0-9.e+-]+)", run.train_log.read_text())]
    assert given[0] == GUARD and given[-1] == pytest.approx(GUARD + clock / 3600, rel=1e-9)
    # Without the guard it resumes from checkpoint_last.pt to exactly its planned updates, then is finished.
    resumed_from = checkpoint_num_updates(run.last)
    last = run_cli("mmt-upgrade", *train)
    assert checkpoint_num_updates(run.last) == 30
    done = read_record(TrainDone, run.done)
    assert (done.num_updates, done.planned_updates, done.finished) == (30, 30, True)
    assert re.search(rf"Loaded checkpoint \S+checkpoint_last\.pt \(epoch \d+ @ {resumed_from} updates\)",
                     last.stdout + last.stderr)


def test_an_experiment_refuses_an_old_model_stopped_before_its_plan(tmp_path, experiment_env):
    """README command 1 once stopped the old model at update 268 of 2,600 and went on to upgrade it."""
    tiny = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    old = tmp_path / "tiny_guarded.yaml"
    old.write_text(yaml.safe_dump({**tiny, "name": "tiny_guarded", "train": {**tiny["train"], "stop-time-hours": GUARD}}))
    config = write_config(tmp_path / "guarded.yaml", name="guarded", old_model=str(old))
    out = tmp_path / "exp"
    proc = subprocess.run([str(BIN / "mmt-upgrade"), "experiment", str(config), "--out", str(out), "--poll-seconds",
                           "0.5"], env=experiment_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert re.search(r"mmt-upgrade experiment: error: run old_model: tiny_guarded stopped at update \d+ of 30 "
                     r"planned .*NOT finished.* run the same command again to resume it", proc.stderr), proc.stderr[-3000:]
    assert "old_model: finished" not in proc.stderr
    exp = ExperimentDir(out)
    assert not (out / "upgrades").exists() and not exp.old_model.result.exists() and not exp.report_json.exists()
    assert not RunDir(Path(experiment_env["MMT_UPGRADE_RUNS"]) / "tiny_guarded").done.exists()
