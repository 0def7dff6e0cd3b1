"""The report's parts about the production shape: a proxy in front of a target (what it does to
the connections the server sees, and each proxied target against the same server served
directly), slow clients (what the model says their transfer holds of each target) and open
loops (latency at each offered rate, with what the load generator could not send on time).
Every sentence is generated from the numbers; no proxy or server is named here but through the
targets' data and their modules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flaskbench.config.openloop import LATE_MS, LATE_SHARE
from flaskbench.config.workloads import Workload
from flaskbench.measure.analyze import Analysis, Point
from flaskbench.measure.theory import random_spread_busy, transfer_of
from flaskbench.proxies.proxy_registry import proxy_notes
from flaskbench.proxies.reverse_proxy import ProxySpec
from flaskbench.report.blocks import Block, Bullets, Paragraph, Table, number, with_interval
from flaskbench.servers.registry import describe, server_of
from flaskbench.servers.server import Target


def proxy_notes_blocks(analysis: Analysis) -> list[Block]:
    """What each proxy in front of a target does to what the server sees, once per setting."""
    behind: dict[ProxySpec, list[str]] = {}
    for name, target in analysis.data.targets.items():
        if target.proxy is not None:
            behind.setdefault(target.proxy, []).append(name)
    if not behind:
        return []
    notes = tuple(
        f"**{', '.join(names)}**: {'; '.join(proxy_notes(spec))}." for spec, names in behind.items()
    )
    return [
        Paragraph(
            "Targets behind a proxy: it listens on the target's port and the server on the "
            "loopback port above, both on the target's CPUs; the proxy's CPU and memory count on "
            'the target side, shown apart (proxy columns in summary.csv, "+ proxy" in the '
            "tables); its config is each cell's proxy.conf. What it changes for the server:"
        ),
        Bullets(notes),
    ]


def twin(target: Target, targets: dict[str, Target]) -> Target | None:
    """The same server with the same settings, served directly, if the run has one."""
    for other in targets.values():
        if (
            other.proxy is None
            and other.server == target.server
            and other.worker_class == target.worker_class
            and dict(other.settings) == dict(target.settings)
        ):
            return other
    return None


@dataclass(frozen=True)
class _Pair:
    behind: Target
    direct: Target
    points: tuple[tuple[Point, Point], ...]


def _pairs(analysis: Analysis, workload: str) -> list[_Pair]:
    targets = analysis.data.targets
    points = {(p.target, p.users): p for p in analysis.points if p.workload == workload}
    pairs = []
    for target in targets.values():
        direct = twin(target, targets) if target.proxy else None
        if direct is None:
            continue
        common = sorted(u for t, u in points if t == target.name and (direct.name, u) in points)
        if common:
            matched = tuple((points[(target.name, u)], points[(direct.name, u)]) for u in common)
            pairs.append(_Pair(target, direct, matched))
    return pairs


def proxy_comparison(analysis: Analysis, workload: Workload) -> list[Block]:
    """Each proxied target against its direct twin on one workload, step by step, and why they
    differ, from what was measured."""
    pairs = _pairs(analysis, workload.name)
    if not pairs:
        return []
    unit = "req/s offered" if workload.open_loop else "users"
    lines = []
    for pair in pairs:
        proxy = pair.behind.proxy
        assert proxy is not None
        steps = "; ".join(_step_against(behind, direct, unit) for behind, direct in pair.points)
        lines.append(
            f"**{pair.behind.name}** (behind {proxy.name}) against **{pair.direct.name}** "
            f"(direct): {steps}. {_why(pair, workload)}"
        )
    return [
        Paragraph("The same server behind its proxy and direct, in this run:"),
        Bullets(tuple(lines)),
    ]


def _step_against(behind: Point, direct: Point, unit: str) -> str:
    def share(point: Point) -> str:
        if point.rps_vs_expected is None:
            return f"{number(point.rps)} req/s"
        return f"{number(point.rps)} req/s, {point.rps_vs_expected:.0%} of its expected"

    return f"at {behind.users} {unit}, {share(behind)} against {share(direct)}"


# Shares of the expected throughput this close are the same, as far as one run can tell.
SAME_SHARE = 0.05


def _why(pair: _Pair, workload: Workload) -> str:
    """What the measurements (and the model) say made the difference, at the lowest step both
    ran, where how requests spread matters most."""
    proxy = pair.behind.proxy
    assert proxy is not None
    behind, direct = pair.points[0]
    last = pair.points[-1][0]
    cost = ""
    if last.proxy_cpu_pct is not None and last.rps > 0:
        per_request_ms = 10 * last.proxy_cpu_pct / last.rps
        cost = f" The proxy itself used {number(per_request_ms, 2)} ms of CPU per request."
    transfer = transfer_of(workload)
    if transfer is not None:
        return _transfer_why(pair, workload) + cost
    target = pair.direct
    spreads = server_of(target).takes_connections_while_full(target) and target.workers > 1
    spread = _spread(behind, direct, target.workers)
    if spreads and not proxy.keepalive and workload.keepalive and not workload.open_loop:
        return _spread_why(pair, behind, direct) + cost
    if workload.open_loop and workload.keepalive:
        return (
            f"{_verdict(pair, behind, direct)}: an open loop sends each request on whichever of "
            "the load generator's kept-alive connections is free, so no client stays with a "
            f"worker either way{spread}; the proxy's hop is what differs.{cost}"
        )
    if spreads and not proxy.keepalive:
        return (
            f"{_verdict(pair, behind, direct)}: every request comes on a connection of its own "
            f"both ways, so requests land on the workers at random either way{spread}"
            f"{_by_chance(pair, behind)}; the proxy's hop is what differs.{cost}"
        )
    if proxy.keepalive:
        return (
            f"{_verdict(pair, behind, direct)}: {proxy.name} keeps its own few connections to "
            "the server and sends each request on whichever is free, whatever the clients' "
            f"connections{spread}.{cost}"
        )
    return (
        f"{_verdict(pair, behind, direct)}: this server's workers take a connection only with "
        "a slot free (or it has one worker), so how connections spread over them does not "
        f"change what runs; the proxy's hop is what differs{spread}.{cost}"
    )


def _verdict(pair: _Pair, behind: Point, direct: Point) -> str:
    proxy = pair.behind.proxy
    assert proxy is not None
    at = f"at {behind.users} {'req/s offered' if behind.offered_rps else 'users'}"
    if behind.rps_vs_expected is None or direct.rps_vs_expected is None:
        return f"Why, {at}"
    difference = behind.rps_vs_expected - direct.rps_vs_expected
    if abs(difference) < SAME_SHARE:
        return f"Why the share is about the same {at}"
    return f"Why the share is {'higher' if difference > 0 else 'lower'} behind {proxy.name} {at}"


def _by_chance(pair: _Pair, point: Point) -> str:
    """What a random landing keeps running, by the model, at a point's users."""
    slots = point.expected_slots
    workers = pair.direct.workers
    if slots is None or point.offered_rps is not None:
        return ""
    busy = min(point.users, slots)
    running = random_spread_busy(busy, workers, slots // workers)
    return f" (by chance alone {number(running, 1)} of {busy} run on average, {running / busy:.0%})"


def _transfer_why(pair: _Pair, workload: Workload) -> str:
    behind, direct = pair.points[-1]
    hold = server_of(pair.direct).transfer_hold(pair.direct)
    if not direct.transfer_held_ms:
        return (
            "Why: by the model its slow clients hold no slot of this server either way: "
            f"{hold.why}; what differs is the proxy's hop."
        )
    return (
        f"Why: its slow clients hold a slot of the server direct for "
        f"{number(direct.transfer_held_ms, 0)} ms per request by the model, behind the proxy "
        f"for {number(behind.transfer_held_ms, 0)} ms: the proxy takes the slow transfer itself. "
        f"Direct, {hold.why}."
    )


def _spread_why(pair: _Pair, behind: Point, direct: Point) -> str:
    """Kept-alive clients direct against a connection per request behind the proxy: how the
    requests spread over the server's workers, as measured, and what chance alone gives."""
    proxy = pair.behind.proxy
    assert proxy is not None
    workers = pair.direct.workers
    spread = _spread(behind, direct, workers)
    text = (
        "direct, each client's kept-alive connection stays with the worker process that "
        "accepted it, so how the connections landed sets each worker's share for the whole "
        f"step; behind {proxy.name}, every request reaches the server on a new connection (a "
        "connection per request upstream) and lands on whichever worker accepts it"
        f"{spread}. A worker of this model takes a connection even with all its slots busy "
        f"and queues it, so requests landing at random wait beside a free slot of another "
        f"worker{_by_chance(pair, behind)}"
    )
    text += (
        "; direct, the connections landed evenly and kept every slot busy"
        if (direct.worker_request_share_max or 1) <= 1.1 / workers
        else "; direct, the uneven landing of the connections cost more than that"
    )
    return f"{_verdict(pair, behind, direct)}: {text}."


def _spread(behind: Point, direct: Point, workers: int) -> str:
    if workers < 2 or behind.worker_request_share_max is None:
        return ""
    if direct.worker_request_share_max is None:
        return ""
    return (
        f" (the busiest worker served {behind.worker_request_share_max:.0%} of the requests "
        f"behind it, {direct.worker_request_share_max:.0%} direct; even is {1 / workers:.0%})"
    )


def transfer_notes(analysis: Analysis, workload: Workload) -> list[Block]:
    """What the model says a slow client's transfer holds of each target, from where, and what
    was measured in the app at the top step."""
    transfer = transfer_of(workload)
    if transfer is None:
        return []
    lines = []
    for name, target in analysis.data.targets.items():
        points = [p for p in analysis.points if p.workload == workload.name and p.target == name]
        if not points or points[-1].transfer_held_ms is None:
            continue
        top = max(points, key=lambda p: p.users)
        held = top.transfer_held_ms or 0.0
        if target.proxy is not None:
            why = "its proxy reads the slow client's body and response itself"
        else:
            why = server_of(target).transfer_hold(target).why
        lines.append(f"**{name}**: {number(held, 0)} ms per request: {why}. {_measured(top, held)}")
    sizes = []
    if transfer.body_bytes and transfer.send_rate:
        sizes.append(f"sends its body in {number(transfer.upload_s, 2)} s")
    if transfer.response_bytes and transfer.receive_rate:
        sizes.append(f"reads its response in {number(transfer.download_s, 2)} s")
    return [
        Paragraph(
            f"Slow clients: each {' and '.join(sizes) or 'moves nothing the model knows'}, so "
            "a user's request takes that much longer end to end. What that holds of a slot, by "
            "the model: what the kernel cannot buffer (about 160 KB of a body waiting to be "
            "accepted, 4 MB of a response), unless the slot waits for the client to finish. "
            "Only bodies and responses larger than the kernel's buffers hold a slot that reads "
            "as the data comes:"
        ),
        Bullets(tuple(lines)),
    ]


def _measured(point: Point, held_ms: float) -> str:
    """The time a request was in the app at a step, against the model's hold."""
    inside = point.time_in_app_ms
    if inside is None:
        return ""
    text = f"Measured at {point.users} users: {number(inside, 0)} ms in the app"
    if held_ms and inside < 0.7 * held_ms:
        return text + (
            ": the kernel buffered more of each body than the model counts (Linux grows a "
            "connection's receive buffer as its earlier requests are read, so on a kept-alive "
            "connection the model's hold is an upper bound)."
        )
    return text + "."


def open_loop_blocks(
    analysis: Analysis, workload: Workload, points: Sequence[Point]
) -> list[Block]:
    """An open-loop workload: latency at each offered rate against the model, and what the load
    generator could not send on time."""
    open_loop = workload.open_loop
    assert open_loop is not None
    spacing = "as a Poisson process" if open_loop.arrival == "poisson" else "evenly spaced"
    rows = []
    for target in analysis.data.targets:
        for p in sorted((p for p in points if p.target == target), key=lambda p: p.users):
            rows.append(
                (
                    target,
                    str(p.users),
                    with_interval(p.rps, p.rps_ci),
                    number(p.expected_rps),
                    f"{p.utilisation:.2f}" if p.utilisation is not None else "-",
                    number(p.p50_ms),
                    with_interval(p.p99_ms, p.p99_ci),
                    f"{number(p.mean_ms)} ({number(p.expected_mean_ms)})",
                    f"{p.late_sends or 0} / {p.dropped_sends or 0} of {p.scheduled or 0}",
                    f"{p.unfinished or 0}"
                    + (f" ({number(p.unfinished_oldest_ms, 0)} ms)" if p.unfinished else ""),
                    ", ".join(p.flags) or "-",
                )
            )
    return [
        Paragraph(
            f"An open loop: requests offered at each rate, arriving {spacing}, each sent at its "
            "time whether or not earlier ones have returned, its latency counted from when it "
            "was due. The model's ceiling is its throughput with as many requests as it can "
            "take; utilisation is the offered rate over it, and the wait for a slot grows as it "
            "nears 1 and without bound beyond (the model's mean: its work plus that wait; "
            f"none above 1). Sends {LATE_MS:g} ms or more late, or not sent at all, are the "
            f"load generator's: above {LATE_SHARE:.0%} of a step's arrivals the step is "
            "flagged `late_sends`. Unfinished: requests due by the end of the window and not "
            "answered then (the oldest one's wait)."
        ),
        Table(
            (
                "target",
                "offered req/s",
                "completed req/s (95% interval)",
                "expected",
                "utilisation",
                "p50 ms",
                "p99 ms (95% interval)",
                "mean ms (model)",
                "late / not sent",
                "unfinished (oldest)",
                "flags",
            ),
            tuple(rows),
        ),
        Bullets(
            tuple(
                _open_loop_sentence(analysis.data.targets[t], [p for p in points if p.target == t])
                for t in analysis.data.targets
                if any(p.target == t for p in points)
            )
        ),
    ]


def _open_loop_sentence(target: Target, points: Sequence[Point]) -> str:
    series = sorted(points, key=lambda p: p.users)
    text = f"**{target.name}** ({describe(target)})"
    below = [p for p in series if p.utilisation is not None and p.utilisation < 1]
    above = [p for p in series if p.utilisation is not None and p.utilisation >= 1]
    ceiling = next((p.expected_rps for p in above), None)
    if below:
        last = below[-1]
        text += (
            f": up to {last.users} req/s offered (utilisation {last.utilisation:.2f}) it "
            f"completed {number(last.rps)} req/s with p99 {number(last.p99_ms, 0)} ms"
        )
        if last.expected_mean_ms is not None and last.mean_ms is not None:
            text += (
                f", mean {number(last.mean_ms, 0)} ms against the model's "
                f"{number(last.expected_mean_ms, 0)}"
            )
    if above:
        worst = above[-1]
        text += (
            f"{';' if below else ':'} at {worst.users} req/s, beyond its modelled ceiling of "
            f"{number(ceiling)}, it completed {number(worst.rps)} req/s while requests piled up: "
            f"p99 {number(worst.p99_ms, 0)} ms, {worst.unfinished or 0} unfinished at the end "
            f"of the window (the oldest waiting {number(worst.unfinished_oldest_ms, 0)} ms)"
        )
    late = sum(p.late_sends or 0 for p in series) + sum(p.dropped_sends or 0 for p in series)
    scheduled = sum(p.scheduled or 0 for p in series)
    text += f". The load generator sent {late} of {scheduled} requests late or not at all."
    return text


def cpu_cell(point: Point) -> str:
    """The target side's CPU in a table: the server's, and its proxy's beside it."""
    server = number(point.target_cpu_pct, 0)
    return (
        f"{server} + proxy {number(point.proxy_cpu_pct, 0)}"
        if point.proxy_cpu_pct is not None
        else server
    )
