"""Drive a plan through a runner: one cell after another, each marked when it ends.

A failed cell never stops the run; Ctrl-C or SIGTERM stops the current cell, tears it down, and
leaves every finished cell intact so `flaskbench run --resume` can finish the job. So does a
host that is gone for good (the runner says so before the next cell).
"""

from __future__ import annotations

import platform
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from types import FrameType
from typing import cast

import flaskbench
from flaskbench import PROJECT_ROOT
from flaskbench.config.app import git_revision
from flaskbench.config.goal import Goal
from flaskbench.config.load import Config, Overrides
from flaskbench.config.units import format_cpus
from flaskbench.execute.auto_trials import MoreTrials
from flaskbench.execute.progress import Progress
from flaskbench.execute.provenance import machine, package_versions
from flaskbench.execute.runners.runner import CellContext, Runner, RunStopped
from flaskbench.plan.cells import Cell, Plan, make_plan
from flaskbench.plan.placement import Placement
from flaskbench.proxies.reverse_proxy import proxy_record
from flaskbench.results.contract import (
    CONFIG_COPY,
    META_FORMAT,
    AppRecord,
    MetaJson,
    ProxyRecord,
    TargetRecord,
    TrialsRecord,
    iso,
)
from flaskbench.results.contract import Goal as GoalRecord
from flaskbench.results.contract import Staircase as StaircaseRecord
from flaskbench.results.rundir import CellStatus, RunDir
from flaskbench.servers.server import Target


@dataclass(frozen=True)
class RunOutcome:
    run: RunDir
    statuses: dict[str, CellStatus]
    interrupted: bool
    # Why the run stopped before its last cell without being interrupted ("" if it did not).
    stopped: str = ""

    @property
    def unsuccessful(self) -> list[CellStatus]:
        return [s for s in self.statuses.values() if s.status != "ok"]


@contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C; once stopping, further signals cannot cut the teardown short."""

    def first(signum: int, frame: FrameType | None) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, again)
        raise KeyboardInterrupt

    def again(signum: int, frame: FrameType | None) -> None:
        print("flaskbench: already stopping, tearing down the current cell", flush=True)

    previous = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_meta(
    config: Config,
    overrides: Overrides,
    run: RunDir,
    runner: Runner,
    reason: str,
    placement: Placement,
) -> MetaJson:
    """meta.json as a run starts: everything that made it, for whoever reads it later."""
    shutil.copyfile(config.path, run.path / CONFIG_COPY)
    meta: MetaJson = {
        "format": META_FORMAT,
        "run_id": run.run_id,
        "tool": {"name": "flaskbench", "version": flaskbench.__version__},
        "git": git_revision(PROJECT_ROOT),
        "python": platform.python_version(),
        "packages": package_versions(),
        "machine": machine(),
        "cpus": {
            "target": format_cpus(placement.target_cpus),
            # Every load host's, when there are several: cpus.load, or a whole host each.
            "load": format_cpus(placement.cpus_for_load(placement.workers[0][0])),
            "target_cores": len(placement.target_cpus),
            "load_cores": placement.load_cores,
        },
        "locust_workers": placement.worker_count,
        "runner": {"name": runner.name, "reason": reason},
        "config_file": str(config.path),
        "config": dict(config.as_run),
        "placement": placement.describe(),
        "load_goes_to": f"{config.host}:{config.port}",
        "allow_remote_target": overrides.allow_remote_target,
        "overrides": asdict(overrides),
        "targets": {t.name: target_record(t) for t in config.targets},
        "workloads": {w.name: asdict(w) | {"path": w.path} for w in config.workloads},
        "app": app_record(config),
        "goal": goal_record(config.goal) if config.goal else None,
        "stop_when_saturated": config.stop_when_saturated,
        "sweeps_dropped": list(config.dropped),
        "staircase": staircase_record(config),
        "repeats": config.repeats,
        "trials": trials_record(config, make_plan(config)),
        "cells": [],
        "started": iso(time.time()),
    }
    if config.services:
        meta["services"] = {
            s.name: {
                "kind": s.kind,
                "version": s.version,
                "per_cell": s.per_cell,
                "settings": dict(s.settings),
            }
            for s in config.services
        }
        meta["cpus"]["services"] = format_cpus(config.cpus.services or placement.target_cpus)
    return meta


def app_record(config: Config) -> AppRecord:
    """The app as the config has it, and with app.revision the commit of each revision."""
    record = config.app.describe()
    if config.revision_apps:
        record["revisions"] = {n: a.commit or "" for n, a in config.revision_apps.items()}
    return record


def target_record(target: Target) -> TargetRecord:
    return {
        "name": target.name,
        "server": target.server,
        "worker_class": target.worker_class,
        "workers": target.workers,
        "threads": target.threads,
        "settings": dict(target.settings),
        "expressions": dict(target.expressions),
        "sweep": target.sweep,
        "env": dict(target.env),
        "proxy": cast(ProxyRecord | None, proxy_record(target.proxy)),
        "version": target.version,
        "revision": target.revision,
    }


def staircase_record(config: Config) -> StaircaseRecord:
    stairs = config.staircase
    record: StaircaseRecord = {
        "users": list(stairs.users),
        "warmup_s": stairs.warmup_s,
        "measure_s": stairs.measure_s,
    }
    if stairs.open_loop:
        record |= {"rates": list(stairs.open_loop.rates), "arrival": stairs.open_loop.arrival}
    return record


def goal_record(goal: Goal) -> GoalRecord:
    return {
        "p99_ms": goal.p99_ms,
        "users": goal.users,
        "max_rss_mb": goal.max_rss_mb,
        "max_error_rate": goal.max_error_rate,
        "rate": goal.rate,
    }


def execute(
    plan: Plan,
    runner: Runner,
    run: RunDir,
    meta: MetaJson,
    progress: Progress,
    more: MoreTrials | None = None,
) -> RunOutcome:
    """Run the plan's cells one after the other; with `more` (repeats = "auto"), after each
    trial, the trials it adds until the run's comparisons are decided."""
    meta.setdefault("sessions", []).append({"started": iso(time.time()), "runner": runner.name})
    meta["cells"] = sorted(set(meta["cells"]) | {c.cell_id for c in plan.cells})
    run.write_meta(meta)
    try:
        meta["runner"]["details"] = runner.prepare(run.path, plan.placement)
    except BaseException:
        runner.close()
        raise
    if hosts := runner.hosts():
        meta["hosts"] = hosts
    plan, left_out = _leave_out(meta, plan, runner, progress)
    run.write_meta(meta)

    done = {cid for cid, s in run.statuses().items() if s.status != "failed"}
    todo = plan.without(done)
    interrupted = False
    stopped = ""
    queue = list(todo.cells)
    # Cells may differ in length (an open loop's own rates): the bar advances by their mean.
    progress.begin(len(queue), todo.estimated_seconds(runner.name) / max(len(queue), 1))
    try:
        with interrupts_as_keyboard_interrupt():
            index, trial_started = 0, time.monotonic()
            while queue:
                cell = queue.pop(0)
                index += 1
                following = queue[0] if queue else None
                _run_cell(cell, following, index, index + len(queue), plan, runner, run, progress)
                if not queue and more is not None:
                    trial = max(plan.trials, cell.repeat)
                    added = more.after(trial, time.monotonic() - trial_started)
                    queue = [c for c in added if c.target.name not in left_out]
                    trial_started = time.monotonic()
                    if queue:
                        plan = plan.with_cells(queue)
                        meta["cells"] = sorted({*meta["cells"], *(c.cell_id for c in queue)})
                        progress.more(len(queue))
                    _record_trials(meta, plan, more)
                    run.write_meta(meta)
    except KeyboardInterrupt:
        interrupted = True
    except RunStopped as exc:
        stopped = str(exc)
    finally:
        runner.close()
        progress.end()
        _end_session(meta, run, interrupted, stopped)
    return RunOutcome(run, run.statuses(), interrupted, stopped)


