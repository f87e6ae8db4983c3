"""Byte-offset alignment of two segmentations: hand-built chunks, byte fallback, <unk>, and a property
test over random texts with two SentencePiece models trained on synthetic text."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmt_upgrade.core.distill.align import (
    AlignmentError,
    ExampleAligner,
    align_target,
    chunk_ids,
    segment,
    spelled_ends,
    spelled_pieces,
)
from mmt_upgrade.core.spm import load_spm, train_spm
from mmt_upgrade.core.vocab import Tokenizer, model_symbols, read_dictionary

from .conftest import OLD_LANGS

TEXT = "In the beginning God"
TEACHER = ["▁In", "▁the", "▁be", "g", "in", "n", "ing", "▁God"]
STUDENT = ["▁In", "▁the", "▁begin", "ning", "▁God"]


def _ends(pieces: list[str]) -> np.ndarray:
    """Where hand-written pieces end in the spelled text (`<0xNN>` is one byte)."""
    return np.cumsum([1 if p.startswith("<0x") else len(p.replace("▁", " ").encode()) for p in pieces])


def _align(text: str, teacher: list[str], student: list[str]):
    return align_target(text, _ends(teacher), _ends(student), teacher, student,
                        np.zeros(len(teacher), bool), np.zeros(len(student), bool))


def test_hand_built_two_tokenizer_example_has_the_known_chunks():
    a = _align(TEXT, TEACHER, STUDENT)
    # positions: language token, pieces, </s>; chunks: In | the | be+g+in = begin | n+ing = ning | God | </s>
    assert a.t_chunk.tolist() == [-1, 0, 1, 2, 2, 2, 3, 3, 4, 5]
    assert a.s_chunk.tolist() == [-1, 0, 1, 2, 3, 4, 5]
    assert a.one_to_one.tolist() == [True, True, False, False, True, True]
    assert a.same_piece.tolist() == [True, True, False, False, True, True]
    assert a.word_end.tolist() == [True, True, False, True, True, False]  # "begin|ning" ends mid-word
    assert a.chunk_ok.all()
    # teacher positions overlapping each student position (VocAgnoLM's I(j)), in target coordinates
    assert list(zip(a.s_lo.tolist(), a.s_hi.tolist())) == [(0, 0), (1, 2), (2, 3), (3, 6), (6, 8), (8, 9), (9, 10)]


def test_segmentations_that_do_not_cover_the_same_text_are_refused():
    with pytest.raises(AlignmentError, match="student's pieces end at byte 7, the text has 21 bytes"):
        chunk_ids(_ends(TEACHER), _ends(["▁In", "▁the"]), len(TEXT) + 1)


@pytest.fixture(scope="module")
def spms(old_spm, sp, texts, tmp_path_factory) -> dict[str, object]:
    """The old Latin-script model (800 pieces), a smaller one (600) and one without byte fallback."""
    out = tmp_path_factory.mktemp("spms")
    train_spm({x: texts[x] for x in OLD_LANGS}, out / "small.model", 600, 300, seed=2)
    train_spm({"en": texts["en"]}, out / "nobyte.model", 300, 300, seed=3, byte_fallback=False)
    return {"tiny": sp, "small": load_spm(out / "small.model"), "nobyte": load_spm(out / "nobyte.model")}


def test_byte_fallback_bytes_join_the_chunk_of_their_character(spms):
    sp = spms["tiny"]
    text = "sé 中 be"  # 中 is not in the model: three byte-fallback pieces, the first two zero-width
    t = segment(sp, text)
    assert t.pieces[-4:-1] == ["<0xE4>", "<0xB8>", "<0xAD>"]
    t_ends = spelled_ends(t, spelled_pieces(sp), sp.unk_id(), text, "the teacher")
    student = ["▁s", "é", "▁中", "▁be"]
    a = align_target(text, t_ends, _ends(student), t.pieces, student, t.ids == sp.unk_id(), np.zeros(4, bool))
    chunk_of_zhong = a.s_chunk[3]
    teacher_pieces = [p for p, c in zip(t.pieces, a.t_chunk[1:-1]) if c == chunk_of_zhong]
    assert teacher_pieces == ["▁", "<0xE4>", "<0xB8>", "<0xAD>"]
    assert not a.same_piece[chunk_of_zhong] and a.chunk_ok.all()
    # both sides falling back to bytes for the same character align byte by byte
    same = _align("中", ["▁", "<0xE4>", "<0xB8>", "<0xAD>"], ["▁", "<0xE4>", "<0xB8>", "<0xAD>"])
    assert same.s_chunk.tolist() == same.t_chunk.tolist() == [-1, 0, 1, 2, 3, 4] and same.same_piece.all()


def test_unk_chunks_are_kept_but_marked_and_spell_their_bytes(spms):
    sp = spms["nobyte"]
    text = "Ye licu 中 nure"
    t = segment(sp, text)
    assert sp.unk_id() in t.ids.tolist()
    t_ends = spelled_ends(t, spelled_pieces(sp), sp.unk_id(), text, "the teacher")  # <unk> stands for its bytes
    st_sp = spms["tiny"]
    s = segment(st_sp, text)
    s_ends = spelled_ends(s, spelled_pieces(st_sp), st_sp.unk_id(), text, "the student")
    a = align_target(text, t_ends, s_ends, t.pieces, s.pieces, t.ids == sp.unk_id(), s.ids == st_sp.unk_id())
    unk_chunk = a.t_chunk[1:-1][t.ids == sp.unk_id()]
    assert not a.chunk_ok[unk_chunk].any() and a.chunk_ok.sum() == a.n_chunks - len(set(unk_chunk.tolist()))


def test_a_teacher_that_reads_another_text_fails_loudly(spms):
    sp = spms["tiny"]
    seg = segment(sp, "Ye licu namubare")
    with pytest.raises(AlignmentError, match="do not read the same text"):
        spelled_ends(seg, spelled_pieces(sp), sp.unk_id(), "Ye licu namubar", "the teacher")


ALPHABET = st.sampled_from(list("abcdefghijklmnopqrstuvwxyzéèçñüößАБВабвгджзийклмнопрстуфхцчшщыэюяمرحبا中文字") + [" "] * 8)


@settings(max_examples=150, deadline=None)
@given(raw=st.text(ALPHABET, min_size=1, max_size=60))
def test_property_aligned_chunks_spell_the_same_bytes_on_both_sides(spms, raw):
    student, teacher = spms["tiny"], spms["small"]
    text = student.decode(student.encode(raw))  # what the criterion reads: the student's decoded pieces
    s, t = segment(student, text), segment(teacher, text)
    s_tab, t_tab = spelled_pieces(student), spelled_pieces(teacher)
    s_ends = spelled_ends(s, s_tab, student.unk_id(), text, "student")
    t_ends = spelled_ends(t, t_tab, teacher.unk_id(), text, "teacher")
    a = align_target(text, t_ends, s_ends, t.pieces, s.pieces, t.ids == teacher.unk_id(), s.ids == student.unk_id())
    n_text = a.n_chunks - 1
    for c in range(n_text):
        s_bytes = b"".join(s_tab[i] for i in s.ids[a.s_chunk[1:-1] == c])
        t_bytes = b"".join(t_tab[i] for i in t.ids[a.t_chunk[1:-1] == c])
        assert s_bytes and t_bytes and s_bytes == t_bytes, (text, c)
    assert np.all(np.diff(a.s_chunk[1:-1]) >= 0) and np.all(np.diff(a.t_chunk[1:-1]) >= 0)


def test_teacher_equal_to_student_aligns_as_the_identity(old_spm, spms, texts):
    langs = list(OLD_LANGS)
    symbols = model_symbols(read_dictionary(old_spm.parent / "dict.txt"), langs)
    tok = Tokenizer.single(old_spm, langs)
    aligner = ExampleAligner(symbols, tok, symbols, spms["tiny"])
    index = {s: i for i, s in enumerate(symbols)}
    for src_line, line in zip(texts["es"][:50], texts["en"][:50]):
        src = np.array([index[p] for p in tok.encode("es", [src_line])[0]])
        ids = np.array([index[p] for p in tok.encode("en", [line])[0]])
        ex = aligner.convert("es", "en", src, ids)
        n = len(ids)
        assert ex.tgt[1:-1].tolist() == ids.tolist() and ex.tgt[0] == index["__en__"]
        assert ex.src.tolist() == [index["__es__"], *src.tolist(), index["</s>"]]
        assert ex.align.s_chunk.tolist() == ex.align.t_chunk.tolist() == [-1, *range(n + 1)]
        assert ex.align.same_piece.all() and ex.align.chunk_ok.all()
    # a student <unk> loses the text: that example is left out (the criterion counts it), not guessed at
    assert aligner.convert("es", "en", src, np.concatenate([ids[:2], [index["<unk>"]], ids[2:]])) is None
