"""Turn measured steps into summary rows, validity flags, medians over repeats and knees.

One row per target x workload x user step x repeat. A row is valid when nothing flagged it; the
flags say what makes a number untrustworthy, and the report explains each.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from flaskbench.config.workloads import Workload
from flaskbench.measure.collect import CellData, RunData, StepData
from flaskbench.measure.service_use import SERVICE_COLUMNS, service_columns
from flaskbench.measure.stats import (
    Interval,
    Replicates,
    percentile_interval,
    pooled_replicates,
    ramp_z,
    seed_for,
    trials_interval,
    window_replicates,
)
from flaskbench.measure.theory import (
    UNBOUNDED_USERS,
    Work,
    expect,
    expected_slots,
    modelled_work,
    open_loop_expectation,
    transfer_of,
    transfer_times,
)
from flaskbench.servers.server import Target

LOADGEN_CPU_LIMIT_PCT = 85.0
LITTLE_TOLERANCE = 0.10
RAMP_MIN_CHANGE = 0.10
RAMP_MIN_Z = 3.0
KNEE_SHARE_OF_PEAK = 0.95
P99_GROWTH = 2.0
# Steal and other processes change a step only as far as the side needed its CPUs: a side
# that mostly waits (for I/O, for the other side) is woken and run at once and barely loses
# anything, a saturated side loses about what was taken. A side's estimated loss is the share
# of its CPUs' runnable time taken (steal) or the share others used, times the side's own
# share of its CPUs; above 1% (half the default comparison threshold) the step is flagged.
# The load generator's loss is the target's only while the target waited for it (idle CPUs, a
# free slot): a saturated target, or one with requests queued for its slots, loses nothing.
# The rest is noise that varies between trials and widens their interval (measured by
# `make compare-check`: a CPU hog beside an I/O-bound side against a saturated one).
INTERFERENCE_LIMIT_PCT = 1.0

# Flag -> what it means, for the report.
FLAGS = {
    "loadgen_cpu": (
        f"the load generator used more than {LOADGEN_CPU_LIMIT_PCT:.0f}% of its CPU: the numbers "
        "may measure Locust, not Flask"
    ),
    "locust_cpu_warning": (
        "Locust itself warned that a load-generator process went above 90% CPU during this cell"
    ),
    "failures": "some requests failed (see the failures listed for the cell)",
    "lost_requests": (
        "a server process died holding requests: the server never answered them (the client "
        "may have retried them on another connection, hiding them from its failure count)"
    ),
    "littles_law": (
        f"users differ from throughput x mean latency by more than {LITTLE_TOLERANCE:.0%}: "
        "either time went somewhere outside the measured requests (usually the load generator), "
        "or requests were still queueing up (users far above the slots: use a longer warmup)"
    ),
    "ramping": (
        f"throughput changed by more than {RAMP_MIN_CHANGE:.0%} between the halves of the measured "
        "window: the step had not settled; use a longer warmup"
    ),
    "degraded": "the server lost a worker during this cell (see the cell's reason)",
    "steal": (
        "the hypervisor ran other guests while a side needed its CPUs (CPU steal in /proc/stat, "
        "as a share of the time its CPUs wanted to run, times the side's own use, above "
        f"{INTERFERENCE_LIMIT_PCT:.0f}%; the load generator's only as far as the target waited "
        "for it): this step measures less than the CPUs can do"
    ),
    "cpu_contention": (
        "other processes competed for the target's or the load generator's CPUs (their busy "
        "time in /proc/stat beyond the side's own processes and the harness (flaskbench, the "
        "container engine), times the side's own use, above "
        f"{INTERFERENCE_LIMIT_PCT:.0f}%): the machine was shared during this step"
    ),
    "no_requests": "no request completed inside the measured window",
    "late_sends": (
        "the open loop's load generator sent more than 1% of the step's requests late (10 ms or "
        "more after they were due) or not at all (its cap of requests in flight was reached): it "
        "measured itself, not the server"
    ),
}

SUMMARY_COLUMNS = (
    "run_id",
    "target",
    "server",
    "worker_class",
    "workers",
    "threads",
    "workload",
    "users",
    "repeat",
    "duration_s",
    "requests",
    "failures",
    "lost_requests",
    "rps",
    "rps_ci_low",
    "rps_ci_high",
    "mean_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "p99_ci_low",
    "p99_ci_high",
    "max_ms",
    "peak_inflight_process",
    "peak_inflight_server",
    "mean_inflight_server",
    "expected_slots",
    "expected_rps",
    "rps_vs_expected",
    "expected_basis",
    "limit",
    "target_cpu_pct",
    "target_rss_mb",
    "worker_rss_mb",
    "loadgen_cpu_pct",
    "loadgen_process_cpu_max_pct",
    "worker_request_share_max",
    "worker_processes",
    "target_steal_pct",
    "load_steal_pct",
    "target_others_pct",
    "load_others_pct",
    "step_status",
    "valid",
    "flags",
    "proxy",
    "proxy_cpu_pct",
    "proxy_rss_mb",
    "offered_rps",
    "scheduled",
    "late_sends",
    "dropped_sends",
    "unfinished",
    "unfinished_oldest_ms",
    "utilisation",
    "expected_mean_ms",
    "transfer_held_ms",
    # With [services] (empty without): measure/service_use.py.
    *SERVICE_COLUMNS,
    # Which version of its server the target ran with, and where it came from (a key of
    # results/contract.py's VERSION_SOURCES); empty for runs that did not record it.
    "server_version",
    "server_version_source",
)


@dataclass(frozen=True)
class Row:
    run_id: str
    target: str
    server: str
    worker_class: str
    workers: int
    threads: int | None
    workload: str
    # Time each request holds a slot by design: the workload's I/O plus CPU milliseconds (for
    # an app's own workloads, as measured at the lowest user step).
    work_ms: float | None
    users: int
    repeat: int
    duration_s: float
    requests: int
    failures: int
    lost_requests: int | None
    rps: float
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    peak_inflight_process: int | None
    peak_inflight_server: int | None
    mean_inflight_server: float | None
    expected_slots: int | None
    expected_rps: float | None
    rps_vs_expected: float | None
    # "model" (the built-in app's known work) or "measured" (derived from the lowest step).
    expected_basis: str | None
    limit: str | None
    target_cpu_pct: float | None
    target_rss_mb: float | None
    worker_rss_mb: float | None
    loadgen_cpu_pct: float | None
    loadgen_process_cpu_max_pct: float | None
    worker_request_share_max: float | None
    worker_processes: int
    flags: tuple[str, ...]
    # 95% bootstrap intervals over the window's seconds (see stats.window_replicates).
    rps_ci: Interval | None = None
    p99_ci: Interval | None = None
    target_steal_pct: float | None = None
    load_steal_pct: float | None = None
    target_others_pct: float | None = None
    load_others_pct: float | None = None
    # The services beside the target (see measure/service_use.py).
    db_busy_peak: int | None = None
    db_busy_mean: float | None = None
    db_connections_peak: int | None = None
    cache_connections_peak: int | None = None
    services_cpu_pct: float | None = None
    services_pss_mb: float | None = None
    # The proxy in front of the target (None: none), and what it used of the target side.
    proxy: str | None = None
    proxy_cpu_pct: float | None = None
    proxy_rss_mb: float | None = None
    # An open loop's step (users then holds the offered rate too): the requests due in the
    # window, those sent late or not at all, those unanswered when it ended (and the oldest's
    # age); the offered rate over the model's ceiling and the mean latency the model expects.
    offered_rps: int | None = None
    scheduled: int | None = None
    late_sends: int | None = None
    dropped_sends: int | None = None
    unfinished: int | None = None
    unfinished_oldest_ms: float | None = None
    utilisation: float | None = None
    expected_mean_ms: float | None = None
    # A slow client's transfer: how long the model says it holds a slot per request.
    transfer_held_ms: float | None = None
    server_version: str | None = None
    server_version_source: str | None = None

    @property
    def valid(self) -> bool:
        return not self.flags

    def as_csv(self) -> dict[str, object]:
        values: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        values["valid"] = "true" if self.valid else "false"
        values["flags"] = ";".join(self.flags)
        values["step_status"] = "measured"
        values |= _interval_columns("rps", self.rps_ci) | _interval_columns("p99", self.p99_ci)
        if self.offered_rps is not None:
            # An open loop has no users: its steps are offered rates (offered_rps).
            values["users"] = None
        return {column: _csv_value(values[column]) for column in SUMMARY_COLUMNS}


def _interval_columns(name: str, interval: Interval | None) -> dict[str, object]:
    return {
        f"{name}_ci_low": interval.low if interval else None,
        f"{name}_ci_high": interval.high if interval else None,
    }


@dataclass(frozen=True)
class Skipped:
    """A step a cell did not climb to (stop_when_saturated): recorded, not missing or failed."""

    run_id: str
    target: Target
    workload: str
    users: int
    repeat: int
    reason: str
    server_version: str | None = None
    server_version_source: str | None = None

    def as_csv(self) -> dict[str, object]:
        known = {
            "run_id": self.run_id,
            "target": self.target.name,
            "server": self.target.server,
            "worker_class": self.target.worker_class,
            "workers": self.target.workers,
            "threads": self.target.threads,
            "workload": self.workload,
            "users": self.users,
            "repeat": self.repeat,
            "step_status": "skipped",
            "valid": "false",
            "flags": "skipped",
            "proxy": self.target.proxy.name if self.target.proxy else None,
            "server_version": self.server_version,
            "server_version_source": self.server_version_source,
        }
        return {column: _csv_value(known.get(column)) for column in SUMMARY_COLUMNS}


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 3)
    return value


def step_row(
    run_id: str,
    cell: CellData,
    repeat: int,
    step: StepData,
    target: Target,
    workload: Workload,
    cores: int,
) -> Row:
    """A row without its expectation (see with_expectation). Throughput counts only requests
    that got the status they expected: a fast failure is not performance."""
    succeeded = step.requests - step.failures
    rps = succeeded / step.duration_s if step.duration_s > 0 else 0.0
    served = sum(step.served_by_process.values())
    replicates = step_replicates(run_id, target.name, workload.name, step, repeat)
    return Row(
        run_id=run_id,
        target=target.name,
        server=target.server,
        worker_class=target.worker_class,
        workers=target.workers,
        threads=target.threads,
        workload=workload.name,
        work_ms=None,
        users=step.users,
        repeat=repeat,
        duration_s=step.duration_s,
        requests=step.requests,
        failures=step.failures,
        lost_requests=step.lost_requests,
        rps=rps,
        mean_ms=step.latency.mean(),
        p50_ms=step.latency.percentile(50),
        p95_ms=step.latency.percentile(95),
        p99_ms=step.latency.percentile(99),
        max_ms=step.latency.maximum(),
        peak_inflight_process=step.peak_inflight_process,
        peak_inflight_server=step.peak_inflight_server,
        mean_inflight_server=step.mean_inflight_server,
        expected_slots=None,
        expected_rps=None,
        rps_vs_expected=None,
        expected_basis=None,
        limit=None,
        target_cpu_pct=step.target_cpu_pct,
        target_rss_mb=step.target_rss_mb,
        worker_rss_mb=step.worker_rss_mb,
        loadgen_cpu_pct=step.loadgen_cpu_pct,
        loadgen_process_cpu_max_pct=step.loadgen_process_cpu_max_pct,
        worker_request_share_max=max(step.served_by_process.values()) / served if served else None,
        worker_processes=len(step.served_by_process),
        flags=step_flags(
            step,
            rps,
            cell.status.status,
            cores,
            cell.wait_time is not None,
            expected_slots(target),
        ),
        rps_ci=percentile_interval(replicates.rps),
        p99_ci=percentile_interval(replicates.p99_ms),
        target_steal_pct=step.target_steal_pct,
        load_steal_pct=step.load_steal_pct,
        target_others_pct=step.target_others_pct,
        load_others_pct=step.load_others_pct,
        **service_columns(step.services),
        proxy=target.proxy.name if target.proxy else None,
        proxy_cpu_pct=step.proxy_cpu_pct,
        proxy_rss_mb=step.proxy_rss_mb,
        **_offered_fields(step),
    )


def _offered_fields(step: StepData) -> dict[str, Any]:
    offered = step.offered
    if offered is None:
        return {}
    return {
        "offered_rps": offered.rate,
        "scheduled": offered.scheduled,
        "late_sends": offered.late,
        "dropped_sends": offered.dropped,
        "unfinished": offered.unfinished,
        "unfinished_oldest_ms": offered.unfinished_oldest_ms,
    }


def step_replicates(
    run_id: str, target: str, workload: str, step: StepData, repeat: int
) -> Replicates:
    """The bootstrap of one step of one repeat, seeded by what it is, so it is reproducible."""
    return window_replicates(step.window, seed_for(run_id, target, workload, step.users, repeat))


def with_expectation(
    row: Row, target: Target, work: Work | None, cores: int, workload: Workload | None = None
) -> Row:
    """The row with what the model expects of it: at its users, or an open loop's offered
    rate; with a slow client's transfer where the workload knows its sizes."""
    transfer = transfer_of(workload) if workload else None
    expectation = expect(target, work, row.users, cores, transfer)
    open_loop = workload.open_loop if workload else None
    utilisation = mean_ms = None
    if open_loop is not None and row.offered_rps is not None:
        offered = open_loop_expectation(
            target, work, row.offered_rps, cores, open_loop.arrival, transfer
        )
        ceiling = expect(target, work, UNBOUNDED_USERS, cores, transfer)
        busy = offered.utilisation is not None and offered.utilisation >= 1
        expectation = replace(ceiling, rps=offered.rps, limit=ceiling.limit if busy else "rate")
        utilisation, mean_ms = offered.utilisation, offered.mean_ms
    # Requests wait for a slot when users outnumber the slots (an open loop: near its ceiling).
    slots = expectation.slots
    queued = slots is not None and (row.offered_rps is not None or row.users > slots)
    held_ms = 1000 * transfer_times(target, transfer, queued)[0] if transfer else None
    return replace(
        row,
        # A slow client's transfer holds the slot too, where the model says so.
        work_ms=work.held_ms + (held_ms or 0.0) if work else None,
        expected_slots=expectation.slots,
        expected_rps=expectation.rps,
        rps_vs_expected=row.rps / expectation.rps if expectation.rps else None,
        expected_basis=work.basis if work else None,
        limit=expectation.limit,
        utilisation=utilisation,
        expected_mean_ms=mean_ms,
        transfer_held_ms=held_ms,
    )


