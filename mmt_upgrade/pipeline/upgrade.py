"""`mmt-upgrade upgrade`: a new model directory from an old checkpoint and new-language text.

Checkpoint surgery on the state dict only (no fairseq model is built): every vocabulary-sized
parameter (input embeddings, output projection) gets the new rows in the new symbol order, old rows
copied by piece string, tied parameters kept as one tensor. The old checkpoint is read memory-mapped
and never written; the output directory is built beside its final place and renamed when complete.
"""
from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from mmt_upgrade.core.embeddings import (
    INIT_METHODS,
    composition_matrix,
    init_compose,
    init_mean,
    init_normal,
    init_random,
    init_unk,
    piece_segmenter,
)
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.fairseq_cfg import cfg_fields
from mmt_upgrade.core.files import log, sha256_file, sha256_text, write_json_atomic
from mmt_upgrade.core.growth import GrowthOptions, check_architecture, grow
from mmt_upgrade.core.languages import PIVOT, check_extends, directions, parse_lang_list
from mmt_upgrade.core.record import TASK_STATE_KEY, NewParameterRecord
from mmt_upgrade.core.spm import SPECIALS, load_spm
from mmt_upgrade.core.vocab import (
    VOCAB_MODES,
    Tokenizer,
    VocabularyUpgrade,
    check_spm_matches_dictionary,
    extend_vocabulary,
    keep_vocabulary,
    model_symbols,
    read_dictionary,
    retrain_vocabulary,
    row_sources,
    segmentation_change,
    segmentation_stats,
)
from mmt_upgrade.fairseq_io.checkpoint import (
    checkpoint_langs,
    checkpoint_task_cfg,
    read_checkpoint,
)

UPGRADE_JSON = "upgrade.json"
CHECKPOINT = "checkpoint.pt"
UNK_ID = SPECIALS.index("<unk>")
PAD_ID = SPECIALS.index("<pad>")
VOCAB_PARAM_SUFFIXES = ("embed_tokens.weight", "output_projection.weight")


@dataclass
class UpgradeOptions:
    vocab_mode: str = "extend"
    new_spm_size: int = 4000  # extend: size of the model learnt on the new languages' text
    spm_size: int = 0  # retrain: size of the joint model (0: old pieces + new_spm_size)
    init: str = "unk"
    langtok_init: dict[str, str] = field(default_factory=dict)  # new lang -> old lang to copy, or "mean"
    seed: int = 1
    growth: GrowthOptions = field(default_factory=GrowthOptions)

    def check(self, old_langs: Sequence[str], new_langs: Sequence[str]) -> None:
        if not new_langs and not self.growth.active():
            raise UserInputError("nothing to upgrade: give --new-langs, or growth flags (--add-encoder-layers, "
                                 "--add-decoder-layers, --widen-ffn)")
        self.growth.check()
        if self.vocab_mode not in VOCAB_MODES:
            raise UserInputError(f"--vocab-mode: unknown mode {self.vocab_mode!r}; choose from {', '.join(VOCAB_MODES)}")
        if self.init not in INIT_METHODS:
            raise UserInputError(f"--init: unknown method {self.init!r}; choose from {', '.join(INIT_METHODS)}")
        for lang, source in self.langtok_init.items():
            if lang not in new_langs:
                raise UserInputError(f"--langtok-init names {lang!r}, which is not a new language ({','.join(new_langs)})")
            if source != "mean" and source not in old_langs:
                raise UserInputError(f"--langtok-init {lang}={source}: {source!r} is neither 'mean' nor an old "
                                     f"language ({','.join(old_langs)})")


def parse_langtok_init(text: str) -> dict[str, str]:
    """`it=es,ar=mean` -> {"it": "es", "ar": "mean"}."""
    out = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        lang, sep, source = item.partition("=")
        if not sep or not lang or not source:
            raise UserInputError(f"--langtok-init: expected NEW=OLD or NEW=mean, got {item!r}")
        out[lang.strip()] = source.strip()
    return out


