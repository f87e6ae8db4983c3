"""Upgrading checkpoints in M2M-100, NLLB-200 and mbart layouts (checkpoint surgery on synthetic weights; the
real fairseq-train fixtures are in tests/integration/test_layouts.py). The reference for every row is fairseq's
own `Dictionary.load` + `augment_dictionary` (+ the NLLB tags) on the files the upgrade wrote."""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pytest
import torch
from fairseq import options, tasks
from fairseq.data import Dictionary
from fairseq.data.multilingual.multilingual_utils import augment_dictionary

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.paths import PLUGIN_DIR
from mmt_upgrade.core.symbols import DATA_SOURCE_TAGS, SymbolLayout, lang_token
from mmt_upgrade.core.vocab import read_dictionary
from mmt_upgrade.fairseq_io.checkpoint import checkpoint_langs, checkpoint_layout, read_checkpoint
from mmt_upgrade.pipeline.upgrade import UpgradeInputs, UpgradeOptions, upgrade
from mmt_upgrade.pipeline.upgrade.rows import copy_rows

from .conftest import OLD_LANGS

EMB = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight")
LAYOUTS = {  # name -> (codes of OLD_LANGS, token style, tags, language tokens in the file, legacy args only)
    "m2m": (("en", "es", "fr"), "multilingual", False, True, True),
    "nllb": (("eng_Latn", "spa_Latn", "fra_Latn"), "multilingual", True, False, False),
    "mbart": (("en_XX", "es_XX", "fr_XX"), "mbart", False, False, False),
}
NEW = "tyv_Cyrl"


def fairseq_symbols(dict_file: Path, langs, style: str, tags: bool) -> list[str]:
    """The model's rows as fairseq builds them."""
    d = Dictionary.load(str(dict_file))
    augment_dictionary(d, list(langs), style)
    for tag in DATA_SOURCE_TAGS if tags else ():
        d.add_symbol(tag)
    return list(d.symbols)


def build(layout: str, old_spm: Path, texts, root: Path) -> dict:
    """A checkpoint in `layout`: a shuffled (frequency-like) dictionary, random tied embeddings."""
    codes, style, tags, in_file, legacy = LAYOUTS[layout]
    pieces = read_dictionary(old_spm.parent / "dict.txt")
    random.Random(layout).shuffle(pieces)
    symbols = pieces + ([lang_token(x, style) for x in codes] + [f"madeupword{i:04d}" for i in range(3)]
                        if in_file else [])
    root.mkdir()
    dict_file = root / ("model_dict.txt" if in_file else "dictionary.txt")
    dict_file.write_text("".join(f"{s} {1000 - i}\n" for i, s in enumerate(symbols)), encoding="utf-8")
    n_rows = len(fairseq_symbols(dict_file, codes, style, tags))
    emb = torch.randn(n_rows, 8, generator=torch.Generator().manual_seed(0))
    model = {name: emb for name in EMB} | {"encoder.layers.0.fc1.weight": torch.randn(16, 8)}
    task = {"_name": "translation_multi_simple_epoch", "langs": ",".join(codes) if legacy else list(codes),
            "lang_pairs": [f"{codes[0]}-{codes[1]}", f"{codes[1]}-{codes[0]}"], "encoder_langtok": "src",
            "decoder_langtok": True, "lang_tok_style": style, "fixed_dictionary": str(dict_file) if in_file else None,
            "lang_dict": None} | ({"add_data_source_prefix_tags": True} if tags else {})
    state = ({"model": model, "args": argparse.Namespace(**task, arch="transformer")} if legacy else
             {"model": model, "cfg": {"task": task, "model": {"_name": "transformer"}}})
    torch.save(state, root / "checkpoint.pt")
    files = {}
    for code, lang in zip(codes, OLD_LANGS):
        files[code] = root / f"dev.{code}"
        files[code].write_text("\n".join(texts[lang][:50]) + "\n", encoding="utf-8")
    new_text = root / f"train.{NEW}"
    new_text.write_text("\n".join(texts["ru"]) + "\n", encoding="utf-8")
    return {"ckpt": root / "checkpoint.pt", "dict": dict_file, "dev": files, "text": {NEW: new_text},
            "codes": codes, "style": style, "tags": tags, "in_file": in_file}


def inputs(b: dict, **changes) -> UpgradeInputs:
    """`--no-rows-check`: these random weights know nothing, so no loss can tell their own rows from others; the
    check on trained checkpoints is the integration lane's (tests/integration/test_layouts.py)."""
    return UpgradeInputs(**{"checkpoint": b["ckpt"], "new_langs": [NEW], "spm": changes.pop("spm", None),
                            "dictionary": b["dict"], "text_files": b["text"], "dev_text_files": b["dev"],
                            "rows_check": False} | changes)


