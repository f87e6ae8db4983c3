"""The real fairseq CLIs with `--user-dir fairseq_plugins` on tiny real data.

Proves the torch>=2.6 checkpoint-loading fix for resume, --finetune-from-model, fairseq-generate and
fairseq-interactive, and that without the plugin the same load fails (so the fix is what works).
"""
from __future__ import annotations

import logging
import re

import pytest
import sentencepiece as spm
from sacrebleu.metrics import CHRF

from mmt_upgrade.fairseq_io.drivers import flags_to_argv, task_argv
from mmt_upgrade.pipeline.runconfig import load_config

from ..conftest import run_cli


@pytest.fixture(scope="module")
def trained(tiny_trained):
    return tiny_trained


def _num_updates(stdout: str) -> int:
    return int(re.findall(r"num_updates[ =](\d+)", stdout)[-1])


def test_resume_continues_from_checkpoint_last(trained):
    save, argv = trained
    out = run_cli("fairseq-train", *argv, "--max-update", "30")
    log = out.stdout + out.stderr
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 20 updates\)", log), log[-3000:]
    assert _num_updates(log) == 30


def test_finetune_from_model(trained, tmp_path):
    save, argv = trained
    argv = [a if a != str(save) else str(tmp_path) for a in argv]
    out = run_cli("fairseq-train", *argv, "--finetune-from-model", str(save / "checkpoint_best.pt"),
                  "--max-update", "5")
    log = out.stdout + out.stderr
    assert "loading pretrained model from" in log and _num_updates(log) == 5


def _gen_args(data, ckpt, src="es", tgt="en"):
    return task_argv(data) + ["--lang-pairs", f"{src}-{tgt}", "-s", src, "-t", tgt, "--path", str(ckpt),
                              "--gen-subset", "test", "--beam", "2", "--max-tokens", "4000",
                              "--post-process", "sentencepiece", "--cpu", "--skip-invalid-size-inputs-valid-test"]


def test_generate_scores_with_sacrebleu(trained, tiny_data):
    save, _ = trained
    out = run_cli("fairseq-generate", *_gen_args(tiny_data, save / "checkpoint_best.pt"))
    hyps = {int(m.group(1)): m.group(2) for m in re.finditer(r"^D-(\d+)\t\S+\t(.*)$", out.stdout, re.M)}
    refs = tiny_data.raw_file("test", "es", "en", "en").read_text().splitlines()
    assert len(hyps) >= len(refs) - 2  # at most the 2 over-long verses are skipped
    ids = sorted(hyps)
    score = CHRF(word_order=2).corpus_score([hyps[i] for i in ids], [[refs[i] for i in ids]])
    assert 0.0 <= score.score <= 100.0


def test_interactive_translates_stdin(trained, tiny_data):
    save, _ = trained
    sp = spm.SentencePieceProcessor(model_file=str(tiny_data.spm_model))
    line = " ".join(sp.Encode("In the beginning God created the heaven and the earth.", out_type=str))
    args = _gen_args(tiny_data, save / "checkpoint_best.pt", "en", "es")
    args = [a for a in args if a not in ("--gen-subset", "test", "--skip-invalid-size-inputs-valid-test")]
    out = run_cli("fairseq-interactive", *args, stdin=line + "\n")
    assert re.search(r"^H-0\t", out.stdout, re.M), out.stdout[-2000:]


def test_without_the_plugin_torch_refuses_the_checkpoint(trained, tiny_data):
    """The negative control: plain fairseq-generate on torch>=2.6 cannot load our checkpoint."""
    save, _ = trained
    args = _gen_args(tiny_data, save / "checkpoint_best.pt")
    i = args.index("--user-dir")
    del args[i:i + 2]
    args[args.index("upgrade_translation")] = "translation_multi_simple_epoch"
    assert not any("fairseq_plugins" in a for a in args)
    out = run_cli("fairseq-generate", *args, check=False)
    assert out.returncode != 0
    assert "weights_only" in out.stderr or "Unsupported global" in out.stderr


def test_reordered_language_list_is_refused_by_generate(trained, tiny_data):
    save, _ = trained
    args = _gen_args(tiny_data, save / "checkpoint_best.pt")
    args[args.index("en,es,fr")] = "en,fr,es"
    out = run_cli("fairseq-generate", *args, check=False)
    assert out.returncode != 0
    assert "would reorder the language tokens of en,es,fr" in out.stderr


def test_fairseq_bf16_flag_on_cpu_is_refused(trained):
    save, argv = trained
    out = run_cli("fairseq-train", *argv, "--bf16", "--max-update", "31", check=False)
    assert out.returncode != 0 and "--cpu-bf16 always" in out.stderr


def test_in_process_runs_keep_their_own_log_files(tiny_data, tmp_path, caplog):
    """fairseq adds a --log-file handler per call; two runs in one process must not share logs."""
    from mmt_upgrade.fairseq_io.drivers import run_fairseq_train

    caplog.set_level(logging.INFO)  # pytest's capture would otherwise keep fairseq's INFO lines from the files
    flags = dict(load_config("tiny").train, **{"max-update": 2, "save-interval-updates": 0, "log-interval": 1})
    for name in ("first", "second"):
        run_fairseq_train(task_argv(tiny_data) + ["--lang-pairs", "es-en", "--save-dir", str(tmp_path / name),
                                                  "--log-file", str(tmp_path / f"{name}.log")] + flags_to_argv(flags))
    first = (tmp_path / "first.log").read_text()
    assert str(tmp_path / "first") in first and str(tmp_path / "second") not in first
