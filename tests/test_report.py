"""Report rendering: the answer first, generated sentences, charts, flags; md and one-file html."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from fakerun import Step, make_run

from flaskbench.analyze import SUMMARY_COLUMNS, analyze_run
from flaskbench.collect import load_run
from flaskbench.report import write_outputs


def build(tmp_path: Path) -> tuple[Path, str, str]:
    run = make_run(
        tmp_path / "run",
        {
            # sync with 2 workers: one request per process, saturating at 20 req/s.
            "sync--io--r1": [
                Step(users=1, rps=10, latency_ms=100, processes=[(101, 1, 100)]),
                Step(users=4, rps=20, latency_ms=200, processes=[(101, 1, 100), (102, 1, 100)]),
                Step(users=16, rps=20, latency_ms=800, processes=[(101, 1, 100), (102, 1, 100)]),
            ],
            # gthread 2x4 falling short: one worker serves 90% of the requests.
            "gthread--io--r1": [
                Step(users=1, rps=10, latency_ms=100, processes=[(201, 1, 100)]),
                Step(users=4, rps=40, latency_ms=100, processes=[(201, 4, 400)]),
                Step(
                    users=16,
                    rps=45,
                    latency_ms=355,
                    processes=[(201, 4, 900), (202, 1, 100)],
                    loadgen_cpu=95,
                ),
            ],
        },
    )
    write_outputs(run, analyze_run(load_run(run)))
    return run.path, (run.path / "report.md").read_text(), (run.path / "report.html").read_text()


def test_summary_csv_is_tidy(tmp_path: Path) -> None:
    path, _, _ = build(tmp_path)
    with (path / "summary.csv").open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == SUMMARY_COLUMNS
    assert len(rows) == 6
    sync16 = next(r for r in rows if r["target"] == "sync" and r["users"] == "16")
    assert sync16["rps"] == "20.0"
    assert sync16["peak_inflight_process"] == "1"
    assert sync16["peak_inflight_server"] == "2"
    assert sync16["expected_slots"] == "2"
    assert sync16["valid"] == "true"


def test_the_answer_comes_first_with_sentences_from_the_data(tmp_path: Path) -> None:
    _, markdown, _ = build(tmp_path)
    assert markdown.index("## The answer") < markdown.index("## Charts")
    assert (
        "**sync** (gunicorn sync, 2 workers) never had more than 1 request in flight per "
        "process and 2 server-wide; its model allows 2"
    ) in markdown
    assert "Throughput peaked at 20.0 req/s with 4 users (100% of the expected 20.0)" in markdown
    # gthread fell short at its peak and the report gives the cause it measured there.
    assert "**gthread** (gunicorn gthread, 2 workers x 4 threads)" in markdown
    assert "16 users 56% (the load generator was CPU-bound (95%)" in markdown


def test_shortfall_cause_uneven_workers(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "run",
        {
            "gthread--io--r1": [
                Step(users=16, rps=45, latency_ms=355, processes=[(201, 4, 900), (202, 1, 100)])
            ]
        },
    )
    write_outputs(run, analyze_run(load_run(run)))
    markdown = (run.path / "report.md").read_text()
    assert (
        "16 users 56% (uneven spread: one worker was full (4 in flight) while the server held "
        "only 5 of 8 (busiest worker served 90% of requests, even is 50%))"
    ) in markdown


def test_flagged_cells_are_listed_and_explained(tmp_path: Path) -> None:
    _, markdown, _ = build(tmp_path)
    flagged = markdown[markdown.index("## Flagged measurements") :]
    assert "| gthread | io | 16 | 1 |" in flagged
    assert "`loadgen_cpu`: the load generator used more than 85%" in flagged


def test_charts_exist_and_html_is_self_contained(tmp_path: Path) -> None:
    path, markdown, page = build(tmp_path)
    for name in ("throughput", "latency", "inflight", "cpu"):
        chart = path / "charts" / f"io-{name}.png"
        assert chart.read_bytes().startswith(b"\x89PNG")
        assert f"](charts/io-{name}.png)" in markdown
    assert page.count("data:image/png;base64,") == 5
    # Nothing to fetch: no external scripts, styles or images.
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<table>" in page
    assert "<strong>sync</strong>" in page
