"""Write a comparison: comparison.md, a self-contained comparison.html, the tidy comparison.csv,
overlay charts, and comparison.json (what was compared, with every output's SHA-256)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flaskbench.measure.analyze import FLAGS
from flaskbench.measure.compare import (
    METRICS,
    AnswerComparison,
    Comparison,
    Side,
    StepComparison,
    significant_share,
    step_load,
)
from flaskbench.measure.stats import DRAWS
from flaskbench.report.blocks import (
    Block,
    Bullets,
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
from flaskbench.report.charts import Chart, overlay_chart
from flaskbench.results.contract import CHARTS_DIR, META_JSON, iso
from flaskbench.results.rundir import atomic_write_json, atomic_write_text, sha256_file

COMPARISON_JSON = "comparison.json"
COMPARISON_FILES = ("comparison.md", "comparison.html", "comparison.csv")
CSV_COLUMNS = (
    "target",
    "workload",
    "users",
    "metric",
    "baseline",
    "other",
    "ratio",
    "ci_low",
    "ci_high",
    "verdict",
    "valid",
    "flags",
    "baseline_label",
    "other_label",
    "baseline_run",
    "other_run",
    "baseline_ci_low",
    "baseline_ci_high",
    "other_ci_low",
    "other_ci_high",
    # What the ratio's interval rests on ("trials", or "seconds" with a single trial on a side),
    # how many trials, and a cause the harness measured that differs between the sides.
    "basis",
    "trials",
    "note",
    # An open loop's step: the rate offered (requests per second; `users` holds it too). Last,
    # so the columns before it stay where readers of earlier comparisons found them.
    "offered_rps",
)
_METRIC_NAMES = {"rps": "req/s", "p99_ms": "p99 ms"}


def write_comparison(comparison: Comparison, out: Path) -> list[Path]:
    """Every output into `out` (created); returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    charts_dir = out / CHARTS_DIR
    charts_dir.mkdir(exist_ok=True)
    charts = comparison_charts(comparison, charts_dir)
    blocks = document(comparison, charts)
    title = "flaskbench comparison: " + " vs ".join(s.label for s in comparison.sides)
    written = [out / name for name in COMPARISON_FILES]
    atomic_write_text(written[0], render_markdown(blocks, out))
    atomic_write_text(written[1], render_html(blocks, title))
    atomic_write_text(written[2], comparison_csv(comparison))
    files = [*written, *(chart.path for chart in charts)]
    atomic_write_json(out / COMPARISON_JSON, comparison_record(comparison, out, files))
    return [*written, out / COMPARISON_JSON]


def comparison_record(comparison: Comparison, out: Path, files: Sequence[Path]) -> dict[str, Any]:
    """What publishing needs to list and check a comparison without reading the runs again."""
    valid = [s for s in comparison.steps if s.valid]
    return {
        "format": 1,
        "kind": "comparison",
        "created": iso(time.time()),
        "threshold": comparison.threshold,
        "runs": [
            {
                "run_id": side.run_id,
                "label": side.label,
                "path": str(side.path),
                "started": side.analysis.data.meta.get("started"),
                "meta_sha256": sha256_file(side.path / META_JSON),
            }
            for side in comparison.sides
        ],
        "differences": [d.key for d in comparison.differences],
        "verdicts": {v: sum(s.verdict == v for s in valid) for v in ("faster", "slower", "same")},
        "flagged": sum(not s.valid for s in comparison.steps),
        "files": {str(path.relative_to(out)): sha256_file(path) for path in files},
    }


def comparison_charts(comparison: Comparison, directory: Path) -> list[Chart]:
    """Per workload and metric, one figure overlaying every run."""
    workloads = list(
        dict.fromkeys(w for side in comparison.sides for w in side.analysis.data.workloads)
    )
    targets = list(
        dict.fromkeys(t for side in comparison.sides for t in side.analysis.data.targets)
    )
    matched = {(s.target, s.workload, s.users) for s in comparison.steps}
    charts = []
    for workload in workloads:
        runs = {
            side.label: [
                p for p in side.analysis.points if (p.target, p.workload, p.users) in matched
            ]
            for side in comparison.sides
        }
        if not any(p.workload == workload for points in runs.values() for p in points):
            continue
        for metric in METRICS:
            path = directory / f"{workload}-{metric.removesuffix('_ms')}.png"
            charts.append(overlay_chart(runs, workload, metric, targets, path))
    return charts


