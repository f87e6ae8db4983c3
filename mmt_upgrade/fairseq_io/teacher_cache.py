"""`--teacher-cache DIR`: the teacher signal of every training example, computed once.

Layout: `manifest.json` (what the cache was built for, its shards, whether it is complete) and one
file per shard, `<split>.<src>-<tgt>.<n>.pt` (keys `(n, 16)` uint8, offsets `(n+1,)`, values). Shards
are written atomically and skipped when present, so an interrupted build resumes. Examples are keyed
by content (`align.example_key`), so batching, sampling and epochs do not matter.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mmt_upgrade.core.distill.batch import BatchAlignment
from mmt_upgrade.core.distill.losses import KDMethod
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import (
    atomic_path,
    log,
    sha256_file,
    sha256_text,
    write_json_atomic,
)
from mmt_upgrade.core.vocab import Tokenizer
from mmt_upgrade.fairseq_io.teacher import TeacherVocab

CACHE_FORMAT = 2  # bump whenever a method's stored signal changes meaning or layout
MANIFEST = "manifest.json"


def fingerprint(method: KDMethod, teacher: TeacherVocab, student_symbols: Sequence[str], tokenizer: Tokenizer,
                langs: Sequence[str]) -> dict:
    """Everything the stored signal depends on."""
    return {
        "format": CACHE_FORMAT,
        "method": method.name,
        "temperature": method.tau,
        "topk": method.topk if method.needs_topk else None,
        "teacher_sha256": sha256_file(teacher.path),
        "teacher_spm_sha256": sha256_file(teacher.spm_path),
        "teacher_rows_sha256": sha256_text("\n".join(teacher.symbols)),  # its dictionary, languages, layout
        "student_symbols_sha256": sha256_text("\n".join(student_symbols)),
        "student_spm_sha256": {lang: sha256_file(tokenizer.model_path(lang)) for lang in langs},
        "langs": list(langs),
    }


class TeacherCache:
    def __init__(self, root: Path, index: dict[bytes, tuple[int, int, int]], values: list[torch.Tensor]):
        self.root, self._index, self._values = root, index, values

    @classmethod
    def load(cls, root: Path, expected: dict) -> "TeacherCache":
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise UserInputError(f"--teacher-cache {root}: no {MANIFEST}; build it with `mmt-upgrade distill-cache`")
        manifest = json.loads(path.read_text())
        stale = [k for k in expected if manifest.get("fingerprint", {}).get(k) != expected[k]]
        if stale:
            raise UserInputError(f"--teacher-cache {root} is stale: it was built with another {', '.join(stale)} "
                                 f"than this run's; rebuild it (`mmt-upgrade distill-cache`) or drop the flag")
        missing = [s for s in manifest["shards"] if not (root / s).is_file()]
        if not manifest.get("complete") or missing:
            raise UserInputError(f"--teacher-cache {root} is partial ({len(missing)} of {len(manifest['shards'])} "
                                 f"shards missing): run the same `mmt-upgrade distill-cache` again, it resumes")
        index: dict[bytes, tuple[int, int, int]] = {}
        values = []
        for n, name in enumerate(manifest["shards"]):
            shard = torch.load(root / name, weights_only=True)
            offsets = shard["offsets"].tolist()
            for i, key in enumerate(shard["keys"].numpy()):
                index[key.tobytes()] = (n, offsets[i], offsets[i + 1])
            values.append(shard["values"])
        return cls(root, index, values)

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: bytes) -> np.ndarray:
        if key not in self._index:
            raise UserInputError(f"--teacher-cache {self.root} has no entry for a training example: the data changed "
                                 f"since the cache was built (stale cache); rebuild it")
        n, start, stop = self._index[key]
        return self._values[n][start:stop].numpy()


def _dataset(data_bin: Path, split: str, src: str, tgt: str, lang: str):
    from fairseq.data import data_utils

    for a, b in ((src, tgt), (tgt, src)):
        prefix = data_bin / f"{split}.{a}-{b}.{lang}"
        if Path(f"{prefix}.idx").is_file():
            return data_utils.load_indexed_dataset(str(prefix), None)
    raise UserInputError(f"{data_bin} has no {split} data for {src}-{tgt}")


def build_cache(distiller, data_bin: Path, out: Path, directions: Sequence[tuple[str, str]], split: str = "train",
                shard_size: int = 2000, max_tokens: int = 6000) -> dict:
    """Run the teacher once over every example of `directions` and store what `distiller.method` needs."""
    out, data_bin = Path(out), Path(data_bin)
    fp = distiller.fingerprint()
    directions = [(s, t) for s, t in directions if s in distiller.langs and t in distiller.langs]
    if not directions:
        raise UserInputError(f"no direction of {data_bin} has both languages among the teacher's "
                             f"{', '.join(distiller.langs)}: nothing to cache")
    data = {(s, t): (_dataset(data_bin, split, s, t, s), _dataset(data_bin, split, s, t, t)) for s, t in directions}
    shards = {(s, t, n): f"{split}.{s}-{t}.{n:05d}.pt" for (s, t), (ds, _) in data.items()
              for n in range(math.ceil(len(ds) / shard_size))}
    manifest_path = out / MANIFEST
    manifest = {"fingerprint": fp, "split": split, "shard_size": shard_size, "shards": list(shards.values()),
                "complete": False}
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if {k: old.get(k) for k in ("fingerprint", "split", "shard_size", "shards")} != \
                {k: manifest[k] for k in ("fingerprint", "split", "shard_size", "shards")}:
            raise UserInputError(f"{out} holds a teacher cache built for another teacher, method or data; "
                                 f"remove it or choose another --out")
    write_json_atomic(manifest_path, manifest)
    sym = {lang: i for i, lang in distiller.lang_of.items()}  # language -> its student language token
    counts = {"examples": 0, "cached": 0, "skipped_unk": 0}
    for (s, t, n), name in shards.items():
        if (out / name).is_file():
            continue
        src_ds, tgt_ds = data[(s, t)]
        rows = range(n * shard_size, min((n + 1) * shard_size, len(src_ds)))
        views = []
        for i in rows:
            key_view = distiller.view(np.concatenate([[sym[s]], src_ds[i].numpy()]),
                                      np.concatenate([[sym[t]], tgt_ds[i].numpy()]))
            counts["examples"] += 1
            if key_view[1] is None:
                counts["skipped_unk"] += 1
            else:
                views.append(key_view)
        keys, parts = _signals(distiller, views, max_tokens)
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
        with atomic_path(out / name) as tmp:
            torch.save({"keys": torch.from_numpy(np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16).copy()),
                        "offsets": torch.from_numpy(offsets),
                        "values": torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0)}, tmp)
        counts["cached"] += len(keys)
        log(f"distill-cache: {name}: {len(keys)} examples ({counts['cached']} this run)")
    manifest["complete"] = True
    write_json_atomic(manifest_path, manifest)
    return counts


@torch.inference_mode()
def _signals(distiller, views: list, max_tokens: int) -> tuple[list[bytes], list[np.ndarray]]:
    """The method's teacher signal for each (key, TeacherExample), in batches of about `max_tokens`."""
    order = sorted(range(len(views)), key=lambda i: len(views[i][1].tgt))
    keys, parts = [], []
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop - start + 1) * len(views[order[stop]][1].tgt) <= max_tokens:
            stop += 1
        batch = [views[i] for i in order[start:stop]]
        exs = [v for _, v in batch]
        align = BatchAlignment.collate([e.align for e in exs], max(len(e.align.s_chunk) for e in exs),
                                       max(len(e.tgt) for e in exs))
        t_logits, t_target = distiller.teacher.logits(exs, torch.device("cpu"))
        signal = distiller.method.teacher_signal(t_logits, t_target, align)
        keys += [k for k, _ in batch]
        parts += distiller.method.split(signal, align)
        start = stop
    return keys, parts
