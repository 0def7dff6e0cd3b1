"""flaskbench command line: run, report, verify, compare, publish, doctor, clean, images.

Exit codes: 0 all cells ok; 1 some cell failed or was degraded (or verify found a problem);
2 bad input or a host that cannot run the benchmark; 130 interrupted (resume with --resume).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flaskbench.config.load import Config, Overrides, load_config
from flaskbench.config.problems import ConfigError
from flaskbench.config.units import format_cpus
from flaskbench.execute.auto_trials import MoreTrials
from flaskbench.execute.doctor import all_checks, run_checks
from flaskbench.execute.leftovers import Leftover, remove_leftovers
from flaskbench.execute.progress import Progress
from flaskbench.execute.run import RunOutcome, execute, start_meta
from flaskbench.execute.runners import choose_runner
from flaskbench.measure.analyze import analyze_run
from flaskbench.measure.collect import load_run
from flaskbench.plan.cells import make_plan
from flaskbench.plan.placement import Placement, PlacementError, place, single_host
from flaskbench.report.run_report import write_outputs
from flaskbench.results.contract import CHARTS_DIR, CONFIG_COPY, IMAGE_BUILD_LOG, REPORT_HTML
from flaskbench.results.rundir import (
    RunDir,
    RunDirError,
    create_run_dir,
    new_output_dir,
    open_run_dir,
    verify,
)

DEFAULT_CONFIG = Path("bench.toml")
EXIT_OK, EXIT_CELLS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
CRASH_LOG = "flaskbench-crash.log"


class UsageError(Exception):
    """Bad input or an unusable host: one line per problem, exit code 2."""


class CrashLog:
    """Where an internal error's traceback goes: into the run directory once the command has
    one, beside the run it concerns; else a new file in the system's temp directory. Never the
    working directory, which is often a checkout."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None

    def write(self, text: str) -> Path | None:
        """The file that took the traceback, or None when no place would."""
        if self.run_dir is not None:
            path = self.run_dir / CRASH_LOG
            try:
                # Appended: a resumed run that crashes again keeps the first traceback too.
                with path.open("a") as handle:
                    handle.write(text)
                return path
            except OSError:
                pass  # a run directory this user cannot write to: the temp directory then
        try:
            # A file of its own: a fixed name in a shared directory may be another user's.
            fd, name = tempfile.mkstemp(prefix="flaskbench-crash-", suffix=".log")
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            return Path(name)
        except OSError:
            return None


# Where this invocation's internal error goes: main resets it, and a command points it at its
# run directory as soon as it has one.
_crash_log = CrashLog()


def _in_run_dir(run: RunDir) -> RunDir:
    """The run, now that the command has it: a crash from here on is logged in its directory."""
    _crash_log.run_dir = run.path
    return run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flaskbench",
        description="How many concurrent requests does one Flask process handle? Measured.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the benchmark matrix and write a report")
    run.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="TOML config (default bench.toml)"
    )
    run.add_argument(
        "--runner", choices=("auto", "docker", "local"), help="default: the config's run.runner"
    )
    run.add_argument("--quick", action="store_true", help="use the config's [quick] staircase")
    run.add_argument("--targets", help="comma-separated target names (default: all)")
    run.add_argument("--workloads", help="comma-separated workload names (default: all)")
    run.add_argument("--users", help="comma-separated user counts, e.g. 1,2,4")
    run.add_argument("--step-time", help="measured window per step, e.g. 10s")
    run.add_argument("--warmup", help="warmup per step, e.g. 3s")
    run.add_argument(
        "--repeats",
        type=_repeats,
        help="trials: every cell once per trial, in an order shuffled per trial; a number, or "
        '"auto": add trials until every comparison is decided',
    )
    run.add_argument("--seed", type=int, help="the seed of the trials' orders (default: drawn)")
    run.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="finish an interrupted or failed run"
    )
    run.add_argument(
        "--allow-remote-target", action="store_true", help="allow run.host outside 127.0.0.0/8"
    )
    _output_options(run)

    report = commands.add_parser("report", help="rebuild summary.csv and the report from raw data")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    _output_options(report)

    check = commands.add_parser("verify", help="check a run's raw files against their SHA-256")
    check.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    _output_options(check)

    _compare_parser(commands)

    publish = commands.add_parser(
        "publish",
        help="publish runs and comparisons as a static site (checked against their SHA-256)",
    )
    publish.add_argument(
        "sources",
        type=Path,
        nargs="*",
        metavar="RUN_OR_COMPARISON",
        help="run or comparison directories (default: every one under results/)",
    )
    publish.add_argument("--out", type=Path, required=True, help="the site's directory")
    publish.add_argument("--results", type=Path, default=Path("results"), help=argparse.SUPPRESS)
    _output_options(publish)

    doctor = commands.add_parser("doctor", help="check that this host can run the benchmark")
    doctor.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    _output_options(doctor)

    clean = commands.add_parser(
        "clean", help="remove the containers of crashed runs (only those; a run does it too)"
    )
    clean.add_argument(
        "--config",
        type=Path,
        help="also on every host of this config's [hosts] (default: this machine's engine only)",
    )
    _output_options(clean)

    images = commands.add_parser("images", help="build the Docker images (base image included)")
    images.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    _output_options(images)
    return parser


