"""Issue 14 end to end on checkpoints trained by the real fairseq-train in the layouts people download (M2M-100,
M2M-100 saved as `args` alone, NLLB-200 with and without data-source tags, mbart-style tokens): upgrade with a
new language from raw text through the fixed command line, verify, fine-tune with the plugins, translate raw
text through the merged SentencePiece model; and bad input refused before anything is written."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from mmt_upgrade.core.paths import PLUGIN_DIR
from mmt_upgrade.core.spm import train_spm
from mmt_upgrade.fairseq_io.model_files import ModelFiles
from mmt_upgrade.fairseq_io.models import collate_pairs, teacher_forced_logits

from ..conftest import run_cli
from .layouts import M2M, M2M_ARGS, MBART, NLLB, NLLB_TAGS, TINY, Built, Layout, binarize_upgraded, bible_verses, \
    build_layout, dictionary_pieces, hypotheses, report_commands, retarget, upgraded_layout_argv

LAYOUTS = {x.name: x for x in (M2M, M2M_ARGS, NLLB, NLLB_TAGS, MBART)}
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
TAGS = ["<MINED_DATA>", "<MMT_BT_DATA>", "<SMT_BT_DATA>"]
SENTENCES = 6  # translated by fairseq-generate and fairseq-interactive


@pytest.fixture(scope="session")
def verses(bible_db):
    return bible_verses(bible_db)


@pytest.fixture(scope="session")
def _models(verses, tmp_path_factory) -> dict[str, Built]:
    return {}


def _built(name: str, models: dict[str, Built], verses, tmp_path_factory) -> Built:
    if name not in models:
        models[name] = build_layout(LAYOUTS[name], verses, tmp_path_factory.mktemp("layouts") / name)
    return models[name]


def upgrade_argv(old: Built, out: Path) -> list[str]:
    """The issue's fixed command line: checkpoint, dictionary, SentencePiece model, langs file, raw text."""
    lay = old.layout
    argv = [str(old.checkpoint), "--dict", str(old.dict), "--spm", str(old.spm)]
    if old.langs_file:
        argv += ["--langs-file", str(old.langs_file)]
    if lay.langtoks_in_file:  # more flags are welcome: M2M's language-pairs file, extended in the output
        argv += ["--lang-pairs-file", str(old.root / "language_pairs.txt")]
    argv += ["--new-langs", lay.new, "--text", f"{lay.new}={old.raw['train'][lay.new]}"]
    argv += [a for code in lay.old for a in ("--dev-text", f"{code}={old.raw['dev'][code]}")]
    return argv + ["--new-spm-size", "500", "--out", str(out)]


@pytest.fixture(scope="module", params=list(LAYOUTS))
def upgraded(request, _models, verses, tmp_path_factory) -> tuple[Built, Path, dict]:
    old = _built(request.param, _models, verses, tmp_path_factory)
    out = tmp_path_factory.mktemp(f"up-{old.layout.name}") / "out"
    run_cli("mmt-upgrade", "upgrade", *upgrade_argv(old, out))
    return old, out, json.loads((out / "upgrade.json").read_text())


def fairseq_rows(dict_file: Path, lay: Layout, langs: list[str]) -> list[str]:
    """The rows fairseq builds from a dictionary file and --langs (written out here from fairseq's
    `augment_dictionary`, independently of core/symbols.py)."""
    symbols = [line.split()[0] for line in dict_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = SPECIALS + symbols
    rows += [t for t in map(lay.token, langs) if t not in rows]
    return rows + (["<mask>"] if lay.style == "mbart" else []) + (TAGS if lay.tags else [])


def _embedding(path: Path) -> torch.Tensor:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]["encoder.embed_tokens.weight"]


