"""In-process concurrency gauge: how many requests are inside the app, per process and server-wide.

The gauge lives in a small file (normally under /dev/shm) that every process of the server maps.
It is an array of native int64 words:

    header  [magic, version, slot count, overflow, 0, inflight, peak, served]
    slot i  [pid, inflight, peak, served]                      (slot count slots follow)

The last four header words are laid out like a slot whose pid is 0: that is the server row.
`inflight` counts requests from the moment the WSGI app is called until its response iterable is
closed; `peak` is the highest `inflight` since the reader last sampled (the reader resets it to
the current `inflight`); `served` counts completed requests. A process takes a free slot at its
first request; when none is free it is counted server-wide only, and in `overflow`.

Every access holds two locks: a `threading.Lock` (a gevent lock once gevent has monkey-patched,
which is when the app is imported in a gevent worker) because one process's threads share a file
descriptor and flock does not exclude between them; and `fcntl.flock` on a descriptor that this
process opened itself, because flock excludes between open file descriptions, not processes.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

MAGIC = int.from_bytes(b"FBGAUGE\0", "little")
VERSION = 1
DEFAULT_SLOTS = 1024

_MAGIC, _VERSION, _SLOTS, _OVERFLOW = 0, 1, 2, 3
# Offsets inside a row (the server row or a slot).
_PID, _INFLIGHT, _PEAK, _SERVED = 0, 1, 2, 3
_ROW_WORDS = 4
_SERVER = 4
_SERVER_INFLIGHT, _SERVER_PEAK, _SERVER_SERVED = 5, 6, 7
_FIRST_SLOT = _SERVER + _ROW_WORDS
# A process's slot base when every slot was taken; slot bases are never 0.
_NO_SLOT = 0


def file_size(slots: int) -> int:
    return (_FIRST_SLOT + slots * _ROW_WORDS) * 8


def create(path: str, slots: int = DEFAULT_SLOTS) -> None:
    """Create a zeroed gauge file at `path`, atomically replacing any file already there.

    Replacing (rather than truncating) means a leftover process that still maps the old file
    can neither crash on a shrunken mapping nor count into the new one.
    """
    words = memoryview(bytearray(file_size(slots))).cast("q")
    words[_MAGIC], words[_VERSION], words[_SLOTS] = MAGIC, VERSION, slots
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".gauge-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(words.tobytes())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _layout_problem(words: memoryview) -> str | None:
    if len(words) < _FIRST_SLOT or words[_MAGIC] != MAGIC:
        return "not a gauge file"
    if words[_VERSION] != VERSION:
        return f"gauge file version {words[_VERSION]}, expected {VERSION}"
    if len(words) * 8 != file_size(words[_SLOTS]):
        return "gauge file length does not match its slot count"
    return None


class _SharedFile:
    """A mapped gauge file and the lock that excludes every other holder, in any process."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._map = mmap.mmap(self.fd, 0)
        except BaseException:
            os.close(self.fd)
            raise
        self.words = memoryview(self._map).cast("q")
        self.thread_lock = threading.Lock()
        problem = _layout_problem(self.words)
        if problem:
            self.close()
            raise ValueError(f"{path}: {problem}")

    def __enter__(self) -> memoryview:
        self.thread_lock.acquire()
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self.words

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.thread_lock.release()

    def reopen_after_fork(self) -> None:
        """Give a forked child its own open file description and its own thread lock.

        The inherited descriptor shares the parent's open file description, so flock on it would
        not exclude the parent; the inherited thread lock may have been held by a parent thread
        that does not exist here. /proc/self/fd reopens the very file even if it was replaced.
        """
        inherited = self.fd
        self.fd = os.open(f"/proc/self/fd/{inherited}", os.O_RDWR | os.O_CLOEXEC)
        # Closing the child's copy leaves any flock the parent holds in place.
        os.close(inherited)
        self.thread_lock = threading.Lock()

    def close(self) -> None:
        self.words.release()
        self._map.close()
        os.close(self.fd)


