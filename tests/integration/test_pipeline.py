"""The `mmt-upgrade` command end to end on the tiny config: data -> train -> evaluate, then resume."""
from __future__ import annotations

import json

from ..conftest import run_cli


def test_pipeline_trains_evaluates_and_resumes(tmp_path):
    run = tmp_path / "run"
    out = run_cli("mmt-upgrade", "pipeline", "tiny", "--run-dir", str(run))
    results = json.loads((run / "eval" / "results.json").read_text())
    assert list(results["directions"]) == ["es-en", "en-es", "fr-en", "en-fr"]
    for scores in results["directions"].values():
        assert scores["n"] == 40
        assert set(scores["baselines"]) == {"copy_source", "most_frequent_target"}
        assert 0 <= scores["chrfpp"] <= 100
    assert set(results["groups"]) == {"all", "old", "into_en", "out_of_en"}
    assert "nw:2" in results["signatures"]["chrf++"]
    assert "mean all" in out.stdout and "es-en" in out.stdout
    done = json.loads((run / "train_done.json").read_text())
    assert done["num_updates"] == 30
    hyps = (run / "eval" / "translations" / "test.es-en.en").read_text().splitlines()
    assert len(hyps) == 40

    again = run_cli("mmt-upgrade", "pipeline", "tiny", "--run-dir", str(run))
    assert "is finished" in again.stderr and "reusing" in again.stderr
    assert json.loads((run / "eval" / "results.json").read_text())["directions"] == results["directions"]

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
