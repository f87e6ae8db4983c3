"""Where CTranslate2 float32 and fairseq-generate (fp32) disagree at the same beam, which one found the better
hypothesis: both searches' own pieces (fairseq-generate's `--post-process none` output, not its text re-segmented),
each differing pair scored by the float32 export (teacher-forced log-probabilities of the
language token, pieces and `</s>`), under fairseq's normalisation (sum / length, language token and `</s>`
counted), without the language token, or unnormalised. A count near the number of differing sentences for
every criterion means CTranslate2's search found hypotheses fairseq's missed (its search stops once `beam`
hypotheses have ended), not a different scoring.

    .venv/bin/python benchmarks/ct2_beam_compare.py UPGRADE_DIR --checkpoint CKPT --ct2 CT2_FLOAT32_DIR \\
        --test en-it=test.en,test.it [--test ...] [--max-sentences 100] [--beam 5]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmt_upgrade.core.symbols import lang_token
from mmt_upgrade.fairseq_io.ct2_runtime import Ct2Model
from mmt_upgrade.fairseq_io.model_files import ModelFiles
from mmt_upgrade.fairseq_io.generate_text import generate_pieces
from mmt_upgrade.pipeline.backends import TestSet
from mmt_upgrade.pipeline.evaluate import read_tests

CRITERIA = {
    "fairseq (sum / all tokens)": lambda lp: sum(lp) / len(lp),
    "without the language token": lambda lp: sum(lp[1:]) / (len(lp) - 1),
    "unnormalised sum": sum,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--ct2", type=Path, required=True, help="a float32 `mmt-upgrade export --to ct2` directory")
    ap.add_argument("--test", action="append", required=True, metavar="SRC-TGT=SRC_FILE,REF_FILE")
    ap.add_argument("--max-sentences", type=int, default=100)
    ap.add_argument("--beam", type=int, default=5)
    args = ap.parse_args()
    model = ModelFiles.open(args.model, None, None, None, args.checkpoint)
    tok, ct2 = model.tokenizer(), Ct2Model(args.ct2, threads=1)
    total, differ, prefers_ct2 = 0, 0, {k: 0 for k in CRITERIA}
    for t in read_tests(args.test):
        test = TestSet(t.src, t.tgt, t.sources[: args.max_sentences], t.refs[: args.max_sentences])
        src = tok.encode(test.src, test.sources)
        theirs, _ = generate_pieces(model, test.src, test.tgt, src, tok.encode(test.tgt, test.refs), args.beam, 6000,
                                    ["--cpu-bf16", "never", "--post-process", "none"])
        ours = ct2.translate(src, test.src, test.tgt, beam=args.beam, max_tokens=6000)
        for s, f, c in zip(src, theirs, ours):
            total += 1
            if f.split() == c[1:]:
                continue
            differ += 1
            pair = [[lang_token(test.tgt), *f.split()], [lang_token(test.tgt), *c[1:]]]
            lp = [list(r.log_probs) for r in ct2.translator.score_batch([[lang_token(test.src), *s]] * 2, pair)]
            for name, score in CRITERIA.items():
                prefers_ct2[name] += score(lp[1]) > score(lp[0])
    print(json.dumps({"sentences": total, "identical": total - differ, "differing": differ, "beam": args.beam,
                      "differing_where_ct2s_hypothesis_scores_higher": prefers_ct2}, indent=1))


if __name__ == "__main__":
    main()
