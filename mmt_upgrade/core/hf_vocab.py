"""A fairseq model's rows <-> a Hugging Face `NllbTokenizer` (slow and fast), exactly.

`NllbTokenizer` maps a piece to its SentencePiece id + 1 (ids 0-3 are `<s> <pad> </s> <unk>`) and language codes
to added special tokens at any id. fairseq dictionaries are in any order (M2M-100's by frequency, ours after an
upgrade with language tokens between pieces), so the exported SentencePiece model is the model's own, its pieces
re-ordered so that piece id + 1 is the piece's fairseq row: `<unk> <s> </s>` first, then one piece per row from
row 4 on. Rows that are not pieces (language tokens, fillers, `<mask>`, tags) hold UNUSED pieces named by their
token: Viterbi never produces them, and their score sits far below every other so the fast tokenizer (whose
unigram model ignores piece types) never picks one either. Embedding rows are never permuted, so a round trip
HF -> fairseq -> HF gives identical tensors. Unigram segmentation depends on piece strings and scores, not ids:
the re-ordered model segments text as the original does.

Language tokens: NLLB's FLORES codes (`eng_Latn`) and mbart's (`en_XX`) are the tokens themselves, as in the
published tokenizers; a short code (`en`, `it`) would be matched inside ordinary text (Spanish "en"), so it keeps
fairseq's token `__en__`, which is also the code `src_lang=` / `tgt_lang=` take.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

from sentencepiece import sentencepiece_model_pb2 as pb

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.spm import SPECIALS
from mmt_upgrade.core.symbols import FILLER, MASK, check_lang_code

Piece = pb.ModelProto.SentencePiece
TEXT_SAFE_CODE = re.compile(r"[a-z]{2,3}_[A-Z][A-Za-z]{1,3}")  # eng_Latn, en_XX: never words of running text
UNUSED_BELOW = 1e6  # an UNUSED piece's score: this far below the lowest usable one
HF_SPECIALS = ("<unk>", "<s>", "</s>")  # the SentencePiece ids 0-2 NllbTokenizer expects


def hf_lang_tokens(langs: Sequence[str]) -> dict[str, str]:
    """Each language's token in the HF tokenizer (also what `src_lang=` takes): bare codes when every code is a
    FLORES/mbart code, else fairseq's `__xx__` for all (one convention per tokenizer)."""
    bare = all(TEXT_SAFE_CODE.fullmatch(x) for x in langs)
    return {x: x if bare else f"__{x}__" for x in langs}


def code_of_hf_token(token: str) -> str:
    """The language code of an HF language token (`eng_Latn`, `__en__`, M2M100Tokenizer's `__en__`)."""
    code = token[2:-2] if len(token) > 4 and token.startswith("__") and token.endswith("__") else token
    return check_lang_code(code, f"tokenizer language token {token!r}")


def _with_ids(proto: pb.ModelProto, unk: int, bos: int, eos: int, pad: int) -> pb.ModelProto:
    out = pb.ModelProto()
    out.CopyFrom(proto)
    del out.pieces[:]
    spec = out.trainer_spec
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = unk, bos, eos, pad
    spec.unk_piece, spec.bos_piece, spec.eos_piece, spec.pad_piece = "<unk>", "<s>", "</s>", "<pad>"
    return out


def _usable(proto: pb.ModelProto) -> dict[str, Piece]:
    return {p.piece: p for p in proto.pieces if p.type in (Piece.NORMAL, Piece.BYTE, Piece.USER_DEFINED, Piece.UNUSED)}


def _unused_score(proto: pb.ModelProto) -> float:
    scores = [p.score for p in proto.pieces if p.type == Piece.NORMAL]
    return (min(scores) if scores else 0.0) - UNUSED_BELOW


