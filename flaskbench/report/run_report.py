"""Write summary.csv, the charts, report.md and a self-contained report.html from an analysis.

The report leads with the answer: per workload, how many requests each target really had in
flight, what the model predicted, where it saturated and, where it fell short, the cause that
was measured. Every sentence is generated from the numbers.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flaskbench.config.trials import DEFAULT_THRESHOLD
from flaskbench.config.units import parse_share
from flaskbench.measure.analyze import (
    FLAGS,
    INTERFERENCE_LIMIT_PCT,
    SUMMARY_COLUMNS,
    Analysis,
    Point,
    Row,
    Skipped,
)
from flaskbench.measure.compare import compare_within
from flaskbench.measure.recommend import GoalSpec, recommend
from flaskbench.measure.stats import CONFIDENCE, DRAWS, block_length
from flaskbench.report.blocks import (
    Block,
    Bullets,
    Code,
    Gallery,
    Group,
    Heading,
    Image,
    Paragraph,
    Table,
    number,
    ratio_with_interval,
    render_html,
    render_markdown,
    with_interval,
)
from flaskbench.report.charts import Chart, headline_chart, open_loop_charts, workload_charts
from flaskbench.report.production import (
    cpu_cell,
    open_loop_blocks,
    proxy_comparison,
    proxy_notes_blocks,
    transfer_notes,
)
from flaskbench.report.prose import (
    counted,
    per_process_cap,
    process_line,
    sentence,
    slots_text,
    users_text,
)
from flaskbench.report.service_blocks import (
    pool_clause,
    services_chart,
    services_provenance,
    services_table,
    write_services_csv,
)
from flaskbench.report.versions import left_out_notes, versions_section
from flaskbench.results.contract import (
    CHARTS_DIR,
    RECOMMENDATION_JSON,
    REPORT_HTML,
    REPORT_MD,
    GitRevision,
    ImagesRecord,
    MetaJson,
    TrialsRecord,
)
from flaskbench.results.rundir import RunDir, atomic_write_json, atomic_write_text
from flaskbench.servers.registry import describe, server_of, slots_rules
from flaskbench.servers.server import Target


def write_outputs(run: RunDir, analysis: Analysis) -> list[Path]:
    """summary.csv, charts/, report.md, report.html; returns the paths written."""
    write_summary(run.summary_path, analysis)
    charts_dir = run.path / CHARTS_DIR
    charts_dir.mkdir(exist_ok=True)
    charts = {
        name: (open_loop_charts if workload.open_loop else workload_charts)(
            analysis.points, name, charts_dir
        )
        + [c for c in [services_chart(analysis.points, name, charts_dir)] if c]
        for name, workload in analysis.data.workloads.items()
    }
    goal = GoalSpec.from_meta(analysis.data.meta)
    picks = recommend(analysis, goal) if goal else []
    blocks = document(
        analysis,
        charts,
        _headline_chart(analysis, charts_dir),
        _recommendation(analysis, goal, picks) if goal else [],
    )
    markdown = run.path / REPORT_MD
    page = run.path / REPORT_HTML
    atomic_write_text(markdown, render_markdown(blocks, run.path))
    atomic_write_text(page, render_html(blocks, f"flaskbench {analysis.data.run_id}"))
    written = [run.summary_path, markdown, page, *write_services_csv(run.path, analysis)]
    if goal:
        path = run.path / RECOMMENDATION_JSON
        atomic_write_json(path, {"goal": asdict(goal), "workloads": picks})
        written.append(path)
    return written


def write_summary(path: Path, analysis: Analysis) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    measured: list[Row | Skipped] = [*analysis.rows, *analysis.skipped]
    measured.sort(key=_summary_order)
    writer.writerows(row.as_csv() for row in measured)
    atomic_write_text(path, buffer.getvalue())


def _summary_order(row: Row | Skipped) -> tuple[str, str, int, int]:
    target = row.target if isinstance(row, Row) else row.target.name
    return (row.workload, target, row.users, row.repeat)


def document(
    analysis: Analysis,
    charts: dict[str, list[Chart]],
    headline: Chart | None = None,
    recommendation: Sequence[Block] = (),
) -> list[Block]:
    """The report: the answer on the first screen (with a goal, the recommendation first), then
    the details folded by workload. Each section is a function, so adding one is one line."""
    return [
        Heading(1, "How many concurrent requests does one Flask process handle?"),
        *recommendation,
        *_headline(analysis, headline),
        *_status_notes(analysis),
        *left_out_notes(analysis),
        *_workloads(analysis, charts),
        *_within(analysis),
        *versions_section(analysis),
        *_flagged(analysis),
        *_hosts(analysis),
        *_method(analysis),
        *_provenance_section(analysis),
    ]


def headline_workload(analysis: Analysis) -> str | None:
    """The workload the first screen answers on: the I/O one, where worker models differ most
    (a closed loop: an open loop's steps are rates, not users)."""
    measured = {p.workload for p in analysis.points}
    names = [
        w for w, found in analysis.data.workloads.items() if w in measured and not found.open_loop
    ]
    io = [w for w in names if analysis.data.workloads[w].kind == "io"]
    return next(iter(io or names), None)


def _headline_chart(analysis: Analysis, directory: Path) -> Chart | None:
    workload = headline_workload(analysis)
    if workload is None:
        return None
    caps = {name: per_process_cap(t) for name, t in analysis.data.targets.items()}
    return headline_chart(analysis.points, workload, caps, directory / "headline-inflight.png")


def _headline(analysis: Analysis, chart: Chart | None) -> list[Block]:
    """The first screen: one chart and one line per target on what one process handled."""
    name = headline_workload(analysis)
    if name is None:
        return [Paragraph("No step of this run has measurements; see the notes below.")]
    workload = analysis.data.workloads[name]
    points = [p for p in analysis.points if p.workload == name]
    blocks: list[Block] = [Image(chart.path, chart.title)] if chart else []
    blocks.append(Paragraph(f"What one process handled on **{name}** ({workload.path}):"))
    blocks.append(
        Bullets(
            tuple(
                process_line(analysis.data.targets[t], series)
                + pool_clause(analysis.data.targets[t], series)
                for t, series in _by_target(points, list(analysis.data.targets)).items()
            )
        )
    )
    blocks.append(Paragraph(_short_provenance(analysis)))
    return blocks


def _short_provenance(analysis: Analysis) -> str:
    meta = analysis.data.meta
    machine = meta.get("machine", {})
    return (
        f"Run {analysis.data.run_id} ({meta.get('runner', {}).get('name', '?')} runner) on "
        f"{_machine_name(machine)}: target on CPU {meta['cpus']['target']}, load generator on "
        f"CPU {meta['cpus']['load']}. Details, method and provenance below."
    )


def _machine_name(machine: Mapping[str, Any]) -> str:
    model = machine.get("model") or {}
    product = " ".join(str(v) for v in (model.get("vendor"), model.get("product")) if v)
    cpu = f"{machine.get('cpu_model', '?')}, {machine.get('cpu_count', '?')} CPUs"
    return f"{product} ({cpu})" if product else cpu


def _workloads(analysis: Analysis, charts: dict[str, list[Chart]]) -> list[Block]:
    """Per workload, folded: the answer table, the sentences, the charts side by side, and
    every step."""
    blocks: list[Block] = [
        Heading(2, "The answer, per workload"),
        Paragraph(
            "Requests in flight are counted inside the app, from the call of the WSGI app until "
            "the last chunk of its response is handed to the server, exactly (every change is "
            "seen), per process and server-wide. Expected slots come from the worker model, "
            "expected throughput from it and what a request costs (see Method). Saturation is "
            "where throughput reaches 95% of its peak (the knee). Ranges in brackets are 95% "
            "intervals."
        ),
        *_code_basis_notes(analysis),
        *_server_notes(analysis),
        *proxy_notes_blocks(analysis),
    ]
    first = headline_workload(analysis)
    for workload in analysis.data.workloads.values():
        points = [p for p in analysis.points if p.workload == workload.name]
        if not points:
            continue
        images = tuple(Image(chart.path, chart.title) for chart in charts.get(workload.name, []))
        gallery = [Gallery(images)] if images else []
        if workload.open_loop:
            parts: list[Block] = [
                *_workload_notes(analysis, workload.name),
                *open_loop_blocks(analysis, workload, points),
                *proxy_comparison(analysis, workload),
                *gallery,
            ]
        else:
            parts = [
                *_workload_notes(analysis, workload.name),
                _answer_table(analysis, workload.name, points),
                _sentences(analysis, workload.name, points),
                *transfer_notes(analysis, workload),
                *proxy_comparison(analysis, workload),
                *gallery,
                _step_table(analysis, points),
                *services_table(points, list(analysis.data.targets)),
            ]
        manner = f"; {workload.manner}" if workload.manner else ""
        blocks.append(
            Group(
                f"{workload.name} ({workload.path}{manner})",
                tuple(parts),
                open=workload.name == first,
            )
        )
    return blocks


def _sentences(analysis: Analysis, workload: str, points: Sequence[Point]) -> Bullets:
    data = analysis.data
    return Bullets(
        tuple(
            sentence(data.targets[t], ps, analysis.knees.get((t, workload)), data.target_cores)
            + pool_clause(data.targets[t], ps)
            for t, ps in _by_target(points, list(data.targets)).items()
        )
    )


def _provenance_section(analysis: Analysis) -> list[Block]:
    return [
        Heading(2, "Provenance"),
        Paragraph(_provenance(analysis)),
        *services_provenance(analysis.data.meta),
        *_noise(analysis),
    ]


def _noise(analysis: Analysis) -> list[Block]:
    """How noisy the machine was: CPU steal and other processes per side, and its clocks."""
    machine = analysis.data.meta.get("machine", {})
    frequency = machine.get("cpufreq") or {}
    clocks = (
        f"CPU frequency driver {frequency.get('driver')}, governor {frequency.get('governor')}"
        if frequency.get("driver") or frequency.get("governor")
        else "CPU frequency driver and governor not visible on this host"
    )
    steal = _worst(analysis, "steal")
    if steal is None:
        return [
            Paragraph(
                f"Machine: {_machine_name(machine)}. {clocks}. CPU steal time was not recorded."
            )
        ]
    stolen = sum("steal" in r.flags for r in analysis.rows)
    contended = sum("cpu_contention" in r.flags for r in analysis.rows)
    return [
        Paragraph(
            f"Machine: {_machine_name(machine)}. {clocks}. CPU steal time, highest step: {steal}; "
            f"other processes on the sides' CPUs, highest step: {_worst(analysis, 'others')}. "
            "Either counts where the side needed its CPUs: "
            f"{counted(stolen, 'step was', 'steps were')} flagged `steal`, "
            f"{counted(contended, 'step', 'steps')} `cpu_contention`; the rest is noise that "
            "varies from trial to trial."
        )
    ]


def _worst(analysis: Analysis, measure: str) -> str | None:
    """The highest step of a per-side measure (`steal` or `others`), both sides, or None."""
    worst = {
        side: _max_of_float(getattr(r, f"{side}_{measure}_pct") for r in analysis.rows)
        for side in ("target", "load")
    }
    if all(v is None for v in worst.values()):
        return None
    return ", ".join(f"{side} {number(value, 1)}%" for side, value in worst.items())


def _max_of_float(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _provenance(analysis: Analysis) -> str:
    meta = analysis.data.meta
    machine = meta.get("machine", {})
    packages = ", ".join(f"{k} {v}" for k, v in meta["packages"].items() if v)
    stairs = meta["staircase"]
    revision = _revision(meta["git"]) or "unknown"
    return (
        f"Run {analysis.data.run_id}, {meta.get('started', '?')} to {meta.get('ended', '?')}, "
        f"{meta.get('runner', {}).get('name', '?')} runner on {machine.get('cpu_model', '?')} "
        f"({machine.get('cpu_count', '?')} CPUs). Target pinned to CPU {meta['cpus']['target']}, "
        "load generator (Locust, "
        f"{counted(meta.get('locust_workers', '?'), 'worker process', 'worker processes')}) to "
        f"CPU {meta['cpus']['load']}. Each step held {stairs.get('warmup_s', '?')} s of warmup, "
        f"then measured for {stairs.get('measure_s', '?')} s; "
        f"{_trials_text(meta)}. "
        f"flaskbench {meta.get('tool', {}).get('version', '?')} at git {revision}; "
        f"Python {meta.get('python', '?')}; {packages}. {_app_line(meta)}"
    )


def _recommendation(analysis: Analysis, goal: GoalSpec, picks: list[dict[str, Any]]) -> list[Block]:
    """What to run per workload under the goal, and why every other target was left out."""
    budget = f", memory within {goal.max_rss_mb:g} MB" if goal.max_rss_mb else ""
    errors = (
        f"{goal.max_error_rate:.1%} of requests failing" if goal.max_error_rate else "no failure"
    )
    blocks: list[Block] = [
        Heading(2, "Recommendation"),
        Paragraph(
            f"Goal: p99 latency within {goal.p99_ms:g} ms at {users_text(goal.users)}"
            f"{f' (open loops: at {goal.rate} req/s offered)' if goal.rate else ''}{budget}, "
            f"{errors}; among the targets that hold it with a valid measurement, the one with "
            "the highest throughput (a tie within the measurements' spread goes to less "
            "memory, then fewer processes). Also in recommendation.json."
        ),
    ]
    targets = analysis.data.targets
    for pick in picks:
        blocks.append(Paragraph(_pick_sentence(pick, targets, analysis.data.target_cores, goal)))
        if pick["excluded"]:
            blocks.append(
                Table(
                    ("left out", "why"),
                    tuple((e["target"], e["reason"]) for e in pick["excluded"]),
                )
            )
    return blocks


def _pick_sentence(
    pick: dict[str, Any], targets: dict[str, Target], cores: int, goal: GoalSpec
) -> str:
    workload = pick["workload"]
    if pick["target"] is None:
        text = f"**{workload}**: no target holds the goal."
        closest = pick["closest"]
        if closest:
            text += f" Closest: **{closest['target']}**, which misses by {closest['misses_by']}."
        return text
    target = targets[pick["target"]]
    memory = f", {pick['rss_mb']:.0f} MB" if pick["rss_mb"] is not None else ""
    text = (
        f"**{workload}**: run **{target.name}** ({describe(target)}): {number(pick['rps'])} req/s "
        f"with p99 {number(pick['p99_ms'], 0)} ms at {_pick_level(pick)}{memory}."
    )
    runner_up = pick["runner_up"]
    if runner_up:
        margin = pick["margin"] or 0.0
        verdict = (
            "too close to call: within the spread of the measurements"
            if pick["too_close_to_call"]
            else "beyond the spread of the measurements"
        )
        text += (
            f" Runner-up: {runner_up['target']} at {number(runner_up['rps'])} req/s "
            f"({margin:+.1%}; {verdict})."
        )
    thumb = pick["rule_of_thumb"]
    if thumb:
        rule, whose = thumb["rule"], f"{thumb['by']}'s rule of thumb"
        if thumb["target"] == target.name:
            text += f" It is {whose}, {rule}."
        elif thumb["excluded"]:
            text += (
                f" {whose[0].upper()}{whose[1:]}, {rule} ({thumb['target']}), was left out: "
                f"{thumb['excluded']}."
            )
        elif thumb["rps"]:
            text += (
                f" {whose[0].upper()}{whose[1:]}, {rule} ({thumb['target']}), made "
                f"{number(thumb['rps'])} req/s, {thumb['rps'] / pick['rps'] - 1:+.0%} against the "
                "pick."
            )
    return text


def _pick_level(pick: dict[str, Any]) -> str:
    """Where a pick was judged: at its users, or an open loop's offered rate."""
    unit = pick.get("unit", "users")
    return users_text(pick["users"]) if unit == "users" else f"{pick['users']} {unit}"


def _revision(git: GitRevision | None) -> str:
    """A commit as the report names it: its first 12 digits, and whether it had changes."""
    if git is None:
        return ""
    return git["commit"][:12] + (" (modified)" if git["dirty"] else "")


def _app_line(meta: MetaJson) -> str:
    """Which app was served, in the words of the config, with its Flask and Werkzeug."""
    app = meta["app"]
    if app["builtin"]:
        return "App: flaskbench's built-in app (targets/flaskbench_target/builtin_app.py)."
    revision = f", git {found}" if (found := _revision(app["git"])) else ""
    packages = meta.get("runner", {}).get("details", {}).get("app_packages", {})
    versions = ", ".join(
        f"{name} {version}"
        for name, version in sorted(packages.items())
        if name.lower() in ("flask", "werkzeug")
    )
    python = meta.get("app_python", "?")
    under = f" under Python {python}" if python != "?" else ""
    return (
        f"App: `{app.get('wsgi')}` from {app.get('path')}{revision}"
        f"{f'; it ran with {versions}' if versions else ''}{under}."
    )


def _code_basis_notes(analysis: Analysis) -> list[Block]:
    """Which targets' expected slots come from reading a server's code, not its documentation."""
    notes = tuple(
        f"**{name}**: {basis}."
        for name, target in analysis.data.targets.items()
        if (basis := server_of(target).code_basis(target))
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


def _server_notes(analysis: Analysis) -> list[Block]:
    """What the targets' servers do beyond their slots, where it shapes the measurements: a
    connection cap below the threads, a queue inside one worker, a backlog the staircase fills."""
    top = max(analysis.data.meta.get("staircase", {}).get("users") or [1])
    notes = tuple(
        f"**{name}**: {note}."
        for name, target in analysis.data.targets.items()
        for note in server_of(target).notes(target, top)
    )
    if not notes:
        return []
    return [Paragraph("What these servers do beyond their slots:"), Bullets(notes)]


def _workload_notes(analysis: Analysis, workload: str) -> list[Block]:
    """What a workload's expectations rest on, and how its users behave, when not obvious."""
    notes = []
    work = analysis.works.get(workload)
    if work is not None and work.basis == "measured":
        notes.append(
            f"Measured at {users_text(work.measured_at or 1)} (median over targets): each request "
            f"spent {number(work.service_ms, 1)} ms inside the app and cost "
            f"{number(work.cpu_ms, 1)} ms of target CPU (the server's own work included). The "
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


def _hosts(analysis: Analysis) -> list[Block]:
    """Which host ran what, what each is, how the images got there, and what each used; only
    when the sides ran on more than one host."""
    meta = analysis.data.meta
    hosts = meta.get("hosts") or []
    if len(hosts) < 2:
        return []
    rows = tuple(
        (
            str(host.get("name")),
            ", ".join(host.get("roles", [])),
            str(host.get("cpu_model", "?")),
            f"{host.get('cpus', '?')} ("
            + ", ".join(
                f"{side} {cpus}" for side, cpus in host.get("cpus_used", {}).items() if cpus
            )
            + ")",
            str(host.get("kernel", "?")),
            str(host.get("engine_version", "?")),
            f"{host.get('clock_offset_s', 0):+.3f} s",
        )
        for host in hosts
    )
    blocks: list[Block] = [
        Heading(2, "Hosts"),
        Paragraph(
            "Every side ran on its own Docker engine; the machine running flaskbench only "
            "talked to the engines. Step windows are on the Locust master's clock: workers "
            "stamp requests with the master's time (measured against it all through the run), "
            "and the target's gauge is shifted by the offset between the two hosts' engines."
        ),
        Table(
            ("host", "runs", "CPU model", "CPUs (used)", "kernel", "Docker", "clock vs here"),
            rows,
        ),
    ]
    if images := meta.get("runner", {}).get("details", {}).get("images"):
        blocks.append(Paragraph(_images_sentence(images)))
    usage = tuple(
        (
            cell.cell_id,
            str(step.users),
            use.host,
            ", ".join(use.sides),
            number(use.cpu_pct, 0),
            number(use.rss_mb, 0),
        )
        for cell in analysis.data.cells
        for step in cell.steps
        for use in step.hosts
    )
    if usage:
        blocks.append(Paragraph("What each host's containers used in each measured window:"))
        blocks.append(Table(("cell", "users", "host", "sides", "CPU %", "RSS MB"), usage))
    return blocks


def _images_sentence(images: ImagesRecord) -> str:
    ids = sorted(
        {image_id for tags in images.get("hosts", {}).values() for image_id in tags.values()}
    )
    listed = ", ".join(f"`{image_id[7:19]}`" for image_id in ids)
    if images.get("mode") == "build":
        same = (
            "every host ended up with the same image IDs"
            if images.get("same_image_ids")
            else "their image IDs differ from host to host (builds are not byte-for-byte "
            "reproducible), so the hosts ran equivalent, not identical, images"
        )
        return f"Images were built on each host from the same inputs; {same} ({listed})."
    return (
        f"Images were built once on {images.get('built_on')} and copied to every host with "
        "Docker's save and load, each checked by its image ID: every host ran the very same "
        f"images ({listed})."
    )


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
    blocks: list[Block] = [Paragraph("Not every cell finished cleanly:"), Bullets(tuple(notes))]
    for cell_id, traceback_text in sorted(data.app_errors.items()):
        blocks += [Paragraph(f"The app's first traceback in {cell_id}:"), Code(traceback_text)]
    return blocks


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
                number(max((p.peak_inflight_process or 0 for p in series), default=None)),
                number(max((p.peak_inflight_server or 0 for p in series), default=None)),
                slots_text(peak.expected_slots),
                with_interval(peak.rps, peak.rps_ci),
                number(peak.expected_rps) if peak.expected_rps else "-",
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
            "peak req/s (95% interval)",
            "expected req/s",
            "measured / expected",
            "knee (users)",
            "p99 doubles at (users)",
        ),
        tuple(rows),
    )


def _step_table(analysis: Analysis, points: Sequence[Point]) -> Table:
    """Every step of every target of one workload: medians over trials, 95% intervals, and the
    throughput range over trials."""
    rows: list[tuple[str, ...]] = [
        (
            p.target,
            str(p.users),
            with_interval(p.rps, p.rps_ci)
            + (f"; trials {number(p.rps_min)}-{number(p.rps_max)}" if p.repeats > 1 else ""),
            number(p.expected_rps),
            f"{p.rps_vs_expected:.0%}" if p.rps_vs_expected is not None else "-",
            number(p.p50_ms),
            with_interval(p.p99_ms, p.p99_ci),
            f"{number(p.peak_inflight_process)} / {number(p.peak_inflight_server)}",
            cpu_cell(p),
            number(p.target_rss_mb, 0),
            number(p.loadgen_cpu_pct, 0),
            ", ".join(p.flags) or "-",
        )
        for series in _by_target(points, list(analysis.data.targets)).values()
        for p in series
    ]
    workload = points[0].workload if points else None
    skipped = {
        (s.target.name, s.users): s.reason for s in analysis.skipped if s.workload == workload
    }
    rows += [
        (name, str(users), "skipped", *["-"] * 8, why) for (name, users), why in skipped.items()
    ]
    return Table(
        (
            "target",
            "users",
            "req/s (95% interval)",
            "expected",
            "measured / expected",
            "p50 ms",
            "p99 ms (95% interval)",
            "in flight process / server",
            "target CPU %",
            "target MB",
            "load CPU %",
            "flags",
        ),
        tuple(rows),
    )


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
                        number(r.rps),
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
                f"Expected slots: {slots_rules()}.",
                "Expected throughput: I/O min(users, slots) / request time; CPU min(users, "
                "processes, cores) / CPU time per request (one thread per process runs Python "
                "at a time); mixed: the smaller of both. Server overhead is not modelled.",
                "Latency percentiles are nearest-rank over response times rounded to three "
                "significant digits. Target CPU is percent of one core; load-generator CPU is "
                "percent of the CPUs the load side was given.",
                _interval_method(analysis),
                "CPU steal and other processes' time are read from the per-CPU lines of "
                "/proc/stat for each side's CPUs every second. A side loses to them only while "
                "it needs its CPUs: its estimated loss is the stolen share of its CPUs' runnable "
                "time (or others' share of them) times its own share; a step where either side "
                f"lost more than {INTERFERENCE_LIMIT_PCT:.0f}% is flagged.",
                "Full data: summary.csv (one row per target x workload x users x repeat); raw "
                "files per cell under raw/.",
            )
        ),
    ]


