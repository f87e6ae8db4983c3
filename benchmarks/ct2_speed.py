"""CTranslate2 (int8, float32) against fairseq-generate on the same test sentences and cores: speed, chrF++
and fidelity.

With `--hf`, `transformers` generate on an HF export is measured the same way, for reference. With
`--ct2-workers 1,2`, each CTranslate2 export runs once per setting side by side: W workers (inter_threads) of
threads/W threads each, in batches of `--ct2-batch-size` sentences (`ct2-int8-w2`: two workers).

Speed: target words per second of translation time alone (fairseq-generate's own generation timer, which
leaves out loading and binarizing; CTranslate2's `translate_batch` with tokenization), each backend in turn
in every repeat (the order rotates, so machine noise hits all; one warm-up round first), medians over
repeats; the ratio to fairseq. `--repeats 0`: each backend translates once, no speed figures (quality on a
larger test set, where the machine need not be quiet).
chrF++ of each backend's output and its difference to fairseq's, with sacrebleu's paired bootstrap (1,000
resamples, 95 % interval) per direction and over all directions pooled: is a difference more than noise?
Fidelity of the float32 export: max |Δ| of the teacher-forced log-probabilities of the references (CTranslate2
`score_batch` against the fairseq model in float32), and the share of sentences whose greedy output is identical
(fairseq-generate `--beam 1 --cpu-bf16 never`).

    .venv/bin/python benchmarks/ct2_speed.py runs/upgrade/full --test en-it=test.en,test.it --beam 5 \\
        --threads 2 --repeats 3 --out runs/bench_ct2
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import statistics
import time
from pathlib import Path
from typing import Iterator

import torch
from sacrebleu.metrics import CHRF

from mmt_upgrade.core.files import sha256_file, write_json_atomic
from mmt_upgrade.core.significance import SentenceStats, paired_bootstrap
from mmt_upgrade.fairseq_io.ct2_runtime import Ct2Export, Ct2Model
from mmt_upgrade.fairseq_io.model_files import ModelFiles
from mmt_upgrade.fairseq_io.models import collate_pairs, teacher_forced_logits
from mmt_upgrade.pipeline.backends import Ct2Translator, FairseqText, TestSet
from mmt_upgrade.pipeline.evaluate import read_tests
from mmt_upgrade.pipeline.export.ct2 import export_ct2
from mmt_upgrade.pipeline.export.hf import EXPORT_JSON, export_hf

GEN_TIME = re.compile(r"Translated [\d,]+ sentences \([\d,]+ tokens\) in ([\d.]+)s")


@contextlib.contextmanager
def generate_seconds() -> Iterator[list[float]]:
    """fairseq-generate's generation time, from the line it logs at the end."""
    found: list[float] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            m = GEN_TIME.search(record.getMessage())
            if m:
                found.append(float(m.group(1)))

    logger, handler = logging.getLogger("fairseq_cli.generate"), Grab()
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


class HfTranslator:
    """`transformers` generate on the `mmt-upgrade export --to hf` directory: the reference the issue asks for
    (same beam, fairseq's length limit: 200 target tokens or the positions the model has, batches of `batch` sentences)."""

    def __init__(self, directory: Path, threads: int, batch: int = 32):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
        self.codes = json.loads((directory / EXPORT_JSON).read_text())["lang_tokens"]
        self.batch = batch
        self.max_len = min(200, self.model.config.max_position_embeddings - 1)  # fairseq's bound: both limits

    def translate(self, test: TestSet, beam: int, max_tokens: int) -> tuple[list[str], int]:
        self.tok.src_lang = self.codes[test.src]
        forced = self.tok.convert_tokens_to_ids(self.codes[test.tgt])
        hyps = []
        for i in range(0, len(test.sources), self.batch):
            enc = self.tok(test.sources[i:i + self.batch], return_tensors="pt", padding=True)
            with torch.no_grad():
                out = self.model.generate(**enc, num_beams=beam, do_sample=False, max_new_tokens=self.max_len,
                                          forced_bos_token_id=forced)
            hyps += self.tok.batch_decode(out, skip_special_tokens=True)
        return hyps, 0


