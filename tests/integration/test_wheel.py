"""The package as a user installs it: a wheel built by `pip wheel .`, installed into a fresh virtualenv that
sees torch and fairseq from this project's .venv but not this checkout, run from a directory outside it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ..conftest import REPO_ROOT, run_cli

# What a fresh clone holds: the checkout minus its virtualenv, caches, run outputs and build leftovers.
NOT_IN_A_CLONE = shutil.ignore_patterns(".git", ".venv", ".cache", "runs", "build", "dist", "*.egg-info",
                                        "__pycache__", ".hypothesis", ".ruff_cache", ".pytest_cache")


def _run(*cmd: str | Path, cwd: Path, env: dict | None = None) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict[str, Path]:
    """The wheel, and a virtualenv holding only it (plus a .pth line to .venv's site-packages)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO_ROOT, src, ignore=NOT_IN_A_CLONE)
    _run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-w", root / "dist",
         cwd=src)
    wheels = list((root / "dist").glob("mmt_upgrade-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=root)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root).strip())
    # A path added by a .pth is not scanned for .pth files itself: the checkout's editable install stays out.
    (site / "project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", wheels[0], cwd=root)
    work = root / "work"  # outside the checkout: nothing may be found through the working directory
    work.mkdir()
    return {"venv": venv, "site": site, "python": python, "bin": venv / "bin", "work": work, "root": root}


def test_the_wheel_holds_the_plugins_and_the_configs(fresh):
    out = _run(fresh["python"], "-c", "import mmt_upgrade, fairseq_plugins, fairseq, torch; "
               "print(mmt_upgrade.__file__); print(fairseq_plugins.__file__); print(fairseq.__file__)", cwd=fresh["work"])
    package, plugins, fairseq = (Path(line) for line in out.splitlines())
    assert package.is_relative_to(fresh["site"]) and plugins.is_relative_to(fresh["site"]), out
    assert not fairseq.is_relative_to(fresh["venv"]), "fairseq comes from the project's .venv"
    configs = sorted(p.name for p in (package.parent / "configs").glob("*.yaml"))
    assert configs == sorted(p.name for p in (REPO_ROOT / "mmt_upgrade" / "configs").glob("*.yaml"))
    assert configs and not (fresh["site"] / "configs").exists()  # package data, not a top-level folder


def test_mmt_upgrade_runs_and_prints_the_plugin_dir(fresh):
    assert "experiment" in _run(fresh["bin"] / "mmt-upgrade", "--help", cwd=fresh["work"])
    plugin_dir = Path(_run(fresh["bin"] / "mmt-upgrade", "plugin-dir", cwd=fresh["work"]).strip())
    assert plugin_dir == fresh["site"] / "fairseq_plugins" and (plugin_dir / "__init__.py").is_file()


def test_the_shipped_configs_plan_the_same_experiment(fresh, tmp_path):
    """`experiment tiny_upgrade --dry-run` from the wheel prints the checkout's plan, but for the two paths
    that name where the package is installed."""
    env = dict(os.environ, MMT_UPGRADE_RUNS=str(tmp_path / "runs"), MMT_UPGRADE_CACHE=str(tmp_path / "cache"))
    args = ("experiment", "tiny_upgrade", "--dry-run", "--out", str(tmp_path / "exp"))
    installed = _run(fresh["bin"] / "mmt-upgrade", *args, cwd=fresh["work"], env=env)
    checkout = run_cli("mmt-upgrade", *args, cwd=fresh["work"], env=env).stdout
    site = fresh["site"]
    assert f"({site}/mmt_upgrade/configs/tiny_upgrade.yaml)" in installed.splitlines()[0]
    assert f"--user-dir {site}/fairseq_plugins " in installed
    assert installed.replace(str(site), str(REPO_ROOT)) == checkout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "exp").exists()  # a dry run writes nothing


def test_fairseq_train_sees_the_task_optimizer_and_criterion(fresh):
    """fairseq's --help stops at its first parsing stage, before the plugins' flags are added; its usage
    error comes after the last stage: it lists every flag, and names the one flag it does not know."""
    plugin_dir = _run(fresh["bin"] / "mmt-upgrade", "plugin-dir", cwd=fresh["work"]).strip()
    plugins = ["--task", "upgrade_translation", "--optimizer", "adam_scaled", "--criterion", "cross_vocab_distillation"]
    flags = ["--lr-scale-old", "0.5", "--upsample-langs", "it", "--kd-method", "alm", "--not-a-flag"]

    def usage_error(*args: str) -> str:
        proc = subprocess.run([str(fresh["python"]), "-m", "fairseq_cli.train", str(fresh["work"]), "--user-dir",
                               plugin_dir, "--arch", "transformer", *args, *flags], cwd=fresh["work"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-3000:]
        return proc.stderr

    err = usage_error(*plugins)
    assert err.rstrip().endswith("error: unrecognized arguments: --not-a-flag"), err[-2000:]
    for flag in ("--lr-scale-old", "--upsample-langs", "--kd-method", "--teacher-path"):
        assert f"[{flag} " in err, flag
    # the control: the same flags without choosing the optimizer and the criterion are unknown to fairseq
    assert "unrecognized arguments: --lr-scale-old 0.5 --kd-method alm --not-a-flag" in usage_error(*plugins[:2])
