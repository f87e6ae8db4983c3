"""The rows of a fairseq multilingual model's embedding, for every layout people hold.

fairseq (`fairseq/data/multilingual/`) builds a model's symbol table as: `<s> <pad> </s> <unk>` (ids 0-3),
the dictionary file's symbols in file order, then `augment_dictionary` adds one language token per `--langs`
entry with `add_symbol` (a token the file already holds keeps its row), `<mask>` under `--lang-tok-style
mbart`, and the NLLB branch's `--add-data-source-prefix-tags` adds three tags after those. So:

- our models: `dict.txt` holds pieces only, the `__xx__` tokens come at run time;
- M2M-100: `model_dict.128k.txt` holds the pieces (frequency order), the `__xx__` tokens and the
  `madeupword0000`.. fillers (`Dictionary.finalize` pads to a multiple of 8);
- NLLB-200: `dictionary.txt` holds pieces; `__eng_Latn__`.. and the three tags come at run time;
- mbart style: `[xx]` tokens then `<mask>`.

Dictionary ids are not SentencePiece ids in general, so rows are always matched by symbol string.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import read_utf8
from mmt_upgrade.core.options import OptionGroup, option
from mmt_upgrade.core.spm import SPECIALS

LANGTOK_STYLES = ("multilingual", "mbart")  # fairseq --lang-tok-style
DATA_SOURCE_TAGS = ("<MINED_DATA>", "<MMT_BT_DATA>", "<SMT_BT_DATA>")  # NLLB --add-data-source-prefix-tags
MASK = "<mask>"
FILLER = re.compile(r"madeupword\d{4}")  # fairseq Dictionary.finalize's padding symbols
_FILLER_LINE = re.compile(rf"^{FILLER.pattern}$", re.M)
OVERWRITE = "#fairseq:overwrite"
# Characters a language code cannot hold: fairseq splits --langs at commas and --lang-pairs at hyphens, and
# a token with whitespace would be split by the tokenizer and the dictionary file format.
_BAD_CODE = re.compile(r"[\s,\-]")


@dataclass
class LayoutOptions(OptionGroup):
    """The flag of `--task upgrade_translation` that fairseq main lacks and NLLB-200 checkpoints need."""

    add_data_source_prefix_tags: bool = option(False, "append NLLB's data-source tags " + " ".join(DATA_SOURCE_TAGS)
                                               + " after the language tokens, as the NLLB branch of fairseq does")


def lang_token(lang: str, style: str = "multilingual") -> str:
    """fairseq's `get_lang_tok` for the main spec: `__xx__` or `[xx]`."""
    if style not in LANGTOK_STYLES:
        raise UserInputError(f"unknown language token style {style!r} (fairseq has {', '.join(LANGTOK_STYLES)})")
    return f"__{lang}__" if style == "multilingual" else f"[{lang}]"


def check_lang_code(code: str, flag: str) -> str:
    """A language code fairseq can put in a token (`en`, `xx`, `eng_Latn`, `tyv_Cyrl`)."""
    if not isinstance(code, str) or not code:
        raise UserInputError(f"{flag}: empty language code")
    bad = _BAD_CODE.search(code)
    if bad:
        raise UserInputError(f"{flag}: language code {code!r} holds {bad.group()!r}; fairseq cannot use a code "
                             "with whitespace, a comma or a hyphen")
    return code


def parse_lang_codes(text: str | Sequence[str], flag: str) -> list[str]:
    """A comma list (or a list) of language codes, each usable, none repeated."""
    if isinstance(text, str):
        items = [x.strip() for x in text.split(",")]
        if not text.strip():
            raise UserInputError(f"{flag} is empty")
        if any(not x for x in items):
            raise UserInputError(f"{flag}: empty language code in {text!r}")
    else:
        items = list(text)
    langs = [check_lang_code(x, flag) for x in items]
    if not langs:
        raise UserInputError(f"{flag} is empty")
    dupes = sorted({x for x in langs if langs.count(x) > 1})
    if dupes:
        raise UserInputError(f"{flag} repeats {', '.join(dupes)}")
    return langs


def read_dictionary_file(path: Path) -> tuple[list[str], list[str]]:
    """A fairseq dictionary file: its symbols in file order, and the rest of each line verbatim (the count and
    any `#fairseq:overwrite` flag), split as `Dictionary.add_from_file` splits them."""
    path = Path(path)
    symbols, rest = [], []
    for n, line in enumerate(read_utf8(path, "dictionary").splitlines(), 1):
        symbol, _, tail = line.rstrip().rpartition(" ")
        if not (symbol and tail.isdigit()):  # the common `<symbol> <count>` checked cheaply, the rest here
            symbol, tail = _unusual_line(path, n, line, symbol, tail)
        symbols.append(symbol)
        rest.append(tail)
    if len(set(symbols)) < len(symbols):
        seen: set[str] = set()
        for n, (symbol, tail) in enumerate(zip(symbols, rest), 1):
            if symbol in seen and not tail.endswith(OVERWRITE):
                raise UserInputError(f"{path}:{n}: duplicate symbol {symbol!r} (fairseq refuses it too)")
            seen.add(symbol)
    return symbols, rest


