"""sacrebleu scores of one direction: BLEU, chrF++ and BLEU over our SentencePiece pieces.

Every number comes with its sacrebleu signature, so it can be reproduced from the text files.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Iterable, Mapping, Sequence

import sentencepiece as spm
from sacrebleu.metrics import BLEU, CHRF

METRICS = ("bleu", "chrf++", "spbleu")


@dataclass
class Scores:
    bleu: float
    chrfpp: float
    spbleu: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _pieces(sp: spm.SentencePieceProcessor, lines: Sequence[str]) -> list[str]:
    return [" ".join(p) for p in sp.Encode(list(lines), out_type=str)]


class DirectionScorer:
    """Scores hypotheses against one reference stream.

    spBLEU here is BLEU with `tok:none` over the model's own SentencePiece segmentation (not the
    FLORES-200 model, which cannot be downloaded offline), so it is comparable within this project only.
    """

    def __init__(self, sp: spm.SentencePieceProcessor, spm_tag: str) -> None:
        self.sp = sp
        self.bleu = BLEU()
        self.chrf = CHRF(word_order=2)
        self.spbleu = BLEU(tokenize="none", force=True)  # pieces are tokenized on purpose
        self.spm_tag = spm_tag

    def score(self, hyps: Sequence[str], refs: Sequence[str]) -> Scores:
        if len(hyps) != len(refs):
            raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
        return Scores(
            bleu=round(self.bleu.corpus_score(list(hyps), [list(refs)]).score, 2),
            chrfpp=round(self.chrf.corpus_score(list(hyps), [list(refs)]).score, 2),
            spbleu=round(self.spbleu.corpus_score(_pieces(self.sp, hyps), [_pieces(self.sp, refs)]).score, 2),
            n=len(hyps),
        )

    def signatures(self) -> dict[str, str]:
        return {
            "bleu": str(self.bleu.get_signature()),
            "chrf++": str(self.chrf.get_signature()),
            "spbleu": f"{self.spbleu.get_signature()}|pieces:{self.spm_tag}",
        }


def most_frequent(lines: Iterable[str]) -> str:
    """The most frequent line (ties: the first seen): the constant-output baseline."""
    counts = Counter(lines)
    return max(counts, key=counts.__getitem__)


def group_means(per_direction: Mapping[str, Mapping[str, float]], groups: Mapping[str, Sequence[str]]) -> dict:
    """Unweighted means of each score over the directions of each (non-empty) group."""
    out = {}
    for name, dirs in groups.items():
        dirs = [d for d in dirs if d in per_direction]
        if dirs:
            out[name] = {
                key: round(fmean(per_direction[d][key] for d in dirs), 2) for key in ("bleu", "chrfpp", "spbleu")
            } | {"directions": list(dirs)}
    return out


def direction_groups(directions: Sequence[tuple[str, str]], pivot: str, new_langs: Sequence[str]) -> dict[str, list[str]]:
    """old / new (by the non-pivot language), into / out of the pivot, and all."""
    names = [f"{s}-{t}" for s, t in directions]
    other = {f"{s}-{t}": (s if t == pivot else t) for s, t in directions}
    return {
        "all": names,
        "old": [d for d in names if other[d] not in new_langs],
        "new": [d for d in names if other[d] in new_langs],
        f"into_{pivot}": [f"{s}-{t}" for s, t in directions if t == pivot],
        f"out_of_{pivot}": [f"{s}-{t}" for s, t in directions if s == pivot],
    }
