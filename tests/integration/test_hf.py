"""Issue 15 end to end: a Hugging Face M2M-100 and an NLLB model (tiny, built here: random weights from an
`M2M100Config`, a few Adam steps of translating so the rows mean their pieces, tokenizers on a SentencePiece model
trained here on Bible verses; nothing downloaded) -> `mmt-upgrade import` -> `upgrade` with a new language ->
fine-tuned a few updates by fairseq-train with the plugins -> `mmt-upgrade export --to hf` (and `--to ct2`).
Then HF against fairseq on the same sentences (token ids, teacher-forced log-probabilities, greedy outputs), the
HF -> fairseq -> HF round trip, the translation pipeline with the new language, and bad input refused."""
from __future__ import annotations

import importlib.util
import io
import json
import random
import re
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from mmt_upgrade.core.paths import PLUGIN_DIR
from mmt_upgrade.core.spm import train_spm
from mmt_upgrade.fairseq_io.model_files import ModelFiles
from mmt_upgrade.fairseq_io import models
from mmt_upgrade.fairseq_io.models import LoadedModel, collate_pairs, teacher_forced_logits

from ..conftest import run_cli
from .layouts import bible_verses, encode_file

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

# layout -> Bible language -> the model's code; the last is the language the upgrade adds
CODES = {"nllb": {"en": "eng_Latn", "es": "spa_Latn", "fr": "fra_Latn", "it": "ita_Latn"},
         "m2m": {"en": "en", "es": "es", "fr": "fr", "it": "ita"}}  # M2M100Tokenizer: its 100 codes; `it` added as `ita`
SENTENCES = 6
TRAIN = ["--optimizer", "adam_scaled", "--lr-scale-old", "0.1", "--lr", "0.003", "--lr-scheduler", "inverse_sqrt",
         "--warmup-updates", "4", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
         "--max-tokens", "1500", "--seed", "1", "--cpu", "--cpu-bf16", "never", "--num-workers", "0", "--log-format",
         "simple", "--log-interval", "4", "--no-epoch-checkpoints", "--skip-invalid-size-inputs-valid-test",
         "--sampling-method", "temperature", "--max-update", "8", "--save-interval-updates", "8"]


@pytest.fixture(scope="module")
def verses(bible_db):
    return bible_verses(bible_db)


