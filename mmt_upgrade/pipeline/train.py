"""`mmt-upgrade train`: fairseq-train through its Python entry point (the same call runs under submitit).

A run is finished when its training reached the planned `--max-update`; only then is train_done.json
written. A run that ends earlier (the `--stop-time-hours` guard, a crash, a kill) is not finished: it is
said loudly, nothing reuses it, and the next call resumes it from checkpoint_last.pt.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log, sha256_file
from mmt_upgrade.core.languages import check_extends
from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.fairseq_io.binarize import check_data_bin
from mmt_upgrade.fairseq_io.checkpoint import (
    LAST,
    checkpoint_langs,
    checkpoint_num_updates,
    checkpoint_to_restore,
    read_checkpoint,
    training_clock,
)
from mmt_upgrade.fairseq_io.drivers import flags_to_argv, run_fairseq_train, task_argv
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.records import TrainDone, max_update_of, read_record, write_record
from mmt_upgrade.pipeline.rundir import RunDir
from mmt_upgrade.pipeline.runconfig import RunConfig, add_config_arguments, load_config, run_dir_of

# Flags the pipeline owns: they follow from the data and the run directory, not from the config.
OWNED_FLAGS = ("task", "user-dir", "langs", "lang-pairs", "save-dir", "encoder-langtok", "decoder-langtok")
GUARD = "--stop-time-hours"


class TrainingStopped(UserInputError):
    """fairseq-train ended before the planned --max-update: the run is not finished (rerun to resume).

    A UserInputError so that the CLI prints it as one line: the next step is the user's."""


def fairseq_train_argv(cfg: RunConfig, data: PreparedData, save_dir: Path, log_file: Path | None = None) -> list[str]:
    clash = [k for k in cfg.train if k in OWNED_FLAGS]
    if clash:
        raise UserInputError(f"{cfg.source}: train.{clash[0]} is set by mmt-upgrade itself; remove it")
    argv = task_argv(data) + [
        "--lang-pairs", ",".join(f"{s}-{t}" for s, t in data.directions),
        "--save-dir", str(save_dir),
    ]
    if log_file is not None:
        argv += ["--log-file", str(log_file)]
    return argv + flags_to_argv(cfg.train)


def check_resume_langs(run: RunDir, langs: Sequence[str]) -> None:
    if run.last.exists():
        check_extends(checkpoint_langs(read_checkpoint(run.last)), langs, f"resuming {run.last}")


def finished_training(run: RunDir, argv: Sequence[str]) -> TrainDone | None:
    """The run's train_done.json when this exact command trained it to its planned updates, else None."""
    if not run.done.exists() or not run.best.exists():
        return None
    done = read_record(TrainDone, run.done)
    return done if done.argv == list(argv) and done.finished else None


def _flag(argv: Sequence[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def start_clock(argv: Sequence[str], run: RunDir) -> float:
    """The training clock of the checkpoint fairseq-train will start from (0 without one)."""
    start = checkpoint_to_restore(str(run.checkpoints), _flag(argv, "--restore-file") or LAST,
                                  _flag(argv, "--finetune-from-model"))
    return training_clock(read_checkpoint(start, mmap=True)) if start is not None else 0.0


def guarded_argv(argv: Sequence[str], clock_s: float) -> list[str]:
    """`--stop-time-hours H` bounds the training time of this call, not of the model's whole history.

    fairseq compares H with its clock, which the checkpoint it starts from carries over: a run the guard
    stopped would stop again after one update on every resume. So fairseq is given H + that clock."""
    argv = list(argv)
    hours = _flag(argv, GUARD)
    if hours is None or float(hours) <= 0 or clock_s <= 0:
        return argv
    argv[argv.index(GUARD) + 1] = str(float(hours) + clock_s / 3600)
    return argv


def train(cfg: RunConfig, data: PreparedData, run_dir: Path) -> Path:
    """Train the config's model into `run_dir`; returns checkpoint_best.pt (see `run_training`)."""
    run = RunDir(run_dir)
    run_training(fairseq_train_argv(cfg, data, run.checkpoints, run.train_log), data, run_dir)
    return run.best


def run_training(argv: Sequence[str], data: PreparedData, run_dir: Path, launch: Sequence[str] = ()) -> TrainDone:
    """Train, resume, or skip when this exact command already finished; returns the run's train_done record.

    A changed command (say, more updates) resumes from checkpoint_last.pt instead of skipping. Raises
    TrainingStopped when fairseq-train ends before the planned --max-update.
    """
    argv = list(argv)
    run = RunDir(Path(run_dir))
    done = finished_training(run, argv)
    if done is not None:
        log(f"train: {run.root} is finished ({run.done.name}); skipping")
        return done
    check_data_bin(data.bin_dir, data.langs)
    check_resume_langs(run, data.langs)
    run.root.mkdir(parents=True, exist_ok=True)
    run.done.unlink(missing_ok=True)  # from another command: this one has not finished
    planned, reached = max_update_of(argv), checkpoint_num_updates(run.last)
    if planned and reached >= planned:
        # fairseq would load it and still take one more update before noticing the limit
        log(f"train: {run.last} is at {reached} >= --max-update {planned}; nothing to train")
    else:
        fairseq_argv = guarded_argv(argv, start_clock(argv, run))
        log(f"train: fairseq-train {' '.join(fairseq_argv)}")
        log(f"train: log in {run.train_log}")
        run_fairseq_train(fairseq_argv + list(launch))  # `launch`: a data-parallel task's flags, not recorded
        reached = checkpoint_num_updates(run.last)
    if planned and reached < planned:
        guard = f" ({GUARD} {_flag(argv, GUARD)} is set: the time guard)" if GUARD in argv else ""
        message = (f"{run.root.name} stopped at update {reached} of {planned} planned{guard}: NOT finished, so "
                   f"not reused, upgraded or reported; run the same command again to resume it")
        log(f"WARNING: train: {message}")
        raise TrainingStopped(message)
    if not run.best.exists():
        raise RuntimeError(f"fairseq-train finished without writing {run.best}")
    done = TrainDone(argv=argv, num_updates=reached, checkpoint_best_sha256=sha256_file(run.best))
    write_record(run.done, done)
    return done


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`mmt-upgrade train`: the run config (its data is prepared, or reused, first)."""
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    print(train(cfg, prepare_data(cfg.data, cache_dir()), run_dir_of(args, cfg)))
    return 0
