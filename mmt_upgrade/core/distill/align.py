"""Byte-offset alignment of the teacher's and the student's segmentations of the same target text.

Both segmentations are placed on the bytes they spell, `' ' + text` (SentencePiece's dummy prefix
is the leading space; `▁` is a space, `<0xNN>` one byte, `<unk>` the bytes SentencePiece's offsets
give it). A chunk is a byte span both close: chunk boundaries are the offsets where a piece ends on
both sides. Every piece spells at least one byte, so identical segmentations align piece by piece, and
byte-fallback bytes align byte by byte where both sides fall back. Every example is aligned once,
with numpy over its offsets, and cached by the caller: the training step never walks pieces.

Target layout (fairseq's with `--decoder-langtok`): `__tgt__ y1 .. yn </s>`. The language token is in
no chunk (-1); `</s>` is a chunk of its own on both sides; a chunk containing `<unk>` on either side
is kept in the layout but marked not ok (its likelihood is of an unknown piece, not of its bytes).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import sentencepiece as spm

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.spm import all_pieces
from mmt_upgrade.core.vocab import Tokenizer, lang_token

SPACE = 0x20


class AlignmentError(UserInputError):
    """The two segmentations do not spell the same text."""


@dataclass(frozen=True)
class Segmentation:
    """One segmentation of a text: model ids, piece strings, byte offsets `(N, 2)` in the text."""

    ids: np.ndarray
    pieces: list[str]
    offsets: np.ndarray


def segment(sp: spm.SentencePieceProcessor, text: str) -> Segmentation:
    """The deterministic segmentation (no sampling) with SentencePiece's byte offsets into `text`."""
    out = sp.encode(text, return_type="offset_mapping", return_bytes=True)
    offsets = np.asarray(out["offsets"], dtype=np.int64).reshape(-1, 2)
    return Segmentation(np.asarray(out["ids"], dtype=np.int64), [p.decode("utf-8", "replace") for p in out["pieces"]],
                        offsets)


def spelled_pieces(sp: spm.SentencePieceProcessor) -> list[bytes]:
    """The bytes every id of `sp` spells (`▁` is a space, `<0xNN>` one byte; `<unk>` and controls none)."""
    ids = list(range(sp.GetPieceSize()))
    out = []
    for piece, byte, control, unknown in zip(all_pieces(sp), sp.IsByte(ids), sp.IsControl(ids), sp.IsUnknown(ids)):
        if byte:
            out.append(bytes([int(piece[3:5], 16)]))
        elif control or unknown:
            out.append(b"")
        else:
            out.append(piece.replace("\u2581", " ").encode("utf-8"))
    return out


def spelled_ends(seg: Segmentation, table: Sequence[bytes], unk_id: int, text: str, who: str) -> np.ndarray:
    """`(N,)` where every piece ends in `' ' + text`. Raises unless the pieces spell the text itself
    (`<unk>` standing for the bytes its offsets cover; the dummy-prefix space optional)."""
    raw = text.encode("utf-8")
    ids = seg.ids.tolist()
    unk = seg.ids == unk_id
    parts = [raw[b:e] if u else table[i] for i, u, (b, e) in zip(ids, unk.tolist(), seg.offsets.tolist())]
    spelled = b"".join(parts)
    if spelled == b" " + raw:
        shift = 0
    elif spelled == raw:
        shift = 1
    else:
        raise AlignmentError(f"{who}'s segmentation of {text!r} spells {spelled.decode('utf-8', 'replace')!r}: the "
                             f"teacher and the student do not read the same text (normalization differs?)")
    return shift + np.cumsum([len(p) for p in parts], dtype=np.int64)