def _nllb_spm(lines: list[str], path: Path) -> Path:
    """A SentencePiece model as NLLB's: `<unk> <s> </s>` at ids 0-2, no `<pad>`."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=600,
                                   model_type="unigram", character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2,
                                   pad_id=-1, byte_fallback=True, hard_vocab_limit=False, num_threads=1)
    path.write_bytes(model.getvalue())
    return path


def _train(model, tok, texts: dict[str, list[str]], codes: dict[str, str], steps: int = 120) -> None:
    """Adam steps on translating aligned verses (any direction, copying included): enough for `upgrade`'s check
    that the rows mean their pieces (the model must know more than piece frequencies)."""
    rng, threads = random.Random(0), torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a tiny model: threads only contend with the other tests' processes
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        a, b = rng.choice(list(texts)), rng.choice(list(texts))
        idx = rng.sample(range(len(texts[a])), 16)
        tok.src_lang, tok.tgt_lang = codes[a], codes[b]
        batch = tok([texts[a][i] for i in idx], text_target=[texts[b][i] for i in idx], return_tensors="pt",
                    padding=True, truncation=True, max_length=32)
        batch["labels"][batch["labels"] == tok.pad_token_id] = -100
        opt.zero_grad()
        model(**batch).loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    model.eval()


def build_hf(layout: str, verses, out: Path) -> Path:
    """The Hugging Face directory people hold: NLLB's tokenizer on an NLLB-style SentencePiece model, or
    M2M100Tokenizer with a vocab.json in another order than the SentencePiece ids (as M2M-100's)."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer, NllbTokenizer

    out.mkdir(parents=True)
    codes = CODES[layout]
    texts = {b: verses.lines["train"][b] for b in ("en", "es", "fr")}
    if layout == "nllb":
        sp = _nllb_spm([x for v in texts.values() for x in v], out / "source.model")
        tok = NllbTokenizer(vocab_file=str(sp), additional_special_tokens=[codes[b] for b in texts])
        tok.save_pretrained(out)
        sp.unlink()
        vocab = len(tok)
    else:
        sp_path = train_spm(texts, out / "sentencepiece.bpe.model", 600, 300, seed=1)
        sp = spm.SentencePieceProcessor(model_file=str(sp_path))
        pieces = [sp.IdToPiece(i) for i in range(4, len(sp))]
        random.Random(1).shuffle(pieces)
        (out / "vocab.json").write_text(json.dumps({p: i for i, p in enumerate(
            ["<s>", "<pad>", "</s>", "<unk>", *pieces])}), encoding="utf-8")
        tok = M2M100Tokenizer(vocab_file=str(out / "vocab.json"), spm_file=str(sp_path))
        tok.save_pretrained(out)
        vocab = len(pieces) + 4 + 100 + 8  # pieces, the 100 language tokens, 8 fillers: M2M-100's rows
    torch.manual_seed(0)
    config = M2M100Config(vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=1, encoder_ffn_dim=64,
                          decoder_ffn_dim=48, encoder_attention_heads=2, decoder_attention_heads=2,
                          max_position_embeddings=128)
    model = M2M100ForConditionalGeneration(config)
    _train(model, tok, texts, codes)
    model.save_pretrained(out)
    return out


def _lines(verses, split: str, bible: str, n: int) -> list[str]:
    return verses.lines[split][bible][:n]


def _text_file(verses, split: str, bible: str, path: Path) -> Path:
    path.write_text("\n".join(verses.lines[split][bible]) + "\n", encoding="utf-8")
    return path


def _binarize(verses, up: Path, codes: dict[str, str], work: Path) -> Path:
    """pivot <-> every other language, segmented by the upgraded model's SentencePiece model, binarized with its
    pieces-only dictionary (`data_dict.txt`: same ids as the model's)."""
    sp = spm.SentencePieceProcessor(model_file=str(up / "spm.model"))
    pivot = codes["en"]
    for bible in ("es", "fr", "it"):
        code = codes[bible]
        prefs = []
        for split, n in (("train", 120), ("valid", 20)):
            for b, c in (("en", pivot), (bible, code)):
                encode_file(sp, verses.lines[split][b][:n], work / f"{split}.{pivot}-{code}.{c}")
            prefs += [f"--{split}pref", str(work / f"{split}.{pivot}-{code}")]
        run_cli("fairseq-preprocess", "--source-lang", pivot, "--target-lang", code, "--srcdict",
                str(up / "data_dict.txt"), "--tgtdict", str(up / "data_dict.txt"), "--destdir", str(work / "bin"),
                "--workers", "1", *prefs)
    return work / "bin"


@pytest.fixture(scope="module", params=list(CODES))
def flow(request, verses, tmp_path_factory):
    """hf0 -> imported -> upgraded -> fine-tuned -> exported, with every directory."""
    layout, codes = request.param, CODES[request.param]
    root = tmp_path_factory.mktemp(f"hf-{layout}")
    hf0 = build_hf(layout, verses, root / "hf0")
    imported = root / "imported"
    run_cli("mmt-upgrade", "import", str(hf0), "--out", str(imported))
    up = root / "upgraded"
    dev = [a for b in ("en", "es", "fr") for a in ("--dev-text", f"{codes[b]}={_text_file(verses, 'dev', b, root / f'dev.{b}')}")]
    run_cli("mmt-upgrade", "upgrade", str(imported / "checkpoint.pt"), "--dict", str(imported / "dict.txt"),
            "--spm", str(imported / "spm.model"), "--new-langs", codes["it"], "--text",
            f"{codes['it']}={_text_file(verses, 'train', 'it', root / 'train.it')}", *dev, "--new-spm-size", "500",
            "--out", str(up))
    (root / "data").mkdir()
    bin_dir = _binarize(verses, up, codes, root / "data")
    pivot = codes["en"]
    pairs = ",".join(f"{a}-{b}" for x in ("es", "fr", "it") for a, b in ((codes[x], pivot), (pivot, codes[x])))
    flags = json.loads((imported / "import.json").read_text())["fairseq_model_flags"]
    langs = (up / "langs.txt").read_text().strip()
    log = run_cli("fairseq-train", str(bin_dir), "--user-dir", str(PLUGIN_DIR), "--task", "upgrade_translation",
                  "--langs", langs, "--lang-pairs", pairs, "--encoder-langtok", "src", "--decoder-langtok",
                  "--lang-tok-style", "multilingual", "--fixed-dictionary", str(up / "dict.txt"), *flags, *TRAIN,
                  "--finetune-from-model", str(up / "checkpoint.pt"), "--save-dir", str(root / "ft"))
    assert re.findall(r"num_updates[ =](\d+)", log.stdout + log.stderr)[-1] == "8"
    ft = root / "ft" / "checkpoint_last.pt"
    out = root / "out"
    run_cli("mmt-upgrade", "export", str(up), "--checkpoint", str(ft), "--to", "hf", str(out))
    return {"layout": layout, "codes": codes, "hf0": hf0, "imported": imported, "up": up, "ft": ft, "out": out,
            "root": root}


@torch.no_grad()
def greedy(m: LoadedModel, src_tokens, src_lengths, tgt: str, max_len: int) -> list[list[str]]:
    """Greedy decoding of the fairseq model, the whole prefix `</s> __tgt__ ...` recomputed at every step: the
    reference for models.greedy's incremental decoding."""
    eos = m.index["</s>"]
    tokens = torch.tensor([[eos, m.langtok(tgt)]]).repeat(src_tokens.shape[0], 1)
    done = torch.zeros(src_tokens.shape[0], dtype=torch.bool)
    for _ in range(max_len):
        nxt = m.model(src_tokens, src_lengths, tokens)[0][:, -1].argmax(-1).masked_fill(done, eos)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eos
        if done.all():
            break
    rows = [row[: row.index(eos)] if eos in row else row for row in tokens[:, 2:].tolist()]
    return [[m.symbols[i] for i in row] for row in rows]


def _fairseq(flow):
    return ModelFiles.open(flow["up"], checkpoint=flow["ft"]).load()


def _lang_tokens(out: Path) -> dict[str, str]:
    return json.loads((out / "mmt_export.json").read_text())["lang_tokens"]


@pytest.mark.parametrize("direction", ["en-it", "it-en", "es-en"])
def test_hf_computes_what_fairseq_computes(flow, verses, direction):
    """Same token ids from AutoTokenizer as from the fairseq model's own SentencePiece model and dictionary; teacher-
    forced log-probabilities within 1e-4 of fairseq's; greedy outputs identical."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    s, t = direction.split("-")
    src, tgt = flow["codes"][s], flow["codes"][t]
    lines, refs = _lines(verses, "test", s, SENTENCES), _lines(verses, "test", t, SENTENCES)
    fm = _fairseq(flow)
    tok, hm = AutoTokenizer.from_pretrained(flow["out"]), AutoModelForSeq2SeqLM.from_pretrained(flow["out"]).eval()
    names = _lang_tokens(flow["out"])
    assert type(tok).__name__ == "NllbTokenizerFast"
    pad, eos = fm.index["<pad>"], fm.index["</s>"]
    srcs = [torch.tensor([fm.langtok(src), *fm.ids(p), eos]) for p in fm.tokenizer.encode(src, lines)]
    tgts = [torch.tensor([fm.langtok(tgt), *fm.ids(p), eos]) for p in fm.tokenizer.encode(tgt, refs)]
    tok.src_lang, tok.tgt_lang = names[src], names[tgt]
    enc = tok(lines, text_target=refs)
    assert enc["input_ids"] == [x.tolist() for x in srcs] and enc["labels"] == [x.tolist() for x in tgts]

    src_tokens, src_lengths, prev, _ = collate_pairs(srcs, tgts, pad, eos)
    fairseq_logp = teacher_forced_logits(fm, src_tokens, src_lengths, prev).log_softmax(-1)
    batch = tok(lines, text_target=refs, return_tensors="pt", padding=True)
    dec_in = torch.full_like(batch["labels"], pad)
    dec_in[:, 0] = eos
    dec_in[:, 1:] = batch["labels"][:, :-1]
    with torch.no_grad():
        hf_logp = hm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     decoder_input_ids=dec_in).logits.log_softmax(-1)
    diff = max(float((hf_logp[i, :len(x)] - fairseq_logp[i, :len(x)]).abs().max()) for i, x in enumerate(tgts))
    assert diff <= 1e-4
    assert float((hf_logp[0, :len(tgts[0])] - fairseq_logp[1, :len(tgts[0])]).abs().max()) > 1e-2  # can fail

    ours = greedy(fm, src_tokens, src_lengths, tgt, 30)
    assert models.greedy(fm, src_tokens, src_lengths, tgt, 30) == ours
    gen = hm.generate(**tok(lines, return_tensors="pt", padding=True), num_beams=1, do_sample=False,
                      max_new_tokens=31, forced_bos_token_id=tok.convert_tokens_to_ids(names[tgt]))
    theirs = [[fm.symbols[i] for i in row[2:] if i not in (pad, eos)] for row in gen.tolist()]
    assert gen[:, 1].tolist() == [fm.langtok(tgt)] * SENTENCES
    assert theirs == ours


def test_verify_the_upgraded_import(flow, tmp_path):
    """`verify` reads the imported model as the old one: the upgrade kept its function (log-probabilities of old
    symbols within 1e-5, greedy outputs identical)."""
    codes, root = flow["codes"], flow["root"]
    figures = tmp_path / "verify.json"
    run_cli("mmt-upgrade", "verify", str(flow["imported"] / "checkpoint.pt"), str(flow["up"]), "--dict",
            str(flow["imported"] / "dict.txt"), "--spm", str(flow["imported"] / "spm.model"), "--json", str(figures),
            *[a for b in ("en", "es") for a in ("--dev-text", f"{codes[b]}={root / f'dev.{b}'}")], "--langs",
            f"{codes['en']},{codes['es']}", "--sentences", "6")
    result = json.loads(figures.read_text())
    assert result["max_abs_logprob_diff"] <= 1e-5 and result["greedy_identical"] == result["sentences"] > 0


def _tensors(d: Path) -> dict[str, torch.Tensor]:
    return safetensors_torch.load_file(str(d / "model.safetensors"))


def test_round_trip_hf_fairseq_hf_gives_identical_tensors(flow, verses, tmp_path):
    """hf0 -> import -> export: every tensor identical, under the same names; both tokenizers give the same ids.
    Then the exported (upgraded, fine-tuned) model -> import -> export: identical again."""
    from transformers import AutoTokenizer

    back = tmp_path / "back"
    run_cli("mmt-upgrade", "export", str(flow["imported"]), "--to", "hf", str(back))
    before, after = _tensors(flow["hf0"]), _tensors(back)
    assert sorted(before) == sorted(after)
    assert all(before[k].dtype == after[k].dtype and torch.equal(before[k], after[k]) for k in before)
    t0, t1 = AutoTokenizer.from_pretrained(flow["hf0"]), AutoTokenizer.from_pretrained(back)
    names = _lang_tokens(back)
    lines = _lines(verses, "test", "es", 20)
    t0.src_lang, t1.src_lang = flow["codes"]["es"], names[flow["codes"]["es"]]
    assert t0(lines)["input_ids"] == t1(lines)["input_ids"]

    again = tmp_path / "again"
    run_cli("mmt-upgrade", "import", str(flow["out"]), "--out", str(tmp_path / "reimported"))
    run_cli("mmt-upgrade", "export", str(tmp_path / "reimported"), "--to", "hf", str(again))
    a, b = _tensors(flow["out"]), _tensors(again)
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.shared.weight"][:len(before["model.shared.weight"])], before["model.shared.weight"])


def test_translation_pipeline_with_the_new_language(flow, verses):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

    names = _lang_tokens(flow["out"])
    src, tgt = names[flow["codes"]["en"]], names[flow["codes"]["it"]]
    lines = _lines(verses, "test", "en", 3)
    translate = pipeline("translation", model=str(flow["out"]), src_lang=src, tgt_lang=tgt, device="cpu")
    got = [x["translation_text"] for x in translate(lines, max_new_tokens=20, num_beams=2)]
    tok, model = AutoTokenizer.from_pretrained(flow["out"]), AutoModelForSeq2SeqLM.from_pretrained(flow["out"])
    tok.src_lang = src
    assert tok.convert_tokens_to_ids(tgt) == _fairseq(flow).langtok(flow["codes"]["it"])
    want = []
    for line in lines:  # the pipeline translates one sentence at a time
        ids = model.generate(**tok([line], return_tensors="pt"), forced_bos_token_id=tok.convert_tokens_to_ids(tgt),
                             max_new_tokens=20, num_beams=2)
        assert ids[0, 1] == tok.convert_tokens_to_ids(tgt)
        want.append(tok.decode(ids[0], skip_special_tokens=True))
    assert got == want and all(got)


def test_ct2_float32_greedy_equals_fairseq(flow, verses, tmp_path):
    if importlib.util.find_spec("mmt_upgrade.pipeline.export.ct2") is None:
        pytest.skip("mmt_upgrade/pipeline/export/ct2.py (export_ct2) is not there yet")
    import ctranslate2

    out = tmp_path / "ct2"
    run_cli("mmt-upgrade", "export", str(flow["up"]), "--checkpoint", str(flow["ft"]), "--to", "ct2", str(out),
            "--quantization", "float32")
    fm = _fairseq(flow)
    src, tgt = flow["codes"]["en"], flow["codes"]["it"]
    lines = _lines(verses, "test", "en", SENTENCES)
    pieces = fm.tokenizer.encode(src, lines)
    eos = fm.index["</s>"]
    rows = [torch.tensor([fm.langtok(src), *fm.ids(p), eos]) for p in pieces]
    src_tokens, src_lengths, _, _ = collate_pairs(rows, None, fm.index["<pad>"], eos)
    ours = greedy(fm, src_tokens, src_lengths, tgt, 30)
    sym = fm.symbols
    results = ctranslate2.Translator(str(out), device="cpu").translate_batch(  # CTranslate2 appends </s> itself
        [[sym[i] for i in r.tolist()[:-1]] for r in rows], target_prefix=[[sym[fm.langtok(tgt)]]] * SENTENCES,
        beam_size=1, max_decoding_length=31)
    assert [r.hypotheses[0][1:] for r in results] == ours


def _post_norm(flow, work: Path) -> Path:
    state = torch.load(flow["ft"], map_location="cpu", weights_only=False)
    state["cfg"]["model"].encoder_normalize_before = False
    torch.save(state, work / "post_norm.pt")
    return work / "post_norm.pt"


def _learned_positions(flow, work: Path) -> Path:
    state = torch.load(flow["ft"], map_location="cpu", weights_only=False)
    state["cfg"]["model"].decoder_learned_pos = True
    torch.save(state, work / "learned.pt")
    return work / "learned.pt"


def _unshared(flow, work: Path) -> Path:
    state = torch.load(flow["ft"], map_location="cpu", weights_only=False)
    state["model"]["decoder.output_projection.weight"] = state["model"]["decoder.output_projection.weight"] + 1
    torch.save(state, work / "unshared.pt")
    return work / "unshared.pt"


def _bart_dir(flow, work: Path) -> Path:
    from transformers import BartConfig, BartForConditionalGeneration

    d = work / "bart"
    BartForConditionalGeneration(BartConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1,
                                            encoder_ffn_dim=16, decoder_ffn_dim=16, encoder_attention_heads=2,
                                            decoder_attention_heads=2, max_position_embeddings=32)).save_pretrained(d)
    return d


def _no_spm(flow, work: Path) -> Path:
    d = work / "no_spm"
    shutil.copytree(flow["hf0"], d)
    (d / "sentencepiece.bpe.model").unlink()
    return d


BAD = {  # case -> (make input, command line for it and OUT, culprit the error names)
    "HF directory of another architecture": (_bart_dir, lambda f, x, o: ["import", str(x), "--out", str(o)],
                                            "model_type 'bart'"),
    "missing tokenizer files": (_no_spm, lambda f, x, o: ["import", str(x), "--out", str(o)],
                                "sentencepiece.bpe.model"),
    "export target exists": (lambda f, w: None, lambda f, x, o: ["export", str(f["up"]), "--to", "hf", str(f["up"])],
                             "exists"),
    "post-norm model": (_post_norm, lambda f, x, o: ["export", str(f["up"]), "--checkpoint", str(x), "--to", "hf",
                                                     str(o)], "--encoder-normalize-before"),
    "learned positions": (_learned_positions, lambda f, x, o: ["export", str(f["up"]), "--checkpoint", str(x),
                                                               "--to", "hf", str(o)], "--decoder-learned-pos"),
    "unshared embeddings": (_unshared, lambda f, x, o: ["export", str(f["up"]), "--checkpoint", str(x), "--to", "hf",
                                                        str(o)], "decoder.output_projection.weight"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_error_and_nothing_is_written(flow, case, tmp_path):
    if flow["layout"] != "nllb":
        pytest.skip("run once, on the NLLB flow")
    make, argv, culprit = BAD[case]
    (tmp_path / "work").mkdir()
    given = make(flow, tmp_path / "work")
    out = tmp_path / "target" / "out"
    out.parent.mkdir()
    before = sorted(flow["up"].iterdir())
    res = run_cli("mmt-upgrade", *argv(flow, given, out), check=False)
    assert res.returncode == 2, res.stdout + res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert culprit in res.stderr.strip().splitlines()[-1], res.stderr[-2000:]
    assert list(out.parent.iterdir()) == [] and sorted(flow["up"].iterdir()) == before
