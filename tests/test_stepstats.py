from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from stepstats import (
    Buckets,
    Record,
    Step,
    StepResult,
    StopRule,
    percentile,
    plan_schedule,
    quantise_ms,
    stop_reason,
    worker_report,
    write_json_atomic,
)

from flaskbench.measure.stats import Histogram


def test_schedule_starts_on_the_next_whole_second_with_back_to_back_steps() -> None:
    schedule = plan_schedule([1, 2, 4], warmup_s=5, measure_s=15, start_time=1000.2)

    assert schedule.steps == (
        Step(index=0, users=1, start=1001.0, measure_start=1006.0, measure_end=1021.0),
        Step(index=1, users=2, start=1021.0, measure_start=1026.0, measure_end=1041.0),
        Step(index=2, users=4, start=1041.0, measure_start=1046.0, measure_end=1061.0),
    )
    assert schedule.end == 1061.0


def test_schedule_keeps_a_start_that_is_already_whole() -> None:
    schedule = plan_schedule([3], warmup_s=1, measure_s=2, start_time=500.0)

    assert schedule.steps[0].start == 500.0
    assert schedule.end == 503.0


def test_users_at_follows_the_steps_and_ends_with_the_last_window() -> None:
    schedule = plan_schedule([1, 2], warmup_s=1, measure_s=2, start_time=100.0)

    assert schedule.users_at(99.9) == 0
    assert schedule.users_at(100.0) == 1
    assert schedule.users_at(102.999) == 1
    assert schedule.users_at(103.0) == 2
    assert schedule.users_at(105.999) == 2
    assert schedule.users_at(106.0) is None


def test_next_change_is_the_next_step_start_then_the_end() -> None:
    schedule = plan_schedule([1, 2], warmup_s=1, measure_s=2, start_time=99.5)

    assert schedule.next_change(99.5) == 100.0
    assert schedule.next_change(100.0) == 100.0
    assert schedule.next_change(100.1) == 103.0
    assert schedule.next_change(103.5) == 106.0
    assert schedule.next_change(106.5) is None


@pytest.mark.parametrize(
    ("ms", "key"),
    [(10.04, "10"), (10.06, "10.1"), (0.1234, "0.123"), (123.46, "123"), (1234.0, "1.23e+03")],
)
def test_response_times_are_rounded_to_three_significant_digits(ms: float, key: str) -> None:
    assert quantise_ms(ms) == key


def test_a_request_counts_in_the_second_it_completed() -> None:
    buckets = Buckets()
    buckets.add(1000.999, 12.34, failed=False)
    buckets.add(1001.0, 12.3, failed=True)
    buckets.add(1001.5, 250.0, failed=False)

    assert buckets.to_json() == [
        {"t": 1000, "requests": 1, "failures": 0, "latency_ms": {"12.3": 1}},
        {"t": 1001, "requests": 2, "failures": 1, "latency_ms": {"12.3": 1, "250": 1}},
    ]


def test_histogram_keys_are_listed_in_numeric_order() -> None:
    buckets = Buckets()
    for ms in (100.0, 9.0, 1500.0, 20.0):
        buckets.add(5.0, ms, failed=False)

    assert list(buckets.to_json()[0]["latency_ms"]) == ["9", "20", "100", "1.5e+03"]


def test_take_delta_returns_only_what_was_added_since_the_previous_call() -> None:
    buckets = Buckets()
    buckets.add(10.2, 5.0, failed=False)
    first = buckets.take_delta()
    buckets.add(10.7, 6.0, failed=True)
    second = buckets.take_delta()

    assert first == [{"t": 10, "requests": 1, "failures": 0, "latency_ms": {"5": 1}}]
    assert second == [{"t": 10, "requests": 1, "failures": 1, "latency_ms": {"6": 1}}]
    assert buckets.take_delta() == []


def test_merging_two_workers_deltas_equals_recording_everything_in_one_place() -> None:
    requests = [(1000.0 + i * 0.37, 10.0 + (i % 7) * 1.11, i % 5 == 0) for i in range(60)]
    everything = Buckets()
    workers = [Buckets(), Buckets()]
    master = Buckets()
    for i, (t, ms, failed) in enumerate(requests):
        everything.add(t, ms, failed)
        workers[i % 2].add(t, ms, failed)
        if i % 9 == 8:  # a periodic report, at a different moment on each worker
            master.merge(workers[i % 2].take_delta())
    for worker in workers:
        master.merge(worker.take_delta())

    assert master.to_json() == everything.to_json()
    assert sum(b["requests"] for b in master.to_json()) == len(requests)


def test_merge_accepts_a_delta_after_a_round_trip_through_json() -> None:
    worker = Buckets()
    worker.add(7.5, 3.0, failed=False)
    master = Buckets()
    master.merge(json.loads(json.dumps(worker.take_delta())))
    master.merge(
        json.loads(json.dumps([{"t": 7, "requests": 2, "failures": 2, "latency_ms": {"3": 2}}]))
    )

    assert master.to_json() == [{"t": 7, "requests": 3, "failures": 2, "latency_ms": {"3": 3}}]