def test_output_looks_like_the_input_and_keeps_every_old_row(upgraded):
    old, out, report = upgraded
    lay = old.layout
    new_langs = lay.old + [lay.new]
    old_rows, new_rows = fairseq_rows(old.dict, lay, lay.old), fairseq_rows(out / "dict.txt", lay, new_langs)
    old_emb, new_emb = _embedding(old.checkpoint), _embedding(out / "checkpoint.pt")
    assert (len(old_rows), len(new_rows)) == (old_emb.shape[0], new_emb.shape[0])
    assert set(old_rows) < set(new_rows) and lay.token(lay.new) in new_rows
    for i, sym in enumerate(old_rows):  # rows matched by symbol string: every old row kept bit for bit
        assert torch.equal(new_emb[new_rows.index(sym)], old_emb[i]), sym
    old_symbols = old.dict.read_text(encoding="utf-8").splitlines()
    new_symbols = (out / "dict.txt").read_text(encoding="utf-8").splitlines()
    old_names, new_names = [x.split()[0] for x in old_symbols], [x.split()[0] for x in new_symbols]
    if lay.langtoks_in_file:  # M2M: the new token in the model dictionary, a data dictionary of pieces alone
        assert lay.token(lay.new) in new_names
        data = [x.split()[0] for x in (out / "data_dict.txt").read_text(encoding="utf-8").splitlines()]
        assert new_names[:len(data)] == data  # pieces first: binarized ids are the model's ids, new pieces too
        assert [x for x in new_names if x in set(old_names)] == old_names  # old symbols keep their order
        assert not any(re.fullmatch(r"__.*__|madeupword\d{4}", x) for x in data)
        assert data[:len(old.data_dict.read_text().splitlines())] == [
            x.split()[0] for x in old.data_dict.read_text(encoding="utf-8").splitlines()]
    else:  # the dictionary file is only appended to, language tokens come at run time
        assert new_names[:len(old_names)] == old_names
        assert not any(x.split()[0] == lay.token(c) for x in new_symbols for c in new_langs)
    if lay.langs_file:
        assert (out / "lang_dict.txt").read_text().split() == new_langs
    commands = report_commands(report)
    assert set(commands) == {"fairseq-generate", "fairseq-interactive"}
    assert all(str(PLUGIN_DIR) in c for c in commands.values())


def test_merged_sentencepiece_model_keeps_old_segmentation(upgraded):
    """One SentencePiece model out: old-language text is segmented exactly as by the old model, new-language text
    only into pieces of the upgraded dictionary."""
    old, out, _ = upgraded
    lay = old.layout
    before, merged = (spm.SentencePieceProcessor(model_file=str(f)) for f in (old.spm, out / "spm.model"))
    for code in lay.old:
        lines = old.raw["dev"][code].read_text(encoding="utf-8").splitlines()
        assert [merged.encode(x, out_type=str) for x in lines] == [before.encode(x, out_type=str) for x in lines]
    symbols = {line.split()[0] for line in (out / "dict.txt").read_text(encoding="utf-8").splitlines()}
    new = [p for x in old.raw["dev"][lay.new].read_text(encoding="utf-8").splitlines()
           for p in merged.encode(x, out_type=str)]
    assert set(new) <= symbols and len(new) > 0


def test_m2m_output_extends_the_language_pairs_file(upgraded):
    old, out, _ = upgraded
    if not old.layout.langtoks_in_file:
        pytest.skip("M2M layout only")
    lay = old.layout
    pairs = (out / "language_pairs.txt").read_text().strip().split(",")
    old_pairs = (old.root / "language_pairs.txt").read_text().strip().split(",")
    assert pairs[:len(old_pairs)] == old_pairs and {f"{lay.new}-{lay.old[0]}", f"{lay.old[0]}-{lay.new}"} <= set(pairs)


def test_verify_at_1e5(upgraded, tmp_path):
    """The upgraded model gives every old symbol the old model's log-probability (old rows renormalised) and the
    same greedy output, on every old language's dev text, read from the old model's own files."""
    old, out, _ = upgraded
    figures = tmp_path / "verify.json"
    res = run_cli("mmt-upgrade", "verify", str(old.checkpoint), str(out), "--json", str(figures),
                  "--dict", str(old.dict), "--spm", str(old.spm),
                  *(["--langs-file", str(old.langs_file)] if old.langs_file else []),
                  *[a for code in old.layout.old for a in ("--dev-text", f"{code}={old.raw['dev'][code]}")],
                  "--sentences", "12")
    result = json.loads(figures.read_text())
    assert result["max_abs_logprob_diff"] <= 1e-5, res.stdout
    assert result["greedy_identical"] == result["sentences"] == 12 * len(result["directions"]), res.stdout
    assert {d.split("-")[0] for d in result["directions"]} | {d.split("-")[1] for d in result["directions"]} == set(
        old.layout.old)