def chunk_ids(a_ends: np.ndarray, b_ends: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunk index of every piece of two segmentations (their end offsets `(N,)`, `(M,)`) of one text of
    `length` bytes, and the chunk end offsets `(C,)`. Raises when they do not both cover the text."""
    for name, e in (("teacher", a_ends), ("student", b_ends)):
        if len(e) and e[-1] != length:
            raise AlignmentError(f"the {name}'s pieces end at byte {e[-1]}, the text has {length} bytes")
    bounds = np.intersect1d(a_ends, b_ends)
    return np.searchsorted(bounds, a_ends), np.searchsorted(bounds, b_ends), bounds


def overlap_ranges(a_ends: np.ndarray, b_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every piece of `b`, the range `[lo, hi)` of pieces of `a` whose bytes overlap its bytes."""
    a_begin = np.concatenate([[0], a_ends[:-1]])
    b_begin = np.concatenate([[0], b_ends[:-1]])
    return np.searchsorted(a_ends, b_begin, side="right"), np.searchsorted(a_begin, b_ends, side="left")


@dataclass(frozen=True)
class TargetAlignment:
    """One example's alignment in fairseq target coordinates (langtok, pieces, `</s>`).

    Student arrays have length n_s + 2, teacher arrays n_t + 2; chunk arrays have length C
    (text chunks, then `</s>`).
    """

    s_chunk: np.ndarray  # (n_s+2,) chunk of every student target position, -1 for the language token
    t_chunk: np.ndarray  # (n_t+2,)
    chunk_ok: np.ndarray  # (C,) no <unk> on either side
    word_end: np.ndarray  # (C,) a word (or the sentence) ends with the chunk: the next piece is in W
    same_piece: np.ndarray  # (C,) one piece on each side, the same string
    one_to_one: np.ndarray  # (C,) one piece on each side
    s_lo: np.ndarray  # (n_s+2,) teacher positions overlapping each student position: [s_lo, s_hi)
    s_hi: np.ndarray

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_ok)


def align_target(text: str, t_ends: np.ndarray, s_ends: np.ndarray, t_pieces: Sequence[str], s_pieces: Sequence[str],
                 t_unk: np.ndarray, s_unk: np.ndarray) -> TargetAlignment:
    """Chunks of one target text from where the teacher's and the student's pieces end in `' ' + text`
    (`spelled_ends`); `t_unk`, `s_unk`: which pieces are `<unk>`."""
    spelled = b" " + text.encode("utf-8")
    length = len(spelled)
    t_c, s_c, bounds = chunk_ids(t_ends, s_ends, length)
    n_text = len(bounds)
    t_count = np.bincount(t_c, minlength=n_text)
    s_count = np.bincount(s_c, minlength=n_text)
    bad = np.zeros(n_text, dtype=bool)
    bad[t_c[t_unk]] = True
    bad[s_c[s_unk]] = True
    one = (t_count == 1) & (s_count == 1)
    same = one.copy()
    t_first, s_first = np.searchsorted(t_c, np.flatnonzero(one)), np.searchsorted(s_c, np.flatnonzero(one))
    same[one] = np.asarray(t_pieces, dtype=object)[t_first] == np.asarray(s_pieces, dtype=object)[s_first]
    word_end = np.ones(n_text + 1, dtype=bool)  # the last text chunk is followed by </s>, which is in W
    inside = bounds < length
    word_end[:-1][inside] = np.frombuffer(spelled, dtype=np.uint8)[bounds[inside]] == SPACE
    word_end[-1] = False  # nothing follows </s>
    s_lo, s_hi = overlap_ranges(t_ends, s_ends)
    n_t = len(t_c)
    return TargetAlignment(
        s_chunk=np.concatenate([[-1], s_c, [n_text]]),
        t_chunk=np.concatenate([[-1], t_c, [n_text]]),
        chunk_ok=np.append(~bad, True),
        word_end=word_end,
        same_piece=np.append(same, True),
        one_to_one=np.append(one, True),
        # positions shift by one for the language token; </s> overlaps </s>; the language token nothing
        s_lo=np.concatenate([[0], s_lo + 1, [n_t + 1]]),
        s_hi=np.concatenate([[0], s_hi + 1, [n_t + 2]]),
    )


def example_key(src_lang: str, tgt_lang: str, src: np.ndarray, tgt: np.ndarray) -> bytes:
    """What identifies a training example for the teacher: its direction and its student pieces
    (without language tokens and `</s>`), independent of batching, epochs and dataset indices."""
    h = hashlib.blake2b(f"{src_lang}-{tgt_lang}:{len(src)}:".encode(), digest_size=16)
    h.update(np.ascontiguousarray(src, dtype=np.int32).tobytes())
    h.update(np.ascontiguousarray(tgt, dtype=np.int32).tobytes())
    return h.digest()


