"""One run as a job: train (resuming), evaluate every interval checkpoint, write the run's result."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmt_upgrade.core.files import log, write_json_atomic
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_num_updates, read_checkpoint
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.evaluate import evaluate
from mmt_upgrade.pipeline.experiment.plan import RunPlan
from mmt_upgrade.pipeline.experiment.spec import RESULT
from mmt_upgrade.pipeline.train import run_training


def training_clock(state: Mapping[str, Any]) -> float:
    """fairseq's training wall time (`previous_training_time`; evaluation and start-up excluded)."""
    return float((state.get("extra_state") or {}).get("previous_training_time", 0.0))


def compute_of(checkpoint: Path, clock_start: float = 0.0) -> dict[str, Any]:
    """Training compute a checkpoint carries: updates, target tokens (task state) and training wall time.

    `clock_start`: the clock of the checkpoint the run was fine-tuned from, which fairseq carries over.
    """
    state = read_checkpoint(checkpoint)
    tokens = (state.get("task_state") or {}).get("target_tokens")
    return {"updates": int(state["optimizer_history"][-1]["num_updates"]),
            "target_tokens": int(tokens) if tokens is not None else None,
            "train_wall_s": round(training_clock(state) - clock_start, 1)}


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


def interval_checkpoint(save_dir: Path, updates: int) -> Path | None:
    found = sorted(save_dir.glob(f"checkpoint_*_{updates}.pt"))
    if found:
        return found[-1]
    last = save_dir / "checkpoint_last.pt"
    if checkpoint_num_updates(last) == updates:
        return last
    return None


def summarize(results: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of one evaluation a curve keeps: chrF++ and BLEU per direction and group."""
    pick = lambda s: {"chrfpp": s["chrfpp"], "bleu": s["bleu"]}  # noqa: E731
    return {"groups": {g: pick(s) for g, s in results["groups"].items()},
            "directions": {d: pick(s) for d, s in results["directions"].items()}}


def execute_run(plan: RunPlan) -> dict[str, Any]:
    """Train (resuming), evaluate every interval checkpoint, write `result.json`; skip when already done."""
    done = plan.finished()
    if done is not None:
        log(f"experiment: {plan.name} is finished; skipping")
        return done
    train_data, eval_data = PreparedData.open(plan.train_data), PreparedData.open(plan.eval_data)
    save_dir = plan.run_dir / "checkpoints"
    best = run_training(plan.train_argv, train_data, plan.run_dir)
    curve = []
    clock_start = finetune_clock(plan.train_argv)
    if plan.start_checkpoint is not None:
        log(f"experiment: {plan.name}: evaluating the upgraded start (update 0)")
        res = evaluate(plan.start_checkpoint, eval_data, plan.start_eval_dir, plan.split, plan.beam,
                       plan.max_tokens, plan.new_langs)
        curve.append({"updates": 0, "target_tokens": 0, "train_wall_s": 0.0, **summarize(res)})
    points = range(plan.eval_every, plan.max_update + 1, plan.eval_every) if plan.eval_every else [None]
    for updates in points:
        out = plan.results / "evals" / (f"{updates:07d}" if updates is not None else "best")
        if (out / "point.json").exists():
            curve.append(json.loads((out / "point.json").read_text()))
            continue
        checkpoint = interval_checkpoint(save_dir, updates) if updates is not None else best
        if checkpoint is None:
            raise RuntimeError(f"{plan.name}: no checkpoint at update {updates} in {save_dir}")
        compute = compute_of(checkpoint, clock_start)
        if compute["target_tokens"] is None and (plan.run_dir / "train.log").exists():
            compute |= {"target_tokens": tokens_from_log((plan.run_dir / "train.log").read_text(), compute["updates"]),
                        "target_tokens_from": "train.log"}
        log(f"experiment: {plan.name}: evaluating update {compute['updates']}")
        res = evaluate(checkpoint, eval_data, out, plan.split, plan.beam, plan.max_tokens, plan.new_langs)
        point = {**compute, **summarize(res)}
        write_json_atomic(out / "point.json", point)
        curve.append(point)
        if checkpoint.name not in ("checkpoint_last.pt", "checkpoint_best.pt"):
            checkpoint.unlink()  # evaluated; the run resumes from checkpoint_last.pt
    result = {"name": plan.name, "argv": plan.train_argv, "curve": curve}
    write_json_atomic(plan.results / RESULT, result)
    return result
