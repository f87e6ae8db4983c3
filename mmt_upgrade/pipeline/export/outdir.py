"""What every export and import shares: an output directory built beside its place and renamed in when
complete (never over an existing one), and the check that an optional extra is installed."""
from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path
from typing import Iterator

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import atomic_dir


def check_new(out: Path, flag: str) -> Path:
    """`out` as an absolute path that does not exist yet."""
    out = Path(out).absolute()
    if out.exists() or out.is_symlink():
        raise UserInputError(f"{flag} {out} exists; choose a new directory (nothing is overwritten)")
    return out


@contextlib.contextmanager
def building(out: Path, flag: str) -> Iterator[Path]:
    """An empty directory beside `out`, renamed to `out` if the block succeeds and removed otherwise."""
    out = check_new(out, flag)
    with atomic_dir(out) as tmp:
        yield tmp
        check_new(out, flag)  # not created meanwhile: renaming would replace an empty one


def require_extra(extra: str, *modules: str) -> None:
    """One error naming the extra to install when a module it provides is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserInputError(f"{', '.join(missing)} is not installed: install mmt-upgrade[{extra}] "
                             f"(pip install 'mmt-upgrade[{extra}]')")
