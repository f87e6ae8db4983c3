"""The tiny experiment through a real single-node SLURM cluster (munged, slurmctld, slurmd started here as root).

Skips, saying why, only where the Debian packages `slurmctld slurmd slurm-client munge` are not installed
(`scripts/test.sh` installs them when it runs as root with apt-get) or the tests do not run as root.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import pytest

from mmt_upgrade.pipeline.experiment.plan import RunPlan
from mmt_upgrade.pipeline.experiment.runner import ClusterOptions, TrainingJob, make_executor
from mmt_upgrade.pipeline.records import read_json
from mmt_upgrade.pipeline.runconfig import EvalOptions
from mmt_upgrade.pipeline.rundir import ExperimentDir, RunDir

from ..conftest import BIN, REPO_ROOT, tiny_train_argv
from .test_experiment import write_config

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name,) if p.exists()), None)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory) -> Iterator[dict[str, str]]:
    missing = [d for d in DAEMONS if _find(d) is None]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing): "
                    "apt-get install slurmctld slurmd slurm-client munge (scripts/test.sh does this as root)")
    if os.geteuid() != 0:
        pytest.skip("starting munged, slurmctld and slurmd needs root")
    d = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname().split(".")[0]
    (d / "state").mkdir()
    (d / "spool").mkdir()
    (d / "munge").mkdir(mode=0o700)
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["dd", "if=/dev/urandom", f"of={d / 'munge.key'}", "bs=1024", "count=1"], check=True,
                       capture_output=True)
        key = d / "munge.key"
    key_copy = d / "munge" / "munge.key"
    shutil.copyfile(key, key_copy)
    os.chmod(key_copy, 0o400)
    conf = d / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=mmtupgradetest", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", f"AuthInfo=socket={d / 'munge' / 'munge.socket'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none", "JobCompType=jobcomp/none", "MpiDefault=none",
        "ReturnToService=2", f"StateSaveLocation={d / 'state'}", f"SlurmdSpoolDir={d / 'spool'}",
        f"SlurmctldPidFile={d / 'slurmctld.pid'}", f"SlurmdPidFile={d / 'slurmd.pid'}",
        f"SlurmctldLogFile={d / 'slurmctld.log'}", f"SlurmdLogFile={d / 'slurmd.log'}",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN",
        "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
    env = dict(os.environ, SLURM_CONF=str(conf))
    subprocess.run([_find("munged"), "--force", f"--socket={d / 'munge' / 'munge.socket'}", f"--key-file={key_copy}",
                    f"--log-file={d / 'munged.log'}", f"--pid-file={d / 'munged.pid'}",
                    f"--seed-file={d / 'munged.seed'}"], check=True, capture_output=True)
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([_find(daemon), "-f", str(conf)], env=env, check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            info = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            if info.returncode == 0 and info.stdout.strip() == "idle":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the SLURM node never became idle: {info.stdout}{info.stderr}\n"
                                     + (d / "slurmctld.log").read_text()[-3000:])
            time.sleep(0.5)
        yield env
    finally:
        _drain(env)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            pid = d / pid_file
            if pid.exists():
                try:
                    os.kill(int(pid.read_text().split()[0]), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass


def test_tiny_experiment_on_a_real_slurm_cluster(tmp_path, slurm_cluster):
    env = dict(slurm_cluster, MMT_UPGRADE_RUNS=str(tmp_path / "runs"), PYTHONUNBUFFERED="1")
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    config = write_config(tmp_path / "slurm.yaml", name="slurm", runs={  # planning is tested locally: two jobs here
        "full": {"upgrade": {"init": "unk", "add-encoder-layers": 1}, "distill": {"kd-method": "alm"}}})
    out = tmp_path / "exp"
    proc = subprocess.run([str(BIN / "mmt-upgrade"), "experiment", str(config), "--out", str(out), "--cluster", "slurm",
                           "--partition", "test", "--cpus-per-task", "1", "--poll-seconds", "1"],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-6000:]
    exp = ExperimentDir(out)
    jobs = read_json(exp.jobs_file)["jobs"]
    assert set(jobs) == {"old_model", "full"} and {j["cluster"] for j in jobs.values()} == {"slurm"}
    # The jobs really went through sbatch: submitit's SLURM job logs are named after the job ids.
    for job in jobs.values():
        assert list(exp.jobs.glob(f"{job['job_id']}_0_log.out")), job
    report = read_json(exp.report_json)
    assert [p["updates"] for p in report["curves"]["full"]] == [0, 10, 20]
    # Resubmitting the finished experiment runs nothing.
    again = subprocess.run(proc.args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "submitted job" not in again.stderr, again.stderr[-3000:]


# Data-parallel runs on the cluster: one SLURM job with two tasks (srun starts both; `TrainingJob` gives each its
# fairseq flags), 24 updates, evaluated every 8. Dropout off, so an interrupted run must equal an uninterrupted one.
DDP_UPDATES, DDP_EVERY = 24, 8


def _ddp_plan(data, root: Path) -> RunPlan:
    run = RunDir(root)
    flags = {"max-update": DDP_UPDATES, "save-interval-updates": DDP_EVERY, "keep-interval-updates": -1,
             "dropout": 0, "max-tokens": 1000, "log-interval": 1}
    argv = tiny_train_argv(data, run.checkpoints, **flags) + ["--log-file", str(run.train_log)]
    return RunPlan(name=root.name, run_dir=root, train_argv=argv, train_data=data.root, eval_data=data.root,
                   max_update=DDP_UPDATES, eval_every=DDP_EVERY, evaluation=EvalOptions(beam=1, max_tokens=4000))


def _submit_two_tasks(plan: RunPlan, folder: Path, monkeypatch, slurm_env: dict[str, str]):
    monkeypatch.setenv("SLURM_CONF", slurm_env["SLURM_CONF"])
    options = ClusterOptions(cluster="slurm", partition="test", tasks_per_node=2, cpus_per_task=1, timeout_min=30)
    return make_executor(options, folder).submit(TrainingJob(), plan)


def _curve(result) -> list[str]:
    """A result's evaluation points (updates, target tokens, every score) without their wall times."""
    return [json.dumps(asdict(p) | {"train_wall_s": None}, sort_keys=True, default=str) for p in result.curve]


