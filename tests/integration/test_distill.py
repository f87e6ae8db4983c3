"""Cross-vocabulary distillation on real tiny models: teacher = student, cached vs online teacher, bad
input, and the criterion through the real fairseq-train CLI on an upgraded checkpoint."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mmt_upgrade.core.distill.batch import StudentOutput
from mmt_upgrade.core.distill.losses import KD_METHODS
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.core.vocab import lang_token
from mmt_upgrade.fairseq_io.distiller import Distiller, DistillOptions
from mmt_upgrade.fairseq_io.layout import PreparedData
from mmt_upgrade.fairseq_io.models import collate_pairs, load_model
from mmt_upgrade.fairseq_io.teacher_cache import _dataset, build_cache
from mmt_upgrade.pipeline.data.prepare import DataConfig, prepare_data

from ..conftest import run_cli, tiny_train_argv

NEW = ("it", "ar")


def _upgrade(ckpt: Path, old: PreparedData, texts: dict, out: Path, *extra: str) -> Path:
    args = [a for lang in NEW for a in ("--text", f"{lang}={texts[lang]}")]
    run_cli("mmt-upgrade", "upgrade", str(ckpt), "--out", str(out), "--old-data", str(old.root),
            "--new-spm-size", "500", *args, *extra)
    return out


def _data(old: PreparedData, upgraded: Path, out: Path) -> PreparedData:
    cfg = DataConfig(**{**old.manifest["config"], "langs": ["es", "fr", *NEW], "max_train_pairs": 100,
                        "tokenizer": str(upgraded)})
    return prepare_data(cfg, cache_dir(), out)


@pytest.fixture(scope="module")
def models(tiny_trained, tiny_data, lang_texts, tmp_path_factory):
    """The tiny old model (teacher), its extend and retrain upgrades, and data for each upgrade."""
    root = tmp_path_factory.mktemp("distill")
    ckpt = tiny_trained[0] / "checkpoint_best.pt"
    extend = _upgrade(ckpt, tiny_data, lang_texts, root / "extend")
    retrain = _upgrade(ckpt, tiny_data, lang_texts, root / "retrain", "--vocab-mode", "retrain", "--spm-size", "900")
    return {"teacher": ckpt, "old": tiny_data, "extend": extend, "retrain": retrain,
            "extend_data": _data(tiny_data, extend, root / "extend_data"),
            "retrain_data": _data(tiny_data, retrain, root / "retrain_data")}


def _opts(models, **kw) -> DistillOptions:
    return DistillOptions(str(models["teacher"]), str(models["old"].spm_model), **kw)


def _batch(data: PreparedData, symbols: list[str], directions, n: int = 6) -> dict:
    """A fairseq batch in translation_multi_simple_epoch's layout, from the binarized train data."""
    index = {s: i for i, s in enumerate(symbols)}
    pad, eos = index["<pad>"], index["</s>"]
    srcs, tgts = [], []
    for s, t in directions:
        src_ds, tgt_ds = _dataset(data.bin_dir, "train", s, t, s), _dataset(data.bin_dir, "train", s, t, t)
        for i in range(n):
            srcs.append(torch.cat([torch.tensor([index[lang_token(s)]]), src_ds[i].long()]))
            tgts.append(torch.cat([torch.tensor([index[lang_token(t)]]), tgt_ds[i].long()]))
    src_tokens, src_lengths, prev, target = collate_pairs(srcs, tgts, pad, eos)
    return {"net_input": {"src_tokens": src_tokens, "src_lengths": src_lengths, "prev_output_tokens": prev},
            "target": target, "ntokens": int((target != pad).sum())}


def _student(path: Path, data: PreparedData):
    m = load_model(path, data.bin_dir, data.tokenizer)
    for module in m.model.modules():  # train mode (as in training) without dropout noise
        if hasattr(module, "p") and isinstance(module.p, float):
            module.p = 0.0
    return m.model.train()


def _kd(distiller: Distiller, model, batch) -> tuple[torch.Tensor, int, int]:
    """(loss, aligned, distilled)"""
    logits, _ = model(**batch["net_input"])
    lprobs = torch.log_softmax(logits.float(), -1)
    nll = -lprobs.gather(-1, batch["target"].unsqueeze(-1)).squeeze(-1)
    student = StudentOutput(logits, lprobs, nll, nll)
    r = distiller.kd(student, batch["target"], batch["net_input"]["src_tokens"], next(model.parameters()))
    assert r.unk_examples == 0
    return r.loss, r.aligned, r.distilled


