"""`mmt-upgrade upgrade` and `verify` on a real tiny model, real SentencePiece models and real fairseq CLIs."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from mmt_upgrade.core.embeddings import (
    INIT_METHODS,
    composition_matrix,
    piece_segmenter,
)
from mmt_upgrade.core.files import sha256_file
from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.core.record import NewParameterRecord
from mmt_upgrade.core.spm import SPECIALS
from mmt_upgrade.core.symbols import SymbolLayout
from mmt_upgrade.core.vocab import (
    Tokenizer,
    extend_vocabulary,
    model_symbols,
    read_dictionary,
    segmentation_change,
    upgraded_layout,
)
from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint
from mmt_upgrade.pipeline.data.prepare import DataConfig, prepare_data
from mmt_upgrade.pipeline.evaluate import evaluate
from mmt_upgrade.pipeline.runconfig import EvalOptions
from mmt_upgrade.pipeline.upgrade.options import UpgradeOptions
from mmt_upgrade.pipeline.upgrade.rows import UNK_ID, upgrade_vocab_params

from ..conftest import assert_interactive_equals_generate, run_cli, tiny_train_argv

OLD_LANGS = ["en", "es", "fr"]
NEW_LANGS = ["it", "ar"]


@pytest.fixture(scope="module")
def texts(lang_texts) -> dict[str, Path]:
    return lang_texts


def _upgrade(ckpt: Path, data, texts: dict[str, Path], out: Path, *extra: str, check: bool = True, langs=NEW_LANGS):
    text_args = [a for lang in langs for a in ("--text", f"{lang}={texts[lang]}")]
    return run_cli("mmt-upgrade", "upgrade", str(ckpt), "--out", str(out), "--old-data", str(data.root),
                   "--new-langs", ",".join(NEW_LANGS), "--new-spm-size", "500", *text_args, *extra, check=check)


@pytest.fixture(scope="module")
def extended(tiny_trained, tiny_data, texts, tmp_path_factory):
    """The tiny model upgraded in extend mode with `<unk>` init and `__it__` copied from `__es__`."""
    save, _ = tiny_trained
    ckpt = save / "checkpoint_best.pt"
    before = sha256_file(ckpt)
    out = tmp_path_factory.mktemp("up") / "extended"
    _upgrade(ckpt, tiny_data, texts, out, "--init", "unk", "--langtok-init", "it=es")
    assert sha256_file(ckpt) == before, "the input checkpoint was modified"
    return ckpt, out


def _emb(path: Path) -> torch.Tensor:
    return read_checkpoint(path)["model"]["encoder.embed_tokens.weight"]


def test_extend_keeps_every_old_row_and_segmentation(extended, tiny_data):
    ckpt, out = extended
    report = json.loads((out / "upgrade.json").read_text())
    old_pieces, new_pieces = read_dictionary(tiny_data.dictionary), read_dictionary(out / "dict.txt")
    assert new_pieces[: len(old_pieces)] == old_pieces  # every old piece keeps its id
    assert report["vocab"]["added"] == len(new_pieces) - len(old_pieces) > 50
    assert report["vocab"]["shared"] > 0
    old_sym = model_symbols(old_pieces, OLD_LANGS)
    new_sym = model_symbols(new_pieces, OLD_LANGS + NEW_LANGS)
    old_e, new_e = _emb(ckpt), _emb(out / "checkpoint.pt")
    assert new_e.shape[0] == len(new_sym)
    for i, s in enumerate(old_sym):  # old rows, language tokens included, moved by string only
        assert torch.equal(new_e[new_sym.index(s)], old_e[i]), s
    added = [i for i, s in enumerate(new_sym) if s not in old_sym and not s.startswith("__")]
    assert torch.equal(new_e[added], old_e[UNK_ID].expand(len(added), -1))
    assert torch.equal(new_e[new_sym.index("__it__")], old_e[old_sym.index("__es__")])
    assert torch.allclose(new_e[new_sym.index("__ar__")], old_e[-3:].mean(0))
    # the measurement ran on every old language's dev text and found nothing changed
    change = report["segmentation_change"]
    assert set(change) == set(OLD_LANGS) and all(v["sentences"] > 0 and v["changed"] == 0 for v in change.values())
    assert (out / "langs.txt").read_text().strip() == "en,es,fr,it,ar"
    # the record names exactly the new rows of every tied vocabulary parameter
    state = read_checkpoint(out / "checkpoint.pt")
    record = NewParameterRecord.from_task_state(state["task_state"])
    assert record.to_dict() == report["record"]
    new_rows = torch.tensor([s not in old_sym for s in new_sym])
    for name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight"):
        assert torch.equal(record.new_mask(name, new_e.shape)[:, 0], new_rows)
    assert state["task_state"]["model_langs"] == OLD_LANGS + NEW_LANGS
    assert "last_optimizer_state" not in state
    assert report["inputs"]["checkpoint"]["sha256"] == sha256_file(ckpt)


def test_segmentation_change_detects_a_changed_tokenizer(extended, tiny_data):
    """The measurement can fail: routing Spanish to the new-language model changes its segmentation."""
    _, out = extended
    old = Tokenizer.single(tiny_data.spm_model, OLD_LANGS)
    new = Tokenizer.load(out)
    lines = tiny_data.raw_file("valid", "es", "en", "es").read_text().splitlines()
    assert segmentation_change(old, new, {"es": lines})["es"]["changed"] == 0
    new.route["es"] = "new"
    changed = segmentation_change(old, new, {"es": lines})["es"]
    assert changed["changed"] > len(lines) // 2 and changed["fraction"] == round(changed["changed"] / len(lines), 6)


@pytest.fixture(scope="module")
def vocab_plan(tiny_data, texts, tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    new_texts = {x: texts[x].read_text().splitlines() for x in NEW_LANGS}
    return extend_vocabulary(tiny_data.spm_model, read_dictionary(tiny_data.dictionary), OLD_LANGS, new_texts,
                             500, 1, out)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("init", INIT_METHODS)
def test_every_init_method_gives_its_rows(init, tied, tiny_trained, tiny_data, vocab_plan):
    """New rows follow the method, for the input embeddings and a separate output projection alike."""
    state = read_checkpoint(tiny_trained[0] / "checkpoint_best.pt")["model"]
    if not tied:  # an untied output projection gets the same rule over its own old rows
        state["decoder.output_projection.weight"] = state["decoder.output_projection.weight"].clone() * 3 + 1
    old_pieces = read_dictionary(tiny_data.dictionary)
    olds = {k: state[k].clone() for k in ("encoder.embed_tokens.weight", "decoder.output_projection.weight")}
    new_strings = [p for p in vocab_plan.pieces if p not in set(old_pieces)]
    weights = None
    if init == "compose":
        weights, _ = composition_matrix(new_strings, piece_segmenter(tiny_data.spm_model),
                                        len(model_symbols(old_pieces, OLD_LANGS)), UNK_ID)
    record = NewParameterRecord()
    old_layout = SymbolLayout(old_pieces, OLD_LANGS)
    upgrade_vocab_params(state, old_layout, upgraded_layout(old_layout, vocab_plan, NEW_LANGS),
                         UpgradeOptions(init=init), weights, record, "test")
    lo, hi = len(SPECIALS) + len(old_pieces), len(SPECIALS) + len(vocab_plan.pieces)
    assert (state["encoder.embed_tokens.weight"] is state["decoder.output_projection.weight"]) == tied
    for name, old in olds.items():
        new = state[name][lo:hi]
        assert new.shape[0] == len(new_strings)
        pieces = old[len(SPECIALS):lo]
        if init == "unk":
            assert torch.equal(new, old[UNK_ID].expand_as(new))
        elif init == "mean":
            assert torch.allclose(new, pieces.mean(0).expand_as(new), atol=1e-6)
        elif init == "normal":
            assert torch.allclose(new.mean(0), pieces.mean(0), atol=4 * pieces.std(0).max().item() / new.shape[0] ** 0.5)
            ratio = new.var(0) / pieces.var(0)
            assert 0.6 < ratio.median().item() < 1.5 and new.std(0).min() > 0
        elif init == "random":
            d = old.shape[1]
            assert abs(new.std().item() - d**-0.5) < 0.1 * d**-0.5
        else:
            sp = piece_segmenter(tiny_data.spm_model)
            for i in (0, len(new_strings) // 2, len(new_strings) - 1):
                ids = [t for t in sp([new_strings[i]])[0] if t != UNK_ID] or [UNK_ID]
                assert torch.allclose(new[i], old[ids].mean(0), atol=1e-5), new_strings[i]


def test_retrain_maps_rows_by_string_and_reports_overlap(tiny_trained, tiny_data, texts, tmp_path):
    ckpt = tiny_trained[0] / "checkpoint_best.pt"
    out = tmp_path / "retrained"
    _upgrade(ckpt, tiny_data, texts, out, "--vocab-mode", "retrain", "--spm-size", "1200", "--init", "mean",
             langs=OLD_LANGS + NEW_LANGS)
    report = json.loads((out / "upgrade.json").read_text())
    old_pieces, new_pieces = read_dictionary(tiny_data.dictionary), read_dictionary(out / "dict.txt")
    shared = set(old_pieces) & set(new_pieces)
    v = report["vocab"]
    assert v["kept"] == len(shared) and v["dropped"] == len(old_pieces) - len(shared)
    assert v["overlap_fraction_of_old"] == round(len(shared) / len(old_pieces), 4)
    old_sym, new_sym = model_symbols(old_pieces, OLD_LANGS), model_symbols(new_pieces, OLD_LANGS + NEW_LANGS)
    old_e, new_e = _emb(ckpt), _emb(out / "checkpoint.pt")
    for s in list(shared)[:200] + list(SPECIALS) + ["__es__", "__fr__"]:
        assert torch.equal(new_e[new_sym.index(s)], old_e[old_sym.index(s)]), s
    assert any(x["changed"] > 0 for x in report["segmentation_change"].values())
    assert Tokenizer.load(out).route == {x: "spm" for x in OLD_LANGS + NEW_LANGS}


def test_verify_passes_for_extend_and_catches_a_changed_row(extended, tiny_data, tmp_path):
    ckpt, out = extended
    res = run_cli("mmt-upgrade", "verify", str(ckpt), str(out), "--old-data", str(tiny_data.root),
                  "--sentences", "12", "--json", str(tmp_path / "v.json"))
    figures = json.loads((tmp_path / "v.json").read_text())
    assert figures["ok"] and figures["max_abs_logprob_diff"] <= 1e-5
    assert figures["greedy_identical"] == figures["sentences"] == 4 * 12
    assert "OK: max |dlogp|" in res.stdout
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    state = read_checkpoint(broken / "checkpoint.pt")
    emb = state["model"]["encoder.embed_tokens.weight"]
    emb[10:400] += 0.05 * torch.randn_like(emb[10:400])  # tied: the output projection moves too
    torch.save(state, broken / "checkpoint.pt")
    res = run_cli("mmt-upgrade", "verify", str(ckpt), str(broken), "--old-data", str(tiny_data.root),
                  "--sentences", "12", check=False)
    assert res.returncode == 1 and "BROKEN" in res.stdout


def test_upgraded_model_trains_resumes_and_translates_with_fairseq(extended, tiny_data, texts, tmp_path):
    _, out = extended
    cfg = DataConfig(**{**tiny_data.manifest["config"], "langs": ["es", "fr", *NEW_LANGS],
                        "max_train_pairs": 120, "tokenizer": str(out)})
    data = prepare_data(cfg, cache_dir(), tmp_path / "data")
    assert data.langs == OLD_LANGS + NEW_LANGS
    save = tmp_path / "ft"
    argv = tiny_train_argv(data, save, **{"max-update": 4, "save-interval-updates": 2})
    log = run_cli("fairseq-train", *argv, "--finetune-from-model", str(out / "checkpoint.pt"))
    assert "loading pretrained model from" in log.stdout + log.stderr
    expected = json.loads((out / "upgrade.json").read_text())["record"]
    assert read_checkpoint(save / "checkpoint_last.pt")["task_state"]["upgrade_record"] == expected
    log = run_cli("fairseq-train", *argv, "--finetune-from-model", str(out / "checkpoint.pt"),
                  "--max-update", "6")
    text = log.stdout + log.stderr
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 4 updates\)", text)
    assert "new-parameter record: 0 whole parameters, 3 with new slices" in text
    last = read_checkpoint(save / "checkpoint_last.pt")
    assert last["task_state"]["upgrade_record"] == expected and last["optimizer_history"][-1]["num_updates"] == 6

    results = evaluate(save / "checkpoint_last.pt", data, tmp_path / "eval", EvalOptions(beam=1, max_tokens=4000),
                       directions=[("it", "en"), ("en", "it")])
    assert set(results["directions"]) == {"it-en", "en-it"}
    assert "pieces:spm.old.model@" in results["signatures"]["spbleu"]  # spBLEU of each direction over its
    assert "pieces:spm.new.model@" in results["signatures"]["spbleu"]  # target language's pieces
    # the upgrade's own directory serves as fairseq-interactive's dictionary directory
    assert_interactive_equals_generate(data.bin_dir, save / "checkpoint_last.pt", data.langs, "it", "en", data,
                                       interactive_dir=out)


def test_bad_inputs_fail_early_with_one_clear_message(tiny_trained, tiny_data, texts, tmp_path):
    save = tiny_trained[0]
    ckpt = save / "checkpoint_best.pt"
    before = sha256_file(ckpt)

    def fails(*extra: str, out: Path | None = None, langs=NEW_LANGS) -> str:
        res = _upgrade(ckpt, tiny_data, texts, out or tmp_path / "out", *extra, check=False, langs=langs)
        assert res.returncode != 0, res.stdout
        assert not (tmp_path / "out").exists() and "Traceback" not in res.stderr, res.stderr[-3000:]
        return res.stderr

    assert "'es' is already in the model" in fails("--new-langs", "es,it")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert f"--text it: {empty} holds no text" in fails("--text", f"it={empty}")
    assert "invalid choice: 'fancy'" in fails("--init", "fancy")
    assert "--langtok-init it=pt" in fails("--langtok-init", "it=pt")
    swapped = tmp_path / "dict.txt"
    lines = tiny_data.dictionary.read_text().splitlines()
    lines[10], lines[11] = lines[11], lines[10]
    swapped.write_text("\n".join(lines) + "\n")
    err = fails("--dict", str(swapped))
    assert f"is not dictionary {swapped}'s" in err and str(tiny_data.spm_model) in err
    cut = tmp_path / "cut.pt"
    state = read_checkpoint(ckpt)
    for k in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight"):
        state["model"][k] = state["model"]["encoder.embed_tokens.weight"][:-1]
    torch.save(state, cut)
    res = _upgrade(cut, tiny_data, texts, tmp_path / "out", check=False)
    assert res.returncode != 0 and "the dictionary does not belong to this checkpoint" in res.stderr
    assert f"dictionary {tiny_data.dictionary}" in res.stderr
    assert "is the input checkpoint's directory" in fails(out=save)
    (tmp_path / "exists").mkdir()
    assert "exists; choose a new directory" in fails(out=tmp_path / "exists")
    no_text = run_cli("mmt-upgrade", "upgrade", str(ckpt), "--out", str(tmp_path / "out"), "--spm",
                      str(tiny_data.spm_model), "--dict", str(tiny_data.dictionary), check=False)
    assert no_text.returncode != 0 and "no training text for 'it'" in no_text.stderr
    assert sha256_file(ckpt) == before
