"""`mmt-upgrade train`: fairseq-train through its Python entry point (the same call runs under submitit)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log, sha256_file, write_json_atomic
from mmt_upgrade.core.languages import check_extends
from mmt_upgrade.fairseq_io.binarize import check_data_bin
from mmt_upgrade.fairseq_io.checkpoint import (
    checkpoint_langs,
    checkpoint_num_updates,
    read_checkpoint,
)
from mmt_upgrade.fairseq_io.drivers import flags_to_argv, run_fairseq_train, task_argv
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.runconfig import RunConfig

DONE = "train_done.json"
# Flags the pipeline owns: they follow from the data and the run directory, not from the config.
OWNED_FLAGS = ("task", "user-dir", "langs", "lang-pairs", "save-dir", "encoder-langtok", "decoder-langtok")



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



def check_resume_langs(save_dir: Path, langs: Sequence[str]) -> None:
    last = save_dir / "checkpoint_last.pt"
    if last.exists():
        check_extends(checkpoint_langs(read_checkpoint(last)), langs, f"resuming {last}")


def train(cfg: RunConfig, data: PreparedData, run_dir: Path) -> Path:
    """Train the config's model into `run_dir`; returns the checkpoint to evaluate (see `run_training`)."""
    argv = fairseq_train_argv(cfg, data, run_dir / "checkpoints", run_dir / "train.log")
    return run_training(argv, data, run_dir)


def run_training(argv: Sequence[str], data: PreparedData, run_dir: Path) -> Path:
    """Train, resume, or skip when this exact command already finished; returns `checkpoint_best.pt`.

    A changed command (say, more updates) resumes from `checkpoint_last.pt` instead of skipping.
    """
    argv = list(argv)
    save_dir = run_dir / "checkpoints"
    done_file = run_dir / DONE
    best = save_dir / "checkpoint_best.pt"
    if done_file.exists() and best.exists() and json.loads(done_file.read_text()).get("argv") == argv:
        log(f"train: {run_dir} is finished ({DONE}); skipping")
        return best
    check_data_bin(data.bin_dir, data.langs)
    check_resume_langs(save_dir, data.langs)
    run_dir.mkdir(parents=True, exist_ok=True)
    last_updates = checkpoint_num_updates(save_dir / "checkpoint_last.pt")
    max_update = int(argv[argv.index("--max-update") + 1]) if "--max-update" in argv else 0
    if max_update and last_updates >= max_update:
        # fairseq would load it and still take one more update before noticing the limit
        log(f"train: {save_dir / 'checkpoint_last.pt'} is at {last_updates} >= --max-update {max_update}; "
            "nothing to train")
    else:
        log(f"train: fairseq-train {' '.join(argv)}")
        log(f"train: log in {run_dir / 'train.log'}")
        run_fairseq_train(argv)
    if not best.exists():
        raise RuntimeError(f"fairseq-train finished without writing {best}")
    write_json_atomic(done_file, {
        "num_updates": checkpoint_num_updates(save_dir / "checkpoint_last.pt"),
        "checkpoint_best_sha256": sha256_file(best),
        "argv": argv,
    })
    return best
