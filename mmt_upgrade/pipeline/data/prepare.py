"""`mmt-upgrade data`: Bible -> cleaned English-centric pairs -> SentencePiece -> fairseq data-bin.

The output directory is keyed by a hash of the configuration, so re-running with the same
arguments reuses it; it is built in a temporary directory and renamed into place when complete.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log, sha256_file, sha256_text, write_json_atomic
from mmt_upgrade.core.languages import (
    DEFAULT_HELDOUT_LANGS,
    PIVOT,
    directions,
    model_langs,
)
from mmt_upgrade.core.options import REQUIRED, OptionGroup, comma_list, option
from mmt_upgrade.core.spm import load_spm, train_spm, write_dictionary
from mmt_upgrade.core.vocab import TOKENIZER_FILE, Tokenizer
from mmt_upgrade.fairseq_io.binarize import binarize_pair
from mmt_upgrade.fairseq_io.layout import (
    MANIFEST,
    PreparedData,
    tokenizer_hash,
)
from mmt_upgrade.pipeline.data.bible import (
    SPLITS,
    Corpus,
    VerseId,
    fetch_bible_db,
    split_ids,
)
from mmt_upgrade.pipeline.data.translations import TRANSLATIONS, parse_bible_langs

FORMAT_VERSION = 1


def parse_lang_caps(text: str) -> dict[str, int]:
    """`it=2500,ar=2500` -> {"it": 2500, "ar": 2500}."""
    caps = {}
    for item in comma_list(text):
        lang, _, cap = item.partition("=")
        if not cap.strip().isdigit():
            raise UserInputError(f"--max-train-pairs-per-lang: expected LANG=N, got {item!r}")
        caps[lang.strip()] = int(cap)
    return caps


@dataclass
class DataConfig(OptionGroup):
    """A run config's `data:` section and the `mmt-upgrade data` flags."""

    langs: list[str] = option(REQUIRED, "non-pivot languages, in model order (new ones appended at the end)")
    pivot: str = option(PIVOT, "the language every pair shares")
    max_train_pairs: int = option(8000, "cap on train pairs per language pair")
    max_train_pairs_per_lang: dict[str, int] = option({}, "per-language caps overriding --max-train-pairs",
                                                      metavar="LANG=N,...", parse=parse_lang_caps)
    max_eval_pairs: int = option(0, "dev/test pairs per direction (a seeded sample; 0: all)")
    vocab_size: int = option(8000, "SentencePiece vocabulary size")
    spm_sentences_per_lang: int = option(10000, "SentencePiece training sentences per language")
    byte_fallback: bool = option(True, "SentencePiece byte fallback (no <unk> for unseen characters)")
    heldout_langs: list[str] = option(list(DEFAULT_HELDOUT_LANGS), "languages whose shared verses make the "
                                      "dev and test splits (the same English verses for every direction)")
    seed: int = option(1, "seed of the train sample, the eval sample and SentencePiece")
    tokenizer: str = option("", "an upgraded model directory: encode with its tokenizer and dictionary instead "
                                "of training a new SentencePiece model")

    def __post_init__(self) -> None:
        self.langs = parse_bible_langs(self.langs, "data.langs")
        self.langs = [x for x in self.langs if x != self.pivot]
        self.check()

    def check(self) -> None:
        parse_bible_langs([self.pivot], "data.pivot")
        if not self.langs:
            raise UserInputError("data.langs needs at least one language besides the pivot")
        self.heldout_langs = parse_bible_langs(self.heldout_langs, "data.heldout_langs")
        for lang, cap in self.max_train_pairs_per_lang.items():
            if lang not in self.langs:
                raise UserInputError(f"data.max_train_pairs_per_lang names {lang!r}, which is not in data.langs")
            if int(cap) <= 0:
                raise UserInputError(f"data.max_train_pairs_per_lang[{lang}] must be positive, got {cap}")
        if self.max_train_pairs <= 0:
            raise UserInputError(f"data.max_train_pairs must be positive, got {self.max_train_pairs}")

    def cap(self, lang: str) -> int:
        return int(self.max_train_pairs_per_lang.get(lang, self.max_train_pairs))

    def as_dict(self) -> dict:
        """The configuration as the manifest records it (no `tokenizer` key when unset, as before it existed)."""
        d = asdict(self)
        if not self.tokenizer:
            d.pop("tokenizer")
        return d

    def key(self) -> str:
        parts = [FORMAT_VERSION, self.as_dict()]
        if self.tokenizer:
            parts.append(tokenizer_hash(Path(self.tokenizer)))
        return sha256_text(json.dumps(parts, sort_keys=True))[:12]



