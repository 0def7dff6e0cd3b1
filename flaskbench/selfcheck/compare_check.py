"""`make compare-check`: how far flaskbench's verdicts hold on this machine, measured.

One run of a reduced config with interleaved trials (every trial runs every cell once, in its
own shuffled order) answers three questions:

1. False positives (A/A). Every four trials in a row split into two runs of two, their odd
   trials against their even ones, and every step of one is compared with the same step of the
   other over their trials, as `flaskbench compare` compares two runs. Nothing differs between
   the two, so every valid comparison (neither side's step flagged) judged faster or slower is a
   false positive: at most 5% of at least 200.
2. Power. /cpu?ms=10 against /cpu?ms=10.5 (5% more CPU per request, so about 4.8% less
   throughput where the target's CPU is saturated) on every target, paired over all the trials,
   at the steps where the target's CPU was saturated: found (judged slower) in at least 80%.
   A/A and power count the steps flagged on neither side; a line beside each says what the
   verdicts gave with the flagged ones too (what the intervals over trials alone held).
3. Valid steps: at least 80% of the run's steps unflagged, each over all its trials (the
   steps the report shows); how many of the trials' own measurements were flagged is printed
   beside it.

Then neighbours: one target run briefly twice, alone and beside a CPU hog pinned to the target's
CPUs, shows how much other processes move an I/O-bound step and a CPU-saturated one, and which
steps the flags caught. The whole check must take at most 30 minutes.

Each figure is printed on a line of its own; exit 1 if one does not hold. The runs land in the
config's results directory, so every figure can be traced to its raw data.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flaskbench.config.trials import DEFAULT_THRESHOLD
from flaskbench.config.units import parse_cpus
from flaskbench.measure.analyze import Analysis, analyze_run
from flaskbench.measure.collect import load_run
from flaskbench.measure.compare import Side, compare, trial_rows, verdict
from flaskbench.measure.stats import paired_ratio
from flaskbench.results.rundir import open_run_dir
from flaskbench.selfcheck.accuracy import bench_config, run_bench

FALSE_POSITIVE_LIMIT = 0.05
MIN_COMPARISONS = 200
POWER_NEEDED = 0.80
VALID_NEEDED = 0.80
TIME_LIMIT_S = 30 * 60
# Five worker models, three workloads, four user steps: 60 steps. Eight trials, as a saturated
# step's ratio varies by 3 to 4% from trial to trial here: over four pairs (3 degrees of freedom)
# a 5% difference was found at 12 of 39 steps, over eight at 13 of 18. Two A/A splits of two
# trials against two give up to 240 comparisons (throughput and p99). About 28 minutes.
TARGETS: dict[str, dict[str, Any]] = {
    "sync": {"server": "gunicorn", "worker_class": "sync", "workers": 2},
    "gthread": {"server": "gunicorn", "worker_class": "gthread", "workers": 2, "threads": 4},
    "gevent": {"server": "gunicorn", "worker_class": "gevent", "workers": 1},
    "waitress": {"server": "waitress", "threads": 4},
    "dev": {"server": "werkzeug"},
}
BASE, MORE = "cpu", "cpu-5pct"
WORKLOADS: dict[str, dict[str, Any]] = {
    "io": {"io_ms": 20},
    BASE: {"path": "/cpu?ms=10"},
    MORE: {"path": "/cpu?ms=10.5"},
}
EXPECTED_RATIO = 10 / 10.5
LOAD = {"users": [2, 4, 8, 16], "warmup": "1s", "measure": "2s", "repeats": 8}
# Trials per A/A split: two against two.
SPLIT = 4
# A step whose target used at least this share of its CPUs had them saturated.
SATURATED = 0.9
# Neighbours: one target, an I/O-bound and a CPU-bound workload, alone and beside a hog.
HOG_TARGET = {"sync": {"server": "gunicorn", "worker_class": "sync", "workers": 1}}
HOG_WORKLOADS = {"io": {"io_ms": 20}, "cpu": {"cpu_ms": 10}}
HOG_LOAD = {"users": [1, 4], "warmup": "1s", "measure": "3s", "repeats": 1}
HOG_LIFETIME_S = 600


@dataclass(frozen=True)
class Figure:
    line: str
    holds: bool

    def show(self) -> None:
        print(f"{self.line}: {'holds' if self.holds else 'DOES NOT HOLD'}")


def splits(analysis: Analysis) -> list[tuple[Side, Side]]:
    """Every SPLIT trials in a row as two runs, their odd trials against their even ones:
    interleaved, so drift falls on both."""
    data = analysis.data
    trials = sorted({_trial(c.cell_id) for c in data.cells})
    found = []
    for start in range(0, len(trials) - SPLIT + 1, SPLIT):
        block = trials[start : start + SPLIT]
        sides = []
        for chosen in (block[0::2], block[1::2]):
            name = f"trials {' and '.join(map(str, chosen))}"
            cells = tuple(c for c in data.cells if _trial(c.cell_id) in chosen)
            half = replace(data, run_id=f"{data.run_id} {name}", cells=cells)
            sides.append(Side(Path(data.run_id), name, analyze_run(half)))
        found.append((sides[0], sides[1]))
    return found


def _trial(cell_id: str) -> int:
    return int(cell_id.rsplit("--", 1)[1].removeprefix("r"))


def false_positives(analysis: Analysis, minimum: int = MIN_COMPARISONS) -> Figure:
    steps = [
        step
        for pair in splits(analysis)
        for step in compare(pair, DEFAULT_THRESHOLD).steps
        if step.workload in WORKLOADS
    ]
    valid = [s for s in steps if s.valid]
    wrong = [s for s in valid if s.verdict != "same"]
    # The verdicts over trials whatever the flags: what the intervals alone held on this machine.
    print(
        f"   with the flagged steps too: {sum(s.verdict != 'same' for s in steps)} of "
        f"{len(steps)} judged different"
    )
    for metric in ("rps", "p99_ms"):
        mine = [s for s in valid if s.metric == metric]
        different = sum(s.verdict != "same" for s in mine)
        print(f"   {metric:<7} judged different: {different} of {len(mine)}")
    for step in wrong:
        interval = f"{step.ci.low:.3f}-{step.ci.high:.3f}" if step.ci else "-"
        print(
            f"   {step.target:<9}{step.workload:<9}{step.users:>3} users  {step.metric:<7}"
            f"{step.ratio or 0:.3f} ({interval}) {step.verdict}, "
            f"{step.other_label} against {step.baseline_label}"
        )
    share = len(wrong) / len(valid) if valid else 1.0
    return Figure(
        f"false-positive rate: {share:.1%} of {len(valid)} valid comparisons "
        f"(at most {FALSE_POSITIVE_LIMIT:.0%} of at least {minimum})",
        share <= FALSE_POSITIVE_LIMIT and len(valid) >= minimum,
    )


def power(analysis: Analysis) -> Figure:
    """/cpu?ms=10.5 against /cpu?ms=10 where the target's CPU was saturated, trial by trial;
    the figure counts the steps neither side of which was flagged, and a line the flagged too."""
    points = {(p.target, p.workload, p.users): p for p in analysis.points}
    trials = trial_rows(analysis)
    cores = analysis.data.target_cores
    judged_valid: list[bool] = []
    judged_all: list[bool] = []
    for (target, workload, users), point in sorted(points.items()):
        other = points.get((target, MORE, users))
        if workload != BASE or other is None:
            continue
        if (point.target_cpu_pct or 0) / 100 < SATURATED * cores:
            continue
        base = {t: r.rps for t, r in trials[(target, BASE, users)].items()}
        more = {t: r.rps for t, r in trials[(target, MORE, users)].items()}
        ratio, ci, count = paired_ratio(base, more)
        judged = verdict("rps", ratio, ci, DEFAULT_THRESHOLD)
        flagged = bool(point.flags or other.flags)
        judged_all.append(judged == "slower")
        if not flagged:
            judged_valid.append(judged == "slower")
        interval = f"{ci.low:.3f}-{ci.high:.3f}" if ci else "-"
        print(
            f"   {target:<9}{users:>3} users  {ratio or 0:.3f} ({interval}) over {count} "
            f"trials: {judged}{' (flagged)' if flagged else ''}"
        )
    print(f"   with the flagged steps too: found {sum(judged_all)} of {len(judged_all)}")
    found, compared = sum(judged_valid), len(judged_valid)
    share = found / compared if compared else 0.0
    return Figure(
        f"power: found {found} of {compared} ({1 - EXPECTED_RATIO:.0%} difference; "
        f"at least {POWER_NEEDED:.0%})",
        compared > 0 and share >= POWER_NEEDED,
    )


def valid_steps(analysis: Analysis) -> Figure:
    """Steps as the report shows them, each over all its trials; and, for what the noise
    did, how many of the trials' own measurements were flagged and why."""
    rows, points = analysis.rows, analysis.points
    flags: dict[str, int] = {}
    for row in rows:
        for flag in row.flags:
            flags[flag] = flags.get(flag, 0) + 1
    print(
        f"   trials' measurements unflagged: {sum(r.valid for r in rows)} of {len(rows)}"
        + ("; flags: " + ", ".join(f"{f} {n}" for f, n in sorted(flags.items())) if flags else "")
    )
    valid = sum(not p.flags for p in points)
    share = valid / len(points) if points else 0.0
    trials = max((p.repeats for p in points), default=0)
    return Figure(
        f"valid: {valid} of {len(points)} steps, each over {trials} trials "
        f"(at least {VALID_NEEDED:.0%})",
        share >= VALID_NEEDED,
    )


