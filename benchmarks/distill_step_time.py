"""Step time and peak memory of `--criterion cross_vocab_distillation` (every method, online teacher and
cache) against plain `label_smoothed_cross_entropy`, side by side, on the upgraded default model.

The default old model upgraded with it and ar (`extend`, `<unk>` init) is the student, the old model the
teacher. One process builds fairseq's task, model and Adam from the default config's flags (as
fairseq-train does), draws real training batches of the upgraded data (12 directions; 2,000 pairs per
direction so that the caches build in minutes: step time does not depend on the data size), and runs
every batch through a full training step (forward, backward, clipping, Adam) with each criterion in
turn, rotating the order per batch. Reported: the median step time per criterion and the median of the
per-batch ratios against label-smoothed cross-entropy. The per-example alignment is memoized by the
criterion, so it is computed before timing and reported apart (it is paid once per example, in the
first epoch). Peak memory: each criterion alone in a fresh process over the same batches (max RSS),
against label-smoothed cross-entropy alone: resident memory once set up, and the peak while training
(the peak is reset after set-up, through /proc/self/clear_refs).

    .venv/bin/python benchmarks/distill_step_time.py --batches 40
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mmt_upgrade.core.distill.losses import KD_METHODS
from mmt_upgrade.core.paths import cache_dir, runs_dir
from mmt_upgrade.pipeline.data.prepare import prepare_data
from mmt_upgrade.pipeline.runconfig import load_config
from mmt_upgrade.pipeline.train import fairseq_train_argv


def paths(upgraded: Path) -> dict:
    old_cfg = load_config("old_model")
    old = prepare_data(old_cfg.data, cache_dir())
    cfg = load_config("old_model", ["data.langs=[es,fr,de,ru,it,ar]", f"data.tokenizer={upgraded}",
                                    "data.max_train_pairs=2000"])
    return {"cfg": cfg, "data": prepare_data(cfg.data, cache_dir()),
            "teacher": runs_dir() / "old_model" / "checkpoints" / "checkpoint_best.pt", "teacher_spm": old.spm_model}


def variants(p: dict, out: Path) -> dict[str, list[str]]:
    teacher = ["--criterion", "cross_vocab_distillation", "--teacher-path", str(p["teacher"]),
               "--teacher-spm", str(p["teacher_spm"])]
    out_variants = {"ls": []}
    for method in KD_METHODS:
        out_variants[f"{method}-online"] = teacher + ["--kd-method", method]
        out_variants[f"{method}-cache"] = teacher + ["--kd-method", method, "--teacher-cache", str(out / f"cache-{method}")]
    return out_variants


def build_caches(p: dict, out: Path) -> dict:
    """One cache per method (resumes; skipped when complete); returns build seconds and sizes."""
    info = {}
    for method in KD_METHODS:
        cache = out / f"cache-{method}"
        manifest = cache / "manifest.json"
        if manifest.is_file() and json.loads(manifest.read_text()).get("complete"):
            continue
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "mmt-upgrade"), "distill-cache", "--data", str(p["data"].root),
                        "--out", str(cache), "--kd-method", method, "--teacher-path", str(p["teacher"]),
                        "--teacher-spm", str(p["teacher_spm"])], check=True)
        info[method] = {"build_s": round(time.perf_counter() - start, 1)}
    for method in KD_METHODS:
        size = sum(f.stat().st_size for f in (out / f"cache-{method}").glob("*.pt"))
        info.setdefault(method, {})["bytes"] = size
    return info


def harness(p: dict, upgraded: Path, out: Path, names: list[str], n_batches: int):
    """fairseq's task, the student (upgraded weights), Adam, criteria by name, and the first batches."""
    from fairseq import checkpoint_utils, optim, options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    base = fairseq_train_argv(p["cfg"], p["data"], out / "unused")

    def cfg_of(extra: list[str]):
        parser = options.get_training_parser()
        return convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, input_args=base + extra))

    cfg = cfg_of([])
    utils.import_user_module(cfg.common)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train", epoch=1)
    model = task.build_model(cfg.model)
    model.load_state_dict(checkpoint_utils.load_checkpoint_to_cpu(str(upgraded / "checkpoint.pt"))["model"])
    all_variants = variants(p, out)
    criteria = {name: task.build_criterion(cfg_of(all_variants[name]).criterion) for name in names}
    optimizer = optim.build_optimizer(cfg.optimizer, [q for q in model.parameters() if q.requires_grad])
    optimizer.set_lr(1e-4)
    itr = task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=cfg.dataset.max_tokens,
                                  max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
                                  ignore_invalid_inputs=True, seed=1, num_workers=0, epoch=1)
    batches = list(itertools.islice(itr.next_epoch_itr(shuffle=True), n_batches))
    return task, model, optimizer, criteria, batches


