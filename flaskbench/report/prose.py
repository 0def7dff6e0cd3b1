"""The sentences of a run's report, generated from the numbers: what one process handled against
its model, and where a target fell short, the cause that was measured."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from flaskbench.measure.analyze import Knee, Point
from flaskbench.measure.service_use import connections_capped
from flaskbench.measure.theory import expected_slots, parallel_processes
from flaskbench.report.blocks import number
from flaskbench.servers.registry import describe
from flaskbench.servers.server import Target

SHORTFALL = 0.90


# Share of the CPU the target could use that counts as saturated.
CPU_SATURATED = 0.90


# A worker serving this many times its even share counts as uneven spreading.
UNEVEN = 1.25


# Requests inside the app this many times longer than their work were waiting for something.
SLOW_INSIDE = 1.1


def slots_text(slots: int | None) -> str:
    return "unbounded" if slots is None else str(slots)


def per_process_cap(target: Target) -> int | None:
    """Requests one process of this model can hold at once; None: as many as connections."""
    slots = expected_slots(target)
    return None if slots is None else max(1, slots // target.workers)


def process_line(target: Target, series: Sequence[Point]) -> str:
    """One line: the most requests one process of this target had in flight, against its model."""
    peak = _max_of(p.peak_inflight_process for p in series)
    text = f"**{target.name}** ({describe(target)}): "
    if peak is None:
        return text + "no in-flight measurements."
    cap = per_process_cap(target)
    most_users = max(p.users for p in series)
    text += f"at most **{peak}** request{'s' if peak != 1 else ''} in flight per process"
    allows = "its model has no cap but the users" if cap is None else f"its model allows {cap}"
    if cap is not None and peak > cap:
        return text + f", more than the {cap} its model allows (see the details)."
    if cap is not None and peak == cap:
        return text + f"; {allows}."
    if peak >= 0.9 * most_users:
        return text + f", as many as there were users (up to {most_users}); {allows}."
    if cap is not None and most_users < cap:
        return text + f", with {users_text(most_users)} offered; {allows}."
    return text + f", fewer than {allows} (see the details)."


def sentence(target: Target, points: Sequence[Point], knee: Knee | None, cores: int) -> str:
    """One plain sentence about one target on one workload, from its measurements alone."""
    series = sorted(points, key=lambda p: p.users)
    per_process = _max_of(p.peak_inflight_process for p in series)
    server = _max_of(p.peak_inflight_server for p in series)
    text = f"**{target.name}** ({describe(target)})"
    if per_process is None or server is None:
        text += " has no in-flight measurements"
    elif _follows_users(series):
        text += (
            f" had as many requests in flight as there were users, up to {server} at "
            f"{users_text(series[-1].users)}"
        )
    else:
        slots = series[-1].expected_slots
        bound = f"; its model allows {slots_text(slots)}" if slots is not None else ""
        text += (
            f" never had more than {per_process} request{'s' if per_process != 1 else ''} in "
            f"flight per process and {server} server-wide{bound}"
        )
    if knee is None:
        return text + "."
    peak = max(series, key=lambda p: p.rps)
    text += f". Throughput peaked at {number(peak.rps)} req/s with {users_text(peak.users)}"
    if peak.expected_rps:
        text += f" ({peak.rps / peak.expected_rps:.0%} of the expected {number(peak.expected_rps)})"
    text += f" and reached 95% of that from {users_text(knee.knee_users)}"
    if knee.p99_doubling_users:
        text += (
            f"; p99 latency passed twice its 1-user value at {users_text(knee.p99_doubling_users)}"
        )
    text += "."
    short = [p for p in series if p.rps_vs_expected is not None and p.rps_vs_expected < SHORTFALL]
    if short:
        text += " Below 90% of the expected ceiling: " + "; ".join(
            f"{users_text(p.users)} {p.rps_vs_expected:.0%} ({shortfall_cause(p, target, cores)})"
            for p in short
            if p.rps_vs_expected is not None
        )
        text += "."
    return text


def users_text(count: int) -> str:
    return counted(count, "user", "users")


def counted(count: object, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _max_of(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _follows_users(series: Sequence[Point]) -> bool:
    """In flight kept up with the user count at every step beyond one user."""
    steps = [p for p in series if p.users > 1 and p.peak_inflight_server is not None]
    return bool(steps) and all(
        p.peak_inflight_server is not None and p.peak_inflight_server >= 0.9 * p.users
        for p in steps
    )


def shortfall_cause(point: Point, target: Target, cores: int) -> str:
    """Why a step fell short of its expected ceiling, from what was measured at that step."""
    if "loadgen_cpu" in point.flags or "locust_cpu_warning" in point.flags:
        return (
            f"the load generator was CPU-bound ({number(point.loadgen_cpu_pct, 0)}%), so this "
            "measures Locust, not Flask"
        )
    if point.failures:
        return f"{point.failures} requests failed"
    if point.lost_requests:
        return f"a worker died holding {point.lost_requests} requests"
    if connections_capped(point.peak_inflight_server, point.db_busy_peak, point.db_busy_mean):
        return (
            f"requests waited inside the app for a database connection: {point.db_busy_peak} "
            f"were busy at most (a mean of {number(point.db_busy_mean, 1)}) while "
            f"{point.peak_inflight_server} were in flight"
        )
    capacity = 100.0 * min(cores, parallel_processes(target))
    if point.target_cpu_pct is not None and point.target_cpu_pct >= CPU_SATURATED * capacity:
        return f"target CPU saturated ({number(point.target_cpu_pct, 0)}% of {capacity:.0f}%)"
    slots = point.expected_slots
    busy_limit = point.users if slots is None else min(point.users, slots)
    inflight = point.peak_inflight_server
    if inflight is not None and inflight < busy_limit:
        per_worker = slots // target.workers if slots is not None and target.workers > 1 else None
        if per_worker and point.peak_inflight_process == per_worker:
            return (
                f"uneven spread: one worker was full ({per_worker} in flight) while the server "
                f"held only {inflight} of {busy_limit}{_share(point, target)}"
            )
        return f"only {inflight} in flight where {busy_limit} could be{_share(point, target)}"
    if _share(point, target):
        return "uneven spread" + _share(point, target)
    inside = point.time_in_app_ms
    work_ms = point.work_ms
    if work_ms is None:
        return "no measured cause"
    if point.transfer_held_ms and inside is not None and inside > SLOW_INSIDE * work_ms:
        return (
            f"each request was in the app {number(inside, 0)} ms, where the model has its slot "
            f"held {number(work_ms, 0)} ms, nearly all by its slow client's transfer: the kernel "
            "buffered less of it than the model says"
        )
    if point.limit == "users" and point.mean_ms and point.mean_ms > SLOW_INSIDE * work_ms:
        return (
            f"each request took {number(point.mean_ms, 1)} ms end to end for "
            f"{number(work_ms, 1)} ms "
            f"of work in the server: with {users_text(point.users)}, the time outside it (the load "
            "generator, the network) sets the pace"
        )
    if inside is not None and inside > SLOW_INSIDE * work_ms:
        return (
            f"each request spent {number(inside, 0)} ms in the app for {number(work_ms, 0)} ms of "
            "work, waiting for the CPU"
        )
    # Falling short means each busy slot turned over slower than the work alone allows.
    slot_ms = 1000 * busy_limit / point.rps if point.rps > 0 else None
    if inside is not None and slot_ms is not None and slot_ms > SLOW_INSIDE * work_ms:
        return (
            f"each request held its slot {number(slot_ms, 0)} ms but was in the app only "
            f"{number(inside, 0)} ms: the server's own work around the app (accepting, forking, "
            "parsing) took the rest"
        )
    return "no measured cause"


def _share(point: Point, target: Target) -> str:
    """The busiest worker's share of requests when it is well above an even spread."""
    share = point.worker_request_share_max
    if target.workers < 2 or share is None or share <= UNEVEN * (1 / target.workers):
        return ""
    even = 1 / target.workers
    return f" (busiest worker served {share:.0%} of requests, even is {even:.0%})"
