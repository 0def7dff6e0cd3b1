"""Synthetic run directories in the raw format of docs/raw-data.md, for the analysis tests."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flaskbench.config.load import load_config
from flaskbench.measure.analyze import Point
from flaskbench.results.rundir import CellStatus, RunDir

PROJECT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000
WARMUP = 2
MEASURE = 4


@dataclass
class Step:
    users: int
    rps: int
    latency_ms: float
    failures: int = 0
    # (pid, peak in flight, requests served per second) per server process.
    processes: list[tuple[int, int, int]] = field(default_factory=lambda: [(101, 1, 0)])
    target_cpu: float = 50.0
    loadgen_cpu: float = 30.0
    # Requests per second in the second half of the window, relative to the first.
    second_half: float = 1.0
    # Requests a dying worker took with it, seen at the end of the window.
    lost: int = 0
    # Requests per second go rps - jitter, + jitter, + jitter, - jitter, ...: noise for the
    # intervals that neither ramps nor cancels out within a block of two seconds.
    jitter: int = 0
    # What /proc/stat showed for each side's CPUs (host_cpu.csv): busy and steal percent;
    # None writes no host rows for the step.
    host_busy: float | None = None
    steal: float = 0.0
    # What the orchestrator itself used of the load side's CPUs (host_cpu.csv's load rows
    # show host_busy, the target's rows host_busy less this: the orchestrator is not there).
    orchestrator: float = 0.0


def make_run(
    path: Path,
    cells: dict[str, list[Step]],
    status: str = "ok",
    cpu_warnings: list[str] | None = None,
    meta: dict[str, object] | None = None,
) -> RunDir:
    config = load_config(PROJECT / "bench.toml")
    run = RunDir(path)
    run.raw.mkdir(parents=True)
    run.write_meta(
        {
            "run_id": path.name,
            "targets": {t.name: asdict(t) for t in config.targets},
            "workloads": {w.name: asdict(w) | {"path": w.path} for w in config.workloads},
            "cpus": {"target": "0", "load": "1"},
            "cells": list(cells),
            "staircase": {"warmup_s": WARMUP, "measure_s": MEASURE},
            "machine": {"cpu_model": "Test CPU", "cpu_count": 2},
            "runner": {"name": "local"},
            "started": "2026-01-01T00:00:00+00:00",
            **(meta or {}),
        }
    )
    for cell_id, steps in cells.items():
        cell_dir = run.cell_dir(cell_id)
        cell_dir.mkdir()
        write_cell(cell_dir, steps, cpu_warnings or [])
        run.write_cell_status(CellStatus(cell_id, status, "", T0, T0 + 100))
    return run


def write_cell(cell_dir: Path, steps: list[Step], cpu_warnings: list[str]) -> None:
    windows = []
    buckets = []
    gauge = [("t", "pid", "inflight", "peak", "served", "lost")]
    resources = [("t", "side", "name", "cpu_pct", "rss_mb")]
    host = [("t", "side", "cpus", "busy_pct", "steal_pct", "flaskbench_pct")]
    served: dict[int, int] = {}
    for index, step in enumerate(steps):
        start = T0 + index * (WARMUP + MEASURE)
        measure_start = start + WARMUP
        windows.append(
            {
                "index": index,
                "users": step.users,
                "start": start,
                "measure_start": measure_start,
                "measure_end": measure_start + MEASURE,
            }
        )
        # Warmup traffic that must never be counted: ten times the rate, ten times slower.
        for second in range(start, measure_start):
            buckets.append(_bucket(second, step.rps * 10, 0, step.latency_ms * 10))
        for offset in range(MEASURE):
            rps = step.rps if offset < MEASURE / 2 else round(step.rps * step.second_half)
            rps += step.jitter if offset % 4 in (1, 2) else -step.jitter
            failures = step.failures // MEASURE
            buckets.append(_bucket(measure_start + offset, rps, failures, step.latency_ms))
        for tick in range(1, MEASURE * 10 + 1):
            t = measure_start + tick / 10
            total_peak = sum(peak for _, peak, _ in step.processes)
            for pid, peak, per_second in step.processes:
                served[pid] = served.get(pid, 0) + per_second // 10
                gauge.append((f"{t:.3f}", pid, peak, peak, served[pid], 0))
            lost = step.lost if tick == MEASURE * 10 else 0
            gauge.append((f"{t:.3f}", 0, total_peak, total_peak, sum(served.values()), lost))
        for second in range(measure_start + 1, measure_start + MEASURE + 1):
            resources.append((second, "target", "target", step.target_cpu, 60.0))
            resources.append((second, "loadgen", "locust-worker-1", step.loadgen_cpu, 80.0))
            if step.host_busy is not None:
                target_busy = step.host_busy - step.orchestrator
                host.append((second, "target", "0", target_busy, step.steal, 0.0))
                host.append((second, "load", "1", step.host_busy, step.steal, step.orchestrator))
    (cell_dir / "loadgen.json").write_text(
        json.dumps(
            {
                "format": 1,
                "bucket_s": 1,
                "steps": windows,
                "buckets": buckets,
                "loadgen_cpu": [],
                "cpu_warnings": cpu_warnings,
                "workers": 1,
            }
        )
    )
    _write_csv(cell_dir / "gauge.csv", gauge)
    _write_csv(cell_dir / "resources.csv", resources)
    if len(host) > 1:
        _write_csv(cell_dir / "host_cpu.csv", host)
    total = sum(b["requests"] for b in buckets)
    _write_csv(
        cell_dir / "locust_stats.csv",
        [("Type", "Name", "Request Count"), ("", "Aggregated", total)],
    )


def _bucket(t: int, requests: int, failures: int, latency_ms: float) -> dict[str, object]:
    return {
        "t": t,
        "requests": requests,
        "failures": failures,
        "latency_ms": {f"{latency_ms:.3g}": requests} if requests else {},
    }


def _write_csv(path: Path, rows: list[tuple[object, ...]]) -> None:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def make_point(**values: object) -> Point:
    """An aggregated step with plausible values; `values` overrides any field."""
    rps = float(values.get("rps", 20.0))  # type: ignore[arg-type]
    p99 = values.get("p99_ms", 100.0)
    fields: dict[str, object] = {
        "target": "sync",
        "workload": "io",
        "work_ms": 100,
        "users": 4,
        "repeats": 1,
        "rps": rps,
        "rps_min": rps,
        "rps_max": rps,
        "mean_ms": p99,
        "p50_ms": p99,
        "p99_ms": p99,
        "peak_inflight_process": 1,
        "peak_inflight_server": 1,
        "mean_inflight_server": 1,
        "expected_slots": 2,
        "expected_rps": 20,
        "rps_vs_expected": rps / 20,
        "limit": "slots",
        "target_cpu_pct": 10,
        "target_rss_mb": 50.0,
        "worker_rss_mb": 25.0,
        "loadgen_cpu_pct": 10,
        "worker_request_share_max": 0.5,
        "worker_processes": 2,
        "requests": int(rps * 10),
        "failures": 0,
        "lost_requests": 0,
        "flags": (),
    }
    return Point(**(fields | values))  # type: ignore[arg-type]
