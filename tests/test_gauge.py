"""The concurrency gauge under threads, greenlets and processes, and its reader's semantics.

Every test holds requests inside the gauge at a known moment and checks the exact counts, so a
lost event, a shared slot or a missed peak shows up as a wrong number, not as a slowdown. Tests
that need events at chosen times give the writer a fake clock (on a file whose stamps count from
0) and the reader a horizon; tests of the publish protocol stop a writer between its two stores
by holding it inside its clock. What the middleware counts as in flight: test_gauge_handover.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from flaskbench_target import gauge
from flaskbench_target.gauge import Row

TARGETS = Path(__file__).resolve().parent.parent / "targets"
TIMEOUT_S = 10


@pytest.fixture
def zero_based(tmp_path: Path) -> str:
    """A gauge file whose stamps count from 0, for fake clocks."""
    path = str(tmp_path / "gauge")
    gauge.create(path, base_ns=0)
    return path


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
    """One request the way a WSGI server makes it: call, iterate, close if it can be closed."""
    body = app({}, start_response)
    for _chunk in body:
        pass
    if hasattr(body, "close"):
        body.close()


def instant(environ: dict[str, object], respond: Callable[..., object]) -> list[bytes]:
    respond("200 OK", [])
    return [b"ok"]


# --- one process -----------------------------------------------------------------------------


def test_a_fresh_file_is_all_zeros(gauge_path: str, reader: gauge.GaugeReader) -> None:
    assert reader.sample() == gauge.Sample(Row(0, 0, 0, 0), [], 0)
    size = gauge.file_size(gauge.DEFAULT_SLOTS, gauge.DEFAULT_RING)
    assert os.path.getsize(gauge_path) == size
    # Sparse: the rings take memory only once they are written.
    assert os.stat(gauge_path).st_blocks * 512 < size // 100


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


@pytest.mark.parametrize("ring", [1000, 2 * gauge.MAX_RING])
def test_a_ring_size_that_tags_cannot_tell_apart_is_refused(tmp_path: Path, ring: int) -> None:
    # A tag holds a sequence number modulo four rings of the largest size.
    assert gauge.MAX_RING * 4 == 1 << 15
    with pytest.raises(ValueError, match=f"power of two up to {gauge.MAX_RING}"):
        gauge.create(str(tmp_path / "gauge"), ring=ring)


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


def stamps(*ns: int) -> Callable[[], int]:
    """A fake clock for a writer: returns `ns`, one after the other."""
    return iter(ns).__next__


def test_events_beyond_the_horizon_wait_for_a_later_sample(zero_based: str) -> None:
    counter = gauge.Gauge(zero_based, clock=stamps(1_000, 2_000, 3_000))
    reader = gauge.GaugeReader(zero_based)
    try:
        counter.enter()
        counter.enter()
        counter.leave()
        assert reader.sample(1_500).server == Row(0, 1, 1, 0)
        assert reader.sample(2_500).server == Row(0, 2, 2, 0)
        assert reader.sample(2_999).server == Row(0, 2, 2, 0)
        # An event stamped exactly at the horizon is replayed.
        last = reader.sample(3_000)
        assert last.server == Row(0, 1, 2, 1)
        assert last.late == 0
    finally:
        counter.close()
        reader.close()


def test_an_event_stored_after_its_horizon_is_late_but_applied(zero_based: str) -> None:
    # As if the writer was preempted between reading the clock and storing the event.
    counter = gauge.Gauge(zero_based, clock=stamps(1_000, 5_000))
    reader = gauge.GaugeReader(zero_based)
    try:
        assert reader.sample(2_000).server == Row(0, 0, 0, 0)
        counter.enter()
        late = reader.sample(3_000)
        assert (late.server, late.late) == (Row(0, 1, 1, 0), 1)
        counter.leave()
        on_time = reader.sample(6_000)
        assert (on_time.server, on_time.late) == (Row(0, 0, 1, 1), 1)
    finally:
        counter.close()
        reader.close()


def test_on_equal_stamps_a_leave_goes_first(zero_based: str) -> None:
    # Two processes' events at the same nanosecond: their true order is unknown, and putting the
    # leave first never reports a peak that may not have been.
    first = gauge.Gauge(zero_based, clock=stamps(1_000, 2_000))
    second = gauge.Gauge(zero_based, clock=stamps(2_000, 3_000))
    reader = gauge.GaugeReader(zero_based)
    try:
        first.enter()
        second.enter()
        first.leave()
        second.leave()
        assert reader.sample().server == Row(0, 0, 1, 2)
    finally:
        first.close()
        second.close()
        reader.close()


def test_events_overwritten_before_they_were_read_are_dropped(tmp_path: Path) -> None:
    path = str(tmp_path / "gauge")
    gauge.create(path, slots=2, ring=16)
    counter, reader = gauge.Gauge(path), gauge.GaugeReader(path)
    try:
        enter_leave(counter, 20)
        # Only the last 16 events, 8 requests, were still in the ring.
        dropped = reader.sample()
        assert dropped.server == Row(0, 0, 1, 8)
        assert dropped.dropped == 40 - 16
        enter_leave(counter, 8)
        assert reader.sample().dropped == 40 - 16
    finally:
        counter.close()
        reader.close()


class LappingRing:
    """A reader's view of a ring whose writer comes round again while the reader copies it."""

    def __init__(self, ring: memoryview, lap: Callable[[], None]) -> None:
        self._ring = ring
        self._lap: Callable[[], None] | None = lap

    def __len__(self) -> int:
        return len(self._ring)

    def __getitem__(self, index: slice) -> memoryview:
        lap, self._lap = self._lap, None
        if lap is not None:
            lap()
        return self._ring[index]


