"""The two lanes, and the integration lane's shared fixtures: the real Bible database (downloaded once
into the cache), tiny prepared data, a tiny trained model, and helpers that run the real CLIs.

Every test is marked by its folder, `unit` or `integration` (pytest.ini); a unit test that asks for a
fixture which downloads or trains is an error, so the unit lane stays fast and offline."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

from mmt_upgrade.core.paths import PLUGIN_DIR, cache_dir
from mmt_upgrade.fairseq_io.drivers import flags_to_argv, task_argv
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.data.bible import fetch_bible_db
from mmt_upgrade.pipeline.data.prepare import DataConfig, bible_texts, prepare_data
from mmt_upgrade.pipeline.runconfig import load_config

BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent
REPO_ROOT = TESTS.parent
LANES = ("unit", "integration")
# Fixtures that download the Bible or run fairseq-train: integration only.
INTEGRATION_FIXTURES = {"bible_db", "tiny_data", "_tiny_trained_once", "tiny_trained", "lang_texts"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its lane, the folder under tests/ it lives in."""
    for item in items:
        lane = next((x for x in LANES if TESTS / x in Path(item.path).parents), None)
        if lane is None:
            raise pytest.UsageError(f"{item.nodeid}: every test belongs in tests/unit or tests/integration")
        if lane == "unit" and INTEGRATION_FIXTURES & set(item.fixturenames):
            raise pytest.UsageError(f"{item.nodeid}: a unit test may not use "
                                    f"{', '.join(sorted(INTEGRATION_FIXTURES & set(item.fixturenames)))} "
                                    "(it downloads or trains): move it to tests/integration")
        item.add_marker(getattr(pytest.mark, lane))


@pytest.fixture(scope="session")
def bible_db() -> Path:
    return fetch_bible_db(cache_dir())


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, bible_db) -> PreparedData:
    """The `tiny` config's data (es, fr <-> en; 300 train pairs each), built fresh for the session."""
    return prepare_data(load_config("tiny").data, cache_dir(), tmp_path_factory.mktemp("tiny") / "data")