def measure_work(rows: Sequence[Row]) -> Work | None:
    """What a request of one workload costs, measured at its lowest user step: the time it
    spent inside the app (Little's law on the in-process gauge) and the target's CPU time per
    request, each the median over targets and repeats. Steps with failures are left out."""
    usable = [r for r in rows if r.rps > 0 and not r.failures]
    if not usable:
        return None
    lowest = min(r.users for r in usable)
    at = [r for r in usable if r.users == lowest]
    inside = [1000 * r.mean_inflight_server / r.rps for r in at if r.mean_inflight_server]
    cpu = [10 * r.target_cpu_pct / r.rps for r in at if r.target_cpu_pct is not None]
    if not inside or not cpu:
        return None
    service_ms, cpu_ms = statistics.median(inside), statistics.median(cpu)
    return Work(
        io_ms=max(service_ms - cpu_ms, 0.0),
        cpu_ms=cpu_ms,
        basis="measured",
        measured_at=lowest,
        service_ms=service_ms,
    )


def step_flags(
    step: StepData,
    rps: float,
    cell_status: str,
    target_cores: int = 1,
    thinks: bool = False,
    slots: int | None = None,
) -> tuple[str, ...]:
    """`thinks`: users wait between requests (a user class's own wait_time), so users are not
    requests in flight and Little's law says nothing about the load generator; nor does it for
    an open loop, which has no users. `slots`: the target's, where known."""
    flags = []
    thinks = thinks or step.offered is not None
    if step.requests == 0:
        flags.append("no_requests")
    load = [v for v in (step.loadgen_cpu_pct, step.loadgen_process_cpu_max_pct) if v is not None]
    if load and max(load) > LOADGEN_CPU_LIMIT_PCT:
        flags.append("loadgen_cpu")
    if step.failures:
        flags.append("failures")
    if step.lost_requests:
        flags.append("lost_requests")
    mean_ms = step.latency.mean()
    if (
        not thinks
        and mean_ms is not None
        and abs(step.users - rps * mean_ms / 1000) / step.users > LITTLE_TOLERANCE
    ):
        flags.append("littles_law")
    first, second = step.first_half_requests, step.second_half_requests
    if (
        abs(ramp_z(first, second)) > RAMP_MIN_Z
        and abs(second - first) / max(first, second) > RAMP_MIN_CHANGE
    ):
        flags.append("ramping")
    if cell_status == "degraded":
        flags.append("degraded")
    losses = interference(step, target_cores, slots)
    if any(loss.steal > INTERFERENCE_LIMIT_PCT for loss in losses):
        flags.append("steal")
    if any(loss.others > INTERFERENCE_LIMIT_PCT for loss in losses):
        flags.append("cpu_contention")
    if step.offered is not None and step.offered.behind:
        flags.append("late_sends")
    return tuple(flags)


