"""`mmt-upgrade upgrade` on checkpoints with the exact shapes and layouts of NLLB-200-distilled-600M and
M2M-100-418M (random weights), against a plain `torch.load` + `torch.save` of the same file.

- nllb: 255,997-piece `dictionary.txt` (SentencePiece id order) + 4 specials + 202 FLORES language tokens
  (transformers' list, appended at run time from a `--lang-dict` file) + the 3 data-source tags = 256,206
  rows; `transformer_12_12` (12+12 pre-norm layers, d 1024, FFN 4096, 16 heads), all embeddings shared;
  the `cfg` of current fairseq with `--add-data-source-prefix-tags`.
- m2m: `model_dict.txt` of 128,000 pieces in another order than SentencePiece's + 100 `__xx__` tokens + 8
  `madeupword` fillers = 128,112 rows; 12+12 pre-norm layers, d 1024, FFN 4096, 16 heads, shared
  embeddings; saved as the published files are (`args` alone, no `cfg`).

The SentencePiece model is learnt on Bible text (en, es, fr; 2,000 pieces) and padded with never-used
pieces to the dictionary's size. The configs come from tiny checkpoints trained by the real fairseq-train in
each layout (tests/integration/layouts.py), with the dimensions and paths rewritten. New language: Bible it
text under a code the model lacks (tyv_Cyrl / tyv); dev text of the three Bible languages. Three legs, in fresh
processes pinned to 2 cores under /usr/bin/time, their order reversed every other repeat, each after a `sync` (no
leg's writes still pending when the next starts); figures are ratios of medians:
- load_save: `torch.load` + `torch.save` of the checkpoint (the reference);
- upgrade: `mmt-upgrade upgrade ... --no-rows-check` (random weights know nothing, so no check can pass them);
- rows_check: the same command with the check, which refuses these weights (exit 2, checked): inputs read +
  the three forward passes of the check, i.e. what the check costs a real model before the surgery.

    nice .venv/bin/python benchmarks/upgrade_real_shapes.py --repeats 3 [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from upgrade_nllb_shape import _layer  # noqa: E402  (benchmarks/ is the script's directory; d 1024, FFN 4096)

from mmt_upgrade.core.paths import cache_dir  # noqa: E402
from mmt_upgrade.core.spm import train_spm  # noqa: E402
from mmt_upgrade.pipeline.data.bible import fetch_bible_db  # noqa: E402
from tests.integration.layouts import M2M_ARGS, NLLB_TAGS, bible_verses, build_layout  # noqa: E402

NLLB_LANGS = "ace_Arab ace_Latn acm_Arab acq_Arab aeb_Arab afr_Latn ajp_Arab aka_Latn amh_Ethi apc_Arab arb_Arab \
ars_Arab ary_Arab arz_Arab asm_Beng ast_Latn awa_Deva ayr_Latn azb_Arab azj_Latn bak_Cyrl bam_Latn ban_Latn bel_Cyrl \
bem_Latn ben_Beng bho_Deva bjn_Arab bjn_Latn bod_Tibt bos_Latn bug_Latn bul_Cyrl cat_Latn ceb_Latn ces_Latn cjk_Latn \
ckb_Arab crh_Latn cym_Latn dan_Latn deu_Latn dik_Latn dyu_Latn dzo_Tibt ell_Grek eng_Latn epo_Latn est_Latn eus_Latn \
ewe_Latn fao_Latn pes_Arab fij_Latn fin_Latn fon_Latn fra_Latn fur_Latn fuv_Latn gla_Latn gle_Latn glg_Latn grn_Latn \
guj_Gujr hat_Latn hau_Latn heb_Hebr hin_Deva hne_Deva hrv_Latn hun_Latn hye_Armn ibo_Latn ilo_Latn ind_Latn isl_Latn \
ita_Latn jav_Latn jpn_Jpan kab_Latn kac_Latn kam_Latn kan_Knda kas_Arab kas_Deva kat_Geor knc_Arab knc_Latn kaz_Cyrl \
kbp_Latn kea_Latn khm_Khmr kik_Latn kin_Latn kir_Cyrl kmb_Latn kon_Latn kor_Hang kmr_Latn lao_Laoo lvs_Latn lij_Latn \
lim_Latn lin_Latn lit_Latn lmo_Latn ltg_Latn ltz_Latn lua_Latn lug_Latn luo_Latn lus_Latn mag_Deva mai_Deva mal_Mlym \
mar_Deva min_Latn mkd_Cyrl plt_Latn mlt_Latn mni_Beng khk_Cyrl mos_Latn mri_Latn zsm_Latn mya_Mymr nld_Latn nno_Latn \
nob_Latn npi_Deva nso_Latn nus_Latn nya_Latn oci_Latn gaz_Latn ory_Orya pag_Latn pan_Guru pap_Latn pol_Latn por_Latn \
prs_Arab pbt_Arab quy_Latn ron_Latn run_Latn rus_Cyrl sag_Latn san_Deva sat_Beng scn_Latn shn_Mymr sin_Sinh slk_Latn \
slv_Latn smo_Latn sna_Latn snd_Arab som_Latn sot_Latn spa_Latn als_Latn srd_Latn srp_Cyrl ssw_Latn sun_Latn swe_Latn \
swh_Latn szl_Latn tam_Taml tat_Cyrl tel_Telu tgk_Cyrl tgl_Latn tha_Thai tir_Ethi taq_Latn taq_Tfng tpi_Latn tsn_Latn \
tso_Latn tuk_Latn tum_Latn tur_Latn twi_Latn tzm_Tfng uig_Arab ukr_Cyrl umb_Latn urd_Arab uzn_Latn vec_Latn vie_Latn \
war_Latn wol_Latn xho_Latn ydd_Hebr yor_Latn yue_Hant zho_Hans zho_Hant zul_Latn".split()
M2M_LANGS = "af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl gu ha he hi hr \
ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn mr ms my ne nl no ns oc or pa pl ps pt ro \
ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr uk ur uz vi wo xh yi yo zh zu".split()
SHAPES = {  # name: (template layout, languages, pieces, rows, new code, the Bible languages' codes)
    "nllb": (NLLB_TAGS, NLLB_LANGS, 255_997, 256_206, "tyv_Cyrl", {"en": "eng_Latn", "es": "spa_Latn",
                                                                    "fr": "fra_Latn"}),
    "m2m": (M2M_ARGS, M2M_LANGS, 128_000, 128_112, "tyv", {"en": "en", "es": "es", "fr": "fr"}),
}
DIMS = {"encoder_embed_dim": 1024, "decoder_embed_dim": 1024, "decoder_output_dim": 1024, "decoder_input_dim": 1024,
        "encoder_ffn_embed_dim": 4096, "decoder_ffn_embed_dim": 4096, "encoder_layers": 12, "decoder_layers": 12,
        "encoder_attention_heads": 16, "decoder_attention_heads": 16, "encoder_normalize_before": True,
        "decoder_normalize_before": True, "share_all_embeddings": True, "share_decoder_input_output_embed": True}


def padded_spm(texts: dict[str, list[str]], pieces: int, path: Path) -> list[str]:
    """A SentencePiece model learnt on `texts`, padded with never-used pieces to `pieces` dictionary pieces (its
    ids 0-3 are fairseq's specials); returns the pieces in id order."""
    from sentencepiece import sentencepiece_model_pb2

    train_spm(texts, path, 2000, 2000, seed=1, byte_fallback=False)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    for i in range(pieces + 4 - len(proto.pieces)):
        piece = proto.pieces.add()
        piece.piece, piece.score = f"\u2581pad{i}", -1000.0
    path.write_bytes(proto.SerializeToString())
    return [p.piece for p in proto.pieces][4:]


def build(name: str, work: Path, texts, template_root: Path) -> tuple[Path, list[str]]:
    """The checkpoint of `name`'s shape and its files in `work`; returns it and the upgrade's flags."""
    layout, langs, n_pieces, rows, new, bible = SHAPES[name]
    if (work / "flags.json").is_file():  # built by an earlier run (--keep)
        return work / "checkpoint.pt", json.loads((work / "flags.json").read_text())
    work.mkdir(parents=True, exist_ok=True)
    template = build_layout(layout, texts, template_root / name, updates=1)
    pieces = padded_spm({b: texts.lines["train"][b] + texts.lines["valid"][b] for b in bible}, n_pieces,
                        work / "spm.model")
    lines = [f"{p} 1" for p in pieces]
    flags = ["--spm", str(work / "spm.model")]
    task = {"langs": None}
    if layout.langtoks_in_file:  # M2M: frequency-like order, the language tokens and fillers in the file
        random.Random(0).shuffle(lines)
        lines += [f"__{x}__ 1" for x in langs] + [f"madeupword{i:04d} 0" for i in range(8)]
        (work / "model_dict.txt").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        flags += ["--dict", str(work / "model_dict.txt")]
        task |= {"fixed_dictionary": str(work / "model_dict.txt"), "langs": langs}
    else:
        (work / "dictionary.txt").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        (work / "langs.txt").write_text("".join(x + "\n" for x in langs))
        flags += ["--dict", str(work / "dictionary.txt"), "--langs-file", str(work / "langs.txt")]
        task |= {"fixed_dictionary": str(work / "dictionary.txt"), "lang_dict": str(work / "langs.txt")}
    assert 4 + len(lines) + (0 if layout.langtoks_in_file else len(langs) + 3) == rows

    state = torch.load(template.checkpoint, map_location="cpu", weights_only=False)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(rows, 1024, generator=g) * 1024**-0.5
    model = {"encoder.embed_tokens.weight": emb, "decoder.embed_tokens.weight": emb,
             "decoder.output_projection.weight": emb}
    for side, decoder in (("encoder", False), ("decoder", True)):
        for i in range(12):
            model |= _layer(f"{side}.layers.{i}", g, decoder)
        model[f"{side}.layer_norm.weight"] = torch.ones(1024)
        model[f"{side}.layer_norm.bias"] = torch.zeros(1024)
        model[f"{side}.version"] = torch.Tensor([3])  # fairseq's state-dict version, in every checkpoint
    state["model"] = model
    pairs = [f"{bible['en']}-{x}" for x in langs if x != bible["en"]]
    settings = {**DIMS, **task, "lang_pairs": pairs, "data": str(work)}
    sections = [state["args"]] if layout.args_only else [state["cfg"]["task"], state["cfg"]["model"]]
    for ns in sections:
        for k, v in settings.items():
            setattr(ns, k, v)
    state["task_state"] = {"model_langs": langs}
    state.pop("last_optimizer_state", None)
    torch.save(state, work / "checkpoint.pt")
    shutil.rmtree(template_root / name)

    (work / "new.txt").write_text("\n".join(texts.lines["train"]["it"]) + "\n", encoding="utf-8")
    flags += ["--new-langs", new, "--text", f"{new}={work / 'new.txt'}"]
    for b, code in bible.items():  # dev text of the old languages the Bible has (one would be enough)
        (work / f"dev.{code}").write_text("\n".join(texts.lines["dev"][b]) + "\n", encoding="utf-8")
        flags += ["--dev-text", f"{code}={work / f'dev.{code}'}"]
    (work / "flags.json").write_text(json.dumps(flags))
    return work / "checkpoint.pt", flags


def _bible_dev_only(flags: list[str], codes: set[str]) -> list[str]:
    """A checkpoint built by an earlier version of this script (--keep) had dev text for every old language."""
    out = []
    for flag, value in zip(flags[::2], flags[1::2]):
        if flag != "--dev-text" or value.split("=")[0] in codes:
            out += [flag, value]
    return out


def timed(cmd: list[str], expect_rc: int = 0) -> dict:
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", "taskset", "-c", "0,1", *cmd], capture_output=True,
                          text=True)
    wall = time.monotonic() - start
    if proc.returncode != expect_rc or (expect_rc and "rows mean other pieces" not in proc.stderr):
        raise SystemExit(f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    _, max_kb = proc.stderr.strip().splitlines()[-1].split()[1:]
    return {"wall_s": round(wall, 2), "peak_rss_gib": round(int(max_kb) / 2**20, 3), "stdout": proc.stdout[-600:]}


def bench(name: str, ckpt: Path, flags: list[str], repeats: int, which: list[str]) -> dict:
    size = ckpt.stat().st_size
    py = sys.executable
    copy = ckpt.parent / "copy.pt"
    roundtrip = [py, "-c", "import sys, torch; torch.save(torch.load(sys.argv[1], map_location='cpu', "
                           "weights_only=False), sys.argv[2])", str(ckpt), str(copy)]
    upgrade = [str(Path(py).parent / "mmt-upgrade"), "upgrade", str(ckpt), *flags]
    legs: dict[str, list[dict]] = {leg: [] for leg in which}
    for r in range(repeats):
        order = list(legs) if r % 2 == 0 else list(legs)[::-1]
        for leg in order:
            out = ckpt.parent / "upgraded"
            shutil.rmtree(out, ignore_errors=True)
            os.sync()  # the previous leg's written file leaves the page cache's dirty list before this one starts
            run = timed(roundtrip if leg == "load_save" else
                        upgrade + ["--out", str(out)] + (["--no-rows-check"] if leg == "upgrade" else []),
                        expect_rc=2 if leg == "rows_check" else 0)
            run["peak_rss_over_checkpoint"] = round(run["peak_rss_gib"] * 2**30 / size, 3)
            if leg == "upgrade":
                report = json.loads((out / "upgrade.json").read_text())
                run["added_pieces"] = report["vocab"]["added"]
                run["rows"] = report.get("rows")
                run["segmentation_change"] = report.get("segmentation_change")
                run["merged_spm"] = (out / "spm.model").is_file()
            legs[leg].append(run)
            print(name, leg, json.dumps({k: v for k, v in run.items() if k != "stdout"}), flush=True)
            copy.unlink(missing_ok=True)
            shutil.rmtree(out, ignore_errors=True)
    med = {leg: statistics.median(x["wall_s"] for x in runs) for leg, runs in legs.items()}
    return {"checkpoint_gib": round(size / 2**30, 3), "legs": legs, "median_wall_s": med,
            **{f"{leg}_wall_ratio": round(med[leg] / med["load_save"], 3) for leg in which[1:]},
            "median_peak_rss_over_checkpoint": {
                leg: statistics.median(x["peak_rss_over_checkpoint"] for x in runs) for leg, runs in legs.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shapes", default="nllb,m2m")
    ap.add_argument("--work", default="/tmp/bench-real-shapes")
    ap.add_argument("--keep", action="store_true", help="keep the multi-GB checkpoints")
    ap.add_argument("--legs", default="load_save,upgrade,rows_check", help="load_save first")
    args = ap.parse_args()
    work = Path(args.work)
    texts = bible_verses(fetch_bible_db(cache_dir()))
    summary = {}
    for name in args.shapes.split(","):
        ckpt, flags = build(name, work / name, texts, work / "templates")
        flags = _bible_dev_only(flags, set(SHAPES[name][5].values()))
        summary[name] = bench(name, ckpt, flags, args.repeats, args.legs.split(","))
        print(json.dumps({name: {k: v for k, v in summary[name].items() if k != "legs"}}, indent=1), flush=True)
        if not args.keep:
            shutil.rmtree(work / name)
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({n: {k: v for k, v in s.items() if k != "legs"} for n, s in summary.items()}, indent=1))


if __name__ == "__main__":
    main()