def _within(analysis: Analysis) -> list[Block]:
    """`[compare]`: every target against the baseline, step by step, paired by trial."""
    compared = analysis.data.meta["config"].get("compare")
    if not isinstance(compared, dict) or compared.get("baseline") not in analysis.data.targets:
        return []
    baseline = str(compared["baseline"])
    threshold = _threshold(compared.get("threshold"))
    steps = compare_within(analysis, baseline, threshold)
    trials = analysis.data.meta.get("trials")
    blocks: list[Block] = [
        Heading(2, f"Against {baseline}"),
        Paragraph(
            f"Every other target against **{baseline}**, step by step and trial by trial: both "
            "ran in the same trials, in shuffled orders, so the ratio of each trial takes out "
            "what the trial did to both (the machine's state, a neighbour). The interval is "
            "Student's t over those ratios (on their logarithms); a verdict needs it to exclude "
            f"1 and the ratio to move by at least {threshold:.0%}. " + _trials_sentence(trials)
        ),
        Table(
            (
                *("target", "workload", "users", "metric", baseline, "target's"),
                *("ratio", "verdict", "trials", "note"),
            ),
            tuple(
                (
                    c.target,
                    c.workload,
                    str(c.users),
                    c.metric,
                    number(c.baseline),
                    number(c.other),
                    ratio_with_interval(c.ratio, c.ci),
                    c.verdict if c.valid else f"{c.verdict} (flagged: {', '.join(c.flags)})",
                    str(c.trials),
                    c.note or "",
                )
                for c in steps
            ),
        ),
    ]
    return blocks