def vocab_param_groups(model_state: Mapping[str, torch.Tensor], n_rows: int, what: str) -> list[list[str]]:
    """Names of the vocabulary-sized parameters, grouped by shared storage (tied embeddings)."""
    names = [k for k in model_state if k.endswith(VOCAB_PARAM_SUFFIXES)]
    if not names:
        raise UserInputError(f"{what}: no embedding or output projection parameters found; only fairseq "
                             "transformer encoder-decoders can be upgraded")
    if any("adaptive" in k for k in model_state):
        raise UserInputError(f"{what}: adaptive input/softmax models are not supported")
    groups: dict[int, list[str]] = {}
    for name in names:
        rows = model_state[name].shape[0]
        if rows != n_rows:
            raise UserInputError(f"{what}: {name} has {rows} rows but the dictionary and language list give "
                                 f"{n_rows} symbols; the dictionary does not belong to this checkpoint")
        groups.setdefault(model_state[name].untyped_storage().data_ptr(), []).append(name)
    return list(groups.values())


def init_new_piece_rows(old: torch.Tensor, n_piece_rows: int, method: str, n_new: int,
                        generator: torch.Generator, compose_weights: torch.Tensor | None) -> torch.Tensor:
    """New rows of one matrix. Statistics (`mean`, `normal`) use the old piece rows only, not specials
    or language tokens."""
    pieces = old[len(SPECIALS): len(SPECIALS) + n_piece_rows]
    if method == "unk":
        return init_unk(old, n_new, UNK_ID)
    if method == "mean":
        return init_mean(pieces, n_new)
    if method == "normal":
        return init_normal(pieces, n_new, generator)
    if method == "random":
        return init_random(old, n_new, generator)
    return init_compose(old, compose_weights)


def init_langtok_rows(old: torch.Tensor, old_langs: Sequence[str], new_langs: Sequence[str],
                      langtok_init: Mapping[str, str]) -> torch.Tensor:
    """Rows of the new language tokens: a copy of a named old language's token, or the old tokens' mean."""
    first = old.shape[0] - len(old_langs)
    rows = []
    for lang in new_langs:
        source = langtok_init.get(lang, "mean")
        if source == "mean":
            rows.append(old[first:].mean(dim=0))
        else:
            rows.append(old[first + list(old_langs).index(source)])
    return torch.stack(rows)


def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """Half-open index ranges where a 1-D bool mask is True."""
    idx = mask.nonzero().flatten().tolist()
    out: list[tuple[int, int]] = []
    for i in idx:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def upgrade_vocab_params(model_state: dict[str, torch.Tensor], old_pieces: Sequence[str], old_langs: Sequence[str],
                         vocab: VocabularyUpgrade, new_langs: Sequence[str], options: UpgradeOptions,
                         compose_weights: torch.Tensor | None, record: NewParameterRecord,
                         what: str) -> dict[str, Any]:
    """Rewrite every vocabulary-sized parameter in `model_state` (in place); returns what was done."""
    old_symbols = model_symbols(old_pieces, old_langs)
    new_symbols = model_symbols(vocab.pieces, list(old_langs) + list(new_langs))
    sources = row_sources(old_symbols, new_symbols)
    langtok_rows = torch.zeros(len(new_symbols), dtype=torch.bool)
    langtok_rows[len(new_symbols) - len(new_langs):] = True
    piece_rows = (sources < 0) & ~langtok_rows
    if (sources[: len(SPECIALS)] != torch.arange(len(SPECIALS))).any():
        raise AssertionError("special symbols moved")
    groups = vocab_param_groups(model_state, len(old_symbols), what)
    if compose_weights is not None and compose_weights.shape[0] != int(piece_rows.sum()):
        raise AssertionError("compose weights do not match the new pieces")
    done = {}
    for gi, names in enumerate(groups):
        old = model_state[names[0]]
        generator = torch.Generator().manual_seed(options.seed * 1000 + gi)
        new = old.new_empty(len(new_symbols), old.shape[1])
        copied = sources >= 0
        new[copied] = old[sources[copied]]
        new[piece_rows] = init_new_piece_rows(old, len(old_pieces), options.init, int(piece_rows.sum()),
                                              generator, compose_weights)
        new[langtok_rows] = init_langtok_rows(old, old_langs, new_langs, options.langtok_init)
        for name in names:
            model_state[name] = new
            for start, stop in _runs(sources < 0):
                record.add_rows(name, start, stop)
        done[", ".join(names)] = {"rows_before": old.shape[0], "rows_after": new.shape[0], "tied": len(names) > 1}
    return {
        "symbols_before": len(old_symbols),
        "symbols_after": len(new_symbols),
        "rows_copied": int((sources >= 0).sum()),
        "new_piece_rows": int(piece_rows.sum()),
        "new_langtok_rows": len(new_langs),
        "params": done,
    }