def _compare_parser(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help="compare runs step by step: ratios with 95%% intervals and verdicts",
        description="The first run is the baseline; every other run is compared with it.",
    )
    compare.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run directories")
    compare.add_argument(
        "--label",
        action="append",
        metavar="NAME",
        help="a name per run, in order (default: what differs in their meta.json)",
    )
    compare.add_argument(
        "--out", type=Path, help="output directory (default: compare-<time> beside the first run)"
    )
    compare.add_argument(
        "--threshold",
        default="2%",
        help="smallest change that counts, as 0.02 or 2%% (default 2%%)",
    )
    _output_options(compare)


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress, only results and errors")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    progress = Progress(quiet=args.quiet or args.json)
    _crash_log.run_dir = None
    try:
        return int(COMMANDS[args.command](args, progress))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"flaskbench: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, RunDirError) as exc:
        print(f"flaskbench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if os.environ.get("FLASKBENCH_DEBUG"):
            raise
        text = traceback.format_exc()
        log = _crash_log.write(text)
        if log is None:
            print(text, end="", file=sys.stderr)
        where = f"traceback in {log}" if log else "no file took the traceback: above"
        print(f"flaskbench: internal error: {type(exc).__name__}: {exc} ({where})", file=sys.stderr)
        return EXIT_USAGE


def _repeats(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is neither a number nor "auto"') from None


def _overrides(args: argparse.Namespace) -> Overrides:
    return Overrides(
        runner=args.runner,
        quick=args.quick,
        targets=args.targets,
        workloads=args.workloads,
        users=args.users,
        step_time=args.step_time,
        warmup=args.warmup,
        repeats=args.repeats,
        seed=args.seed,
        allow_remote_target=args.allow_remote_target,
    )


def cmd_run(args: argparse.Namespace, progress: Progress) -> int:
    if args.resume:
        run = _in_run_dir(open_run_dir(args.resume))
        meta = run.read_meta()
        trials = meta.get("trials")
        overrides = Overrides(
            **{
                **meta.get("overrides", {}),
                "runner": args.runner or meta["runner"]["name"],
                # The orders the run started with: the same seed makes the same.
                "seed": trials["seed"] if trials else None,
            }
        )
        config = load_config(run.path / CONFIG_COPY, overrides)
        _same_revisions(meta["app"].get("revisions", {}), config)
    else:
        overrides = _overrides(args)
        config = load_config(args.config, overrides)
    runner, reason = choose_runner_or_fail(config, progress)
    progress.say(f"flaskbench: {runner.name} runner ({reason})")
    # Before the checks: a crashed run's containers would fail them (busy ports).
    for leftover in _remove_leftovers(config):
        progress.warn(f"flaskbench: removed {leftover.describe()}")
    _preflight(config, runner.name, progress)
    placement = _placement(config)
    if args.resume:
        meta["runner"] = {"name": runner.name, "reason": reason}
    else:
        run = _in_run_dir(create_run_dir(config.results_dir))
        meta = start_meta(config, overrides, run, runner, reason, placement)
    if config.host != "127.0.0.1":
        progress.warn(
            f"flaskbench: load goes to {config.host}:{config.port} (--allow-remote-target)"
        )
    if config.hosts is None:
        # The orchestrator shares the load generator's CPUs, never the target's.
        os.sched_setaffinity(0, config.cpus.load)
    meta["orchestrator_cpus"] = format_cpus(sorted(os.sched_getaffinity(0)))
    reached = len(meta["trials"]["order"]) if "trials" in meta else 0
    plan = make_plan(config, placement, reached)
    more = MoreTrials(config, run) if config.trials.auto else None
    try:
        outcome = execute(plan, runner, run, meta, progress, more)
    except RuntimeError as exc:
        raise UsageError(str(exc)) from None
    _build_report(outcome.run, progress)
    return _finish(outcome, args, progress)


def _same_revisions(began: dict[str, str], config: Config) -> None:
    """A resumed run serves the commits it began with: a branch that moved since is refused."""
    for name, app in config.revision_apps.items():
        if began.get(name, app.commit) != app.commit:
            raise UsageError(
                f"app.revision: {name} is at {str(app.commit)[:12]} now but the run began at "
                f"{began[name][:12]}; start a new run to measure it"
            )


def _placement(config: Config) -> Placement:
    """Where [hosts] puts each side, on the CPUs the hosts' engines report."""
    if config.hosts is None:
        return single_host(config)
    from flaskbench.execute.engines import survey_all

    facts, problems = survey_all({e: config.hosts.roles(e) for e in config.hosts.engines})
    if problems:
        raise UsageError("\n".join(problems))
    try:
        return place(config, facts)
    except PlacementError as exc:
        raise UsageError(str(exc)) from None


def choose_runner_or_fail(config: Config, progress: Progress) -> Any:
    try:
        return choose_runner(config, progress.say)
    except RuntimeError as exc:
        raise UsageError(str(exc)) from None


def _preflight(config: Config, runner: str, progress: Progress) -> None:
    checks = run_checks(config, runner)
    failed = [c for c in checks if not c.ok]
    for check in checks:
        if not check.ok:
            progress.warn(f"flaskbench: {check.line()}")
    if failed:
        raise UsageError("fix the checks above first (see `flaskbench doctor`)")


def _build_report(run: RunDir, progress: Progress) -> list[str]:
    analysis = analyze_run(load_run(run))
    written = write_outputs(run, analysis)
    run.record_outputs([*written, *(run.path / CHARTS_DIR).glob("*.png"), run.path / CONFIG_COPY])
    problems = list(analysis.data.unreadable.values())
    for problem in problems:
        progress.warn(f"flaskbench: left out of the report: {problem}")
    return problems


def _finish(outcome: RunOutcome, args: argparse.Namespace, progress: Progress) -> int:
    bad = outcome.unsuccessful
    if bad:
        progress.warn(
            f"flaskbench: {len(bad)} of {len(outcome.statuses)} cell(s) failed or were degraded "
            f"(reasons above and in {outcome.run.path / 'report.md'})"
        )
    if outcome.interrupted or outcome.stopped:
        why = f"stopped: {outcome.stopped}" if outcome.stopped else "interrupted"
        progress.warn(
            f"flaskbench: {why}; {len(outcome.statuses)} cell(s) finished. "
            f"Finish with: flaskbench run --resume {outcome.run.path}"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "run_dir": str(outcome.run.path),
                    "interrupted": outcome.interrupted,
                    "stopped": outcome.stopped,
                    "cells": {cid: asdict(s) for cid, s in outcome.statuses.items()},
                    "summary": str(outcome.run.summary_path),
                    "report": str(outcome.run.path / REPORT_HTML),
                },
                indent=2,
            )
        )
    else:
        print(outcome.run.path)
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_CELLS if bad or outcome.stopped else EXIT_OK


