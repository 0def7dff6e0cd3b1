"""Comparing runs: verdicts, unmatched steps, labels from metadata, refusals, the three files."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from fakerun import Step, make_run

from flaskbench.cli import main
from flaskbench.measure.compare import (
    CompareError,
    compare,
    default_labels,
    load_sides,
    parse_threshold,
    verdict,
)
from flaskbench.measure.stats import Interval

REQUIRED_COLUMNS = (
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
)


def step(users: int = 100, rps: int = 1000, **kwargs: object) -> Step:
    """Little's law holds (users = rps x latency), so nothing flags the step."""
    return Step(users=users, rps=rps, latency_ms=1000 * users / rps, **kwargs)  # type: ignore[arg-type]


def run(tmp_path: Path, name: str, cells: dict[str, list[Step]], **meta: object) -> Path:
    return make_run(tmp_path / name, cells, meta=meta).path


@pytest.mark.parametrize(
    ("metric", "ratio", "interval", "expected"),
    [
        ("rps", 1.10, Interval(1.05, 1.15), "faster"),
        ("rps", 0.90, Interval(0.85, 0.95), "slower"),
        ("p99_ms", 0.80, Interval(0.70, 0.90), "faster"),
        ("p99_ms", 1.25, Interval(1.10, 1.40), "slower"),
        # The interval includes 1: no significant difference, however large the ratio.
        ("rps", 1.30, Interval(0.95, 1.60), "same"),
        # Significant but under the threshold.
        ("rps", 1.01, Interval(1.005, 1.015), "same"),
        ("p99_ms", 0.99, Interval(0.985, 0.995), "same"),
        # Nothing to compare.
        ("rps", None, None, "same"),
        ("rps", 1.5, None, "same"),
    ],
)
def test_verdict(
    metric: str, ratio: float | None, interval: Interval | None, expected: str
) -> None:
    assert verdict(metric, ratio, interval, 0.02) == expected


def test_the_threshold_is_a_setting() -> None:
    assert verdict("rps", 1.01, Interval(1.005, 1.015), 0.005) == "faster"
    assert parse_threshold("2%") == pytest.approx(0.02)
    assert parse_threshold("0.05") == pytest.approx(0.05)
    for bad in ("2", "abc", "-1%", "150%"):
        with pytest.raises(CompareError, match="--threshold"):
            parse_threshold(bad)


def test_matched_steps_get_ratios_intervals_and_verdicts(tmp_path: Path) -> None:
    base = run(
        tmp_path,
        "a",
        {
            "sync--io--r1": [step(), step(users=200, rps=2000), step(users=300, rps=1000)],
            "gevent--io--r1": [step(jitter=150)],
        },
    )
    other = run(
        tmp_path,
        "b",
        {
            # 10% more throughput at 100 users, 10% less at 200, 1% more at 300 (under 2%).
            "sync--io--r1": [
                step(rps=1100),
                step(users=200, rps=1800),
                step(users=300, rps=1010),
            ],
            # 3% more, but the seconds swing by 15%: within the noise.
            "gevent--io--r1": [step(rps=1030, jitter=150)],
        },
    )
    comparison = compare(load_sides([base, other], ["before", "after"]))
    verdicts = {(s.target, s.users, s.metric): s.verdict for s in comparison.steps}
    assert verdicts[("sync", 100, "rps")] == "faster"
    assert verdicts[("sync", 200, "rps")] == "slower"
    assert verdicts[("sync", 300, "rps")] == "same"
    assert verdicts[("gevent", 100, "rps")] == "same"
    # Latency followed throughput the other way (Little's law): lower p99 is faster.
    assert verdicts[("sync", 100, "p99_ms")] == "faster"
    assert verdicts[("sync", 200, "p99_ms")] == "slower"
    sync100 = next(
        s for s in comparison.steps if (s.target, s.users, s.metric) == ("sync", 100, "rps")
    )
    assert sync100.ratio == pytest.approx(1.1)
    assert sync100.ci is not None
    assert sync100.ci.contains(1.1)
    assert not sync100.ci.contains(1.0)
    assert sync100.valid
    gevent = next(s for s in comparison.steps if (s.target, s.metric) == ("gevent", "rps"))
    assert gevent.ci is not None
    assert gevent.ci.contains(1.0)


