"""The `mmt-upgrade` command end to end on the tiny config: data -> train -> evaluate, then resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF

from mmt_upgrade.core.files import sha256_file
from mmt_upgrade.fairseq_io.layout import PreparedData

from ..conftest import run_cli

# What the in-process fairseq-train and fairseq-generate log (their loggers' names) whenever they run.
TRAIN_RAN, GENERATE_RAN = "fairseq_cli.train", "fairseq_cli.generate"


def _files(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under `root`: (mtime in ns, sha256)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, sha256_file(p)) for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_pipeline_trains_evaluates_and_resumes(tmp_path):
    run = tmp_path / "run"
    out = run_cli("mmt-upgrade", "pipeline", "tiny", "--run-dir", str(run))
    log = out.stdout + out.stderr
    assert TRAIN_RAN in log and GENERATE_RAN in log
    results = json.loads((run / "eval" / "results.json").read_text())
    data = PreparedData.open(Path(results["data"]))
    assert list(results["directions"]) == ["es-en", "en-es", "fr-en", "en-fr"]
    chrf = CHRF(word_order=2)
    for name, scores in results["directions"].items():
        src, tgt = name.split("-")
        hyps = (run / "eval" / "translations" / f"test.{name}.{tgt}").read_text().splitlines()
        refs = data.raw_file("test", src, tgt, tgt).read_text().splitlines()
        sources = data.raw_file("test", src, tgt, src).read_text().splitlines()
        assert scores["n"] == len(hyps) == len(refs) == 40
        assert hyps != sources  # a barely trained model: the same output for every sentence, but not a copy
        # the scores are sacrebleu's, recomputed here from the saved hypotheses and the references
        assert scores["chrfpp"] == round(chrf.corpus_score(hyps, [refs]).score, 2)
        assert scores["bleu"] == round(BLEU().corpus_score(hyps, [refs]).score, 2)
        copy = scores["baselines"]["copy_source"]
        assert copy["chrfpp"] == round(chrf.corpus_score(sources, [refs]).score, 2)
        assert set(scores["baselines"]) == {"copy_source", "most_frequent_target"}
    assert set(results["groups"]) == {"all", "old", "into_en", "out_of_en"}
    into_en = [results["directions"][d]["chrfpp"] for d in ("es-en", "fr-en")]
    assert results["groups"]["into_en"]["chrfpp"] == pytest.approx(sum(into_en) / 2, abs=0.01)
    assert "nw:2" in results["signatures"]["chrf++"]
    assert "mean all" in out.stdout and "es-en" in out.stdout
    done = json.loads((run / "train_done.json").read_text())
    assert done["num_updates"] == 30

    # a rerun reuses everything: no fairseq run, no file of the run rewritten, the same scores recomputed
    before = _files(run)
    again = run_cli("mmt-upgrade", "pipeline", "tiny", "--run-dir", str(run))
    log = again.stdout + again.stderr
    assert "is finished" in again.stderr and "reusing" in again.stderr
    assert TRAIN_RAN not in log and GENERATE_RAN not in log, log[-3000:]
    after = _files(run)
    rewritten = {"eval/results.json", "timings.json"}  # scored again from the reused translations
    assert {k: v for k, v in after.items() if k not in rewritten} == {k: v for k, v in before.items() if k not in rewritten}
    assert after["eval/results.json"][1] == before["eval/results.json"][1]

    # a changed config resumes from checkpoint_last.pt instead of skipping or restarting
    more = run_cli("mmt-upgrade", "train", "tiny", "--run-dir", str(run), "--set", "train.max-update=40")
    assert "Loaded checkpoint" in more.stdout + more.stderr and "(epoch 1 @ 30 updates)" in more.stdout + more.stderr
    assert json.loads((run / "train_done.json").read_text())["num_updates"] == 40

    # a changed flag that does not lengthen a finished run trains nothing (fairseq would take one more update)
    same = run_cli("mmt-upgrade", "train", "tiny", "--run-dir", str(run), "--set", "train.max-update=40",
                   "--set", "train.log-interval=5")
    assert "nothing to train" in same.stderr and "Loaded checkpoint" not in same.stdout + same.stderr
    assert json.loads((run / "train_done.json").read_text())["num_updates"] == 40

    # a language list that would move the checkpoint's language tokens is refused, checkpoint untouched
    last = run / "checkpoints" / "checkpoint_last.pt"
    before = last.read_bytes()
    (run / "train_done.json").unlink()
    bad = run_cli("mmt-upgrade", "train", "tiny", "--run-dir", str(run), "--set", "data.langs=[fr,es]", check=False)
    assert bad.returncode == 2
    assert "would reorder the language tokens of en,es,fr" in bad.stderr
    assert last.read_bytes() == before


def test_cli_names_bad_input():
    out = run_cli("mmt-upgrade", "data", "tiny", "--langs", "es,klingon", check=False)
    assert out.returncode == 2 and "unknown language code 'klingon'" in out.stderr
    out = run_cli("mmt-upgrade", "evaluate", "tiny", "--checkpoint", "/nonexistent/ckpt.pt", check=False)
    assert out.returncode == 2 and "checkpoint not found: /nonexistent/ckpt.pt" in out.stderr


def test_data_command_caps_pairs_per_language(tmp_path):
    out = run_cli("mmt-upgrade", "data", "tiny", "--max-train-pairs", "200", "--max-train-pairs-per-lang", "fr=80",
                  "--out", str(tmp_path / "data"))
    assert "en-es: train=200 valid=40 test=40" in out.stdout and "en-fr: train=80" in out.stdout
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["config"]["max_train_pairs_per_lang"] == {"fr": 80}
    again = run_cli("mmt-upgrade", "data", "tiny", "--max-train-pairs", "200", "--max-train-pairs-per-lang", "fr=80",
                    "--out", str(tmp_path / "data"))
    assert "reusing" in again.stderr
