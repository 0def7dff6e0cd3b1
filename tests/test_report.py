"""Report rendering: the answer first, generated sentences, charts, flags; md and one-file html."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from browser import ARTIFACTS, dump_dom, screenshot
from fakerun import Step, make_run

from flaskbench.measure.analyze import SUMMARY_COLUMNS, analyze_run
from flaskbench.measure.collect import load_run
from flaskbench.report.run_report import write_outputs
from flaskbench.results.rundir import RunDir


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
    # First the headline chart and one line per target, then the details per workload.
    assert markdown.index("](charts/headline-inflight.png)") < markdown.index(
        "What one process handled on **io**"
    )
    assert (
        "- **sync** (gunicorn sync, 2 workers): at most **1** request in flight per process; "
        "its model allows 1.\n- **gthread** (gunicorn gthread, 2 workers x 4 threads): at most "
        "**4** requests in flight per process; its model allows 4."
    ) in markdown
    assert markdown.index("What one process handled") < markdown.index("## The answer, per")
    assert markdown.index("## The answer, per") < markdown.index("## Flagged measurements")
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
    for name in ("throughput", "latency", "inflight", "cpu", "memory"):
        chart = path / "charts" / f"io-{name}.png"
        assert chart.read_bytes().startswith(b"\x89PNG")
        assert f"](charts/io-{name}.png)" in markdown
    # The headline chart and the workload's five, side by side and folded with its tables.
    assert page.count("data:image/png;base64,") == 6
    assert "<details open><summary>io (/io?ms=100)</summary>" in page
    assert '<div class="gallery"><img' in page
    # Nothing to fetch: no external scripts, styles or images.
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<table>" in page
    assert "<strong>sync</strong>" in page


def test_intervals_are_in_the_summary_and_the_tables(tmp_path: Path) -> None:
    path, markdown, _ = build(tmp_path)
    with (path / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for column in ("rps_ci_low", "rps_ci_high", "p99_ci_low", "p99_ci_high"):
        assert column in SUMMARY_COLUMNS
    sync4 = next(r for r in rows if r["target"] == "sync" and r["users"] == "4")
    # fakerun's seconds are all alike: the interval is the value itself.
    assert (sync4["rps_ci_low"], sync4["rps_ci_high"]) == ("20.0", "20.0")
    # 80 requests cannot bound a p99 from above.
    assert (sync4["p99_ci_low"], sync4["p99_ci_high"]) == ("200.0", "inf")
    assert "| sync | 4 | 20.0 (20.0-20.0) |" in markdown
    assert "p99 ms (95% interval)" in markdown
    assert "bootstrap percentile intervals from 2000 resamples" in markdown
    assert "with one trial they cover the noise within the run only" in markdown


def test_a_rebuilt_report_has_the_same_summary(tmp_path: Path) -> None:
    path, _, _ = build(tmp_path)
    first = (path / "summary.csv").read_bytes()
    write_outputs(RunDir(path), analyze_run(load_run(RunDir(path))))
    assert (path / "summary.csv").read_bytes() == first


def test_the_first_screen_holds_the_answer(tmp_path: Path) -> None:
    """As a reader sees it: in a 1280 x 900 browser window the headline chart and every
    target's line are on screen without scrolling. A screenshot is kept among the artifacts."""
    targets = ("dev", "dev-single", "dev-procs", "sync", "gthread", "gevent")
    run = make_run(
        tmp_path / "run",
        {
            f"{target}--{workload}--r1": [
                Step(
                    users=users, rps=10 * users, latency_ms=100, processes=[(1, users, 10 * users)]
                )
                for users in (1, 8, 64)
            ]
            for target in targets
            for workload in ("io", "cpu", "mixed", "noop")
        },
    )
    write_outputs(run, analyze_run(load_run(run)))
    page = (run.path / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _LAYOUT_PROBE + "</body>"))
    found = re.search(r'<pre id="layout">(.*?)</pre>', dump_dom(probe))
    assert found, "the layout probe did not run"
    layout = json.loads(found.group(1))
    assert layout["lines"] == len(targets)
    assert layout["chart_top"] < 150
    # The window's own bars take some of its 900 pixels: the page gets less, never more.
    assert layout["lines_bottom"] <= layout["viewport"] <= 900
    # Everything else is folded away by workload until opened, except the I/O answer.
    assert layout["open_groups"] == 1
    assert layout["groups"] == 4
    screenshot(run.path / "report.html", ARTIFACTS / "report-first-screen.png")


# Measures where the first screen's parts landed, in the test's copy of the page only.
_LAYOUT_PROBE = """<script>
const chart = document.querySelector("body > img");
const lines = document.querySelector("body > ul");
const out = document.createElement("pre");
out.id = "layout";
out.textContent = JSON.stringify({
  chart_top: chart.getBoundingClientRect().top,
  lines_bottom: lines.getBoundingClientRect().bottom,
  lines: lines.children.length,
  viewport: window.innerHeight,
  groups: document.querySelectorAll("details").length,
  open_groups: document.querySelectorAll("details[open]").length,
});
document.body.appendChild(out);
</script>"""
