"""Read one cell's raw files into per-step measurements over exactly each measured window.

The formats are described in docs/raw-data.md. Anything unreadable raises RawDataError naming
the file, so one damaged cell is reported instead of silently skewing the summary.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from flaskbench.config.units import parse_cpus
from flaskbench.config.workloads import Workload, workload_from_meta
from flaskbench.measure.offered import Offered, OpenLoopDataError, offered_steps
from flaskbench.measure.service_use import ServiceSample, ServiceUse, parse_samples, service_use
from flaskbench.measure.stats import Histogram, Window
from flaskbench.proxies.reverse_proxy import proxy_from_record
from flaskbench.results.contract import (
    APP_ERROR,
    CELL_HOSTS_JSON,
    GAUGE_CSV,
    HOST_CPU_CSV,
    LOADGEN_JSON,
    LOCUST_CSV_PREFIX,
    MEMORY_CSV,
    PROXY_RESOURCE,
    RESOURCES_CSV,
    SERVICES_JSON,
    ContractError,
    LoadgenJson,
    MetaJson,
    TargetRecord,
    read_hosts,
    read_loadgen,
    read_services,
)
from flaskbench.results.rundir import CellStatus, RunDir, RunDirError
from flaskbench.servers.server import Target

GAUGE_INTERVAL_S = 0.1
_Row = TypeVar("_Row")
# A sample stamped up to this late still counts for the interval it closes.
_SLACK_S = 0.05


class RawDataError(Exception):
    """A raw file is missing or damaged; the message names it."""


@dataclass(frozen=True)
class HostUse:
    """CPU (percent of one core, summed over the host's containers of the cell, mean over the
    window) and memory (their summed RSS, the window's peak) of one host."""

    host: str
    sides: tuple[str, ...]
    cpu_pct: float
    rss_mb: float


@dataclass(frozen=True)
class StepData:
    index: int
    # What the staircase climbs: users, or an open loop's offered requests per second (then
    # `offered` holds the rest).
    users: int
    measure_start: float
    measure_end: float
    requests: int
    failures: int
    # Requests the server accepted and lost when a worker process died holding them.
    lost_requests: int | None
    latency: Histogram
    first_half_requests: int
    second_half_requests: int
    peak_inflight_process: int | None
    peak_inflight_server: int | None
    mean_inflight_server: float | None
    served_by_process: dict[int, int]
    target_cpu_pct: float | None
    # The whole server's memory (summed PSS of its processes where readable, else the RSS the
    # sampler saw) and its largest process's, at their highest in the window.
    target_rss_mb: float | None
    worker_rss_mb: float | None
    # The whole load side's CPU as percent of the CPUs it was given, and its busiest process.
    loadgen_cpu_pct: float | None
    loadgen_process_cpu_max_pct: float | None
    # Every whole second of the window, for the bootstrap intervals.
    window: Window
    # Percent of each side's CPU time stolen by the hypervisor (host_cpu.csv; None: not recorded).
    target_steal_pct: float | None
    load_steal_pct: float | None
    # Percent of each side's CPU time used by other processes: the time processes ran on its
    # CPUs (host_cpu.csv) less its own processes and the orchestrator.
    target_others_pct: float | None
    load_others_pct: float | None
    # What each host's containers used in the window (one entry per host that has samples).
    hosts: tuple[HostUse, ...] = ()
    # What each service beside the target did in the window (with [services]).
    services: tuple[ServiceUse, ...] = ()
    # Behind a proxy: its CPU (percent of one core) and memory (RSS, the window's peak), on the
    # target side but not in target_cpu_pct and target_rss_mb, which are the server's.
    proxy_cpu_pct: float | None = None
    proxy_rss_mb: float | None = None
    # An open loop's step: what it offered and what the load generator could not do.
    offered: Offered | None = None

    @property
    def duration_s(self) -> float:
        return self.measure_end - self.measure_start


@dataclass(frozen=True)
class SkippedStep:
    """A step the staircase did not climb to: the target was saturated before it."""

    index: int
    users: int
    reason: str


@dataclass(frozen=True)
class LocustProblem:
    kind: str  # "failure" or "exception"
    count: int
    where: str
    message: str


@dataclass(frozen=True)
class CellData:
    cell_id: str
    status: CellStatus
    steps: tuple[StepData, ...]
    # Locust's own count over the whole run (warmups included), to cross-check ours.
    locust_requests: int | None
    bucket_requests: int
    problems: tuple[LocustProblem, ...]
    cpu_warning_nodes: tuple[str, ...]
    workers: int
    # How a user class of the user's own waits between tasks (None: it does not).
    wait_time: str | None = None
    skipped: tuple[SkippedStep, ...] = ()


@dataclass(frozen=True)
class _Bucket:
    t: int
    requests: int
    failures: int
    latency: dict[float, int]


@dataclass(frozen=True)
class _GaugeRow:
    t: float
    pid: int
    inflight: int
    peak: int
    served: int
    lost: int


@dataclass(frozen=True)
class _MemoryRow:
    t: float
    pid: int
    pss_mb: float


@dataclass(frozen=True)
class _ResourceRow:
    t: float
    side: str
    name: str
    cpu_pct: float
    rss_mb: float
    host: str = "local"


@dataclass(frozen=True)
class _HostCpuRow:
    t: float
    side: str
    cpus: str
    busy_pct: float
    steal_pct: float
    flaskbench_pct: float


def read_cell(
    cell_dir: Path, status: CellStatus, load_cpus: int, services_share: int = 0
) -> CellData:
    """`services_share`: the target's cores when the services ran on the target's CPUs (their
    CPU time is then the target side's own, not another process's), else 0."""
    loadgen = _read_loadgen(cell_dir / LOADGEN_JSON)
    windows = _windows(loadgen, cell_dir / LOADGEN_JSON)
    try:
        offered = offered_steps(loadgen, cell_dir / LOADGEN_JSON)
    except OpenLoopDataError as exc:
        raise RawDataError(f"{exc}; re-run the cell with --resume") from None
    buckets = _buckets(loadgen, cell_dir / LOADGEN_JSON)
    gauge = _on_master_clock(_read_gauge(cell_dir / GAUGE_CSV), cell_dir / CELL_HOSTS_JSON)
    resources = _read_resources(cell_dir / RESOURCES_CSV)
    memory = _read_memory(cell_dir / MEMORY_CSV)
    host_cpu = _read_host_cpu(cell_dir / HOST_CPU_CSV)
    services = _read_services(cell_dir)
    steps = tuple(
        _with_services(
            replace(
                _step(
                    index, users, start, end, buckets, gauge, resources, memory, load_cpus, host_cpu
                ),
                offered=offered.get(index),
            ),
            services,
            services_share,
        )
        for index, users, start, end in windows
    )
    return CellData(
        cell_id=status.cell_id,
        status=status,
        steps=steps,
        locust_requests=_locust_total(cell_dir / f"{LOCUST_CSV_PREFIX}_stats.csv"),
        bucket_requests=sum(b.requests for b in buckets),
        problems=tuple(_locust_problems(cell_dir)),
        cpu_warning_nodes=tuple(str(n) for n in loadgen.get("cpu_warnings", [])),
        workers=int(loadgen.get("workers", 0)),
        wait_time=workload["wait_time"] if (workload := loadgen.get("workload")) else None,
        skipped=_skipped(loadgen, cell_dir / LOADGEN_JSON),
    )


def _skipped(loadgen: LoadgenJson, path: Path) -> tuple[SkippedStep, ...]:
    try:
        return tuple(
            SkippedStep(int(s["index"]), int(s["users"]), str(s["reason"]))
            for s in loadgen.get("skipped", [])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RawDataError(f"{path}: damaged list of skipped steps ({exc!r})") from None


def _read_loadgen(path: Path) -> LoadgenJson:
    if not path.is_file():
        raise RawDataError(f"{path}: missing; the cell did not finish")
    try:
        return read_loadgen(path)
    except ContractError as exc:
        raise RawDataError(f"{exc}; re-run the cell with --resume") from None


def _windows(loadgen: LoadgenJson, path: Path) -> list[tuple[int, int, float, float]]:
    try:
        # An open loop's steps climb its offered rates (their users are its schedulers).
        return [
            (
                int(s["index"]),
                int(s.get("rate", s["users"])),
                float(s["measure_start"]),
                float(s["measure_end"]),
            )
            for s in loadgen["steps"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise RawDataError(f"{path}: damaged step list ({exc!r})") from None


def _buckets(loadgen: LoadgenJson, path: Path) -> list[_Bucket]:
    try:
        return [
            _Bucket(
                int(b["t"]),
                int(b["requests"]),
                int(b["failures"]),
                {float(k): int(v) for k, v in b["latency_ms"].items()},
            )
            for b in loadgen["buckets"]
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RawDataError(f"{path}: damaged request buckets ({exc!r})") from None


def _csv_rows(path: Path, columns: Sequence[str], required: bool) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
                raise RawDataError(
                    f"{path}: expected the columns {', '.join(columns)}; "
                    "the file is damaged, re-run the cell with --resume"
                )
            return list(reader)
    except FileNotFoundError:
        if required:
            raise RawDataError(f"{path}: missing; the cell did not finish") from None
        return []
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise RawDataError(f"{path}: cannot read ({exc})") from None


def _parse_rows(
    path: Path, rows: Iterable[dict[str, str]], build: type[_Row], fields: dict[str, type]
) -> list[_Row]:
    parsed = []
    for number, row in enumerate(rows, start=2):
        try:
            parsed.append(build(**{name: kind(row[name]) for name, kind in fields.items()}))
        except (TypeError, ValueError) as exc:
            raise RawDataError(
                f"{path}:{number}: unreadable row ({exc}); the file is damaged, "
                "re-run the cell with --resume"
            ) from None
    return parsed


_GAUGE_FIELDS: dict[str, type] = {
    "t": float,
    "pid": int,
    "inflight": int,
    "peak": int,
    "served": int,
    "lost": int,
}
_RESOURCE_FIELDS: dict[str, type] = {
    "t": float,
    "side": str,
    "name": str,
    "cpu_pct": float,
    "rss_mb": float,
}


def _read_gauge(path: Path) -> list[_GaugeRow]:
    rows = _csv_rows(path, list(_GAUGE_FIELDS), required=False)
    return _parse_rows(path, rows, _GaugeRow, _GAUGE_FIELDS)


_MEMORY_FIELDS: dict[str, type] = {"t": float, "pid": int, "pss_mb": float}


def _read_memory(path: Path) -> list[_MemoryRow]:
    rows = _csv_rows(path, list(_MEMORY_FIELDS), required=False)
    return _parse_rows(path, rows, _MemoryRow, _MEMORY_FIELDS)


_HOST_CPU_FIELDS: dict[str, type] = {
    "t": float,
    "side": str,
    "cpus": str,
    "busy_pct": float,
    "steal_pct": float,
    "flaskbench_pct": float,
}


def _read_resources(path: Path) -> list[_ResourceRow]:
    rows = _csv_rows(path, list(_RESOURCE_FIELDS), required=False)
    # Files of single-host runs before the host column have none: all of it was here.
    fields = _RESOURCE_FIELDS | ({"host": str} if rows and "host" in rows[0] else {})
    return _parse_rows(path, rows, _ResourceRow, fields)


def _on_master_clock(gauge: list[_GaugeRow], hosts_json: Path) -> list[_GaugeRow]:
    """The gauge's times on the master's clock, which defines the windows."""
    shift = _target_to_master_s(hosts_json)
    if not shift:
        return gauge
    return [replace(row, t=row.t + shift) for row in gauge]


def _target_to_master_s(hosts_json: Path) -> float:
    """How far the target host's clock is behind the master's: it may run its clock off the
    master's (hosts.json says by how much; no file: one host)."""
    if not hosts_json.is_file():
        return 0.0
    try:
        return float(read_hosts(hosts_json)["clock"]["target_to_master_s"])
    except (ContractError, KeyError, TypeError, ValueError) as exc:
        raise RawDataError(
            f"{hosts_json}: damaged ({exc!r}); re-run the cell with --resume"
        ) from None


_SERVICE_COLUMNS = ["t", "open", "busy", "active", "cpu_pct", "pss_mb"]


def _read_services(cell_dir: Path) -> dict[str, tuple[str, list[ServiceSample]]]:
    """Each service's kind and samples (on the master's clock: they were taken on the
    target's host), by name; none without services.json."""
    path = cell_dir / SERVICES_JSON
    if not path.is_file():
        return {}
    try:
        listed = read_services(path)["services"]
        files = {name: (str(s["kind"]), cell_dir / str(s["samples"])) for name, s in listed.items()}
    except (ContractError, KeyError, TypeError) as exc:
        raise RawDataError(f"{path}: damaged ({exc!r}); re-run the cell with --resume") from None
    shift = _target_to_master_s(cell_dir / CELL_HOSTS_JSON)
    found = {}
    for name, (kind, csv_path) in files.items():
        try:
            samples = parse_samples(_csv_rows(csv_path, _SERVICE_COLUMNS, required=False))
        except ValueError as exc:
            raise RawDataError(f"{csv_path}: {exc}; re-run the cell with --resume") from None
        found[name] = (kind, [replace(s, t=s.t + shift) for s in samples] if shift else samples)
    return found


def _with_services(
    step: StepData, services: dict[str, tuple[str, list[ServiceSample]]], share: int
) -> StepData:
    """The step with its services' use; where they shared the target's CPUs, their CPU time
    is no longer counted as other processes' there."""
    if not services:
        return step
    uses = tuple(
        service_use(name, kind, samples, step.measure_start, step.measure_end)
        for name, (kind, samples) in services.items()
    )
    others = step.target_others_pct
    cpu = sum(u.cpu_pct for u in uses if u.cpu_pct is not None)
    if share and others is not None:
        others = max(0.0, others - cpu / share)
    return replace(step, services=uses, target_others_pct=others)


def _read_host_cpu(path: Path) -> list[_HostCpuRow]:
    rows = _csv_rows(path, list(_HOST_CPU_FIELDS), required=False)
    return _parse_rows(path, rows, _HostCpuRow, _HOST_CPU_FIELDS)


def _step(
    index: int,
    users: int,
    start: float,
    end: float,
    buckets: list[_Bucket],
    gauge: list[_GaugeRow],
    resources: list[_ResourceRow],
    memory: list[_MemoryRow],
    load_cpus: int,
    host_cpu: list[_HostCpuRow],
) -> StepData:
    inside = [b for b in buckets if start <= b.t and b.t + 1 <= end]
    middle = (start + end) / 2
    gauge_in = [r for r in gauge if start + GAUGE_INTERVAL_S - _SLACK_S <= r.t <= end + _SLACK_S]
    server = [r for r in gauge_in if r.pid == 0]
    processes = [r for r in gauge_in if r.pid != 0]
    side_rows = [r for r in resources if r.side == "target" and _in_window(r.t, start, end)]
    target_rows = [r for r in side_rows if r.name != PROXY_RESOURCE]
    proxy_rows = [r for r in side_rows if r.name == PROXY_RESOURCE]
    load_cpu = _load_cpu(resources, start, end)
    memory_in = [r for r in memory if _in_window(r.t, start, end)]
    per_sample: dict[float, float] = defaultdict(float)
    for row in memory_in:
        per_sample[row.t] += row.pss_mb
    server_memory = max(per_sample.values(), default=None)
    return StepData(
        index=index,
        users=users,
        measure_start=start,
        measure_end=end,
        requests=sum(b.requests for b in inside),
        failures=sum(b.failures for b in inside),
        lost_requests=_lost(server, gauge, start, end),
        latency=Histogram.merge(b.latency for b in inside),
        first_half_requests=sum(b.requests for b in inside if b.t + 1 <= middle),
        second_half_requests=sum(b.requests for b in inside if b.t >= middle),
        peak_inflight_process=max((r.peak for r in processes), default=None),
        peak_inflight_server=max((r.peak for r in server), default=None),
        mean_inflight_server=statistics.fmean(r.inflight for r in server) if server else None,
        served_by_process=_served(gauge, start, end),
        target_cpu_pct=_mean_by_time(target_rows, lambda r: r.cpu_pct),
        target_rss_mb=server_memory or max((r.rss_mb for r in target_rows), default=None),
        worker_rss_mb=max((r.pss_mb for r in memory_in), default=None),
        loadgen_cpu_pct=load_cpu[0] / load_cpus if load_cpu[0] is not None else None,
        loadgen_process_cpu_max_pct=load_cpu[1],
        window=_window(inside, start, end),
        target_steal_pct=_steal(host_cpu, "target", start, end),
        load_steal_pct=_steal(host_cpu, "load", start, end),
        target_others_pct=_others(host_cpu, resources, "target", start, end),
        load_others_pct=_others(host_cpu, resources, "load", start, end),
        hosts=_host_use(resources, start, end),
        proxy_cpu_pct=_mean_by_time(proxy_rows, lambda r: r.cpu_pct),
        proxy_rss_mb=max((r.rss_mb for r in proxy_rows), default=None),
    )


def _host_use(resources: list[_ResourceRow], start: float, end: float) -> tuple[HostUse, ...]:
    rows = [r for r in resources if _in_window(r.t, start, end)]
    by_host: dict[str, list[_ResourceRow]] = defaultdict(list)
    for row in rows:
        by_host[row.host].append(row)
    used = []
    for host, host_rows in by_host.items():
        cpu = _mean_by_time(host_rows, lambda r: r.cpu_pct)
        rss: dict[int, float] = defaultdict(float)
        for row in host_rows:
            rss[int(row.t)] += row.rss_mb
        sides = tuple(sorted({r.side for r in host_rows}))
        used.append(HostUse(host, sides, cpu or 0.0, max(rss.values())))
    return tuple(used)


def _window(inside: list[_Bucket], start: float, end: float) -> Window:
    """One entry per whole second of the window; a second without completions counts as 0."""
    by_second = {b.t: b for b in inside}
    seconds = range(math.ceil(start), math.floor(end))
    return Window(
        tuple(by_second[t].requests if t in by_second else 0 for t in seconds),
        tuple(Histogram(by_second[t].latency if t in by_second else {}) for t in seconds),
    )


def _steal(rows: list[_HostCpuRow], side: str, start: float, end: float) -> float | None:
    values = [r.steal_pct for r in rows if r.side == side and _in_window(r.t, start, end)]
    return statistics.fmean(values) if values else None


# host_cpu.csv names the load side "load", resources.csv "loadgen".
_RESOURCE_SIDE = {"target": "target", "load": "loadgen"}


def _others(
    host: list[_HostCpuRow], resources: list[_ResourceRow], side: str, start: float, end: float
) -> float | None:
    """The side's CPUs' busy time that neither its own processes nor the orchestrator used, as
    percent of them. Both are means over the window: the two samplers tick at different
    moments."""
    rows = [r for r in host if r.side == side and _in_window(r.t, start, end)]
    own = [r for r in resources if r.side == _RESOURCE_SIDE[side] and _in_window(r.t, start, end)]
    own_pct = _mean_by_time(own, lambda r: r.cpu_pct)
    if not rows or own_pct is None:
        return None
    try:
        cpus = len(parse_cpus(rows[0].cpus))
    except ValueError:
        return None
    busy = statistics.fmean(r.busy_pct - r.flaskbench_pct for r in rows)
    return max(0.0, busy - own_pct / cpus)


def _lost(
    server_in_window: list[_GaugeRow], gauge: list[_GaugeRow], start: float, end: float
) -> int | None:
    """The server row's cumulative lost count across the window."""
    if not server_in_window:
        return None
    before = [r.lost for r in gauge if r.pid == 0 and r.t <= start + _SLACK_S]
    return server_in_window[-1].lost - (before[-1] if before else 0)


def _served(gauge: list[_GaugeRow], start: float, end: float) -> dict[int, int]:
    """Requests each process completed inside the window, from its cumulative counter."""
    before: dict[int, int] = {}
    at_end: dict[int, int] = {}
    for row in gauge:
        if row.pid == 0:
            continue
        if row.t <= start + _SLACK_S:
            before[row.pid] = row.served
        elif row.t <= end + _SLACK_S:
            at_end[row.pid] = row.served
    return {
        pid: served - before.get(pid, 0)
        for pid, served in at_end.items()
        if served > before.get(pid, 0)
    }


def _in_window(t: float, start: float, end: float) -> bool:
    """Resource samples cover the second before their time stamp."""
    return start + 0.5 <= t <= end + 0.5


def _mean_by_time(rows: Sequence[_ResourceRow], value: Any) -> float | None:
    # Several containers of one side are sampled at slightly different times: sum per second.
    per_second: dict[int, float] = defaultdict(float)
    for row in rows:
        per_second[int(row.t)] += value(row)
    return statistics.fmean(per_second.values()) if per_second else None


def _load_cpu(
    resources: list[_ResourceRow], start: float, end: float
) -> tuple[float | None, float | None]:
    rows = [r for r in resources if r.side == "loadgen" and _in_window(r.t, start, end)]
    if not rows:
        return None, None
    by_name: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_name[row.name].append(row.cpu_pct)
    total = _mean_by_time(rows, lambda r: r.cpu_pct)
    return total, max(statistics.fmean(values) for values in by_name.values())


def _locust_total(path: Path) -> int | None:
    for row in _csv_rows(path, ["Name", "Request Count"], required=False):
        if row["Name"] == "Aggregated":
            try:
                return int(row["Request Count"])
            except ValueError:
                raise RawDataError(f"{path}: unreadable Aggregated request count") from None
    return None


def _locust_problems(cell_dir: Path) -> Iterable[LocustProblem]:
    failures = cell_dir / f"{LOCUST_CSV_PREFIX}_failures.csv"
    for row in _csv_rows(failures, ["Method", "Name", "Error", "Occurrences"], required=False):
        yield LocustProblem(
            "failure",
            _int(failures, row["Occurrences"]),
            f"{row['Method']} {row['Name']}",
            row["Error"],
        )
    exceptions = cell_dir / f"{LOCUST_CSV_PREFIX}_exceptions.csv"
    for row in _csv_rows(exceptions, ["Count", "Message", "Nodes"], required=False):
        yield LocustProblem(
            "exception", _int(exceptions, row["Count"]), row["Nodes"], row["Message"]
        )


def _int(path: Path, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RawDataError(f"{path}: {text!r} is not a count; the file is damaged") from None


@dataclass(frozen=True)
class RunData:
    run_id: str
    meta: MetaJson
    targets: dict[str, Target]
    workloads: dict[str, Workload]
    target_cores: int
    load_cores: int
    cells: tuple[CellData, ...]
    statuses: dict[str, CellStatus]
    # Cells whose raw files could not be read: cell id -> the problem, naming the file.
    unreadable: dict[str, str]
    # Cells the plan had that never finished (interrupted runs).
    missing: tuple[str, ...]
    # Cells whose app raised while serving: cell id -> the first traceback.
    app_errors: dict[str, str] = field(default_factory=dict)


def target_from_record(spec: TargetRecord) -> Target:
    """A target as meta.json recorded it (run.target_record); older runs lack what came later."""
    return Target(
        name=spec["name"],
        server=spec["server"],
        worker_class=spec["worker_class"],
        workers=spec["workers"],
        threads=spec["threads"],
        settings=spec.get("settings", {}),
        expressions=spec.get("expressions", {}),
        sweep=spec.get("sweep"),
        proxy=proxy_from_record(spec.get("proxy")),
    )


def load_run(run: RunDir) -> RunData:
    meta = run.read_meta()
    try:
        targets = {name: target_from_record(spec) for name, spec in meta["targets"].items()}
        workloads = {name: workload_from_meta(spec) for name, spec in meta["workloads"].items()}
        cpus = meta["cpus"]
        target_cores = int(cpus.get("target_cores") or len(parse_cpus(cpus["target"])))
        load_cores = int(cpus.get("load_cores") or len(parse_cpus(cpus["load"])))
        planned = [str(c) for c in meta["cells"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise RunDirError(f"{run.meta_path}: damaged ({exc!r}); cannot tell what was run") from None
    statuses = run.statuses()
    cells = []
    unreadable = {}
    # The services' CPU time is the target side's own where they shared its CPUs.
    share = target_cores if cpus.get("services", cpus["target"]) == cpus["target"] else 0
    for cell_id, status in statuses.items():
        if status.status == "failed":
            continue
        try:
            cells.append(read_cell(run.cell_dir(cell_id), status, load_cores, share))
        except RawDataError as exc:
            unreadable[cell_id] = str(exc)
    return RunData(
        run_id=run.run_id,
        meta=meta,
        targets=targets,
        workloads=workloads,
        target_cores=target_cores,
        load_cores=load_cores,
        cells=tuple(cells),
        statuses=statuses,
        unreadable=unreadable,
        missing=tuple(c for c in planned if c not in statuses),
        app_errors={
            cell_id: path.read_text(errors="replace")
            for cell_id in statuses
            if (path := run.cell_dir(cell_id) / APP_ERROR).is_file()
        },
    )