def export_hf_dir(model: ModelFiles, out: Path, sha: str) -> Path:
    stamp = out / "checkpoint.sha256"
    if not (stamp.is_file() and stamp.read_text() == sha):
        shutil.rmtree(out, ignore_errors=True)
        export_hf(model, out)
        stamp.write_text(sha)
    return out


def export(model: ModelFiles, out: Path, quantization: str, sha: str) -> Path:
    if out.exists() and Ct2Export.load(out).checkpoint_sha256 == sha:
        return out
    export_ct2(model, out, quantization, sha)
    return out


def timed(name: str, translator, test: TestSet, beam: int, max_tokens: int) -> tuple[list[str], float]:
    if name == "fairseq":
        with generate_seconds() as seconds:
            hyps, _ = translator.translate(test, beam, max_tokens)
        return hyps, seconds[-1]
    start = time.perf_counter()
    hyps, _ = translator.translate(test, beam, max_tokens)
    return hyps, time.perf_counter() - start


def fidelity(model: ModelFiles, ct2_dir: Path, test: TestSet, n: int, threads: int) -> float:
    """Max |Δ log-prob| over the reference tokens (pieces and `</s>`) of the first `n` sentences."""
    m, ct2 = model.load(), Ct2Model(ct2_dir, threads)
    tok = model.tokenizer()
    src, tgt = tok.encode(test.src, test.sources[:n]), tok.encode(test.tgt, test.refs[:n])
    theirs = ct2.score(src, tgt, test.src, test.tgt, max_tokens=4000)
    eos, pad = m.index["</s>"], m.index["<pad>"]
    worst = 0.0
    for s, t, c in zip(src, tgt, theirs):  # one sentence at a time: no padding in the reference computation
        rows = ([torch.tensor([m.langtok(test.src), *m.ids(s), eos])], [torch.tensor([m.langtok(test.tgt), *m.ids(t), eos])])
        src_tokens, src_lengths, prev, target = collate_pairs(*rows, pad, eos)
        logp = teacher_forced_logits(m, src_tokens, src_lengths, prev).log_softmax(-1)
        ours = logp.gather(-1, target[..., None])[0, 1:, 0]
        worst = max(worst, float((ours - torch.tensor(c)).abs().max()))
    return worst