def cmd_report(args: argparse.Namespace, progress: Progress) -> int:
    run = _in_run_dir(open_run_dir(args.run_dir))
    problems = _build_report(run, progress)
    if args.json:
        print(json.dumps({"run_dir": str(run.path), "problems": problems}, indent=2))
    else:
        print(run.path / REPORT_HTML)
    return EXIT_CELLS if problems else EXIT_OK


def cmd_verify(args: argparse.Namespace, progress: Progress) -> int:
    run = _in_run_dir(open_run_dir(args.run_dir))
    problems = verify(run)
    if args.json:
        print(json.dumps({"run_dir": str(run.path), "problems": problems}, indent=2))
    else:
        for problem in problems:
            print(problem)
        if not problems and not args.quiet:
            print(f"{run.path}: every raw file matches its SHA-256")
    return EXIT_CELLS if problems else EXIT_OK


def _config_without_load(path: Path) -> Config:
    """A config for commands that send no load: a remote target's address is accepted (`run`
    asks for --allow-remote-target before it sends any)."""
    return load_config(path, Overrides(allow_remote_target=True))


def cmd_compare(args: argparse.Namespace, progress: Progress) -> int:
    from flaskbench.measure.compare import CompareError, compare, load_sides, parse_threshold
    from flaskbench.report.comparison import write_comparison

    try:
        threshold = parse_threshold(args.threshold)
        sides = load_sides(args.runs, args.label)
    except CompareError as exc:
        raise UsageError(str(exc)) from None
    comparison = compare(sides, threshold)
    out = args.out or new_output_dir(args.runs[0].parent, "compare")
    written = write_comparison(comparison, out)
    if args.json:
        print(json.dumps({"out": str(out), "files": [str(p) for p in written]}, indent=2))
    else:
        print(out)
    return EXIT_OK


