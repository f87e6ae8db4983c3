"""One run as a job: train (resuming), evaluate every interval checkpoint, write the run's result."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mmt_upgrade.core.files import log
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_num_updates, read_checkpoint, training_clock
from mmt_upgrade.fairseq_io.drivers import run_fairseq_train
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.evaluate import evaluate
from mmt_upgrade.pipeline.experiment.finals import curve_updates, finish
from mmt_upgrade.pipeline.experiment.plan import RunPlan
from mmt_upgrade.pipeline.records import (
    TASK_STATE,
    TRAIN_LOG,
    CurvePoint,
    RunResult,
    max_update_of,
    read_record,
    write_record,
)
from mmt_upgrade.pipeline.rundir import RunDir, point_file
from mmt_upgrade.pipeline.train import TrainingStopped, finished_training, guarded_argv, run_training, start_clock


@dataclass(frozen=True)
class Stopped:
    """The outcome of a job whose training ended before its planned updates: nothing was evaluated."""
    message: str


@dataclass(frozen=True)
class Compute:
    """Training compute a checkpoint carries: updates, target tokens (task state) and training wall time."""
    updates: int
    target_tokens: int | None
    train_wall_s: float


def compute_of(checkpoint: Path, clock_start: float = 0.0) -> Compute:
    """`clock_start`: the clock of the checkpoint the run was fine-tuned from, which fairseq carries over."""
    state = read_checkpoint(checkpoint)
    tokens = (state.get("task_state") or {}).get("target_tokens")
    return Compute(updates=int(state["optimizer_history"][-1]["num_updates"]),
                   target_tokens=int(tokens) if tokens is not None else None,
                   train_wall_s=round(training_clock(state) - clock_start, 1))


def finetune_clock(argv: Sequence[str]) -> float:
    """The training clock of the run's `--finetune-from-model` checkpoint (0 without one)."""
    if "--finetune-from-model" not in argv:
        return 0.0
    return training_clock(read_checkpoint(Path(argv[argv.index("--finetune-from-model") + 1]), mmap=True))


INNER = re.compile(r"wpb=([\d.]+).*?num_updates=(\d+)")


def tokens_from_log(log_text: str, upto: int) -> int | None:
    """Target tokens estimated from fairseq's interval lines (words per batch x updates in the interval).

    For checkpoints written before the task counted tokens (the cached old model of earlier versions).
    """
    points = sorted({int(u): float(w) for w, u in INNER.findall(log_text)}.items())
    if not points:
        return None
    total, prev = 0.0, 0
    for u, wpb in points:
        if u > upto:
            break
        total += wpb * (u - prev)
        prev = u
    return int(total)


def interval_checkpoint(run: RunDir, updates: int) -> Path | None:
    found = run.interval_checkpoints(updates)
    if found:
        return found[-1]
    if checkpoint_num_updates(run.last) == updates:
        return run.last
    return None


def evaluated(plan: RunPlan, checkpoint: Path, out: Path, compute: Compute, tokens_from: str) -> CurvePoint:
    """Evaluate `checkpoint` into `out` and keep its point (point.json) for later calls."""
    results = evaluate(checkpoint, PreparedData.open(plan.eval_data), out, plan.evaluation)
    point = CurvePoint.scored(compute.updates, compute.target_tokens, compute.train_wall_s, results, tokens_from)
    write_record(point_file(out), point)
    return point


def start_point(plan: RunPlan) -> CurvePoint:
    """The upgraded start, evaluated once for every run that starts from it (update 0, no compute)."""
    out = plan.start_eval_dir
    if point_file(out).exists():
        return read_record(CurvePoint, point_file(out))
    log(f"experiment: {plan.name}: evaluating the upgraded start (update 0)")
    return evaluated(plan, plan.start_checkpoint, out, Compute(0, 0, 0.0), TASK_STATE)


def train_worker(plan: RunPlan, launch: Sequence[str]) -> None:
    """A data-parallel task other than rank 0: joins rank 0's fairseq-train, writes nothing of its own.

    It decides from the same files as rank 0 does in `execute_run` (result, train_done.json, the last
    checkpoint's updates), read before rank 0 can change them, so it trains exactly when rank 0 trains: a
    worker that waited for a rank 0 that skipped training would never return."""
    run = plan.train_files
    if plan.finished() is not None or finished_training(run, plan.train_argv) is not None:
        return
    planned = max_update_of(plan.train_argv)
    if planned and checkpoint_num_updates(run.last) >= planned:
        return
    run_fairseq_train(guarded_argv(plan.train_argv, start_clock(plan.train_argv, run)) + list(launch))


def execute_run(plan: RunPlan, launch: Sequence[str] = ()) -> RunResult | Stopped:
    """Train (resuming), evaluate every interval checkpoint, write result.json; skip when already done.

    `launch`: rank 0's data-parallel flags (`fairseq_io.distributed`), given to fairseq-train, not recorded."""
    done = plan.finished()
    if done is not None:
        log(f"experiment: {plan.name} is finished; skipping")
        return done
    train_files, out = plan.train_files, plan.out
    try:
        trained = run_training(plan.train_argv, PreparedData.open(plan.train_data), plan.run_dir, launch)
    except TrainingStopped as e:
        return Stopped(str(e))
    curve = [start_point(plan)] if plan.start_checkpoint is not None else []
    clock_start = finetune_clock(plan.train_argv)
    for updates in curve_updates(plan):  # every interval and the last update
        eval_dir = out.eval_dir(updates)
        if point_file(eval_dir).exists():
            curve.append(read_record(CurvePoint, point_file(eval_dir)))
            continue
        checkpoint = interval_checkpoint(train_files, updates) if updates is not None else train_files.best
        if checkpoint is None:
            raise RuntimeError(f"{plan.name}: no checkpoint at update {updates} in {train_files.checkpoints}")
        compute, tokens_from = compute_of(checkpoint, clock_start), TASK_STATE
        if compute.target_tokens is None and train_files.train_log.exists():
            tokens = tokens_from_log(train_files.train_log.read_text(), compute.updates)
            compute, tokens_from = Compute(compute.updates, tokens, compute.train_wall_s), TRAIN_LOG
        log(f"experiment: {plan.name}: evaluating update {compute.updates}")
        curve.append(evaluated(plan, checkpoint, eval_dir, compute, tokens_from))
        if not train_files.is_kept(checkpoint):
            checkpoint.unlink()  # evaluated; the run resumes from checkpoint_last.pt
    result = finish(plan, trained.num_updates, curve)  # + the final on the final test set, its references
    write_record(out.result, result)
    return result