def _unusual_line(path: Path, n: int, line: str, symbol: str, tail: str) -> tuple[str, str]:
    """A line with the overwrite flag or a negative count, else an error naming it."""
    if tail == OVERWRITE:
        symbol, _, count = symbol.rpartition(" ")
        tail = f"{count} {OVERWRITE}"
    if not symbol or not tail.split(" ")[0].lstrip("-").isdigit():
        raise UserInputError(f"{path}:{n}: not a fairseq dictionary line ('<symbol> <count>'): {line!r}")
    return symbol, tail


@dataclass(frozen=True)
class SymbolLayout:
    """The rows of a model's embedding, in fairseq's order, and where each comes from. Immutable: the derived
    tables are computed once (a 256k-row model asks `is_piece` of every row, several times)."""

    dict_symbols: tuple[str, ...]  # the dictionary file's symbols in file order
    langs: tuple[str, ...]  # the model's --langs order
    style: str = "multilingual"
    data_source_tags: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dict_symbols", tuple(self.dict_symbols))
        object.__setattr__(self, "langs", tuple(self.langs))
        lang_token("xx", self.style)  # a known style

    def lang_tokens(self, langs: Sequence[str] | None = None) -> list[str]:
        return [lang_token(x, self.style) for x in (self.langs if langs is None else langs)]

    @cached_property
    def langs_in_file(self) -> bool:
        """The dictionary file holds the language tokens (M2M-100's `--fixed-dictionary` layout)."""
        held = set(self.dict_symbols)
        return bool(self.langs) and all(t in held for t in self.lang_tokens())

    @cached_property
    def runtime_symbols(self) -> tuple[str, ...]:
        """What fairseq's `augment_dictionary` (and the tags flag) add after the file's symbols."""
        held = set(self.dict_symbols)
        extra = [t for t in self.lang_tokens() if t not in held]
        if self.style == "mbart" and MASK not in held:
            extra.append(MASK)
        if self.data_source_tags:
            extra += [t for t in DATA_SOURCE_TAGS if t not in held]
        return tuple(extra)

    @cached_property
    def rows(self) -> tuple[str, ...]:
        return SPECIALS + self.dict_symbols + self.runtime_symbols

    def is_piece(self, symbol: str) -> bool:
        """A SentencePiece piece, not a language token, filler, tag, `<mask>` or special."""
        return not (symbol in self._non_pieces or FILLER.fullmatch(symbol))

    @cached_property
    def _non_pieces(self) -> frozenset[str]:
        return frozenset(self.lang_tokens()) | frozenset(DATA_SOURCE_TAGS) | {MASK} | frozenset(SPECIALS)

    @cached_property
    def _other_rows(self) -> frozenset[str]:
        """The rows that are not pieces (a few hundred of 256k), found by set intersection and one regex scan
        over the joined rows instead of `is_piece` per row."""
        return frozenset(self._non_pieces.intersection(self.rows)) | frozenset(_fillers(self.rows))

    @cached_property
    def pieces(self) -> tuple[str, ...]:
        others = self._other_rows
        return tuple(s for s in self.dict_symbols if s not in others)

    def piece_rows(self) -> list[int]:
        """Rows that are SentencePiece pieces."""
        return list(self._piece_rows)

    @cached_property
    def _piece_rows(self) -> tuple[int, ...]:
        others = self._other_rows
        return tuple(i for i, x in enumerate(self.rows) if x not in others)

    def langtok_rows(self) -> dict[str, int]:
        """Row of every language's token."""
        index = {s: i for i, s in enumerate(self.rows)}
        return {lang: index[lang_token(lang, self.style)] for lang in self.langs}

    def upgraded(self, new_pieces: Sequence[str], new_langs: Sequence[str]) -> "SymbolLayout":
        """New pieces appended to the dictionary file; fairseq appends the new language tokens at run time by
        --langs order. Where the file holds the language tokens (M2M style: pieces, tokens, fillers), new pieces go
        after the last piece and new tokens after the last token, so the pieces stay one block whose ids equal
        those of the pieces-only data dictionary used for binarizing."""
        held = set(self.dict_symbols)
        added = [p for p in new_pieces if p not in held]
        symbols = list(self.dict_symbols)
        if self.langs_in_file:
            old_tokens = set(self.lang_tokens())
            after_tokens = 1 + max(i for i, s in enumerate(symbols) if s in old_tokens)
            others = self._other_rows
            after_pieces = 1 + max((i for i, s in enumerate(symbols) if s not in others), default=-1)
            symbols[after_tokens:after_tokens] = [t for t in self.lang_tokens(new_langs) if t not in held]
            symbols[after_pieces:after_pieces] = added  # M2M files hold the pieces first: indices still hold
        else:
            symbols += added
        return SymbolLayout(tuple(symbols), self.langs + tuple(new_langs), self.style, self.data_source_tags)

    def describe(self) -> dict:
        """upgrade.json's `layout`."""
        return {"style": self.style, "langs_in_dictionary": self.langs_in_file,
                "data_source_tags": self.data_source_tags, "rows": len(self.rows),
                "dictionary_symbols": len(self.dict_symbols), "pieces": len(self.pieces),
                "fillers": len(_fillers(self.dict_symbols)), "langs": len(self.langs)}


def _fillers(symbols: Sequence[str]) -> list[str]:
    """The filler symbols among `symbols` (one line each: dictionary symbols hold no newline)."""
    return _FILLER_LINE.findall("\n".join(symbols))