@dataclass(frozen=True)
class Loss:
    """What one side lost to the hypervisor (steal) and to other processes (others): an
    estimate, in percent, of the CPU time it needed and did not get."""

    steal: float
    others: float


def interference(step: StepData, target_cores: int, slots: int | None = None) -> tuple[Loss, ...]:
    """Each side's estimated loss where its own use was measured. Without its own use a side's
    steal counts in full (it may have needed every stolen tick). The load generator's loss
    counts only as far as the target can have waited for it (`slots`: how many requests the
    target serves at once, where known)."""
    target_own = step.target_cpu_pct / target_cores if step.target_cpu_pct is not None else None
    target = _side_loss(step.target_steal_pct, step.target_others_pct, target_own)
    load = _side_loss(step.load_steal_pct, step.load_others_pct, step.loadgen_cpu_pct)
    waited = _target_waited(step, target_own, slots)
    return target, Loss(steal=min(load.steal, waited), others=min(load.others, waited))


def _target_waited(step: StepData, target_own: float | None, slots: int | None) -> float:
    """The share of the step (percent) in which the target could have served more than it did:
    no more than its CPUs' idle time, nor than its free slots' share. A target whose CPUs were
    saturated, or whose slots were all busy with a queue behind them, never waited for the load
    generator, however late the load generator was."""
    shares = [100.0]
    if target_own is not None:
        taken = (step.target_steal_pct or 0.0) + (step.target_others_pct or 0.0)
        shares.append(100.0 - target_own - taken)
    if slots and step.mean_inflight_server is not None:
        shares.append(100.0 * (1 - step.mean_inflight_server / slots))
    return max(min(shares), 0.0)


