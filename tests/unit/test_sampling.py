"""Up-sampling on top of temperature sampling: the distribution in closed form, and bad flags."""
from __future__ import annotations

import pytest

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.sampling import SamplingOptions, sampling_distribution

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
        SamplingOptions(["ar"], 2.0, [], 1.0).check_langs(langs)
    with pytest.raises(UserInputError, match="--related-factor must be positive"):
        SamplingOptions(["it"], 2.0, ["es"], 0.0).check()
    with pytest.raises(UserInputError, match="es given both"):
        SamplingOptions(["es"], 2.0, ["es"], 2.0).check()