def comparison_csv(comparison: Comparison) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    run_ids = {side.label: side.run_id for side in comparison.sides}
    for step in comparison.steps:
        writer.writerow(
            {
                "target": step.target,
                "workload": step.workload,
                "users": step.users,
                "offered_rps": step.users if step.offered else "",
                "metric": step.metric,
                "baseline": _csv(step.baseline),
                "other": _csv(step.other),
                "ratio": _csv(step.ratio, 4),
                "ci_low": _csv(step.ci.low if step.ci else None, 4),
                "ci_high": _csv(step.ci.high if step.ci else None, 4),
                "verdict": step.verdict,
                "valid": "true" if step.valid else "false",
                "flags": ";".join(step.flags),
                "baseline_label": step.baseline_label,
                "other_label": step.other_label,
                "baseline_run": run_ids[step.baseline_label],
                "other_run": run_ids[step.other_label],
                "baseline_ci_low": _csv(step.baseline_ci.low if step.baseline_ci else None),
                "baseline_ci_high": _csv(step.baseline_ci.high if step.baseline_ci else None),
                "other_ci_low": _csv(step.other_ci.low if step.other_ci else None),
                "other_ci_high": _csv(step.other_ci.high if step.other_ci else None),
                "basis": step.basis,
                "trials": step.trials,
                "note": step.note,
            }
        )
    return buffer.getvalue()


def _csv(value: float | None, digits: int = 3) -> object:
    return "" if value is None else round(value, digits)


def document(comparison: Comparison, charts: Sequence[Chart]) -> list[Block]:
    """The comparison as blocks, each section a function, so a section is one line to add."""
    return [
        *_headline(comparison),
        *_differences(comparison),
        *_answers(comparison),
        *_steps(comparison),
        *_charts(charts),
        *_unmatched(comparison),
        *_flags_used(comparison),
        *_method(comparison),
    ]


def _run_line(side: Side, role: str) -> str:
    meta = side.analysis.data.meta
    return (
        f"**{side.label}** ({role}): run {side.run_id}, started {meta.get('started', '?')}, "
        f"{meta.get('runner', {}).get('name', '?')} runner"
    )


def _headline(comparison: Comparison) -> list[Block]:
    sides = comparison.sides
    blocks: list[Block] = [
        Heading(1, "Comparison: " + " vs ".join(s.label for s in sides)),
        Bullets(
            tuple(
                _run_line(side, "baseline" if i == 0 else "compared with the baseline")
                for i, side in enumerate(sides)
            )
        ),
    ]
    for other in sides[1:]:
        steps = [s for s in comparison.steps if s.other_label == other.label]
        valid = [s for s in steps if s.valid]
        counts = {v: sum(s.verdict == v for s in valid) for v in ("faster", "slower", "same")}
        share = significant_share(steps)
        blocks.append(
            Paragraph(
                f"**{other.label}** against **{sides[0].label}**: of {len(valid)} valid "
                f"comparisons (step x metric), {counts['faster']} faster, {counts['slower']} "
                f"slower, {counts['same']} without a significant difference"
                + (f" ({share:.0%} judged different)" if share is not None else "")
                + f"; {len(steps) - len(valid)} more involve a flagged step."
            )
        )
    return blocks


def _differences(comparison: Comparison) -> list[Block]:
    blocks: list[Block] = [Heading(2, "What differs between the runs")]
    if not comparison.differences:
        blocks.append(
            Paragraph(
                "Nothing in the runs' metadata differs: same machine, CPU split, runner, "
                "versions, git revision and settings. Any difference below is noise or a "
                "change the metadata cannot see (other load on the machine, for one)."
            )
        )
        return blocks
    blocks.append(
        Table(
            ("what", *(s.label for s in comparison.sides)),
            tuple((d.key, *d.values) for d in comparison.differences),
        )
    )
    return blocks


def _arrow(before: object, after: object) -> str:
    before, after = ("-" if v is None else v for v in (before, after))
    return str(before) if before == after else f"{before} → {after}"


def _answers(comparison: Comparison) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "The answer, run against run"),
        Paragraph(
            "Per target and workload: the most requests in flight per process and server-wide, "
            "the knee (fewest users reaching 95% of the peak) and the saturation throughput "
            "(the peak), baseline → other. The verdict is on the saturation throughput."
        ),
    ]
    rows = tuple(_answer_row(a) for a in comparison.answers)
    if rows:
        blocks.append(
            Table(
                (
                    "workload",
                    "target",
                    "runs",
                    "in flight / process",
                    "in flight / server",
                    "knee (users)",
                    "saturation req/s",
                    "ratio (95% interval)",
                    "verdict",
                    "flags at the peaks",
                ),
                rows,
            )
        )
    return blocks