def _side_loss(steal: float | None, others: float | None, own: float | None) -> Loss:
    if own is None:
        return Loss(steal=steal or 0.0, others=0.0)
    # Steal accrues only while a CPU wanted to run: its share of that time is what each
    # runnable process lost, own or not.
    runnable = own + (others or 0.0) + (steal or 0.0)
    stolen = (steal or 0.0) / runnable if runnable > 0 else 0.0
    return Loss(steal=stolen * own, others=(others or 0.0) * own / 100)


def cell_rows(
    run_id: str,
    cells: Iterable[CellData],
    targets: Mapping[str, Target],
    workloads: Mapping[str, Workload],
    cores: int,
) -> tuple[list[Row], dict[str, Work | None]]:
    """Rows for every step of every cell, with the flags that need all repeats or all steps
    and the expectations that need a workload's cost; and that cost per workload."""
    rows = []
    for cell in cells:
        target_name, workload_name, repeat_id = cell.cell_id.split("--")
        target, workload = targets[target_name], workloads[workload_name]
        repeat = int(repeat_id.removeprefix("r"))
        cell_rows = [step_row(run_id, cell, repeat, s, target, workload, cores) for s in cell.steps]
        rows += _attribute_cpu_warning(cell_rows) if cell.cpu_warning_nodes else cell_rows
    works = {
        name: modelled_work(workload)
        if workload.modelled
        else measure_work(_work_rows([r for r in rows if r.workload == name], targets, workload))
        for name, workload in workloads.items()
    }
    rows = [
        with_expectation(r, targets[r.target], works[r.workload], cores, workloads[r.workload])
        for r in rows
    ]
    return rows, works


