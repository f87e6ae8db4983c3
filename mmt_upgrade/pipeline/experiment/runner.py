"""Where runs execute: submitit's local executor (one after another on this machine) or SLURM.

Each run is a `TrainingJob`, a submitit `Checkpointable`: on preemption or timeout SLURM requeues it
with the same plan, and fairseq resumes from the run's own `checkpoint_last.pt` (the upgraded start is
`--finetune-from-model`, which fairseq ignores once a last checkpoint exists). Job ids are recorded in
`jobs/jobs.json`, so a restarted experiment re-attaches to SLURM jobs still queued or running, and stops
local jobs orphaned by a killed experiment before resubmitting them (they resume, never start over).

A run with several tasks (`--nodes` x `--tasks-per-node`) trains data-parallel: every task runs the
same fairseq-train with its own flags from `fairseq_io.distributed` (rank 0 alone writes checkpoints,
evaluates and writes results; the other ranks only train).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import submitit
import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log, write_json_atomic
from mmt_upgrade.core.options import OptionGroup, option
from mmt_upgrade.fairseq_io.distributed import (
    PORT_BASE,
    PORT_SPAN,
    RANK_FORMULA,
    DistributedTask,
    rendezvous_port,
    task_of_job,
    uses_gpu,
)
from mmt_upgrade.pipeline.experiment.job import Stopped, execute_run, train_worker
from mmt_upgrade.pipeline.experiment.plan import RunPlan
from mmt_upgrade.pipeline.records import JOBS, RunResult, check_format, format_field, read_json
from mmt_upgrade.pipeline.rundir import ExperimentDir, point_file

CLUSTERS = ("local", "slurm")
UPDATE = re.compile(r"num_updates=(\d+)")


class TrainingJob(submitit.helpers.Checkpointable):
    """One run, or one task of a data-parallel run (fairseq's torch.distributed, flags given explicitly)."""

    def __call__(self, plan: RunPlan) -> RunResult | Stopped | None:
        task = task_of_job(submitit.JobEnvironment(), uses_gpu(plan.train_argv, torch.cuda.device_count()))
        if task is None:
            return execute_run(plan)
        if task.rank != 0:
            train_worker(plan, task.flags())  # rank 0 owns the files and the evaluation
            return None
        return execute_run(plan, task.flags())


@dataclass
class ClusterOptions(OptionGroup):
    """Where an experiment's runs execute (`mmt-upgrade experiment` flags)."""

    cluster: str = option("local", "local (submitit's local executor, runs one after another) or slurm (submitit "
                                   "on SLURM, runs at once)", choices=CLUSTERS)
    partition: str = option("", "SLURM partition")
    account: str = option("", "SLURM account")
    qos: str = option("", "SLURM QOS")
    timeout_min: int = option(24 * 60, "job time limit; a run that hits it is requeued and resumes from its last "
                                       "checkpoint")
    nodes: int = option(1, "nodes per run (fairseq distributed training)")
    gpus_per_node: int = option(0, "GPUs per node (one task per GPU)")
    tasks_per_node: int = option(0, "tasks per node, one fairseq-train process each, training data-parallel "
                                    "(default: --gpus-per-node, or 1 without GPUs; on CPU: gloo)")
    cpus_per_task: int = option(2, "CPUs per task")
    mem_gb: float = option(0.0, "memory per node (default: the partition's)")
    poll_seconds: float = option(10.0, "how often progress is checked")

    def check(self) -> None:
        if self.cluster not in CLUSTERS:
            raise UserInputError(f"--cluster: unknown {self.cluster!r}; choose from {', '.join(CLUSTERS)}")
        if self.cluster == "slurm" and not self.partition:
            raise UserInputError("--cluster slurm needs --partition P")
        if self.nodes < 1 or self.gpus_per_node < 0 or self.cpus_per_task < 1:
            raise UserInputError("--nodes and --cpus-per-task must be positive, --gpus-per-node not negative")
        if self.tasks_per_node < 0 or (self.gpus_per_node and self.tasks_per_node not in (0, self.gpus_per_node)):
            raise UserInputError("--tasks-per-node: one task per GPU (give --gpus-per-node alone), or a positive "
                                 "number of CPU tasks")
        if self.cluster == "local" and self.nodes > 1:
            raise UserInputError("--nodes above 1 needs --cluster slurm")

    def tasks(self) -> int:
        """Tasks per node: one per GPU, else --tasks-per-node (1 by default)."""
        return self.tasks_per_node or max(1, self.gpus_per_node)


def make_executor(options: ClusterOptions, folder: Path) -> submitit.Executor:
    if options.cluster == "local":
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=options.timeout_min, tasks_per_node=options.tasks())
        return executor
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    params: dict[str, Any] = {"slurm_partition": options.partition, "timeout_min": options.timeout_min,
                              "nodes": options.nodes, "tasks_per_node": options.tasks(),
                              "cpus_per_task": options.cpus_per_task, "name": "mmt-upgrade"}
    optional = {"gpus_per_node": options.gpus_per_node, "mem_gb": options.mem_gb,
                "slurm_account": options.account, "slurm_qos": options.qos}
    executor.update_parameters(**params, **{k: v for k, v in optional.items() if v})
    return executor


