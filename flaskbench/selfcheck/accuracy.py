"""`make accuracy`: how far flaskbench's own numbers can be trusted on this machine.

Four figures, each a ratio measured in one run of the real command:
1. measured / expected throughput on /io?ms=100 at and above saturation, for worker models
   whose ceiling is known exactly (sync 2 workers, gthread 2x4, gevent 1 worker, dev-single);
2. the in-process gauge's cost: /hello throughput while it counts / while it is paused, in
   alternating periods of one run, plus the CPU its sampling takes;
3. load-generator headroom: what Locust could produce against the fastest target, over what
   that target could serve, each extrapolated from its CPU use at the same moment;
4. the harness's own time: the user's `--quick` run, from the command to its report, against
   the time its steps take, and what a cell costs beyond its steps (the next target's start,
   the check of its requests, the wait for the next whole second).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flaskbench import PROJECT_ROOT
from flaskbench.config.units import parse_cpus
from flaskbench.execute.commands import ALTERNATE_S
from flaskbench.results.contract import CELL_JSON, LOADGEN_JSON, META_JSON, RAW_DIR, SUMMARY_CSV

IO_TARGETS = {
    "sync": ({"server": "gunicorn", "worker_class": "sync", "workers": 2}, (2, 8)),
    "gthread": (
        {"server": "gunicorn", "worker_class": "gthread", "workers": 2, "threads": 4},
        (8, 32),
    ),
    "gevent": ({"server": "gunicorn", "worker_class": "gevent", "workers": 1}, (32, 128)),
    "dev-single": ({"server": "werkzeug", "threaded": False}, (1, 4)),
}
FASTEST = {"server": "gunicorn", "worker_class": "gthread", "workers": 2, "threads": 4}
GAUGE_TARGETS = {
    "sync": {"server": "gunicorn", "worker_class": "sync", "workers": 2},
    "gthread": FASTEST,
    "gevent": {"server": "gunicorn", "worker_class": "gevent", "workers": 1},
}
GAUGE_MEASURE_S = 120


@dataclass(frozen=True)
class Setup:
    """What every figure starts from: the user's config (its file, and as read), a scratch
    directory for the benchmark's own configs, the runner."""

    config: Path
    base: dict[str, Any]
    directory: Path
    runner: str


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def bench_config(base: dict[str, Any], directory: Path, **sections: dict[str, Any]) -> Path:
    """The user's [run] and [cpus] with the benchmark's own targets, workloads and load.

    The runs land in the user's results directory like any other, so each figure can be
    traced to its raw data."""
    tables = {
        "run": base.get("run", {}),
        "cpus": base.get("cpus", {}),
        **sections,
    }
    lines: list[str] = []
    for table, values in tables.items():
        simple = {k: v for k, v in values.items() if not isinstance(v, dict)}
        if simple:
            lines.append(f"[{table}]")
            lines += [
                f"{k} = {v if isinstance(v, list) else _toml_value(v)}" for k, v in simple.items()
            ]
        for name, sub in values.items():
            if isinstance(sub, dict):
                lines.append(f"[{table}.{name}]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in sub.items()]
    path = directory / f"accuracy-{len(list(directory.glob('*.toml')))}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_bench(config: Path, runner: str, *more: str) -> Path:
    """The run directory of one `flaskbench run` with that config (`more`: its options)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flaskbench",
            "run",
            "--config",
            str(config),
            "--runner",
            runner,
            "--quiet",
            *more,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode not in (0, 1) or not lines:
        sys.exit(f"flaskbench run failed ({done.returncode}):\n{done.stderr}")
    return Path(lines[-1])


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / SUMMARY_CSV).open(newline="") as handle:
        return list(csv.DictReader(handle))


def io_ceilings(setup: Setup) -> None:
    base, directory, runner = setup.base, setup.directory, setup.runner
    users = sorted({u for _, steps in IO_TARGETS.values() for u in steps})
    config = bench_config(
        base,
        directory,
        load={"users": users, "warmup": "3s", "measure": "10s"},
        targets={name: settings for name, (settings, _) in IO_TARGETS.items()},
        workloads={"io": {"io_ms": 100}},
    )
    rows = _rows(run_bench(config, runner))
    print("1. /io?ms=100 throughput, measured / expected, at and above saturation")
    print(f"   {'target':<11}{'users':>6}{'req/s':>9}{'expected':>10}{'ratio':>8}  flags")
    for name, (_, steps) in IO_TARGETS.items():
        for row in rows:
            if row["target"] == name and int(row["users"]) in steps:
                print(
                    f"   {name:<11}{row['users']:>6}{float(row['rps']):>9.1f}"
                    f"{float(row['expected_rps']):>10.1f}{float(row['rps_vs_expected']):>8.3f}"
                    f"  {row['flags'] or '-'}"
                )


def gauge_overhead(setup: Setup) -> None:
    base, directory, runner = setup.base, setup.directory, setup.runner
    """The gauge's cost measured within one run: it counts in even 2 s periods and is paused in
    odd ones (run.gauge = "alternate"), so both sides share the same server, connections and
    machine state; runs of the same config differ by several percent, far more than the 2%
    this has to resolve. Each counting period is compared with the paused period right after
    it, which cancels the slow drift of a shared machine; the mean of those ratios is printed
    with its standard error. The launcher samples in both periods but only has events to
    replay while counting, so on/off includes the sampling's cost; its CPU share over the whole
    run is printed beside it.
    """
    print(f"2. gauge overhead on /hello, 16 users, {GAUGE_MEASURE_S} s, counting vs paused")
    print(f"   {'target':<9}{'req/s on':>9}{'off':>7}{'on/off':>8}{'+-':>7}{'sampling':>10}")
    models = []
    target_cpus = ""
    for name, settings in GAUGE_TARGETS.items():
        config = bench_config(
            {**base, "run": {**base.get("run", {}), "gauge": "alternate"}},
            directory,
            load={"users": [16], "warmup": "3s", "measure": f"{GAUGE_MEASURE_S}s"},
            targets={name: settings},
            workloads={"noop": {"io_ms": 0}},
        )
        run_dir = run_bench(config, runner)
        cell = run_dir / RAW_DIR / f"{name}--noop--r1"
        pairs = _period_pairs(json.loads((cell / LOADGEN_JSON).read_text()))
        ratios = [on / off for on, off in pairs]
        ratio = statistics.fmean(ratios)
        spread = statistics.stdev(ratios) / math.sqrt(len(ratios))
        sampling = _sampling_share(cell)
        on_rps = statistics.fmean(on for on, _ in pairs) / ALTERNATE_S
        off_rps = statistics.fmean(off for _, off in pairs) / ALTERNATE_S
        print(
            f"   {name:<9}{on_rps:>9.0f}{off_rps:>7.0f}{ratio:>8.3f}{spread:>7.3f}{sampling:>10.2%}"
        )
        target_cpus = json.loads((run_dir / META_JSON).read_text())["cpus"]["target"]
        models.append((name, off_rps, sampling))
    print("   on/off: 1.000 = free, required >= 0.980; sampling: the launcher's CPU, included")
    _gauge_cost_model(models, target_cpus)


def _gauge_cost_model(models: list[tuple[str, float, float]], target_cpus: str) -> None:
    """The same cost built up from a micro-benchmark, which a shared machine disturbs far less
    than a throughput measurement: the middleware's extra time per request at the rate each
    target served, plus the sampling. Its caches are warm, so the cost under load is higher."""
    done = subprocess.run(
        ["taskset", "-c", target_cpus, sys.executable, "bench_gauge.py", "--json"],
        cwd=PROJECT_ROOT / "targets",
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"accuracy: targets/bench_gauge.py failed:\n{done.stderr}")
    figures = json.loads(done.stdout)
    extra_ns = figures["wsgi_on_ns"] - figures["wsgi_off_ns"]
    cores = len(parse_cpus(target_cpus))
    print(
        f"   model: +{extra_ns:.0f} ns per /hello WSGI call (bench_gauge.py on CPU {target_cpus})"
        " at the rate served, plus sampling"
    )
    for name, rps, sampling in models:
        share = extra_ns * rps / (cores * 1e9) + sampling
        print(f"   {name:<9}expected on/off {1 - share:.3f}")


def _period_pairs(loadgen: dict[str, Any]) -> list[tuple[int, int]]:
    """(requests while counting, requests in the paused period right after), in the window."""
    step = loadgen["steps"][0]
    counts = {
        int(b["t"]): int(b["requests"])
        for b in loadgen["buckets"]
        if step["measure_start"] <= b["t"] < step["measure_end"]
    }
    pairs = []
    for start in counts:
        seconds = [start + i for i in range(2 * ALTERNATE_S)]
        if start % (2 * ALTERNATE_S) == 0 and all(t in counts for t in seconds):
            on = sum(counts[t] for t in seconds[:ALTERNATE_S])
            pairs.append((on, sum(counts[t] for t in seconds[ALTERNATE_S:])))
    return pairs


def _sampling_share(cell: Path) -> float:
    """The launcher's CPU (gauge sampling) over the time it ran, from its own log line."""
    found = re.search(
        r"sampling the gauge took ([0-9.]+) s of CPU", (cell / "target.log").read_text()
    )
    if not found:
        return float("nan")
    status = json.loads((cell / CELL_JSON).read_text())
    return float(found.group(1)) / float(status["ended"] - status["started"])


def loadgen_headroom(setup: Setup) -> None:
    base, directory, runner = setup.base, setup.directory, setup.runner
    config = bench_config(
        base,
        directory,
        load={"users": [64], "warmup": "3s", "measure": "10s"},
        targets={"gthread": FASTEST},
        workloads={"noop": {"io_ms": 0}},
    )
    rows = _rows(run_bench(config, runner))
    row = rows[0]
    rps = float(row["rps"])
    target_cpu = float(row["target_cpu_pct"]) / 100
    load_cpu = float(row["loadgen_cpu_pct"]) / 100
    print("3. load-generator headroom: /hello on gthread 2x4 (the fastest target), 64 users")
    print(f"   measured {rps:.0f} req/s; CPU used: target {target_cpu:.0%}, load {load_cpu:.0%}")
    print(f"   ceilings: target ~{rps / target_cpu:.0f} req/s, Locust ~{rps / load_cpu:.0f} req/s")
    print(
        f"   headroom ratio (Locust ceiling / target ceiling): {target_cpu / load_cpu:.2f} "
        "(above 1: Locust outruns the target)"
    )


def harness_overhead(setup: Setup) -> None:
    """The user's own `--quick` run, timed from the command to its report: what a cell costs
    beyond its steps (from one cell's first step to the next one's), and the whole run's wall
    time against its steps' time."""
    runner = setup.runner
    began = time.monotonic()
    run_dir = run_bench(setup.config, runner, "--quick")
    wall = time.monotonic() - began
    meta = json.loads((run_dir / META_JSON).read_text())
    stairs = meta["staircase"]
    steps_s = len(stairs["users"]) * (stairs["warmup_s"] + stairs["measure_s"])
    order = [cell for trial in meta["trials"]["order"] for cell in trial]
    starts = [_first_step(run_dir / RAW_DIR / cell) for cell in order]
    gaps = [b - a - steps_s for a, b in itertools.pairwise(starts)]
    print(
        f"4. harness time, {runner} runner: `flaskbench run --quick` ({len(order)} cells of "
        f"{len(stairs['users'])} steps, {steps_s} s of steps each)"
    )
    print(
        f"   between cells (a cell's first step to the next one's, less its steps): median "
        f"{statistics.median(gaps):.2f} s, mean {statistics.fmean(gaps):.2f} s, highest "
        f"{max(gaps):.2f} s (aim: at most 1.5 s)"
    )
    print(
        f"   the run, command to report: {wall:.0f} s for {len(order) * steps_s} s of steps: "
        f"{wall / (len(order) * steps_s):.2f}x (aim: at most 1.15x)"
    )


def _first_step(cell: Path) -> float:
    return float(json.loads((cell / LOADGEN_JSON).read_text())["steps"][0]["start"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flaskbench.selfcheck.accuracy", description=__doc__
    )
    parser.add_argument("--config", type=Path, default=Path("bench.toml"))
    parser.add_argument("--runner", default="auto", choices=("auto", "docker", "local"))
    parser.add_argument("--only", choices=list(FIGURES), help="print one figure only")
    args = parser.parse_args(argv)
    base = tomllib.loads(args.config.read_text())
    with tempfile.TemporaryDirectory(prefix="flaskbench-accuracy-") as tmp:
        setup = Setup(args.config, base, Path(tmp), args.runner)
        for name, figure in FIGURES.items():
            if args.only in (None, name):
                figure(setup)
    return 0


FIGURES = {
    "io": io_ceilings,
    "gauge": gauge_overhead,
    "headroom": loadgen_headroom,
    "harness": harness_overhead,
}


if __name__ == "__main__":
    sys.exit(main())