def test_a_flagged_step_is_compared_but_not_valid(tmp_path: Path) -> None:
    base = run(tmp_path, "a", {"sync--io--r1": [step()]})
    other = run(tmp_path, "b", {"sync--io--r1": [step(failures=40)]})
    comparison = compare(load_sides([base, other], None))
    assert all(not s.valid and s.flags == ("failures",) for s in comparison.steps)
    (answer,) = comparison.answers
    assert answer.flags == ("failures",)
    clean = compare(load_sides([base, base], None))
    assert all(s.valid for s in clean.steps)
    assert clean.answers[0].flags == ()


def test_answers_are_compared_per_target(tmp_path: Path) -> None:
    base = run(
        tmp_path,
        "a",
        {
            "gthread--io--r1": [
                step(users=1, rps=10, processes=[(1, 1, 10)]),
                step(processes=[(1, 4, 500), (2, 4, 500)]),
            ]
        },
    )
    other = run(
        tmp_path,
        "b",
        {
            "gthread--io--r1": [
                step(users=1, rps=10, processes=[(1, 1, 10)]),
                step(rps=2000, processes=[(1, 8, 1000), (2, 8, 1000)]),
            ]
        },
    )
    (answer,) = compare(load_sides([base, other], None)).answers
    assert (answer.baseline.peak_inflight_process, answer.other.peak_inflight_process) == (4, 8)
    assert (answer.baseline.peak_inflight_server, answer.other.peak_inflight_server) == (8, 16)
    assert (answer.baseline.peak_rps, answer.other.peak_rps) == (1000, 2000)
    assert answer.ratio == pytest.approx(2.0)
    assert answer.verdict == "faster"


def test_steps_only_in_one_run_are_listed(tmp_path: Path) -> None:
    base = run(
        tmp_path, "a", {"sync--io--r1": [step(users=1, rps=10), step()], "gevent--io--r1": [step()]}
    )
    other = run(tmp_path, "b", {"sync--io--r1": [step(), step(users=400, rps=1000)]})
    comparison = compare(load_sides([base, other], ["A", "B"]))
    assert {(s.target, s.users) for s in comparison.steps} == {("sync", 100)}
    assert comparison.unmatched == {
        "A": (("sync", "io", 1), ("gevent", "io", 100)),
        "B": (("sync", "io", 400),),
    }
    matched = compare(load_sides([base, base], ["A", "A2"]))
    assert matched.unmatched == {}


def test_labels_and_differences_come_from_the_metadata(tmp_path: Path) -> None:
    cells = {"sync--io--r1": [step()]}
    old = run(tmp_path, "a", cells, packages={"gunicorn": "26.0.0", "flask": "3.1.3"})
    new = run(tmp_path, "b", cells, packages={"gunicorn": "27.0.1", "flask": "3.1.3"})
    sides = load_sides([old, new], None)
    assert [s.label for s in sides] == ["gunicorn 26.0.0", "gunicorn 27.0.1"]
    (difference,) = compare(sides).differences
    assert (difference.key, difference.values) == ("packages.gunicorn", ("26.0.0", "27.0.1"))
    # Nothing differs: the run ids tell them apart.
    twin = run(tmp_path, "c", cells, packages={"gunicorn": "26.0.0", "flask": "3.1.3"})
    assert [s.label for s in load_sides([old, twin], None)] == ["a", "c"]


def test_machine_and_cores_per_side_lead_the_differences() -> None:
    metas = [
        {
            "run_id": "x",
            "machine": {"model": {"product": "c6i.large"}},
            "cpus": {"target": "0", "load": "1"},
            "packages": {"gunicorn": "1"},
        },
        {
            "run_id": "y",
            "machine": {"model": {"product": "c7g.large"}},
            "cpus": {"target": "0-3", "load": "4-7"},
            "packages": {"gunicorn": "2"},
        },
    ]
    assert default_labels(metas) == [
        "c6i.large, cores per side target 1 (CPU 0), load 1 (CPU 1)",
        "c7g.large, cores per side target 4 (CPU 0-3), load 4 (CPU 4-7)",
    ]