def sample_train_ids(train_ids: list[VerseId], cap: int, order: list[VerseId]) -> list[VerseId]:
    """Take up to `cap` ids in one shared random order, so capped pairs share their English verses."""
    allowed = set(train_ids)
    picked = [vid for vid in order if vid in allowed][:cap]
    return sorted(picked)


def build_splits(corpus: Corpus, cfg: DataConfig) -> dict[str, dict[str, list[VerseId]]]:
    """Verse ids per pair (`en-xx`) and split.

    Dev and test are the verses every held-out language has (the same English verses for every
    direction, so old and new directions are scored on the same text); train is capped per pair.
    """
    pair_ids = {lang: corpus.pair_ids(cfg.pivot, lang) for lang in cfg.langs}
    heldout_langs = [x for x in cfg.heldout_langs if x != cfg.pivot and x not in pair_ids]
    heldout = set.intersection(*(set(v) for v in pair_ids.values()))
    for lang in heldout_langs:
        heldout &= set(corpus.pair_ids(cfg.pivot, lang))
    heldout_split = split_ids(heldout)
    all_train = sorted({vid for ids in pair_ids.values() for vid in split_ids(ids)["train"]})
    rng = random.Random(cfg.seed)
    order = list(all_train)
    rng.shuffle(order)
    out: dict[str, dict[str, list[VerseId]]] = {}
    for lang, ids in pair_ids.items():
        name = f"{cfg.pivot}-{lang}"
        train = sample_train_ids(split_ids(ids)["train"], cfg.cap(lang), order)
        splits = {"train": train}
        for split in ("valid", "test"):
            ev = heldout_split[split]
            if cfg.max_eval_pairs:
                ev = sorted(random.Random(cfg.seed).sample(ev, min(cfg.max_eval_pairs, len(ev))))
            splits[split] = ev
        for split, vids in splits.items():
            if not vids:
                raise UserInputError(f"language pair {name}: the {split} split is empty after filtering")
        out[name] = splits
    return out


def bible_texts(cfg: DataConfig, cache: Path, split: str) -> dict[str, list[str]]:
    """One split's text per language (English once, deduplicated), under the same split rules as `prepare_data`."""
    db = fetch_bible_db(cache)
    langs_all = [cfg.pivot] + cfg.langs
    corpus = Corpus.load(db, dict.fromkeys(langs_all + list(cfg.heldout_langs)))
    texts: dict[str, list[str]] = {lang: [] for lang in langs_all}
    for name, by_split in build_splits(corpus, cfg).items():
        for lang in name.split("-"):
            texts[lang] += [corpus.verses[lang][v] for v in by_split[split]]
    return {lang: list(dict.fromkeys(lines)) for lang, lines in texts.items()}


