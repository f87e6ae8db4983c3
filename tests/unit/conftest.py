"""Unit-lane fixtures: synthetic multilingual text and SentencePiece models trained on it in seconds.

The words are drawn from a seeded generator per script (Latin, Cyrillic, Arabic), so the tests see
the same text on every machine and nothing is downloaded.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import sentencepiece as spm

from mmt_upgrade.core.spm import load_spm, train_spm, write_dictionary

# (consonants, vowels) per language; en/es/fr share the Latin script with different letters.
SCRIPTS = {
    "en": ("bcdfghklmnprstvwy", "aeiou"),
    "es": ("bcdfglmnprstvñ", "aeiouáé"),
    "fr": ("bcdfglmnprstvç", "aeiouéèû"),
    "ru": ("бвгджзклмнпрстфхцчш", "аеиоуыэюя"),
    "ar": ("بتثجحخدذرزسشصضطظعغفقكلمنهو", "اوي"),
}
OLD_LANGS = ("en", "es", "fr")


def words(lang: str, n: int, seed: int = 0) -> list[str]:
    """`n` distinct pronounceable words of `lang` (1-4 consonant-vowel syllables)."""
    consonants, vowels = SCRIPTS[lang]
    rng = random.Random(f"{lang}/{seed}")
    out: dict[str, None] = {}
    while len(out) < n:
        out["".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(1, 4)))] = None
    return list(out)


def sentences(lang: str, n: int, seed: int = 0) -> list[str]:
    """`n` sentences of 3-12 Zipf-distributed words; Latin and Cyrillic ones capitalized, with a full stop."""
    vocab = words(lang, 300, seed)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    rng = random.Random(f"{lang}/{seed}/sentences")
    lines = []
    for _ in range(n):
        line = " ".join(rng.choices(vocab, weights, k=rng.randint(3, 12)))
        lines.append((line[0].upper() + line[1:] if lang != "ar" else line) + ".")
    return lines


@pytest.fixture(scope="session")
def texts() -> dict[str, list[str]]:
    """400 synthetic sentences per language of SCRIPTS."""
    return {lang: sentences(lang, 400) for lang in SCRIPTS}


@pytest.fixture(scope="session")
def old_spm(texts, tmp_path_factory) -> Path:
    """A 400-piece byte-fallback model of the Latin-script languages only (Cyrillic and Arabic unseen),
    with its fairseq dictionary `dict.txt` beside it."""
    out = tmp_path_factory.mktemp("old_spm")
    path = train_spm({x: texts[x] for x in OLD_LANGS}, out / "spm.model", 400, 400, seed=1)
    write_dictionary(load_spm(path), out / "dict.txt")
    return path


@pytest.fixture(scope="session")
def sp(old_spm) -> spm.SentencePieceProcessor:
    return load_spm(old_spm)
