"""The worker-model theory: slots and throughput ceilings per target and workload."""

from __future__ import annotations

import pytest

from flaskbench.config import Workload
from flaskbench.servers import Target, resolve_target
from flaskbench.theory import expect, expected_slots

IO = Workload("io", io_ms=100, cpu_ms=0)
CPU = Workload("cpu", io_ms=0, cpu_ms=10)
MIXED = Workload("mixed", io_ms=50, cpu_ms=5)
NOOP = Workload("noop", io_ms=0, cpu_ms=0)


def target(server: str, **settings: object) -> Target:
    resolved, problems = resolve_target("t", server, settings)  # type: ignore[arg-type]
    assert not problems
    assert resolved is not None
    return resolved


DEV = target("werkzeug", threaded=True)
DEV_SINGLE = target("werkzeug", threaded=False)
DEV_PROCS = target("werkzeug", threaded=False, processes=4)
SYNC = target("gunicorn", worker_class="sync", workers=2)
GTHREAD = target("gunicorn", worker_class="gthread", workers=2, threads=4)
GEVENT = target("gunicorn", worker_class="gevent", workers=1, worker_connections=1000)


@pytest.mark.parametrize(
    ("model", "slots"),
    [(DEV_SINGLE, 1), (DEV, None), (DEV_PROCS, 4), (SYNC, 2), (GTHREAD, 8), (GEVENT, 1000)],
)
def test_slots(model: Target, slots: int | None) -> None:
    assert expected_slots(model) == slots


def test_io_ceiling_is_busy_slots_over_request_time() -> None:
    assert expect(SYNC, IO, users=1, cores=1).rps == pytest.approx(10)
    assert expect(SYNC, IO, users=64, cores=1).rps == pytest.approx(20)
    assert expect(SYNC, IO, users=64, cores=1).limit == "slots"
    assert expect(GTHREAD, IO, users=4, cores=1).rps == pytest.approx(40)
    assert expect(GTHREAD, IO, users=4, cores=1).limit == "users"
    assert expect(GTHREAD, IO, users=64, cores=1).rps == pytest.approx(80)
    assert expect(DEV_SINGLE, IO, users=128, cores=1).rps == pytest.approx(10)
    # Unbounded models follow the user count.
    assert expect(DEV, IO, users=128, cores=1).rps == pytest.approx(1280)
    assert expect(GEVENT, IO, users=128, cores=1).rps == pytest.approx(1280)


def test_cpu_ceiling_uses_processes_and_the_cores_the_target_got() -> None:
    # Threads share one GIL: gthread with 2 workers on 1 core is one core's worth.
    assert expect(GTHREAD, CPU, users=64, cores=1).rps == pytest.approx(100)
    assert expect(GTHREAD, CPU, users=64, cores=1).limit == "cpu"
    assert expect(GTHREAD, CPU, users=64, cores=2).rps == pytest.approx(200)
    assert expect(DEV, CPU, users=64, cores=4).rps == pytest.approx(100)
    assert expect(DEV_PROCS, CPU, users=64, cores=4).rps == pytest.approx(400)
    assert expect(DEV_PROCS, CPU, users=2, cores=4).rps == pytest.approx(200)


def test_mixed_takes_the_smaller_ceiling() -> None:
    # Slots held 55 ms each: 2 slots -> 36.4/s; CPU allows 200/s on one core.
    assert expect(SYNC, MIXED, users=64, cores=1).rps == pytest.approx(2 / 0.055)
    # gevent: slots allow 64/0.055 = 1164/s, one core allows 1/0.005 = 200/s.
    assert expect(GEVENT, MIXED, users=64, cores=1).rps == pytest.approx(200)
    assert expect(GEVENT, MIXED, users=64, cores=1).limit == "cpu"


def test_noop_has_no_model() -> None:
    expectation = expect(SYNC, NOOP, users=8, cores=1)
    assert expectation.rps is None
    assert expectation.slots == 2