def test_events_overwritten_while_the_reader_copied_them_are_dropped(tmp_path: Path) -> None:
    path = str(tmp_path / "gauge")
    gauge.create(path, slots=1, ring=16)
    counter, reader = gauge.Gauge(path), gauge.GaugeReader(path)
    try:
        enter_leave(counter, 6)
        # White-box: 10 more events overwrite the ring's first 6 between reading the count (12)
        # and copying the events. Their tags name numbers 16 to 21, not 0 to 5: none is taken
        # for what it is not, and the reader stops right there.
        reader._rings[0] = LappingRing(reader._rings[0], lambda: enter_leave(counter, 5))  # type: ignore[call-overload]
        lapped = reader.sample()
        assert (lapped.server, lapped.dropped) == (Row(0, 0, 0, 0), 0)
        # Next time the count says that 0 to 5 were overwritten; 6 to 21 are all there.
        after = reader.sample()
        assert (after.server, after.dropped) == (Row(0, 0, 1, 8), 6)
    finally:
        counter.close()
        reader.close()


# --- the publish protocol: a number is taken before its event is stored --------------------


class HeldClock:
    """A writer's clock that holds the next writer to read it, in this process or a forked
    child, until released: that writer has taken its sequence number, so the slot's count
    includes it, but has not stored its event, as if it were preempted right there, or as if
    this CPU did not see its store yet (weak memory ordering). Otherwise the real clock."""

    def __init__(self) -> None:
        self._armed = False
        self._held_r, self._held_w = os.pipe()
        self._release_r, self._release_w = os.pipe()

    def __call__(self) -> int:
        if self._armed:
            self._armed = False
            os.write(self._held_w, b"h")
            os.read(self._release_r, 1)
        return time.monotonic_ns()

    def hold_next(self) -> None:
        self._armed = True

    def wait_held(self) -> None:
        assert select.select([self._held_r], [], [], TIMEOUT_S)[0], "no writer was held"
        os.read(self._held_r, 1)

    def release(self) -> None:
        os.write(self._release_w, b"r")

    def close(self) -> None:
        for fd in (self._held_r, self._held_w, self._release_r, self._release_w):
            os.close(fd)


@pytest.fixture
def held_clock() -> Iterator[HeldClock]:
    clock = HeldClock()
    yield clock
    clock.close()


def test_a_number_taken_before_its_event_is_stored_holds_back_what_follows(
    tmp_path: Path, held_clock: HeldClock
) -> None:
    path = str(tmp_path / "gauge")
    gauge.create(path, slots=1, ring=16)
    counter, reader = gauge.Gauge(path, clock=held_clock), gauge.GaugeReader(path)
    try:
        # Two laps of the ring, read as they go: an enter, 7 requests, an enter; a leave, 7
        # requests, a leave. Number 16, whose place number 32 will take, is a leave.
        counter.enter()
        enter_leave(counter, 7)
        counter.enter()
        assert reader.sample().server == Row(0, 2, 2, 7)
        counter.leave()
        enter_leave(counter, 7)
        counter.leave()
        assert reader.sample().server == Row(0, 0, 2, 16)
        held_clock.hold_next()
        entering = threading.Thread(target=counter.enter)
        entering.start()
        try:
            held_clock.wait_held()
            # Number 32 is counted as taken and its place holds number 16's leave. A reader that
            # took it would count a leave nobody made (inflight -1); this one waits for 32, and
            # so for 33 and 34 behind it.
            enter_leave(counter, 1)
            held = reader.sample()
        finally:
            held_clock.release()
            entering.join(TIMEOUT_S)
        assert (held.server, held.processes) == (Row(0, 0, 0, 16), [Row(os.getpid(), 0, 0, 16)])
        assert (held.dropped, held.late) == (0, 0)
        # All three now, in stamp order (32 read the clock last); 33 and 34 were stamped before
        # the last sample, hence late.
        released = reader.sample()
        assert (released.server, released.late, released.dropped) == (Row(0, 1, 1, 17), 2, 0)
        assert released.processes == [Row(os.getpid(), 1, 1, 17)]
    finally:
        counter.close()
        reader.close()


