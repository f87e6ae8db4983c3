"""`mmt-upgrade experiment`: old model (trained once, reused) -> upgrades and data -> runs -> report."""
from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator, Sequence

from mmt_upgrade.core.errors import UserInputError
from mmt_upgrade.core.files import log, write_json_atomic
from mmt_upgrade.pipeline.experiment.plan import build_plan
from mmt_upgrade.pipeline.experiment.runner import ClusterOptions, Runner, describe_cluster
from mmt_upgrade.pipeline.experiment.spec import ExperimentConfig
from mmt_upgrade.pipeline.report import write_report
from mmt_upgrade.pipeline.rundir import ExperimentDir


@contextlib.contextmanager
def experiment_lock(exp: ExperimentDir) -> Iterator[None]:
    """One experiment process per directory: a second one would train the same runs twice."""
    exp.root.mkdir(parents=True, exist_ok=True)
    with open(exp.lock, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserInputError(f"{exp.root} is in use by another `mmt-upgrade experiment`; wait for it or stop it") from None
        yield


def run_experiment(cfg: ExperimentConfig, root: Path, cluster: ClusterOptions, dry_run: bool = False,
                   only: Sequence[str] = ()) -> Path:
    """Old model (trained once, reused) -> upgrades and data -> runs -> report; returns the report.

    An old model (or run) whose training stopped before its planned updates stops the experiment with a
    one-line error (`Runner.wait`): it is never upgraded or reported; the next call resumes it."""
    exp = ExperimentDir(Path(root).absolute())
    if dry_run:
        plan = build_plan(cfg, exp.root, prepare=False)
        print(plan.describe(only))
        print(describe_cluster(cluster, next(iter(plan.runs.values()), plan.old).train_argv))
        return exp.root
    with experiment_lock(exp):
        runner = Runner(cluster, exp)
        plan = build_plan(cfg, exp.root, prepare=True)
        selected = plan.selected(only)  # checks the names before the old model trains
        log(f"experiment {cfg.name}: the old model ({plan.old.run_dir}), trained once and reused")
        runner.run([plan.old])
        if not plan.prepared:  # the upgrades needed the trained old model
            plan = build_plan(cfg, exp.root, prepare=True)
            selected = plan.selected(only)
        write_json_atomic(exp.plan, plan.record())
        log(f"experiment {cfg.name}: {len(selected)} of {len(plan.runs)} runs")
        runner.run(selected)
        return write_report(exp.root)