OPTIONS = UpgradeOptions(new_spm_size=400)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_rows_mapped_by_string_and_output_in_the_input_layout(layout, old_spm, texts, tmp_path):
    b = build(layout, old_spm, texts, tmp_path / "old")
    out = tmp_path / "up"
    upgrade(inputs(b, spm=old_spm), out, OPTIONS)
    assert "--no-rows-check" in json.loads((out / "upgrade.json").read_text())["rows_check"]["skipped"]
    langs = list(b["codes"]) + [NEW]
    old_symbols = fairseq_symbols(b["dict"], b["codes"], b["style"], b["tags"])
    new_symbols = fairseq_symbols(out / "dict.txt", langs, b["style"], b["tags"])
    old_emb, state = torch.load(b["ckpt"])["model"][EMB[0]], read_checkpoint(out / "checkpoint.pt")
    new_emb = state["model"][EMB[0]]
    assert new_emb.shape[0] == len(new_symbols) > len(old_symbols)
    assert all(state["model"][name] is new_emb for name in EMB[1:])  # still tied
    old_index = {s: i for i, s in enumerate(old_symbols)}
    for i, s in enumerate(new_symbols):
        if s in old_index:
            assert torch.equal(new_emb[i], old_emb[old_index[s]]), s
    tokens = [old_index[lang_token(x, b["style"])] for x in b["codes"]]
    assert torch.equal(new_emb[new_symbols.index(lang_token(NEW, b["style"]))], old_emb[tokens].mean(dim=0))
    assert (out / b["dict"].name).read_text() == (out / "dict.txt").read_text()
    assert (out / "langs.txt").read_text() == ",".join(langs) + "\n"
    task = vars(state["args"]) if "args" in state and state.get("cfg") is None else state["cfg"]["task"]
    langs_cfg = task["langs"]
    assert (langs_cfg.split(",") if isinstance(langs_cfg, str) else langs_cfg) == langs
    if b["in_file"]:  # M2M: the new token inside the model dictionary, a data dictionary without tokens
        assert task["fixed_dictionary"] == str(out / "dict.txt")
        model_dict = read_dictionary(out / "dict.txt")
        tokens = [i for i, s in enumerate(model_dict) if s.startswith("__")]
        assert model_dict[tokens[-1]] == lang_token(NEW) and tokens == list(range(tokens[0], tokens[-1] + 1))
        data = read_dictionary(out / "data_dict.txt")
        assert data == model_dict[: len(data)]  # binarized ids are the model's ids, new pieces included
        assert data == [s for s in model_dict if not s.startswith(("__", "madeupword"))]
    else:
        assert not any(s.startswith(("__", "[")) for s in read_dictionary(out / "dict.txt"))
    assert task.get("add_data_source_prefix_tags", False) == b["tags"]


def _fails(b: dict, tmp_path: Path, message: str, **changes) -> None:
    with pytest.raises(UserInputError, match=message):
        upgrade(inputs(b, **changes), tmp_path / "out", OPTIONS)
    assert not (tmp_path / "out").exists()


def test_bad_inputs_are_one_error_naming_the_culprit(old_spm, texts, tmp_path):
    b = build("nllb", old_spm, texts, tmp_path / "old")
    short = tmp_path / "short.txt"
    short.write_text("".join(b["dict"].read_text().splitlines(keepends=True)[:-1]))
    _fails(b, tmp_path, f"dictionary {short} with checkpoint {b['ckpt']}.*does not belong", dictionary=short,
           spm=old_spm)
    foreign = tmp_path / "foreign.txt"
    foreign.write_text(b["dict"].read_text().replace("\n", "\n▁qqzzx 1\n", 1))
    _fails(b, tmp_path, f"dictionary {foreign} has 1 pieces that SentencePiece model {old_spm} lacks.*'▁qqzzx'",
           dictionary=foreign, spm=old_spm)
    langs = tmp_path / "langs.txt"
    langs.write_text("eng_Latn\nfra_Latn\nspa_Latn\n")
    _fails(b, tmp_path, f"--langs-file {langs} .* position 1: they disagree", langs_file=langs, spm=old_spm)
    _fails(b, tmp_path, "'spa_Latn' is already in the model", new_langs=["spa_Latn"], spm=old_spm)
    _fails(b, tmp_path, "no dev text for any old language .*give --dev-text", dev_text_files={}, spm=old_spm)
    _fails(b, tmp_path, "give --dict and --spm")


def test_langs_file_for_a_checkpoint_without_a_list(old_spm, texts, tmp_path):
    """A legacy checkpoint whose --lang-dict file is gone: --langs-file gives the order (lines or a comma list)."""
    b = build("m2m", old_spm, texts, tmp_path / "old")
    state = torch.load(b["ckpt"], weights_only=False)
    state["args"].langs, state["args"].lang_dict = None, "/gone/langs.txt"
    torch.save(state, b["ckpt"])
    _fails(b, tmp_path, "/gone/langs.txt, which is not here: give --langs-file", spm=old_spm)
    langs = tmp_path / "langs.txt"
    langs.write_text("en,es\nfr\n")
    upgrade(inputs(b, spm=old_spm, langs_file=langs), tmp_path / "up", OPTIONS)
    assert vars(read_checkpoint(tmp_path / "up" / "checkpoint.pt")["args"])["lang_dict"] == str(
        tmp_path / "up" / "lang_dict.txt")
    assert (tmp_path / "up" / "lang_dict.txt").read_text() == f"en\nes\nfr\n{NEW}\n"