def test_dev_text_of_one_old_language_is_enough(upgraded, tmp_path):
    """A 202-language model is upgraded with the dev text of the languages one has: the checks and figures are
    measured on those (and recorded), and the checkpoint is the one built with every language's dev text."""
    old, out, report = upgraded
    if old.layout.name != "nllb":
        pytest.skip("one layout is enough")
    argv = upgrade_argv(old, tmp_path / "one")
    dev = [i for i, x in enumerate(argv) if x == "--dev-text"]
    one = [x for i, x in enumerate(argv) if i not in dev[1:] and i - 1 not in dev[1:]]
    run_cli("mmt-upgrade", "upgrade", *one)
    got = json.loads((tmp_path / "one" / "upgrade.json").read_text())
    first = old.layout.old[0]
    assert got["dev_text_langs"] == {"measured": [first], "old_langs": len(old.layout.old)}
    assert report["dev_text_langs"]["measured"] == old.layout.old
    assert set(got["segmentation_change"]) == {first} and got["rows_check"]["langs"] == [first]
    assert got["segmentation_change"][first] == report["segmentation_change"][first]
    mine, full = (torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
                  for d in (tmp_path / "one", out))
    assert mine.keys() == full.keys() and all(torch.equal(mine[k], full[k]) for k in full)


def rescore(files: ModelFiles, src: str, tgt: str, lines: list[str], hyps: list[list[str]]) -> list[list[float]]:
    """log2-probabilities of each hypothesis' tokens (its language token, pieces, `</s>`) given its raw source line,
    as fairseq prints them (`P-` lines)."""
    m, sp = files.load(), spm.SentencePieceProcessor(model_file=str(files.spm))
    pad, eos = m.index["<pad>"], m.index["</s>"]
    srcs = [torch.tensor([m.langtok(src), *m.ids(sp.encode(x, out_type=str)), eos]) for x in lines]
    tgts = [torch.tensor([m.langtok(tgt), *m.ids(h), eos]) for h in hyps]
    src_tokens, src_lengths, prev, target = collate_pairs(srcs, tgts, pad, eos)
    logp = teacher_forced_logits(m, src_tokens, src_lengths, prev).log_softmax(-1)
    scores = logp.gather(-1, target[..., None]).squeeze(-1) / math.log(2)
    return [scores[k, :len(t)].tolist() for k, t in enumerate(tgts)]


def teacher_argv(old: Built) -> list[str]:
    """The distillation teacher: the old model in its own layout, its files given as a downloaded model's are (the
    M2M fixture's config names its dictionary and language list where they are: found there, not given)."""
    argv = ["--teacher-path", str(old.checkpoint), "--teacher-spm", str(old.spm)]
    if old.layout.name != "m2m":
        argv += ["--teacher-dict", str(old.dict)]
    return argv + (["--teacher-langs-file", str(old.langs_file)] if old.langs_file else [])