def test_tags_wrap_round_with_the_sequence_numbers(tmp_path: Path) -> None:
    path = str(tmp_path / "gauge")
    gauge.create(path, slots=1, ring=16)
    # White-box: a slot whose last holder took numbers up to just below 2**15, where the tags'
    # sequence bits wrap round.
    words = gauge._GaugeFile(path)
    slot = words.slot_base(0)
    words.words[slot + gauge._TAKEN] = words.words[slot + gauge._COPIED] = (1 << 15) - 5
    words.close()
    counter, reader = gauge.Gauge(path), gauge.GaugeReader(path)
    try:
        enter_leave(counter, 2)
        assert reader.sample().server == Row(0, 0, 1, 2)
        # From 2**15 - 1 on, across the wrap, in one read.
        enter_leave(counter, 5)
        wrapped = reader.sample()
        assert (wrapped.server, wrapped.dropped) == (Row(0, 0, 1, 7), 0)
    finally:
        counter.close()
        reader.close()


class SetClock:
    """A writer's clock that reads whatever the test set."""

    now = 0

    def __call__(self) -> int:
        return self.now


def test_stamps_outside_their_range_are_clamped_not_raised(tmp_path: Path) -> None:
    path, base = str(tmp_path / "gauge"), 1_000
    gauge.create(path, base_ns=base)
    clock = SetClock()
    counter, reader = gauge.Gauge(path, clock=clock), gauge.GaugeReader(path)
    try:
        clock.now = base - 10
        counter.enter()
        clock.now = base + (1 << 47) + 5
        counter.leave()
        # The enter at the base, the leave at the last nanosecond of the 47 bits.
        assert reader.sample(base).server == Row(0, 1, 1, 0)
        assert reader.sample(base + (1 << 47) - 2).server == Row(0, 1, 1, 0)
        assert reader.sample(base + (1 << 47) - 1).server == Row(0, 0, 1, 1)
    finally:
        counter.close()
        reader.close()


NO_SYSTEM_CALLS = """
import os
import sys

from flaskbench_target import gauge

counter = gauge.Gauge(sys.argv[1])
counter.enter()
counter.leave()
os.getppid()
for _ in range(100_000):
    counter.enter()
    counter.leave()
os.getppid()
"""
# The interpreter may grow or shrink its heap whenever it likes.
MEMORY_CALLS = {"brk", "mmap", "munmap", "mremap", "madvise"}


