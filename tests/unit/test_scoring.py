"""Scores are sacrebleu's own numbers; groups are plain means over their directions."""
from __future__ import annotations

import pytest
from sacrebleu.metrics import BLEU, CHRF

from mmt_upgrade.core.scoring import (
    DirectionScorer,
    direction_groups,
    group_means,
    most_frequent,
)
from mmt_upgrade.fairseq_io.drivers import parse_generate_output

HYPS = ["Ye ce licu namubare.", "Ce fá vusefá gesi", "dega nure ye"]
REFS = ["Ye ce licu namubare ye.", "Ce fá vusefá cemédavé tá cáma.", "Ye dega nure ye."]


def test_scores_match_sacrebleu(sp):
    s = DirectionScorer(sp, "tag").score(HYPS, REFS)
    assert s.bleu == round(BLEU().corpus_score(HYPS, [REFS]).score, 2)
    assert s.chrfpp == round(CHRF(word_order=2).corpus_score(HYPS, [REFS]).score, 2)
    pieces = lambda xs: [" ".join(p) for p in sp.Encode(xs, out_type=str)]  # noqa: E731
    assert s.spbleu == round(BLEU(tokenize="none").corpus_score(pieces(HYPS), [pieces(REFS)]).score, 2)
    assert pieces(HYPS) != HYPS  # spBLEU really scores pieces
    perfect = DirectionScorer(sp, "tag").score(REFS, REFS)
    assert perfect.bleu == perfect.chrfpp == perfect.spbleu == 100.0


def test_signatures_name_the_tokenization(sp):
    scorer = DirectionScorer(sp, "spm.model@abc")
    scorer.score(HYPS, REFS)  # sacrebleu signatures exist once a metric has been computed
    sig = scorer.signatures()
    assert "nw:2" in sig["chrf++"] and "tok:13a" in sig["bleu"] and sig["spbleu"].endswith("pieces:spm.model@abc")


def test_groups_and_means():
    dirs = [("es", "en"), ("en", "es"), ("it", "en"), ("en", "it")]
    groups = direction_groups(dirs, "en", ["it"])
    assert groups["old"] == ["es-en", "en-es"] and groups["new"] == ["it-en", "en-it"]
    assert groups["into_en"] == ["es-en", "it-en"] and groups["out_of_en"] == ["en-es", "en-it"]
    scores = {d: {"bleu": b, "chrfpp": 2 * b, "spbleu": 3 * b} for d, b in zip(groups["all"], [10, 20, 30, 40])}
    means = group_means(scores, groups)
    assert means["all"]["bleu"] == 25 and means["new"]["chrfpp"] == 70 and means["into_en"]["spbleu"] == 60
    assert group_means(scores, {"empty": []}) == {}


def test_most_frequent_line():
    assert most_frequent(["a", "b", "b", "c", "a", "b"]) == "b"
    with pytest.raises(ValueError):
        DirectionScorer.score(None, ["a"], ["a", "b"])


def test_generate_output_keeps_skipped_sentences_as_empty(tmp_path):
    out = tmp_path / "generate-test.txt"
    out.write_text("S-1\tsrc\nH-1\t-0.5\tb\nD-1\t-0.5\tsecond\nD-0\t-0.1\tfirst\nD-3\t-0.2\t\n")
    assert parse_generate_output(out, 4) == (["first", "second", "", ""], 1)
