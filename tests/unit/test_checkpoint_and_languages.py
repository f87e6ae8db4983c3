"""Bad checkpoints, language lists and configs get one clear error."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.languages import check_extends, model_langs
from mmt_upgrade.core.precision import resolve_cpu_bf16
from mmt_upgrade.fairseq_io.checkpoint import read_checkpoint
from mmt_upgrade.pipeline.runconfig import load_config


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(UserInputError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserInputError, match="truncated.pt is not a readable checkpoint"):
        read_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(UserInputError, match="foreign.pt is not a fairseq checkpoint"):
        read_checkpoint(foreign)


def test_language_lists_may_only_append():
    check_extends(["en", "es", "fr"], ["en", "es", "fr", "it", "ar"], "x")
    with pytest.raises(UserInputError, match="position 1 holds it, expected es"):
        check_extends(["en", "es", "fr"], ["en", "it", "es", "fr"], "x")
    with pytest.raises(UserInputError, match="position 2 holds nothing"):
        check_extends(["en", "es", "fr"], ["en", "es"], "x")
    assert model_langs("en", ["es", "fr", "en"]) == ["en", "es", "fr"]


def test_cpu_bf16_modes():
    assert resolve_cpu_bf16("never", on_cpu=True) is False
    assert resolve_cpu_bf16("always", on_cpu=True) is True
    assert resolve_cpu_bf16("always", on_cpu=False) is False
    with pytest.raises(ValueError):
        resolve_cpu_bf16("on", on_cpu=True)


def test_unknown_config_and_override_errors():
    with pytest.raises(UserInputError, match="config not found"):
        load_config("no_such_config")
    with pytest.raises(UserInputError, match="expected section.key=value"):
        load_config("tiny", ["data.vocab_size"])
    with pytest.raises(UserInputError, match="unknown language code 'xx'"):
        load_config("tiny", ["data.langs=[es,xx]"])


def _rss_mib() -> int:
    return int(next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS")).split()[1]) // 1024


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc")
def test_release_and_populate_mapped_keep_values(tmp_path):
    """An upgraded 256k-row model's old embedding leaves memory once copied, the rest is mapped in before it is
    saved; values read again are the file's, and a tensor in ordinary memory is never touched."""
    from mmt_upgrade.fairseq_io.checkpoint import populate_mapped, release_mapped

    torch.save({"model": {"a": torch.randn(16, 2**20), "b": torch.arange(10.0)}, "args": None}, tmp_path / "x.pt")
    state = torch.load(tmp_path / "x.pt", mmap=True)
    a = state["model"]["a"]
    total = float(a.sum())
    before = _rss_mib()
    assert release_mapped(a)
    assert before - _rss_mib() > 48  # of 64 MiB
    assert float(a.sum()) == total and state["model"]["b"].tolist() == list(range(10))
    release_mapped(a)
    assert populate_mapped([a]) and _rss_mib() - before > -16  # mapped in again, in one call
    assert float(a.sum()) == total
    anon = torch.randn(2**20)
    copy = anon.clone()
    assert not release_mapped(anon) and not populate_mapped([anon]) and torch.equal(anon, copy)
