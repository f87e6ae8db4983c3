"""Data-parallel training on CPU through fairseq's own distributed code (gloo, `legacy_ddp`): two processes
with batch B take exactly the updates of one process with `--update-freq 2` on the same data.

Why they must agree: fairseq shards the batch list over the ranks (rank r gets batches r, r+2, ...), so
update k sees batches 2k and 2k+1 either way; gradients are summed (all-reduce, or accumulation) and divided
by the summed sample size. Dropout is off (it draws its masks per process). The sum of two tensors does not
depend on their order, so the parameters agree bit for bit here; the stated tolerance is max |delta| <= 1e-6.

Rank 0 alone saves; rank 1's copy of the model is checked through the validation loss, which fairseq also
computes data-parallel (each rank scores half the validation batches with its own parameters).
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.core.record import NewParameterRecord
from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint
from mmt_upgrade.fairseq_io.distributed import distributed_flags
from mmt_upgrade.pipeline.data.prepare import DataConfig, prepare_data
from mmt_upgrade.pipeline.experiment.plan import RunPlan
from mmt_upgrade.pipeline.experiment.runner import ClusterOptions, TrainingJob, make_executor
from mmt_upgrade.pipeline.runconfig import EvalOptions
from mmt_upgrade.pipeline.rundir import RunDir

from ..conftest import BIN, REPO_ROOT, run_cli, tiny_train_argv

TOLERANCE = 1e-6
UPDATES = 8
# B = 1000 tokens per process and batch; no dropout; every update logged.
FLAGS = {"max-update": UPDATES, "save-interval-updates": 0, "log-interval": 1, "dropout": 0, "max-tokens": 1000}
UPSAMPLING = ["--upsample-langs", "it,ar", "--upsample-factor", "3", "--related-langs", "es", "--related-factor", "1.5"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_one(argv: list[str]) -> str:
    """One process, two batches per update."""
    proc = run_cli("fairseq-train", *argv, "--update-freq", "2")
    return proc.stdout + proc.stderr


def train_two(argv: list[str]) -> list[str]:
    """Two fairseq-train processes with the flags `mmt-upgrade experiment` gives its tasks (the documented
    plain command); the output of each."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    port = _free_port()
    procs = [subprocess.Popen([str(BIN / "fairseq-train"), *argv, *distributed_flags(2, r, r, "127.0.0.1", port, False)],
                              cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    return outs


def max_delta(a: Path, b: Path) -> float:
    ma, mb = read_checkpoint(a)["model"], read_checkpoint(b)["model"]
    assert ma.keys() == mb.keys()
    return max((ma[k].double() - mb[k].double()).abs().max().item() for k in ma)


def inner(log: str, key: str) -> list[str]:
    """`key` of every train_inner line (one per update)."""
    return re.findall(rf"\| train_inner \|.*?\b{key}=([^,\s]+)", log)


def valid_loss(log: str) -> str:
    return re.findall(r"valid on 'valid' subset \| loss ([\d.]+)", log)[-1]


def test_two_processes_take_the_updates_of_one_with_update_freq_2(tiny_data, tmp_path):
    """Plain Adam from scratch; the target-token count of the task state is the sum over both ranks."""
    one = train_one(tiny_train_argv(tiny_data, tmp_path / "one", **FLAGS))
    two = train_two(tiny_train_argv(tiny_data, tmp_path / "two", **FLAGS))
    assert "distributed init (rank 1): tcp://127.0.0.1" in two[1]
    assert max_delta(tmp_path / "one" / "checkpoint_last.pt", tmp_path / "two" / "checkpoint_last.pt") <= TOLERANCE
    wpb_one, wpb_two = inner(one, "wpb"), inner(two[0], "wpb")
    assert len(wpb_two) == UPDATES and wpb_two == wpb_one  # words per update: both ranks' batches
    tokens = read_checkpoint(tmp_path / "two" / "checkpoint_last.pt")["task_state"]["target_tokens"]
    assert tokens == sum(int(float(w)) for w in wpb_two) == int(inner(two[0], "tgt_tokens")[-1])
    assert tokens == read_checkpoint(tmp_path / "one" / "checkpoint_last.pt")["task_state"]["target_tokens"]
    assert valid_loss(two[0]) == valid_loss(one)  # rank 1's parameters scored half of it


@pytest.fixture(scope="module")
def upgraded(tiny_trained, tiny_data, lang_texts, tmp_path_factory) -> dict:
    """The tiny old model upgraded (extend, it and ar added) and 100 train pairs per direction for it."""
    root = tmp_path_factory.mktemp("ddp")
    texts = [a for lang in ("it", "ar") for a in ("--text", f"{lang}={lang_texts[lang]}")]
    run_cli("mmt-upgrade", "upgrade", str(tiny_trained[0] / "checkpoint_best.pt"), "--out", str(root / "up"),
            "--old-data", str(tiny_data.root), "--new-spm-size", "500", *texts)
    cfg = DataConfig(**{**tiny_data.manifest["config"], "langs": ["es", "fr", "it", "ar"], "max_train_pairs": 100,
                        "max_eval_pairs": 8, "tokenizer": str(root / "up")})
    return {"up": root / "up", "data": prepare_data(cfg, cache_dir(), root / "data"), "old": tiny_data,
            "teacher": tiny_trained[0] / "checkpoint_best.pt"}


def test_scaled_adam_and_upsampling_in_a_two_task_submitit_job(upgraded, tmp_path):
    """The experiment's own job (`TrainingJob`) as two tasks of submitit's local executor: rank 0 trains with
    rank 1, evaluates and writes the result; old rows at lr 0 stay bit-identical; both ranks sample the same
    up-sampled distribution (else rank 1's batches, and so the parameters, would differ)."""
    data, start = upgraded["data"], upgraded["up"] / "checkpoint.pt"
    scaled = {**FLAGS, "optimizer": "adam_scaled", "lr-scale-old": 0, "lr-scale-new": 1}
    extra = [*UPSAMPLING, "--finetune-from-model", str(start)]
    one = train_one(tiny_train_argv(data, tmp_path / "one", **scaled) + extra)
    run = RunDir(tmp_path / "ddp")
    plan = RunPlan(name="ddp", run_dir=run.root, train_argv=tiny_train_argv(data, run.checkpoints, **scaled) + extra,
                   train_data=data.root, eval_data=data.root, max_update=UPDATES, eval_every=0,
                   evaluation=EvalOptions(beam=1, max_tokens=4000))
    executor = make_executor(ClusterOptions(tasks_per_node=2, timeout_min=10), tmp_path / "jobs")
    job = executor.submit(TrainingJob(), plan)
    results = job.results()
    assert results[1] is None and results[0].trained_updates == UPDATES and run.done.exists()
    assert [p.updates for p in results[0].curve] == [UPDATES]  # rank 0 evaluated checkpoint_best.pt
    rank0, rank1 = ((tmp_path / "jobs" / f"{job.job_id}_{r}_log.err").read_text() for r in (0, 1))
    assert "distributed init (rank 1): tcp://127.0.0.1:" in rank1, rank1[-2000:]
    assert max_delta(tmp_path / "one" / "checkpoint_last.pt", run.last) <= TOLERANCE
    assert (run.checkpoints / "sampling.json").read_text() == (tmp_path / "one" / "sampling.json").read_text()
    trained, begin = read_checkpoint(run.last), read_checkpoint(start)["model"]
    record = NewParameterRecord.from_task_state(trained["task_state"])
    emb, emb0 = trained["model"]["encoder.embed_tokens.weight"], begin["encoder.embed_tokens.weight"]
    new = record.new_mask("encoder.embed_tokens.weight", emb.shape)[:, 0]
    assert torch.equal(emb[~new], emb0[~new]) and not torch.equal(emb[new], emb0[new])
    assert torch.equal(trained["model"]["encoder.layers.0.fc1.weight"], begin["encoder.layers.0.fc1.weight"])
    assert valid_loss(rank0) == valid_loss(one)


def test_distillation_with_two_processes(upgraded, tmp_path):
    """The cross-vocabulary criterion (online teacher): the same updates and the same distillation terms."""
    data, start = upgraded["data"], upgraded["up"] / "checkpoint.pt"
    kd = {**FLAGS, "criterion": "cross_vocab_distillation", "teacher-path": str(upgraded["teacher"]),
          "teacher-spm": str(upgraded["old"].spm_model), "kd-method": "shared", "kd-weight": 50}
    extra = ["--finetune-from-model", str(start)]
    one = train_one(tiny_train_argv(data, tmp_path / "one", **kd) + extra)
    two = train_two(tiny_train_argv(data, tmp_path / "two", **kd) + extra)
    assert max_delta(tmp_path / "one" / "checkpoint_last.pt", tmp_path / "two" / "checkpoint_last.pt") <= TOLERANCE
    kd_one, kd_two = inner(one, "kd_loss"), inner(two[0], "kd_loss")
    assert len(kd_two) == UPDATES and kd_two == kd_one and any(float(v) > 0 for v in kd_two)
    assert inner(two[0], "kd_share") == inner(one, "kd_share")
