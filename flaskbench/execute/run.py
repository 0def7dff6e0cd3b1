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
from pathlib import Path
from types import FrameType

import flaskbench
from flaskbench import PROJECT_ROOT
from flaskbench.config.app import git_revision
from flaskbench.config.goal import Goal
from flaskbench.config.load import Config, Overrides
from flaskbench.config.units import format_cpus
from flaskbench.execute.progress import Progress
from flaskbench.execute.provenance import machine, package_versions
from flaskbench.execute.runners.base import CellContext, Runner, RunStopped
from flaskbench.plan.cells import Plan
from flaskbench.plan.placement import Placement
from flaskbench.results.contract import CONFIG_COPY, META_FORMAT, MetaJson, TargetRecord, iso
from flaskbench.results.contract import Goal as GoalRecord
from flaskbench.results.rundir import CellStatus, RunDir
from flaskbench.servers.base import Target


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
    return {
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
        "app": config.app.describe(),
        "goal": goal_record(config.goal) if config.goal else None,
        "stop_when_saturated": config.stop_when_saturated,
        "sweeps_dropped": list(config.dropped),
        "staircase": {
            "users": list(config.staircase.users),
            "warmup_s": config.staircase.warmup_s,
            "measure_s": config.staircase.measure_s,
        },
        "repeats": config.repeats,
        "cells": [],
        "started": iso(time.time()),
    }


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
        "version": target.version,
    }


def goal_record(goal: Goal) -> GoalRecord:
    return {
        "p99_ms": goal.p99_ms,
        "users": goal.users,
        "max_rss_mb": goal.max_rss_mb,
        "max_error_rate": goal.max_error_rate,
    }


def execute(
    plan: Plan, runner: Runner, run: RunDir, meta: MetaJson, progress: Progress
) -> RunOutcome:
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
    left_out = _record_environments(meta, runner)
    for name, why in left_out.items():
        progress.warn(f"flaskbench: target {name} left out: {why}")
    skipped = {c.cell_id for c in plan.cells if c.target.name in left_out}
    meta["cells"] = [c for c in meta["cells"] if c not in skipped]
    run.write_meta(meta)

    done = {cid for cid, s in run.statuses().items() if s.status != "failed"}
    todo = plan.without(done | skipped)
    interrupted = False
    stopped = ""
    progress.begin(len(todo.cells), todo.estimated_seconds(runner.name, 1))
    try:
        with interrupts_as_keyboard_interrupt():
            for index, cell in enumerate(todo.cells, start=1):
                runner.before_cell()
                progress.cell(index, len(todo.cells), cell.cell_id)
                cell_dir = run.cell_dir(cell.cell_id)
                _discard_partial(cell_dir)
                status = runner.run_cell(
                    CellContext(cell, cell_dir, runner.config, plan, progress.advance)
                )
                run.write_cell_status(status)
                progress.cell_done()
                if status.status != "ok":
                    progress.warn(f"flaskbench: {status.cell_id} {status.status}: {status.reason}")
    except KeyboardInterrupt:
        interrupted = True
    except RunStopped as exc:
        stopped = str(exc)
    finally:
        runner.close()
        progress.end()
        session = meta["sessions"][-1]
        session["ended"] = iso(time.time())
        session["interrupted"] = interrupted
        if stopped:
            session["stopped"] = stopped
        meta["ended"] = session["ended"]
        meta["files"] = run.manifest()
        run.write_meta(meta)
    return RunOutcome(run, run.statuses(), interrupted, stopped)


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


def _discard_partial(cell_dir: Path) -> None:
    """An interrupted or failed attempt leaves files that must not mix with the new attempt."""
    if cell_dir.exists():
        shutil.rmtree(cell_dir)