def test_record_documents_the_run_as_docs_raw_data_describes() -> None:
    schedule = plan_schedule([1], warmup_s=1, measure_s=2, start_time=100.0)
    worker = Buckets()
    worker.add(101.5, 10.0, failed=False)
    record = Record()
    record.add_report(
        "worker-a", worker_report(worker.take_delta(), 102.0, 55.04, cpu_warning=True)
    )
    record.add_report("worker-b", worker_report([], 102.1, 1.0, cpu_warning=False))
    clock = {"offset_s": -2.5, "round_trip_s": 0.001, "answers": 12, "applied_s": -2.5}
    record.add_report("worker-a", worker_report([], 105.0, 2.0, cpu_warning=False, clock=clock))
    record.add_cpu("master", 101.5, 3.0)
    record.verification = {"ok": True, "checked": ["GET /io?ms=100"], "failure": None}
    workload = {"user_class": "RequestsUser", "path": "GET /io?ms=100", "wait_time": None}

    document = record.document(workload, schedule.steps)

    assert document == {
        "format": 2,
        "bucket_s": 1,
        "workload": workload,
        "verification": {"ok": True, "checked": ["GET /io?ms=100"], "failure": None},
        "skipped": [],
        "steps": [
            {"index": 0, "users": 1, "start": 100.0, "measure_start": 101.0, "measure_end": 103.0}
        ],
        "buckets": [{"t": 101, "requests": 1, "failures": 0, "latency_ms": {"10": 1}}],
        "loadgen_cpu": [
            {"t": 101.5, "node": "master", "cpu_pct": 3.0},
            {"t": 102.0, "node": "worker-a", "cpu_pct": 55.0},
            {"t": 102.1, "node": "worker-b", "cpu_pct": 1.0},
            {"t": 105.0, "node": "worker-a", "cpu_pct": 2.0},
        ],
        "cpu_warnings": ["worker-a"],
        "workers": 2,
        "clocks": {"worker-a": clock},
    }


def test_write_json_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "loadgen.json"
    target.write_text("old")

    write_json_atomic(target, {"format": 1})

    assert json.loads(target.read_text()) == {"format": 1}
    assert os.listdir(tmp_path) == ["loadgen.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_write_json_atomic_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "loadgen.json"
    target.write_text('{"format": 1}')

    with pytest.raises(TypeError):
        write_json_atomic(target, {"not json": object()})

    assert target.read_text() == '{"format": 1}'
    assert os.listdir(tmp_path) == ["loadgen.json"]


def result(users: int, requests: int, p99: float | None, failures: int = 0) -> StepResult:
    return StepResult(users=users, requests=requests, failures=failures, p99_ms=p99)


@pytest.mark.parametrize(
    ("done", "rule", "reason"),
    [
        ([result(1, 10, 100), result(4, 40, 120)], StopRule(p99_ms=1000), None),
        (
            [result(1, 10, 100), result(4, 40, 1200)],
            StopRule(p99_ms=1000),
            "p99 1200 ms at 4 users passed 1000 ms",
        ),
        ([result(1, 10, 100), result(4, 40, 999)], StopRule(p99_factor=10), None),
        (
            [result(1, 10, 100), result(4, 40, 1001)],
            StopRule(p99_factor=10),
            "p99 1001 ms at 4 users passed 1000 ms",
        ),
        (
            [result(1, 10, 100), result(4, 40, 100, failures=1)],
            StopRule(),
            "1 requests failed at 4 users",
        ),
        (
            [result(1, 10, 100), result(2, 20, 100), result(4, 19, 100), result(8, 18, 100)],
            StopRule(),
            "throughput fell for two steps in a row, to 8 users",
        ),
        (
            [result(1, 10, 100), result(2, 20, 100), result(4, 19, 100), result(8, 19, 100)],
            StopRule(),
            None,
        ),
        ([], StopRule(p99_ms=1), None),
    ],
)
def test_the_staircase_stops_climbing_once_saturated(
    done: list[StepResult], rule: StopRule, reason: str | None
) -> None:
    assert stop_reason(done, rule) == reason


def test_a_window_counts_what_the_orchestrator_counts() -> None:
    buckets = Buckets()
    for t, ms, failed in [
        (99.5, 5.0, False),
        (100.2, 10.0, False),
        (101.9, 20.0, True),
        (102.0, 30.0, False),
    ]:
        buckets.add(t, ms, failed)
    window = buckets.window(4, 100.0, 102.0)
    assert window == StepResult(users=4, requests=2, failures=1, p99_ms=20.0)
    assert percentile({"10": 98, "500": 2}, 99) == 500.0
    assert percentile({}, 99) is None


@pytest.mark.parametrize("seed", range(20))
def test_the_stop_rules_percentile_is_the_reports(seed: int) -> None:
    # The load generator judges a step's p99 with its own copy of the rule (it runs without
    # flaskbench installed); a step it stops on must be one the report would call the same.
    rng = random.Random(seed)
    as_json = {quantise_ms(rng.lognormvariate(4, 1)): rng.randint(1, 50) for _ in range(30)}
    counts = {float(value): count for value, count in as_json.items()}
    for q in (50, 90, 99, 99.9, 100):
        assert percentile(as_json, q) == Histogram(counts).percentile(q)
