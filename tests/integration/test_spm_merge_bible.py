"""The merged SentencePiece model of a real `mmt-upgrade upgrade` (extend mode, Bible text): upgrade.json's
`merged_spm` figures equal a recomputation from the files, and the model's pieces agree with the dictionary."""
from __future__ import annotations

import json

import sentencepiece as spm

from mmt_upgrade.core.vocab import Tokenizer, read_dictionary

from ..conftest import run_cli

NEW_LANGS = ["it", "ar"]


def _ppw(sp: spm.SentencePieceProcessor, lines: list[str]) -> float:
    return sum(len(sp.EncodeAsIds(x)) for x in lines) / sum(len(x.split()) for x in lines)


def test_merged_spm_figures(tiny_trained, tiny_data, lang_texts, tmp_path):
    save, _ = tiny_trained
    out = tmp_path / "up"
    text_args = [a for lang in NEW_LANGS for a in ("--text", f"{lang}={lang_texts[lang]}")]
    run_cli("mmt-upgrade", "upgrade", str(save / "checkpoint_best.pt"), "--out", str(out), "--old-data",
            str(tiny_data.root), "--new-langs", ",".join(NEW_LANGS), "--new-spm-size", "500", *text_args)
    report = json.loads((out / "upgrade.json").read_text())["merged_spm"]

    old = spm.SentencePieceProcessor(model_file=str(tiny_data.spm_model))
    merged = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    routed = Tokenizer.load(out)
    assert report["file"] == "spm.model" and routed.models == {"old": "spm.old.model", "new": "spm.new.model"}

    dev = tiny_data.texts("valid")
    expected_changed = {}
    for lang in tiny_data.langs:
        changed = sum(old.EncodeAsIds(x) != merged.EncodeAsIds(x) for x in dev[lang])
        expected_changed[lang] = {"sentences": len(dev[lang]), "changed": changed}
    assert report["old_text_changed"] == expected_changed
    train = tiny_data.texts("train")  # fitted on dev + --old-data's train split (no old-language --text given)
    assert report["fitted_on_lines"] == {x: len(dev[x]) + len(train[x]) for x in tiny_data.langs}

    new_sp = spm.SentencePieceProcessor(model_file=str(out / routed.models[routed.route["it"]]))
    for lang in NEW_LANGS:
        lines = [x for x in lang_texts[lang].read_text(encoding="utf-8").splitlines() if x.strip()]
        m, r = _ppw(merged, lines), _ppw(new_sp, lines)
        assert report["new_pieces_per_word"][lang] == {"merged": round(m, 4), "routed": round(r, 4),
                                                       "ratio": round(m / r, 4)}

    # Every piece at its dictionary id: old pieces first, then the appended ones in dictionary order.
    pieces = read_dictionary(out / "dict.txt")
    assert [merged.IdToPiece(i) for i in range(4, merged.GetPieceSize())] == pieces
    assert report["appended"] == len(pieces) - len(read_dictionary(tiny_data.dictionary))
    assert report["pieces"] == merged.GetPieceSize()
    # Old-language text through the merged model decodes back to itself.
    lines = [x for lang in tiny_data.langs for x in dev[lang][:50]]
    assert [merged.DecodeIds(merged.EncodeAsIds(x)) for x in lines] == lines
