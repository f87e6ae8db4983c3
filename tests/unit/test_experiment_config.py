"""An experiment config is checked completely at planning time: `mmt-upgrade experiment --dry-run` fails with one
line naming the config file, the run and the key, before anything is prepared or trained."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmt_upgrade.cli import main
from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.languages import DEFAULT_HELDOUT_LANGS
from mmt_upgrade.core.paths import CONFIG_DIR
from mmt_upgrade.pipeline.data.prepare import DataConfig
from mmt_upgrade.pipeline.experiment.plan import build_plan, upgrade_argv
from mmt_upgrade.pipeline.experiment.prepare import new_data_config
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


def argv_flags(argv: list[str]) -> dict[str, str | None]:
    """`--flag value` pairs of a command (a bare flag: None)."""
    out: dict[str, str | None] = {}
    for i, x in enumerate(argv):
        if x.startswith("--"):
            out[x[2:]] = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else None
    return out


def test_the_evidence_experiment_plans_its_references_seeds_and_ablations(tmp_path):
    cfg = ExperimentConfig.load("bible_evidence")
    plan = build_plan(cfg, tmp_path / "exp", prepare=False)
    runs = {name: argv_flags(r.train_argv) for name, r in plan.runs.items()}
    assert [n for n in plan.runs if "@" in n] == ["continue@s1", "continue@s2", "naive@s1", "naive@s2", "full@s1",
                                                  "full@s2"]
    assert (runs["full@s1"]["seed"], runs["full@s2"]["seed"]) == ("1", "2")
    assert plan.runs["full@s2"].group == "full" and plan.runs["full@s2"].seed == 2
    # scratch: the old model's recipe and budget (its warm-up, batch, 2,600 updates), full's size, every 325
    old = argv_flags(plan.old.train_argv)
    assert {k: runs["scratch"][k] for k in ("warmup-updates", "max-tokens", "max-update", "lr")} == {
        k: old[k] for k in ("warmup-updates", "max-tokens", "max-update", "lr")}
    assert runs["scratch"]["encoder-layers"] == runs["full@s1"]["encoder-layers"] == "5"
    assert plan.runs["scratch"].eval_every == 325 and "stop-time-hours" not in runs["scratch"]
    # continue: the old model, its languages, the upgrades' recipe and updates; no new group
    c = plan.runs["continue@s1"]
    assert runs["continue@s1"]["finetune-from-model"] == str(tmp_path / "runs/old_model/checkpoints/checkpoint_best.pt")
    assert runs["continue@s1"]["langs"] == "en,es,fr,de,ru" and c.evaluation.new_langs == []
    for k in ("max-update", "warmup-updates", "max-tokens", "lr"):
        assert runs["continue@s1"][k] == runs["naive@s1"][k]
    assert c.start_checkpoint == tmp_path / "runs/old_model/checkpoints/checkpoint_best.pt"
    assert c.start_eval_dir == tmp_path / "exp/old_model/evals/best"  # the old model's own curve-sample score
    # finals: the whole test split at beam 5; curves on 200 sentences, greedy
    assert (plan.runs["full@s1"].final_evaluation.beam, plan.runs["full@s1"].evaluation.beam) == (5, 1)
    assert plan.runs["full@s1"].references == tmp_path / "exp/references/test-all"
    assert plan.old.final_evaluation.beam == 5
    # finals by CTranslate2 float32 (every one, the old model's included), curve points by fairseq-generate
    for r in (plan.old, plan.runs["full@s1"], plan.runs["continue@s2"]):
        f = r.final_evaluation
        assert (f.backend, f.ct2_quantization, f.ct2_workers, f.ct2_batch_size) == ("ct2", "float32", 2, 16)
        assert r.evaluation.backend == "fairseq"
    # leave-one-out: null takes the inherited flag out; distill: false the distillation
    assert "lr-scale-old" not in runs["-lr"] and runs["-lr"]["optimizer"] == "adam"
    assert "upsample-langs" not in runs["-upsample"] and runs["-upsample"]["criterion"] == "cross_vocab_distillation"
    assert plan.aliases == {"-distill": "+upsample"} and "-distill" not in plan.runs
    # the dev sweep: scored on valid, no final, its own update-0 directory
    sweep = plan.runs["kd-shared-w5"]
    assert sweep.evaluation.split == "valid" and sweep.final_evaluation is None
    assert sweep.start_eval_dir.name.endswith(".eval-valid")
    assert (runs["kd-shared-w5"]["kd-method"], runs["kd-shared-w5"]["kd-weight"]) == ("shared", "5.0")
    # --runs by run name selects every seed; an alias executes its target; every run stays planned (plan.json)
    assert [r.name for r in plan.selected(["full", "-distill"])] == ["full@s1", "full@s2", "+upsample"]
    assert [r.name for r in plan.selected()] == list(plan.runs)
    with pytest.raises(UserInputError, match="--runs: nope not in .*bible_evidence"):
        plan.selected(["nope"])


@pytest.mark.parametrize("sets, message", [
    (["runs.naive.seeds=[1,1]"], "run naive: seeds: seeds repeat a value"),
    (["runs.naive.seeds=[0]"], "seeds must be a list of positive integers"),
    (["runs.c.start=continue", "runs.c.upgrade.init=unk"], "run c starts from continue: it has no upgrade"),
    (["runs.c.start=continue", "runs.c.train.upsample-langs=it"], "run c: train: --upsample-langs: it not in --langs "
                                                                   "(en,es,fr)"),
    (["runs.naive.recipe=mine"], "run naive: recipe must be one of experiment, old"),
    (["runs.naive.ablation=leave-one-out"], "ablation leave-one-out compares the run with its base; set `base`"),
    (["runs.naive.split=dev"], "run naive: split must be one of train, valid, test"),
    (["evaluate.final_max_pairs=-2"], "final_max_pairs"),
    (["evaluate.final_backend=onnx"], "final_backend"),
])
def test_seeds_starts_and_roles_are_checked(capsys, tmp_path, sets, message):
    assert message in dry_run_error(capsys, tmp_path, TINY, *sets)


def test_the_default_experiment_keeps_its_commands_without_a_separate_final(tmp_path):
    plan = build_plan(ExperimentConfig.load("bible_upgrade"), tmp_path / "exp", prepare=False)
    assert not plan.aliases and list(plan.runs) == ["scratch", "naive", "+init", "+grow", "+lr", "+upsample", "full"]
    assert all(r.final_evaluation is None and r.seed is None for r in plan.runs.values())
    assert plan.runs["scratch"].max_update == 600 and plan.runs["full"].references == tmp_path / "exp/references/test-100"


def test_runs_may_name_leave_one_out_runs_that_start_with_a_dash(capsys, tmp_path):
    """`--runs -init,-nope` is a list of run names, not two flags: the unknown one is named, the known one is not."""
    argv = ["experiment", "bible_evidence", "--dry-run", "--out", str(tmp_path / "exp"), "--runs", "-init,-nope"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--runs: -nope not in" in err and "expected one argument" not in err