@pytest.mark.parametrize("method", ["shared", "alm"])
def test_teacher_equal_to_student_gives_zero_loss_and_zero_gradient(models, method):
    old = models["old"]
    distiller = Distiller(_opts(models, kd_method=method), load_model(models["teacher"], old.bin_dir, old.tokenizer).symbols,
                          old.langs, old.tokenizer)
    student = _student(models["teacher"], old)
    batch = _batch(old, distiller.aligner.s_symbols.tolist(), [("es", "en"), ("en", "fr")])
    kd, aligned, distilled = _kd(distiller, student, batch)
    assert aligned == distilled == batch["ntokens"] - 2 * 6  # every target token but the language tokens
    assert abs(kd.item()) < 1e-6
    kd.backward()
    worst = max(p.grad.abs().max().item() for p in student.parameters() if p.grad is not None)
    assert worst < 1e-6


@pytest.mark.parametrize("method", ["alm", "shared"])
def test_teacher_unlike_student_gives_a_loss_whose_gradient_lowers_it(models, method):
    """The other side of the zero test: a perturbed student gets a positive loss, and a small step against
    its gradient lowers it (the gradient is the loss's own, not noise)."""
    old = models["old"]
    distiller = Distiller(_opts(models, kd_method=method), load_model(models["teacher"], old.bin_dir, old.tokenizer).symbols,
                          old.langs, old.tokenizer)
    student = _student(models["teacher"], old)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.3 * p.std().nan_to_num() * torch.randn(p.shape, generator=generator))
    batch = _batch(old, distiller.aligner.s_symbols.tolist(), [("es", "en"), ("en", "fr")])
    kd, _, _ = _kd(distiller, student, batch)
    assert kd.item() > 1e-4
    kd.backward()
    params = [p for p in student.parameters() if p.grad is not None]
    sq_norm = sum(float((p.grad ** 2).sum()) for p in params)
    assert sq_norm > 0
    step = 0.05 * kd.item() / sq_norm  # first order: the loss drops by about 5 %
    with torch.no_grad():
        for p in params:
            p -= step * p.grad
    lowered, _, _ = _kd(distiller, student, batch)
    assert lowered.item() < kd.item()


@pytest.mark.parametrize("method", list(KD_METHODS))
def test_cached_and_online_teacher_give_the_same_loss(models, method, tmp_path):
    data = models["retrain_data"]  # a retrained vocabulary: the two sides segment differently
    symbols = load_model(models["retrain"] / "checkpoint.pt", data.bin_dir, data.tokenizer).symbols
    online = Distiller(_opts(models, kd_method=method), symbols, data.langs, data.tokenizer)
    counts = build_cache(online, data.bin_dir, tmp_path / "cache", data.directions, shard_size=40)
    assert counts["cached"] == counts["examples"] == 4 * 100 and counts["skipped_unk"] == 0
    cached = Distiller(_opts(models, kd_method=method, teacher_cache=str(tmp_path / "cache")), symbols, data.langs,
                       data.tokenizer)
    assert cached.teacher is None and len(cached.cache) == 400
    student = _student(models["retrain"] / "checkpoint.pt", data)
    batch = _batch(data, symbols, [("es", "en"), ("en", "fr"), ("it", "en")])
    a, b = _kd(online, student, batch), _kd(cached, student, batch)
    assert a[1:] == b[1:] and a[2] < batch["ntokens"]  # it-en is not distilled
    assert 0 < a[1] <= a[2]
    assert torch.isfinite(a[0]) and a[0].item() == pytest.approx(b[0].item(), rel=1e-5, abs=1e-6)


