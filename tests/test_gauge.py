"""The concurrency gauge under threads, greenlets and processes, and its reader's semantics.

Every test holds requests inside the middleware at a known moment and checks the exact counts,
so a lost update, a shared slot or a missed peak shows up as a wrong number, not as a slowdown.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import gauge
import pytest
from gauge import Row

TARGETS = Path(__file__).resolve().parent.parent / "targets"
TIMEOUT_S = 10


@pytest.fixture
def gauge_path(tmp_path: Path) -> str:
    path = str(tmp_path / "gauge")
    gauge.create(path)
    return path


@pytest.fixture
def counter(gauge_path: str) -> Iterator[gauge.Gauge]:
    opened = gauge.Gauge(gauge_path)
    yield opened
    opened.close()


@pytest.fixture
def reader(gauge_path: str) -> Iterator[gauge.GaugeReader]:
    opened = gauge.GaugeReader(gauge_path)
    yield opened
    opened.close()


def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
    return None


class Gate:
    """A WSGI app that keeps every request inside until `release` is set."""

    def __init__(self) -> None:
        self.arrived = threading.Semaphore(0)
        self.release = threading.Event()

    def __call__(self, environ: dict[str, object], respond: Callable[..., object]) -> list[bytes]:
        self.arrived.release()
        self.release.wait(TIMEOUT_S)
        respond("200 OK", [])
        return [b"ok"]

    def wait_for(self, count: int) -> None:
        for _ in range(count):
            assert self.arrived.acquire(timeout=TIMEOUT_S), "a request never arrived"


def request(app: Callable[..., Iterable[bytes]]) -> None:
    """One request the way a WSGI server makes it: call, iterate, close."""
    body = app({}, start_response)
    for _chunk in body:
        pass
    body.close()  # type: ignore[attr-defined]


def instant(environ: dict[str, object], respond: Callable[..., object]) -> list[bytes]:
    respond("200 OK", [])
    return [b"ok"]


# --- one process -----------------------------------------------------------------------------


def test_a_fresh_file_is_all_zeros(gauge_path: str, reader: gauge.GaugeReader) -> None:
    assert reader.sample() == gauge.Sample(Row(0, 0, 0, 0), [], 0)
    assert os.path.getsize(gauge_path) == gauge.file_size(gauge.DEFAULT_SLOTS)


def test_creating_again_starts_from_zero_even_for_old_writers(
    gauge_path: str, counter: gauge.Gauge
) -> None:
    request(gauge.GaugeMiddleware(instant, counter))
    gauge.create(gauge_path)
    # The old writer still maps the replaced file: nothing it does reaches the new one.
    request(gauge.GaugeMiddleware(instant, counter))
    fresh = gauge.GaugeReader(gauge_path)
    try:
        assert fresh.sample() == gauge.Sample(Row(0, 0, 0, 0), [], 0)
    finally:
        fresh.close()


def test_a_file_that_is_not_a_gauge_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other"
    path.write_bytes(bytes(4096))
    with pytest.raises(ValueError, match="not a gauge file"):
        gauge.Gauge(str(path))


def test_threads_held_inside_count_in_server_and_process_rows(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    n = 8
    gate = Gate()
    app = gauge.GaugeMiddleware(gate, counter)
    threads = [threading.Thread(target=request, args=(app,)) for _ in range(n)]
    for thread in threads:
        thread.start()
    try:
        gate.wait_for(n)
        held = reader.sample()
    finally:
        gate.release.set()
        for thread in threads:
            thread.join(TIMEOUT_S)
    assert held.server == Row(0, n, n, 0)
    assert held.processes == [Row(os.getpid(), n, n, 0)]
    # The peak of the interval since the last sample started at n.
    assert reader.sample().processes == [Row(os.getpid(), 0, n, n)]
    assert reader.sample().server == Row(0, 0, 0, n)


def test_a_response_counts_until_it_is_closed(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    body = gauge.GaugeMiddleware(instant, counter)({}, start_response)
    assert list(body) == [b"ok"]
    assert reader.sample().server.inflight == 1
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]
    assert reader.sample().server == Row(0, 0, 1, 1)


def test_the_apps_own_close_is_called_and_may_fail(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    class Body(list[bytes]):
        def close(self) -> None:
            raise RuntimeError("close failed")

    def app(environ: dict[str, object], respond: Callable[..., object]) -> Body:
        return Body([b"ok"])

    body = gauge.GaugeMiddleware(app, counter)({}, start_response)
    with pytest.raises(RuntimeError, match="close failed"):
        body.close()  # type: ignore[attr-defined]
    assert reader.sample().server == Row(0, 0, 1, 1)


def test_an_app_that_raises_leaves_the_gauge(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    def app(environ: dict[str, object], respond: Callable[..., object]) -> list[bytes]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        gauge.GaugeMiddleware(app, counter)({}, start_response)
    assert reader.sample().server.inflight == 0


def test_peak_is_exact_and_reset_on_read(counter: gauge.Gauge, reader: gauge.GaugeReader) -> None:
    # A burst that is over before the next sample still shows in its peak.
    for _ in range(5):
        counter.enter()
    for _ in range(5):
        counter.leave()
    assert reader.sample().server == Row(0, 0, 5, 5)
    for _ in range(3):
        counter.enter()
    counter.leave()
    counter.leave()
    assert reader.sample().server == Row(0, 1, 3, 7)
    # Reading reset the peak to the inflight at that moment.
    assert reader.sample().server == Row(0, 1, 1, 7)
    counter.enter()
    counter.leave()
    pid = os.getpid()
    assert reader.sample() == gauge.Sample(Row(0, 1, 2, 8), [Row(pid, 1, 2, 8)], 0)


@contextlib.contextmanager
def fast_thread_switching() -> Iterator[None]:
    """Switch threads as often as possible, so that unlocked read-modify-writes interleave."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def enter_leave(counter: gauge.Gauge, pairs: int) -> None:
    for _ in range(pairs):
        counter.enter()
        counter.leave()