def _work_rows(rows: list[Row], targets: Mapping[str, Target], workload: Workload) -> list[Row]:
    """Where an app's own work can be measured. When its clients are slow: behind a proxy that
    buffers both ways, whose server sees fast clients, so the transfer is not in its time; with
    no such target, every row (the measured work is then an upper bound)."""
    if workload.client is None:
        return rows

    def buffered(row: Row) -> bool:
        proxy = targets[row.target].proxy
        return proxy is not None and proxy.buffering and proxy.request_buffering

    return [r for r in rows if buffered(r)] or rows


def _attribute_cpu_warning(rows: list[Row]) -> list[Row]:
    """Locust warns once per process, not per step: pin it on the step it most likely came from."""
    if not rows or any("loadgen_cpu" in r.flags for r in rows):
        return rows
    busiest = max(rows, key=lambda r: r.loadgen_process_cpu_max_pct or 0.0)
    return [replace(r, flags=(*r.flags, "locust_cpu_warning")) if r is busiest else r for r in rows]


@dataclass(frozen=True)
class Point:
    """One target x workload x user count, over all repeats: medians, with rps min and max."""

    target: str
    workload: str
    work_ms: float | None
    users: int
    repeats: int
    rps: float
    rps_min: float
    rps_max: float
    mean_ms: float | None
    p50_ms: float | None
    p99_ms: float | None
    peak_inflight_process: int | None
    peak_inflight_server: int | None
    mean_inflight_server: float | None
    expected_slots: int | None
    expected_rps: float | None
    rps_vs_expected: float | None
    limit: str | None
    target_cpu_pct: float | None
    target_rss_mb: float | None
    worker_rss_mb: float | None
    loadgen_cpu_pct: float | None
    worker_request_share_max: float | None
    worker_processes: int
    requests: int
    failures: int
    lost_requests: int | None
    flags: tuple[str, ...]
    # 95% intervals: with one trial, a bootstrap over the seconds of its window; with several,
    # over the trials (Student's t on the logs of the trials' values, stats.trials_interval).
    rps_ci: Interval | None = None
    p99_ci: Interval | None = None
    # The services: the highest peaks over repeats, the medians of the means.
    db_busy_peak: int | None = None
    db_busy_mean: float | None = None
    db_connections_peak: int | None = None
    cache_connections_peak: int | None = None
    services_cpu_pct: float | None = None
    services_pss_mb: float | None = None
    # As Row's: the proxy's use of the target side, an open loop's step, a slow client's hold.
    proxy_cpu_pct: float | None = None
    proxy_rss_mb: float | None = None
    offered_rps: int | None = None
    scheduled: int | None = None
    late_sends: int | None = None
    dropped_sends: int | None = None
    unfinished: int | None = None
    unfinished_oldest_ms: float | None = None
    utilisation: float | None = None
    expected_mean_ms: float | None = None
    transfer_held_ms: float | None = None

    @property
    def time_in_app_ms(self) -> float | None:
        """Mean time a request spent inside the app (Little's law on the in-process gauge)."""
        if self.mean_inflight_server is None or self.rps <= 0:
            return None
        return 1000 * self.mean_inflight_server / self.rps


