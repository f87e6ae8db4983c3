"""Where the package keeps its configs and plugins, and where runs keep caches and results.

Configs are package data and the fairseq plugins are a package of this distribution, so both are found
beside the installed code (a wheel or a checkout alike). Caches and runs default to `.cache/` and `runs/` in
a checkout, or `~/.cache/mmt-upgrade` and `./runs` for an installed package; `$MMT_UPGRADE_CACHE` and
`$MMT_UPGRADE_RUNS` move them.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
CONFIG_DIR = PACKAGE_DIR / "configs"
_CHECKOUT = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "setup.py").is_file() else None


def _plugin_dir() -> Path:
    """The `fairseq_plugins` package directory, found without importing it (that would import fairseq)."""
    spec = importlib.util.find_spec("fairseq_plugins")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the fairseq_plugins package of mmt-upgrade is not installed")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


PLUGIN_DIR = _plugin_dir()


def cache_dir() -> Path:
    """`$MMT_UPGRADE_CACHE`, else `.cache/` in a checkout: data is downloaded and derived once."""
    default = _CHECKOUT / ".cache" if _CHECKOUT else Path.home() / ".cache" / "mmt-upgrade"
    return Path(os.environ.get("MMT_UPGRADE_CACHE", default)).resolve()


def runs_dir() -> Path:
    """`$MMT_UPGRADE_RUNS`, else `runs/` in a checkout (or the working directory)."""
    default = _CHECKOUT / "runs" if _CHECKOUT else Path.cwd() / "runs"
    return Path(os.environ.get("MMT_UPGRADE_RUNS", default)).resolve()
