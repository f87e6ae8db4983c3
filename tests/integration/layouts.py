"""Small checkpoints trained by the real `fairseq-train` in the layouts people download.

- `m2m`: M2M-100's files. `model_dict.txt` holds the pieces in fairseq's frequency order (not SentencePiece
  id order), then the `__xx__` language tokens, then `madeupword0000..0007`; `data_dict.txt` (the pieces
  alone) binarises the data; trained by plain fairseq with `--task translation_multi_simple_epoch
  --fixed-dictionary model_dict.txt --encoder-langtok src --decoder-langtok`; `language_pairs.txt`.
  Variant `m2m_args`: the same checkpoint saved as the published M2M-100 files are, the `args` Namespace
  alone (no `cfg`), which fairseq converts on load.
- `nllb`: FLORES codes, `dictionary.txt` without language tokens (SentencePiece id order, as NLLB's),
  the language tokens appended at run time from a langs file (`--lang-dict langs.txt`), pre-norm, all
  embeddings shared; with `--add-data-source-prefix-tags` (the plugin's flag) when `tags`.
- `mbart`: `--lang-tok-style mbart` (`[xx_XX]` tokens and `<mask>`), frequency-ordered pieces-only
  dictionary, `--langs` list.

The text is aligned Bible verses (en, es, fr; it is the language added by the tests).
"""
from __future__ import annotations

import argparse
import random
import re
import shlex
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import sentencepiece as spm
import torch

from mmt_upgrade.core.paths import PLUGIN_DIR
from mmt_upgrade.core.spm import train_spm
from mmt_upgrade.pipeline.data.bible import Corpus

from ..conftest import run_cli

BIBLE = ("en", "es", "fr", "it")
FILLERS = tuple(f"madeupword{i:04d}" for i in range(8))
SPLITS = {"train": 300, "valid": 30, "test": 30, "dev": 40}
TINY = ["--arch", "transformer", "--share-all-embeddings", "--encoder-layers", "1", "--decoder-layers", "1",
        "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
        "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "2",
        "--dropout", "0.1", "--adam-betas", "(0.9,0.98)", "--lr", "0.003", "--lr-scheduler", "inverse_sqrt",
        "--warmup-updates", "10", "--label-smoothing", "0.1", "--max-tokens", "2000", "--max-source-positions", "128",
        "--max-target-positions", "128", "--seed", "1", "--cpu", "--num-workers", "0", "--log-format", "simple",
        "--log-interval", "10", "--no-epoch-checkpoints", "--skip-invalid-size-inputs-valid-test"]
OLD_TRAINING = ["--optimizer", "adam", "--criterion", "label_smoothed_cross_entropy"]  # the plugins fine-tune


@dataclass(frozen=True)
class Layout:
    """How one family of published checkpoints names languages and lays out its vocabulary."""

    name: str
    codes: dict[str, str]  # Bible language -> the layout's code; the first is the pivot, the last the new one
    style: str = "multilingual"
    langtoks_in_file: bool = False  # M2M: the language tokens and fillers are lines of the model dictionary
    frequency_order: bool = True
    langs_file: bool = False  # --lang-dict FILE instead of --langs a,b,c
    prenorm: bool = False
    tags: bool = False  # --add-data-source-prefix-tags (the plugin's flag)
    args_only: bool = False  # saved as the published M2M-100 files: `args`, no `cfg`

    @property
    def old(self) -> list[str]:
        return list(self.codes.values())[:-1]

    @property
    def new(self) -> str:
        return list(self.codes.values())[-1]

    def token(self, code: str) -> str:
        return f"[{code}]" if self.style == "mbart" else f"__{code}__"


M2M = Layout("m2m", {"en": "en", "es": "es", "fr": "fr", "it": "it"}, langtoks_in_file=True)
M2M_ARGS = Layout("m2m_args", M2M.codes, langtoks_in_file=True, args_only=True)
NLLB = Layout("nllb", {"en": "eng_Latn", "es": "spa_Latn", "fr": "fra_Latn", "it": "ita_Latn"},
              frequency_order=False, langs_file=True, prenorm=True)
