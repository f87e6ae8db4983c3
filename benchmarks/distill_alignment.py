"""How much of each old language's target text cross-vocabulary distillation can use, on the Bible data.

For every old language, train sentences are segmented by the student's tokenizer (an upgraded model
directory) and by the teacher's SentencePiece model, aligned exactly as the criterion aligns them
(`ExampleAligner`), and the share of student target tokens (pieces and `</s>`) counted per method:
- alm: tokens in chunks without `<unk>`;
- uld: tokens in 1:1 chunks (one piece on each side);
- shared: tokens in 1:1 chunks whose two pieces are the same string;
- lexical: tokens overlapping at least one teacher piece, outside `<unk>` chunks.
Also: mean student and teacher pieces per chunk, and the one-time alignment cost per sentence.

    .venv/bin/python benchmarks/distill_alignment.py --student runs/old_model_upgrade/extend-unk \
        --student runs/old_model_upgrade/retrain
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mmt_upgrade.core.distill.align import ExampleAligner
from mmt_upgrade.core.paths import cache_dir, runs_dir
from mmt_upgrade.core.spm import load_spm
from mmt_upgrade.core.vocab import Tokenizer, model_symbols, read_dictionary
from mmt_upgrade.pipeline.data.prepare import bible_texts, prepare_data
from mmt_upgrade.pipeline.runconfig import load_config


def alignment_shares(aligner: ExampleAligner, tokenizer: Tokenizer, index: dict[str, int], lang: str,
                     lines: list[str]) -> dict:
    totals = dict.fromkeys(("tokens", "alm", "uld", "shared", "lexical", "chunks", "t_pieces"), 0)
    unaligned = 0
    start = time.perf_counter()
    for pieces in tokenizer.encode(lang, lines):
        ids = np.array([index[p] for p in pieces], dtype=np.int64)
        ex = aligner.convert("en" if lang != "en" else "es", lang, ids, ids)
        if ex is None:
            unaligned += 1
            continue
        a = ex.align
        chunk = a.s_chunk[1:]  # pieces and </s>
        totals["tokens"] += len(chunk)
        totals["alm"] += int(a.chunk_ok[chunk].sum())
        totals["uld"] += int((a.one_to_one & a.chunk_ok)[chunk].sum())
        totals["shared"] += int((a.same_piece & a.chunk_ok)[chunk].sum())
        totals["lexical"] += int(((a.s_hi > a.s_lo)[1:] & a.chunk_ok[chunk]).sum())
        totals["chunks"] += a.n_chunks
        totals["t_pieces"] += len(ex.tgt) - 1
    seconds = time.perf_counter() - start
    n = max(totals["tokens"], 1)
    return {"sentences": len(lines), "unaligned_sentences": unaligned, "student_tokens": totals["tokens"],
            **{m: round(totals[m] / n, 4) for m in ("alm", "uld", "shared", "lexical")},
            "student_pieces_per_chunk": round(totals["tokens"] / max(totals["chunks"], 1), 3),
            "teacher_pieces_per_chunk": round(totals["t_pieces"] / max(totals["chunks"], 1), 3),
            "align_ms_per_sentence": round(1000 * seconds / max(len(lines), 1), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", action="append", default=[], help="upgraded model directory (repeatable)")
    ap.add_argument("--sentences", type=int, default=2000, help="train sentences per language")
    ap.add_argument("--out", default=str(runs_dir() / "bench_distill" / "alignment.json"))
    args = ap.parse_args()
    students = args.student or [str(runs_dir() / "old_model_upgrade" / "extend-unk")]
    old_cfg = load_config("old_model")
    old = prepare_data(old_cfg.data, cache_dir())
    teacher_symbols = model_symbols(read_dictionary(old.dictionary), old.langs)
    texts = bible_texts(old_cfg.data, cache_dir(), "train")
    result = {}
    for student in map(Path, students):
        tokenizer = Tokenizer.load(student)
        langs = (student / "langs.txt").read_text().split()
        symbols = model_symbols(read_dictionary(student / "dict.txt"), langs)
        aligner = ExampleAligner(symbols, tokenizer, teacher_symbols, load_spm(old.spm_model))
        index = {s: i for i, s in enumerate(symbols)}
        mode = json.loads((student / "upgrade.json").read_text())["vocab_mode"]
        result[student.name] = {"vocab_mode": mode, "langs": {
            lang: alignment_shares(aligner, tokenizer, index, lang, texts[lang][: args.sentences]) for lang in old.langs}}
        print(json.dumps({student.name: result[student.name]}, indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
