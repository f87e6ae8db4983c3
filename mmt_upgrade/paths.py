"""Where the project keeps caches and runs (all git-ignored)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = REPO_ROOT / "fairseq_plugins"
CONFIG_DIR = REPO_ROOT / "configs"


def cache_dir() -> Path:
    """`$MMT_UPGRADE_CACHE`, else `.cache/` in the checkout: data is downloaded and derived once."""
    return Path(os.environ.get("MMT_UPGRADE_CACHE", REPO_ROOT / ".cache")).resolve()


def runs_dir() -> Path:
    return Path(os.environ.get("MMT_UPGRADE_RUNS", REPO_ROOT / "runs")).resolve()