StepKey = tuple[str, str, int]


def aggregate(
    rows: Sequence[Row], replicates: Mapping[StepKey, Replicates] | None = None
) -> list[Point]:
    groups: dict[tuple[str, str, int], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(row.target, row.workload, row.users)].append(row)
    points = []
    for (target, workload, users), group in groups.items():
        rps = [r.rps for r in group]
        points.append(
            Point(
                target=target,
                workload=workload,
                work_ms=group[0].work_ms,
                users=users,
                repeats=len(group),
                rps=statistics.median(rps),
                rps_min=min(rps),
                rps_max=max(rps),
                mean_ms=_median(r.mean_ms for r in group),
                p50_ms=_median(r.p50_ms for r in group),
                p99_ms=_median(r.p99_ms for r in group),
                peak_inflight_process=_max(r.peak_inflight_process for r in group),
                peak_inflight_server=_max(r.peak_inflight_server for r in group),
                mean_inflight_server=_median(r.mean_inflight_server for r in group),
                expected_slots=group[0].expected_slots,
                expected_rps=group[0].expected_rps,
                rps_vs_expected=_median(r.rps_vs_expected for r in group),
                limit=group[0].limit,
                target_cpu_pct=_median(r.target_cpu_pct for r in group),
                target_rss_mb=_max(r.target_rss_mb for r in group),
                worker_rss_mb=_max(r.worker_rss_mb for r in group),
                loadgen_cpu_pct=_median(r.loadgen_cpu_pct for r in group),
                worker_request_share_max=_median(r.worker_request_share_max for r in group),
                worker_processes=max(r.worker_processes for r in group),
                requests=sum(r.requests for r in group),
                failures=sum(r.failures for r in group),
                lost_requests=_sum(r.lost_requests for r in group),
                flags=point_flags(group),
                **(
                    _trial_intervals(group)
                    if len(group) > 1
                    else _point_intervals((replicates or {}).get((target, workload, users)))
                ),
                db_busy_peak=_max(r.db_busy_peak for r in group),
                db_busy_mean=_median(r.db_busy_mean for r in group),
                db_connections_peak=_max(r.db_connections_peak for r in group),
                cache_connections_peak=_max(r.cache_connections_peak for r in group),
                services_cpu_pct=_median(r.services_cpu_pct for r in group),
                services_pss_mb=_max(r.services_pss_mb for r in group),
                proxy_cpu_pct=_median(r.proxy_cpu_pct for r in group),
                proxy_rss_mb=_max(r.proxy_rss_mb for r in group),
                offered_rps=group[0].offered_rps,
                scheduled=_sum(r.scheduled for r in group),
                late_sends=_sum(r.late_sends for r in group),
                dropped_sends=_sum(r.dropped_sends for r in group),
                unfinished=_max(r.unfinished for r in group),
                unfinished_oldest_ms=_max(r.unfinished_oldest_ms for r in group),
                utilisation=group[0].utilisation,
                expected_mean_ms=group[0].expected_mean_ms,
                transfer_held_ms=group[0].transfer_held_ms,
            )
        )
    return sorted(points, key=lambda p: (p.workload, p.target, p.users))


