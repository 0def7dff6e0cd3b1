"""Write summary.csv, the charts, report.md and a self-contained report.html from an analysis.

The report leads with the answer: per workload, how many requests each target really had in
flight, what the model predicted, where it saturated and, where it fell short, the cause that
was measured. Every sentence is generated from the numbers.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flaskbench.analyze import FLAGS, SUMMARY_COLUMNS, Analysis, Knee, Point
from flaskbench.charts import Chart, workload_charts
from flaskbench.rundir import RunDir, atomic_write_text
from flaskbench.servers import Target, describe
from flaskbench.theory import SLOTS_RULES, code_basis, parallel_processes

SHORTFALL = 0.90
# Share of the CPU the target could use that counts as saturated.
CPU_SATURATED = 0.90
# A worker serving this many times its even share counts as uneven spreading.
UNEVEN = 1.25
# Requests inside the app this many times longer than their work were waiting for something.
SLOW_INSIDE = 1.1


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    path: Path
    alt: str


Block = Heading | Paragraph | Bullets | Table | Image


def write_outputs(run: RunDir, analysis: Analysis) -> list[Path]:
    """summary.csv, charts/, report.md, report.html; returns the paths written."""
    write_summary(run.summary_path, analysis)
    charts_dir = run.path / "charts"
    charts_dir.mkdir(exist_ok=True)
    charts = {
        workload: workload_charts(analysis.points, workload, charts_dir)
        for workload in analysis.data.workloads
    }
    blocks = document(analysis, charts)
    markdown = run.path / "report.md"
    page = run.path / "report.html"
    atomic_write_text(markdown, render_markdown(blocks, run.path))
    atomic_write_text(page, render_html(blocks, f"flaskbench {analysis.data.run_id}"))
    return [run.summary_path, markdown, page]


def write_summary(path: Path, analysis: Analysis) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.as_csv() for row in analysis.rows)
    atomic_write_text(path, buffer.getvalue())


def _num(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:,.{digits}f}"


def _slots(slots: int | None) -> str:
    return "unbounded" if slots is None else str(slots)


def document(analysis: Analysis, charts: dict[str, list[Chart]]) -> list[Block]:
    data = analysis.data
    blocks: list[Block] = [
        Heading(1, "How many concurrent requests does one Flask process handle?"),
        Paragraph(_provenance(analysis)),
    ]
    blocks += _status_notes(analysis)
    blocks.append(Heading(2, "The answer"))
    blocks.append(
        Paragraph(
            "Requests in flight are counted inside the app, from the call of the WSGI app until "
            "its response is closed, exactly (every change is seen), per process and "
            "server-wide. Expected slots and throughput come from the worker model alone "
            "(see Method). Saturation is where throughput reaches 95% of its peak (the knee)."
        )
    )
    blocks += _code_basis_notes(analysis)
    for workload in data.workloads.values():
        points = [p for p in analysis.points if p.workload == workload.name]
        if not points:
            continue
        blocks.append(Heading(3, f"{workload.name} ({workload.path})"))
        blocks += _workload_notes(analysis, workload.name)
        blocks.append(_answer_table(analysis, workload.name, points))
        blocks.append(
            Bullets(
                tuple(
                    sentence(
                        data.targets[t],
                        ps,
                        analysis.knees.get((t, workload.name)),
                        data.target_cores,
                    )
                    for t, ps in _by_target(points, list(data.targets)).items()
                )
            )
        )
    blocks.append(Heading(2, "Charts"))
    for name, images in charts.items():
        if images:
            blocks.append(Heading(3, name))
            blocks += [Image(chart.path, chart.title) for chart in images]
    blocks += _details(analysis)
    blocks += _flagged(analysis)
    blocks += _method(analysis)
    return blocks


def _provenance(analysis: Analysis) -> str:
    meta = analysis.data.meta
    machine = meta.get("machine", {})
    git = meta.get("git", {})
    packages = ", ".join(f"{k} {v}" for k, v in meta.get("packages", {}).items() if v)
    stairs = meta.get("staircase", {})
    revision = (git.get("commit") or "unknown")[:12] + (" (modified)" if git.get("dirty") else "")
    return (
        f"Run {analysis.data.run_id}, {meta.get('started', '?')} to {meta.get('ended', '?')}, "
        f"{meta.get('runner', {}).get('name', '?')} runner on {machine.get('cpu_model', '?')} "
        f"({machine.get('cpu_count', '?')} CPUs). Target pinned to CPU {meta['cpus']['target']}, "
        "load generator (Locust, "
        f"{_counted(meta.get('locust_workers', '?'), 'worker process', 'worker processes')}) to "
        f"CPU {meta['cpus']['load']}. Each step held {stairs.get('warmup_s', '?')} s of warmup, "
        f"then measured for {stairs.get('measure_s', '?')} s; "
        f"{_counted(meta.get('repeats', 1), 'repeat', 'repeats')}. "
        f"flaskbench {meta.get('tool', {}).get('version', '?')} at git {revision}; "
        f"Python {meta.get('python', '?')}; {packages}. {_app_line(meta)}"
    )


def _app_line(meta: dict[str, Any]) -> str:
    """Which app was served, in the words of the config, with its Flask and Werkzeug."""
    app = meta.get("app") or {}
    if app.get("builtin", True):
        return "App: flaskbench's built-in app (targets/app.py)."
    git = app.get("git") or {}
    revision = (
        f", git {git['commit'][:12]}{' (modified)' if git.get('dirty') else ''}"
        if git.get("commit")
        else ""
    )
    packages = meta.get("runner", {}).get("details", {}).get("app_packages", {})
    versions = ", ".join(
        f"{name} {version}"
        for name, version in sorted(packages.items())
        if name.lower() in ("flask", "werkzeug")
    )
    return (
        f"App: `{app.get('wsgi')}` from {app.get('path')}{revision}"
        f"{f'; it ran with {versions}' if versions else ''}."
    )


def _code_basis_notes(analysis: Analysis) -> list[Block]:
    """Which targets' expected slots come from reading a server's code, not its documentation."""
    notes = tuple(
        f"**{name}**: {basis}."
        for name, target in analysis.data.targets.items()
        if (basis := code_basis(target))
    )
    if not notes:
        return []
    return [
        Paragraph(
            "These expected slots come from the server's code, since its documentation does not "
            "say, and the measurements below test them:"
        ),
        Bullets(notes),
    ]


def _workload_notes(analysis: Analysis, workload: str) -> list[Block]:
    """What a workload's expectations rest on, and how its users behave, when not obvious."""
    notes = []
    work = analysis.works.get(workload)
    if work is not None and work.basis == "measured":
        notes.append(
            f"Measured at {_users(work.measured_at or 1)} (median over targets): each request "
            f"spent {_num(work.service_ms, 1)} ms inside the app and cost "
            f"{_num(work.cpu_ms, 1)} ms of target CPU (the server's own work included). The "
            "expected slots come from each worker model; the expected throughput below is "
            "derived from these measurements, not known in advance."
        )
    elif work is None and not analysis.data.workloads[workload].modelled:
        notes.append(
            "No step could measure what a request costs (none without failures), so there is "
            "no expected throughput."
        )
    waits = {c.wait_time for c in analysis.data.cells if c.cell_id.split("--")[1] == workload}
    for wait in sorted(w for w in waits if w):
        notes.append(
            f"The user class sets its own wait_time, {wait}: users wait between tasks, so "
            "users are not requests in flight, and Little's law is not checked."
        )
    return [Paragraph(note) for note in notes]