def _end_session(meta: MetaJson, run: RunDir, interrupted: bool, stopped: str) -> None:
    session = meta["sessions"][-1]
    session["ended"] = iso(time.time())
    session["interrupted"] = interrupted
    if stopped:
        session["stopped"] = stopped
    meta["ended"] = session["ended"]
    meta["files"] = run.manifest()
    run.write_meta(meta)


def _run_cell(
    cell: Cell,
    following: Cell | None,
    index: int,
    count: int,
    plan: Plan,
    runner: Runner,
    run: RunDir,
    progress: Progress,
) -> None:
    runner.before_cell()
    progress.cell(index, count, cell.cell_id)
    after = (
        CellContext(following, run.cell_dir(following.cell_id), runner.config, plan, _no_progress)
        if following is not None
        else None
    )
    context = CellContext(
        cell, run.cell_dir(cell.cell_id), runner.config, plan, progress.advance, after
    )
    status = runner.run_cell(context)
    run.write_cell_status(status)
    progress.cell_done()
    if status.status != "ok":
        progress.warn(f"flaskbench: {status.cell_id} {status.status}: {status.reason}")


def trials_record(config: Config, plan: Plan) -> TrialsRecord:
    """How the run's trials were made: their number, the seed of their orders, the orders."""
    return {
        "seed": config.trials.seed,
        "auto": config.trials.auto,
        "budget_s": config.trials.budget_s,
        "planned": plan.trials,
        "order": _orders(plan),
        "stopped": "",
        "undecided": [],
    }


def _record_trials(meta: MetaJson, plan: Plan, more: MoreTrials) -> None:
    trials = meta["trials"]
    trials["order"] = _orders(plan)
    trials["stopped"] = more.stopped
    trials["undecided"] = list(more.undecided)


def _orders(plan: Plan) -> list[list[str]]:
    """Each trial's cells in the order they ran (or will)."""
    orders: dict[int, list[str]] = {}
    for cell in plan.cells:
        orders.setdefault(cell.repeat, []).append(cell.cell_id)
    return [orders[trial] for trial in sorted(orders)]


def _no_progress(_seconds: float) -> None:
    """A cell's progress is shown once it runs."""


def _leave_out(
    meta: MetaJson, plan: Plan, runner: Runner, progress: Progress
) -> tuple[Plan, dict[str, str]]:
    """The plan without the cells of the targets the runner left out (each said), meta.json's
    cells and trials' orders without them too; and those targets, with why."""
    left_out = _record_environments(meta, runner)
    for name, why in left_out.items():
        progress.warn(f"flaskbench: target {name} left out: {why}")
    skipped = {c.cell_id for c in plan.cells if c.target.name in left_out}
    meta["cells"] = [c for c in meta["cells"] if c not in skipped]
    plan = plan.without(skipped)
    meta["trials"]["order"] = _orders(plan)
    return plan, left_out


def _record_environments(meta: MetaJson, runner: Runner) -> dict[str, str]:
    """Which server version each target got, where it came from, the targets left out (their
    cells leave the plan) and every environment; returns the targets left out."""
    outcome = runner.outcome
    meta["server_versions"] = outcome.versions
    meta["targets_left_out"] = outcome.left_out
    environments = runner.environments
    meta["environments"] = {
        key: built.record(environment)
        for key, built, environment in zip(
            runner.keys, runner.built, environments.environments, strict=True
        )
    }
    first = runner.runnable()[0]
    meta["app_python"] = runner.built[environments.of_target[first.name]].python
    return outcome.left_out