# What a neighbour or the hypervisor did to one trial, or a step caught settling: with several
# trials that is what changes between them, already in the interval over trials.
TRIAL_NOISE_FLAGS = frozenset({"steal", "cpu_contention", "ramping"})


def point_flags(group: Sequence[Row]) -> tuple[str, ...]:
    """A step's flags over its trials. What makes a measurement wrong (failures, a dead
    worker, a saturated load generator...) flags the step whichever trial it hit; noise flags
    it only when it hit most trials: then the median is a disturbed trial and the spread may
    not show it. Up to half, the disturbed trials sit among the values whose spread makes the
    interval, which widens with them."""
    counts: dict[str, int] = {}
    for row in group:
        for flag in row.flags:
            counts[flag] = counts.get(flag, 0) + 1
    return tuple(
        flag
        for flag, count in counts.items()
        if len(group) == 1 or flag not in TRIAL_NOISE_FLAGS or 2 * count > len(group)
    )


def _trial_intervals(group: Sequence[Row]) -> dict[str, Interval | None]:
    """With two trials or more, from the variation between trials (what changes from one run
    of a cell to the next: connection placement, neighbours, the machine's state), not from the
    seconds inside one."""
    p99 = [r.p99_ms for r in group]
    return {
        "rps_ci": trials_interval([r.rps for r in group]),
        "p99_ci": trials_interval([v for v in p99 if v is not None]) if None not in p99 else None,
    }


