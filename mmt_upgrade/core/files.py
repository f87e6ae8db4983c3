"""Small shared helpers: atomic writes, hashing, logging."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from mmt_upgrade.core.errors import UserInputError


def log(msg: str) -> None:
    print(f"[mmt-upgrade] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """An empty directory beside `path`, renamed to `path` only if the block succeeds and removed otherwise
    (the caller checks that `path` is new: a reader never sees a half-written directory)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_utf8(file: Path, what: str) -> str:
    """A UTF-8 text file's text; a missing or non-UTF-8 file is one error starting with `what` (the flag, and
    the language it is for)."""
    file = Path(file)
    if not file.is_file():
        raise UserInputError(f"{what}: file not found: {file}")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserInputError(f"{what}: {file} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                             f"{e.start}); convert it, e.g. with iconv -t utf-8") from None


def read_text_lines(file: Path, what: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file (`read_utf8`); an empty one is an error too."""
    lines = [x for x in read_utf8(file, what).splitlines() if x.strip()]
    if not lines:
        raise UserInputError(f"{what}: {file} holds no text")
    return lines