def run_cli(name: str, *args: str, check: bool = True, cwd: Path = REPO_ROOT, timeout: int = 600,
            stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a real console script of this virtualenv (fairseq-train, mmt-upgrade, ...) in `env` (default:
    this process's environment)."""
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)  # the plugin must make loading work by itself
    proc = subprocess.run([str(BIN / name), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture
def plugin_dir() -> str:
    return str(PLUGIN_DIR)


@pytest.fixture(scope="session")
def _tiny_trained_once(tiny_data, tmp_path_factory) -> Path:
    save = tmp_path_factory.mktemp("tiny-ckpt")
    run_cli("fairseq-train", *tiny_train_argv(tiny_data, save))
    return save


def tiny_train_argv(data: PreparedData, save: Path, **overrides) -> list[str]:
    """fairseq-train flags of the tiny config (20 updates) on `data`, saving into `save`."""
    flags = {**load_config("tiny").train, "max-update": 20, "save-interval-updates": 10, **overrides}
    pairs = ",".join(f"{s}-{t}" for s, t in data.directions)
    return task_argv(data) + ["--lang-pairs", pairs, "--save-dir", str(save)] + flags_to_argv(flags)


@pytest.fixture(scope="module")
def tiny_trained(_tiny_trained_once, tiny_data, tmp_path_factory) -> tuple[Path, list[str]]:
    """A private copy of a tiny es,fr<->en model trained for 20 updates by the real fairseq-train."""
    save = tmp_path_factory.mktemp("ckpt") / "checkpoints"
    shutil.copytree(_tiny_trained_once, save)
    return save, tiny_train_argv(tiny_data, save)


@pytest.fixture(scope="session")
def lang_texts(tiny_data, tmp_path_factory) -> dict[str, Path]:
    """300 Bible train verses per language (en, es, fr and the new it, ar) as `--text` files."""
    cfg = DataConfig(**{**tiny_data.manifest["config"], "langs": ["es", "fr", "it", "ar"]})
    out = tmp_path_factory.mktemp("texts")
    files = {}
    for lang, lines in bible_texts(cfg, cache_dir(), "train").items():
        files[lang] = out / f"train.{lang}"
        files[lang].write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    return files


def translation_argv(data_dir: Path, ckpt: Path, langs: Sequence[str], src: str, tgt: str, beam: int) -> list[str]:
    """fairseq-generate / fairseq-interactive flags for one direction, one sentence per batch: every
    sentence is computed alone, so two ways of translating it must agree exactly. At most 29 tokens are
    generated (the tiny test models repeat a piece until they are stopped)."""
    return [str(data_dir), "--user-dir", str(PLUGIN_DIR), "--task", "upgrade_translation", "--langs", ",".join(langs),
            "--lang-pairs", f"{src}-{tgt}", "--encoder-langtok", "src", "--decoder-langtok", "-s", src, "-t", tgt,
            "--path", str(ckpt), "--beam", str(beam), "--batch-size", "1", "--max-len-a", "0", "--max-len-b", "30",
            "--cpu"]


def _hypotheses(stdout: str) -> dict[int, tuple[str, str]]:
    """sentence id -> (detokenized hypothesis, its per-token scores as printed)."""
    scores = dict(re.findall(r"^P-(\d+)\t(.*)$", stdout, re.M))
    return {int(i): (text, scores[i]) for i, text in re.findall(r"^D-(\d+)\t\S+\t(.*)$", stdout, re.M)}


def fairseq_generate(data_dir: Path, ckpt: Path, langs: Sequence[str], src: str, tgt: str, beam: int = 2,
                     *extra: str) -> dict[int, tuple[str, str]]:
    """Test-set hypotheses and their per-token scores from the real fairseq-generate, by sentence id
    (over-long sentences are skipped)."""
    out = run_cli("fairseq-generate", *translation_argv(data_dir, ckpt, langs, src, tgt, beam), "--gen-subset", "test",
                  "--skip-invalid-size-inputs-valid-test", *extra)
    return _hypotheses(out.stdout)


def fairseq_interactive(data_dir: Path, ckpt: Path, langs: Sequence[str], src: str, tgt: str, lines: Sequence[str],
                        beam: int = 2, *extra: str) -> list[tuple[str, str]]:
    """Hypotheses and per-token scores of the real fairseq-interactive for `lines` (space-joined pieces)."""
    out = run_cli("fairseq-interactive", *translation_argv(data_dir, ckpt, langs, src, tgt, beam), *extra,
                  stdin="\n".join(lines) + "\n")
    hyps = _hypotheses(out.stdout)
    assert sorted(hyps) == list(range(len(lines))), out.stdout[-2000:]
    return [hyps[i] for i in range(len(lines))]


def assert_interactive_equals_generate(data_dir: Path, ckpt: Path, langs: Sequence[str], src: str, tgt: str,
                                       data: PreparedData, n: int = 8, interactive_dir: Path | None = None) -> None:
    """fairseq-interactive, given the first `n` test sentences as pieces on stdin, translates them exactly as
    fairseq-generate translates their binarized form: the same text and the same per-token scores (which
    differ from sentence to sentence even where a barely trained model says the same thing)."""
    gen = fairseq_generate(data_dir, ckpt, langs, src, tgt, 2, "--post-process", "sentencepiece")
    sources = data.raw_file("test", src, tgt, src).read_text(encoding="utf-8").splitlines()
    ids = sorted(gen)[:n]
    assert len(ids) == n
    lines = [" ".join(p) for p in data.tokenizer.encode(src, [sources[i] for i in ids])]
    inter = fairseq_interactive(interactive_dir or data_dir, ckpt, langs, src, tgt, lines, 2,
                                "--post-process", "sentencepiece")
    assert inter == [gen[i] for i in ids]
    assert len({scores for _, scores in inter}) == n