def neighbours(alone: Analysis, beside: Analysis) -> None:
    """How much a CPU hog on the target's CPUs moved each step, and whether it was flagged."""
    quiet = {(p.workload, p.users): p for p in alone.points}
    for point in beside.points:
        before = quiet.get((point.workload, point.users))
        if before is None or before.rps <= 0:
            continue
        flagged = [r for r in beside.rows if (r.workload, r.users) == (point.workload, point.users)]
        caught = sum("cpu_contention" in r.flags for r in flagged)
        busy = (before.target_cpu_pct or 0) / alone.data.target_cores
        print(
            f"   {point.workload:<4}{point.users:>3} users (target CPU {busy:.0f}% alone): "
            f"{point.rps / before.rps - 1:+.1%} beside the hog; flagged in {caught} of "
            f"{len(flagged)} trials"
        )


def _analysis(run: Path) -> Analysis:
    return analyze_run(load_run(open_run_dir(run)))


def start_hog(cpus: Sequence[int]) -> subprocess.Popen[bytes]:
    """A process that keeps the target's CPUs busy, ending by itself after HOG_LIFETIME_S."""
    loop = (
        f"import time\nend = time.monotonic() + {HOG_LIFETIME_S}\n"
        "while time.monotonic() < end: pass"
    )
    hog = subprocess.Popen([sys.executable, "-c", loop])
    os.sched_setaffinity(hog.pid, cpus)
    return hog


