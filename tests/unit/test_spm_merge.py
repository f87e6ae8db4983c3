"""The merged SentencePiece model: old text keeps its exact segmentation, new text segments about as the
new model does, old pieces keep their ids and scores, and the model loads and round-trips text."""
from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.spm import load_spm, train_spm
from mmt_upgrade.core.spm_merge import is_unigram, merge_spm, merged_figures, pieces_per_word, read_proto

from .conftest import OLD_LANGS, sentences

UNUSED = pb.ModelProto.SentencePiece.UNUSED


def _merge(old_spm: Path, texts, new: dict[str, list[str]], size: int, out: Path, old_fit=None):
    new_model = train_spm(new, out / "spm.new.model", size, 400, seed=2)
    old_sp, new_sp = load_spm(old_spm), load_spm(new_model)
    known = {old_sp.IdToPiece(i) for i in range(old_sp.GetPieceSize())}
    added = [p for p in (new_sp.IdToPiece(i) for i in range(4, new_sp.GetPieceSize())) if p not in known]
    fit = old_fit or {x: texts[x] for x in OLD_LANGS}
    result = merge_spm(old_spm, new_model, added, fit, new, out / "spm.model")
    return result, old_sp, new_sp, added, load_spm(out / "spm.model")


@pytest.fixture(scope="module")
def new_script(old_spm, texts, tmp_path_factory):
    """Cyrillic and Arabic (scripts the old model never saw) appended to the Latin-script model."""
    return _merge(old_spm, texts, {x: texts[x] for x in ("ru", "ar")}, 700, tmp_path_factory.mktemp("merge"))


def test_old_pieces_keep_ids_scores_and_settings(new_script, old_spm):
    result, old_sp, _, added, merged = new_script
    old, new = read_proto(old_spm), read_proto(result.path)
    assert list(new.pieces)[:len(old.pieces)] == list(old.pieces)
    assert [p.piece for p in new.pieces[len(old.pieces):]] == added
    assert new.normalizer_spec == old.normalizer_spec and new.denormalizer_spec == old.denormalizer_spec
    assert new.trainer_spec.byte_fallback and [merged.IdToPiece(i) for i in range(4)] == ["<s>", "<pad>", "</s>",
                                                                                          "<unk>"]


def test_old_text_segments_identically(new_script):
    _, old_sp, _, _, merged = new_script
    lines = [x for lang in OLD_LANGS for x in sentences(lang, 500, seed=7)]
    assert merged.Encode(lines) == old_sp.Encode(lines)


def test_new_text_pieces_per_word_close_to_new_model(new_script):
    _, _, new_sp, _, merged = new_script
    for lang in ("ru", "ar"):
        lines = sentences(lang, 300, seed=7)
        assert pieces_per_word(merged, lines) == pytest.approx(pieces_per_word(new_sp, lines), rel=0.05)


def test_round_trip(new_script):
    _, _, _, _, merged = new_script
    lines = [x for lang in ("en", "es", "fr", "ru", "ar") for x in sentences(lang, 50, seed=9)]
    assert [merged.Decode(ids) for ids in merged.Encode(lines)] == lines


def test_same_script_conflicts_are_demoted_until_fitting_text_is_unchanged(old_spm, texts, tmp_path):
    """A new Latin-script language (es over en, fr only) shares letters with the old ones, so appended pieces
    win on old text unless demoted or dropped: after the merge the fitting text segments exactly as before."""
    old_model = train_spm({x: texts[x] for x in ("en", "fr")}, tmp_path / "old.model", 400, 400, seed=1)
    fit = {x: texts[x] for x in ("en", "fr")}
    result, old_sp, _, added, merged = _merge(old_model, texts, {"es": texts["es"]}, 800, tmp_path, fit)
    lines = [x for v in fit.values() for x in v]
    assert merged.Encode(lines) == old_sp.Encode(lines)
    assert result.changed == 0 and result.dropped + result.demoted > 0
    dropped = sum(p.type == UNUSED for p in read_proto(result.path).pieces[old_sp.GetPieceSize():])
    figures = merged_figures(old_sp, result.path, fit, {"es": 1.0}, {"es": texts["es"]}, old_sp.GetPieceSize())
    assert figures["unused"] == dropped and figures["appended"] == len(added)
    assert figures["old_text_changed"] == {x: {"sentences": len(v), "changed": 0} for x, v in fit.items()}


