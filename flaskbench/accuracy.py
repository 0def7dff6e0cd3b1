"""`make accuracy`: how far flaskbench's own numbers can be trusted on this machine.

Three figures, each a ratio measured in one run of the real command:
1. measured / expected throughput on /io?ms=100 at and above saturation, for worker models
   whose ceiling is known exactly (sync 2 workers, gthread 2x4, gevent 1 worker, dev-single);
2. the in-process gauge's cost: /hello throughput with the gauge on / off, alternated;
3. load-generator headroom: what Locust could produce against the fastest target, over what
   that target could serve, each extrapolated from its CPU use at the same moment.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flaskbench.meta import PROJECT_ROOT

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
GAUGE_ROUNDS = 5


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _config(base: dict[str, Any], directory: Path, **sections: dict[str, Any]) -> Path:
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


def _run(config: Path, runner: str) -> list[dict[str, str]]:
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
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode not in (0, 1) or not lines:
        sys.exit(f"accuracy: flaskbench run failed ({done.returncode}):\n{done.stderr}")
    with (Path(lines[-1]) / "summary.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def io_ceilings(base: dict[str, Any], directory: Path, runner: str) -> None:
    users = sorted({u for _, steps in IO_TARGETS.values() for u in steps})
    rows = _run(
        _config(
            base,
            directory,
            load={"users": users, "warmup": "3s", "measure": "10s"},
            targets={name: settings for name, (settings, _) in IO_TARGETS.items()},
            workloads={"io": {"io_ms": 100}},
        ),
        runner,
    )
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


def gauge_overhead(base: dict[str, Any], directory: Path, runner: str) -> None:
    """Alternating on and off cancels slow drift of the machine; medians are printed.

    Throughput at saturation is what must not drop; the target's CPU time per request says the
    same with less noise, since it does not depend on how the load side was scheduled.
    """
    runs: dict[bool, list[dict[str, str]]] = {True: [], False: []}
    for _ in range(GAUGE_ROUNDS):
        for gauge in (True, False):
            run = {**base.get("run", {}), "gauge": gauge}
            rows = _run(
                _config(
                    {**base, "run": run},
                    directory,
                    load={"users": [16], "warmup": "3s", "measure": "10s"},
                    targets={"gthread": FASTEST},
                    workloads={"noop": {"io_ms": 0}},
                ),
                runner,
            )
            runs[gauge].append(rows[0])
    rps = {g: [float(r["rps"]) for r in rows] for g, rows in runs.items()}
    cpu_us = {g: [_cpu_us_per_request(r) for r in rows] for g, rows in runs.items()}
    rps_ratio = statistics.median(on / off for on, off in zip(rps[True], rps[False], strict=True))
    cpu_ratio = statistics.median(
        off / on for on, off in zip(cpu_us[True], cpu_us[False], strict=True)
    )
    print("2. gauge overhead: /hello on gthread 2x4, 16 users, gauge on vs off, alternated")
    print(f"   req/s on:  {_list(rps[True], '.0f')}   off: {_list(rps[False], '.0f')}")
    print(f"   target CPU us/request on: {_list(cpu_us[True], '.0f')}")
    print(f"                         off: {_list(cpu_us[False], '.0f')}")
    print(f"   median throughput ratio on/off: {rps_ratio:.3f}")
    print(
        f"   median CPU-per-request ratio off/on: {cpu_ratio:.3f} (1.000 = free; required >= 0.98)"
    )


def _cpu_us_per_request(row: dict[str, str]) -> float:
    busy_s = float(row["target_cpu_pct"]) / 100 * float(row["duration_s"])
    return 1e6 * busy_s / float(row["requests"])


def _list(values: list[float], spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def loadgen_headroom(base: dict[str, Any], directory: Path, runner: str) -> None:
    rows = _run(
        _config(
            base,
            directory,
            load={"users": [64], "warmup": "3s", "measure": "10s"},
            targets={"gthread": FASTEST},
            workloads={"noop": {"io_ms": 0}},
        ),
        runner,
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flaskbench.accuracy", description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("bench.toml"))
    parser.add_argument("--runner", default="auto", choices=("auto", "docker", "local"))
    parser.add_argument("--only", choices=list(FIGURES), help="print one figure only")
    args = parser.parse_args(argv)
    base = tomllib.loads(args.config.read_text())
    with tempfile.TemporaryDirectory(prefix="flaskbench-accuracy-") as tmp:
        for name, figure in FIGURES.items():
            if args.only in (None, name):
                figure(base, Path(tmp), args.runner)
    return 0


FIGURES = {"io": io_ceilings, "gauge": gauge_overhead, "headroom": loadgen_headroom}


if __name__ == "__main__":
    sys.exit(main())
