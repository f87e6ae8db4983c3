"""Cleaning rules, length filtering and the book-held-out split, on rule examples and hand-made databases."""
from __future__ import annotations

import sqlite3

import pytest

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.pipeline.data.bible import (
    Corpus,
    clean_verse,
    filter_pairs,
    open_db,
    read_translation,
    split_ids,
    split_of,
)
from mmt_upgrade.pipeline.data.prepare import DataConfig, build_splits


@pytest.mark.parametrize("raw, lang, expected", [
    ("", "en", None),
    ("Missing KJV: In the beginning", "ko", None),
    ("Text ADDED FROM KJV here", "ru", None),
    ("-", "bn", None),
    ("(aynı)", "tr", None),
    ("ｱｲｳ mojibake", "ja", None),
    ("(3:4) In the beginning", "fr", "In the beginning"),
    ("A (1:2) B (1:3) C", "ru", "A B C"),
    ("He said this (Mat 5:17)", "hi", "He said this"),
    ("He said this (see 2.3 ff)", "hi", "He said this"),
    ("He said (unto them) this", "en", "He said (unto them) this"),
    ("der [HERR] sprach* zu", "de", "der HERR sprach zu"),
    ("  many   spaces\there ", "en", "many spaces here"),
    ("l\u2019uomo e \u2018la\u2019 donna", "it", "l'uomo e 'la' donna"),
    ("EN el principio crió Dios", "es", "En el principio crió Dios"),
    ("Y ACONTECIO en los días", "es", "Y acontecio en los días"),
    ("NEL principio", "it", "Nel principio"),
    ("And the LORD spake unto Moses", "en", "And the LORD spake unto Moses"),
    ("ALEPH. Blessed are the undefiled", "en", "ALEPH. Blessed are the undefiled"),
    ("[*]", "de", None),
])
def test_clean_verse_rules(raw, lang, expected):
    assert clean_verse(raw, lang) == expected


def test_filter_pairs_is_relative_to_the_median():
    src = {(1, 1, i): "x" * 10 for i in range(1, 8)}
    tgt = {(1, 1, i): "y" * 30 for i in range(1, 8)}  # every ratio is 3: median 3, all kept
    tgt[(1, 1, 6)] = "y" * 200  # ratio 20 / 3 > 2.5: dropped
    tgt[(1, 1, 7)] = "y" * 5  # ratio 0.5 / 3 < 1/2.5: dropped
    del tgt[(1, 1, 5)]  # missing on one side: dropped
    assert filter_pairs(src, tgt) == [(1, 1, i) for i in range(1, 5)]


def test_split_by_whole_book():
    assert split_of((44, 1, 1)) == "test" and split_of((8, 4, 22)) == "test" and split_of((32, 1, 1)) == "test"
    assert split_of((17, 1, 1)) == "valid" and split_of((60, 5, 14)) == "valid"
    assert split_of((1, 1, 1)) == "train" and split_of((41, 1, 1)) == "train"  # Mark stays in train


def test_split_ids_are_sorted_and_complete():
    ids = [(44, 1, 2), (1, 1, 1), (17, 1, 1), (1, 1, 2)]
    out = split_ids(ids)
    assert out == {"train": [(1, 1, 1), (1, 1, 2)], "valid": [(17, 1, 1)], "test": [(44, 1, 2)]}


def _mini_db(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE bible (id INTEGER, bbName TEXT, bNumber INTEGER, cNumber INTEGER, vNumber INTEGER, vText TEXT)")
    conn.executemany("INSERT INTO bible VALUES (0, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def test_language_missing_from_database_is_named(tmp_path):
    db = tmp_path / "bible.db"
    _mini_db(db, [("k", 1, 1, 1, "In the beginning")])
    conn = open_db(db)
    with pytest.raises(UserInputError, match=r"no verses for language 'it'"):
        read_translation(conn, "it", db)


def test_empty_split_after_filtering_is_named(tmp_path):
    db = tmp_path / "bible.db"
    rows = [(code, 1, 1, v, f"verse {v}") for code in ("k", "v") for v in range(1, 30)]
    rows += [(code, 17, 1, 1, "dev verse") for code in ("k", "v")]  # dev but no test book
    _mini_db(db, rows)
    corpus = Corpus.load(db, ["en", "es"])
    with pytest.raises(UserInputError, match=r"en-es: the test split is empty"):
        build_splits(corpus, DataConfig(langs=["es"], heldout_langs=["en", "es"]))


@pytest.mark.parametrize("content", [None, b"this is not sqlite at all" * 100])
def test_missing_or_corrupt_database(tmp_path, content):
    db = tmp_path / "bible.db"
    if content is not None:
        db.write_bytes(content)
    with pytest.raises(UserInputError, match="bible.db"):
        open_db(db)


@pytest.mark.parametrize("langs, message", [
    (["es", "xx"], "unknown language code 'xx'"),
    (["es", "es"], "repeats es"),
    ([], "is empty"),
])
def test_bad_language_lists(langs, message):
    with pytest.raises(UserInputError, match=message):
        DataConfig(langs=langs)