def test_piece_the_old_model_holds_keeps_its_id(old_spm, texts, tmp_path):
    """A piece the old dictionary lacked but its model holds (M2M-100's dictionary is a subset) is not doubled."""
    new_model = train_spm({"ru": texts["ru"]}, tmp_path / "new.model", 700, 400, seed=2)
    new_sp = load_spm(new_model)
    added = ["▁", *(p for p in (new_sp.IdToPiece(i) for i in range(300, 310)) if p != "▁")]
    result = merge_spm(old_spm, new_model, added, {}, {}, tmp_path / "spm.model")
    merged, old_sp = load_spm(result.path), load_spm(old_spm)
    assert merged.PieceToId("▁") == old_sp.PieceToId("▁") and result.appended == len(added) - 1
    assert [merged.IdToPiece(i) for i in range(old_sp.GetPieceSize(), merged.GetPieceSize())] == added[1:]


def test_piece_missing_from_new_model_is_refused(old_spm, texts, tmp_path):
    new_model = train_spm({"ru": texts["ru"]}, tmp_path / "new.model", 700, 400, seed=2)
    with pytest.raises(UserInputError, match="not in the new SentencePiece model"):
        merge_spm(old_spm, new_model, ["▁nowhere"], {}, {}, tmp_path / "spm.model")
    assert not (tmp_path / "spm.model").exists()


def test_loads_with_plain_sentencepiece(new_script):
    result = new_script[0]
    sp = spm.SentencePieceProcessor(model_file=str(result.path))
    assert sp.GetPieceSize() == len(read_proto(result.path).pieces)


def test_bpe_model_is_refused_before_anything_is_written(old_spm, texts, tmp_path):
    """BPE applies merges by rank, not by score: `upgrade` skips the merged model for a BPE model."""
    bpe = tmp_path / "bpe.model"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts["ru"]), model_prefix=str(tmp_path / "bpe"),
                                   model_type="bpe", vocab_size=100, minloglevel=2)
    assert is_unigram(old_spm) and not is_unigram(bpe)
    with pytest.raises(UserInputError, match=f"{bpe}: only unigram"):
        merge_spm(bpe, old_spm, [], {}, {}, tmp_path / "spm.model")
    assert not (tmp_path / "spm.model").exists()


def test_restricted_view_segments_as_the_whole_model(new_script, old_spm, texts):
    """The view the fitting loads after each change of scores (only the pieces occurring in the lines) gives the
    whole merged model's ids on those lines, unknown characters (bytes) and a piece across whitespace included."""
    from mmt_upgrade.core.spm_merge import _Merged, _View, processor

    result, old_sp, *_ = new_script
    whole = read_proto(result.path)
    whole.pieces.add(piece="\u2581of\u2581the", score=5.0, type=pb.ModelProto.SentencePiece.NORMAL)
    merged = _Merged(whole, whole, [], processor(whole))
    crossing = merged.proto.pieces[-1]
    lines = [x for lang in ("en", "ru", "ar") for x in sentences(lang, 20, seed=11)] + ["\u2603 of the \u00e6\u00f0"]
    view = _View(merged, lines, old_sp)
    left_out = len(merged.proto.pieces) - len(view.ids)
    assert left_out > 100 and len(merged.proto.pieces) - 1 in view.ids, left_out
    assert view.encode(lines) == processor(merged.proto).Encode(lines)
    crossing.score = -50.0  # scores change after the view is built: it follows them
    assert view.encode(lines) == processor(merged.proto).Encode(lines)
