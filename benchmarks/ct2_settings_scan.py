"""Which CTranslate2 threading and batching uses the cores best: one export, beam 5, the same sentences
translated under each setting (sources longer than the model's positions left out, as evaluation skips them;
workers = inter_threads x threads = intra_threads, batches in tokens or sentences), 1 warm-up + `--repeats`
timed rounds, medians. Run it on dev sentences: the setting is then used on test by `ct2_speed.py`.

    .venv/bin/python benchmarks/ct2_settings_scan.py runs/bench_ct2/ct2-int8 --spm spm.model \\
        --source en-it=valid.en-it.en --source ar-en=valid.en-ar.ar
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import ctranslate2
import sentencepiece as spm

from mmt_upgrade.core.decoding import CT2_PAD, max_output_tokens, too_long
from mmt_upgrade.core.symbols import lang_token
from mmt_upgrade.fairseq_io.ct2_runtime import Ct2Export

SETTINGS = [(1, 2, 6000, "tokens"), (1, 2, 16, "examples"), (2, 1, 6000, "tokens"), (2, 1, 8, "examples"),
            (2, 1, 16, "examples"), (2, 1, 32, "examples"), (2, 1, 64, "examples")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", type=Path, help="a `mmt-upgrade export --to ct2` directory")
    ap.add_argument("--spm", type=Path, help="SentencePiece model (default: the export's)")
    ap.add_argument("--source", action="append", required=True, metavar="SRC-TGT=FILE")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    info = Ct2Export.load(args.export)
    sp = spm.SentencePieceProcessor(model_file=str(args.spm or args.export / info.spm))
    jobs = []
    for item in args.source:
        pair, path = item.split("=", 1)
        src, tgt = pair.split("-")
        pieces = [sp.encode(x, out_type=str) for x in Path(path).read_text(encoding="utf-8").splitlines()]
        pieces = [p for p in pieces if not too_long(len(p), 0, info.max_source_positions, info.max_target_positions)]
        jobs.append(([[lang_token(src, info.lang_tok_style), *p] for p in pieces],
                     [[lang_token(tgt, info.lang_tok_style)]] * len(pieces)))
    limit = max_output_tokens(info.max_target_positions)
    rows = []
    for workers, threads, size, kind in SETTINGS:
        tr = ctranslate2.Translator(str(args.export), device="cpu", inter_threads=workers, intra_threads=threads)
        seconds = []
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            for sources, prefixes in jobs:
                tr.translate_batch(sources, prefixes, max_batch_size=size, batch_type=kind, beam_size=args.beam,
                                   max_decoding_length=limit, min_decoding_length=0, max_input_length=0,
                                   suppress_sequences=[[CT2_PAD]])
            seconds.append(time.perf_counter() - start)
        row = {"workers": workers, "threads": threads, "batch": f"{size} {kind}",
               "median_s": round(statistics.median(seconds[1:]), 3), "seconds": [round(x, 3) for x in seconds[1:]]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]["median_s"]
    for row in rows:
        print(f"workers {row['workers']} x threads {row['threads']}, batches of {row['batch']}: "
              f"{base / row['median_s']:.2f}x the first setting")


if __name__ == "__main__":
    main()