def describe_cluster(options: ClusterOptions, argv: Sequence[str]) -> str:
    """What `--dry-run` shows of where a run executes: the sbatch resources submitit writes and the
    fairseq-train flags each task of a data-parallel run gets (those of `argv`'s device)."""
    lines = [f"cluster {options.cluster}: {options.nodes} node(s) x {options.tasks()} task(s) per run"]
    if options.cluster == "slurm":
        script = make_executor(options, Path("JOBS"))._executor._make_submission_file_text("CMD", "UID")
        lines.append("  sbatch " + " ".join(x[len("#SBATCH "):] for x in script.splitlines()
                                          if x.startswith("#SBATCH ") and "JOBS/" not in x))
    world = options.nodes * options.tasks()
    if world > 1:
        gpu = uses_gpu(argv, options.gpus_per_node)
        flags = DistributedTask(world, 0, 0, "MASTER", 0, gpu).flags()
        for flag, shown in (("--distributed-rank", "RANK"), ("--distributed-init-method", "tcp://MASTER:PORT"),
                            ("--device-id", "LOCAL_RANK" if gpu else "0")):
            flags[flags.index(flag) + 1] = shown
        lines += ["  each task: fairseq-train <the run's command> " + " ".join(flags),
                  f"  {RANK_FORMULA}; RANK 0..{world - 1}, LOCAL_RANK 0..{options.tasks() - 1}",
                  f"  MASTER: {'127.0.0.1' if options.nodes == 1 else 'the first host of the job'}; PORT: "
                  f"{PORT_BASE} + sha256(job id) mod {PORT_SPAN} (job 12345: {rendezvous_port('12345')})",
                  "  rank 0 writes checkpoints, evaluates and writes results; the other ranks only train"]
    return "\n".join(lines)


def _pid_alive(pid: int) -> bool:
    """A live submitit process (not a recycled pid)."""
    try:
        return b"submitit" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (submitit's local job is a wrapper process around the one that trains)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def stop_local_job(pid: int) -> None:
    """SIGKILL the job's whole process tree: submitit's job process ignores SIGTERM (it bypasses it), and
    nothing is lost: fairseq and this package write their files atomically, and the run resumes from its
    last checkpoint."""
    tree = _process_tree(pid)
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in tree):
        time.sleep(0.05)


