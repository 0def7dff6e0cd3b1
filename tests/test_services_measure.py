"""What the services did, per step: read from their samples, in summary.csv, and in the report's
sentence where the database's connections capped what the app held."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from fakerun import MEASURE, T0, WARMUP, Step, make_point, make_run

from flaskbench.measure.analyze import SUMMARY_COLUMNS, analyze_run
from flaskbench.measure.collect import load_run
from flaskbench.measure.service_use import ServiceSample, connections_capped, service_use
from flaskbench.report.prose import shortfall_cause
from flaskbench.report.run_report import write_outputs
from flaskbench.report.service_blocks import pool_clause
from flaskbench.servers.server import Target

GTHREAD = Target("gthread", "gunicorn", "gthread", 1, 8, {})
CELL = "gthread--io--r1"


def write_services(cell_dir: Path, busy: list[int], cpu: float = 20.0) -> None:
    """A database whose busy connections are `busy[step]` all through each window, and a
    cache with one client."""
    (cell_dir / "services.json").write_text(
        json.dumps(
            {
                "format": 1,
                "services": {
                    name: {
                        "kind": kind,
                        "per_cell": True,
                        "host": "127.0.0.1",
                        "port": 5000,
                        "where": "pid 1",
                        "ready_s": 0.2,
                        "samples": f"service-{name}.csv",
                    }
                    for name, kind in (("db", "postgres"), ("cache", "redis"))
                },
            }
        )
    )
    for name in ("db", "cache"):
        rows = [["t", "open", "busy", "active", "cpu_pct", "pss_mb"]]
        for index, in_use in enumerate(busy):
            start = T0 + index * (WARMUP + MEASURE)
            # Ten samples a second from the step's start, CPU and memory once a second.
            for tick in range(10 * (WARMUP + MEASURE)):
                whole = tick % 10 == 0
                row = [f"{start + tick / 10:.3f}"]
                if name == "db":
                    row += [str(in_use + 1), str(in_use), str(in_use)]
                else:
                    row += ["1", "", ""]
                row += [str(cpu) if whole else "", "30.5" if whole else ""]
                rows.append(row)
        with (cell_dir / f"service-{name}.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows(rows)


def test_a_steps_services_reach_summary_csv_and_the_report(tmp_path: Path) -> None:
    steps = [
        Step(1, 10, 100, processes=[(101, 1, 10)], host_busy=60.0),
        Step(8, 40, 200, processes=[(101, 8, 40)], host_busy=60.0),
    ]
    run = make_run(tmp_path / "run", {CELL: steps})
    write_services(run.cell_dir(CELL), busy=[1, 4])
    analysis = analyze_run(load_run(run))
    one, eight = analysis.rows
    assert (one.db_busy_peak, one.db_busy_mean, one.db_connections_peak) == (1, 1.0, 2)
    assert (eight.db_busy_peak, eight.db_busy_mean, eight.db_connections_peak) == (4, 4.0, 5)
    assert (eight.cache_connections_peak, eight.services_cpu_pct, eight.services_pss_mb) == (
        1,
        40.0,
        61.0,
    )
    # The services ran on the target's CPU: their 40% is the target side's own there, not
    # another process's (60% busy, 50% the target, so 10% unexplained without them).
    without = analyze_run(load_run(make_run(tmp_path / "bare", {CELL: steps}))).rows[1]
    assert without.target_others_pct == 10.0
    assert eight.target_others_pct == 0.0

    write_outputs(run, analysis)
    with (run.path / "summary.csv").open() as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == SUMMARY_COLUMNS
    assert header[-8:-2] == [
        "db_busy_peak",
        "db_busy_mean",
        "db_connections_peak",
        "cache_connections_peak",
        "services_cpu_pct",
        "services_pss_mb",
    ]
    report = (run.path / "report.md").read_text()
    # bench.toml's gthread: 2 workers, whose pools together capped the connections.
    assert (
        "With 8 users: 8 requests in flight server-wide (8 per process), at most 4 of them "
        "holding a database connection: the processes' pools cap it (the others waited inside "
        "the app for one)." in report
    )
    assert (run.path / "charts" / "io-db.png").is_file()
    # Each service on its own, per step: services.csv.
    with (run.path / "services.csv").open() as handle:
        per_service = [
            (r["users"], r["service"], r["busy_peak"], r["cpu_pct"]) for r in csv.DictReader(handle)
        ]
    assert per_service == [
        ("1", "db", "1", "20.0"),
        ("1", "cache", "", "20.0"),
        ("8", "db", "4", "20.0"),
        ("8", "cache", "", "20.0"),
    ]


def test_a_run_without_services_has_empty_columns_and_no_chart(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {CELL: [Step(1, 10, 100)]})
    analysis = analyze_run(load_run(run))
    write_outputs(run, analysis)
    with (run.path / "summary.csv").open() as handle:
        (row,) = csv.DictReader(handle)
    assert [row[c] for c in SUMMARY_COLUMNS[-6:]] == [""] * 6
    assert not (run.path / "charts" / "io-db.png").exists()
    assert not (run.path / "services.csv").exists()
    assert "database" not in (run.path / "report.md").read_text()


def test_only_a_windows_samples_count() -> None:
    samples = [
        ServiceSample(99.9, 9, 9, 90.0, 99.0),
        ServiceSample(100.0, 3, 2, None, None),
        ServiceSample(101.0, 4, 3, 30.0, 40.0),
        ServiceSample(101.9, 5, 1, None, None),
        ServiceSample(102.0, 8, 8, None, None),
        ServiceSample(102.4, None, None, 10.0, 41.0),
        ServiceSample(102.6, 9, 9, 90.0, 99.0),
    ]
    use = service_use("db", "postgres", samples, 100.0, 102.0)
    assert (use.busy_peak, use.busy_mean, use.connections_peak) == (3, 2.0, 5)
    # CPU and memory rows cover the second before them: 101.0 and 102.4 are inside.
    assert (use.cpu_pct, use.pss_mb) == (20.0, 41.0)


def test_connections_are_capped_where_more_are_in_flight_and_all_are_busy() -> None:
    assert connections_capped(8, 4, 3.9)
    assert not connections_capped(4, 4, 4.0)  # as many in flight as busy: nothing waits
    assert not connections_capped(8, 4, 1.0)  # connections mostly free: a peak, not a cap
    assert not connections_capped(8, 0, 0.0)
    assert not connections_capped(None, 4, 4.0)


def test_the_pool_is_named_where_it_caps_and_not_elsewhere() -> None:
    def point(users: int, inflight: int, busy: int, mean: float) -> object:
        return make_point(
            target="gthread",
            users=users,
            peak_inflight_process=inflight,
            peak_inflight_server=inflight,
            db_busy_peak=busy,
            db_busy_mean=mean,
        )

    capped = [point(1, 1, 1, 1.0), point(16, 16, 15, 14.2), point(32, 32, 15, 14.9)]
    assert pool_clause(GTHREAD, capped) == (  # type: ignore[arg-type]
        " With 32 users: 32 requests in flight per process, at most 15 of them holding a "
        "database connection: the pool caps it (the others waited inside the app for one)."
    )
    followed = [point(1, 1, 1, 1.0), point(8, 8, 8, 7.5)]
    assert pool_clause(GTHREAD, followed) == (  # type: ignore[arg-type]
        " Up to 8 of its requests held a database connection at once."
    )
    two = Target("gt", "gunicorn", "gthread", 2, 8, {})
    both = [
        make_point(
            target="gt",
            users=32,
            peak_inflight_process=8,
            peak_inflight_server=16,
            db_busy_peak=10,
            db_busy_mean=9.5,
        )
    ]
    assert pool_clause(two, both).startswith(
        " With 32 users: 16 requests in flight server-wide (8 per process), at most 10 of them "
        "holding a database connection: the processes' pools cap it"
    )
    assert pool_clause(GTHREAD, [make_point()]) == ""


def test_a_shortfall_where_requests_waited_for_a_connection_says_so() -> None:
    point = make_point(
        users=8,
        peak_inflight_server=8,
        peak_inflight_process=8,
        db_busy_peak=4,
        db_busy_mean=3.9,
        rps_vs_expected=0.5,
    )
    assert shortfall_cause(point, GTHREAD, 1) == (
        "requests waited inside the app for a database connection: 4 were busy at most (a mean "
        "of 3.9) while 8 were in flight"
    )