@dataclass(frozen=True)
class TeacherExample:
    """A student example as the teacher reads it, with the target alignment."""

    src: np.ndarray  # teacher ids: __src__ x </s>
    tgt: np.ndarray  # teacher ids: __tgt__ y </s>
    align: TargetAlignment


class ExampleAligner:
    """Turns student examples (fairseq ids) into teacher examples: the student's pieces are decoded
    to text by the student's own SentencePiece model for that language, and the text re-segmented by
    the teacher's model, with the teacher's language tokens."""

    def __init__(self, student_symbols: Sequence[str], student_tokenizer: Tokenizer,
                 teacher_symbols: Sequence[str], teacher_spm: spm.SentencePieceProcessor,
                 teacher_style: str = "multilingual"):
        self.t_style = teacher_style  # the teacher's --lang-tok-style (`__xx__` or mbart's `[xx]`)
        self.s_symbols = np.asarray(student_symbols, dtype=object)
        self.s_tok = student_tokenizer
        self.s_unk = student_symbols.index("<unk>")
        self.t_sp = teacher_spm
        self.t_index = {s: i for i, s in enumerate(teacher_symbols)}
        t_unk = self.t_index["<unk>"]
        # teacher SentencePiece id -> teacher fairseq id, by piece string
        self.t_spm_to_fs = np.array([self.t_index.get(p, t_unk) for p in all_pieces(teacher_spm)], dtype=np.int64)
        self.t_spm_unk = teacher_spm.unk_id()
        self.t_spelled = spelled_pieces(teacher_spm)
        self._s_spelled: dict[str, list[bytes]] = {}

    def _student_spelled(self, lang: str) -> list[bytes]:
        name = self.s_tok.route[lang]
        if name not in self._s_spelled:
            self._s_spelled[name] = spelled_pieces(self.s_tok.processor(lang))
        return self._s_spelled[name]

    def convert(self, src_lang: str, tgt_lang: str, src: np.ndarray, tgt: np.ndarray) -> TeacherExample | None:
        """`src`, `tgt`: student ids without language tokens and `</s>`. None when the student side
        has `<unk>` (its text is lost, so there is nothing to give the teacher)."""
        if (src == self.s_unk).any() or (tgt == self.s_unk).any():
            return None
        src_text = self.s_tok.processor(src_lang).DecodePieces(list(self.s_symbols[src]))
        tgt_pieces = list(self.s_symbols[tgt])
        s_sp = self.s_tok.processor(tgt_lang)
        tgt_text = s_sp.DecodePieces(tgt_pieces)
        s_seg = segment(s_sp, tgt_text)
        if s_seg.pieces != tgt_pieces:
            raise AlignmentError(f"the student's {tgt_lang} data was not segmented by its SentencePiece model "
                                 f"{self.s_tok.model_path(tgt_lang)}: {tgt_pieces} re-segments as {s_seg.pieces}")
        t_seg = segment(self.t_sp, tgt_text)
        s_ends = spelled_ends(s_seg, self._student_spelled(tgt_lang), s_sp.unk_id(), tgt_text, "the student")
        t_ends = spelled_ends(t_seg, self.t_spelled, self.t_spm_unk, tgt_text, "the teacher")
        align = align_target(tgt_text, t_ends, s_ends, t_seg.pieces, s_seg.pieces, t_seg.ids == self.t_spm_unk,
                             s_seg.ids == s_sp.unk_id())
        eos = self.t_index["</s>"]
        t_src = self.t_spm_to_fs[np.asarray(self.t_sp.encode(src_text), dtype=np.int64)]
        return TeacherExample(
            src=np.concatenate([[self.t_index[lang_token(src_lang, self.t_style)]], t_src, [eos]]),
            tgt=np.concatenate([[self.t_index[lang_token(tgt_lang, self.t_style)]], self.t_spm_to_fs[t_seg.ids],
                                [eos]]),
            align=align)