def _slurm_active(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() in ("PENDING", "RUNNING", "CONFIGURING", "REQUEUED",
                                                           "COMPLETING", "SUSPENDED")


def progress(plan: RunPlan) -> str:
    """`update U/MAX` from the run's fairseq log, and how many evaluations are written (the upgraded start's,
    shared by the runs that start from it, included)."""
    log_file = plan.train_files.train_log
    text = log_file.read_text(errors="replace")[-20000:] if log_file.exists() else ""
    updates = UPDATE.findall(text)
    start = plan.start_eval_dir is not None and point_file(plan.start_eval_dir).exists()
    evals = len(plan.out.points()) + start
    parts = [f"update {updates[-1] if updates else 0}/{plan.max_update}"]
    if evals:
        parts.append(f"{evals} evaluation(s) done")
    return ", ".join(parts)


class Runner:
    """Submits runs and waits for them; remembers job ids so a restarted experiment continues."""

    def __init__(self, options: ClusterOptions, exp: ExperimentDir):
        options.check()
        self.options = options
        self.folder = exp.jobs
        self.jobs_file = exp.jobs_file
        self.executor = make_executor(options, self.folder)

    def _jobs(self) -> dict[str, dict[str, str]]:
        """jobs.json's {run: {job_id, cluster}} (files without a format: the map itself)."""
        if not self.jobs_file.exists():
            return {}
        data = read_json(self.jobs_file)
        check_format(data, JOBS, 1, self.jobs_file)
        return data["jobs"] if "format" in data else data

    def _record(self, name: str, job_id: str) -> None:
        jobs = self._jobs()
        jobs[name] = {"job_id": job_id, "cluster": self.options.cluster}
        write_json_atomic(self.jobs_file, {**format_field(JOBS), "jobs": jobs})

    def _reattach_or_clear(self, plan: RunPlan) -> submitit.Job | None:
        known = self._jobs().get(plan.name)
        if not known or known["cluster"] != self.options.cluster:
            return None
        job_id = known["job_id"]
        if self.options.cluster == "slurm" and _slurm_active(job_id):
            log(f"experiment: {plan.name}: re-attaching to SLURM job {job_id}")
            return submitit.SlurmJob(folder=self.folder, job_id=job_id)
        if self.options.cluster == "local" and job_id.isdigit() and _pid_alive(int(job_id)):
            log(f"experiment: {plan.name}: stopping job {job_id} left by an interrupted experiment (it resumes)")
            stop_local_job(int(job_id))
        return None

    def submit(self, plan: RunPlan) -> submitit.Job:
        job = self._reattach_or_clear(plan)
        if job is None:
            job = self.executor.submit(TrainingJob(), plan)
            self._record(plan.name, str(job.job_id))
            log(f"experiment: {plan.name}: submitted job {job.job_id} ({self.options.cluster}); "
                f"log {plan.train_files.train_log}")
        return job

    def wait(self, jobs: dict[str, tuple[RunPlan, submitit.Job]], labels: dict[str, str]) -> dict[str, RunResult]:
        """Poll until every job is done, printing each run's progress when it changes; a run that stopped
        before its planned updates stops the experiment (nothing may use it)."""
        results: dict[str, RunResult] = {}
        shown: dict[str, str] = {}
        gone_since: dict[str, float] = {}
        while len(results) < len(jobs):
            for name, (plan, job) in jobs.items():
                if name in results:
                    continue
                if job.done():
                    error = job.exception()
                    if error is not None:
                        raise RuntimeError(f"run {name} failed (job {job.job_id}; logs in {self.folder}, "
                                           f"{plan.train_files.train_log}): {error}")
                    outcome = job.result()
                    if isinstance(outcome, Stopped):
                        raise UserInputError(f"run {name}: {outcome.message}")
                    results[name] = outcome
                    log(f"{labels[name]} {name}: finished")
                    continue
                if self.options.cluster == "slurm" and not _slurm_active(str(job.job_id)):
                    gone_since.setdefault(name, time.monotonic())
                    if time.monotonic() - gone_since[name] > 120:
                        raise RuntimeError(f"run {name}: SLURM job {job.job_id} left the queue without a result; "
                                           f"see {self.folder}")
                now = progress(plan)
                if shown.get(name) != now:
                    shown[name] = now
                    log(f"{labels[name]} {name}: {now}")
            if len(results) < len(jobs):
                time.sleep(self.options.poll_seconds)
        return results

    def run(self, plans: Sequence[RunPlan]) -> dict[str, RunResult]:
        """Finished runs are skipped; local runs go one after another, SLURM runs all at once."""
        labels = {p.name: f"[{i}/{len(plans)}]" for i, p in enumerate(plans, 1)}
        results = {p.name: r for p in plans if (r := p.finished()) is not None}
        todo = [p for p in plans if p.name not in results]
        for p in plans:
            if p.name in results:
                log(f"{labels[p.name]} {p.name}: finished earlier; skipping")
        if self.options.cluster == "local":
            for plan in todo:
                results |= self.wait({plan.name: (plan, self.submit(plan))}, labels)
        elif todo:
            results |= self.wait({p.name: (p, self.submit(p)) for p in todo}, labels)
        return {p.name: results[p.name] for p in plans}