def _status_notes(analysis: Analysis) -> list[Block]:
    data = analysis.data
    notes = [
        f"{cid}: {status.status}: {status.reason}"
        for cid, status in sorted(data.statuses.items())
        if status.status != "ok"
    ]
    notes += [f"{cid}: unreadable: {problem}" for cid, problem in sorted(data.unreadable.items())]
    notes += [
        f"{cid}: not run (the run was interrupted; finish it with --resume)" for cid in data.missing
    ]
    if not notes:
        return []
    return [Paragraph("Not every cell finished cleanly:"), Bullets(tuple(notes))]


def _by_target(points: Sequence[Point], order: Sequence[str]) -> dict[str, list[Point]]:
    """Points per target, targets in config order, each target's points by user count."""
    grouped: dict[str, list[Point]] = defaultdict(list)
    for point in sorted(points, key=lambda p: p.users):
        grouped[point.target].append(point)
    return {name: grouped[name] for name in order if name in grouped}


def _answer_table(analysis: Analysis, workload: str, points: Sequence[Point]) -> Table:
    rows = []
    for target_name, series in _by_target(points, list(analysis.data.targets)).items():
        target = analysis.data.targets[target_name]
        knee = analysis.knees.get((target_name, workload))
        peak = max(series, key=lambda p: p.rps)
        rows.append(
            (
                target_name,
                describe(target),
                _num(max((p.peak_inflight_process or 0 for p in series), default=None)),
                _num(max((p.peak_inflight_server or 0 for p in series), default=None)),
                _slots(peak.expected_slots),
                _num(peak.rps),
                _num(peak.expected_rps) if peak.expected_rps else "-",
                f"{peak.rps_vs_expected:.0%}" if peak.rps_vs_expected else "-",
                str(knee.knee_users) if knee else "-",
                str(knee.p99_doubling_users) if knee and knee.p99_doubling_users else "never",
            )
        )
    return Table(
        (
            "target",
            "worker model",
            "peak in flight / process",
            "peak in flight / server",
            "expected slots",
            "peak req/s",
            "expected req/s",
            "measured / expected",
            "knee (users)",
            "p99 doubles at (users)",
        ),
        tuple(rows),
    )


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
            f"{_users(series[-1].users)}"
        )
    else:
        slots = series[-1].expected_slots
        bound = f"; its model allows {_slots(slots)}" if slots is not None else ""
        text += (
            f" never had more than {per_process} request{'s' if per_process != 1 else ''} in "
            f"flight per process and {server} server-wide{bound}"
        )
    if knee is None:
        return text + "."
    peak = max(series, key=lambda p: p.rps)
    text += f". Throughput peaked at {_num(peak.rps)} req/s with {_users(peak.users)}"
    if peak.expected_rps:
        text += f" ({peak.rps / peak.expected_rps:.0%} of the expected {_num(peak.expected_rps)})"
    text += f" and reached 95% of that from {_users(knee.knee_users)}"
    if knee.p99_doubling_users:
        text += f"; p99 latency passed twice its 1-user value at {_users(knee.p99_doubling_users)}"
    text += "."
    short = [p for p in series if p.rps_vs_expected is not None and p.rps_vs_expected < SHORTFALL]
    if short:
        text += " Below 90% of the expected ceiling: " + "; ".join(
            f"{_users(p.users)} {p.rps_vs_expected:.0%} ({shortfall_cause(p, target, cores)})"
            for p in short
            if p.rps_vs_expected is not None
        )
        text += "."
    return text


