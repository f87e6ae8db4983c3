"""Output directories of import/export (pipeline/export/outdir.py): built beside their place, renamed in whole,
never over an existing path; a missing extra named."""
from __future__ import annotations

import pytest

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.pipeline.export.outdir import building, check_new, require_extra


def test_directory_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with building(out, "OUT") as tmp:
            (tmp / "half.bin").write_text("x")
            raise RuntimeError("crash halfway")
    assert list(tmp_path.iterdir()) == []
    with building(out, "OUT") as tmp:
        (tmp / "a.txt").write_text("a")
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "a.txt").read_text() == "a"
    with pytest.raises(UserInputError, match=f"OUT {out} exists"):
        check_new(out, "OUT")
    with pytest.raises(UserInputError, match="exists"):
        with building(out, "OUT"):
            pass
    assert (out / "a.txt").read_text() == "a"


def test_a_missing_extra_names_what_to_install():
    with pytest.raises(UserInputError, match=r"no_such_module_15 is not installed: install mmt-upgrade\[hf\]"):
        require_extra("hf", "json", "no_such_module_15")
    require_extra("hf", "json")
