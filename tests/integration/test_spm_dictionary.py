"""SentencePiece model and fairseq dictionary: ids agree, and text survives the round trip."""
from __future__ import annotations

import pytest
from fairseq.data import Dictionary

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.spm import SPECIALS, load_spm
from mmt_upgrade.fairseq_io.binarize import check_data_bin


def test_piece_ids_equal_dictionary_ids(tiny_data):
    sp = load_spm(tiny_data.spm_model)
    d = Dictionary.load(str(tiny_data.dictionary))
    assert [d[i] for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert tuple(sp.IdToPiece(i) for i in range(4)) == SPECIALS
    assert len(d) == sp.GetPieceSize()
    assert all(d.index(sp.IdToPiece(i)) == i for i in range(4, sp.GetPieceSize()))


def test_text_round_trip_through_pieces_and_dictionary(tiny_data):
    sp = load_spm(tiny_data.spm_model)
    d = Dictionary.load(str(tiny_data.dictionary))
    for lang in ("en", "es", "fr"):
        pair = ("en", lang if lang != "en" else "es")
        lines = tiny_data.raw_file("test", *pair, lang).read_text().splitlines()
        for line in lines:
            ids = d.encode_line(" ".join(sp.Encode(line, out_type=str)), add_if_not_exist=False, append_eos=False)
            assert d.unk() not in ids.tolist()
            assert sp.Decode([d[i] for i in ids.tolist()]) == line


def test_unseen_script_falls_back_to_bytes_not_unk(tiny_data):
    sp = load_spm(tiny_data.spm_model)
    text = "في البدء خلق الله"  # Arabic: not in the es/fr/en training text
    ids = sp.Encode(text)
    assert 3 not in ids and sp.Decode(ids) == text


def test_data_bin_without_dictionary_is_named(tiny_data, tmp_path):
    check_data_bin(tiny_data.bin_dir, tiny_data.langs)
    with pytest.raises(UserInputError, match=r"no dictionary for 'fr' \(dict.fr.txt missing\)"):
        partial = tmp_path / "bin"
        partial.mkdir()
        for lang in ("en", "es"):
            (partial / f"dict.{lang}.txt").write_text("a 1\n")
        check_data_bin(partial, ["en", "es", "fr"])


def test_corrupt_spm_model_is_named(tmp_path):
    bad = tmp_path / "spm.model"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserInputError, match="spm.model is not a SentencePiece model"):
        load_spm(bad)


def test_manifest_records_counts_and_hashes(tiny_data):
    m = tiny_data.manifest
    assert m["model_langs"] == ["en", "es", "fr"]
    assert m["pairs"]["en-es"] == {"train": 300, "valid": 40, "test": 40}
    assert m["directions"] == ["es-en", "en-es", "fr-en", "en-fr"]
    assert len(m["hashes"]["spm.model"]) == 64 and "raw/test.en-es.es" in m["hashes"]
