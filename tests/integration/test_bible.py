"""The book-held-out split and alignment on the real Bible database (rules: tests/unit/test_bible.py)."""
from __future__ import annotations

from mmt_upgrade.pipeline.data.bible import DEV_BOOKS, TEST_BOOKS, Corpus
from mmt_upgrade.pipeline.data.prepare import DataConfig, build_splits


def test_real_database_split_and_alignment(bible_db):
    cfg = DataConfig(langs=["es", "ru"], max_train_pairs=2000, max_train_pairs_per_lang={"ru": 500})
    corpus = Corpus.load(bible_db, ["en", "es", "ru", "fr", "de", "it", "ar"])
    assert len(corpus.verses["en"]) > 31000
    splits = build_splits(corpus, cfg)
    es, ru = splits["en-es"], splits["en-ru"]
    for pair in (es, ru):
        assert not any(v[0] in TEST_BOOKS | DEV_BOOKS for v in pair["train"])
        assert all(v[0] in TEST_BOOKS for v in pair["test"]) and all(v[0] in DEV_BOOKS for v in pair["valid"])
    # dev/test: the same verses in every direction (the held-out languages' intersection)
    assert es["test"] == ru["test"] and es["valid"] == ru["valid"]
    assert 1100 <= len(es["test"]) <= 1140 and 670 <= len(es["valid"]) <= 683
    # caps: default and per-language override; capped pairs reuse the same English verses
    assert len(es["train"]) == 2000 and len(ru["train"]) == 500
    assert len(set(ru["train"]) & set(es["train"])) > 0.9 * len(ru["train"])
    # no English dev/test sentence occurs in train
    en = corpus.verses["en"]
    assert not {en[v] for v in es["test"]} & {en[v] for v in es["train"]}
