"""Publish runs and comparisons as a static site: plain files, relative links, nothing fetched.

Every file is copied with its SHA-256 checked against what the run (meta.json) or comparison
(comparison.json) recorded when it was written, so a changed file is refused, named, and
nothing of it reaches the site. Publishing again adds entries; pages already on the site are
never rewritten, only the index that lists them.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flaskbench.report.blocks import html_page
from flaskbench.report.comparison import COMPARISON_JSON
from flaskbench.results.contract import META_JSON, SUMMARY_CSV
from flaskbench.results.rundir import (
    RunDir,
    RunDirError,
    atomic_write_json,
    atomic_write_text,
    sha256_file,
    verify,
)

SITE_JSON = "site.json"
FILES_PAGE = "files.html"


class PublishError(Exception):
    """A source that cannot be published; the message names it and says why."""


@dataclass(frozen=True)
class Link:
    text: str
    href: str


@dataclass(frozen=True)
class Entry:
    """One published run or comparison, as the index lists it (kept in site.json)."""

    kind: str  # "run" or "comparison"
    id: str
    date: str
    # Column -> text, in the order the index shows them.
    details: dict[str, str]
    links: tuple[Link, ...]


@dataclass(frozen=True)
class Source:
    """A checked source: what to copy (relative path -> SHA-256) and how to list it."""

    path: Path
    kind: str
    id: str
    files: dict[str, str]
    entry: Entry

    @property
    def destination(self) -> str:
        return f"{'runs' if self.kind == 'run' else 'comparisons'}/{self.id}"


@dataclass(frozen=True)
class Published:
    added: tuple[str, ...]
    # Already on the site: left exactly as they were.
    kept: tuple[str, ...]
    index: Path


def sources_in(results: Path) -> list[Path]:
    """Every run and comparison directly under a results directory."""
    if not results.is_dir():
        raise PublishError(f"{results}: no such directory; name the runs to publish")
    return sorted(
        p for p in results.iterdir() if (p / META_JSON).is_file() or (p / COMPARISON_JSON).is_file()
    )


def publish(paths: Sequence[Path], site: Path) -> Published:
    """Check every source first, then copy; a single bad source stops the whole publish."""
    sources = [check_source(path) for path in paths]
    site.mkdir(parents=True, exist_ok=True)
    entries = read_site(site)
    added, kept = [], []
    for source in sources:
        key = f"{source.kind}:{source.id}"
        if key in entries or (site / source.destination).exists():
            kept.append(source.destination)
            continue
        copy_source(source, site)
        entries[key] = source.entry
        added.append(source.destination)
    atomic_write_json(
        site / SITE_JSON, {"format": 1, "entries": [asdict(e) for e in entries.values()]}
    )
    (site / ".nojekyll").touch()
    index = site / "index.html"
    atomic_write_text(index, render_index(entries.values(), site))
    return Published(tuple(added), tuple(kept), index)


def read_site(site: Path) -> dict[str, Entry]:
    path = site / SITE_JSON
    if not path.exists():
        if any(site.iterdir()):
            raise PublishError(
                f"{site}: not empty and not a flaskbench site (no {SITE_JSON}); "
                "publish into a new or empty directory"
            )
        return {}
    try:
        data = json.loads(path.read_text())
        entries = [
            Entry(
                e["kind"],
                e["id"],
                e["date"],
                dict(e["details"]),
                tuple(Link(**link) for link in e["links"]),
            )
            for e in data["entries"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PublishError(f"{path}: damaged ({exc!r}); publish into a new directory") from None
    return {f"{e.kind}:{e.id}": e for e in entries}


def check_source(path: Path) -> Source:
    if (path / COMPARISON_JSON).is_file():
        return _comparison_source(path)
    if (path / META_JSON).is_file():
        return _run_source(path)
    raise PublishError(f"{path}: neither a run (meta.json) nor a comparison ({COMPARISON_JSON})")


def _run_source(path: Path) -> Source:
    run = RunDir(path)
    try:
        meta = run.read_meta()
        problems = verify(run)
    except RunDirError as exc:
        raise PublishError(str(exc)) from None
    raw = _digests(meta.get("files"))
    outputs = _digests(meta.get("outputs"))
    if not outputs:
        problems.append(
            f"{run.meta_path}: records no SHA-256 of the report; rebuild it with "
            f"`flaskbench report {path}`"
        )
    problems += _changed(path, outputs, "the report was built")
    if problems:
        raise PublishError(f"refusing to publish the run {path}: " + "; ".join(problems))
    files = {**raw, **outputs, META_JSON: sha256_file(run.meta_path)}
    run_id = str(meta.get("run_id", path.name))
    return Source(path, "run", run_id, files, run_entry(run_id, meta, _read_summary(path)))


def _digests(recorded: object) -> dict[str, str]:
    if not isinstance(recorded, dict):
        return {}
    return {str(name): str(digest) for name, digest in recorded.items()}


def _comparison_source(path: Path) -> Source:
    record_path = path / COMPARISON_JSON
    try:
        record = json.loads(record_path.read_text())
        files = dict(record["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PublishError(
            f"{record_path}: damaged ({exc!r}); write the comparison again"
        ) from None
    problems = _changed(path, files, "the comparison was written")
    if problems:
        raise PublishError(f"refusing to publish the comparison {path}: " + "; ".join(problems))
    files[COMPARISON_JSON] = sha256_file(record_path)
    return Source(path, "comparison", path.name, files, comparison_entry(path.name, record))


def _changed(base: Path, recorded: Mapping[str, str], when: str) -> list[str]:
    problems = []
    for name, digest in sorted(recorded.items()):
        file = base / name
        if not file.is_file():
            problems.append(f"{file}: missing")
        elif sha256_file(file) != digest:
            problems.append(f"{file}: changed since {when} (SHA-256 differs)")
    return problems


def copy_source(source: Source, site: Path) -> None:
    """Copy into a temporary directory, checking every file's SHA-256 as it is written, then
    move it into place: the site never holds half a run."""
    final = site / source.destination
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{source.id}."))
    try:
        for name, digest in sorted(source.files.items()):
            data = (source.path / name).read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                raise PublishError(
                    f"refusing to publish {source.path}: {source.path / name} changed while "
                    "it was being published (SHA-256 differs)"
                )
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (staging / FILES_PAGE).write_text(files_page(source))
        staging.chmod(0o755)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _read_summary(path: Path) -> list[dict[str, str]]:
    try:
        with (path / SUMMARY_CSV).open(newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error):
        return []


def headline(summary: Iterable[Mapping[str, str]], order: Sequence[str] = ()) -> dict[str, str]:
    """Per workload, what one process of each target handled at most: `sync 1, gevent 64`;
    workloads and targets in `order` (the config's), then the rest."""
    peaks: dict[str, dict[str, int]] = defaultdict(dict)
    for row in summary:
        try:
            value = int(row["peak_inflight_process"])
        except (KeyError, ValueError):
            continue
        targets = peaks[row["workload"]]
        targets[row["target"]] = max(value, targets.get(row["target"], 0))

    def rank(name: str) -> tuple[int, str]:
        return (list(order).index(name) if name in order else len(order), name)

    return {
        workload: ", ".join(f"{t} {peaks[workload][t]}" for t in sorted(peaks[workload], key=rank))
        for workload in sorted(peaks, key=rank)
    }


def run_entry(run_id: str, meta: Mapping[str, Any], summary: Sequence[Mapping[str, str]]) -> Entry:
    machine = meta.get("machine", {})
    model = machine.get("model", {}) or {}
    cpus = meta.get("cpus", {})
    answer = headline(summary, [*meta.get("workloads", {}), *meta.get("targets", {})])
    return Entry(
        kind="run",
        id=run_id,
        date=str(meta.get("started", "")),
        details={
            "machine": " ".join(str(v) for v in (model.get("vendor"), model.get("product")) if v)
            or str(machine.get("cpu_model", "?")),
            "CPU": str(machine.get("cpu_model", "?")),
            "cores per side": (
                f"target {_count(cpus.get('target'))}, load {_count(cpus.get('load'))}"
            ),
            "runner": str(meta.get("runner", {}).get("name", "?")),
            "targets": ", ".join(meta.get("targets", {})),
            "peak in flight per process": "; ".join(f"{w}: {t}" for w, t in answer.items()) or "-",
        },
        links=(
            Link("report", f"runs/{run_id}/report.html"),
            Link("summary.csv", f"runs/{run_id}/summary.csv"),
            Link("raw data", f"runs/{run_id}/{FILES_PAGE}"),
        ),
    )


def _count(cpus: object) -> str:
    from flaskbench.config.units import parse_cpus

    try:
        return str(len(parse_cpus(cpus)))
    except (TypeError, ValueError):
        return "?"


def comparison_entry(name: str, record: Mapping[str, Any]) -> Entry:
    runs = record.get("runs", [])
    verdicts = record.get("verdicts", {})
    return Entry(
        kind="comparison",
        id=name,
        date=str(record.get("created", "")),
        details={
            "runs": " vs ".join(str(r.get("label", r.get("run_id"))) for r in runs),
            "run ids": ", ".join(str(r.get("run_id")) for r in runs),
            "what differs": ", ".join(record.get("differences", [])) or "nothing (A/A)",
            "verdicts": ", ".join(f"{verdicts.get(v, 0)} {v}" for v in ("faster", "slower", "same"))
            + f"; {record.get('flagged', 0)} flagged, not counted",
        },
        links=(
            Link("comparison", f"comparisons/{name}/comparison.html"),
            Link("comparison.csv", f"comparisons/{name}/comparison.csv"),
            Link("files", f"comparisons/{name}/{FILES_PAGE}"),
        ),
    )


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em;width:100%}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} code{font-size:0.85em}
"""


def _page(title: str, body: str) -> str:
    return html_page(title, body, _CSS)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Cells are HTML already (escaped by the caller)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _links(links: Iterable[Link], prefix: str = "") -> str:
    return " · ".join(
        f'<a href="{html.escape(prefix + link.href)}">{html.escape(link.text)}</a>'
        for link in links
    )


def render_index(entries: Iterable[Entry], site: Path) -> str:
    newest_first = sorted(entries, key=lambda e: e.date, reverse=True)
    parts = ["<h1>flaskbench results</h1>"]
    runs = [e for e in newest_first if e.kind == "run"]
    comparisons = [e for e in newest_first if e.kind == "comparison"]
    published_runs = {e.id for e in runs}
    parts.append("<h2>Runs</h2>")
    if runs:
        columns = [
            "date",
            "machine",
            "cores per side",
            "runner",
            "targets",
            "peak in flight per process",
        ]
        parts.append(
            _table(
                [*columns, "files"],
                (
                    [html.escape(e.date)]
                    + [html.escape(e.details.get(c, "-")) for c in columns[1:]]
                    + [_links(e.links)]
                    for e in runs
                ),
            )
        )
    else:
        parts.append("<p>No runs published yet.</p>")
    parts.append("<h2>Comparisons</h2>")
    if comparisons:
        columns = ["runs", "what differs", "verdicts"]
        parts.append(
            _table(
                ["date", *columns, "runs' reports", "files"],
                (
                    [html.escape(e.date)]
                    + [html.escape(e.details.get(c, "-")) for c in columns]
                    + [_run_links(e, published_runs), _links(e.links)]
                    for e in comparisons
                ),
            )
        )
    else:
        parts.append("<p>No comparisons published yet.</p>")
    parts.append(
        "<p>Every run's files were checked against the SHA-256 its meta.json recorded before "
        "they were published; <code>flaskbench verify runs/&lt;run&gt;</code> checks a "
        "downloaded copy again.</p>"
    )
    return _page("flaskbench results", "\n".join(parts))


def _run_links(entry: Entry, published: set[str]) -> str:
    ids = [i.strip() for i in entry.details.get("run ids", "").split(",") if i.strip()]
    return " · ".join(
        f'<a href="runs/{html.escape(i)}/report.html">{html.escape(i)}</a>'
        if i in published
        else html.escape(i) + " (not published)"
        for i in ids
    )


def files_page(source: Source) -> str:
    """Every published file of one run or comparison with its SHA-256, so raw data can be
    browsed on hosts that list no directories."""
    rows = (
        [f'<a href="{html.escape(name)}">{html.escape(name)}</a>', f"<code>{digest}</code>"]
        for name, digest in sorted(source.files.items())
    )
    back = '<p><a href="../../index.html">all results</a></p>'
    body = f"{back}<h1>{html.escape(source.id)}: files</h1>" + _table(("file", "SHA-256"), rows)
    return _page(f"{source.id}: files", body)
