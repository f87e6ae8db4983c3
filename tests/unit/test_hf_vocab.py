"""A fairseq model's rows <-> the NllbTokenizer's SentencePiece model (core/hf_vocab.py), checked with
SentencePiece itself: the re-ordered model segments as the original, each piece at id row - 1, non-pieces never
produced; and the way back to this toolkit's convention."""
from __future__ import annotations

import random

import pytest
from sentencepiece import sentencepiece_model_pb2 as pb

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.hf_vocab import code_of_hf_token, fairseq_rows, fairseq_spm_proto, hf_lang_tokens, hf_spm_proto
from mmt_upgrade.core.spm import SPECIALS
from mmt_upgrade.core.spm_merge import processor, read_proto
from mmt_upgrade.core.symbols import SymbolLayout

LANGS = ("en", "es", "fr")


def _rows(sp) -> list[str]:
    """An M2M-style row list: the pieces in another order than SentencePiece's, language tokens, fillers."""
    pieces = [sp.IdToPiece(i) for i in range(4, sp.GetPieceSize())]
    random.Random(0).shuffle(pieces)
    return [*SPECIALS, *pieces, *(f"__{x}__" for x in LANGS), "madeupword0000", "<mask>"]


def test_language_tokens():
    assert hf_lang_tokens(["eng_Latn", "tyv_Cyrl"]) == {"eng_Latn": "eng_Latn", "tyv_Cyrl": "tyv_Cyrl"}
    assert hf_lang_tokens(["en_XX", "it_IT"])["it_IT"] == "it_IT"
    assert hf_lang_tokens(["eng_Latn", "it"]) == {"eng_Latn": "__eng_Latn__", "it": "__it__"}  # one convention
    assert [code_of_hf_token(x) for x in ("eng_Latn", "__en__", "__eng_Latn__")] == ["eng_Latn", "en", "eng_Latn"]
    with pytest.raises(UserInputError):
        code_of_hf_token("en-US")


def test_hf_model_puts_every_piece_at_its_row_and_segments_as_the_original(sp, old_spm, texts):
    rows = _rows(sp)
    langs = {x: rows.index(f"__{x}__") for x in LANGS}
    proto, rowless = hf_spm_proto(read_proto(old_spm), rows, {r: f"__{x}__" for x, r in langs.items()})
    hf = processor(proto)
    assert rowless == []
    assert [hf.IdToPiece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"] and hf.unk_id() == 0
    assert [hf.IdToPiece(r - 1) for r in range(4, len(rows))] == rows[4:]  # NllbTokenizer: id = piece id + 1
    lines = [x for lang in ("en", "es", "ru", "ar") for x in texts[lang][:50]]  # ru, ar: byte fallback
    assert [hf.Encode(x, out_type=str) for x in lines] == [sp.Encode(x, out_type=str) for x in lines]
    used = {i for x in lines for i in hf.Encode(x)}
    assert not used & {r - 1 for r in (*langs.values(), rows.index("<mask>"), rows.index("madeupword0000"))}
    assert all(hf.IsUnused(r - 1) for r in langs.values())
    low = min(p.score for p in proto.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL)
    assert all(p.score < low - 1e5 for p in proto.pieces if p.type == pb.ModelProto.SentencePiece.UNUSED)


def test_pieces_without_a_row_and_bad_rows(sp, old_spm):
    rows = _rows(sp)
    dropped = rows.pop(10)
    _, rowless = hf_spm_proto(read_proto(old_spm), rows, {})
    assert rowless == [dropped]
    with pytest.raises(UserInputError, match="first rows"):
        hf_spm_proto(read_proto(old_spm), ["<pad>", *rows[1:]], {})
    with pytest.raises(UserInputError, match="already a row"):
        hf_spm_proto(read_proto(old_spm), rows, {len(rows) - 1: rows[5]})


def test_rows_of_an_hf_tokenizer_and_the_way_back(sp, old_spm, texts):
    rows = _rows(sp)
    langs = {x: rows.index(f"__{x}__") for x in LANGS}
    hf_proto, _ = hf_spm_proto(read_proto(old_spm), rows, {r: f"__{x}__" for x, r in langs.items()})
    tokens = {i: t for i, t in enumerate(rows) if not t.startswith("madeupword")}  # what get_vocab gives
    tokens[len(rows)] = "<unk>"  # a row the tokenizer maps to <unk> (M2M100Tokenizer's fillers)
    got = fairseq_rows(tokens, langs, len(rows) + 2, rows.index("<mask>"))
    assert got == rows + ["madeupword0001", "madeupword0002"]  # rows without a token: fillers, in row order
    with pytest.raises(UserInputError, match="ids 0-3"):
        fairseq_rows({0: "<s>", 1: "<unk>"}, {}, 4, None)
    layout = SymbolLayout(tuple(got[4:]), LANGS)
    names = {f"__{x}__" for x in LANGS} | {"<mask>"}
    back = processor(fairseq_spm_proto(hf_proto, got, names, layout.is_piece))
    assert [back.IdToPiece(i) for i in range(4)] == list(SPECIALS) and back.unk_id() == 3
    pieces = [s for s in got[4:] if layout.is_piece(s)]
    assert [back.IdToPiece(i) for i in range(4, 4 + len(pieces))] == pieces
    assert back.GetPieceSize() == 4 + len(pieces)  # the export's language/filler/mask pieces left out
    lines = [x for lang in ("fr", "ru") for x in texts[lang][:50]]
    assert [back.Encode(x, out_type=str) for x in lines] == [sp.Encode(x, out_type=str) for x in lines]