def _copy_tokenizer(src: Path, dst: Path, langs: list[str]) -> tuple[Tokenizer, str]:
    """Copy an upgraded directory's tokenizer and dictionary; returns it and the scoring model's file."""
    tok = Tokenizer.load(src)
    for lang in langs:
        tok.model_path(lang)  # every language must have a model
    for name in [TOKENIZER_FILE, "dict.txt", *set(tok.models.values())]:
        if not (src / name).is_file():
            raise UserInputError(f"data.tokenizer: {src / name} is missing")
        shutil.copyfile(src / name, dst / name)
    tok = Tokenizer.load(dst)
    return tok, tok.models[tok.route[langs[0]]]


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def prepare_data(cfg: DataConfig, cache: Path, out_dir: Path | None = None) -> PreparedData:
    """Build (or reuse) the data directory for `cfg`."""
    cache = Path(cache)
    root = Path(out_dir) if out_dir else cache / "data" / f"{'-'.join([cfg.pivot] + cfg.langs)}-{cfg.key()}"
    if (root / MANIFEST).exists():
        data = PreparedData.open(root)
        if data.manifest.get("config") != cfg.as_dict():
            raise UserInputError(f"{root} holds data prepared with another configuration; choose another --out")
        log(f"data: reusing {root}")
        return data
    if root.exists() and any(root.iterdir()):
        raise UserInputError(f"{root} exists and is not a finished data directory; remove it or choose another --out")
    db = fetch_bible_db(cache)
    langs_all = [cfg.pivot] + cfg.langs
    log(f"data: reading and cleaning {', '.join(langs_all)} from {db}")
    corpus = Corpus.load(db, dict.fromkeys(langs_all + list(cfg.heldout_langs)))
    splits = build_splits(corpus, cfg)

    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "raw").mkdir(parents=True)
    (tmp / "spm").mkdir()
    pairs_count: dict[str, dict[str, int]] = {}
    for name, by_split in splits.items():
        a, b = name.split("-")
        pairs_count[name] = {s: len(v) for s, v in by_split.items()}
        for split, vids in by_split.items():
            _write_lines(tmp / "raw" / f"{split}.{name}.ids", [f"{x[0]} {x[1]} {x[2]}" for x in vids])
            for lang in (a, b):
                _write_lines(tmp / "raw" / f"{split}.{name}.{lang}", [corpus.verses[lang][v] for v in vids])

    if cfg.tokenizer:
        tokenizer, scoring_spm = _copy_tokenizer(Path(cfg.tokenizer), tmp, langs_all)
        log(f"data: encoding with the upgraded tokenizer of {cfg.tokenizer}")
    else:
        log(f"data: training SentencePiece ({cfg.vocab_size} pieces) on a balanced sample")
        train_text: dict[str, list[str]] = {lang: [] for lang in langs_all}
        for name, by_split in splits.items():
            a, b = name.split("-")
            for lang in (a, b):
                train_text[lang] += [corpus.verses[lang][v] for v in by_split["train"]]
        train_text = {lang: sorted(set(lines)) for lang, lines in train_text.items()}
        train_spm(train_text, tmp / "spm.model", cfg.vocab_size, cfg.spm_sentences_per_lang, cfg.seed,
                  cfg.byte_fallback)
        write_dictionary(load_spm(tmp / "spm.model"), tmp / "dict.txt")
        tokenizer, scoring_spm = Tokenizer.single(tmp / "spm.model", langs_all), "spm.model"

    log("data: encoding and binarizing with fairseq's preprocessing")
    for name in splits:
        a, b = name.split("-")
        for split in SPLITS:
            for lang in (a, b):
                raw = (tmp / "raw" / f"{split}.{name}.{lang}").read_text(encoding="utf-8").splitlines()
                _write_lines(tmp / "spm" / f"{split}.{name}.{lang}", [" ".join(p) for p in tokenizer.encode(lang, raw)])
        binarize_pair(tmp / "spm", tmp / "bin", a, b, tmp / "dict.txt", list(SPLITS))
    shutil.rmtree(tmp / "spm")

    hashes = {"bible.db": sha256_file(db)}
    models = sorted(tmp / f for f in set(tokenizer.models.values()))
    for path in sorted([*models, tmp / "dict.txt", *sorted((tmp / "raw").iterdir())]):
        hashes[str(path.relative_to(tmp))] = sha256_file(path)
    manifest = {
        "format": FORMAT_VERSION,
        "pivot": cfg.pivot,
        "langs": cfg.langs,
        "model_langs": model_langs(cfg.pivot, cfg.langs),
        "directions": [f"{s}-{t}" for s, t in directions(cfg.pivot, cfg.langs)],
        "translations": {lang: list(TRANSLATIONS[lang]) for lang in langs_all},
        "pairs": pairs_count,
        "spm_model": scoring_spm,  # the old languages' model (spBLEU uses each target language's own model)
        "tokenizer": {"models": tokenizer.models, "route": tokenizer.route},
        "dict": "dict.txt",
        "bin": "bin",
        "raw": "raw",
        "config": cfg.as_dict(),
        "hashes": hashes,
    }
    write_json_atomic(tmp / MANIFEST, manifest)
    if root.exists():
        root.rmdir()
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    log(f"data: ready at {root}")
    return PreparedData(root, manifest)