def hf_spm_proto(proto: pb.ModelProto, rows: Sequence[str], names: Mapping[int, str]) -> tuple[pb.ModelProto, list[str]]:
    """The SentencePiece model of the HF tokenizer for a model with fairseq `rows` (`names`: the HF token of a
    row whose fairseq symbol differs: language tokens). Returns it and the model's pieces that have no row
    (fairseq maps them to `<unk>`; the HF tokenizer segments around them)."""
    if tuple(rows[:4]) != SPECIALS:
        raise UserInputError(f"the model's first rows are {list(rows[:4])}, not fairseq's {list(SPECIALS)}")
    pieces = _usable(proto)
    low = _unused_score(proto)
    out = _with_ids(proto, 0, 1, 2, -1)
    out.pieces.add(piece="<unk>", type=Piece.UNKNOWN, score=0.0)
    out.pieces.add(piece="<s>", type=Piece.CONTROL, score=0.0)
    out.pieces.add(piece="</s>", type=Piece.CONTROL, score=0.0)
    seen = set(HF_SPECIALS)
    for row in range(4, len(rows)):
        name = names.get(row, rows[row])
        if name in seen:
            raise UserInputError(f"row {row}: token {name!r} is already a row of the HF vocabulary")
        seen.add(name)
        source = pieces.get(rows[row]) if row not in names else None
        if source is not None and source.type != Piece.UNUSED:
            out.pieces.add().CopyFrom(source)
        else:
            out.pieces.add(piece=name, type=Piece.UNUSED, score=low)
    out.trainer_spec.vocab_size = len(out.pieces)
    return out, [p for p in pieces if p not in seen and pieces[p].type != Piece.UNUSED]


def fairseq_rows(tokens: Mapping[int, str], langs: Mapping[str, int], vocab_size: int,
                 mask: int | None) -> list[str]:
    """fairseq's symbol for each of an HF model's `vocab_size` rows: the tokenizer's token (`tokens`: id ->
    token), `__code__` at each language's row, `<mask>`, and a `madeupwordNNNN` filler (fairseq's padding
    symbol) for a row the tokenizer never produces."""
    rows: list[str | None] = [tokens.get(i) for i in range(vocab_size)]
    if tuple(rows[:4]) != SPECIALS:
        raise UserInputError(f"the tokenizer's ids 0-3 are {rows[:4]}, not fairseq's {' '.join(SPECIALS)}")
    for code, row in langs.items():
        rows[row] = f"__{code}__"
    if mask is not None:
        rows[mask] = MASK
    seen: set[str] = set()
    for i, symbol in enumerate(rows):
        if symbol is None or (i >= 4 and (symbol in SPECIALS or symbol in seen)):
            rows[i] = None
        else:
            seen.add(symbol)
    fillers = (f"madeupword{n:04d}" for n in range(10 ** 4) if f"madeupword{n:04d}" not in seen)
    return [s if s is not None else next(fillers) for s in rows]


def fairseq_spm_proto(proto: pb.ModelProto, rows: Sequence[str], non_piece_names: set[str],
                      is_piece) -> pb.ModelProto:
    """The imported model's `spm.model` in this toolkit's convention (data.md §7): ids 0-3 `<s> <pad> </s>
    <unk>`, then the pieces in row order (a piece's SentencePiece id is its fairseq row while rows hold pieces
    only), then pieces without a row. UNUSED pieces named like a non-piece row (what `export` adds) are left out."""
    pieces = _usable(proto)
    out = _with_ids(proto, 3, 0, 2, 1)
    for name in ("<s>", "<pad>", "</s>"):
        out.pieces.add(piece=name, type=Piece.CONTROL, score=0.0)
    out.pieces.add(piece="<unk>", type=Piece.UNKNOWN, score=0.0)
    placed = set()
    for symbol in rows[4:]:
        if not is_piece(symbol):
            continue
        if symbol not in pieces:
            raise UserInputError(f"token {symbol!r} of the HF vocabulary is not a piece of its SentencePiece model")
        out.pieces.add().CopyFrom(pieces[symbol])
        placed.add(symbol)
    for name, piece in pieces.items():
        if name not in placed and not (piece.type == Piece.UNUSED and (name in non_piece_names or FILLER.fullmatch(name))):
            out.pieces.add().CopyFrom(piece)
    out.trainer_spec.vocab_size = len(out.pieces)
    return out
