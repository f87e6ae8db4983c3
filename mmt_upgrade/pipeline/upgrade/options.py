"""`mmt-upgrade upgrade`'s options, declared once: the CLI flags, an experiment's `upgrade:` keys (vocabulary
and growth keys in one flat mapping) and the flags a printed plan shows all come from these declarations."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from mmt_upgrade.core.embeddings import INIT_METHODS
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import sha256_text
from mmt_upgrade.core.growth import GrowthOptions
from mmt_upgrade.core.options import OptionGroup, flag_name, option
from mmt_upgrade.core.vocab import VOCAB_MODES


def parse_langtok_init(text: str) -> dict[str, str]:
    """`it=es,ar=mean` -> {"it": "es", "ar": "mean"}."""
    out = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        lang, sep, source = item.partition("=")
        if not sep or not lang or not source:
            raise UserInputError(f"--langtok-init: expected NEW=OLD or NEW=mean, got {item!r}")
        out[lang.strip()] = source.strip()
    return out


def show_langtok_init(value: Mapping[str, str]) -> str | None:
    """{"it": "es", "ar": "mean"} -> `it=es,ar=mean`; None (no flag) when empty."""
    return ",".join(f"{k}={v}" for k, v in value.items()) or None


@dataclass
class UpgradeOptions(OptionGroup):
    """Everything an upgrade does besides its inputs; `seed` seeds every random draw (SentencePiece, new rows,
    growth noise)."""
    vocab_mode: str = option("extend", "extend: keep every old piece and segmentation, add new pieces; retrain: "
                                       "one new joint SPM", choices=VOCAB_MODES)
    new_spm_size: int = option(4000, "extend: size of the SPM learnt on the new languages (its pieces the old "
                                     "vocabulary lacks are added)")
    spm_size: int = option(0, "retrain: joint SPM size (default: old + --new-spm-size)")
    init: str = option("unk", "initialization of new piece rows", choices=INIT_METHODS)
    langtok_init: dict[str, str] = option({}, "new language tokens: copy a related old language's token (it=es) "
                                              "or the mean (default)", metavar="NEW=OLD|NEW=mean,...",
                                          parse=parse_langtok_init, show=show_langtok_init)
    seed: int = option(1, "seed of the new SentencePiece model, the new rows and the growth noise")
    growth: GrowthOptions = field(default_factory=GrowthOptions)

    def check(self) -> None:
        self.growth.check()
        if self.new_spm_size <= 0:
            raise UserInputError(f"--new-spm-size must be positive (got {self.new_spm_size})")
        if self.spm_size < 0:
            raise UserInputError(f"--spm-size must not be negative (got {self.spm_size}; 0: old + --new-spm-size)")

    def check_langs(self, old_langs: Sequence[str], new_langs: Sequence[str]) -> None:
        """The rules that need the model's languages: something to do, and --langtok-init naming real ones."""
        if not new_langs and not self.growth.active():
            raise UserInputError("nothing to upgrade: give --new-langs, or growth flags (--add-encoder-layers, "
                                 "--add-decoder-layers, --widen-ffn)")
        for lang, source in self.langtok_init.items():
            if lang not in new_langs:
                raise UserInputError(f"--langtok-init names {lang!r}, which is not a new language ({','.join(new_langs)})")
            if source != "mean" and source not in old_langs:
                raise UserInputError(f"--langtok-init {lang}={source}: {source!r} is neither 'mean' nor an old "
                                     f"language ({','.join(old_langs)})")

    @classmethod
    def add_arguments(cls, parser: Any, skip: Sequence[str] = ()) -> None:
        """The vocabulary flags, then the growth flags."""
        super().add_arguments(parser, skip)
        GrowthOptions.add_arguments(parser, skip)

    @classmethod
    def from_namespace(cls, ns: Any, **extra: Any) -> "UpgradeOptions":
        return super().from_namespace(ns, growth=GrowthOptions.from_namespace(ns), **extra)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, where: str, **extra: Any) -> "UpgradeOptions":
        """From one flat mapping of upgrade flags, vocabulary and growth keys alike (`{"init": "unk",
        "grow-init": "paper"}`)."""
        growth_flags = set(GrowthOptions().to_flags())
        known = list(cls().to_flags())
        own, grown = {}, {}
        for key, value in (values or {}).items():
            flag = flag_name(str(key))
            if flag not in known:
                raise UserInputError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
            (grown if flag in growth_flags else own)[key] = value
        return super().from_mapping(own, where, growth=GrowthOptions.from_mapping(grown, where), **extra)

    @classmethod
    def schema(cls) -> dict[str, dict[str, Any]]:
        """An experiment's `upgrade:` section: the vocabulary keys, then the growth keys."""
        return super().schema() | GrowthOptions.schema()

    def to_flags(self) -> dict[str, Any]:
        """Every upgrade flag -> its shown value, vocabulary flags first (the printed plan's order)."""
        return super().to_flags() | self.growth.to_flags()

    def key(self) -> str:
        """A short name of these options (an experiment's upgrade directory): a hash of every value, the
        growth noise's seed included, in the layout plans have always hashed (their directories keep their names)."""
        fields = asdict(self)
        fields["growth"]["seed"] = self.seed
        return sha256_text(json.dumps(fields, sort_keys=True))[:10]
