"""Wall time and peak memory of `mmt-upgrade upgrade` on a checkpoint of NLLB-600M shape.

The checkpoint has NLLB-200-distilled-600M's shape (d_model 1024, 12+12 pre-norm layers, FFN 4096,
16 heads, one shared 256,206-row embedding = 615M fp32 parameters) with random weights; its
SentencePiece model is this project's real 4k model padded with never-used pieces to 256,182 pieces,
so the dictionary, the 20 old language tokens and the checkpoint agree. New languages: it, ar (Bible
train text). Each repeat runs the real CLI in a fresh process on 2 cores under /usr/bin/time;
the checkpoint is built once and cached.

    .venv/bin/python benchmarks/upgrade_nllb_shape.py --repeats 3
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from mmt_upgrade.core.paths import cache_dir
from mmt_upgrade.core.spm import SPECIALS, dictionary_lines, load_spm
from mmt_upgrade.fairseq_io.drivers import run_fairseq_train
from mmt_upgrade.pipeline.data.prepare import DataConfig, bible_texts, prepare_data
from mmt_upgrade.pipeline.runconfig import load_config
from mmt_upgrade.pipeline.train import fairseq_train_argv

D, LAYERS, FFN, ROWS = 1024, 12, 4096, 256_206
OLD_LANGS = ["en", "es", "fr", "de", "ru", "pt", "uk", "fa", "ko", "ja", "zh", "hi", "bn", "pl", "ro", "tr", "sw",
             "id", "vi", "tl"]


def _layer(prefix: str, g: torch.Generator, decoder: bool) -> dict[str, torch.Tensor]:
    out = {}
    attns = ["self_attn", "encoder_attn"] if decoder else ["self_attn"]
    for attn in attns:
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[f"{prefix}.{attn}.{proj}.weight"] = torch.randn(D, D, generator=g) * D**-0.5
            out[f"{prefix}.{attn}.{proj}.bias"] = torch.zeros(D)
        out[f"{prefix}.{attn}_layer_norm.weight"] = torch.ones(D)
        out[f"{prefix}.{attn}_layer_norm.bias"] = torch.zeros(D)
    out[f"{prefix}.fc1.weight"] = torch.randn(FFN, D, generator=g) * D**-0.5
    out[f"{prefix}.fc1.bias"] = torch.zeros(FFN)
    out[f"{prefix}.fc2.weight"] = torch.randn(D, FFN, generator=g) * FFN**-0.5
    out[f"{prefix}.fc2.bias"] = torch.zeros(D)
    out[f"{prefix}.final_layer_norm.weight"] = torch.ones(D)
    out[f"{prefix}.final_layer_norm.bias"] = torch.zeros(D)
    return out


def build(work: Path, template_ckpt: Path, template_spm: Path) -> tuple[Path, Path, Path]:
    """The NLLB-shaped checkpoint, its padded SPM and dictionary (cached in `work`)."""
    from sentencepiece import sentencepiece_model_pb2

    ckpt, spm_path, dict_path = work / "nllb600m_shape.pt", work / "spm.model", work / "dict.txt"
    if ckpt.exists():
        return ckpt, spm_path, dict_path
    work.mkdir(parents=True, exist_ok=True)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(template_spm.read_bytes())
    n_pieces = ROWS - len(OLD_LANGS)
    for i in range(n_pieces - len(proto.pieces)):
        piece = proto.pieces.add()
        piece.piece, piece.score = f"\u2581pad{i}", -1000.0
    spm_path.write_bytes(proto.SerializeToString())
    dict_path.write_text("\n".join(dictionary_lines(load_spm(spm_path))) + "\n", encoding="utf-8")
    assert len(SPECIALS) + len(dict_path.read_text().splitlines()) + len(OLD_LANGS) == ROWS

    state = torch.load(template_ckpt, map_location="cpu", weights_only=False)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(ROWS, D, generator=g) * D**-0.5
    model = {"encoder.embed_tokens.weight": emb, "decoder.embed_tokens.weight": emb,
             "decoder.output_projection.weight": emb}
    for side, decoder in (("encoder", False), ("decoder", True)):
        for i in range(LAYERS):
            model |= _layer(f"{side}.layers.{i}", g, decoder)
        model[f"{side}.layer_norm.weight"] = torch.ones(D)
        model[f"{side}.layer_norm.bias"] = torch.zeros(D)
    state["model"] = model
    for section in ("task", "model"):
        ns = state["cfg"][section]
        ns.langs = OLD_LANGS
        ns.lang_pairs = [f"{x}-en" for x in OLD_LANGS[1:]] + [f"en-{x}" for x in OLD_LANGS[1:]]
    state["task_state"] = {"model_langs": OLD_LANGS}
    state.pop("last_optimizer_state", None)
    torch.save(state, ckpt)
    return ckpt, spm_path, dict_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=str(cache_dir() / "bench" / "nllb600m_shape"))
    ap.add_argument("--new-spm-size", type=int, default=4000)
    ap.add_argument("--init", default="unk")
    args = ap.parse_args()
    work = Path(args.work)
    template = work / "template.pt"
    if not template.exists():  # a real one-update checkpoint of the tiny config supplies fairseq's cfg
        cfg = load_config("tiny", ["train.max-update=1"])
        run_fairseq_train(fairseq_train_argv(cfg, prepare_data(cfg.data, cache_dir()), work / "template"))
        shutil.copyfile(work / "template" / "checkpoint_last.pt", template)
    old_data = prepare_data(load_config("old_model").data, cache_dir())
    ckpt, spm_path, dict_path = build(work, template, old_data.spm_model)
    size = ckpt.stat().st_size

    texts = bible_texts(DataConfig(langs=OLD_LANGS[1:] + ["it", "ar"], max_train_pairs=10000), cache_dir(), "valid")
    train = bible_texts(DataConfig(langs=["es", "it", "ar"], max_train_pairs=10000), cache_dir(), "train")
    files = []
    for lang in OLD_LANGS:
        path = work / f"dev.{lang}"
        path.write_text("\n".join(texts[lang]) + "\n", encoding="utf-8")
        files += ["--dev-text", f"{lang}={path}"]
    for lang in ("it", "ar"):
        path = work / f"train.{lang}"
        path.write_text("\n".join(train[lang]) + "\n", encoding="utf-8")
        files += ["--text", f"{lang}={path}"]

    runs = []
    for r in range(args.repeats):
        out = work / f"upgraded-{r}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = ["/usr/bin/time", "-f", "TIME %e %M", "taskset", "-c", "0,1",
               str(Path(sys.executable).parent / "mmt-upgrade"), "upgrade", str(ckpt), "--out", str(out),
               "--spm", str(spm_path), "--dict", str(dict_path), "--new-langs", "it,ar", "--init", args.init,
               "--new-spm-size", str(args.new_spm_size), *files]
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - start
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        elapsed, max_kb = proc.stderr.strip().splitlines()[-1].split()[1:]
        report = json.loads((out / "upgrade.json").read_text())
        runs.append({"wall_s": round(wall, 2), "time_elapsed_s": float(elapsed), "peak_rss_gib": int(max_kb) / 2**20,
                     "peak_rss_over_checkpoint": int(max_kb) * 1024 / size, "added": report["vocab"]["added"],
                     "library_wall_s": report["wall_s"]})
        print(json.dumps(runs[-1]), flush=True)
        shutil.rmtree(out)
    summary = {
        "checkpoint_gib": size / 2**30,
        "rows": ROWS,
        "params_m": round(sum(v.numel() for k, v in torch.load(ckpt, mmap=True, weights_only=False)["model"].items()
                              if k != "decoder.embed_tokens.weight" and k != "decoder.output_projection.weight") / 1e6, 1),
        "runs": runs,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "median_peak_rss_over_checkpoint": statistics.median(r["peak_rss_over_checkpoint"] for r in runs),
        "targets": {"wall_s": 20, "peak_rss_over_checkpoint": 3},
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
