"""The real fairseq CLIs with `--user-dir fairseq_plugins` on tiny real data.

Proves the torch>=2.6 checkpoint-loading fix for resume, --finetune-from-model, fairseq-generate and
fairseq-interactive, and that without the plugin the same load fails (so the fix is what works).
"""
from __future__ import annotations

import logging
import math
import re

import pytest
import torch

from mmt_upgrade.fairseq_io.drivers import flags_to_argv, task_argv
from mmt_upgrade.fairseq_io.models import greedy, load_model, teacher_forced_logits
from mmt_upgrade.pipeline.runconfig import load_config

from ..conftest import assert_interactive_equals_generate, run_cli, translation_argv


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


def test_generate_equals_the_librarys_greedy_decode(trained, tiny_data):
    """fairseq-generate with beam 1 (pieces, no post-processing) is the library's own greedy decode of the
    same checkpoint, sentence by sentence, and its per-token scores are the library's teacher-forced
    log-probabilities of that output: the plugin loads the model and sets up the language tokens as
    `fairseq_io.models` does. (The 20-update model still says much the same for every sentence; the
    scores differ from sentence to sentence.)"""
    save, _ = trained
    ckpt = save / "checkpoint_best.pt"
    out = run_cli("fairseq-generate", *translation_argv(tiny_data.bin_dir, ckpt, tiny_data.langs, "es", "en", 1),
                  "--gen-subset", "test", "--skip-invalid-size-inputs-valid-test",
                  "--cpu-bf16", "never").stdout  # the library computes in fp32
    gen = {int(i): text for i, text in re.findall(r"^D-(\d+)\t\S+\t(.*)$", out, re.M)}
    scores = {int(i): [float(x) for x in text.split()] for i, text in re.findall(r"^P-(\d+)\t(.*)$", out, re.M)}
    sources = tiny_data.raw_file("test", "es", "en", "es").read_text().splitlines()
    assert len(gen) >= len(sources) - 2 and sorted(scores) == sorted(gen)  # at most 2 over-long verses skipped
    m = load_model(ckpt, tiny_data.bin_dir, tiny_data.tokenizer)
    eos, pad, en = m.index["</s>"], m.index["<pad>"], m.index["__en__"]
    for i in sorted(gen):
        ids = [m.index["__es__"], *m.ids(tiny_data.tokenizer.encode("es", [sources[i]])[0]), eos]
        src, src_len = torch.tensor([ids]), torch.tensor([len(ids)])
        # fairseq never emits <pad>, forces </s> after --max-len-b 30 - 1 tokens, strips the target language token
        pieces = greedy(m, src, src_len, "en", 29, torch.tensor([pad]))[0]
        assert gen[i] == " ".join(p for p in pieces if p != "__en__"), i
        target = [en, *(m.index[p] for p in pieces), eos]  # the scores cover the language token and </s>
        logits = teacher_forced_logits(m, src, src_len, torch.tensor([[eos, *target[:-1]]]))
        expected = torch.log_softmax(logits[0], -1)[torch.arange(len(target)), target] / math.log(2)  # base 2
        assert scores[i] == pytest.approx(expected.tolist(), abs=2e-4), i
    assert len({tuple(v) for v in scores.values()}) == len(scores)  # every sentence scored on its own


def test_interactive_equals_generate_on_the_same_sentences(trained, tiny_data):
    save, _ = trained
    assert_interactive_equals_generate(tiny_data.bin_dir, save / "checkpoint_best.pt", tiny_data.langs, "en", "es",
                                       tiny_data)


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