NLLB_TAGS = Layout("nllb_tags", NLLB.codes, frequency_order=False, langs_file=True, prenorm=True, tags=True)
MBART = Layout("mbart", {"en": "en_XX", "es": "es_XX", "fr": "fr_XX", "it": "it_IT"}, style="mbart")


@dataclass
class Texts:
    """Aligned verses: split -> Bible language -> lines (same verse on the same line everywhere)."""

    lines: dict[str, dict[str, list[str]]]


def bible_verses(db: Path, seed: int = 1) -> Texts:
    """Short verses every one of en, es, fr, it has, shuffled and cut into train/valid/test/dev."""
    corpus = Corpus.load(db, BIBLE)
    ids = sorted(set.intersection(*(set(corpus.verses[x]) for x in BIBLE)))
    ids = [i for i in ids if all(len(corpus.verses[x][i]) <= 160 for x in BIBLE)]
    random.Random(seed).shuffle(ids)
    out, start = {}, 0
    for split, n in SPLITS.items():
        out[split] = {x: [corpus.verses[x][i] for i in ids[start:start + n]] for x in BIBLE}
        start += n
    return Texts(out)


@dataclass
class Built:
    """One trained model in its layout, with the files its users hold."""

    layout: Layout
    root: Path
    checkpoint: Path
    spm: Path
    dict: Path  # what `--dict` gets: model_dict.txt (M2M), else the pieces-only dictionary
    data_dict: Path  # binarises the data
    bin_dir: Path
    raw: dict[str, dict[str, Path]] = field(default_factory=dict)  # split -> code -> raw text file
    train_argv: list[str] = field(default_factory=list)

    @property
    def langs_file(self) -> Path | None:
        return self.root / "langs.txt" if self.layout.langs_file else None

    def layout_argv(self) -> list[str]:
        """The task flags that set up this layout's vocabulary (for training, generation, the teacher)."""
        lay = self.layout
        pairs = ",".join(f"{s}-{lay.old[0]}" for s in lay.old[1:]) + "," + ",".join(
            f"{lay.old[0]}-{s}" for s in lay.old[1:])
        argv = ["--lang-pairs", pairs, "--encoder-langtok", "src", "--decoder-langtok",
                "--lang-tok-style", lay.style]
        argv += ["--lang-dict", str(self.langs_file)] if lay.langs_file else ["--langs", ",".join(lay.old)]
        if lay.langtoks_in_file or lay.style == "mbart" or lay.name.startswith("nllb"):
            argv += ["--fixed-dictionary", str(self.dict)]
        if lay.tags:
            argv += ["--add-data-source-prefix-tags"]
        return argv


def _pieces(sp: spm.SentencePieceProcessor) -> list[str]:
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i))]


def encode_file(sp: spm.SentencePieceProcessor, lines: list[str], path: Path) -> Path:
    path.write_text("".join(" ".join(sp.encode(x, out_type=str)) + "\n" for x in lines), encoding="utf-8")
    return path


def dictionary_pieces(sp: spm.SentencePieceProcessor, train_lines: list[str], frequency: bool) -> list[tuple[str, int]]:
    """Every piece with its count in the training text: by count, as fairseq-preprocess orders them (ties
    by SentencePiece id), or in SentencePiece id order."""
    counts = Counter(p for line in train_lines for p in sp.encode(line, out_type=str))
    pieces = _pieces(sp)
    if frequency:
        pieces = sorted(pieces, key=lambda p: -counts[p])  # stable: ties keep SentencePiece id order
    return [(p, counts[p]) for p in pieces]