def _threshold(value: object) -> float:
    try:
        return parse_share(value) if value is not None else DEFAULT_THRESHOLD
    except ValueError:
        return DEFAULT_THRESHOLD


def _trials_sentence(trials: TrialsRecord | None) -> str:
    if trials is None:
        return ""
    ran = len(trials["order"])
    text = f"{ran} trials, their orders shuffled from seed {trials['seed']}"
    if trials["auto"]:
        why = {
            "decided": "every comparison was decided",
            "budget": "the budget was spent",
            "nothing to compare": "nothing was left to compare",
        }.get(trials["stopped"], "the run was stopped")
        text += f"; trials were added until {why}"
        if trials["undecided"]:
            text += f" (still undecided: {'; '.join(trials['undecided'])})"
    return text + "."


def _trials_text(meta: MetaJson) -> str:
    trials = meta.get("trials")
    ran = len(trials["order"]) if trials else meta["repeats"]
    seed = f", each in an order shuffled from seed {trials['seed']}" if trials else ""
    return counted(ran, "trial", "trials") + seed


def _interval_method(analysis: Analysis) -> str:
    repeats = max((p.repeats for p in analysis.points), default=1)
    seconds = analysis.data.meta.get("staircase", {}).get("measure_s")
    blocks = (
        f" in blocks of {block_length(int(seconds))} consecutive seconds"
        if isinstance(seconds, int)
        else " in blocks of consecutive seconds"
    )
    text = (
        f"{CONFIDENCE:.0%} intervals (throughput, p99) are bootstrap percentile intervals from "
        f"{DRAWS} resamples of each step's per-second buckets{blocks}, which keeps the "
        "correlation between neighbouring seconds; "
    )
    if repeats > 1:
        return (
            f"{CONFIDENCE:.0%} intervals (throughput, p99) come from the variation between the "
            f"{repeats} trials, each of which ran every cell once (a fresh server, new "
            "connections, the machine as it was then), not from the seconds inside one: "
            "Student's t on the logarithms of the trials' values. A step's value is the median "
            "over trials."
        )
    return text + (
        "with one trial they cover the noise within the run only, not what changes between "
        "runs (use several trials for that: `repeats`). Drawn with a fixed seed per step, so a "
        "rebuilt report is identical."
    )