def _answer_row(item: AnswerComparison) -> tuple[str, ...]:
    base, other = item.baseline, item.other
    return (
        item.workload,
        item.target,
        f"{item.baseline_label} → {item.other_label}",
        _arrow(base.peak_inflight_process, other.peak_inflight_process),
        _arrow(base.peak_inflight_server, other.peak_inflight_server),
        _arrow(base.knee_users, other.knee_users),
        f"{number(base.peak_rps)} → {number(other.peak_rps)}",
        ratio_with_interval(item.ratio, item.ci),
        item.verdict,
        ", ".join(item.flags) or "-",
    )


def _steps(comparison: Comparison) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Step by step"),
        Paragraph(
            "Values with their 95% intervals; ratio = other / baseline with its 95% interval. "
            "faster = more throughput or lower latency. Flagged steps are listed but do not "
            "count as valid comparisons."
        ),
    ]
    for other in comparison.sides[1:]:
        mine = [s for s in comparison.steps if s.other_label == other.label]
        for workload in dict.fromkeys(s.workload for s in mine):
            blocks.append(Heading(3, f"{workload}: {other.label} vs {comparison.baseline.label}"))
            blocks.append(_step_table([s for s in mine if s.workload == workload]))
    return blocks


def _step_table(steps: Sequence[StepComparison]) -> Table:
    return Table(
        (
            "target",
            "load",
            "metric",
            "baseline",
            "other",
            "ratio (95% interval)",
            "verdict",
            "trials",
            "flags",
        ),
        tuple(
            (
                s.target,
                s.load,
                _METRIC_NAMES[s.metric],
                with_interval(s.baseline, s.baseline_ci),
                with_interval(s.other, s.other_ci),
                ratio_with_interval(s.ratio, s.ci),
                (f"**{s.verdict}**" if s.verdict != "same" else s.verdict)
                + (f" ({s.note})" if s.note else ""),
                str(s.trials) if s.basis == "trials" else "1 (seconds)",
                ", ".join(s.flags) or "-",
            )
            for s in steps
        ),
    )


def _charts(charts: Sequence[Chart]) -> list[Block]:
    if not charts:
        return []
    return [Heading(2, "Charts"), *(Image(chart.path, chart.title) for chart in charts)]


def _unmatched(comparison: Comparison) -> list[Block]:
    if not comparison.unmatched:
        return [Heading(2, "Only in one run"), Paragraph("Every step was matched.")]
    offered = {
        (p.target, p.workload, p.users)
        for side in comparison.sides
        for p in side.analysis.points
        if p.offered_rps is not None
    }

    return [
        Heading(2, "Only in one run"),
        Bullets(
            tuple(
                f"**{label}**: "
                + ", ".join(f"{t} {w} {step_load(u, (t, w, u) in offered)}" for t, w, u in keys)
                for label, keys in comparison.unmatched.items()
            )
        ),
    ]


def _flags_used(comparison: Comparison) -> list[Block]:
    used = sorted({f for s in comparison.steps for f in s.flags})
    if not used:
        return []
    return [
        Heading(2, "Flags"),
        Bullets(tuple(f"`{flag}`: {FLAGS.get(flag, flag)}" for flag in used)),
    ]


def _method(comparison: Comparison) -> list[Block]:
    return [
        Heading(2, "Method"),
        Bullets(
            (
                "Steps are matched by target, workload and user count; the first run is the "
                "baseline. A workload name must mean the same request in every run.",
                "Where both runs made several trials, a step's intervals and the ratio's come "
                "from the variation between trials (Student's t on the logarithms of the "
                "trials' values; for the ratio, Welch's t, since the runs' trials are not "
                "paired), which carries what changes from one run of a cell to the next. With a "
                f"single trial on a side, from {DRAWS} bootstrap resamples of the measured "
                "window's per-second buckets, in blocks of consecutive seconds (cube root of "
                "the window's length), the two runs' resamples divided resample by resample: "
                "noise within the runs only. The trials column says which.",
                f"Verdict: faster or slower only when the ratio's interval excludes 1 and the "
                f"ratio moves by at least {comparison.threshold:.0%} (--threshold); otherwise "
                "no significant difference (same).",
                "Two runs made one after the other meet different neighbours: to compare two "
                "things on one machine, make them targets of one run with `[compare]`, whose "
                "trials interleave them and pair them trial by trial. `make compare-check` "
                "measures how often a comparison is wrong on the machine at hand (the README "
                "gives the latest figures).",
            )
        ),
    ]