@pytest.mark.parametrize("style, tags, in_file", [("multilingual", True, False), ("mbart", True, False),
                                                  ("multilingual", False, True), ("mbart", False, False)])
def test_the_plugin_task_builds_the_layouts_rows(style, tags, in_file, tmp_path):
    """`--task upgrade_translation` (with `--add-data-source-prefix-tags` for NLLB) builds exactly
    `SymbolLayout.rows`: the tags after the language tokens and `<mask>`, a fixed dictionary's tokens in place."""
    codes = ("eng_Latn", "tyv_Cyrl")
    symbols = ["▁a", "b"] + ([lang_token(x, style) for x in codes] + ["madeupword0000"] if in_file else [])
    dict_file = tmp_path / "dict.txt"
    dict_file.write_text("".join(f"{s} 1\n" for s in symbols), encoding="utf-8")
    for x in codes:
        (tmp_path / f"dict.{x}.txt").write_text(dict_file.read_text(encoding="utf-8"), encoding="utf-8")
    argv = [str(tmp_path), "--user-dir", str(PLUGIN_DIR), "--task", "upgrade_translation", "--langs", ",".join(codes),
            "--lang-pairs", "eng_Latn-tyv_Cyrl", "-s", "eng_Latn", "-t", "tyv_Cyrl", "--lang-tok-style", style,
            "--path", "unused.pt", "--cpu"] + (["--add-data-source-prefix-tags"] if tags else []) + (
            ["--fixed-dictionary", str(dict_file)] if in_file else [])
    task = tasks.setup_task(options.parse_args_and_arch(
        options.get_generation_parser(default_task="upgrade_translation"), argv))
    layout = SymbolLayout(tuple(symbols), codes, style, tags)
    assert list(task.source_dictionary.symbols) == list(layout.rows)
    assert list(task.target_dictionary.symbols) == list(layout.rows)


def test_settings_from_cfg_or_legacy_args(tmp_path):
    """The task settings come from `cfg["task"]`, else the legacy `args` alone; `--langs` as a list, a comma
    string or a `--lang-dict` file; a file with neither config is refused by name."""
    legacy = {"model": {}, "args": argparse.Namespace(langs="af,tyv_Cyrl", lang_tok_style="mbart", lang_dict=None,
                                                      fixed_dictionary="/x/model_dict.txt"), "cfg": None}
    assert checkpoint_langs(legacy) == ["af", "tyv_Cyrl"]
    assert checkpoint_layout(legacy) == {"style": "mbart", "fixed_dictionary": "/x/model_dict.txt",
                                         "data_source_tags": False, "sentencepiece_model": None}
    langs_file = tmp_path / "langs.txt"
    langs_file.write_text("eng_Latn\ntyv_Cyrl\n")
    current = {"model": {}, "cfg": {"task": {"langs": None, "lang_dict": str(langs_file),
                                             "add_data_source_prefix_tags": True},
                                    "bpe": {"sentencepiece_model": "/x/spm.model"}}}
    assert checkpoint_langs(current) == ["eng_Latn", "tyv_Cyrl"]
    assert checkpoint_layout(current)["data_source_tags"] and checkpoint_layout(current)["style"] == "multilingual"
    assert checkpoint_layout(current)["sentencepiece_model"] == "/x/spm.model"
    torch.save({"model": {}}, tmp_path / "bare.pt")
    with pytest.raises(UserInputError, match="bare.pt is not a fairseq checkpoint"):
        read_checkpoint(tmp_path / "bare.pt")
    torch.save(legacy, tmp_path / "legacy.pt")
    assert vars(read_checkpoint(tmp_path / "legacy.pt")["args"])["langs"] == "af,tyv_Cyrl"


@pytest.mark.parametrize("case", ["appended", "langtoks moved", "reordered", "reordered, gathered"])
def test_copied_rows_equal_the_plain_gather(case):
    """Runs of rows copied as slices (or gathered in chunks when there are too many runs) give exactly
    `matrix[i] = old[sources[i]]` for every kept row, and leave new rows alone."""
    old = torch.randn(50, 4)
    sources = {"appended": torch.cat([torch.arange(50), torch.full((7,), -1)]),
               "langtoks moved": torch.cat([torch.arange(45), torch.full((5,), -1), torch.arange(45, 50)]),
               "reordered": torch.cat([torch.randperm(50, generator=torch.Generator().manual_seed(0)),
                                       torch.full((3,), -1)]),
               "reordered, gathered": torch.randperm(50, generator=torch.Generator().manual_seed(1))}[case]
    matrix = torch.full((len(sources), 4), float("nan"))
    copy_rows(matrix, old, sources, chunk=8, max_runs=1 if case.endswith("gathered") else 1024)
    kept = sources >= 0
    assert torch.equal(matrix[kept], old[sources[kept]]) and matrix[~kept].isnan().all()
