"""SymbolLayout against fairseq's rules, on hand-written dictionaries of every layout people hold."""
from pathlib import Path

import pytest

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.symbols import (
    DATA_SOURCE_TAGS,
    SymbolLayout,
    check_lang_code,
    lang_token,
    parse_lang_codes,
    read_dictionary_file,
)

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def write_dict(path: Path, symbols, counts=None) -> Path:
    counts = counts or [str(100 - i) for i in range(len(symbols))]
    path.write_text("".join(f"{s} {c}\n" for s, c in zip(symbols, counts)), encoding="utf-8")
    return path


def test_lang_token_styles():
    assert lang_token("eng_Latn") == "__eng_Latn__"
    assert lang_token("en_XX", "mbart") == "[en_XX]"
    with pytest.raises(UserInputError, match="'bpe'"):
        lang_token("en", "bpe")


@pytest.mark.parametrize("code", ["en", "xx", "eng_Latn", "tyv_Cyrl", "zh_Hant"])
def test_any_code_fairseq_can_use(code):
    assert check_lang_code(code, "--new-langs") == code


@pytest.mark.parametrize("code, culprit", [("", "empty"), ("en g", "' '"), ("en,fr", "','"), ("a-b", "'-'"),
                                           ("x\t", "'\\\\t'")])
def test_unusable_codes_named(code, culprit):
    with pytest.raises(UserInputError, match=f"--new-langs.*{culprit}"):
        check_lang_code(code, "--new-langs")


def test_parse_lang_codes():
    assert parse_lang_codes("eng_Latn, tyv_Cyrl", "--langs") == ["eng_Latn", "tyv_Cyrl"]
    assert parse_lang_codes(["en", "xx"], "--langs") == ["en", "xx"]
    with pytest.raises(UserInputError, match="--langs repeats en"):
        parse_lang_codes("en,fr,en", "--langs")
    with pytest.raises(UserInputError, match="--langs: empty language code"):
        parse_lang_codes("en,,fr", "--langs")
    with pytest.raises(UserInputError, match="--langs is empty"):
        parse_lang_codes(" ", "--langs")


def test_read_dictionary_file(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("▁the 120\n, 99\n<mask> 1 #fairseq:overwrite\n", encoding="utf-8")
    assert read_dictionary_file(path) == (["▁the", ",", "<mask>"], ["120", "99", "1 #fairseq:overwrite"])
    path.write_text("▁the 120\nnocount\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"d\.txt:2"):
        read_dictionary_file(path)
    path.write_text("a 1\na 2\n", encoding="utf-8")
    with pytest.raises(UserInputError, match="duplicate symbol 'a'"):
        read_dictionary_file(path)


def test_our_layout(tmp_path):
    symbols, _ = read_dictionary_file(write_dict(tmp_path / "dict.txt", ["▁a", "b", "▁c"]))
    layout = SymbolLayout(symbols, ("en", "es"))
    assert layout.rows == tuple(SPECIALS + ["▁a", "b", "▁c", "__en__", "__es__"])
    assert layout.pieces == ("▁a", "b", "▁c") and not layout.langs_in_file
    up = layout.upgraded(["x", "b", "y"], ["it"])
    assert up.dict_symbols == ("▁a", "b", "▁c", "x", "y")
    assert up.rows == tuple(SPECIALS + ["▁a", "b", "▁c", "x", "y", "__en__", "__es__", "__it__"])
    assert up.langtok_rows() == {"en": 9, "es": 10, "it": 11}


def test_m2m_layout(tmp_path):
    file = ["▁de", "s", "▁la", "__en__", "__fr__", "__de__"] + [f"madeupword{i:04d}" for i in range(8)]
    symbols, _ = read_dictionary_file(write_dict(tmp_path / "model_dict.txt", file))
    layout = SymbolLayout(symbols, ("en", "fr", "de"))
    # augment_dictionary finds every token in the file: nothing is appended at run time
    assert layout.rows == tuple(SPECIALS + file) and layout.langs_in_file
    assert layout.pieces == ("▁de", "s", "▁la")
    assert layout.langtok_rows() == {"en": 7, "fr": 8, "de": 9}
    up = layout.upgraded(["▁new", "s"], ["tyv"])
    # the pieces stay one block (the data dictionary's ids), the new token joins the old ones, fillers stay last
    grown = file[:3] + ["▁new"] + file[3:6] + ["__tyv__"] + file[6:]
    assert up.dict_symbols == tuple(grown)
    assert up.rows == tuple(SPECIALS + grown)
    assert up.pieces == ("▁de", "s", "▁la", "▁new")
    assert up.describe()["fillers"] == 8


def test_nllb_layout():
    layout = SymbolLayout(("▁a", "▁b"), ("eng_Latn", "fra_Latn"), data_source_tags=True)
    assert layout.rows == tuple(SPECIALS + ["▁a", "▁b", "__eng_Latn__", "__fra_Latn__", *DATA_SOURCE_TAGS])
    up = layout.upgraded(["▁c"], ["tyv_Cyrl"])
    assert up.dict_symbols == ("▁a", "▁b", "▁c")
    assert up.rows == tuple(SPECIALS + ["▁a", "▁b", "▁c", "__eng_Latn__", "__fra_Latn__", "__tyv_Cyrl__",
                                        *DATA_SOURCE_TAGS])
    assert up.pieces == ("▁a", "▁b", "▁c")


def test_mbart_layout():
    layout = SymbolLayout(("▁a",), ("en_XX", "ro_RO"), style="mbart", data_source_tags=True)
    assert layout.rows == tuple(SPECIALS + ["▁a", "[en_XX]", "[ro_RO]", "<mask>", *DATA_SOURCE_TAGS])
    assert layout.upgraded([], ["tyv_Cyrl"]).rows == tuple(
        SPECIALS + ["▁a", "[en_XX]", "[ro_RO]", "[tyv_Cyrl]", "<mask>", *DATA_SOURCE_TAGS])


def test_partial_tokens_in_file_keep_their_rows():
    """add_symbol keeps a token the file holds at its row and appends only the missing ones."""
    layout = SymbolLayout(("▁a", "__fr__"), ("en", "fr"))
    assert layout.rows == tuple(SPECIALS + ["▁a", "__fr__", "__en__"])
    assert layout.pieces == ("▁a",)


def test_piece_rows_skip_specials_tokens_fillers_and_tags():
    layout = SymbolLayout(("▁a", "__en__", "madeupword0000", "b"), ("en", "fr"), data_source_tags=True)
    assert [layout.rows[i] for i in layout.piece_rows()] == ["▁a", "b"]


def test_pieces_agree_with_is_piece_on_near_fillers():
    """The cached tables find fillers by one regex scan over the joined rows: symbols that only resemble a filler
    (five digits, a prefix, a suffix) stay pieces, as `is_piece` says."""
    file = ("madeupword00000", "xmadeupword0001", "madeupword0002x", "madeupword0003", "<mask>", "▁b")
    layout = SymbolLayout(file, ("en",), style="mbart", data_source_tags=True)
    expected = tuple(s for s in file if layout.is_piece(s))
    assert expected == ("madeupword00000", "xmadeupword0001", "madeupword0002x", "▁b")
    assert layout.pieces == expected
    assert tuple(layout.rows[i] for i in layout.piece_rows()) == expected
    assert layout.describe()["fillers"] == 1
