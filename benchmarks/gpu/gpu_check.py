"""The upgrade's training on one GPU, prepared but NOT yet run (no GPU was lent; BENCHMARKS.md says so).

Trains an upgraded model (`mmt-upgrade upgrade` output UP, e.g. the default experiment's `full` upgrade) on
its prepared data with `--optimizer adam_scaled --lr-scale-old 0 --lr-scale-new 1` and the
cross-vocabulary distillation criterion, once with `--fp16 --fp16-no-flatten-grads` (adam_scaled has no flat
fp16 buffer) and once with `--bf16`, and checks on the GPU:
- the scaled optimizer's per-row rule: old rows of the shared embedding bit-identical to the start (in the
  precision the checkpoint is saved in), new rows moved;
- the distillation teacher's dtype: `Teacher.follow` is watched in this process; the teacher must run in
  the student's half precision (fp16, bf16) on the GPU;
- words/s from fairseq's log (median over log intervals after the first).
Writes OUT/gpu_check.json; about 5 minutes for the default 300 updates per mode on one H100/H200.

Prepare on a CPU machine (the GPU machine has no network), then carry UP, DATA and the old model:
    mmt-upgrade experiment bible_upgrade --runs full   # or any upgrade + `mmt-upgrade data` with its tokenizer
    python benchmarks/gpu/gpu_check.py --up UP --data DATA --teacher runs/old_model/checkpoints/checkpoint_best.pt \
        --teacher-spm OLD_DATA/spm.model --out benchmarks/results/gpu
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import torch

from mmt_upgrade.core.files import write_json_atomic
from mmt_upgrade.core.record import NewParameterRecord
from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint
from mmt_upgrade.fairseq_io.drivers import flags_to_argv, run_fairseq_train, task_argv
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.fairseq_io.teacher import Teacher
from mmt_upgrade.pipeline.runconfig import load_config

MODES = {"fp16": ["--fp16", "--fp16-no-flatten-grads"], "bf16": ["--bf16"]}
SAVED = {"fp16": torch.float16, "bf16": torch.bfloat16}
EMB = "encoder.embed_tokens.weight"


def train_argv(args: argparse.Namespace, data: PreparedData, save: Path, log: Path) -> list[str]:
    flags = {k: v for k, v in load_config("old_model").train.items() if k != "cpu"}
    flags |= json.loads((args.up / "upgrade.json").read_text())["fairseq_model_flags"]
    flags |= {"max-update": args.updates, "save-interval-updates": 0, "log-interval": 20, "optimizer": "adam_scaled",
              "lr-scale-old": 0, "lr-scale-new": 1, "criterion": "cross_vocab_distillation",
              "teacher-path": str(args.teacher), "teacher-spm": str(args.teacher_spm), "kd-method": "alm"}
    return task_argv(data) + ["--lang-pairs", ",".join(f"{s}-{t}" for s, t in data.directions),
                              "--save-dir", str(save), "--log-file", str(log),
                              "--finetune-from-model", str(args.up / "checkpoint.pt")] + flags_to_argv(flags)


def check_mode(args: argparse.Namespace, data: PreparedData, mode: str) -> dict:
    save, log = args.out / mode / "checkpoints", args.out / mode / "train.log"
    seen: list[str] = []
    follow = Teacher.follow

    def watched(self, like):  # the teacher's parameters after it followed the student
        follow(self, like)
        p = next(self.loaded.model.parameters())
        seen.append(f"{p.dtype}@{p.device.type}")
    Teacher.follow = watched
    try:
        run_fairseq_train(train_argv(args, data, save, log) + MODES[mode])
    finally:
        Teacher.follow = follow
    wps = [float(w) for w in re.findall(r"\| train_inner \|.*?\bwps=([\d.]+)", log.read_text())][1:]
    trained, start = read_checkpoint(save / "checkpoint_last.pt"), read_checkpoint(args.up / "checkpoint.pt")
    record = NewParameterRecord.from_task_state(trained["task_state"])
    emb, emb0 = trained["model"][EMB], start["model"][EMB].to(trained["model"][EMB].dtype)
    new = record.new_mask(EMB, emb.shape)[:, 0]
    return {"median_words_per_s": statistics.median(wps) if wps else None, "saved_dtype": str(emb.dtype),
            "old_rows_unchanged": bool(torch.equal(emb[~new], emb0[~new])),
            "new_rows_moved": not torch.equal(emb[new], emb0[new]),
            "teacher_dtypes": sorted(set(seen)), "teacher_dtype_ok": set(seen) == {f"{SAVED[mode]}@cuda"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("up", "data", "teacher", "teacher-spm", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--updates", type=int, default=300)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing run", file=sys.stderr)
        return 2
    data = PreparedData.open(args.data)
    out = {"device": torch.cuda.get_device_name(0), "updates": args.updates,
           "modes": {mode: check_mode(args, data, mode) for mode in MODES}}
    write_json_atomic(args.out / "gpu_check.json", out)
    print(json.dumps(out, indent=1))
    ok = all(m["old_rows_unchanged"] and m["new_rows_moved"] and m["teacher_dtype_ok"] for m in out["modes"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
