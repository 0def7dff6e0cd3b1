"""Publishing runs and comparisons as a static site: checked copies, relative links, additions."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import dump_dom
from fakerun import Step, make_run

from flaskbench.cli import main


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
        if values.get("src"):
            self.sources.append(str(values["src"]))


def links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def finished_run(tmp_path: Path, name: str, started: str, rps: int = 1000) -> Path:
    """A run as `flaskbench run` leaves it: raw files in the manifest, the report recorded."""
    step = Step(users=100, rps=rps, latency_ms=100_000 / rps, processes=[(1, 50, rps)])
    run = make_run(
        tmp_path / "results" / name, {"gevent--io--r1": [step]}, meta={"started": started}
    )
    meta = run.read_meta()
    meta["files"] = run.manifest()
    run.write_meta(meta)
    assert main(["report", str(run.path), "--quiet"]) == 0
    return run.path


def comparison(tmp_path: Path, *runs: Path) -> Path:
    out = tmp_path / "results" / "compare-ab"
    assert main(["compare", *map(str, runs), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture
def published(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    first = finished_run(tmp_path, "run-a", "2026-01-01T10:00:00+00:00")
    second = finished_run(tmp_path, "run-b", "2026-01-02T10:00:00+00:00", rps=1200)
    compared = comparison(tmp_path, first, second)
    site = tmp_path / "site"
    capsys.readouterr()
    assert main(["publish", str(first), str(second), str(compared), "--out", str(site)]) == 0
    assert capsys.readouterr().out.strip() == str(site / "index.html")
    return site


def unresolved(page: Path, html: str) -> list[str]:
    """Links of a page that point nowhere (or off the site)."""
    bad = []
    for href in links(html).links:
        if re.match(r"^[a-z]+:|^/", href):
            bad.append(f"{href} (not relative)")
        elif not (page.parent / href).is_file():
            bad.append(href)
    return bad


def test_the_site_lists_runs_and_comparisons_newest_first(published: Path) -> None:
    index = (published / "index.html").read_text()
    runs = index[index.index("<h2>Runs</h2>") : index.index("<h2>Comparisons</h2>")]
    assert runs.index("2026-01-02T10:00:00") < runs.index("2026-01-01T10:00:00")
    assert "Test CPU" in runs
    assert "target 1, load 1" in runs
    assert "local" in runs
    # The headline answer: what one process handled, per workload.
    assert "io: gevent 50" in runs
    comparisons = index[index.index("<h2>Comparisons</h2>") :]
    assert "run-a vs run-b" in comparisons
    assert "2 faster, 0 slower, 0 same; 0 flagged, not counted" in comparisons
    assert '<a href="runs/run-a/report.html">run-a</a>' in comparisons
    for link in ("report", "summary.csv", "raw data", "comparison", "comparison.csv"):
        assert f">{link}</a>" in index
    assert (published / ".nojekyll").exists()


def test_every_link_resolves_and_nothing_is_fetched(published: Path) -> None:
    pages = [published / "index.html", *published.glob("*/*/files.html")]
    assert len(pages) == 4
    for page in pages:
        html = page.read_text()
        assert unresolved(page, html) == []
        assert "<script" not in html
    for page in [*published.glob("runs/*/report.html"), *published.glob("comparisons/*/*.html")]:
        assert all(src.startswith("data:") for src in links(page.read_text()).sources)
    # The published copy of a run is a run directory that verifies like the original.
    assert main(["verify", str(published / "runs" / "run-a"), "--quiet"]) == 0


def test_the_index_opens_in_a_headless_browser_with_every_link_resolving(published: Path) -> None:
    index = published / "index.html"
    dom = dump_dom(index)
    assert "flaskbench results" in dom
    hrefs = links(dom).links
    assert len(hrefs) == 2 * 3 + 3 + 2  # runs, comparison files, the comparison's runs
    assert unresolved(index, dom) == []
    for href in hrefs:
        if href.endswith(".html"):
            assert "<body" in dump_dom(index.parent / href)


def test_a_tampered_raw_file_is_refused_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = finished_run(tmp_path, "run-a", "2026-01-01T10:00:00+00:00")
    raw = run / "raw" / "gevent--io--r1" / "loadgen.json"
    raw.write_text(raw.read_text().replace('"requests": 1000', '"requests": 1100', 1))
    site = tmp_path / "site"
    assert main(["publish", str(run), "--out", str(site)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert f"refusing to publish the run {run}" in error
    assert f"{raw}: changed since the run (SHA-256 differs)" in error
    assert not (site / "runs").exists()


def test_a_tampered_report_or_summary_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = finished_run(tmp_path, "run-a", "2026-01-01T10:00:00+00:00")
    summary = run / "summary.csv"
    summary.write_text(summary.read_text().replace("gevent", "gevent-fast"))
    assert main(["publish", str(run), "--out", str(tmp_path / "site")]) == 2
    assert f"{summary}: changed since the report was built" in capsys.readouterr().err
    # Rebuilding the report from the raw data makes it publishable again.
    assert main(["report", str(run), "--quiet"]) == 0
    assert main(["publish", str(run), "--out", str(tmp_path / "site")]) == 0


def test_a_run_whose_report_was_never_recorded_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = finished_run(tmp_path, "run-a", "2026-01-01T10:00:00+00:00")
    meta = json.loads((run / "meta.json").read_text())
    del meta["outputs"]
    (run / "meta.json").write_text(json.dumps(meta))
    assert main(["publish", str(run), "--out", str(tmp_path / "site")]) == 2
    assert f"records no SHA-256 of the report; rebuild it with `flaskbench report {run}`" in (
        capsys.readouterr().err
    )


def test_a_tampered_comparison_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = finished_run(tmp_path, "run-a", "2026-01-01T10:00:00+00:00")
    second = finished_run(tmp_path, "run-b", "2026-01-02T10:00:00+00:00", rps=1200)
    compared = comparison(tmp_path, first, second)
    table = compared / "comparison.csv"
    table.write_text(table.read_text().replace("faster", "same"))
    assert main(["publish", str(compared), "--out", str(tmp_path / "site")]) == 2
    assert f"{table}: changed since the comparison was written" in capsys.readouterr().err


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file()
    }


def test_publishing_again_adds_without_rewriting_earlier_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = finished_run(tmp_path, "run-a", "2026-01-01T10:00:00+00:00")
    site = tmp_path / "site"
    assert main(["publish", str(first), "--out", str(site)]) == 0
    before = snapshot(site / "runs" / "run-a")
    second = finished_run(tmp_path, "run-b", "2026-01-02T10:00:00+00:00")
    capsys.readouterr()
    assert main(["publish", str(first), str(second), "--out", str(site), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["added"], result["kept"]) == (["runs/run-b"], ["runs/run-a"])
    assert snapshot(site / "runs" / "run-a") == before
    index = (site / "index.html").read_text()
    assert "runs/run-a/report.html" in index
    assert "runs/run-b/report.html" in index


def test_publish_takes_every_run_and_comparison_of_the_results_directory(
    tmp_path: Path,
) -> None:
    first = finished_run(tmp_path, "run-a", "2026-01-01T10:00:00+00:00")
    second = finished_run(tmp_path, "run-b", "2026-01-02T10:00:00+00:00")
    comparison(tmp_path, first, second)
    site = tmp_path / "site"
    assert main(["publish", "--out", str(site), "--results", str(tmp_path / "results")]) == 0
    assert sorted(p.name for p in (site / "runs").iterdir()) == ["run-a", "run-b"]
    assert [p.name for p in (site / "comparisons").iterdir()] == ["compare-ab"]


def test_a_directory_that_is_not_a_site_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = finished_run(tmp_path, "run-a", "2026-01-01T10:00:00+00:00")
    elsewhere = tmp_path / "documents"
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("keep me")
    assert main(["publish", str(run), "--out", str(elsewhere)]) == 2
    assert "not empty and not a flaskbench site" in capsys.readouterr().err
    assert [p.name for p in elsewhere.iterdir()] == ["thesis.tex"]
