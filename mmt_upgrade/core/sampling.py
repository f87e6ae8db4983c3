"""Sampling distribution over training directions: temperature sampling times up-sampling factors.

p(direction) ∝ (n / N)^(1/T) · F^[it touches an up-sampled language] · G^[it touches a related language]
(Sun et al. 2023 up-sample the new languages and the old languages of their families). With equal-size
Bible pairs temperature alone is uniform, so the factors are what moves the mixture.
"""
from __future__ import annotations

from typing import Sequence

from mmt_upgrade.core.errors import UserInputError

SAMPLING_METHODS = ("temperature", "uniform")


def direction_langs(key: str) -> tuple[str, str]:
    """fairseq's dataset key `main:es-en` -> ("es", "en")."""
    src, _, tgt = key.split(":")[-1].partition("-")
    return src, tgt


def check_upsampling(langs: Sequence[str], upsample_langs: Sequence[str], upsample_factor: float,
                     related_langs: Sequence[str], related_factor: float) -> None:
    for flag, chosen in (("--upsample-langs", upsample_langs), ("--related-langs", related_langs)):
        unknown = [x for x in chosen if x not in langs]
        if unknown:
            raise UserInputError(f"{flag}: {', '.join(unknown)} not in --langs ({','.join(langs)})")
    for flag, value in (("--upsample-factor", upsample_factor), ("--related-factor", related_factor)):
        if value <= 0:
            raise UserInputError(f"{flag} must be positive (got {value:g})")
    both = set(upsample_langs) & set(related_langs)
    if both:
        raise UserInputError(f"{', '.join(sorted(both))} given both in --upsample-langs and --related-langs")


def sampling_distribution(keys: Sequence[str], sizes: Sequence[int], method: str, temperature: float,
                          upsample_langs: Sequence[str] = (), upsample_factor: float = 1.0,
                          related_langs: Sequence[str] = (), related_factor: float = 1.0) -> list[float]:
    """Probabilities, one per direction key, summing to 1."""
    if method not in SAMPLING_METHODS:
        raise UserInputError(f"up-sampling works on --sampling-method {' or '.join(SAMPLING_METHODS)}, "
                             f"not {method!r}")
    total = sum(sizes)
    weights = []
    for key, n in zip(keys, sizes):
        w = (n / total) ** (1.0 / temperature) if method == "temperature" else 1.0
        langs = set(direction_langs(key))
        if langs & set(upsample_langs):
            w *= upsample_factor
        if langs & set(related_langs):
            w *= related_factor
        weights.append(w)
    norm = sum(weights)
    return [w / norm for w in weights]
