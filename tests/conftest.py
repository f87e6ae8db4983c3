"""Shared fixtures: the real Bible database (downloaded once into the cache) and tiny prepared data."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmt_upgrade.config import load_config
from mmt_upgrade.data.bible import fetch_bible_db
from mmt_upgrade.data.prepare import PreparedData, prepare_data
from mmt_upgrade.paths import PLUGIN_DIR, REPO_ROOT, cache_dir

BIN = Path(sys.executable).parent


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