class Gauge:
    """This process's counters in a gauge file; `enter` and `leave` bracket every request."""

    def __init__(self, path: str) -> None:
        self._file = _SharedFile(path)
        # Base word of this process's slot, or _NO_SLOT; None until the first request.
        self._slot: int | None = None
        self._closed = False
        _reset_in_forked_children(self)

    # enter and leave run on every request, so they are spelled out in full rather than going
    # through _SharedFile's context manager and helper functions: Python calls cost about as
    # much as the flock system calls.
    def enter(self) -> None:
        file = self._file
        with file.thread_lock:
            fd = file.fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                words = file.words
                slot = self._slot
                if slot is None:
                    slot = self._slot = _claim_slot(words, os.getpid())
                inflight = words[_SERVER_INFLIGHT] + 1
                words[_SERVER_INFLIGHT] = inflight
                words[_SERVER_PEAK] = max(words[_SERVER_PEAK], inflight)
                if slot:
                    inflight = words[slot + _INFLIGHT] + 1
                    words[slot + _INFLIGHT] = inflight
                    words[slot + _PEAK] = max(words[slot + _PEAK], inflight)
                else:
                    words[_OVERFLOW] += 1
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def leave(self) -> None:
        file = self._file
        with file.thread_lock:
            fd = file.fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                words = file.words
                words[_SERVER_INFLIGHT] -= 1
                words[_SERVER_SERVED] += 1
                slot = self._slot
                if slot:
                    words[slot + _INFLIGHT] -= 1
                    words[slot + _SERVED] += 1
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def after_fork_in_child(self) -> None:
        if not self._closed:
            self._file.reopen_after_fork()
            self._slot = None

    def close(self) -> None:
        self._closed = True
        self._file.close()


def _reset_in_forked_children(gauge: Gauge) -> None:
    # A weak reference, because fork hooks cannot be unregistered and gauges may come and go.
    ref = weakref.ref(gauge)

    def after_in_child() -> None:
        alive = ref()
        if alive is not None:
            alive.after_fork_in_child()

    os.register_at_fork(after_in_child=after_in_child)


def _slot_bases(words: memoryview) -> range:
    return range(_FIRST_SLOT, _FIRST_SLOT + words[_SLOTS] * _ROW_WORDS, _ROW_WORDS)


def _clear_row(words: memoryview, row: int) -> None:
    for offset in range(_ROW_WORDS):
        words[row + offset] = 0


def _claim_slot(words: memoryview, pid: int) -> int:
    for base in _slot_bases(words):
        # A free slot is all zeros: the reader clears a slot when it frees it.
        if words[base + _PID] == 0:
            words[base + _PID] = pid
            return base
    return _NO_SLOT


class GaugeMiddleware:
    """WSGI middleware counting each request from the call until its response is closed."""

    def __init__(self, app: WSGIApplication, gauge: Gauge) -> None:
        self._app = app
        self._gauge = gauge

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self._gauge.enter()
        try:
            body = self._app(environ, start_response)
        except BaseException:
            self._gauge.leave()
            raise
        return _ClosingBody(body, self._gauge.leave)


class _ClosingBody:
    """The app's response iterable; calls `on_close` exactly once, even if the app's close fails."""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._body = body
        self._on_close: Callable[[], None] | None = on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is None:
            return
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            on_close()


class Row(NamedTuple):
    pid: int
    inflight: int
    peak: int
    served: int


class Sample(NamedTuple):
    server: Row
    # One row per slot in use, sorted by pid; a process that has exited appears one last time.
    processes: list[Row]
    # Requests counted server-wide only because every slot was taken.
    overflow: int
    # Requests that processes took with them when they died mid-request, since the reader began:
    # the server accepted them and never answered (a client may have retried them elsewhere).
    lost: int = 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


class GaugeReader:
    """The launcher's view of a gauge file."""

    def __init__(self, path: str) -> None:
        self._file = _SharedFile(path)
        self._lost = 0

    def sample(self, is_alive: Callable[[int], bool] = pid_alive) -> Sample:
        """Read every row, then reset each peak to its inflight and free the slots of dead pids.

        All under the lock, so the peak of the interval between two samples is exact. A dead
        process's row is returned one last time before its slot is freed; requests it left
        inside the app (it was killed mid-request) are taken off the server's inflight then.
        """
        with self._file as words:
            server = _row(words, _SERVER)
            slots = [base for base in _slot_bases(words) if words[base + _PID]]
            processes = [_row(words, base) for base in slots]
            for base in slots:
                if not is_alive(words[base + _PID]):
                    self._lost += words[base + _INFLIGHT]
                    words[_SERVER_INFLIGHT] -= words[base + _INFLIGHT]
                    _clear_row(words, base)
                words[base + _PEAK] = words[base + _INFLIGHT]
            words[_SERVER_PEAK] = words[_SERVER_INFLIGHT]
            overflow = words[_OVERFLOW]
        return Sample(server, sorted(processes), overflow, self._lost)

    def close(self) -> None:
        self._file.close()


def _row(words: memoryview, base: int) -> Row:
    return Row(*words[base : base + _ROW_WORDS].tolist())
