"""Shared fixtures: the real Bible database (downloaded once into the cache) and tiny prepared data."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmt_upgrade.core.paths import PLUGIN_DIR, cache_dir
from mmt_upgrade.fairseq_io.drivers import flags_to_argv, task_argv
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.pipeline.data.bible import fetch_bible_db
from mmt_upgrade.pipeline.data.prepare import DataConfig, bible_texts, prepare_data
from mmt_upgrade.pipeline.runconfig import load_config

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def bible_db() -> Path:
    return fetch_bible_db(cache_dir())


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, bible_db) -> PreparedData:
    """The `tiny` config's data (es, fr <-> en; 300 train pairs each), built fresh for the session."""
    return prepare_data(load_config("tiny").data, cache_dir(), tmp_path_factory.mktemp("tiny") / "data")


def run_cli(name: str, *args: str, check: bool = True, cwd: Path = REPO_ROOT, timeout: int = 600,
            stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run a real console script of this virtualenv (fairseq-train, mmt-upgrade, ...)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
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