def test_enter_and_leave_make_no_system_call(gauge_path: str, tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("no strace")
    trace = tmp_path / "trace"
    result = subprocess.run(
        [strace, "-f", "-o", str(trace), sys.executable, "-c", NO_SYSTEM_CALLS, gauge_path],
        cwd=TARGETS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "ptrace" in result.stderr:
        pytest.skip(f"strace cannot trace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    # "PID name(arguments) = result", one line per system call.
    calls = [line.split()[1].partition("(")[0] for line in trace.read_text().splitlines()]
    first, last = calls.index("getppid"), len(calls) - 1 - calls[::-1].index("getppid")
    assert [call for call in calls[first + 1 : last] if call not in MEMORY_CALLS] == []
    # The premise: the claim itself was traced, and locked the file.
    assert "flock" in calls[:first]


def test_enter_and_leave_take_no_file_lock_once_the_slot_is_claimed(
    counter: gauge.Gauge, reader: gauge.GaugeReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("a system call on the per-request path")

    counter.enter()
    with monkeypatch.context() as patched:
        for module, name in [(fcntl, "flock"), (os, "open"), (os, "getpid")]:
            patched.setattr(module, name, refuse)
        enter_leave(counter, 100)
    counter.leave()
    assert reader.sample().server == Row(0, 0, 2, 101)


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

from flaskbench_target import gauge

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
    if hasattr(body, "close"):
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
        # The premise: the gauge was built after monkey-patching, and the greenlets are many.
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
        # Bounded by the timeout, and by the end of the pipe if every child died.
        while len(arrived) < k and select.select([arrived_r], [], [], TIMEOUT_S)[0]:
            more = os.read(arrived_r, k)
            if not more:
                break
            arrived += more
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


def enter_leave_yielding(counter: gauge.Gauge, pairs: int) -> None:
    # Letting the other threads in after each request makes them interleave more.
    for _ in range(pairs):
        counter.enter()
        counter.leave()
        time.sleep(0)


# Fewer events per process than its ring holds: the totals are exact however far the reader
# falls behind on a busy machine.
HAMMER_PROCESSES, HAMMER_THREADS, HAMMER_PAIRS = 4, 4, 1000
assert HAMMER_THREADS * HAMMER_PAIRS * 2 <= gauge.DEFAULT_RING


def test_many_writers_count_exactly_while_the_reader_samples(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    # Children inherit the parent's gauge, as Werkzeug's forked children do: were they to keep
    # writing into one slot, they would overwrite each other's events. The threads of a child
    # share its slot without a lock, and switch as often as they can, so many are preempted
    # between taking a number and storing its event while the reader reads.
    def hammer() -> None:
        threads = [
            threading.Thread(target=enter_leave_yielding, args=(counter, HAMMER_PAIRS))
            for _ in range(HAMMER_THREADS)
        ]
        with fast_thread_switching():
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(TIMEOUT_S * 6)

    # The parent holds a slot too, as a forking server's parent may.
    enter_leave(counter, 1)
    children = [fork(hammer) for _ in range(HAMMER_PROCESSES)]
    samples, statuses = [], {}
    deadline = time.monotonic() + TIMEOUT_S * 6
    while len(statuses) < len(children) and time.monotonic() < deadline:
        samples.append(reader.sample())
        for pid in set(children) - set(statuses):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                statuses[pid] = os.waitstatus_to_exitcode(status)
    statuses.update((pid, reap(pid)) for pid in set(children) - set(statuses))
    # The children's last rows, then their slots are freed.
    samples += [reader.sample(), reader.sample()]
    assert statuses == dict.fromkeys(children, 0)
    requests = HAMMER_PROCESSES * HAMMER_THREADS * HAMMER_PAIRS
    midway = [sample for sample in samples if 0 < sample.server.served < requests]
    assert len(midway) >= 3, "the reader hardly sampled while the writers ran"
    final = samples[-1]
    assert (final.server, final.processes) == (
        Row(0, 0, 0, requests + 1),
        [Row(os.getpid(), 0, 0, 1)],
    )
    assert (final.dropped, final.lost, final.overflow) == (0, 0, 0)
    rows = [row for sample in samples for row in sample.processes]
    served = {row.pid: row.served for row in rows}
    assert served == {os.getpid(): 1} | dict.fromkeys(children, HAMMER_THREADS * HAMMER_PAIRS)
    assert min(row.inflight for row in rows) >= 0
    assert min(sample.server.inflight for sample in samples) >= 0
    # A thread is in at most one request at a time.
    assert max(row.peak for row in rows) <= HAMMER_THREADS
    assert max(sample.server.peak for sample in samples) <= HAMMER_PROCESSES * HAMMER_THREADS


def test_a_child_forked_while_the_parent_claims_gets_a_claim_lock_of_its_own(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    # White-box: hold the claim lock across the fork, as a thread of a threaded server might be
    # claiming the slot at that moment. An inherited lock would leave the child stuck forever.
    with counter._claim_lock:
        child = fork(lambda: request(gauge.GaugeMiddleware(instant, counter)))
        assert reap(child) == 0
    request(gauge.GaugeMiddleware(instant, counter))
    assert reader.sample().processes == sorted([Row(os.getpid(), 0, 1, 1), Row(child, 0, 1, 1)])


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


def test_a_process_without_a_slot_is_counted_in_overflow(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "gauge")
    gauge.create(path, slots=1)
    counter, reader = gauge.Gauge(path), gauge.GaugeReader(path)
    try:
        app = gauge.GaugeMiddleware(instant, counter)
        request(app)
        child = fork(lambda: enter_leave(counter, 2))
        assert reap(child) == 0
        assert reader.sample() == gauge.Sample(Row(0, 0, 1, 1), [Row(os.getpid(), 0, 1, 1)], 2)
    finally:
        counter.close()
        reader.close()
    assert f"all 1 slots are held; pid {child}'s requests are counted in overflow only" in (
        capfd.readouterr().err
    )


def test_a_claim_takes_over_the_slot_of_a_dead_process(tmp_path: Path) -> None:
    path = str(tmp_path / "gauge")
    gauge.create(path, slots=1)
    counter, reader = gauge.Gauge(path), gauge.GaugeReader(path)
    release_r, release_w = os.pipe()
    try:
        app = gauge.GaugeMiddleware(instant, counter)

        def serve_then_wait() -> None:
            os.close(release_w)
            request(app)
            # Until the parent closes its end of the pipe.
            os.read(release_r, 1)

        first = fork(serve_then_wait)
        deadline = time.monotonic() + TIMEOUT_S
        while reader.sample().server.served == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.close(release_w)
        assert reap(first) == 0
        # Before the reader has freed the dead one's slot: its events were all copied already.
        second = fork(lambda: request(app))
        assert reap(second) == 0
        assert reader.sample() == gauge.Sample(
            Row(0, 0, 1, 2), sorted([Row(first, 0, 0, 1), Row(second, 0, 1, 1)]), 0
        )
        # Taken over before the reader copied anything: the third's events are dropped.
        third = fork(lambda: request(app))
        assert reap(third) == 0
        fourth = fork(lambda: request(app))
        assert reap(fourth) == 0
        assert reader.sample() == gauge.Sample(
            Row(0, 0, 1, 3), [Row(fourth, 0, 1, 1)], 0, dropped=2
        )
        assert reader.sample().processes == []
    finally:
        os.close(release_r)
        counter.close()
        reader.close()


def test_a_new_holder_of_a_slot_numbers_on_from_the_last_one(
    tmp_path: Path, held_clock: HeldClock
) -> None:
    path = str(tmp_path / "gauge")
    gauge.create(path, slots=1, ring=16)
    reader = gauge.GaugeReader(path)
    try:
        first = fork(lambda: enter_leave(gauge.Gauge(path), 1))
        assert reap(first) == 0
        # Numbers 0 and 1; the first holder's last row, then its slot is free.
        assert reader.sample() == gauge.Sample(Row(0, 0, 1, 1), [Row(first, 0, 1, 1)], 0)

        def enter_then_hold_the_leave() -> None:
            counter = gauge.Gauge(path, clock=held_clock)
            counter.enter()
            held_clock.hold_next()
            counter.leave()

        second = fork(enter_then_hold_the_leave)
        try:
            held_clock.wait_held()
            held = reader.sample()
        finally:
            held_clock.release()
            status = reap(second)
        assert status == 0
        # The second holder's numbers are 2 and 3. Had it started again from 0, its leave would
        # be number 1, whose place still holds the first holder's leave with number 1's very
        # tag, and it would look gone while it is inside.
        assert (held.server, held.processes) == (Row(0, 1, 1, 1), [Row(second, 1, 1, 0)])
        assert reader.sample().server == Row(0, 0, 1, 2)
    finally:
        reader.close()


def test_a_writer_killed_between_its_stores_leaves_a_number_that_is_skipped(
    tmp_path: Path, held_clock: HeldClock
) -> None:
    path = str(tmp_path / "gauge")
    gauge.create(path, slots=1)
    reader = gauge.GaugeReader(path)

    def die_while_a_leave_is_held() -> None:
        counter = gauge.Gauge(path, clock=held_clock)
        counter.enter()
        held_clock.hold_next()
        threading.Thread(target=counter.leave).start()
        held_clock.wait_held()
        # Number 1 is taken and never stored; 2 to 7 are stored after it.
        enter_leave(counter, 3)
        os.kill(os.getpid(), signal.SIGKILL)

    try:
        child = fork(die_while_a_leave_is_held)
        assert reap(child) == -signal.SIGKILL
        # Dead, so the reader reads past the gap: the three requests after it were served, and
        # the one whose leave was never stored was inside when the process died: lost.
        expected = gauge.Sample(Row(0, 1, 2, 3), [Row(child, 1, 2, 3)], 0, lost=1, dropped=1)
        assert reader.sample() == expected
        assert reader.sample() == gauge.Sample(Row(0, 0, 0, 3), [], 0, lost=1, dropped=1)
    finally:
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