def save_args_only(src: Path, dst: Path) -> Path:
    """The checkpoint as the published M2M-100 files are: one flat `args` Namespace, no `cfg`."""
    state = torch.load(src, map_location="cpu", weights_only=False)
    cfg = state.pop("cfg")
    # fairseq keeps every flag of a dataclass-less task here; `_name` is its own bookkeeping, not a flag
    args = argparse.Namespace(**{k: v for k, v in vars(cfg["task"]).items() if k != "_name"})
    for section in ("common", "checkpoint", "dataset", "optimization", "distributed_training"):
        for k, v in dict(cfg[section]).items():
            if not hasattr(args, k):
                setattr(args, k, v)
    args.arch, args.task = cfg["model"]._name, cfg["task"]._name
    state["args"] = args
    torch.save(state, dst)
    return dst


def build_layout(layout: Layout, texts: Texts, root: Path, updates: int = 20) -> Built:
    """Write the layout's files, binarise the text with `fairseq-preprocess` and train with `fairseq-train`."""
    root.mkdir(parents=True)
    codes = layout.codes
    old_bible = [b for b in codes if codes[b] in layout.old]
    train = {b: texts.lines["train"][b] for b in old_bible}
    spm_path = train_spm(train, root / "spm.model", 700, 300, seed=1, byte_fallback=False)
    sp = spm.SentencePieceProcessor(model_file=str(spm_path))
    pieces = dictionary_pieces(sp, [x for lines in train.values() for x in lines], layout.frequency_order)
    data_dict = root / ("data_dict.txt" if layout.langtoks_in_file else "dictionary.txt")
    data_dict.write_text("".join(f"{p} {c}\n" for p, c in pieces), encoding="utf-8")
    model_dict = data_dict
    if layout.langtoks_in_file:
        model_dict = root / "model_dict.txt"
        extra = [f"{layout.token(c)} 1" for c in layout.old] + [f"{f} 0" for f in FILLERS]
        model_dict.write_text(data_dict.read_text(encoding="utf-8") + "".join(x + "\n" for x in extra),
                              encoding="utf-8")
        (root / "language_pairs.txt").write_text(",".join(
            f"{a}-{b}" for a in layout.old for b in layout.old if a != b) + "\n")
    if layout.langs_file:
        (root / "langs.txt").write_text("".join(c + "\n" for c in layout.old))

    raw_dir, pieces_dir, bin_dir = root / "raw", root / "pieces", root / "bin"
    raw_dir.mkdir()
    pieces_dir.mkdir()
    built = Built(layout, root, root / "checkpoint.pt", spm_path, model_dict, data_dict, bin_dir)
    pivot = codes["en"]
    for split in SPLITS:
        built.raw[split] = {}
        for b, code in codes.items():
            built.raw[split][code] = raw_dir / f"{split}.{code}"
            built.raw[split][code].write_text("\n".join(texts.lines[split][b]) + "\n", encoding="utf-8")
    for b in old_bible[1:]:
        code = codes[b]
        for split in ("train", "valid", "test"):
            for lang, bl in ((pivot, "en"), (code, b)):
                encode_file(sp, texts.lines[split][bl], pieces_dir / f"{split}.{pivot}-{code}.{lang}")
        run_cli("fairseq-preprocess", "--source-lang", pivot, "--target-lang", code, "--srcdict", str(data_dict),
                "--tgtdict", str(data_dict), "--destdir", str(bin_dir), "--workers", "1",
                *[a for split in ("train", "valid", "test")
                  for a in (f"--{split}pref", str(pieces_dir / f"{split}.{pivot}-{code}"))])

    save = root / "train"
    task = ["--user-dir", str(PLUGIN_DIR), "--task", "upgrade_translation"] if layout.tags else [
        "--task", "translation_multi_simple_epoch"]
    built.train_argv = [str(bin_dir), *task, *built.layout_argv(), *TINY, *OLD_TRAINING,
                        *(["--encoder-normalize-before", "--decoder-normalize-before"] if layout.prenorm else [])]
    run_cli("fairseq-train", *built.train_argv, "--save-dir", str(save), "--max-update", str(updates),
            "--save-interval-updates", str(updates), "--sampling-method", "temperature",
            "--sampling-temperature", "1.5")
    if layout.args_only:
        save_args_only(save / "checkpoint_last.pt", built.checkpoint)
    else:
        shutil.copyfile(save / "checkpoint_last.pt", built.checkpoint)
    shutil.rmtree(save)
    return built