def test_finetune_with_the_plugins_then_generate_equals_interactive(upgraded, tmp_path):
    old, out, report = upgraded
    lay = old.layout
    if lay.name in ("m2m", "nllb"):  # about 45 s each; the suite must stay under CI's 30 minutes
        pytest.skip("covered by m2m_args (the same files, saved as legacy args) and nllb_tags (NLLB plus its tags)")
    pivot, new = lay.old[0], lay.new
    bin_dir = binarize_upgraded(old, out, tmp_path / "data", {"train": 120, "valid": 20, "dev": SENTENCES + 2})
    pairs = ",".join(f"{a}-{b}" for c in lay.old[1:] + [new] for a, b in ((c, pivot), (pivot, c)))
    log = run_cli("fairseq-train", str(bin_dir), *upgraded_layout_argv(old, out, pairs), *TINY,
                  *(["--encoder-normalize-before", "--decoder-normalize-before"] if lay.prenorm else []),
                  "--finetune-from-model", str(out / "checkpoint.pt"), "--save-dir", str(tmp_path / "ft"),
                  "--max-update", "20", "--save-interval-updates", "20", "--log-interval", "5",
                  "--optimizer", "adam_scaled", "--lr-scale-old", "0.1",
                  "--sampling-method", "temperature", "--upsample-langs", new, "--upsample-factor", "4",
                  "--criterion", "cross_vocab_distillation", *teacher_argv(old),
                  "--student-tokenizer", str(out / "spm.model"))
    text = log.stdout + log.stderr
    assert re.findall(r"num_updates[ =](\d+)", text)[-1] == "20" and "kd_loss=" in text
    # the old directions are distilled, every target token aligned (old text keeps its pieces under the merged
    # model), the new language's are not: 0 < kd_share < 1
    train = [line for line in text.splitlines() if "kd_loss=" in line and "valid" not in line]
    assert all(re.search(r"kd_aligned=1(\.0+)?\b", line) for line in train), text[-3000:]
    shares = [float(re.search(r"kd_share=([\d.]+)", line).group(1)) for line in train]
    assert all(0 < x < 1 for x in shares), text[-3000:]
    ckpt = tmp_path / "ft" / "checkpoint_last.pt"
    assert not torch.equal(_embedding(ckpt), _embedding(out / "checkpoint.pt"))

    commands = report_commands(report)
    files = ModelFiles.open(out, checkpoint=ckpt)
    for src, tgt in ((pivot, new), (new, pivot), (lay.old[1], pivot)):
        direction = ["-s", src, "-t", tgt, "--lang-pairs", f"{src}-{tgt}", "--path", str(ckpt), "--beam", "2", "--batch-size", "1",
                     "--max-len-a", "0", "--max-len-b", "30", "--cpu", "--cpu-bf16", "never"]
        gen = run_cli("fairseq-generate", *retarget(commands["fairseq-generate"], bin_dir), *direction,
                      "--gen-subset", "test")
        g = hypotheses(gen.stdout)
        ids = sorted(g)[:SENTENCES]  # fairseq-generate may leave out a sentence it finds too long
        assert len(ids) == SENTENCES, gen.stdout[-2000:]
        lines = old.raw["dev"][src].read_text(encoding="utf-8").splitlines()
        inter = run_cli("fairseq-interactive", *retarget(commands["fairseq-interactive"], out), *direction,
                        stdin="".join(lines[k] + "\n" for k in ids))  # raw text, through the merged SentencePiece model
        i = hypotheses(inter.stdout)
        assert [i[k] for k in range(SENTENCES)] == [g[k] for k in ids], (gen.stdout[-2000:], inter.stdout[-2000:])
        assert len({g[k][1] for k in ids}) == SENTENCES  # each sentence scored on its own
        # independently: the fine-tuned model read by ModelFiles from the upgraded directory scores each hypothesis
        # (teacher-forced, raw source through the merged model) as fairseq's search did, token by token
        pieces = {int(k): x.split(" ") for k, x in re.findall(r"^H-(\d+)\t\S+\t(.*)$", inter.stdout, re.M)}
        mine = rescore(files, src, tgt, [lines[k] for k in ids], [pieces[k] for k in range(SENTENCES)])
        for k in range(SENTENCES):
            theirs = [float(x) for x in i[k][1].split()]
            assert len(theirs) == len(mine[k]) and max(abs(a - b) for a, b in zip(theirs, mine[k])) < 2e-3, (
                src, tgt, k, theirs, mine[k])


def _with(argv: list[str], flag: str, value: str) -> list[str]:
    """`argv` with the (first) value of `flag` replaced."""
    i = argv.index(flag)
    return argv[:i + 1] + [value] + argv[i + 2:]