def _users(count: int) -> str:
    return _counted(count, "user", "users")


def _counted(count: object, one: str, many: str) -> str:
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
            f"the load generator was CPU-bound ({_num(point.loadgen_cpu_pct, 0)}%), so this "
            "measures Locust, not Flask"
        )
    if point.failures:
        return f"{point.failures} requests failed"
    if point.lost_requests:
        return f"a worker died holding {point.lost_requests} requests"
    capacity = 100.0 * min(cores, parallel_processes(target))
    if point.target_cpu_pct is not None and point.target_cpu_pct >= CPU_SATURATED * capacity:
        return f"target CPU saturated ({_num(point.target_cpu_pct, 0)}% of {capacity:.0f}%)"
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
    if point.limit == "users" and point.mean_ms and point.mean_ms > SLOW_INSIDE * work_ms:
        return (
            f"each request took {_num(point.mean_ms, 1)} ms end to end for {_num(work_ms, 1)} ms "
            f"of work in the server: with {_users(point.users)}, the time outside it (the load "
            "generator, the network) sets the pace"
        )
    if inside is not None and inside > SLOW_INSIDE * work_ms:
        return (
            f"each request spent {_num(inside, 0)} ms in the app for {_num(work_ms, 0)} ms of "
            "work, waiting for the CPU"
        )
    # Falling short means each busy slot turned over slower than the work alone allows.
    slot_ms = 1000 * busy_limit / point.rps if point.rps > 0 else None
    if inside is not None and slot_ms is not None and slot_ms > SLOW_INSIDE * work_ms:
        return (
            f"each request held its slot {_num(slot_ms, 0)} ms but was in the app only "
            f"{_num(inside, 0)} ms: the server's own work around the app (accepting, forking, "
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


def _details(analysis: Analysis) -> list[Block]:
    """Every step of every target, medians over repeats with the throughput range."""
    blocks: list[Block] = [Heading(2, "Every step")]
    order = list(analysis.data.targets)
    for workload in analysis.data.workloads:
        points = [p for p in analysis.points if p.workload == workload]
        if not points:
            continue
        rows = tuple(
            (
                p.target,
                str(p.users),
                _num(p.rps) + (f" ({_num(p.rps_min)}-{_num(p.rps_max)})" if p.repeats > 1 else ""),
                _num(p.expected_rps),
                f"{p.rps_vs_expected:.0%}" if p.rps_vs_expected is not None else "-",
                _num(p.p50_ms),
                _num(p.p99_ms),
                f"{_num(p.peak_inflight_process)} / {_num(p.peak_inflight_server)}",
                _num(p.target_cpu_pct, 0),
                _num(p.loadgen_cpu_pct, 0),
                ", ".join(p.flags) or "-",
            )
            for series in _by_target(points, order).values()
            for p in series
        )
        blocks.append(Heading(3, workload))
        blocks.append(
            Table(
                (
                    "target",
                    "users",
                    "req/s",
                    "expected",
                    "measured / expected",
                    "p50 ms",
                    "p99 ms",
                    "in flight process / server",
                    "target CPU %",
                    "load CPU %",
                    "flags",
                ),
                rows,
            )
        )
    return blocks


def _flagged(analysis: Analysis) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Flagged measurements")]
    flagged = [r for r in analysis.rows if r.flags]
    if not flagged:
        blocks.append(Paragraph("No measurement was flagged."))
    else:
        blocks.append(
            Table(
                ("target", "workload", "users", "repeat", "req/s", "flags"),
                tuple(
                    (
                        r.target,
                        r.workload,
                        str(r.users),
                        str(r.repeat),
                        _num(r.rps),
                        ", ".join(r.flags),
                    )
                    for r in flagged
                ),
            )
        )
        used = sorted({f for r in flagged for f in r.flags})
        blocks.append(Bullets(tuple(f"`{flag}`: {FLAGS[flag]}" for flag in used)))
    problems = [
        f"{cell.cell_id}: {p.kind} x{p.count} at {p.where}: {p.message}"
        for cell in analysis.data.cells
        for p in cell.problems
    ]
    if problems:
        blocks.append(Paragraph("Failures and exceptions Locust recorded:"))
        blocks.append(Bullets(tuple(problems)))
    return blocks


def _method(analysis: Analysis) -> list[Block]:
    return [
        Heading(2, "Method"),
        Bullets(
            (
                "One Locust run per target and workload walks the whole staircase of user counts "
                "with zero think time; each step's numbers cover only its measured window, from "
                "per-second buckets of completed requests, not Locust's running totals.",
                f"Expected slots: {SLOTS_RULES}.",
                "Expected throughput: I/O min(users, slots) / request time; CPU min(users, "
                "processes, cores) / CPU time per request (one thread per process runs Python "
                "at a time); mixed: the smaller of both. For the built-in app the request time "
                "and CPU time are the workload's own (server overhead is not modelled); for any "
                "other workload both are measured at its lowest user step (time inside the app "
                "from the gauge, CPU per request from the target's CPU use over throughput, "
                "medians over targets), and the expectation is derived from them.",
                "Throughput counts only requests that got a status they expect; every request "
                "of a workload was sent once, and had to get such a status, before its load.",
                "Latency percentiles are nearest-rank over response times rounded to three "
                "significant digits. Target CPU is percent of one core; load-generator CPU is "
                "percent of the CPUs the load side was given.",
                "Full data: summary.csv (one row per target x workload x users x repeat); raw "
                "files per cell under raw/.",
            )
        ),
    ]


def render_markdown(blocks: Sequence[Block], base: Path) -> str:
    out: list[str] = []
    for block in blocks:
        match block:
            case Heading(level, text):
                out.append(f"{'#' * level} {text}")
            case Paragraph(text):
                out.append(text)
            case Bullets(items):
                out.append("\n".join(f"- {item}" for item in items))
            case Table(headers, rows):
                lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                lines += [
                    "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
                    for row in rows
                ]
                out.append("\n".join(lines))
            case Image(path, alt):
                out.append(f"![{alt}]({path.relative_to(base).as_posix()})")
    return "\n\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} img{max-width:100%;display:block;margin:1em 0}
code{background:#f3f3f3;padding:0 3px}
"""


def _inline(text: str) -> str:
    """The little Markdown the sentences use: **bold** and `code`."""
    escaped = html.escape(text)
    parts = escaped.split("**")
    escaped = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(blocks: Sequence[Block], title: str) -> str:
    """One file: the charts are embedded, so it can be mailed or published as it is."""
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        match block:
            case Heading(level, text):
                out.append(f"<h{level}>{_inline(text)}</h{level}>")
            case Paragraph(text):
                out.append(f"<p>{_inline(text)}</p>")
            case Bullets(items):
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            case Table(headers, rows):
                head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                    for row in rows
                )
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            case Image(path, alt):
                data = base64.b64encode(path.read_bytes()).decode()
                out.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
    out.append("</body></html>")
    return "\n".join(out) + "\n"
