"""Side-by-side training legs: variants of one config trained in alternating short legs.

Each variant resumes from its own `checkpoint_last.pt`, so machine noise falls on all variants alike,
and an interrupted benchmark resumes where it stopped.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Mapping

from mmt_upgrade.fairseq_io.checkpoint import checkpoint_num_updates
from mmt_upgrade.fairseq_io.drivers import run_fairseq_train
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.runconfig import RunConfig
from mmt_upgrade.pipeline.train import fairseq_train_argv

INNER = re.compile(r" loss=([\d.]+).*?wps=([\d.]+).*?num_updates=(\d+)")


def run_legs(cfg: RunConfig, data: PreparedData, out: Path, variants: Mapping[str, Mapping[str, Any]],
             updates: int, leg: int, log_interval: int) -> None:
    for upto in range(leg, updates + 1, leg):
        for name, flags in variants.items():
            run = out / name
            run.mkdir(parents=True, exist_ok=True)
            if checkpoint_num_updates(run / "checkpoints" / "checkpoint_last.pt") >= upto:
                continue  # leg done by an earlier invocation
            leg_cfg = copy.deepcopy(cfg)
            leg_cfg.train = {**cfg.train, **flags, "max-update": upto, "save-interval-updates": leg,
                             "validate-interval-updates": updates, "log-interval": log_interval,
                             "stop-time-hours": None}
            run_fairseq_train(fairseq_train_argv(leg_cfg, data, run / "checkpoints", run / "train.log"))


def inner_lines(log: str) -> list[tuple[int, float, float]]:
    """(update, train loss, words/s) of every fairseq log interval, once per update."""
    return sorted({int(u): (int(u), float(loss), float(wps)) for loss, wps, u in INNER.findall(log)}.values())


def steady_wps(log: str, leg: int, log_interval: int) -> list[float]:
    """Words/s of the intervals after each leg's first (which includes start-up)."""
    return [w for u, _, w in inner_lines(log) if u % leg != log_interval % leg]