def report_commands(report: dict) -> dict[str, list[str]]:
    """The fairseq command lines upgrade.json holds, wherever it keeps them, by program."""
    found: dict[str, list[str]] = {}

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list) and x and isinstance(x[0], str) and Path(x[0]).name.startswith("fairseq-"):
            found[Path(x[0]).name] = list(x)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str) and re.match(r"\S*fairseq-(generate|interactive) ", x):
            argv = shlex.split(x)
            found[Path(argv[0]).name] = argv
    walk(report)
    return found


def binarize_upgraded(old: Built, out: Path, work: Path, splits: dict[str, int]) -> Path:
    """Raw text of every direction (pivot <-> each other language), segmented by the merged SentencePiece
    model and binarised with the upgraded data dictionary."""
    lay = old.layout
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    data_dict = out / "data_dict.txt" if lay.langtoks_in_file else out / "dict.txt"
    pivot, bin_dir = lay.old[0], work / "bin"
    work.mkdir(parents=True, exist_ok=True)
    for code in lay.old[1:] + [lay.new]:
        prefs = []
        for split, n in splits.items():
            for lang in (pivot, code):
                lines = old.raw[split][lang].read_text(encoding="utf-8").splitlines()[:n]
                encode_file(sp, lines, work / f"{split}.{pivot}-{code}.{lang}")
            prefs += [f"--{'test' if split == 'dev' else split}pref", str(work / f"{split}.{pivot}-{code}")]
        run_cli("fairseq-preprocess", "--source-lang", pivot, "--target-lang", code, "--srcdict", str(data_dict),
                "--tgtdict", str(data_dict), "--destdir", str(bin_dir), "--workers", "1", *prefs)
    return bin_dir


def upgraded_layout_argv(old: Built, out: Path, pairs: str) -> list[str]:
    """The upgraded model's task flags in its own layout: the files the upgrade wrote."""
    lay = old.layout
    langs = lay.old + [lay.new]
    argv = ["--user-dir", str(PLUGIN_DIR), "--task", "upgrade_translation", "--lang-pairs", pairs,
            "--encoder-langtok", "src", "--decoder-langtok", "--lang-tok-style", lay.style,
            "--fixed-dictionary", str(out / "dict.txt")]
    argv += ["--lang-dict", str(out / "lang_dict.txt")] if lay.langs_file else ["--langs", ",".join(langs)]
    return argv + (["--add-data-source-prefix-tags"] if lay.tags else [])


def hypotheses(stdout: str) -> dict[int, tuple[str, str]]:
    scores = dict(re.findall(r"^P-(\d+)\t(.*)$", stdout, re.M))
    return {int(i): (text, scores[i]) for i, text in re.findall(r"^D-(\d+)\t\S+\t(.*)$", stdout, re.M)}


def retarget(argv: list[str], data: Path) -> list[str]:
    """A command line of upgrade.json (program, DATA, flags) with its data directory replaced and the per-run flags
    (direction, checkpoint, beam) dropped: the test sets those itself."""
    drop = {"-s", "-t", "--lang-pairs", "--path", "--beam", "--batch-size", "--gen-subset"}
    assert not argv[1].startswith("-"), argv
    flags, i = [], 2
    while i < len(argv):
        if argv[i] in drop:
            i += 2
        else:
            flags.append(argv[i])
            i += 1
    return [str(data), *flags]