def cmd_publish(args: argparse.Namespace, progress: Progress) -> int:
    from flaskbench.report.site import PublishError, publish, sources_in

    try:
        sources = args.sources or sources_in(args.results)
        if not sources:
            raise PublishError(f"nothing to publish: no runs or comparisons in {args.results}")
        published = publish(sources, args.out)
    except PublishError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps({"index": str(published.index), **asdict(published)}, default=str))
        return EXIT_OK
    for name in published.kept:
        progress.say(f"flaskbench: {name} is already on the site; left as it is")
    print(published.index)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, progress: Progress) -> int:
    config = _config_without_load(args.config)
    checks = all_checks(config)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for check in checks:
            print(check.line())
    return EXIT_OK if all(c.ok for c in checks) else EXIT_CELLS


def _remove_leftovers(config: Config | None) -> list[Leftover]:
    """Whatever the runner, a crashed docker run may hold the ports this run needs: here, and
    on every host of the config (those that answer; the checks name the others). A crashed
    local run's files in memory (gauges, app copies, services' data) go too."""
    from flaskbench.config.hosts import DEFAULT_ENGINE
    from flaskbench.execute.engines import HostLost, connect
    from flaskbench.execute.runners.local_runner import remove_stale_files

    remove_stale_files()

    engines = [DEFAULT_ENGINE, *(config.hosts.engines if config and config.hosts else ())]
    removed: list[Leftover] = []
    for spec in dict.fromkeys(engines):
        try:
            removed += remove_leftovers(connect(spec).client, spec)
        except HostLost:
            continue
    return removed


def cmd_clean(args: argparse.Namespace, progress: Progress) -> int:
    removed = _remove_leftovers(_config_without_load(args.config) if args.config else None)
    if args.json:
        print(json.dumps([asdict(leftover) for leftover in removed], indent=2))
    elif not args.quiet:
        for leftover in removed:
            print(f"removed {leftover.describe()}")
        if not removed:
            print("no containers of crashed runs")
    return EXIT_OK


def cmd_images(args: argparse.Namespace, progress: Progress) -> int:
    config = load_config(args.config, Overrides(runner="docker"))
    from flaskbench.execute.engines import docker_client, docker_unavailable
    from flaskbench.execute.environments import plan_environments
    from flaskbench.execute.images import ImageError, ensure_images
    from flaskbench.proxies.proxy_registry import debian_packages

    if problem := docker_unavailable():
        raise UsageError(f"cannot build images: {problem}")
    try:
        images = ensure_images(
            docker_client(),
            config.base_image,
            plan_environments(config.app, config.targets, config.revision_apps).environments,
            [w.locustfile for w in config.workloads],
            progress.say,
            config.results_dir / IMAGE_BUILD_LOG,
            (config.results_dir,),
            system_packages=debian_packages([t.proxy for t in config.targets]),
        )
        services = []
        if config.services:
            from flaskbench.execute.services.services_image import ensure_services_image

            log = config.results_dir / IMAGE_BUILD_LOG
            services = [
                ensure_services_image(
                    docker_client(), images.base, config.services, progress.say, log
                )
            ]
    except ImageError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(asdict(images) | {"services": services}, indent=2))
    else:
        print("\n".join([*images.targets, *images.loadgen.values(), *services]))
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "report": cmd_report,
    "verify": cmd_verify,
    "compare": cmd_compare,
    "publish": cmd_publish,
    "doctor": cmd_doctor,
    "clean": cmd_clean,
    "images": cmd_images,
}
