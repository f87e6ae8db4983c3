"""fairseq's virtual epoch follows the up-sampling distribution (the distribution itself: tests/unit)."""
from __future__ import annotations

import json
import re

import pytest

from mmt_upgrade.core.sampling import sampling_distribution

from ..conftest import run_cli, tiny_train_argv


def test_fairseq_virtual_epoch_follows_the_distribution(tiny_data, tmp_path):
    save = tmp_path / "run"
    argv = tiny_train_argv(tiny_data, save, **{"max-update": 1, "save-interval-updates": 0})
    out = run_cli("fairseq-train", *argv, "--upsample-langs", "es", "--upsample-factor", "3")
    written = json.loads((save / "sampling.json").read_text())
    probs = {k: v["probability"] for k, v in written["directions"].items()}
    sizes = [v["size"] for v in written["directions"].values()]
    expected = sampling_distribution(list(probs), sizes, "temperature", 1.5, ["es"], 3.0)
    assert list(probs.values()) == pytest.approx(expected, abs=1e-6)
    assert probs["main:es-en"] / probs["main:fr-en"] == pytest.approx(3.0 * (sizes[0] / sizes[2]) ** (1 / 1.5), rel=1e-4)
    log = out.stdout + out.stderr
    line = re.search(r"\[train\] Resampled sizes: (\{.*?\});", log).group(1)  # values may print as np.int64(n)
    resampled = {k: int(n) for k, n in re.findall(r"'([^']+)': (?:np\.int64\()?(\d+)", line)}
    total = sum(resampled.values())
    for key, p in probs.items():
        assert resampled[key] / total == pytest.approx(p, abs=0.01), (key, resampled)
    bad = run_cli("fairseq-train", *argv, "--upsample-langs", "it", check=False)
    assert bad.returncode != 0 and "--upsample-langs: it not in --langs" in bad.stderr