def train_step(task, model, optimizer, criterion, sample, update: int) -> float:
    start = time.perf_counter()
    _, sample_size, _ = task.train_step(sample, model, criterion, optimizer, update)
    optimizer.multiply_grads(1.0 / max(sample_size, 1))
    optimizer.clip_grad_norm(1.0)
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - start


def warm_alignments(criteria: dict, batches: list) -> dict[str, float]:
    """Fill each criterion's per-example memo; seconds per batch it took (the first-epoch cost)."""
    cost = {}
    for name, crit in criteria.items():
        if not hasattr(crit, "distiller"):
            continue
        start = time.perf_counter()
        for b in batches:
            crit.distiller.select(b["net_input"]["src_tokens"], b["target"])
        cost[name] = (time.perf_counter() - start) / len(batches)
    return cost


def time_side_by_side(p, upgraded, out, n_batches) -> dict:
    names = list(variants(p, out))
    task, model, optimizer, criteria, batches = harness(p, upgraded, out, names, n_batches)
    align_s = warm_alignments(criteria, batches)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i, sample in enumerate(batches):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            times[name].append(train_step(task, model, optimizer, criteria[name], sample, i))
        print(f"batch {i + 1}/{len(batches)}: " + " ".join(f"{n}={times[n][-1]:.2f}" for n in names), flush=True)
    skip = 2  # the first batches include one-off warm-up (allocator, autocast caches)
    result = {"batches": len(batches), "timed_batches": len(batches) - skip,
              "median_target_tokens": statistics.median(int(b["ntokens"]) for b in batches)}
    for name in names:
        ratios = [t / b for t, b in zip(times[name][skip:], times["ls"][skip:])]
        result[name] = {"median_step_s": round(statistics.median(times[name][skip:]), 4),
                        "median_ratio_vs_ls": round(statistics.median(ratios), 3),
                        "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)]}
        if name in align_s:
            result[name]["first_epoch_alignment_s_per_batch"] = round(align_s[name], 4)
    return result


def peak_memory(upgraded, out, name: str, n_batches: int) -> dict[str, int]:
    """A fresh process training `n_batches` steps with one criterion: its resident memory once set up
    (data, model, optimizer, criterion with its teacher or cache) and its peak while training."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import distill_step_time as d; "
            f"d.memory_child({str(upgraded)!r}, {str(out)!r}, {name!r}, {n_batches})")
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _status_kib(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def memory_child(upgraded: str, out: str, name: str, n_batches: int) -> None:
    p = paths(Path(upgraded))
    task, model, optimizer, criteria, batches = harness(p, Path(upgraded), Path(out), [name], n_batches)
    gc.collect()
    set_up = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM): set-up transients do not count
    for i, sample in enumerate(batches):
        train_step(task, model, optimizer, criteria[name], sample, i)
    print(json.dumps({"set_up_bytes": set_up * 1024, "training_peak_bytes": _status_kib("VmHWM") * 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upgraded", default=str(runs_dir() / "old_model_upgrade" / "extend-unk"))
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--memory-batches", type=int, default=8)
    ap.add_argument("--out", default=str(runs_dir() / "bench_distill"))
    args = ap.parse_args()
    upgraded, out = Path(args.upgraded), Path(args.out)
    p = paths(upgraded)
    summary = {"caches": build_caches(p, out)}
    summary["step_time"] = time_side_by_side(p, upgraded, out, args.batches)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")  # kept if the memory runs fail
    summary["memory"] = {name: peak_memory(upgraded, out, name, args.memory_batches) for name in variants(p, out)}
    base = summary["memory"]["ls"]["training_peak_bytes"]
    for m in summary["memory"].values():
        m["training_peak_ratio_vs_ls"] = round(m["training_peak_bytes"] / base, 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