def run_neighbours(base: dict[str, Any], directory: Path, runner: str) -> tuple[Path, Path]:
    config = bench_config(
        base, directory, load=HOG_LOAD, targets=HOG_TARGET, workloads=HOG_WORKLOADS
    )
    alone = run_bench(config, runner)
    cpus = parse_cpus(open_run_dir(alone).read_meta()["cpus"]["target"])
    hog = start_hog(cpus)
    try:
        beside = run_bench(config, runner)
    finally:
        hog.terminate()
        hog.wait()
    return alone, beside


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flaskbench.selfcheck.compare_check", description=__doc__
    )
    parser.add_argument("--config", type=Path, default=Path("bench.toml"))
    parser.add_argument("--runner", default="auto", choices=("auto", "docker", "local"))
    parser.add_argument(
        "--reuse",
        type=Path,
        nargs=3,
        metavar=("TRIALS", "ALONE", "BESIDE_HOG"),
        help="analyse these earlier compare-check runs again instead of running new ones",
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    if args.reuse:
        run, alone, beside = args.reuse
    else:
        run, alone, beside = _runs(tomllib.loads(args.config.read_text()), args.runner)
    analysis = _analysis(run)
    print(f"A/A: in every {SPLIT} trials, the odd against the even, every step and metric")
    figures = [false_positives(analysis)]
    figures[-1].show()
    print("power: /cpu?ms=10.5 against /cpu?ms=10 where the target's CPU was saturated")
    figures.append(power(analysis))
    figures[-1].show()
    figures.append(valid_steps(analysis))
    figures[-1].show()
    print(f"neighbours: {alone} alone, {beside} beside a CPU hog on the target's CPUs")
    neighbours(_analysis(alone), _analysis(beside))
    if not args.reuse:
        took = time.monotonic() - began
        limit = TIME_LIMIT_S // 60
        figures.append(
            Figure(f"time: {took / 60:.1f} minutes (at most {limit})", took <= TIME_LIMIT_S)
        )
        figures[-1].show()
    return 0 if all(f.holds for f in figures) else 1


def _runs(base: dict[str, Any], runner: str) -> tuple[Path, Path, Path]:
    with tempfile.TemporaryDirectory(prefix="flaskbench-compare-check-") as tmp:
        directory = Path(tmp)
        config = bench_config(base, directory, load=LOAD, targets=TARGETS, workloads=WORKLOADS)
        print(
            f"trials: {len(TARGETS)} targets x {len(WORKLOADS)} workloads x users "
            f"{LOAD['users']}, {LOAD['repeats']} interleaved trials"
        )
        run = run_bench(config, runner)
        print(f"   run: {run}")
        alone, beside = run_neighbours(base, directory, runner)
    return run, alone, beside


if __name__ == "__main__":
    sys.exit(main())