def _point_intervals(replicates: Replicates | None) -> dict[str, Interval | None]:
    if replicates is None:
        return {}
    return {
        "rps_ci": percentile_interval(replicates.rps),
        "p99_ci": percentile_interval(replicates.p99_ms),
    }


def run_replicates(data: RunData) -> dict[StepKey, Replicates]:
    """Bootstrap replicates per target x workload x users, pooled over repeats."""
    repeats: dict[StepKey, list[Replicates]] = defaultdict(list)
    for cell in sorted(data.cells, key=lambda c: c.cell_id):
        target, workload, repeat_id = cell.cell_id.split("--")
        repeat = int(repeat_id.removeprefix("r"))
        for step in cell.steps:
            repeats[(target, workload, step.users)].append(
                step_replicates(data.run_id, target, workload, step, repeat)
            )
    return {
        key: pooled_replicates(group, seed_for(data.run_id, *key)) for key, group in repeats.items()
    }


def _median(values: Iterable[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _sum(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


_N = TypeVar("_N", int, float)


def _max(values: Iterable[_N | None]) -> _N | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


@dataclass(frozen=True)
class Knee:
    peak_rps: float
    peak_users: int
    # The lowest user count reaching 95% of the peak throughput.
    knee_users: int
    # The lowest user count whose p99 exceeds twice the p99 at the lowest user count; None if never.
    p99_doubling_users: int | None


def find_knee(points: Sequence[Point]) -> Knee | None:
    """Points of one target and workload, any order."""
    ordered = sorted(points, key=lambda p: p.users)
    if not ordered:
        return None
    peak = max(ordered, key=lambda p: p.rps)
    knee = next(p for p in ordered if p.rps >= KNEE_SHARE_OF_PEAK * peak.rps)
    base = ordered[0].p99_ms
    doubling = (
        next(
            (p.users for p in ordered if p.p99_ms is not None and p.p99_ms > P99_GROWTH * base),
            None,
        )
        if base
        else None
    )
    return Knee(peak.rps, peak.users, knee.users, doubling)


def knees(points: Sequence[Point]) -> dict[tuple[str, str], Knee]:
    groups: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for point in points:
        groups[(point.target, point.workload)].append(point)
    return {key: knee for key, group in groups.items() if (knee := find_knee(group))}


@dataclass(frozen=True)
class Analysis:
    data: RunData
    rows: tuple[Row, ...]
    points: tuple[Point, ...]
    knees: dict[tuple[str, str], Knee]
    # What a request of each workload costs (None: not known, e.g. nothing was measured).
    works: dict[str, Work | None]
    skipped: tuple[Skipped, ...] = ()
    # What the intervals were drawn from, for comparing runs step by step.
    replicates: Mapping[StepKey, Replicates] = field(default_factory=dict)


def analyze_run(data: RunData) -> Analysis:
    rows, works = cell_rows(
        data.run_id, data.cells, data.targets, data.workloads, data.target_cores
    )
    versions = server_versions(data)
    rows = [
        replace(r, server_version=version, server_version_source=source)
        for r in rows
        for version, source in [versions.get(r.target, (None, None))]
    ]
    rows.sort(key=lambda r: (r.workload, r.target, r.users, r.repeat))
    replicates = run_replicates(data)
    points = aggregate(rows, replicates)
    return Analysis(
        data, tuple(rows), tuple(points), knees(points), works, skipped_steps(data), replicates
    )


def server_versions(data: RunData) -> dict[str, tuple[str | None, str | None]]:
    """{target: (its server's version, where it came from)}, as meta.json recorded them."""
    return {
        name: (record["version"], record["source"])
        for name, record in data.meta.get("server_versions", {}).items()
    }


def skipped_steps(data: RunData) -> tuple[Skipped, ...]:
    versions = server_versions(data)
    found = []
    for cell in data.cells:
        target, workload, repeat = cell.cell_id.split("--")
        found += [
            Skipped(
                data.run_id,
                data.targets[target],
                workload,
                step.users,
                int(repeat.removeprefix("r")),
                step.reason,
                *versions.get(target, (None, None)),
            )
            for step in cell.skipped
        ]
    return tuple(sorted(found, key=lambda s: (s.workload, s.target.name, s.users, s.repeat)))
