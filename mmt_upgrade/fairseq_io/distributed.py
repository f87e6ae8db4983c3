"""fairseq's own data-parallel training, started with explicit flags rather than `env://` inference.

Every task of a job runs fairseq-train with the same argv plus the flags of `distributed_flags`: world size,
its global rank, a TCP rendezvous on the first host, and `--distributed-no-spawn` (the job launcher,
submitit or SLURM, already started one process per task). Explicit flags because fairseq's `env://`
inference (`_infer_torch_distributed_launch_init`) computes `rank % torch.cuda.device_count()`, a
`ZeroDivisionError` on a CPU node. On CPU the backend is gloo and the DDP wrapper fairseq's `legacy_ddp`
(PyTorch's `DistributedDataParallel` wants CUDA `device_ids` for fairseq's call); on GPU, NCCL and fairseq's
default wrapper. fairseq averages gradients over `world_size x --update-freq` batches, saves checkpoints on
rank 0 only and keeps every rank's data iterator in step, so N tasks with `--update-freq 1` take the same
updates as one process with `--update-freq N` on the same batches.

Every rank reads the checkpoint it starts from itself (`--load-checkpoint-on-all-dp-ranks`): fairseq would
otherwise load it on rank 0 and broadcast it pickled, and torch >= 2.6 unpickles that with `weights_only`,
which refuses the omegaconf config inside (every rank reads it anyway: the task's and the optimizer's
new-parameter record come from that file, so the run directory must be on a filesystem all nodes share).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

PORT_BASE, PORT_SPAN = 20000, 10000  # below Linux's ephemeral range (32768-60999)
RANK_FORMULA = "rank = node_index x tasks_per_node + local_rank (SLURM_NODEID, SLURM_LOCALID; submitit's global_rank)"


@dataclass(frozen=True)
class DistributedTask:
    """One task of a data-parallel job: what fairseq-train needs to join the others."""
    world_size: int
    rank: int
    local_rank: int
    master: str
    port: int
    gpu: bool

    def flags(self) -> list[str]:
        return distributed_flags(self.world_size, self.rank, self.local_rank, self.master, self.port, self.gpu)


def rendezvous_port(job_id: str) -> int:
    """The TCP port of a job's rendezvous, from its id alone, so every task (and a requeued job) agrees."""
    return PORT_BASE + int(hashlib.sha256(str(job_id).encode()).hexdigest(), 16) % PORT_SPAN


def distributed_flags(world_size: int, rank: int, local_rank: int, master: str, port: int, gpu: bool) -> list[str]:
    """fairseq-train flags for task `rank` of `world_size`; appended after the run's own flags, so they win."""
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(f"bad distributed task: rank {rank} (local {local_rank}) of {world_size}")
    flags = ["--distributed-world-size", str(world_size), "--distributed-rank", str(rank),
             "--distributed-init-method", f"tcp://{master}:{port}", "--distributed-no-spawn",
             "--load-checkpoint-on-all-dp-ranks"]
    if gpu:
        return flags + ["--distributed-backend", "nccl", "--device-id", str(local_rank)]
    return flags + ["--device-id", "0", "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp", "--cpu"]


def uses_gpu(argv: Sequence[str], cuda_devices: int) -> bool:
    """Whether fairseq-train will train on GPUs: some are visible and the run does not ask for `--cpu`."""
    return cuda_devices > 0 and "--cpu" not in argv


def task_of_job(env: Any, gpu: bool) -> DistributedTask | None:
    """This process's task from a submitit `JobEnvironment` (None for a one-task job). On one node the
    rendezvous is the loopback address (no name resolution, no network interface to choose)."""
    if env.num_tasks == 1:
        return None
    master = "127.0.0.1" if env.num_nodes == 1 else env.hostnames[0]
    return DistributedTask(env.num_tasks, env.global_rank, env.local_rank, master, rendezvous_port(env.job_id), gpu)
