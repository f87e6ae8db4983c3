"""The real tiny data: Bible text survives the round trip through pieces and dictionary; the manifest
records counts and hashes (the same checks on synthetic text: tests/unit/test_spm_dictionary.py)."""
from __future__ import annotations

from fairseq.data import Dictionary

from mmt_upgrade.core.spm import load_spm


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


def test_manifest_records_counts_and_hashes(tiny_data):
    m = tiny_data.manifest
    assert m["model_langs"] == ["en", "es", "fr"]
    assert m["pairs"]["en-es"] == {"train": 300, "valid": 40, "test": 40}
    assert m["directions"] == ["es-en", "en-es", "fr-en", "en-fr"]
    assert len(m["hashes"]["spm.model"]) == 64 and "raw/test.en-es.es" in m["hashes"]