def _update_cfg(state: dict[str, Any], langs: list[str], pairs: list[str]) -> None:
    """Write the new language list and directions wherever fairseq keeps them (task, model, legacy args)."""
    for ns in (state["cfg"].get("task"), state["cfg"].get("model"), state.get("args")):
        if ns is None:
            continue
        fields = cfg_fields(ns)
        fields["langs"] = langs
        if "lang_pairs" in fields:
            fields["lang_pairs"] = pairs if isinstance(fields["lang_pairs"], list) else ",".join(pairs)


def _set_model_cfg(state: dict[str, Any], values: Mapping[str, Any]) -> None:
    for ns in (state["cfg"].get("model"), state.get("args")):
        if ns is not None:
            cfg_fields(ns).update(values)


def model_flags(model_cfg: Any) -> dict[str, Any]:
    """The size flags of the model as fairseq-train takes them (`encoder-layers`, ...)."""
    fields = cfg_fields(model_cfg)
    keys = ("arch", "encoder_layers", "decoder_layers", "encoder_ffn_embed_dim", "decoder_ffn_embed_dim")
    return {k.replace("_", "-"): fields[k] for k in keys if k in fields}


def upgraded_lang_pairs(state: dict[str, Any], old_langs: list[str], new_langs: list[str]) -> list[str]:
    """The old directions, then pivot-centric directions for every new language."""
    old = checkpoint_task_cfg(state).get("lang_pairs") or []
    old = old.split(",") if isinstance(old, str) else list(old)
    pivot = PIVOT if PIVOT in old_langs else old_langs[0]
    return old + [f"{s}-{t}" for s, t in directions(pivot, new_langs)]


def _text_hash(lines: Sequence[str]) -> str:
    return sha256_text("\n".join(lines))


@dataclass
class UpgradeInputs:
    checkpoint: Path
    spm: Path
    dictionary: Path
    new_langs: list[str]
    texts: dict[str, list[str]]  # training text per language: new ones (and old ones for retrain)
    text_sources: dict[str, str]  # where each text came from, for upgrade.json
    dev_texts: dict[str, list[str]]  # old languages' dev text: the segmentation-change measurement


def check_new_langs(new_langs: Sequence[str], old_langs: Sequence[str], checkpoint: Path) -> None:
    if new_langs:
        parse_lang_list(new_langs, "--new-langs")
    for lang in new_langs:
        if lang in old_langs:
            raise UserInputError(f"--new-langs: {lang!r} is already in the model ({','.join(old_langs)}), "
                                 f"checkpoint {checkpoint}")


def check_inputs(inputs: UpgradeInputs, old_langs: list[str], options: UpgradeOptions) -> None:
    check_new_langs(inputs.new_langs, old_langs, inputs.checkpoint)
    options.check(old_langs, inputs.new_langs)
    needed = list(inputs.new_langs) + (old_langs if options.vocab_mode == "retrain" else [])
    for lang in needed:
        if not any(line.strip() for line in inputs.texts.get(lang, [])):
            flag = "--text" if lang in inputs.new_langs else "--text (retrain needs old-language text too)"
            raise UserInputError(f"no training text for {lang!r}: give {flag} {lang}=FILE")
    missing_dev = [x for x in old_langs if not inputs.dev_texts.get(x)]
    if missing_dev:
        raise UserInputError(f"no dev text for {', '.join(missing_dev)} to measure segmentation changes: "
                             "give --old-data or --dev-text LANG=FILE")