def test_target_settings_that_differ_are_named(tmp_path: Path) -> None:
    cells = {"gthread--io--r1": [step()]}
    few = run(tmp_path, "a", cells)
    many = run(tmp_path, "b", cells)
    meta_path = many / "meta.json"
    meta_path.write_text(meta_path.read_text().replace('"threads": 4', '"threads": 8'))
    sides = load_sides([few, many], None)
    assert [s.label for s in sides] == ["gthread threads=4", "gthread threads=8"]


def test_workloads_that_share_a_name_but_not_a_definition_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cells = {"sync--io--r1": [step()]}
    base = run(tmp_path, "a", cells)
    alike = run(tmp_path, "b", cells)
    changed = run(tmp_path, "c", cells)
    meta_path = changed / "meta.json"
    meta_path.write_text(meta_path.read_text().replace('"io_ms": 100', '"io_ms": 50'))
    assert main(["compare", str(base), str(alike), "--out", str(tmp_path / "ok")]) == 0
    capsys.readouterr()
    assert main(["compare", str(base), str(changed), "--out", str(tmp_path / "no")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert error.startswith("flaskbench: workload 'io' is /io?ms=100 in ")
    assert "/io?ms=50 in " in error
    assert "rename one" in error
    assert not (tmp_path / "no").exists()


def test_bad_compare_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = run(tmp_path, "a", {"sync--io--r1": [step()]})
    assert main(["compare", str(base), str(base), "--label", "only-one"]) == 2
    assert "--label given 1 times for 2 runs" in capsys.readouterr().err
    assert main(["compare", str(base)]) == 2
    assert "at least two run directories" in capsys.readouterr().err
    assert main(["compare", str(base), str(tmp_path / "nothing")]) == 2
    assert "no meta.json here" in capsys.readouterr().err


def test_compare_writes_the_three_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = run(
        tmp_path,
        "a",
        {"sync--io--r1": [step(), step(users=200, rps=2000)]},
        packages={"gunicorn": "26.0.0"},
    )
    other = run(
        tmp_path,
        "b",
        {"sync--io--r1": [step(rps=1100), step(users=200, rps=2000)]},
        packages={"gunicorn": "27.0.1"},
    )
    out = tmp_path / "cmp"
    assert main(["compare", str(base), str(other), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with (out / "comparison.csv").open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames or ())[: len(REQUIRED_COLUMNS)] == REQUIRED_COLUMNS
    assert len(rows) == 4  # two steps x two metrics
    first = rows[0]
    assert (first["target"], first["users"], first["metric"], first["verdict"]) == (
        "sync",
        "100",
        "rps",
        "faster",
    )
    assert (first["baseline"], first["other"], first["ratio"]) == ("1000.0", "1100.0", "1.1")
    assert {r["verdict"] for r in rows} <= {"faster", "slower", "same"}
    assert {r["metric"] for r in rows} == {"rps", "p99_ms"}
    markdown = (out / "comparison.md").read_text()
    assert "## What differs between the runs" in markdown
    assert "| packages.gunicorn | 26.0.0 | 27.0.1 |" in markdown
    # 10% more throughput and, by Little's law, lower p99 at 100 users; the same at 200.
    assert "2 faster, 0 slower, 2 without a significant difference" in markdown
    page = (out / "comparison.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # throughput and p99 for the one workload
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert (out / "comparison.json").is_file()


def test_default_output_lands_beside_the_first_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = run(tmp_path, "a", {"sync--io--r1": [step()]})
    assert main(["compare", str(base), str(base)]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out.parent == tmp_path
    assert out.name.startswith("compare-")
    assert (out / "comparison.md").is_file()
