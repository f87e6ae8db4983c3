"""The tiny experiment through a real single-node SLURM cluster (munged, slurmctld, slurmd started here as root).

Skips, saying why, only where the Debian packages `slurmctld slurmd slurm-client munge` are not installed
(`scripts/test.sh` installs them when it runs as root with apt-get) or the tests do not run as root.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from mmt_upgrade.pipeline.records import read_json
from mmt_upgrade.pipeline.rundir import ExperimentDir

from ..conftest import BIN, REPO_ROOT
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
    config = write_config(tmp_path / "slurm.yaml", name="slurm", runs={
        "scratch": {"start": "scratch", "size_of": "full"},
        "full": {"upgrade": {"init": "unk", "add-encoder-layers": 1}, "distill": {"kd-method": "alm"}}})
    out = tmp_path / "exp"
    proc = subprocess.run([str(BIN / "mmt-upgrade"), "experiment", str(config), "--out", str(out), "--cluster", "slurm",
                           "--partition", "test", "--cpus-per-task", "1", "--poll-seconds", "1"],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-6000:]
    exp = ExperimentDir(out)
    jobs = read_json(exp.jobs_file)["jobs"]
    assert set(jobs) == {"old_model", "scratch", "full"} and {j["cluster"] for j in jobs.values()} == {"slurm"}
    # The jobs really went through sbatch: submitit's SLURM job logs are named after the job ids.
    for job in jobs.values():
        assert list(exp.jobs.glob(f"{job['job_id']}_0_log.out")), job
    report = read_json(exp.report_json)
    assert [p["updates"] for p in report["curves"]["full"]] == [0, 10, 20]
    assert [p["updates"] for p in report["curves"]["scratch"]] == [10, 20]
    # Resubmitting the finished experiment runs nothing.
    again = subprocess.run(proc.args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "submitted job" not in again.stderr, again.stderr[-3000:]
