"""The write stage: the upgraded model directory (checkpoint, dictionaries in the input's layout, tokenizer,
`langs.txt`, upgrade.json), built beside its final place and renamed when complete. It contributes upgrade.json's
`record`, `layout`, `commands` and `outputs`."""
from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import sha256_file
from mmt_upgrade.core.paths import PLUGIN_DIR
from mmt_upgrade.core.record import TASK_STATE_KEY, NewParameterRecord
from mmt_upgrade.core.symbols import SymbolLayout
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_task_cfg, populate_mapped
from mmt_upgrade.pipeline.upgrade.languages import LANG_DICT, MODEL_DICT

CHECKPOINT = "checkpoint.pt"
SPM_MODEL = "spm.model"  # the one SentencePiece model of every vocabulary mode (extend: the merged model)
DATA_DICT = "data_dict.txt"  # M2M-style outputs: the pieces without language tokens, for fairseq-preprocess


def check_out_dir(out_dir: Path, checkpoint: Path) -> Path:
    """`--out` as an absolute path: a new directory, never the input's."""
    out_dir = Path(out_dir).absolute()
    if out_dir == Path(checkpoint).absolute().parent:
        raise UserInputError(f"--out {out_dir} is the input checkpoint's directory; choose a new directory")
    if out_dir.exists():
        raise UserInputError(f"--out {out_dir} exists; choose a new directory (nothing is overwritten)")
    return out_dir


def dictionary_text(symbols: Sequence[str], counts: Mapping[str, str]) -> str:
    """fairseq dictionary lines: a symbol the input file held keeps its count column, a new one counts 1."""
    return "".join(f"{x} {counts.get(x, '1')}\n" for x in symbols)


def write_dictionaries(old: SymbolLayout, new: SymbolLayout, dict_rest: Sequence[str], input_name: str,
                       tmp: Path) -> None:
    """`dict.txt` (the model dictionary: the file fairseq loads, `--fixed-dictionary` where the input had one), a
    hard link to it per language (the directory doubles as the DATA argument of fairseq-interactive; NLLB-200's
    203 copies of a 4 MB file would cost seconds and 800 MB) and under the input file's name (NLLB's
    `dictionary.txt`, M2M's `model_dict.128k.txt`) and, where the input's file held the language tokens (M2M),
    `data_dict.txt`: the pieces only, for binarizing."""
    counts = dict(zip(old.dict_symbols, dict_rest))
    (tmp / MODEL_DICT).write_text(dictionary_text(new.dict_symbols, counts), encoding="utf-8")
    for name in [f"dict.{x}.txt" for x in new.langs] + ([input_name] if input_name != MODEL_DICT else []):
        try:
            os.link(tmp / MODEL_DICT, tmp / name)
        except OSError:  # a file system without hard links
            shutil.copyfile(tmp / MODEL_DICT, tmp / name)
    if old.langs_in_file:
        (tmp / DATA_DICT).write_text(dictionary_text(new.pieces, counts), encoding="utf-8")


def write_model(state: dict[str, Any], old: SymbolLayout, new: SymbolLayout, dict_rest: Sequence[str],
                input_name: str, record: NewParameterRecord, tmp: Path, lang_dict: bool) -> dict[str, Any]:
    """The checkpoint and dictionaries into `tmp`; returns upgrade.json's `record`."""
    state.setdefault("task_state", {})[TASK_STATE_KEY] = record.to_dict()
    # Adam moments of the old shapes cannot be resumed; --finetune-from-model starts a new optimizer.
    state.pop("last_optimizer_state", None)
    # Runs from here count their own compute: fairseq carries a fine-tuned checkpoint's training clock
    # (extra_state) into the new run, and the task would count on from its token count.
    if state.get("extra_state"):
        state["extra_state"]["previous_training_time"] = 0.0
    state["task_state"].pop("target_tokens", None)
    populate_mapped(x for x in state["model"].values() if isinstance(x, torch.Tensor))
    torch.save(state, tmp / CHECKPOINT)
    write_dictionaries(old, new, dict_rest, input_name, tmp)
    (tmp / "langs.txt").write_text(",".join(new.langs) + "\n")
    if lang_dict:  # the input's list was a file (--lang-dict, --langs-file): one code per line, as fairseq reads it
        (tmp / LANG_DICT).write_text("".join(f"{x}\n" for x in new.langs), encoding="utf-8")
    return {"record": record.to_dict()}


def commands_section(state: dict[str, Any], old: SymbolLayout, new: SymbolLayout, pairs: Sequence[str],
                     out_dir: Path) -> dict[str, Any]:
    """upgrade.json's `layout` (of the input and the output) and `commands`: fairseq-interactive on raw text through the one SentencePiece model (`spm.model`),
    and fairseq-generate on a data-bin binarized with `dict.txt` (`{data_bin}`), for the last direction (a new
    language's where there is one); other directions change `--lang-pairs`, `-s` and `-t`."""
    task = checkpoint_task_cfg(state)
    src, tgt = pairs[-1].split("-") if pairs else (new.langs[0], new.langs[-1])
    flags = ["--user-dir", str(PLUGIN_DIR), "--task", "upgrade_translation", "--langs", ",".join(new.langs),
             "--lang-pairs", f"{src}-{tgt}", "-s", src, "-t", tgt, "--lang-tok-style", new.style]
    if task.get("encoder_langtok"):
        flags += ["--encoder-langtok", task["encoder_langtok"]]
    if task.get("decoder_langtok"):
        flags.append("--decoder-langtok")
    if task.get("fixed_dictionary"):
        flags += ["--fixed-dictionary", str(out_dir / MODEL_DICT)]
    if new.data_source_tags:
        flags.append("--add-data-source-prefix-tags")
    flags += ["--path", str(out_dir / CHECKPOINT), "--bpe", "sentencepiece", "--sentencepiece-model",
              str(out_dir / SPM_MODEL), "--beam", "5"]
    return {"layout": {"input": old.describe(), "output": new.describe()}, "commands": {
        "direction": f"{src}-{tgt}",
        "fairseq-interactive": shlex.join(["fairseq-interactive", str(out_dir), *flags]),
        "fairseq-generate": shlex.join(["fairseq-generate", "{data_bin}", *flags, "--gen-subset", "test"]),
    }}


def write_lang_pairs(given: tuple[Path, list[str]] | None, pairs: Sequence[str], new_langs: Sequence[str],
                     tmp: Path) -> None:
    """The input's language-pairs file, under its name, with the new languages' directions appended."""
    if given is None:
        return
    path, old = given
    added = [p for p in pairs if set(p.split("-")) & set(new_langs) and p not in old]
    (tmp / path.name).write_text(",".join(old + added) + "\n", encoding="utf-8")


def outputs_section(tmp: Path) -> dict[str, Any]:
    """The files written, by hash (hard links hashed once); the checkpoint by size (it is identified by the input
    hashes and this file, and hashing it again costs seconds)."""
    by_inode: dict[int, str] = {}
    out = {}
    for p in sorted(tmp.iterdir()):
        if not p.is_file():
            continue
        stat = p.stat()
        if p.name == CHECKPOINT:
            out[p.name] = f"{stat.st_size} bytes"
            continue
        if stat.st_ino not in by_inode:
            by_inode[stat.st_ino] = sha256_file(p)
        out[p.name] = by_inode[stat.st_ino]
    return {"outputs": out}

