"""The worker-model theory: slots and throughput ceilings per target and workload."""

from __future__ import annotations

import pytest

from flaskbench.config.workloads import Request, Workload
from flaskbench.measure.theory import (
    Work,
    expect,
    expected_slots,
    modelled_work,
    parallel_processes,
)
from flaskbench.servers.registry import resolve_target, server_of
from flaskbench.servers.server import Target

IO = Work(io_ms=100, cpu_ms=0)
CPU = Work(io_ms=0, cpu_ms=10)
MIXED = Work(io_ms=50, cpu_ms=5)
NOOP = Work(io_ms=0, cpu_ms=0)


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
WAITRESS = target("waitress", threads=4)
UWSGI = target("uwsgi", processes=2, threads=2)
GRANIAN = target("granian", workers=1, blocking_threads=4)
A2WSGI = target("asgi", adapter="a2wsgi", workers=2, threads=4)
ASGIREF = target("asgi", adapter="asgiref", workers=3)


@pytest.mark.parametrize(
    ("model", "slots", "processes"),
    [
        (DEV_SINGLE, 1, 1),
        (DEV, None, 1),
        (DEV_PROCS, 4, 4),
        (SYNC, 2, 2),
        (GTHREAD, 8, 2),
        (GEVENT, 1000, 1),
        (WAITRESS, 4, 1),
        (UWSGI, 4, 2),
        (GRANIAN, 4, 1),
        (A2WSGI, 8, 2),
        # asgiref: one request at a time per uvicorn worker, however the loop is doing.
        (ASGIREF, 3, 3),
    ],
)
def test_slots(model: Target, slots: int | None, processes: int) -> None:
    assert expected_slots(model) == slots
    assert parallel_processes(model) == processes


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


def test_the_built_in_workloads_are_modelled_and_others_are_not() -> None:
    assert modelled_work(Workload("io", io_ms=100)) == IO
    assert modelled_work(Workload("mixed", io_ms=50, cpu_ms=5)) == MIXED
    assert modelled_work(Workload("home", requests=(Request("/"),))) is None


def test_measured_work_predicts_like_the_model() -> None:
    """3 ms in the app of which 2 ms CPU: I/O 1 ms; the CPU limit binds with one process."""
    measured = Work(io_ms=1, cpu_ms=2, basis="measured", measured_at=1, service_ms=3)
    assert expect(SYNC, measured, users=64, cores=1).rps == pytest.approx(500)
    assert expect(SYNC, measured, users=64, cores=1).limit == "cpu"
    assert expect(DEV_SINGLE, measured, users=1, cores=1).rps == pytest.approx(1000 / 3)
    assert expect(SYNC, None, users=8, cores=1).rps is None


def test_new_servers_ceilings_follow_their_slots_and_processes() -> None:
    # /io: slots over the request time. uWSGI 2 x 2: 40/s at saturation.
    assert expect(WAITRESS, IO, users=64, cores=1).rps == pytest.approx(40)
    assert expect(UWSGI, IO, users=64, cores=1).rps == pytest.approx(40)
    assert expect(GRANIAN, IO, users=2, cores=1).rps == pytest.approx(20)
    assert expect(ASGIREF, IO, users=64, cores=1).limit == "slots"
    assert expect(ASGIREF, IO, users=64, cores=1).rps == pytest.approx(30)
    # /cpu: one thread per process runs Python; uWSGI's 2 processes use 2 cores, waitress 1.
    assert expect(WAITRESS, CPU, users=64, cores=2).rps == pytest.approx(100)
    assert expect(UWSGI, CPU, users=64, cores=2).rps == pytest.approx(200)
    assert expect(A2WSGI, CPU, users=64, cores=1).limit == "cpu"


def test_only_expectations_read_from_code_name_their_files() -> None:
    basis = server_of(ASGIREF).code_basis(ASGIREF)
    assert basis is not None
    assert "asgiref/sync.py" in basis
    assert "asgiref/wsgi.py" in basis
    for documented in (WAITRESS, UWSGI, GRANIAN, A2WSGI, GTHREAD, DEV):
        assert server_of(documented).code_basis(documented) is None
