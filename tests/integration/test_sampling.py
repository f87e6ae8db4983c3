"""Up-sampling on top of temperature sampling: the distribution, and fairseq's virtual epoch following it."""
from __future__ import annotations

import json
import re

import pytest

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.sampling import check_upsampling, sampling_distribution

from ..conftest import run_cli, tiny_train_argv

KEYS = ["main:es-en", "main:en-es", "main:it-en", "main:en-it", "main:ar-en", "main:en-ar"]


def test_distribution_is_temperature_times_factors():
    sizes = [100, 100, 25, 25, 400, 400]
    probs = sampling_distribution(KEYS, sizes, "temperature", 2.0, ["it", "ar"], 3.0, ["es"], 1.5)
    total = sum(sizes)
    w = [(n / total) ** 0.5 for n in sizes]
    w = [w[0] * 1.5, w[1] * 1.5, w[2] * 3, w[3] * 3, w[4] * 3, w[5] * 3]
    assert probs == pytest.approx([x / sum(w) for x in w], rel=1e-12)
    uniform = sampling_distribution(KEYS, sizes, "uniform", 2.0, ["it"], 4.0)
    assert uniform == pytest.approx([1 / 12, 1 / 12, 4 / 12, 4 / 12, 1 / 12, 1 / 12])
    with pytest.raises(UserInputError, match="--sampling-method temperature or uniform"):
        sampling_distribution(KEYS, sizes, "concat", 1.0, ["it"], 2.0)


def test_bad_upsampling_flags():
    langs = ["en", "es", "it"]
    with pytest.raises(UserInputError, match="--upsample-langs: ar not in --langs"):
        check_upsampling(langs, ["ar"], 2.0, [], 1.0)
    with pytest.raises(UserInputError, match="--related-factor must be positive"):
        check_upsampling(langs, ["it"], 2.0, ["es"], 0.0)
    with pytest.raises(UserInputError, match="es given both"):
        check_upsampling(langs, ["es"], 2.0, ["es"], 2.0)


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
