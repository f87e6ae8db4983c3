"""SentencePiece model and fairseq dictionary: ids agree, and text survives the round trip."""
from __future__ import annotations

import pytest
from fairseq.data import Dictionary

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.spm import SPECIALS, load_spm
from mmt_upgrade.core.vocab import check_spm_matches_dictionary, read_dictionary
from mmt_upgrade.fairseq_io.binarize import check_data_bin

from .conftest import OLD_LANGS, sentences


def test_piece_ids_equal_dictionary_ids(old_spm, sp):
    d = Dictionary.load(str(old_spm.parent / "dict.txt"))
    assert [d[i] for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert tuple(sp.IdToPiece(i) for i in range(4)) == SPECIALS
    assert len(d) == sp.GetPieceSize()
    assert all(d.index(sp.IdToPiece(i)) == i for i in range(4, sp.GetPieceSize()))


def test_text_round_trip_through_pieces_and_dictionary(old_spm, sp):
    d = Dictionary.load(str(old_spm.parent / "dict.txt"))
    for lang in OLD_LANGS:
        for line in sentences(lang, 450)[400:]:  # held out: not in the training text
            ids = d.encode_line(" ".join(sp.Encode(line, out_type=str)), add_if_not_exist=False, append_eos=False)
            assert d.unk() not in ids.tolist()
            assert sp.Decode([d[i] for i in ids.tolist()]) == line


@pytest.mark.parametrize("lang", ["ru", "ar"])
def test_unseen_script_falls_back_to_bytes_not_unk(sp, texts, lang):
    text = texts[lang][0]  # Cyrillic / Arabic: not in the Latin training text
    pieces = sp.Encode(text, out_type=str)
    assert any(p.startswith("<0x") for p in pieces)
    ids = sp.Encode(text)
    assert 3 not in ids and sp.Decode(ids) == text


def test_a_dictionary_of_another_model_is_named(old_spm, sp, tmp_path):
    pieces = read_dictionary(old_spm.parent / "dict.txt")
    check_spm_matches_dictionary(sp, old_spm, pieces, old_spm.parent / "dict.txt")
    swapped = pieces[:10] + [pieces[11], pieces[10]] + pieces[12:]
    with pytest.raises(UserInputError, match="is not dictionary .*'s: id 14"):
        check_spm_matches_dictionary(sp, old_spm, swapped, tmp_path / "dict.txt")
    with pytest.raises(UserInputError, match="they do not belong together"):
        check_spm_matches_dictionary(sp, old_spm, pieces[:-1], tmp_path / "dict.txt")


def test_data_bin_without_dictionary_is_named(tmp_path):
    partial = tmp_path / "bin"
    partial.mkdir()
    for lang in ("en", "es"):
        (partial / f"dict.{lang}.txt").write_text("a 1\n")
    check_data_bin(partial, ["en", "es"])
    with pytest.raises(UserInputError, match=r"no dictionary for 'fr' \(dict.fr.txt missing\)"):
        check_data_bin(partial, ["en", "es", "fr"])


def test_corrupt_spm_model_is_named(tmp_path):
    bad = tmp_path / "spm.model"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserInputError, match="spm.model is not a SentencePiece model"):
        load_spm(bad)
