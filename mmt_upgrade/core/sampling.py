"""Sampling distribution over training directions: temperature sampling times up-sampling factors.

p(direction) ∝ (n / N)^(1/T) · F^[it touches an up-sampled language] · G^[it touches a related language]
(Sun et al. 2023 up-sample the new languages and the old languages of their families). With equal-size
Bible pairs temperature alone is uniform, so the factors are what moves the mixture.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.options import OptionGroup, option

SAMPLING_METHODS = ("temperature", "uniform")


def direction_langs(key: str) -> tuple[str, str]:
    """fairseq's dataset key `main:es-en` -> ("es", "en")."""
    src, _, tgt = key.split(":")[-1].partition("-")
    return src, tgt


@dataclass
class SamplingOptions(OptionGroup):
    """The up-sampling flags of `--task upgrade_translation` (its parser gets them from here)."""

    upsample_langs: list[str] = option([], "multiply the sampling weight of every direction with one of these "
                                           "languages", metavar="LANGS")
    upsample_factor: float = option(1.0, "the factor of --upsample-langs", metavar="F")
    related_langs: list[str] = option([], "old languages related to the new ones, up-sampled by --related-factor",
                                      metavar="LANGS")
    related_factor: float = option(1.0, "the factor of --related-langs", metavar="G")

    def active(self) -> bool:
        return bool(self.upsample_langs or self.related_langs)

    def check(self) -> None:
        for flag, value in (("--upsample-factor", self.upsample_factor), ("--related-factor", self.related_factor)):
            if value <= 0:
                raise UserInputError(f"{flag} must be positive (got {value:g})")
        both = set(self.upsample_langs) & set(self.related_langs)
        if both:
            raise UserInputError(f"{', '.join(sorted(both))} given both in --upsample-langs and --related-langs")

    def check_langs(self, langs: Sequence[str]) -> None:
        """Every up-sampled language must be one of the model's."""
        for flag, chosen in (("--upsample-langs", self.upsample_langs), ("--related-langs", self.related_langs)):
            unknown = [x for x in chosen if x not in langs]
            if unknown:
                raise UserInputError(f"{flag}: {', '.join(unknown)} not in --langs ({','.join(langs)})")


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
