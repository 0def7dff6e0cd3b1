"""What the report says about the services beside the target: per workload a chart of the
requests in flight in the app against the database connections in use, a table of what each
service did, the clause of a target's sentence that names a pool cap where it binds, and where
the services ran."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flaskbench.measure.analyze import Analysis, Point
from flaskbench.measure.service_use import connections_capped
from flaskbench.report.blocks import Block, Paragraph, Table, number
from flaskbench.report.charts import Chart, _plot
from flaskbench.report.prose import users_text
from flaskbench.results.contract import SERVICES_CSV, MetaJson
from flaskbench.results.rundir import atomic_write_text
from flaskbench.servers.server import Target

SERVICES_COLUMNS = (
    "run_id",
    "target",
    "workload",
    "users",
    "repeat",
    "service",
    "kind",
    "busy_peak",
    "busy_mean",
    "connections_peak",
    "cpu_pct",
    "pss_mb",
)


def write_services_csv(run_path: Path, analysis: Analysis) -> list[Path]:
    """services.csv: what each service did in each step of each cell (none without services)."""
    rows = [
        (
            analysis.data.run_id,
            *cell.cell_id.split("--")[:2],
            step.users,
            int(cell.cell_id.rsplit("--r", 1)[1]),
            use.name,
            use.kind,
            *(_cell(v) for v in (use.busy_peak, use.busy_mean, use.connections_peak)),
            *(_cell(v) for v in (use.cpu_pct, use.pss_mb)),
        )
        for cell in sorted(analysis.data.cells, key=lambda c: c.cell_id)
        for step in cell.steps
        for use in step.services
    ]
    if not rows:
        return []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SERVICES_COLUMNS)
    writer.writerows(rows)
    path = run_path / SERVICES_CSV
    atomic_write_text(path, buffer.getvalue())
    return [path]


def _cell(value: float | int | None) -> object:
    if value is None:
        return ""
    return round(value, 3) if isinstance(value, float) else value


def services_chart(points: Sequence[Point], workload: str, directory: Path) -> Chart | None:
    """Requests in flight in the app (solid) against database connections in use (dashed),
    one colour per target; only for a run with a database."""
    mine = [p for p in points if p.workload == workload]
    if not any(p.db_busy_peak is not None for p in mine):
        return None
    return _plot(
        mine,
        directory / f"{workload}-db.png",
        f"{workload}: in flight in the app (solid) vs DB connections busy (dashed)",
        "requests / connections",
        lambda p: p.peak_inflight_server,
        lambda p: p.db_busy_peak,
        dashed_label="DB busy",
    )


def pool_cap(series: Sequence[Point]) -> tuple[int, Point] | None:
    """The cap on database connections, and the step where it bound, if requests waited in the
    app for one: the most connections the target ever held busy at once, reached at a step
    where more requests were in flight and they were all busy (connections_capped)."""
    cap = max((p.db_busy_peak or 0 for p in series), default=0)
    binding = [
        p
        for p in series
        if p.db_busy_peak == cap
        and connections_capped(p.peak_inflight_server, p.db_busy_peak, p.db_busy_mean)
    ]
    return (cap, max(binding, key=lambda p: p.users)) if binding else None


def pool_clause(target: Target, series: Sequence[Point]) -> str:
    """A sentence for the target's line: where the database's connections capped what the app
    held, or how many of its requests held one."""
    found = pool_cap(series)
    if found is None:
        held = max((p.db_busy_peak or 0 for p in series), default=0)
        if not held:
            return ""
        return f" Up to {held} of its requests held a database connection at once."
    cap, point = found
    if target.workers == 1:
        inflight = f"{point.peak_inflight_process} requests in flight per process"
    else:
        inflight = (
            f"{point.peak_inflight_server} requests in flight server-wide "
            f"({point.peak_inflight_process} per process)"
        )
    pools = "the pool caps it" if target.workers == 1 else "the processes' pools cap it"
    return (
        f" With {users_text(point.users)}: {inflight}, at most {cap} of them holding a "
        f"database connection: {pools} (the others waited inside the app for one)."
    )


def services_table(points: Sequence[Point], order: Sequence[str]) -> list[Block]:
    """Every step's services: connections in use against requests in flight, CPU, memory."""
    rows = tuple(
        (
            p.target,
            str(p.users),
            f"{number(p.peak_inflight_process)} / {number(p.peak_inflight_server)}",
            f"{number(p.db_busy_peak)} ({number(p.db_busy_mean)})",
            number(p.db_connections_peak),
            number(p.cache_connections_peak),
            number(p.services_cpu_pct, 0),
            number(p.services_pss_mb, 0),
        )
        for name in order
        for p in sorted(points, key=lambda p: p.users)
        if p.target == name and (p.db_busy_peak is not None or p.cache_connections_peak is not None)
    )
    if not rows:
        return []
    return [
        Paragraph(
            "The services beside the target: database connections busy (running a statement or "
            "inside a transaction: lent out by the app's pool), the most at once and the mean, "
            "against the requests in flight in the app; connections open; their CPU (percent "
            "of one core) and memory (their processes' PSS), all services together."
        ),
        Table(
            (
                "target",
                "users",
                "in flight process / server",
                "DB busy peak (mean)",
                "DB connections",
                "cache connections",
                "services CPU %",
                "services MB",
            ),
            rows,
        ),
    ]


def services_provenance(meta: MetaJson) -> list[Block]:
    """Which services ran, their versions, where and on which CPUs."""
    services = meta.get("services") or {}
    if not services:
        return []
    found: Mapping[str, Any] = meta.get("runner", {}).get("details", {}).get("services", {})
    cpus = meta.get("cpus", {}).get("services", "?")
    described = []
    for name, service in services.items():
        details = found.get(name, {})
        source = details.get("program") or details.get("image") or "?"
        lifetime = "a fresh one per cell" if service.get("per_cell", True) else "one for the run"
        settings = ", ".join(f"{k} = {v}" for k, v in service.get("settings", {}).items())
        described.append(
            f"{name} ({service.get('kind')} {details.get('version', '?')}, {lifetime}, from "
            f"{source}{f'; {settings}' if settings else ''})"
        )
    return [
        Paragraph(
            f"Services beside the target, on CPU {cpus}: {'; '.join(described)}. Connections "
            "were sampled ten times a second (Postgres: pg_stat_activity's client sessions, "
            "the sampler's own left out; Redis: INFO clients), CPU and memory once a second."
        )
    ]
