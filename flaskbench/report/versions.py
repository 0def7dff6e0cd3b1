"""The report's word on server versions: which version of its server each target ran with and
where that version came from, the targets left out (and why), and, where targets differ only in
their server's version, those versions side by side per workload."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence

from flaskbench.measure.analyze import Analysis, Point, Row, StepKey
from flaskbench.measure.compare import trial_rows, within_change
from flaskbench.report.blocks import Block, Bullets, Heading, Paragraph, Table, with_interval
from flaskbench.results.contract import VERSION_SOURCES, ServerVersionRecord
from flaskbench.servers.registry import describe
from flaskbench.servers.server import Target


def left_out_notes(analysis: Analysis) -> list[Block]:
    """The targets no cell of which ran, each with its one line."""
    left = analysis.data.meta.get("targets_left_out") or {}
    if not left:
        return []
    return [
        Paragraph("Left out of this run (no cell of theirs ran; the other targets did):"),
        Bullets(tuple(f"**{name}**: {why}" for name, why in left.items())),
    ]


def source_text(record: ServerVersionRecord) -> str:
    """The server's distribution and version and where that version came from ("... 21.2.0,
    pinned by the app"), and what the app pins when a target asked for another version."""
    text = (
        f"{record['package']} {record['version'] or '?'}, "
        f"{VERSION_SOURCES.get(record['source'], record['source'])}"
    )
    pin = record.get("app_pin")
    if record["source"] == "target" and pin and pin != record["version"]:
        text += f" (the app pins {pin})"
    return text


def versions_section(analysis: Analysis) -> list[Block]:
    meta = analysis.data.meta
    records = meta.get("server_versions") or {}
    if not records:
        return []
    python = meta.get("app_python", "?")
    blocks: list[Block] = [
        Heading(2, "Server versions"),
        Paragraph(
            f"The app ran under Python {python}. Each target's server, the version that ran and "
            "where that version came from:"
        ),
        Table(
            ("target", "server version, and where it came from"),
            tuple((name, source_text(record)) for name, record in records.items()),
        ),
    ]
    for group in version_groups(analysis.data.targets, records):
        blocks += _side_by_side(analysis, group, records)
    return blocks


def version_groups(
    targets: Mapping[str, Target], records: Mapping[str, ServerVersionRecord]
) -> list[list[str]]:
    """Targets that differ only in their server's version, config order within each group."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name, target in targets.items():
        if name in records:
            key = [target.server, target.worker_class, dict(target.settings)]
            groups[json.dumps(key, sort_keys=True)].append(name)
    return [
        names for names in groups.values() if len({records[name]["version"] for name in names}) > 1
    ]


def _side_by_side(
    analysis: Analysis, names: Sequence[str], records: Mapping[str, ServerVersionRecord]
) -> list[Block]:
    """Per workload, every version's throughput and p99 at each step, and how each version
    after the first compares with it (a verdict only beyond the measurements' spread)."""
    first = analysis.data.targets[names[0]]
    versions = [records[name]["version"] or "?" for name in names]
    package = records[names[0]]["package"]
    blocks: list[Block] = [
        Paragraph(
            f"**{describe(first)}** with {package} "
            + ", ".join(versions)
            + " side by side (each version against the first, trial by trial where the run has "
            "several; faster or slower only where the 95% interval of the ratio excludes no "
            "change):"
        )
    ]
    trials = trial_rows(analysis)
    for workload in analysis.data.workloads:
        points = {
            (p.target, p.users): p
            for p in analysis.points
            if p.workload == workload and p.target in names
        }
        users = sorted({u for (_, u) in points})
        if not users:
            continue
        rows = tuple(_row(analysis, trials, u, names, points) for u in users)
        headers = (
            "users",
            *(f"{v} req/s" for v in versions),
            *(f"{v} p99 ms" for v in versions),
            *(f"{v} vs {versions[0]}" for v in versions[1:]),
        )
        blocks.append(Paragraph(f"{workload} ({analysis.data.workloads[workload].path}):"))
        blocks.append(Table(headers, rows))
    return blocks


def _row(
    analysis: Analysis,
    trials: Mapping[StepKey, dict[int, Row]],
    users: int,
    names: Sequence[str],
    points: Mapping[tuple[str, int], Point],
) -> tuple[str, ...]:
    found = [points.get((name, users)) for name in names]
    rps = [with_interval(p.rps, p.rps_ci) if p else "-" for p in found]
    p99 = [with_interval(p.p99_ms, p.p99_ci) if p else "-" for p in found]
    changes = []
    base = found[0]
    for point in found[1:]:
        if base is None or point is None:
            changes.append("-")
            continue
        said = []
        for metric, what in (("rps", "req/s"), ("p99_ms", "p99")):
            ratio, _, verdict = within_change(analysis, trials, base, point, metric)
            if ratio is not None:
                said.append(f"{what} {ratio - 1:+.1%} ({verdict})")
        changes.append(", ".join(said) or "-")
    return (str(users), *rps, *p99, *changes)
