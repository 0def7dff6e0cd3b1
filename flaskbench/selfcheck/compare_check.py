"""`make compare-check`: how often `flaskbench compare` is wrong on this machine, measured.

1. A/A: one reduced config (4 targets x /io and /cpu x 4 user steps) run twice, the second
   compared with the first. Every valid matched comparison (step x metric, neither side
   flagged) judged faster or slower is a false positive; their share must be at most 5%.
2. A real difference: gthread 2 workers x 1 thread against 2 x 4 threads on /io?ms=100. Where
   the 2x1 server is saturated (more users than its 2 slots) the 2x4 one serves more, 2x to 4x;
   every such step must be judged faster.
Prints the figures and whether each holds (exit 1 if one does not). The runs and the two
comparisons land in the config's results directory, so every figure can be traced.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flaskbench.config.units import format_cpus
from flaskbench.execute.hostcpu import read_proc_stat, side_usage
from flaskbench.measure.compare import Comparison, StepComparison, compare, load_sides
from flaskbench.report.comparison import write_comparison
from flaskbench.results.rundir import new_output_dir
from flaskbench.selfcheck.accuracy import bench_config, run_bench

FALSE_POSITIVE_LIMIT = 0.05
AA_TARGETS: dict[str, dict[str, Any]] = {
    "sync": {"server": "gunicorn", "worker_class": "sync", "workers": 2},
    "gthread": {"server": "gunicorn", "worker_class": "gthread", "workers": 2, "threads": 4},
    "gevent": {"server": "gunicorn", "worker_class": "gevent", "workers": 1},
    "dev-single": {"server": "werkzeug", "threaded": False},
}
AA_WORKLOADS = {"io": {"io_ms": 100}, "cpu": {"cpu_ms": 10}}
AA_LOAD = {"users": [1, 4, 16, 64], "warmup": "2s", "measure": "6s"}
PAIR_THREADS = (1, 4)
PAIR_LOAD = {"users": [1, 2, 4, 8, 16, 32], "warmup": "2s", "measure": "6s"}
PAIR_SLOTS = 2


def _compare(runs: Sequence[Path], labels: Sequence[str] | None = None) -> Comparison:
    comparison = compare(load_sides(runs, labels))
    out = new_output_dir(runs[0].parent, "compare")
    write_comparison(comparison, out)
    print(f"   runs: {', '.join(str(r) for r in runs)}; comparison: {out}")
    return comparison


def _line(step: StepComparison) -> str:
    interval = f"{step.ci.low:.3f}-{step.ci.high:.3f}" if step.ci else "-"
    return (
        f"   {step.target:<11}{step.workload:<5}{step.users:>5}  {step.metric:<7}"
        f"{step.ratio or 0:>7.3f}  ({interval})  {step.verdict}"
    )


def false_positives(runs: Sequence[Path]) -> bool:
    print(
        f"1. A/A: one config run twice ({len(AA_TARGETS)} targets x {', '.join(AA_WORKLOADS)} x "
        f"users {AA_LOAD['users']}; {AA_LOAD['warmup']} warmup, {AA_LOAD['measure']} measured)"
    )
    comparison = _compare(runs)
    steps = comparison.steps
    valid = [s for s in steps if s.valid]
    different = [s for s in valid if s.verdict != "same"]
    everything = [s for s in steps if s.ratio is not None]
    print(
        f"   matched comparisons (step x metric): {len(steps)}; valid (neither side flagged): "
        f"{len(valid)}"
    )
    for metric in ("rps", "p99_ms"):
        mine = [s for s in valid if s.metric == metric]
        wrong = sum(s.verdict != "same" for s in mine)
        print(f"   {metric:<7} judged different: {wrong} of {len(mine)}")
    share = len(different) / len(valid) if valid else None
    flagged_wrong = sum(s.verdict != "same" for s in everything)
    print(
        f"   for comparison, counting flagged steps too: {flagged_wrong} of {len(everything)} "
        "judged different"
    )
    for step in different:
        print(_line(step))
    if share is None:
        print("   false-positive rate: no valid comparison (every step flagged): does not hold")
        return False
    holds = share <= FALSE_POSITIVE_LIMIT
    print(
        f"   false-positive rate: {share:.1%} of {len(valid)} (required: at most "
        f"{FALSE_POSITIVE_LIMIT:.0%}): {'holds' if holds else 'DOES NOT HOLD'}"
    )
    return holds


def detection(runs: Sequence[Path]) -> bool:
    print(
        f"2. A real difference: gthread 2x{PAIR_THREADS[0]} (baseline) vs 2x{PAIR_THREADS[1]} on "
        f"/io?ms=100, users {PAIR_LOAD['users']}"
    )
    labels = [f"gthread 2x{t}" for t in PAIR_THREADS]
    comparison = _compare(runs, labels)
    saturated = [s for s in comparison.steps if s.metric == "rps" and s.users > PAIR_SLOTS]
    print(
        f"   {'users':>5}{'2x1 req/s':>11}{'2x4 req/s':>11}  ratio (95% interval)  verdict  flags"
    )
    for step in comparison.steps:
        if step.metric != "rps":
            continue
        interval = f"{step.ci.low:.2f}-{step.ci.high:.2f}" if step.ci else "-"
        print(
            f"   {step.users:>5}{step.baseline or 0:>11.1f}{step.other or 0:>11.1f}  "
            f"{step.ratio or 0:>5.2f} ({interval:<11})  {step.verdict:<8} "
            f"{', '.join(step.flags) or '-'}"
        )
    found = sum(s.verdict == "faster" for s in saturated)
    holds = bool(saturated) and found == len(saturated)
    print(
        f"   saturated steps (users > {PAIR_SLOTS}): {len(saturated)}, judged faster: {found}: "
        f"{'holds' if holds else 'DOES NOT HOLD'}"
    )
    return holds


def machine_load(cpus: Sequence[int], seconds: float = 3.0) -> float | None:
    """Percent of these CPUs that processes used over a few seconds (this one sleeps): how busy
    the machine is with other work before the runs start."""
    before = read_proc_stat()
    time.sleep(seconds)
    usage = side_usage(before, read_proc_stat(), cpus)
    return usage.busy_pct if usage else None


def _say_machine_load() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    load = machine_load(cpus)
    if load is not None:
        print(
            f"0. before the runs, other processes used {load:.0f}% of CPUs {format_cpus(cpus)} "
            "(on a quiet machine: a few %; steps they disturb are flagged and not counted)"
        )


def _runs(base: dict[str, Any], directory: Path, runner: str) -> tuple[list[Path], list[Path]]:
    aa_config = bench_config(
        base, directory, load=AA_LOAD, targets=AA_TARGETS, workloads=AA_WORKLOADS
    )
    aa = [run_bench(aa_config, runner) for _ in range(2)]
    pair = []
    for threads in PAIR_THREADS:
        target = {"server": "gunicorn", "worker_class": "gthread", "workers": 2}
        config = bench_config(
            base,
            directory,
            load=PAIR_LOAD,
            targets={"gthread": target | {"threads": threads}},
            workloads={"io": {"io_ms": 100}},
        )
        pair.append(run_bench(config, runner))
    return aa, pair


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flaskbench.selfcheck.compare_check", description=__doc__
    )
    parser.add_argument("--config", type=Path, default=Path("bench.toml"))
    parser.add_argument("--runner", default="auto", choices=("auto", "docker", "local"))
    parser.add_argument(
        "--reuse",
        type=Path,
        nargs=4,
        metavar=("AA_1", "AA_2", "PAIR_1", "PAIR_2"),
        help="analyse these earlier compare-check runs again instead of running new ones",
    )
    args = parser.parse_args(argv)
    if args.reuse:
        aa, pair = list(args.reuse[:2]), list(args.reuse[2:])
    else:
        _say_machine_load()
        base = tomllib.loads(args.config.read_text())
        with tempfile.TemporaryDirectory(prefix="flaskbench-compare-check-") as tmp:
            aa, pair = _runs(base, Path(tmp), args.runner)
    holds = [false_positives(aa), detection(pair)]
    return 0 if all(holds) else 1


if __name__ == "__main__":
    sys.exit(main())