def upgrade(inputs: UpgradeInputs, out_dir: Path, options: UpgradeOptions) -> Path:
    """Build `out_dir` (must not exist) holding the upgraded model; returns its checkpoint path."""
    t0 = time.monotonic()
    out_dir = Path(out_dir).absolute()
    checkpoint = Path(inputs.checkpoint).absolute()
    if out_dir == checkpoint.parent:
        raise UserInputError(f"--out {out_dir} is the input checkpoint's directory; choose a new directory")
    if out_dir.exists():
        raise UserInputError(f"--out {out_dir} exists; choose a new directory (nothing is overwritten)")
    state = read_checkpoint(checkpoint, mmap=True)
    old_langs = checkpoint_langs(state)
    check_inputs(inputs, old_langs, options)
    old_sp = load_spm(inputs.spm)
    old_pieces = read_dictionary(inputs.dictionary)
    check_spm_matches_dictionary(old_sp, inputs.spm, old_pieces, inputs.dictionary)
    vocab_param_groups(state["model"], len(model_symbols(old_pieces, old_langs)),
                       f"dictionary {inputs.dictionary} with checkpoint {checkpoint}")
    if options.growth.active():
        check_architecture(state["model"], state["cfg"]["model"], f"checkpoint {checkpoint}")
    new_langs = list(inputs.new_langs)
    langs = old_langs + new_langs
    check_extends(old_langs, langs, "upgrade")

    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # Hashing a multi-GB checkpoint releases the GIL: it runs beside SentencePiece training.
    hasher = ThreadPoolExecutor(max_workers=1)
    hashes = {k: hasher.submit(sha256_file, p) for k, p in
              (("checkpoint", checkpoint), ("spm", inputs.spm), ("dict", inputs.dictionary))}
    try:
        log(f"upgrade: {options.vocab_mode} vocabulary for {', '.join(new_langs)}")
        if not new_langs and options.vocab_mode == "extend":
            vocab = keep_vocabulary(inputs.spm, old_pieces, langs, tmp)
        elif options.vocab_mode == "extend":
            vocab = extend_vocabulary(inputs.spm, old_pieces, old_langs,
                                      {x: inputs.texts[x] for x in new_langs}, options.new_spm_size, options.seed, tmp)
        else:
            size = options.spm_size or len(old_pieces) + len(SPECIALS) + options.new_spm_size
            vocab = retrain_vocabulary(old_pieces, {x: inputs.texts[x] for x in langs}, size, options.seed, tmp)
        vocab.tokenizer.save()
        old_tok = Tokenizer.single(Path(inputs.spm), langs, old_sp)
        seg_change = segmentation_change(old_tok, vocab.tokenizer, {x: inputs.dev_texts[x] for x in old_langs})
        if vocab.mode != "retrain" and any(v["changed"] for v in seg_change.values()):
            raise AssertionError(f"extend mode changed old-language segmentations: {seg_change}")
        old_vocab = set(old_pieces)
        sample = {x: inputs.dev_texts.get(x) or inputs.texts[x][:2000] for x in langs}
        before, after = segmentation_stats(old_tok, sample), segmentation_stats(vocab.tokenizer, sample, old_vocab)
        seg_stats = {x: {"old": before[x], "upgraded": after[x]} for x in langs}

        new_piece_strings = [p for p in vocab.pieces if p not in old_vocab]
        compose_weights, fallbacks = None, 0
        if options.init == "compose":
            compose_weights, fallbacks = composition_matrix(
                new_piece_strings, piece_segmenter(inputs.spm), len(model_symbols(old_pieces, old_langs)), UNK_ID)
        record = NewParameterRecord()
        rows = None
        if vocab.mode != "keep":
            log(f"upgrade: {len(new_piece_strings)} new pieces, {len(new_langs)} language tokens, init {options.init}")
            rows = upgrade_vocab_params(state["model"], old_pieces, old_langs, vocab, new_langs, options,
                                        compose_weights, record, f"checkpoint {checkpoint}")
        growth = None
        if options.growth.active():
            g = options.growth
            log(f"upgrade: growing ({g.init}): +{g.add_encoder_layers} encoder, +{g.add_decoder_layers} decoder "
                f"layers ({g.position}), FFN x{g.widen_ffn:g}")
            growth = grow(state["model"], state["cfg"]["model"], g, record, f"checkpoint {checkpoint}")
            _set_model_cfg(state, growth["config"])
        pairs = upgraded_lang_pairs(state, old_langs, new_langs)
        _update_cfg(state, langs, pairs)
        state.setdefault("task_state", {})
        state["task_state"]["model_langs"] = langs
        state["task_state"][TASK_STATE_KEY] = record.to_dict()
        # Adam moments of the old shapes cannot be resumed; --finetune-from-model starts a new optimizer.
        state.pop("last_optimizer_state", None)
        # Runs from here count their own compute: fairseq carries a fine-tuned checkpoint's training clock
        # (extra_state) into the new run, and the task would count on from its token count.
        if state.get("extra_state"):
            state["extra_state"]["previous_training_time"] = 0.0
        state["task_state"].pop("target_tokens", None)
        log(f"upgrade: writing {out_dir / CHECKPOINT}")
        torch.save(state, tmp / CHECKPOINT)
        (tmp / "dict.txt").write_text("".join(f"{p} 1\n" for p in vocab.pieces), encoding="utf-8")
        for lang in langs:  # the directory doubles as the DATA argument of fairseq-interactive
            shutil.copyfile(tmp / "dict.txt", tmp / f"dict.{lang}.txt")
        (tmp / "langs.txt").write_text(",".join(langs) + "\n")

        report = {
            "format": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "vocab_mode": vocab.mode,
            "langs": {"old": old_langs, "new": new_langs, "model": langs},
            "lang_pairs": pairs,
            "vocab": vocab.stats,
            "segmentation_change": seg_change,
            "segmentation": seg_stats,
            "init": {
                "pieces": options.init,
                "compose_fallback_to_unk": fallbacks if options.init == "compose" else None,
                "langtoks": {x: options.langtok_init.get(x, "mean") for x in new_langs},
                "seed": options.seed,
                "statistics_rows": "old piece rows (specials and language tokens excluded)",
            },
            "rows": rows,
            "growth": growth,
            # fairseq-train builds the model from its flags, not from the checkpoint: train with these
            "fairseq_model_flags": model_flags(state["cfg"]["model"]),
            "inputs": {
                "checkpoint": {"path": str(checkpoint), "sha256": hashes["checkpoint"].result()},
                "spm": {"path": str(Path(inputs.spm).absolute()), "sha256": hashes["spm"].result()},
                "dict": {"path": str(Path(inputs.dictionary).absolute()), "sha256": hashes["dict"].result()},
                "texts": {x: {"source": inputs.text_sources.get(x, ""), "lines": len(v), "sha256": _text_hash(v)}
                          for x, v in inputs.texts.items()},
                "dev_texts": {x: {"lines": len(v), "sha256": _text_hash(v)} for x, v in inputs.dev_texts.items()},
            },
            "tokenizer": {"models": vocab.tokenizer.models, "route": vocab.tokenizer.route},
            "record": record.to_dict(),
            # the checkpoint is identified by its input hashes and this file (hashing it again costs seconds)
            "outputs": {p.name: sha256_file(p) if p.name != CHECKPOINT else f"{p.stat().st_size} bytes"
                        for p in sorted(tmp.iterdir()) if p.is_file()},
            "wall_s": round(time.monotonic() - t0, 2),
        }
        write_json_atomic(tmp / UPGRADE_JSON, report)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out_dir)
    finally:
        hasher.shutdown(cancel_futures=True)
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"upgrade: done in {time.monotonic() - t0:.1f} s -> {out_dir}")
    return out_dir / CHECKPOINT
