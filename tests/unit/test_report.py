"""The report on a hand-made experiment directory: result files, kept translations and references. Which
comparisons it states, their verdicts from sacrebleu's paired bootstrap (with seeds), forgetting against
`continue` and the old model, the iso-quality readings on scratch's curve, the dev sweep, and that it is
written from the files alone."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import write_json_atomic, write_text_atomic
from mmt_upgrade.core.significance import SentenceStats
from mmt_upgrade.pipeline.records import CurvePoint, RunResult, Scores, write_record
from mmt_upgrade.pipeline.report import write_report
from mmt_upgrade.pipeline.report.load import load_experiment
from mmt_upgrade.pipeline.report.markdown import markdown
from mmt_upgrade.pipeline.report.significance import seed_pairs
from mmt_upgrade.pipeline.report.summary import plan_comparisons, summarize_experiment
from mmt_upgrade.pipeline.rundir import ExperimentDir

OLD_DIRS, NEW_DIRS = ["es-en", "en-es"], ["it-en", "en-it"]
WORDS = "the of and to in he that shall unto for his a lord they be is him not them with all".split()
N = 80  # test sentences per direction


def refs(direction: str) -> list[str]:
    rng = random.Random(direction)
    return [" ".join(rng.choices(WORDS, k=rng.randint(5, 14))) for _ in range(N)]


def hyps(direction: str, rate: float, seed: int) -> list[str]:
    """The references with each word replaced at `rate`: the lower the rate, the better the system."""
    rng = random.Random(f"{direction}/{seed}")
    return [" ".join(w if rng.random() > rate else rng.choice(WORDS) for w in line.split()) for line in refs(direction)]


def pt(updates: int, new: float, old: float, tokens: int, wall: float, **extra) -> CurvePoint:
    groups = {"old": Scores(old, old / 4), "all": Scores((new + old) / 2 if new else old, 1.0)}
    groups |= {"new": Scores(new, new / 4)} if new else {}
    return CurvePoint(updates=updates, target_tokens=tokens, train_wall_s=wall, groups=groups,
                      directions={d: groups["new" if d in NEW_DIRS else "old"] for d in
                                  (OLD_DIRS + NEW_DIRS if new else OLD_DIRS)}, **extra)


# run -> (start, base, ablation, seeds, split, rates per direction kind {new, old})
RUNS = {
    "scratch": ("scratch", "", "", [None], "test", {"new": 0.7, "old": 0.7}),
    "continue": ("continue", "", "", [1, 2], "test", {"old": 0.30}),
    "naive": ("upgrade", "", "", [1, 2], "test", {"new": 0.6, "old": 0.45}),
    "full": ("upgrade", "naive", "", [1, 2], "test", {"new": 0.2, "old": 0.30}),
    "-init": ("upgrade", "full", "leave-one-out", [None], "test", {"new": 0.2, "old": 0.30}),
    "kd-a": ("upgrade", "", "", [None], "valid", {"new": 0.3, "old": 0.3}),
}
OLD_RATE = 0.30
SCRATCH_CURVE = [pt(100, 10.0, 10.0, 1000, 50.0), pt(200, 20.0, 20.0, 2000, 100.0)]
FINAL_NEW = {"naive": 12.0, "full": 15.0, "-init": 14.0, "kd-a": 14.0, "continue": 0.0, "scratch": 20.0}


def write_experiment(root: Path) -> ExperimentDir:
    exp = ExperimentDir(root)
    reference_dir = exp.root / "references" / "test-all"
    for d in OLD_DIRS + NEW_DIRS:
        write_text_atomic(reference_dir / f"{d}.{d.split('-')[1]}", "".join(x + "\n" for x in refs(d)))

    def result(name: str, result_dir: Path, dirs: list[str], rate: dict[str, float], seed: int, curve: list[CurvePoint],
               train_stats: list | None = None) -> None:
        for d in dirs:
            write_text_atomic(result_dir / "evals/final/translations" / f"test.{d}.{d.split('-')[1]}",
                              "".join(x + "\n" for x in hyps(d, rate["new" if d in NEW_DIRS else "old"], seed)))
        last = max(curve, key=lambda p: p.updates)
        final = CurvePoint(**{**last.__dict__, "split": "test", "beam": 5, "sentences": N, "eval_dir": "evals/final",
                              "references": str(Path("..") / ".." / "references" / "test-all") if "runs" in
                              str(result_dir) else "../references/test-all"})
        write_record(result_dir / "result.json", RunResult(name, ["--max-update", str(last.updates)], last.updates,
                                                           last.updates, curve, final, train_stats or []))

    result("old_model", exp.old_model.root, OLD_DIRS, {"old": OLD_RATE}, 0, [pt(2600, 0.0, 25.0, 9000, 3000.0)])
    plan_runs, specs = {}, {}
    for run, (start, base, ablation, seeds, split, rate) in RUNS.items():
        specs[run] = {"start": start, "base": base, "ablation": ablation}
        for seed in seeds:
            name = f"{run}@s{seed}" if seed else run
            plan_runs[name] = {"group": run, "seed": seed, "start": start, "evaluation": {"split": split}}
            new = FINAL_NEW[run] + (0.5 if seed == 2 and start != "continue" else 0.0)
            curve = SCRATCH_CURVE if run == "scratch" else [pt(0, 2.0, 24.0, 0, 0.0), pt(100, new, 25.5, 800, 30.0)]
            stats = [{"num_updates": 50.0, "ce_loss": 6.0, "kd_loss": 0.2}] if run == "kd-a" else None
            result(name, exp.run(name).root, OLD_DIRS + ([] if start == "continue" else NEW_DIRS), rate, seed or 1,
                   curve, stats)
    write_json_atomic(exp.plan, {"format": "plan/1", "runs": plan_runs, "aliases": {"-distill": "naive@s1"},
                                 "config": {"name": "hand", "runs": {**specs, "-distill": {
                                     "start": "", "base": "full", "ablation": "leave-one-out"}},
                                            "new_langs": ["it"], "old": {"data": {"pivot": "en"}},
                                            "evaluate": {"every": 100, "split": "test", "max_pairs": 200, "beam": 1,
                                                         "max_tokens": 6000, "at_start": True,
                                                         "final_max_pairs": 0, "final_beam": 5,
                                                         "final_backend": "ct2", "ct2_quantization": "float32"}}})
    return exp


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> dict:
    exp = write_experiment(tmp_path_factory.mktemp("exp"))
    return summarize_experiment(load_experiment(exp.root), n_samples=200)


def comparison(s: dict, kind: str, a: str, b: str, group: str, metric: str = "chrfpp") -> dict:
    [c] = [c for c in s["comparisons"] if (c["kind"], c["a"], c["b"], c["group"], c["metric"]) ==
           (kind, a, b, group, metric)]
    return c


def test_the_comparisons_the_report_states(tmp_path):
    exp = load_experiment(write_experiment(tmp_path).root)
    assert list(exp.groups()) == ["scratch", "continue", "naive", "full", "-init", "kd-a", "-distill"]  # config order
    assert [r.name for r in exp.groups()["-distill"]] == ["-distill"]  # an alias, read from naive@s1's result
    assert plan_comparisons(exp) == [
        ("step", "full", "naive", ("new", "old", "all")),
        ("leave-one-out", "full", "-init", ("new", "old", "all")),  # the base minus the run: what init adds
        ("leave-one-out", "full", "-distill", ("new", "old", "all")),  # no full-vs-naive: the step above is it
        *[(kind, run, ref, ("old",)) for run in ("naive", "full", "-init", "-distill")
          for kind, ref in (("forgetting-vs-continue", "continue"), ("forgetting-vs-old-model", "old_model"))],
        ("forgetting-vs-old-model", "continue", "old_model", ("old",))]


def test_a_step_over_runs_not_run_is_labelled_as_several(tmp_path):
    exp = write_experiment(tmp_path)
    plan = json.loads(exp.plan.read_text())
    plan["config"]["runs"].update({"+upsample": {"start": "upgrade", "base": "naive", "ablation": ""},
                                   "full": {**plan["config"]["runs"]["full"], "base": "+upsample"}})
    write_json_atomic(exp.plan, plan)
    loaded = load_experiment(exp.root)
    assert plan_comparisons(loaded)[0] == ("steps", "full", "naive", ("new", "old", "all"))
    md = markdown(summarize_experiment(loaded, n_samples=50), "hand")
    assert "(c) cumulative steps (ladder runs between not run) `full` − `naive`, new: " in md


def test_replicas_are_paired_by_seed(tmp_path):
    groups = load_experiment(write_experiment(tmp_path).root).groups()
    assert [(a.name, b.name) for a, b in seed_pairs(groups["full"], groups["naive"])] == [
        ("full@s1", "naive@s1"), ("full@s2", "naive@s2")]
    assert [(a.name, b.name) for a, b in seed_pairs(groups["-init"], groups["naive"])] == [
        ("-init", "naive@s1"), ("-init", "naive@s2")]


def test_verdicts_come_from_the_bootstrap_on_the_kept_hypotheses(summary):
    better = comparison(summary, "step", "full", "naive", "new")  # word error rate 0.2 against 0.6
    assert better["verdict"] == "helps" and better["low"] > 0 and better["pairs"] == 2
    assert better["directions"] == ["en-it", "it-en"] and better["sentences"] == 2 * N
    # the concatenated group's corpus chrF++, as sacrebleu computes it, from the files
    full = [SentenceStats.of("chrfpp", hyps(d, 0.2, s), refs(d)) for s in (1, 2) for d in ("en-it", "it-en")]
    assert better["score_a"] == pytest.approx((SentenceStats.concat(full[:2]).score
                                               + SentenceStats.concat(full[2:]).score) / 2)
    assert comparison(summary, "step", "full", "naive", "old")["verdict"] == "helps"  # 0.30 against 0.45
    same = comparison(summary, "leave-one-out", "full", "-init", "new")  # -init is full's output at seed 1
    assert same["verdict"] == "no clear effect" and same["low"] <= 0 <= same["high"]
    assert comparison(summary, "leave-one-out", "full", "-distill", "new", "bleu")["verdict"] == "helps"
    # forgetting: the same error rate as the continue run and the old model on the old directions
    for ref in ("continue", "old_model"):
        c = comparison(summary, f"forgetting-vs-{ref.replace('_', '-')}", "full", ref, "old")
        assert c["verdict"] == "no clear effect", c
    assert comparison(summary, "forgetting-vs-continue", "naive", "continue", "old")["verdict"] == "hurts"


def test_finals_forgetting_and_seed_spread(summary):
    full = summary["groups"]["full"]
    assert full["chrfpp_new"] == {"mean": pytest.approx(15.25), "spread": pytest.approx(0.5)}
    assert summary["runs"]["full@s1"]["forgetting_chrfpp"] == pytest.approx(25.5 - 25.0)
    assert summary["runs"]["full@s1"]["forgetting_vs_continue_chrfpp"] == pytest.approx(0.0)
    assert summary["references"] == {"scratch": "scratch", "continue": "continue"}


def test_iso_quality_on_scratchs_curve(summary):
    iso = summary["iso_quality"]
    assert iso["scratch"] == "scratch"
    r = iso["runs"]["full@s1"]["new"]["final"]  # 15.0 on new: half way from 10 (100 updates) to 20 (200)
    assert r["reached"] and r["compute"] == pytest.approx({"updates": 150, "target_tokens": 1500, "train_wall_s": 75})
    assert r["fractions"]["upgrade"] == pytest.approx({"updates": 100 / 150, "target_tokens": 800 / 1500,
                                                       "train_wall_s": 30 / 75})
    assert r["fractions"]["total"]["updates"] == pytest.approx(2700 / 150)
    group = iso["groups"]["full"]["new"]  # seeds 15.0 and 15.5: 150 and 155 updates of scratch
    assert group["reached"] and group["upgrade"]["updates"] == pytest.approx((100 / 150 + 100 / 155) / 2)
    assert iso["runs"]["full@s1"]["new"]["curve"][0]["bound"] == "at most"  # 2.0 at update 0, below the curve
    above = iso["runs"]["full@s1"]["all"]["final"]  # (15 + 25.5) / 2 > scratch's 20: more than its last point
    assert not above["reached"] and above["bound"] == "more than" and above["compute"]["updates"] == 200
    assert above["fractions"]["upgrade"]["updates"] == pytest.approx(100 / 200)  # an upper bound
    assert iso["groups"]["full"]["all"]["bound"] == "more than"


def test_the_sweep_and_distillation_terms(summary):
    assert summary["sweep"]["chosen"] == "kd-a" and summary["sweep"]["runs"]["kd-a"]["split"] == "valid"
    assert summary["distillation"] == {"kd-a": [{"num_updates": 50.0, "ce_loss": 6.0, "kd_loss": 0.2}]}
    assert "kd-a" not in {c["a"] for c in summary["comparisons"]}  # dev runs are not test comparisons
    # dev scores are of other sentences than the old model's: no forgetting figure, no baselines from them
    assert "forgetting_chrfpp" not in summary["runs"]["kd-a"] and "kd-a" not in summary["baselines"]


def test_the_report_is_written_from_the_files_alone(tmp_path):
    exp = write_experiment(tmp_path / "exp")
    md = write_report(exp.root, tmp_path / "out", n_samples=100).read_text()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["format"] == "report/2"
    assert ("- (a) new directions: `scratch` needs 152 updates / 1,525 target tokens to reach `full`'s chrF++ 15.2: "
            "`full` spends 0.66 of its updates") in md
    assert "- (a) all directions: `scratch` never reaches `full`'s chrF++ 20.4 (its final: " in md
    assert "so `full` spends less than 0.50 of the updates" in md  # 100 of scratch's last 200: an upper bound
    assert "| full | all | 20.4 | > 200 | < 0.50, " in md
    assert "- (b) `full` forgetting vs continue (old directions, chrF++): +0.00 [" in md
    assert "- (c) leave-one-out `full` − `-init`, new: " in md and "**no clear effect**" in md
    finals = md[md.index("## Runs"):md.index("## Comparisons")]
    assert "| full |" in finals and "| kd-a |" not in finals  # the dev sweep has its own table
    for png in ("curves.png", "forgetting.png", "distillation.png"):
        assert (tmp_path / "out" / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_experiment_without_finished_runs_has_no_report(tmp_path):
    exp = ExperimentDir(tmp_path / "exp")
    with pytest.raises(UserInputError, match="no plan.json"):
        write_report(exp.root)
    write_json_atomic(exp.plan, {"format": "plan/1", "runs": {"a": {}}, "config": {"runs": {}, "evaluate": {}}})
    write_record(exp.old_model.result, RunResult("old_model", [], 0, 0, [pt(10, 0.0, 20.0, 1, 1.0)]))
    with pytest.raises(UserInputError, match="no run has finished yet"):
        write_report(exp.root)


def test_the_report_names_who_translated_curves_and_finals(summary):
    head = markdown(summary, "hand").split("\n")[2]
    assert "beam 1, by fairseq-generate, every 100 updates" in head
    assert "Finals: the whole split, beam 5, by CTranslate2 (float32)" in head
