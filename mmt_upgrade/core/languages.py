"""Language lists and the rules that keep fairseq language-token ids stable.

fairseq appends one `__xx__` token per language after all pieces, in `--langs` order, so the
order is part of a model: new languages are appended at the END, never inserted.
"""
from __future__ import annotations

from typing import Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.symbols import parse_lang_codes

PIVOT = "en"
# The project's default plan: the old model's languages, then the new ones appended.
OLD_LANGS = ("es", "fr", "de", "ru")
NEW_LANGS = ("it", "ar")
DEFAULT_HELDOUT_LANGS = (PIVOT,) + OLD_LANGS + NEW_LANGS


def parse_lang_list(text: str | Sequence[str], flag: str = "--langs") -> list[str]:
    """A comma list (or list) of language codes: any code fairseq can put in a token, none repeated. Whether
    there is text for a code is the data module's business (`pipeline/data/translations.py`)."""
    return parse_lang_codes(text, flag)


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
