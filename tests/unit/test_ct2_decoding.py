"""The pure parts of the CTranslate2 backend against fairseq's own code: the hypothesis string fairseq-generate
prints, the sentences it skips as too long; the export's record; the evaluate command's raw-text flags; the
config corrections an export makes."""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq.data import Dictionary, data_utils

from mmt_upgrade.core.decoding import ct2_cache_name, hypothesis_string, max_output_tokens, too_long
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.symbols import SymbolLayout
from mmt_upgrade.fairseq_io.ct2_convert import _config_fixes, _reasons
from mmt_upgrade.fairseq_io.ct2_runtime import Ct2Export
from mmt_upgrade.fairseq_io.model_files import ModelFiles
from mmt_upgrade.pipeline.evaluate import read_tests

PIECES = ["▁the", "▁cat", "s", "▁sat", "<0x41>", "▁", "é", "▁__fr__x"]


def test_hypothesis_string_is_what_fairseq_generate_prints():
    d = Dictionary()
    for s in PIECES + ["__en__", "__fr__"]:
        d.add_symbol(s)
    rng = random.Random(0)
    tgt = d.index("__fr__")
    for _ in range(300):
        ids = [rng.choice(range(len(d))) for _ in range(rng.randint(0, 12))] + [d.eos()]
        ids = [tgt] + [i for i in ids if i != d.pad()]  # fairseq never generates <pad>
        expected = d.string(torch.tensor(ids), "sentencepiece", extra_symbols_to_ignore={tgt})
        assert hypothesis_string([d[i] for i in ids], "__fr__") == expected, [d[i] for i in ids]


def test_too_long_is_fairseqs_size_filter():
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(0, 40, 500), rng.integers(0, 40, 500)
    for max_src, max_tgt in ((20, 30), (30, 20), (2000, 25)):
        # fairseq's datasets hold `__lang__ pieces </s>`: two tokens more than the pieces
        _, ignored = data_utils.filter_paired_dataset_indices_by_size(
            src + 2, tgt + 2, np.arange(500), (min(max_src, 1024), min(max_tgt, 1024)))
        ours = [i for i in range(500) if too_long(int(src[i]), int(tgt[i]), max_src, max_tgt)]
        assert ours == sorted(ignored) and ours


def test_output_limit_and_cache_name():
    assert max_output_tokens(128) == 127 and max_output_tokens(1024) == 200 and max_output_tokens(1024, 30) == 30
    assert ct2_cache_name("ab" * 32, "int8") == "abababababababab-int8"


def test_the_export_record_round_trips_and_a_foreign_directory_is_refused(tmp_path):
    info = Ct2Export(["en", "it"], "multilingual", 128, 256, "int8", "4.8.5", "/x/checkpoint.pt", "0" * 64)
    info.save(tmp_path)
    assert Ct2Export.load(tmp_path) == info
    with pytest.raises(UserInputError, match="not a CTranslate2 export of mmt-upgrade"):
        Ct2Export.load(tmp_path / "nothing")


def _model(langs, tags: bool) -> ModelFiles:
    return ModelFiles(Path("/m/checkpoint.pt"), Path("/m/dict.txt"), Path("/m/spm.model"),
                      SymbolLayout(["▁a", "▁b"], langs, "multilingual", tags))


def test_config_fixes_only_what_the_converter_cannot_be_told():
    ns = argparse.Namespace
    assert _config_fixes(ns(task="upgrade_translation", langs=["en", "it"]), _model(["en", "it"], True)) == {}
    assert _config_fixes(ns(task="translation_multi_simple_epoch", langs="en,it"), _model(["en", "it"], False)) == {}
    assert _config_fixes(ns(task="translation_multi_simple_epoch", langs=None, lang_dict="/x/langs.txt"),
                         _model(["en", "it"], True)) == {"task": "upgrade_translation",
                                                         "add_data_source_prefix_tags": True}
    assert _config_fixes(ns(task="upgrade_translation", langs="it,en"), _model(["en", "it"], False)) == {
        "langs": ["en", "it"]}


def test_the_converters_refusal_becomes_one_line():
    e = ValueError("The model you are trying to convert is not supported by CTranslate2. We identified the "
                   "following reasons:\n\n- Option --activation-fn tanh is not supported\n- Option X is not supported\n")
    assert _reasons(e) == "Option --activation-fn tanh is not supported; Option X is not supported"


def test_raw_test_flags_are_checked(tmp_path):
    (tmp_path / "a.en").write_text("one\n\nthree\n")
    (tmp_path / "a.it").write_text("uno\ndue\ntre\n")
    (tmp_path / "short.it").write_text("uno\n")
    (tmp_path / "train.it").write_text("ciao\nciao\n")
    tests = read_tests([f"en-it={tmp_path / 'a.en'},{tmp_path / 'a.it'}"], [f"en-it={tmp_path / 'train.it'}"])
    assert [(t.name, t.sources, t.refs, t.train_targets) for t in tests] == [
        ("en-it", ["one", "", "three"], ["uno", "due", "tre"], ["ciao", "ciao"])]
    for specs, train, message in [
        (["en-it=" + str(tmp_path / "a.en")], [], r"--test 'en-it=.*': expected SRC-TGT=SRC_FILE,REF_FILE"),
        ([f"enit={tmp_path / 'a.en'},{tmp_path / 'a.it'}"], [], "expected SRC-TGT="),
        ([f"en-it={tmp_path / 'a.en'},{tmp_path / 'nope.it'}"], [], "--test en-it: no such file .*nope.it"),
        ([f"en-it={tmp_path / 'a.en'},{tmp_path / 'short.it'}"], [], "3 source lines and 1 reference lines"),
        ([f"en-it={tmp_path / 'a.en'},{tmp_path / 'a.it'}"], [f"en-fr={tmp_path / 'train.it'}"],
         "--train-target en-fr: no --test for this direction"),
        ([f"en-it={tmp_path / 'a.en'},{tmp_path / 'a.it'}"] * 2, [], "a direction is given twice"),
    ]:
        with pytest.raises(UserInputError, match=message):
            read_tests(specs, train)