def test_bad_teacher_languages_and_caches_fail_with_one_clear_message(models, tmp_path):
    data = models["extend_data"]
    symbols = load_model(models["extend"] / "checkpoint.pt", data.bin_dir, data.tokenizer).symbols

    def fails(match: str, **kw):
        with pytest.raises(UserInputError, match=match):
            Distiller(DistillOptions(**{"teacher_path": str(models["teacher"]),
                                        "teacher_spm": str(models["old"].spm_model), **kw}),
                      symbols, data.langs, data.tokenizer)

    fails("pieces that SentencePiece model .*spm.new.model lacks .* they do not belong together",
          teacher_spm=str(models["extend"] / "spm.new.model"))
    fails("gives \\d+ rows but checkpoint .* has \\d+: they do not belong together", teacher_data=str(data.bin_dir))
    fails("--teacher-data .* has no dict\\.\\w+\\.txt", teacher_data=str(data.root))
    fails("--teacher-dict .*nothing.txt: no such file", teacher_dict=str(tmp_path / "nothing.txt"))
    fails("--distill-langs it: the teacher .* does not know 'it'", distill_langs="es,it")
    fails("--kd-method 'kl'", kd_method="kl")
    fails("set --kd-topk > 0", kd_method="uld", kd_topk=0, teacher_cache=str(tmp_path))
    build_cache(Distiller(_opts(models, kd_method="alm"), symbols, data.langs, data.tokenizer), data.bin_dir,
                tmp_path / "c", data.directions, shard_size=30)
    fails("is stale: it was built with another method", kd_method="shared", teacher_cache=str(tmp_path / "c"))
    fails("is stale: it was built with another temperature", kd_method="alm", kd_temperature=50.0, teacher_cache=str(tmp_path / "c"))
    complete = Distiller(_opts(models, kd_method="alm", teacher_cache=str(tmp_path / "c")), symbols, data.langs,
                         data.tokenizer)
    with pytest.raises(UserInputError, match="no entry for a training example: the data changed"):
        complete.cache.get(b"\0" * 16)
    shard = sorted((tmp_path / "c").glob("*.pt"))[1]
    shard.unlink()
    fails("is partial \\(1 of 16 shards missing\\)", kd_method="alm", teacher_cache=str(tmp_path / "c"))
    fails("no manifest.json", teacher_cache=str(tmp_path / "nothing"))


def test_criterion_through_fairseq_train_online_and_from_the_cache(models, tmp_path):
    data, up = models["extend_data"], models["extend"]
    teacher = {"criterion": "cross_vocab_distillation", "teacher-path": str(models["teacher"]),
               "teacher-spm": str(models["old"].spm_model)}
    flags = {"max-update": 3, "save-interval-updates": 0, "log-interval": 1, **teacher}
    log = run_cli("fairseq-train", *tiny_train_argv(data, tmp_path / "online", **flags),
                  "--finetune-from-model", str(up / "checkpoint.pt"))
    text = log.stdout + log.stderr
    assert "cross-vocabulary distillation: alm (weight 0.5, temperature 100.0) from the online teacher" in text
    inner = [line for line in text.splitlines() if "kd_loss=" in line and "valid" not in line]
    assert len(inner) >= 3, text[-3000:]
    aligned = [float(re.search(r"kd_aligned=([\d.]+)", line).group(1)) for line in inner]
    share = [float(re.search(r"kd_share=([\d.]+)", line).group(1)) for line in inner]
    assert all(a == 1.0 for a in aligned)  # extend: old text keeps its pieces, every token aligns
    assert all(0 < s < 1 for s in share)  # it and ar directions are not distilled
    assert (tmp_path / "online" / "checkpoint_last.pt").is_file()

    cache = tmp_path / "cache"
    run_cli("mmt-upgrade", "distill-cache", "--data", str(data.root), "--out", str(cache), "--kd-method", "shared",
            "--teacher-path", teacher["teacher-path"], "--teacher-spm", teacher["teacher-spm"], "--shard-size", "64")
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["shards"]) == 4 * 2  # es-en en-es fr-en en-fr, 100 pairs each
    log = run_cli("fairseq-train", *tiny_train_argv(data, tmp_path / "cached", **flags, **{
        "kd-method": "shared", "teacher-cache": str(cache)}), "--finetune-from-model", str(up / "checkpoint.pt"))
    text = log.stdout + log.stderr
    assert f"from the cache {cache}" in text and "kd_loss=" in text
    kd = [float(v) for v in re.findall(r"kd_loss=([-\d.e]+)", text)]
    assert all(np.isfinite(kd)) and any(v > 0 for v in kd)
