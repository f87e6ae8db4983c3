"""One process with `--update-freq 2` against two data-parallel processes (gloo, `legacy_ddp`) on this
machine's CPU cores: words/s and the parameter difference after the same updates.

Both train the tiny config's model on its data (es, fr <-> en) from scratch, dropout off, with B tokens per
batch: the two-process run takes each update's two batches at once, one per process. words/s = target
tokens trained (the task state's count) / fairseq's training clock (the checkpoint's, start-up and
validation excluded). Each process gets `torch.set_num_threads` = cores / processes (fairseq's default on
CPU: all cores each, which oversubscribes).

    nice .venv/bin/python benchmarks/distributed_cpu.py --updates 40 | tee benchmarks/distributed_cpu.out
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint, training_clock
from mmt_upgrade.fairseq_io.distributed import distributed_flags
from mmt_upgrade.fairseq_io.drivers import flags_to_argv, task_argv
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.runconfig import load_config

BIN = Path(sys.executable).parent


def argv(data, save: Path, updates: int, tokens: int) -> list[str]:
    flags = {**load_config("tiny").train, "max-update": updates, "save-interval-updates": 0, "dropout": 0,
             "max-tokens": tokens, "log-interval": 10, "disable-validation": True}
    return task_argv(data) + ["--lang-pairs", ",".join(f"{s}-{t}" for s, t in data.directions),
                              "--save-dir", str(save)] + flags_to_argv(flags)


def launch(commands: list[list[str]], threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.monotonic()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in commands]
    errors = [p.communicate()[1] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("\n".join(e[-3000:] for e in errors))
    return time.monotonic() - start


def measure(save: Path) -> tuple[dict, float, int]:
    state = read_checkpoint(save / "checkpoint_last.pt")
    return state["model"], training_clock(state), int(state["task_state"]["target_tokens"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=2000)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        root = Path(tmp)
        data = prepare_data(load_config("tiny").data, cache_dir(), root / "data")
        base = [str(BIN / "fairseq-train")]
        wall1 = launch([base + argv(data, root / "one", args.updates, args.max_tokens) + ["--update-freq", "2"]],
                       cores)
        two = argv(data, root / "two", args.updates, args.max_tokens)
        wall2 = launch([base + two + distributed_flags(2, r, r, "127.0.0.1", 29000 + os.getpid() % 1000, False)
                        for r in range(2)], max(1, cores // 2))
        (m1, clock1, tok1), (m2, clock2, tok2) = measure(root / "one"), measure(root / "two")
    delta = max((m1[k].double() - m2[k].double()).abs().max().item() for k in m1)
    print(f"cores {cores}; tiny model, {args.updates} updates of 2 x {args.max_tokens}-token batches, dropout 0")
    print(f"{'setup':<34} {'target tokens':>13} {'train clock s':>13} {'words/s':>8} {'process wall s':>14}")
    for name, tok, clock, wall in (("1 process, --update-freq 2", tok1, clock1, wall1),
                                   ("2 processes (gloo, legacy_ddp)", tok2, clock2, wall2)):
        print(f"{name:<34} {tok:>13} {clock:>13.1f} {tok / clock:>8.0f} {wall:>14.1f}")
    print(f"speed-up (words/s, 2 / 1): {(tok2 / clock2) / (tok1 / clock1):.2f}")
    print(f"max |parameter difference| after {args.updates} updates: {delta:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
