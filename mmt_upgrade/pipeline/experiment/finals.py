"""What a job adds to its curve before writing the run's result: the final checkpoint scored on the final
test set (the whole split, its own beam), the references of that test set kept beside the translations
(so every number can be recomputed and significance-tested from the experiment directory alone), and
fairseq's training interval figures (loss, ce_loss, kd_loss, ...) read from its log."""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from mmt_upgrade.core.files import log, write_text_atomic
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_num_updates
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.evaluate import evaluate
from mmt_upgrade.pipeline.experiment.plan import RunPlan
from mmt_upgrade.pipeline.records import CurvePoint, RunResult, read_record, write_record
from mmt_upgrade.pipeline.rundir import point_file

# fairseq's interval lines in its --log-file (simple format): "epoch 001:  10 / 38 loss=9.1, ..., num_updates=10, ..."
TRAIN_INNER = re.compile(r"^epoch \d+:\s+\d+ / \d+ (.*)$", re.M)


def curve_updates(plan: RunPlan) -> list[int | None]:
    """The updates evaluated: every `eval_every` and the planned last one (None: the old model's best)."""
    if not plan.eval_every:
        return [None]
    return sorted(set(range(plan.eval_every, plan.max_update + 1, plan.eval_every)) | {plan.max_update})


def train_stats(log_text: str) -> list[dict[str, float]]:
    """fairseq's training interval figures, by name (the last line per update: a resumed run repeats some)."""
    by_update: dict[float, dict[str, float]] = {}
    for line in TRAIN_INNER.findall(log_text):
        stats = {}
        for kv in line.split(", "):
            key, _, value = kv.partition("=")
            try:
                stats[key] = float(value)
            except ValueError:
                continue
        if "num_updates" in stats:
            by_update[stats["num_updates"]] = stats
    return [by_update[u] for u in sorted(by_update)]


def keep_references(data: PreparedData, split: str, out: Path) -> None:
    """`out/<src>-<tgt>.<tgt>`: the references each direction was scored against; a kept file that differs
    (another test set under the same name) is an error, not overwritten."""
    for src, tgt in data.directions:
        text = data.raw_file(split, src, tgt, tgt).read_text()
        path = out / f"{src}-{tgt}.{tgt}"
        if path.exists():
            if path.read_text() != text:
                raise RuntimeError(f"{path} holds other references than {data.raw_file(split, src, tgt, tgt)}")
            continue
        write_text_atomic(path, text)


def final_point(plan: RunPlan, last: CurvePoint) -> CurvePoint | None:
    """The final checkpoint (the old model's best, a run's last) on the final test set, with the compute of
    the curve's last point (the same checkpoint); None when the curve's last point is the final."""
    if plan.final_evaluation is None:
        return None
    out = plan.out.final_eval
    if point_file(out).exists():
        return read_record(CurvePoint, point_file(out))
    checkpoint = plan.train_files.last if plan.eval_every else plan.train_files.best
    if plan.eval_every and checkpoint_num_updates(checkpoint) != last.updates:
        raise RuntimeError(f"{plan.name}: {checkpoint} is not at update {last.updates}, the curve's last point")
    log(f"experiment: {plan.name}: evaluating the final checkpoint on the final test set")
    results = evaluate(checkpoint, PreparedData.open(plan.final_data), out, plan.final_evaluation)
    point = CurvePoint.scored(last.updates, last.target_tokens, last.train_wall_s, results, last.target_tokens_from)
    write_record(point_file(out), point)
    return point


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def finish(plan: RunPlan, trained_updates: int, curve: list[CurvePoint]) -> RunResult:
    """The run's result: its curve (the start's compute zeroed: a continue run starts from the old model's
    own evaluation), the final point, each point's evaluation directory and the final's references."""
    out = plan.out
    dirs = [out.eval_dir(p.updates if plan.eval_every else None) for p in curve]
    if plan.start_checkpoint is not None:
        dirs[0] = plan.start_eval_dir
        curve[0] = replace(curve[0], updates=0, target_tokens=0, train_wall_s=0.0)
    curve = [replace(p, eval_dir=_rel(d, out.root)) for p, d in zip(curve, dirs)]
    last = max(range(len(curve)), key=lambda i: curve[i].updates)
    final = final_point(plan, curve[last])
    refs = ""
    if plan.references is not None:
        data = PreparedData.open(plan.final_data if final is not None else plan.eval_data)
        split = (plan.final_evaluation or plan.evaluation).split
        keep_references(data, split, plan.references)
        refs = _rel(plan.references, out.root)
    if final is not None:
        final = replace(final, eval_dir=_rel(out.final_eval, out.root), references=refs)
    else:
        curve[last] = replace(curve[last], references=refs)
    stats = train_stats(plan.train_files.train_log.read_text()) if plan.train_files.train_log.exists() else []
    return RunResult(name=plan.name, argv=plan.train_argv, planned_updates=plan.max_update,
                     trained_updates=trained_updates, curve=curve, final_point=final, train_stats=stats)