# --- greenlets, in a subprocess: monkey-patching pytest itself would break it ------------------

GREENLETS = """
from gevent import monkey

monkey.patch_all()

import sys
import threading
import time

import gevent

import gauge

path, n = sys.argv[1], int(sys.argv[2])
counter = gauge.Gauge(path)
release = threading.Event()
inside = []


def held(environ, respond):
    inside.append(gevent.getcurrent())
    release.wait(10)
    respond("200 OK", [])
    return [b"ok"]


app = gauge.GaugeMiddleware(held, counter)


def request():
    body = app({}, lambda *args: None)
    list(body)
    body.close()


greenlets = [gevent.spawn(request) for _ in range(n)]
deadline = time.monotonic() + 10
while len(inside) < n and time.monotonic() < deadline:
    gevent.sleep(0.01)
print(type(threading.Lock()).__module__, len(set(inside)), flush=True)
sys.stdin.readline()
release.set()
gevent.joinall(greenlets, timeout=10)
print(sum(g.successful() for g in greenlets), flush=True)
"""


def test_greenlets_held_inside_count(gauge_path: str, reader: gauge.GaugeReader) -> None:
    n = 6
    child = subprocess.Popen(
        [sys.executable, "-c", GREENLETS, gauge_path, str(n)],
        cwd=TARGETS,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        lock_module, greenlets_inside = read_line(child.stdout).split()
        # The premise: the gauge was built after monkey-patching, with gevent's locks.
        assert lock_module.startswith("gevent")
        assert int(greenlets_inside) == n
        held = reader.sample()
        child.stdin.write("release\n")
        child.stdin.flush()
        assert int(read_line(child.stdout)) == n
        assert child.wait(TIMEOUT_S) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert held.server == Row(0, n, n, 0)
    assert held.processes == [Row(child.pid, n, n, 0)]
    # The child has exited: its last row, then its slot is free.
    assert reader.sample() == gauge.Sample(Row(0, 0, n, n), [Row(child.pid, 0, n, n)], 0)
    assert reader.sample().processes == []


def read_line(stream: Iterable[str]) -> str:
    """The next line of a child's stdout, waiting at most TIMEOUT_S."""
    ready, _, _ = select.select([stream], [], [], TIMEOUT_S)
    assert ready, "the child said nothing"
    return next(iter(stream))


# --- processes ---------------------------------------------------------------------------------


def fork(child: Callable[[], None]) -> int:
    """Run `child` in a forked process that never returns into pytest; exit status 0 if it ran."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            child()
            status = 0
        finally:
            os._exit(status)
    return pid


def reap(pid: int) -> int:
    """Wait (at most TIMEOUT_S) for a forked child; its exit status, or -1 after killing it."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


def test_forked_processes_each_get_a_slot(counter: gauge.Gauge, reader: gauge.GaugeReader) -> None:
    k = 4
    arrived_r, arrived_w = os.pipe()
    release_r, release_w = os.pipe()

    def hold_one_request() -> None:
        os.close(arrived_r)
        os.close(release_w)

        def held(environ: dict[str, object], respond: Callable[..., object]) -> list[bytes]:
            os.write(arrived_w, b"x")
            # Blocks until the parent closes its end of the pipe.
            os.read(release_r, 1)
            respond("200 OK", [])
            return [b"ok"]

        request(gauge.GaugeMiddleware(held, counter))

    children = [fork(hold_one_request) for _ in range(k)]
    try:
        os.close(arrived_w)
        os.close(release_r)
        arrived = b""
        while len(arrived) < k and select.select([arrived_r], [], [], TIMEOUT_S)[0]:
            arrived += os.read(arrived_r, k)
        held = reader.sample()
    finally:
        os.close(release_w)
        os.close(arrived_r)
        statuses = [reap(pid) for pid in children]
    assert statuses == [0] * k
    assert held.server == Row(0, k, k, 0)
    assert held.processes == sorted(Row(pid, 1, 1, 0) for pid in children)
    # Every child has exited: each row one last time, with its count; then the slots are free.
    assert reader.sample() == gauge.Sample(
        Row(0, 0, k, k), sorted(Row(pid, 0, 1, 1) for pid in children), 0
    )
    assert reader.sample().processes == []


def test_a_forked_child_does_not_count_in_its_parents_slot(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    app = gauge.GaugeMiddleware(instant, counter)
    request(app)
    child = fork(lambda: request(app))
    assert reap(child) == 0
    request(app)
    sample = reader.sample()
    assert sample.server == Row(0, 0, 1, 3)
    assert sample.processes == sorted([Row(os.getpid(), 0, 1, 2), Row(child, 0, 1, 1)])


def test_no_update_is_lost_between_processes_and_threads(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    # Children inherit the parent's gauge, as Werkzeug's forked children do: were their flock on
    # the inherited descriptor, it would not exclude the parent or each other. The parent's two
    # threads share one descriptor: without the thread lock, one thread's unlock would let other
    # processes in while the other thread is still inside.
    pairs = 50000
    children = [fork(lambda: enter_leave(counter, pairs)) for _ in range(2)]
    threads = [threading.Thread(target=enter_leave, args=(counter, pairs)) for _ in range(2)]
    with fast_thread_switching():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT_S * 3)
    assert [reap(pid) for pid in children] == [0, 0]
    sample = reader.sample()
    assert sample.server.served == 4 * pairs
    assert sample.server.inflight == 0
    assert sorted(row.served for row in sample.processes) == [pairs, pairs, 2 * pairs]


def test_a_child_forked_while_the_parent_holds_the_locks_gets_its_own(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    # White-box: hold the writer's own locks across the fork, as a thread of a threaded server
    # might be doing at that moment. An inherited lock would leave the child stuck forever.
    with counter._file:
        child = fork(lambda: request(gauge.GaugeMiddleware(instant, counter)))
        # The child cannot count yet: the flock on its own descriptor excludes the parent's.
        time.sleep(0.2)
        assert os.waitpid(child, os.WNOHANG) == (0, 0)
    assert reap(child) == 0
    assert reader.sample().processes == [Row(child, 0, 1, 1)]


def test_slots_of_exited_processes_are_reused(tmp_path: Path) -> None:
    path = str(tmp_path / "gauge")
    gauge.create(path, slots=2)
    counter, reader = gauge.Gauge(path), gauge.GaugeReader(path)
    try:
        app = gauge.GaugeMiddleware(instant, counter)
        for served in range(1, 6):
            child = fork(lambda: request(app))
            assert reap(child) == 0
            assert reader.sample() == gauge.Sample(Row(0, 0, 1, served), [Row(child, 0, 1, 1)], 0)
    finally:
        counter.close()
        reader.close()


def test_a_process_without_a_slot_still_counts_server_wide(tmp_path: Path) -> None:
    path = str(tmp_path / "gauge")
    gauge.create(path, slots=1)
    counter, reader = gauge.Gauge(path), gauge.GaugeReader(path)
    try:
        app = gauge.GaugeMiddleware(instant, counter)
        request(app)
        child = fork(lambda: request(app))
        assert reap(child) == 0
        assert reader.sample() == gauge.Sample(Row(0, 0, 1, 2), [Row(os.getpid(), 0, 1, 1)], 1)
    finally:
        counter.close()
        reader.close()


def test_a_process_killed_mid_request_is_taken_off_inflight(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    def die_inside() -> None:
        counter.enter()
        os.kill(os.getpid(), signal.SIGKILL)

    child = fork(die_inside)
    assert reap(child) == -signal.SIGKILL
    assert reader.sample() == gauge.Sample(Row(0, 1, 1, 0), [Row(child, 1, 1, 0)], 0, lost=1)
    assert reader.sample() == gauge.Sample(Row(0, 0, 0, 0), [], 0, lost=1)