def chrf_intervals(hyps: dict[str, list[str]], base: dict[str, list[str]], tests: list[TestSet]) -> dict[str, dict]:
    """chrF++ of `hyps` minus `base`'s, paired bootstrap, per direction and pooled (`all`)."""
    mine = {t.name: SentenceStats.of("chrfpp", hyps[t.name], t.refs) for t in tests}
    theirs = {t.name: SentenceStats.of("chrfpp", base[t.name], t.refs) for t in tests}
    pairs = {d: paired_bootstrap(theirs[d], mine[d]) for d in mine}
    pairs["all"] = paired_bootstrap(*(SentenceStats.concat(list(x.values())) for x in (theirs, mine)))
    return {d: {"delta": round(p.delta, 2), "low": round(p.low, 2), "high": round(p.high, 2), "p": round(p.p_value, 4)}
            for d, p in pairs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model directory or checkpoint (as `mmt-upgrade export` takes it)")
    for flag in ("--dict", "--spm", "--langs-file", "--checkpoint"):
        ap.add_argument(flag)
    ap.add_argument("--test", action="append", required=True, metavar="SRC-TGT=SRC_FILE,REF_FILE")
    ap.add_argument("--max-sentences", type=int, default=0, help="first N lines of each test (0: all)")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=2, help="cores for every backend (CPU affinity and threads)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (0: translate once, no speed figures)")
    ap.add_argument("--cpu-bf16", default="auto", help="fairseq-generate's --cpu-bf16 in the speed runs")
    ap.add_argument("--fidelity-sentences", type=int, default=200)
    ap.add_argument("--hf", action="store_true", help="also transformers generate on an HF export (reference)")
    ap.add_argument("--ct2-workers", default="1", help="comma-separated CTranslate2 worker counts, each measured")
    ap.add_argument("--ct2-batch-size", type=int, default=0, help="CTranslate2 sentences per batch (0: max-tokens)")
    ap.add_argument("--out", default="runs/bench_ct2")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    model = ModelFiles.open(Path(args.model), *(args.__dict__[k] and Path(args.__dict__[k]) for k in
                                                ("dict", "spm", "langs_file", "checkpoint")))
    tests = read_tests(args.test)
    if args.max_sentences:
        tests = [TestSet(t.src, t.tgt, t.sources[: args.max_sentences], t.refs[: args.max_sentences]) for t in tests]
    sha = sha256_file(model.checkpoint)
    dirs = {q: export(model, out / f"ct2-{q}", q, sha) for q in ("int8", "float32")}
    workers = [int(w) for w in args.ct2_workers.split(",")]
    backends = {"fairseq": FairseqText(model, args.cpu_bf16),
                **{f"ct2-{q}" + (f"-w{w}" if w > 1 else ""): Ct2Translator(
                    d, model.tokenizer(), max(1, args.threads // w), w, args.ct2_batch_size)
                   for q, d in dirs.items() for w in workers}}
    if args.hf:
        backends["hf"] = HfTranslator(export_hf_dir(model, out / "hf", sha), args.threads)
    names = list(backends)
    wps: dict[str, list[float]] = {n: [] for n in names}
    hyps: dict[str, dict[str, list[str]]] = {n: {} for n in names}
    for r in range(-1, args.repeats):  # repeat -1 warms every backend up and is not counted
        for name in names[r % len(names):] + names[: r % len(names)]:
            words, seconds = 0, 0.0
            for test in tests:
                h, s = timed(name, backends[name], test, args.beam, args.max_tokens)
                hyps[name][test.name] = h
                words, seconds = words + sum(len(x.split()) for x in h), seconds + s
            if r >= 0:
                wps[name].append(words / max(seconds, 1e-3))
    chrf = CHRF(word_order=2)
    scores = {n: {t.name: chrf.corpus_score(hyps[n][t.name], [t.refs]).score for t in tests} for n in names}
    fp32_greedy = FairseqText(model, "never")
    greedy = {n: {t.name: b.translate(t, 1, args.max_tokens)[0] for t in tests}
              for n, b in [("fairseq", fp32_greedy)] + [(n, backends[n]) for n in names[1:]]}
    agree = {n: statistics.fmean(a == b for t in tests for a, b in zip(greedy[n][t.name], greedy["fairseq"][t.name]))
             for n in names[1:]}
    median = {n: statistics.median(v) for n, v in wps.items() if v}
    summary = {
        "model": str(model.checkpoint), "tests": {t.name: len(t.sources) for t in tests}, "beam": args.beam,
        "threads": args.threads, "repeats": args.repeats, "fairseq_cpu_bf16": args.cpu_bf16,
        "ct2_settings": {n: backends[n].describe() for n in names if n.startswith("ct2")},
        "words_per_s": {n: [round(x, 1) for x in v] for n, v in wps.items()},
        "median_words_per_s": {n: round(v, 1) for n, v in median.items()},
        "speed_ratio_to_fairseq": {n: round(median[n] / median["fairseq"], 2) for n in names[1:] if n in median},
        "chrfpp": {n: {d: round(s, 2) for d, s in v.items()} for n, v in scores.items()},
        "chrfpp_diff_to_fairseq": {n: {d: round(scores[n][d] - scores["fairseq"][d], 2) for d in scores[n]}
                                   for n in names[1:]},
        "chrfpp_paired_bootstrap_to_fairseq": {n: chrf_intervals(hyps[n], hyps["fairseq"], tests) for n in names[1:]},
        "fidelity": {"max_abs_logprob_diff_float32": fidelity(model, dirs["float32"], tests[0],
                                                              args.fidelity_sentences, args.threads),
                     "fidelity_direction": tests[0].name, "greedy_agreement": agree},
        "ctranslate2": Ct2Model(dirs["float32"]).version,
    }
    write_json_atomic(out / "summary.json", summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
