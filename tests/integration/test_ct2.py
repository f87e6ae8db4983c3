"""Issue 15, CTranslate2: a fairseq model exported through CTranslate2's own converter translates as
fairseq-generate does, and `mmt-upgrade evaluate --backend ct2` scores as `--backend fairseq` does.

The models are the real fairseq-train checkpoints of tests/integration/layouts.py (M2M-100 dictionary with the
language tokens, NLLB-200 with data-source tags) and the tiny config's run, with every weight then moved by
seeded noise: a 20-update model outputs the same piece over and over, so two runtimes agreeing on it shows
little; the noisy one picks another piece at almost every step, and every weight takes part in the choice.
fairseq runs with `--cpu-bf16 never` (CTranslate2 float32 computes in float32)."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.symbols import lang_token
from mmt_upgrade.fairseq_io.ct2_runtime import Ct2Model
from mmt_upgrade.fairseq_io.model_files import ModelFiles
from mmt_upgrade.pipeline.evaluate import evaluate
from mmt_upgrade.pipeline.export.ct2 import export_ct2
from mmt_upgrade.pipeline.runconfig import EvalOptions

from ..conftest import run_cli
from .layouts import M2M, NLLB_TAGS, Built, bible_verses, build_layout

MAX_LEN = 30  # fairseq-generate --max-len-b (--max-len-a 0); the noisy models never stop by themselves
N = 12  # test sentences translated


def add_noise(src: Path, dst: Path, scale: float = 0.5) -> Path:
    """The checkpoint with seeded Gaussian noise on every parameter (tied embeddings moved alike)."""
    state = torch.load(src, map_location="cpu", weights_only=False)
    for name, t in state["model"].items():
        if t.is_floating_point() and t.dim() > 0 and not name.endswith("_float_tensor"):
            key = "embed" if name.endswith(("embed_tokens.weight", "output_projection.weight")) else name
            g = torch.Generator().manual_seed(sum(map(ord, key)))
            state["model"][name] = t + scale * torch.randn(t.shape, generator=g)
    torch.save(state, dst)
    return dst


@pytest.fixture(scope="module")
def layouts(bible_db, tmp_path_factory) -> dict[str, tuple[Built, ModelFiles]]:
    """The M2M and NLLB-tags models, noisy, opened as `export` and `evaluate --model` open them."""
    verses = bible_verses(bible_db)
    out = {}
    for lay in (M2M, NLLB_TAGS):
        b = build_layout(lay, verses, tmp_path_factory.mktemp("ct2-layouts") / lay.name)
        noisy = add_noise(b.checkpoint, b.root / "noisy.pt")
        out[lay.name] = b, ModelFiles.open(noisy, dictionary=b.dict, spm=b.spm, langs_file=b.langs_file)
    return out


def fairseq_generate(b: Built, m: ModelFiles, src: str, tgt: str, beam: int) -> dict[int, tuple[list[str], list[float]]]:
    """The real fairseq-generate on the layout's binarized test split, one sentence per batch: sentence id ->
    (hypothesis pieces, per-token log-probabilities: the target language token, the pieces, `</s>`)."""
    out = run_cli("fairseq-generate", str(b.bin_dir), *m.task_flags(src, tgt, bpe=False), "--path", str(m.checkpoint),
                  "--gen-subset", "test", "--beam", str(beam), "--batch-size", "1", "--max-len-a", "0",
                  "--max-len-b", str(MAX_LEN), "--cpu", "--cpu-bf16", "never", "--skip-invalid-size-inputs-valid-test")
    scores = {int(i): [float(x) for x in s.split()] for i, s in re.findall(r"^P-(\d+)\t(.*)$", out.stdout, re.M)}
    return {int(i): (h.split(), scores[int(i)]) for i, h in re.findall(r"^H-(\d+)\t\S+\t(.*)$", out.stdout, re.M)}


@pytest.mark.parametrize("name", ["m2m", "nllb_tags"])
def test_float32_greedy_is_fairseq_generates_token_for_token(name, layouts, tmp_path):
    b, m = layouts[name]
    summary = export_ct2(m, tmp_path / "ct2", "float32")
    assert summary["langs"] == m.langs and summary["config_fixes"] == []
    src, tgt = b.layout.old[0], b.layout.old[1]
    ref = fairseq_generate(b, m, src, tgt, beam=1)
    ids = sorted(ref)[:N]
    pieces = m.tokenizer().encode(src, [b.raw["test"][src].read_text(encoding="utf-8").splitlines()[i] for i in ids])
    ct2 = Ct2Model(tmp_path / "ct2")
    hyps = ct2.translate(pieces, src, tgt, beam=1, max_tokens=1000, max_len_b=MAX_LEN)
    assert [h[0] for h in hyps] == [lang_token(tgt)] * len(ids)
    assert [h[1:] for h in hyps] == [ref[i][0] for i in ids]
    assert len({tuple(h) for h in hyps}) > 2 and len({p for h in hyps for p in h}) > 3  # not one piece over and over
    # batches of 3 sentences on two single-threaded workers (the fast setting on small models): the same output
    parallel = Ct2Model(tmp_path / "ct2", threads=1, workers=2, batch_size=3)
    assert parallel.translate(pieces, src, tgt, beam=1, max_tokens=1000, max_len_b=MAX_LEN) == hyps
    # the same log-probabilities, teacher-forced by CTranslate2 on fairseq's hypotheses (fairseq prints them
    # in base 2, to 4 decimals)
    scores = ct2.score(pieces, [ref[i][0] for i in ids], src, tgt, max_tokens=1000)
    assert max(abs(a * math.log(2) - c) for i, s in zip(ids, scores) for a, c in zip(ref[i][1][1:], s)) < 1e-4
    assert [len(s) for s in scores] == [len(ref[i][1]) - 1 for i in ids]


def test_int8_loads_translates_and_is_smaller(layouts, tmp_path):
    b, m = layouts["nllb_tags"]
    export_ct2(m, tmp_path / "f32", "float32")
    summary = export_ct2(m, tmp_path / "int8", "int8")
    assert summary["quantization"] == "int8" and summary["files"]["model.bin"] < 0.5 * (tmp_path / "f32" / "model.bin").stat().st_size
    src, tgt = b.layout.old[0], b.layout.old[2]
    lines = b.raw["test"][src].read_text(encoding="utf-8").splitlines()[:N]
    pieces = m.tokenizer().encode(src, lines)
    int8 = Ct2Model(tmp_path / "int8")
    hyps = int8.translate(pieces, src, tgt, beam=2, max_tokens=1000, max_len_b=MAX_LEN)
    assert int8.describe()["quantization"] == "int8" and int8.compute_type.startswith("int8")
    assert all(h[0] == lang_token(tgt) and len(h) > 1 for h in hyps)
    f32 = Ct2Model(tmp_path / "f32").translate(pieces, src, tgt, beam=2, max_tokens=1000, max_len_b=MAX_LEN)
    first = sum(a[1] == c[1] for a, c in zip(hyps, f32))
    assert first >= N // 2, (first, hyps, f32)  # a quantized copy of the same model: mostly the same first piece


def test_a_config_ct2_cannot_be_told_is_fixed_in_a_copy(layouts, tmp_path):
    """A published NLLB-200 checkpoint names fairseq main's task, which cannot build the data-source tags: the
    export corrects its config in a temporary copy and translates as the original does."""
    b, m = layouts["nllb_tags"]
    state = torch.load(m.checkpoint, weights_only=False)
    state["cfg"]["model"].task = state["cfg"]["task"]._name = "translation_multi_simple_epoch"
    state["cfg"]["model"].lang_dict = state["cfg"]["model"].fixed_dictionary = "/elsewhere/x.txt"
    torch.save(state, tmp_path / "published.pt")
    published = ModelFiles.open(tmp_path / "published.pt", dictionary=m.dictionary, spm=m.spm, langs_file=b.langs_file)
    summary = export_ct2(published, tmp_path / "ct2", "float32")
    assert summary["config_fixes"] == ["add_data_source_prefix_tags", "task"]
    export_ct2(m, tmp_path / "ref", "float32")
    src, tgt = b.layout.old[0], b.layout.old[1]
    pieces = m.tokenizer().encode(src, b.raw["test"][src].read_text(encoding="utf-8").splitlines()[:N])
    assert (Ct2Model(tmp_path / "ct2").translate(pieces, src, tgt, 1, 1000, MAX_LEN)
            == Ct2Model(tmp_path / "ref").translate(pieces, src, tgt, 1, 1000, MAX_LEN))


def test_bad_input_is_one_clear_error_and_nothing_is_written(layouts, tmp_path):
    b, m = layouts["m2m"]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("x")
    with pytest.raises(UserInputError, match=f"OUT {taken} exists"):
        export_ct2(m, taken, "int8")
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    state = torch.load(m.checkpoint, weights_only=False)
    state["cfg"]["model"].activation_fn = "tanh"  # fairseq has it, CTranslate2 does not
    torch.save(state, tmp_path / "tanh.pt")
    tanh = ModelFiles.open(tmp_path / "tanh.pt", dictionary=m.dictionary, spm=m.spm)
    with pytest.raises(UserInputError, match=r"CTranslate2 cannot convert .*tanh.pt: Option --activation-fn tanh "
                                             r"is not supported"):
        export_ct2(tanh, tmp_path / "out", "float32")
    with pytest.raises(UserInputError, match="--quantization int4: choose one of"):
        export_ct2(m, tmp_path / "out", "int4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken", "tanh.pt"]
    out = run_cli("mmt-upgrade", "export", str(tmp_path / "tanh.pt"), "--dict", str(m.dictionary), "--spm",
                  str(m.spm), "--to", "ct2", str(tmp_path / "cli"), check=False)
    errors = [x for x in out.stderr.splitlines() if "error" in x]
    assert out.returncode == 2 and len(errors) == 1 and "activation-fn tanh" in errors[0]
    assert not (tmp_path / "cli").exists()


def _hyps(out: Path) -> dict[str, list[str]]:
    return {p.name: p.read_text(encoding="utf-8").splitlines() for p in sorted((out / "translations").glob("*"))
            if p.suffix != ".json"}


def test_evaluate_backend_ct2_scores_as_fairseq(tiny_trained, tiny_data, tmp_path):
    save, _ = tiny_trained
    ckpt = add_noise(save / "checkpoint_last.pt", tmp_path / "noisy.pt")
    fairseq = evaluate(ckpt, tiny_data, tmp_path / "by-fairseq", EvalOptions(beam=1, cpu_bf16="never"))
    ct2 = evaluate(ckpt, tiny_data, tmp_path / "by-ct2", EvalOptions(beam=1, backend="ct2", ct2_quantization="float32"))
    assert _hyps(tmp_path / "by-ct2") == _hyps(tmp_path / "by-fairseq")
    assert len({h for hyps in _hyps(tmp_path / "by-ct2").values() for h in hyps}) > 20
    assert ct2["directions"] == fairseq["directions"] and ct2["groups"] == fairseq["groups"]
    assert fairseq["signatures"]["backend"] == "backend:fairseq|cpu_bf16:never|bf16_autocast:False"
    assert ct2["signatures"]["backend"].startswith("backend:ct2|ctranslate2:4.") and "quantization:float32" in \
        ct2["signatures"]["backend"]
    cache = list(tmp_path.glob("ct2/*-float32"))  # beside the checkpoint
    assert len(cache) == 1 and json.loads((cache[0] / "ct2_export.json").read_text())["quantization"] == "float32"
    # hypotheses are reused only by the backend that made them
    again = evaluate(ckpt, tiny_data, tmp_path / "by-ct2", EvalOptions(beam=1, cpu_bf16="never"))
    assert again["signatures"]["backend"].startswith("backend:fairseq")
    metas = [json.loads(p.read_text()) for p in (tmp_path / "by-ct2" / "translations").glob("*.json")]
    assert len(metas) == 4 and {x["backend"] for x in metas} == {"fairseq"}


@pytest.mark.parametrize("name", ["m2m", "nllb_tags"])
def test_evaluate_a_model_in_its_layout_on_raw_text(name, layouts, tmp_path):
    b, m = layouts[name]
    src, tgt = b.layout.old[0], b.layout.old[2]
    shutil.copyfile(m.checkpoint, tmp_path / "model.pt")
    lines = {x: b.raw["test"][x].read_text(encoding="utf-8").splitlines()[:N] for x in (src, tgt)}
    for x in lines:
        (tmp_path / f"test.{x}").write_text("\n".join(lines[x]) + "\n", encoding="utf-8")
    argv = ["evaluate", "--model", str(tmp_path / "model.pt"), "--dict", str(m.dictionary), "--spm", str(m.spm),
            "--test", f"{src}-{tgt}={tmp_path / f'test.{src}'},{tmp_path / f'test.{tgt}'}", "--beam", "1"]
    argv += ["--langs-file", str(b.langs_file)] if b.langs_file else []
    run_cli("mmt-upgrade", *argv, "--out", str(tmp_path / "by-fairseq"), "--cpu-bf16", "never")
    run_cli("mmt-upgrade", *argv, "--out", str(tmp_path / "by-ct2"), "--backend", "ct2", "--ct2-quantization",
            "float32", "--train-target", f"{src}-{tgt}={b.raw['train'][tgt]}")
    fairseq, ct2 = (json.loads((tmp_path / x / "results.json").read_text()) for x in ("by-fairseq", "by-ct2"))
    assert _hyps(tmp_path / "by-ct2") == _hyps(tmp_path / "by-fairseq")
    assert len(set(_hyps(tmp_path / "by-ct2")[f"test.{src}-{tgt}.{tgt}"])) > 2
    d = f"{src}-{tgt}"
    assert ct2["directions"][d]["chrfpp"] == fairseq["directions"][d]["chrfpp"]
    assert set(fairseq["directions"][d]["baselines"]) == {"copy_source"}  # no training targets given
    assert set(ct2["directions"][d]["baselines"]) == {"copy_source", "most_frequent_target"}
    assert len(list(tmp_path.glob("ct2/*-float32/ct2_export.json"))) == 1  # the export, cached beside model.pt
