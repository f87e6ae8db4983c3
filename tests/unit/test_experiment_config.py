"""An experiment config is checked completely at planning time: `mmt-upgrade experiment --dry-run` fails with one
line naming the config file, the run and the key, before anything is prepared or trained."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmt_upgrade.cli import main
from mmt_upgrade.core.languages import DEFAULT_HELDOUT_LANGS
from mmt_upgrade.core.paths import CONFIG_DIR
from mmt_upgrade.pipeline.data.prepare import DataConfig
from mmt_upgrade.pipeline.experiment.plan import build_plan, new_data_config, upgrade_argv
from mmt_upgrade.pipeline.experiment.spec import ExperimentConfig

TINY = str(CONFIG_DIR / "tiny_upgrade.yaml")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Runs and caches in a temporary directory: a dry run writes nothing, and must not need anything there."""
    monkeypatch.setenv("MMT_UPGRADE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MMT_UPGRADE_CACHE", str(tmp_path / "cache"))


def dry_run_error(capsys, tmp_path, config: str, *sets: str) -> str:
    argv = ["experiment", config, "--dry-run", "--out", str(tmp_path / "exp")]
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no usage text, no traceback
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()
    return err.strip()


@pytest.mark.parametrize("sets, message", [
    (["runs.full.distill.kd-methd=alm"], "run full: distill: unknown key 'kd-methd'"),
    (["runs.full.distill.kd-method=alms"], "run full: distill: kd-method: 'alms' is not one of alm, shared, uld, "
                                           "lexical"),
    (["runs.full.train.optimiser=adam"], "run full: train: fairseq-train does not know --optimiser"),
    (["runs.full.train.lr-scale-old=-1"], "run full: train: --lr-scale-old must not be negative (got -1)"),
    (["runs.naive.train.lr-scale-old=0.5"], "run naive: train: fairseq-train does not know --lr-scale-old"),
    (["new_langs=[pt]", "runs.full.upgrade.langtok-init=\"\""],
     "run full: train: --upsample-langs: it not in --langs (en,es,fr,pt)"),
    (["runs.full.train.related-langs=ko"], "run full: train: --related-langs: ko not in --langs (en,es,fr,it)"),
    (["runs.full.distill.distill-langs=es,ko"], "run full: distill: --distill-langs ko: the teacher"),
    (["runs.full.distill.teacher-path=x.pt"], "run full: distill: teacher-path is set by the experiment itself"),
    (["runs.full.upgrade.grow-nois=0.1"], "run full: upgrade: unknown key 'grow-nois'"),
    (["upgrade.init=zeros"], "upgrade: init: 'zeros' is not one of"),
    (["runs.full.trian.max-update=5"], "run full: unknown key 'trian'"),
    (["evaluate.bem=2"], "evaluate: unknown key 'bem'"),
    (["evaluate.every=0"], "evaluate: every must be a positive number of updates"),
    (["nwe_langs=[pt]"], "unknown key 'nwe_langs'"),
    (["data.lang=[es]"], "data: unknown key 'lang'"),
    (["data.langs=[es,xx]"], "old_model: " + str(CONFIG_DIR / "tiny.yaml") + ": data: unknown language code 'xx'"),
    (["data.langs=[es,it]"], "new_langs it are already in the old model (tiny: en,es,it)"),
])
def test_each_defect_is_one_line_at_planning_time(capsys, tmp_path, sets, message):
    err = dry_run_error(capsys, tmp_path, TINY, *sets)
    assert err.startswith(f"mmt-upgrade experiment: error: {TINY}: ")
    assert message in err


def old_model_config(tmp_path: Path, **train) -> str:
    """The tiny old model with changed train: flags, and an experiment on it."""
    tree = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    tree["train"].update(train)
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(tree))
    exp = yaml.safe_load(Path(TINY).read_text()) | {"old_model": str(tmp_path / "old.yaml")}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    return str(tmp_path / "exp.yaml")


@pytest.mark.parametrize("train, message", [
    ({"optimiser": "adam"}, "old_model {old}: train: fairseq-train does not know --optimiser"),
    ({"cpu-bf16": "sometimes"}, "old_model: {old}: train: cpu-bf16: 'sometimes' is not one of auto, always, never"),
    ({"upsample-langs": "it"}, "old_model: {old}: train: --upsample-langs: it not in --langs (en,es,fr)"),
])
def test_the_old_models_section_is_checked_too(capsys, tmp_path, train, message):
    config = old_model_config(tmp_path, **train)
    err = dry_run_error(capsys, tmp_path, config)
    assert f"error: {config}: " + message.format(old=tmp_path / "old.yaml") in err


def test_set_reaches_the_old_models_languages_in_its_own_run_directory(tmp_path):
    default = build_plan(ExperimentConfig.load(TINY), tmp_path / "exp", prepare=False)
    assert default.old.run_dir == tmp_path / "runs" / "tiny"  # the shipped old model keeps its directory
    cfg = ExperimentConfig.load(TINY, ["data.langs=[es,ru]"])
    plan = build_plan(cfg, tmp_path / "exp", prepare=False)
    assert cfg.old.data.langs == ["es", "ru"] and cfg.langs == ["en", "es", "ru", "it"]
    assert plan.old.run_dir == tmp_path / "runs" / f"tiny-{cfg.old.data.key()}"
    assert "--langs en,es,ru " in " ".join(plan.old.train_argv) + " "
    assert "--langs en,es,ru,it " in " ".join(plan.runs["naive"].train_argv)


def test_held_out_languages_follow_the_experiment(tmp_path):
    tiny = ExperimentConfig.load(TINY)
    assert new_data_config(tiny, tiny.old.data, None).heldout_langs == ["en", "es", "fr", "it"]
    bible = ExperimentConfig.load("bible_upgrade")
    new = new_data_config(bible, bible.old.data, None)
    assert new.heldout_langs == list(DEFAULT_HELDOUT_LANGS)
    # The default experiment's data keeps its cache directory: the same key as before the held-out list followed.
    before = DataConfig(langs=["es", "fr", "de", "ru", "it", "ar"], max_train_pairs=10000, vocab_size=4000,
                        max_train_pairs_per_lang={"it": 2500, "ar": 2500}, max_eval_pairs=100)
    assert new.key() == before.key()


def test_default_plans_keep_their_upgrade_directories_and_evaluation(tmp_path):
    plan = build_plan(ExperimentConfig.load("bible_upgrade"), tmp_path / "exp", prepare=False)
    assert list(plan.upgrades) == ["546a66a90d", "06036fcce3", "63a3c94b91"]  # the keys of plans made before
    assert {r.evaluation.beam for r in [plan.old, *plan.runs.values()]} == {1}
    assert plan.runs["full"].evaluation.new_langs == ["it", "ar"] and plan.old.evaluation.new_langs == []


def test_an_experiments_upgrade_seed_reaches_growth_and_the_printed_command(tmp_path):
    plan = build_plan(ExperimentConfig.load(TINY, ["upgrade.seed=7"]), tmp_path / "exp", prepare=False)
    default = build_plan(ExperimentConfig.load(TINY), tmp_path / "exp", prepare=False)
    grown = plan.upgrades[plan.run_upgrade["full"]]
    assert grown.seed == 7 and grown.growth.active()
    assert "--seed 7" in " ".join(upgrade_argv(grown))
    assert f"upgrade {plan.run_upgrade['full']}: mmt-upgrade upgrade" in plan.describe()
    assert set(plan.upgrades).isdisjoint(default.upgrades)  # another seed is another upgrade directory
