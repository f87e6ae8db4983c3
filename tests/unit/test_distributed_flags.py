"""The flags each task of a data-parallel run gives fairseq-train, where they come from (submitit's view of a
SLURM job) and what `mmt-upgrade experiment --dry-run` shows of them (two-process training itself:
tests/integration/test_distributed.py)."""
from __future__ import annotations

import re

import pytest
from submitit.slurm.slurm import SlurmJobEnvironment

from mmt_upgrade.cli import main
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.paths import CONFIG_DIR
from mmt_upgrade.fairseq_io.distributed import (
    PORT_BASE,
    PORT_SPAN,
    distributed_flags,
    rendezvous_port,
    task_of_job,
    uses_gpu,
)
from mmt_upgrade.pipeline.experiment.runner import ClusterOptions


def flag(flags: list[str], name: str) -> str:
    return flags[flags.index(name) + 1]


def test_cpu_flags_use_gloo_and_the_legacy_wrapper():
    assert distributed_flags(2, 1, 1, "127.0.0.1", 21000, gpu=False) == [
        "--distributed-world-size", "2", "--distributed-rank", "1",
        "--distributed-init-method", "tcp://127.0.0.1:21000", "--distributed-no-spawn",
        "--load-checkpoint-on-all-dp-ranks", "--device-id", "0", "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp", "--cpu"]


def test_gpu_flags_use_nccl_and_the_local_rank_as_device():
    flags = distributed_flags(16, 9, 1, "node01", 21000, gpu=True)
    assert flags == ["--distributed-world-size", "16", "--distributed-rank", "9",
                     "--distributed-init-method", "tcp://node01:21000", "--distributed-no-spawn",
                     "--load-checkpoint-on-all-dp-ranks", "--distributed-backend", "nccl", "--device-id", "1"]
    assert "--cpu" not in flags and "--ddp-backend" not in flags


@pytest.mark.parametrize("world, rank, local", [(2, 2, 0), (0, 0, 0), (2, -1, 0), (2, 0, -1)])
def test_impossible_ranks_are_refused(world, rank, local):
    with pytest.raises(ValueError):
        distributed_flags(world, rank, local, "h", 1, gpu=False)


def test_port_depends_on_the_job_id_alone():
    ports = {job: rendezvous_port(job) for job in ("1", "2", "12345", "12345_3", "987654")}
    assert all(PORT_BASE <= p < PORT_BASE + PORT_SPAN for p in ports.values())
    assert len(set(ports.values())) == len(ports)  # not a constant
    assert rendezvous_port("12345") == ports["12345"]


def test_gpu_only_when_visible_and_not_asked_for_cpu():
    assert uses_gpu(["data", "--lr", "1"], 8) and not uses_gpu(["data", "--cpu"], 8) and not uses_gpu(["data"], 0)


def slurm_env(monkeypatch, node: int, local: int, nodes: int = 2, per_node: int = 8) -> SlurmJobEnvironment:
    """submitit's environment of one task of a SLURM job (block distribution: SLURM_PROCID = node x per_node
    + local), as srun sets it."""
    for key, value in {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": nodes * per_node, "SLURM_JOB_NUM_NODES": nodes,
                       "SLURM_NODEID": node, "SLURM_LOCALID": local, "SLURM_PROCID": node * per_node + local,
                       "SLURM_JOB_NODELIST": f"gpu[07-{7 + nodes - 1:02d}]"}.items():
        monkeypatch.setenv(key, str(value))
    return SlurmJobEnvironment()


def test_every_task_of_a_two_node_job_gets_its_own_rank_and_the_same_rendezvous(monkeypatch):
    tasks = [task_of_job(slurm_env(monkeypatch, n, lr), gpu=True) for n in range(2) for lr in range(8)]
    assert [t.rank for t in tasks] == list(range(16)) and [t.local_rank for t in tasks] == list(range(8)) * 2
    assert {(t.world_size, t.master, t.port) for t in tasks} == {(16, "gpu07", rendezvous_port("4242"))}
    assert flag(tasks[11].flags(), "--device-id") == "3"


def test_one_task_jobs_and_one_node_jobs(monkeypatch):
    assert task_of_job(slurm_env(monkeypatch, 0, 0, nodes=1, per_node=1), gpu=False) is None
    task = task_of_job(slurm_env(monkeypatch, 0, 1, nodes=1, per_node=2), gpu=False)
    assert (task.rank, task.master) == (1, "127.0.0.1")  # one node: the loopback, no name to resolve


def test_tasks_per_node_defaults_and_checks():
    assert ClusterOptions().tasks() == 1
    assert ClusterOptions(gpus_per_node=8).tasks() == 8
    assert ClusterOptions(tasks_per_node=2).tasks() == 2
    for bad in (ClusterOptions(tasks_per_node=-1), ClusterOptions(gpus_per_node=8, tasks_per_node=2),
                ClusterOptions(nodes=2)):
        with pytest.raises(UserInputError):
            bad.check()


def test_dry_run_of_two_nodes_of_eight_gpus_shows_sbatch_resources_and_task_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMT_UPGRADE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MMT_UPGRADE_CACHE", str(tmp_path / "cache"))
    assert main(["experiment", str(CONFIG_DIR / "tiny_upgrade.yaml"), "--dry-run", "--out", str(tmp_path / "exp"),
                 "--cluster", "slurm", "--partition", "p", "--nodes", "2", "--gpus-per-node", "8",
                 "--set", "train.cpu=false"]) == 0
    out = capsys.readouterr().out
    sbatch = dict(re.findall(r"--([\w-]+)=(\S+)", next(x for x in out.splitlines() if x.startswith("  sbatch "))))
    assert {k: sbatch[k] for k in ("nodes", "ntasks-per-node", "gpus-per-node", "partition", "signal")} == {
        "nodes": "2", "ntasks-per-node": "8", "gpus-per-node": "8", "partition": "p", "signal": "USR2@90"}
    task = next(x for x in out.splitlines() if x.startswith("  each task: "))
    assert task.endswith("--distributed-world-size 16 --distributed-rank RANK --distributed-init-method "
                         "tcp://MASTER:PORT --distributed-no-spawn --load-checkpoint-on-all-dp-ranks "
                         "--distributed-backend nccl --device-id LOCAL_RANK")
    assert "rank = node_index x tasks_per_node + local_rank" in out and "RANK 0..15, LOCAL_RANK 0..7" in out
    assert not (tmp_path / "exp").exists() and not (tmp_path / "runs").exists()
