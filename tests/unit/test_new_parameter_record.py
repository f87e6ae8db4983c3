"""The new-parameter record: masks of new rows, slices and whole tensors, and its JSON round trip."""
from __future__ import annotations

import json

import pytest

from mmt_upgrade.core.record import NewParameterRecord


def test_record_masks_and_round_trips():
    r = NewParameterRecord()
    r.add_rows("emb", 4, 6)
    r.add_slice("fc2", 1, 2, 3)
    r.add_whole("layer")
    again = NewParameterRecord.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r
    assert again.new_mask("emb", (8, 2))[:, 0].tolist() == [False] * 4 + [True] * 2 + [False] * 2
    assert again.new_mask("fc2", (2, 4)).tolist() == [[False, False, True, False]] * 2
    assert again.new_mask("layer", (3,)).all() and not again.new_mask("other", (3,)).any()
    with pytest.raises(Exception, match="outside"):
        again.check_shapes({"emb": (5, 2), "fc2": (2, 4), "layer": (3,)}, "test")
