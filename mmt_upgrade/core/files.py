"""Small shared helpers: atomic writes, hashing, logging."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
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


def read_text_lines(file: Path, what: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file; a missing, empty or non-UTF-8 file is one error starting
    with `what` (the flag, and the language it is for)."""
    file = Path(file)
    if not file.is_file():
        raise UserInputError(f"{what}: file not found: {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserInputError(f"{what}: {file} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                             f"{e.start}); convert it, e.g. with iconv -t utf-8") from None
    lines = [x for x in text.splitlines() if x.strip()]
    if not lines:
        raise UserInputError(f"{what}: {file} holds no text")
    return lines