@pytest.fixture(scope="module")
def bad_inputs(_models, verses, tmp_path_factory) -> dict[str, tuple[list[str], str]]:
    """Each bad input (on an M2M-, NLLB- or mbart-style model): the command line, and the culprit its error names."""
    m2m, nllb, mbart = (_built(x, _models, verses, tmp_path_factory) for x in ("m2m", "nllb", "mbart"))
    work = tmp_path_factory.mktemp("bad")
    base = {name: upgrade_argv(b, work / "out") for name, b in (("m2m", m2m), ("nllb", nllb), ("mbart", mbart))}
    other_spm = train_spm({"it": verses.lines["train"]["it"]}, work / "it.model", 700, 300, seed=1,
                          byte_fallback=False)
    reordered = work / "langs.txt"
    reordered.write_text("".join(x + "\n" for x in [nllb.layout.old[0], *reversed(nllb.layout.old[1:])]))
    latin1 = work / "latin1.txt"
    latin1.write_bytes(m2m.raw["train"]["it"].read_text(encoding="utf-8").encode("latin-1"))
    assert "è".encode("latin-1") in latin1.read_bytes()
    assert "--dev-text" in base["nllb"]
    dev_flags = [i for i, x in enumerate(base["nllb"]) if x == "--dev-text"]
    no_dev = [x for i, x in enumerate(base["nllb"]) if i not in dev_flags and i - 1 not in dev_flags]
    return {
        "no dev text": (no_dev, "--dev-text"),
        "dev text of a language the model lacks": (no_dev + ["--dev-text", f"xx_Yyyy={nllb.raw['dev']['eng_Latn']}"],
                                                   "--dev-text xx_Yyyy"),
        # the data dictionary (no language tokens, no fillers) instead of the model dictionary: 8 + 3 rows short
        "row count": (_with(base["m2m"], "--dict", str(m2m.data_dict)), str(m2m.data_dict)),
        "SentencePiece model not covering the dictionary": (_with(base["m2m"], "--spm", str(other_spm)),
                                                            str(other_spm)),
        "langs file disagreeing": (_with(base["nllb"], "--langs-file", str(reordered)), str(reordered)),
        "code already in the model": (_with(_with(base["m2m"], "--new-langs", "es"), "--text",
                                            f"es={m2m.raw['train']['it']}"), "es"),
        "code with whitespace": (_with(_with(base["m2m"], "--new-langs", "a b"), "--text",
                                       f"a b={m2m.raw['train']['it']}"), "a b"),
        "empty code": (_with(base["m2m"], "--new-langs", "it,"), "--new-langs"),
        "code with a comma": (base["m2m"] + ["--text", f"x,y={m2m.raw['train']['it']}"], "x,y"),
        "text not in UTF-8": (_with(base["m2m"], "--text", f"it={latin1}"), str(latin1)),
    }


@pytest.fixture(scope="module")
def another_models_pair(verses, tmp_path_factory) -> tuple[list[str], str]:
    """A consistent dictionary + SentencePiece pair of another model of the same size (a SentencePiece model learnt on
    other verses, its dictionary in fairseq's frequency order, like the model's own), given with an mbart-style
    model trained long enough to know more than piece frequencies: a 20-update model knows only those, and nothing
    can tell a frequency-ordered dictionary of another model from its own (rows_check.py)."""
    work = tmp_path_factory.mktemp("another")
    mbart = build_layout(MBART, verses, work / "mbart", updates=TRAINED_LONGER)
    other_text = {b: verses.lines["valid"][b] + verses.lines["test"][b] + verses.lines["dev"][b] + verses.lines[
        "train"]["it"] for b in ("en", "es", "fr")}
    another_spm = train_spm(other_text, work / "another.model", 700, 1000, seed=2, byte_fallback=False)
    sp = spm.SentencePieceProcessor(model_file=str(another_spm))
    another_dict = work / "another_dict.txt"
    another_dict.write_text("".join(f"{p} {c}\n" for p, c in dictionary_pieces(
        sp, [x for lines in other_text.values() for x in lines], True)), encoding="utf-8")
    assert len(another_dict.read_text().splitlines()) == len(mbart.dict.read_text().splitlines())
    own = work / "own"  # the model's own pair passes the same check (the control of this test)
    run_cli("mmt-upgrade", "upgrade", *upgrade_argv(mbart, own))
    check = json.loads((own / "upgrade.json").read_text())["rows_check"]
    assert check["swap_control_conclusive"], check
    argv = _with(_with(upgrade_argv(mbart, work / "out"), "--dict", str(another_dict)), "--spm", str(another_spm))
    return argv, str(another_dict)


TRAINED_LONGER = 300  # updates of the model given another model's pair
BAD = ["row count", "another model's dictionary", "SentencePiece model not covering the dictionary",
       "langs file disagreeing", "code already in the model", "code with whitespace", "empty code",
       "code with a comma", "text not in UTF-8", "no dev text", "dev text of a language the model lacks"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_clear_error_naming_the_culprit_and_nothing_is_written(case, request, tmp_path):
    cases = {"another model's dictionary": "another_models_pair"}
    if case in cases:  # built only when asked for
        argv, culprit = request.getfixturevalue(cases[case])
    else:
        argv, culprit = request.getfixturevalue("bad_inputs")[case]
    out = tmp_path / "out"
    before = sorted(out.parent.iterdir())
    res = run_cli("mmt-upgrade", "upgrade", *_with(argv, "--out", str(out)), check=False)
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    message = res.stderr.strip().splitlines()[-1]
    assert culprit in message, res.stderr[-2000:]
    assert sorted(out.parent.iterdir()) == before and not out.exists()