@pytest.fixture(scope="module")
def ddp_reference(slurm_cluster, tiny_data, tmp_path_factory):
    """An uninterrupted two-task SLURM run: its result, plan and job."""
    root = tmp_path_factory.mktemp("ddp-ref")
    plan = _ddp_plan(tiny_data, root / "run")
    with pytest.MonkeyPatch.context() as mp:
        job = _submit_two_tasks(plan, root / "jobs", mp, slurm_cluster)
        results = job.results()
    return results, plan, job, root / "jobs"


def test_a_two_task_slurm_job_trains_data_parallel_and_rank_0_reports(ddp_reference):
    results, plan, job, jobs = ddp_reference
    assert results[1] is None  # rank 1 only trained
    assert results[0].trained_updates == DDP_UPDATES
    assert [p.updates for p in results[0].curve] == [8, 16, 24]
    logs = [(jobs / f"{job.job_id}_{rank}_log.err").read_text() for rank in (0, 1)]
    assert "distributed init (rank 1): tcp://127.0.0.1:" in logs[1], logs[1][-3000:]
    text = plan.train_files.train_log.read_text()
    assert "'distributed_world_size': 2" in text and "num_updates=24" in text


def _drain(env: dict[str, str], wait_s: float = 120) -> None:
    """Cancel what is left and wait until the queue is empty (completing jobs included): daemons stopped under a
    job that is still ending leave its batch script and sruns behind, waiting for steps nobody runs any more."""
    subprocess.run(["scancel", "--partition", "test"], env=env, capture_output=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True)
        if queue.returncode != 0 or not queue.stdout.strip():
            return
        time.sleep(0.5)


def _start_once_requeued(job_id: str, env: dict[str, str], wait_s: float = 120) -> None:
    """SLURM holds a requeued job until a begin time about two minutes on (`Reason=BeginTime`); move that to
    now, so the test does not idle (best effort: the job starts by itself at its begin time anyway)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        reason = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%r"], env=env, capture_output=True,
                                text=True).stdout.strip()
        if reason == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=env, check=False)
            return
        time.sleep(0.5)


def test_a_preempted_two_task_job_is_requeued_and_resumes_to_the_same_result(ddp_reference, tiny_data, tmp_path,
                                                                             monkeypatch, slurm_cluster):
    """USR2 (what SLURM sends before preemption, `--signal=USR2@90`) mid-training: submitit's rank 0
    requeues the job (`scontrol requeue`), fairseq resumes from checkpoint_last.pt, and the run ends at its
    --max-update with the evaluation points of the uninterrupted run: none missing, none twice."""
    plan = _ddp_plan(tiny_data, tmp_path / "run")
    job = _submit_two_tasks(plan, tmp_path / "jobs", monkeypatch, slurm_cluster)
    log_file, deadline = plan.train_files.train_log, time.monotonic() + 600
    while not (log_file.exists() and re.search(r"num_updates=1[2-9]\b", log_file.read_text())):
        assert time.monotonic() < deadline and not job.done(), "the job never reached update 12"
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR2", str(job.job_id)], env=slurm_cluster, check=True)
    _start_once_requeued(job.job_id, slurm_cluster)
    results = job.results()
    err = (tmp_path / "jobs" / f"{job.job_id}_0_log.err").read_text()  # rank 0, both attempts (append mode)
    assert "Requeued job" in err, err[-3000:]
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ (8|16) updates\)", err), err[-3000:]
    assert results[0].trained_updates == DDP_UPDATES
    reference = ddp_reference[0][0]
    assert [p.updates for p in results[0].curve] == [8, 16, 24]
    assert _curve(results[0]) == _curve(reference)
    assert sorted(p.name for p in plan.out.evals.iterdir()) == sorted(
        p.name for p in ddp_reference[1].out.evals.iterdir())
