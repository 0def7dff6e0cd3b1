"""In-process concurrency gauge: how many requests are inside the app, per process and server-wide.

A request counts from the moment the WSGI app is called until the last chunk of its response body
is handed to the server, before the server can send it (or until the app raises, the body raises,
or the server closes the body before its end). So a request has left the count before its client
can have the whole response, and a client's next request enters after it: with N clients that
wait for each response, the count never exceeds N, whatever the server does after the last chunk
(Werkzeug's dev server waits up to 10 ms for the client to hang up before it closes the body, and
a threaded one has the next request inside by then). Counting must cost next to nothing, so
writers only log events and the reader (the launcher) does all the arithmetic.

The gauge lives in a sparse file (normally under /dev/shm) that every process of the server maps.
It is an array of native 64-bit words:

    header       [magic, version, slot count, ring size, overflow, dropped, paused, base]
    slot i       [pid, taken, generation, copied, 0, 0, 0, 0]    (slot count of these)
    ring i       [event] * ring size                             (one per slot, unsigned)

Each process claims a slot at its first request. A claim takes a free slot (pid 0), else one
whose process has died (its events the reader had not copied yet are added to `dropped`); it
bumps `generation` so that the reader can tell the new owner from the old one. With every slot
held by a live process, the claimer's requests are only counted, in `overflow`. Claiming and
freeing are rare, so they hold `fcntl.flock` on an open file description of their own (flock
excludes between those, not between processes or threads).

Publishing. Each event (an enter or a leave) gets the slot's next sequence number s. A writer
takes s and stores s + 1 as the slot's `taken` in one call into C code (`zip` over
`itertools.count` and a `map` storing the count) that runs no Python code and keeps the GIL, so
no other thread, greenlet or signal handler of the process runs in between: `taken` only grows
and is exactly the count of numbers handed out, without a lock. Then the writer stores the
event at ring[s % ring size], as one word:

    bits 63..17   nanoseconds since `base` (CLOCK_MONOTONIC when the file was created)
    bit  16       1 for an enter, 0 for a leave
    bit  15       1: "written", so that a never-written (zero) word matches no tag
    bits 14..0    s mod 2**15
                  (bits 15..0 are the word's tag, which names the sequence number it holds)

Both stores are single aligned 8-byte words (CPython copies a memoryview item with an 8-byte
memcpy, a single load or store), which x86-64 and arm64 make single-copy atomic: a reader sees a
word whole, before or after a store. Nothing else is assumed: another CPU may see the two stores
in either order (arm64 reorders them; x86-64 would not, but the word is stored after the count
anyway), and one process's threads store in any order.

Reading. The reader reads `taken` (T) and then the words for sequence numbers `copied` to T-1
(all of them within the last ring size; older ones were overwritten: `dropped`). At the
position of s it can see s's word, if its store is done and visible here; or an older word (of
s - k * ring size, or zero) when the writer was preempted between taking s and storing, or when
this CPU does not see the store yet; or a newer one (s + k * ring size) when the writer has come
round the ring since. The reader takes a word only if its tag is s's. Sequence numbers in a slot
only grow, across holders too (a new holder goes on from the last one's `taken`), and a tag
holds s modulo four rings (the ring size is at most 2**13): an older or newer word could pass
for s's only four or more laps away, which would take three stores to that position in a row
that this CPU never saw (stores become visible within microseconds) or that killed writers
never made, or the writer lapping the reader four times while it copies one sample.

- Of a live process the reader takes the run of matching words from `copied` on and stops at the
  first word that does not match: that number and everything after it are read again at the next
  sample. So no event is taken twice, none is taken before the numbers below it (a preempted
  writer holds back the events after its own until it stores), and every stored event is taken
  once it is visible, unless the ring came round first, which is counted in `dropped`.
- Of a dead process (checked before reading T, so T is final, and death makes all its stores
  visible) every matching word up to T is taken; a number without its word was taken by a thread
  killed between its two stores, and counts in `dropped`.

Because writers need not reach the clock in sequence order, the reader sorts each process's
events by word, that is by stamp (and on equal stamps a leave first). `base` is in the header;
47 bits of nanoseconds cover 39 hours from it, and the launcher creates a new file for each run.
A stamp outside that range is stored as the nearest end: counts stay exact, only the order among
such events is lost. The take relies on the GIL: free-threaded Python builds are not supported.

Replaying. The reader replays the events it has taken, which gives exact inflight, peak and
served counts for every process and the whole server: each process's, and the server's merged,
in stamp order (CLOCK_MONOTONIC is system-wide, so stamps from different processes compare; on
equal stamps a leave goes first, so no peak is invented). It replays only up to a horizon,
because a writer may be preempted between reading the clock and storing: the launcher replays up
to one interval before the sample time. An event taken after the horizon it belongs to was
replayed is still applied, at the start of the next interval, and counted as `late`; an event
the writer overwrote before the reader took it (the ring overflowed) is counted as `dropped`.
Either makes peaks approximate. Once every event of a dead process is replayed, the requests it
still held are `lost` and its slot is freed.

Handing over. The middleware cannot see the server send, so it watches the body. One known whole
when the app returns, a list or tuple of at most one chunk or a Flask response of at most one
chunk (every non-streamed one), leaves with the return. Any other is read one chunk ahead and
leaves just before the chunk that turns out to be the last is handed out: a streamed body's
chunks each reach the server once the next one is ready, and a failure of the body comes after
the chunks before it, as without the gauge. A Flask response (Werkzeug's ClosingIterator) is
changed in place rather than wrapped, which costs less: its first two chunks are read from the
iterator in its private `_next` (a partial of next) when the app returns, `_next` is replaced
by what hands them over, and for a stream the leave joins its private `_callbacks`, to run at
close if the end was never reached. Whether a ClosingIterator class is as this relies on is tried
once per class on a probe; on any other Werkzeug, and for a body of any other type, the body is
wrapped instead. werkzeug is never imported here.

While `paused` is set, the middleware calls the app as if there were no gauge. Only the
launcher's `--alternate` sets it, so that the gauge's own cost can be measured within one run
(on in even periods, off in odd ones) rather than between runs, which vary far more than 2%.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import itertools
import mmap
import operator
import os
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

MAGIC = int.from_bytes(b"FBGAUGE\0", "little")
VERSION = 3
# 256 rings of 8192 events: 16 MiB at most, and the file is sparse, so only rings that are
# written take memory. A ring holds 0.4 s of events at 20 000 per second, four samples' worth.
DEFAULT_SLOTS = 256
DEFAULT_RING = 8192
# A tag tells sequence numbers apart modulo 2**15: four rings of this size.
MAX_RING = 1 << 13

_MAGIC, _VERSION, _SLOTS, _RING, _OVERFLOW, _DROPPED, _PAUSED, _BASE = range(8)
_HEADER_WORDS = 8
_PID, _TAKEN, _GENERATION, _COPIED = range(4)
# A cache line per slot: one process's count stores do not contend with another's.
_SLOT_WORDS = 8

# An event word, from its lowest bit (see the module docstring).
_SEQUENCE_BITS = 0x7FFF
_WRITTEN = 0x8000
_TAG = _WRITTEN | _SEQUENCE_BITS
_ENTER = 0x10000
_STAMP_SHIFT = 17
_LAST_STAMP = (1 << (64 - _STAMP_SHIFT)) - 1


def file_size(slots: int = DEFAULT_SLOTS, ring: int = DEFAULT_RING) -> int:
    return (_HEADER_WORDS + slots * (_SLOT_WORDS + ring)) * 8


def create(
    path: str, slots: int = DEFAULT_SLOTS, ring: int = DEFAULT_RING, base_ns: int | None = None
) -> None:
    """Create an empty gauge file at `path`, atomically replacing any file already there.

    Event stamps count from `base_ns` on CLOCK_MONOTONIC, by default now. Replacing (rather
    than truncating) means a leftover process that still maps the old file can neither crash on
    a shrunken mapping nor count into the new one.
    """
    if slots < 1 or not 1 <= ring <= MAX_RING or ring & (ring - 1):
        raise ValueError(
            f"a gauge needs a slot and a ring size that is a power of two up to {MAX_RING}"
        )
    header = memoryview(bytearray(_HEADER_WORDS * 8)).cast("q")
    header[_MAGIC], header[_VERSION], header[_SLOTS], header[_RING] = MAGIC, VERSION, slots, ring
    header[_BASE] = time.monotonic_ns() if base_ns is None else base_ns
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".gauge-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(header.tobytes())
            # Sparse: a page takes memory only once something is written into it.
            file.truncate(file_size(slots, ring))
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _layout_problem(words: memoryview) -> str | None:
    if len(words) < _HEADER_WORDS or words[_MAGIC] != MAGIC:
        return "not a gauge file"
    if words[_VERSION] != VERSION:
        return f"gauge file version {words[_VERSION]}, expected {VERSION}"
    ring = words[_RING]
    if ring < 1 or ring & (ring - 1) or len(words) * 8 != file_size(words[_SLOTS], ring):
        return "gauge file length does not match its slot count and ring size"
    return None


def pid_alive(pid: int) -> bool:
    """Whether the process still runs. A killed worker stays a zombie until its server reaps
    it, which some do only seconds later: it counts as dead from the moment it died."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class _GaugeFile:
    """A mapped gauge file."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._map = mmap.mmap(self._fd, 0)
        except BaseException:
            os.close(self._fd)
            raise
        self._bytes = memoryview(self._map)
        self.words = self._bytes.cast("q")
        # Every view of the mapping, so that close can release them: mmap refuses to close
        # while one is alive.
        self._views = [self._bytes, self.words]
        problem = _layout_problem(self.words)
        if problem:
            self.close()
            raise ValueError(f"{path}: {problem}")
        self.slots: int = self.words[_SLOTS]
        self.ring_size: int = self.words[_RING]
        self.base: int = self.words[_BASE]

    def _view(self, start: int, length: int, word_format: Literal["q", "Q"] = "q") -> memoryview:
        view = self._bytes[start * 8 : (start + length) * 8].cast(word_format)
        self._views.append(view)
        return view

    def slot_base(self, slot: int) -> int:
        return _HEADER_WORDS + slot * _SLOT_WORDS

    def slot_column(self, word: int) -> list[int]:
        """One word of every slot header, slot by slot."""
        start = _HEADER_WORDS + word
        column = self.words[start : start + self.slots * _SLOT_WORDS : _SLOT_WORDS]
        try:
            return column.tolist()
        finally:
            column.release()

    def ring(self, slot: int) -> memoryview:
        start = _HEADER_WORDS + self.slots * _SLOT_WORDS + slot * self.ring_size
        return self._view(start, self.ring_size, "Q")

    def taken_word(self, slot: int) -> memoryview:
        return self._view(self.slot_base(slot) + _TAKEN, 1)

    def paused_word(self) -> memoryview:
        return self._view(_PAUSED, 1)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[memoryview]:
        """The words, excluding every other holder in this or any other process.

        A new open file description each time, because flock excludes between those: an
        inherited or shared descriptor would not exclude its other holders. /proc/self/fd opens
        the very file that is mapped, even if the path now names a newer one.
        """
        fd = os.open(f"/proc/self/fd/{self._fd}", os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self.words
        finally:
            os.close(fd)  # which releases the lock

    def claim_slot(self, pid: int) -> tuple[int, int] | None:
        """A slot for `pid` and its first sequence number: a free slot, else one whose process
        has died; None if all are held."""
        with self.exclusive() as words:
            pids = self.slot_column(_PID)
            slot = next((i for i, held_by in enumerate(pids) if held_by == 0), None)
            if slot is None:
                slot = next((i for i, held_by in enumerate(pids) if not pid_alive(held_by)), None)
            if slot is None:
                return None
            base = self.slot_base(slot)
            # Events of a dead holder that the reader has not copied yet (none in a free slot:
            # the reader frees a slot once it has copied and replayed all of its events).
            taken = words[base + _TAKEN]
            words[_DROPPED] += taken - words[base + _COPIED]
            # Numbering goes on from the last holder's, so that no word it left in the ring
            # carries the tag of a number the new holder will be read at.
            words[base + _COPIED] = taken
            words[base + _GENERATION] += 1
            words[base + _PID] = pid
            return slot, taken

    def count_overflow(self) -> None:
        with self.exclusive() as words:
            words[_OVERFLOW] += 1

    def close(self) -> None:
        for view in reversed(self._views):
            view.release()
        self._map.close()
        os.close(self._fd)


class Gauge:
    """This process's side of a gauge file; `enter` and `leave` bracket every request.

    Both start out claiming a slot; the claim replaces them with functions that log events into
    the slot (or, when every slot is held, count enters in `overflow`).
    """

    enter: Callable[[], None]
    leave: Callable[[], None]

    def __init__(self, path: str, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._file = _GaugeFile(path)
        # Nonzero while the launcher has paused counting (see --alternate).
        self.paused = self._file.paused_word()
        self._clock = clock
        self._closed = False
        self._start_unclaimed()
        _reset_in_forked_children(self)

    def _start_unclaimed(self) -> None:
        # A new lock: after a fork, the inherited one may be held by a thread that is not here.
        self._claim_lock = threading.Lock()
        self._claimed = False
        self.enter = self._claim_then_enter
        self.leave = self._claim_then_leave

    def _claim_then_enter(self) -> None:
        self._claim()
        self.enter()

    def _claim_then_leave(self) -> None:
        self._claim()
        self.leave()

    def _claim(self) -> None:
        with self._claim_lock:
            if self._claimed:
                return
            pid = os.getpid()
            claimed = self._file.claim_slot(pid)
            if claimed is None:
                print(
                    f"gauge: all {self._file.slots} slots are held; pid {pid}'s requests are "
                    "counted in overflow only",
                    file=sys.stderr,
                    flush=True,
                )
                self.enter, self.leave = self._file.count_overflow, _uncounted
            else:
                slot, first = claimed
                ring, taken = self._file.ring(slot), self._file.taken_word(slot)
                self.enter, self.leave = _event_writers(
                    ring, taken, first, self._file.base, self._clock
                )
            self._claimed = True

    def after_fork_in_child(self) -> None:
        if not self._closed:
            self._start_unclaimed()

    def close(self) -> None:
        self._closed = True
        self._file.close()


def _uncounted() -> None:
    """A leave of a process without a slot: only its enters are counted, in overflow."""


def _event_writers(
    ring: memoryview, taken: memoryview, first: int, base: int, clock: Callable[[], int]
) -> tuple[Callable[[], None], Callable[[], None]]:
    """`enter` and `leave` for one slot whose numbering goes on from `first`.

    They run on every request, so everything they use is a closure variable or a module
    constant, and there is no lock: one call of `take` hands out the next sequence number and
    stores the new `taken`.
    """
    mask = len(ring) - 1
    # typeshed types operator.setitem for mutable sequences and mappings only, and a memoryview,
    # which takes item assignment, is neither: cast once here, never on a request.
    store = cast(Callable[[memoryview, int, int], None], operator.setitem)
    counts_taken = map(
        store, itertools.repeat(taken), itertools.repeat(0), itertools.count(first + 1)
    )
    take: Callable[[], tuple[int, None]] = zip(itertools.count(first), counts_taken).__next__

    def writer(kind: int) -> Callable[[], None]:
        def write() -> None:
            sequence, _ = take()
            try:
                ring[sequence & mask] = (
                    (clock() - base << _STAMP_SHIFT) + (sequence & _SEQUENCE_BITS) + kind
                )
            except ValueError:
                # The stamp does not fit its bits: the nearest end of its range.
                stamp = min(max(clock() - base, 0), _LAST_STAMP)
                ring[sequence & mask] = (stamp << _STAMP_SHIFT) + (sequence & _SEQUENCE_BITS) + kind

        return write

    return writer(_WRITTEN | _ENTER), writer(_WRITTEN)


def _reset_in_forked_children(gauge: Gauge) -> None:
    # A weak reference, because fork hooks cannot be unregistered and gauges may come and go.
    ref = weakref.ref(gauge)

    def after_in_child() -> None:
        alive = ref()
        if alive is not None:
            alive.after_fork_in_child()

    os.register_at_fork(after_in_child=after_in_child)


# Marks the end of a body's chunks; no chunk is this object.
_END: bytes = object()  # type: ignore[assignment]
# A `next` of a body without chunks.
_NO_CHUNKS = iter(()).__next__
# Bodies whose chunks are all there when the app returns.
_SEQUENCES = (list, tuple)


class GaugeMiddleware:
    """WSGI middleware counting each request from the call until its last chunk is handed over."""

    def __init__(self, app: WSGIApplication, gauge: Gauge) -> None:
        self._app = app
        self._gauge = gauge
        self._paused = gauge.paused
        # The ClosingIterator class, once its probe passed; the body types that were probed.
        self._in_place: type | None = None
        self._probed: set[type] = set()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._paused[0]:
            return self._app(environ, start_response)
        gauge = self._gauge
        gauge.enter()
        try:
            body = self._app(environ, start_response)
        except BaseException:
            gauge.leave()
            raise
        if type(body) is self._in_place or self._probe(type(body)):
            _hand_over_in_place(body, gauge.leave)
            return body
        if type(body) in _SEQUENCES and len(body) < 2:  # type: ignore[arg-type]
            # All of it, handed over now.
            gauge.leave()
            return body
        return _HandedOver(body, gauge.leave)

    def _probe(self, body_type: type) -> bool:
        """Whether bodies of this type are changed in place; tried once per type."""
        if body_type in self._probed:
            return False
        self._probed.add(body_type)
        if _changes_in_place(body_type):
            self._in_place = body_type
            return True
        return False


def _changes_in_place(body_type: type) -> bool:
    """Whether `body_type` is Werkzeug's ClosingIterator as the middleware relies on: its `_next`
    is `partial(next, the body's iterator)`, iterating it calls `_next`, and closing it calls its
    `_callbacks` in turn. Tried on a probe."""
    if (body_type.__module__, body_type.__qualname__) != ("werkzeug.wsgi", "ClosingIterator"):
        return False
    seen: list[object] = []
    try:
        probe = body_type(iter((b"chunk",)))
        made = probe._next
        if type(made) is not partial or made.func is not next or len(made.args) != 1:
            return False
        probe._next = next(made.args[0]).decode
        probe._callbacks.insert(0, lambda: seen.append("closed"))
        seen.append(next(probe))
        probe.close()
    except Exception:
        return False
    return seen == ["chunk", "closed"]


def _hand_over_in_place(body: Any, leave: Callable[[], None]) -> None:
    """Make a Flask response (a ClosingIterator) hand its chunks over as `_handing_over` does.

    Looking at its first two chunks now costs less than a generator per request, and mostly
    suffices: a non-streamed response is one chunk, which is then handed over with the body.
    """
    chunks = body._next.args[0]
    first = following = _END
    try:
        first = next(chunks, _END)
        if first is not _END:
            following = next(chunks, _END)
    except Exception as error:
        # Hand over what came before, then fail where the body did, as without the gauge.
        body._callbacks.insert(0, leave)
        body._next = _then_raise(first, error).__next__
        return
    if following is _END:
        leave()
        body._next = _NO_CHUNKS if first is _END else iter((first,)).__next__
        return
    # Streamed. First in line, so that a failing callback after it cannot keep the request
    # counted if the server closes the body before its end.
    callbacks = body._callbacks
    callbacks.insert(0, leave)
    body._next = _handing_over(chain((first, following), chunks), leave, callbacks).__next__


def _then_raise(chunk: bytes, error: Exception) -> Iterator[bytes]:
    if chunk is not _END:
        yield chunk
    raise error


def _handing_over(
    chunks: Iterator[bytes], leave: Callable[[], None], pending: list[Callable[[], None]]
) -> Iterator[bytes]:
    """The chunks, each handed out once the next is known: `leave` runs (and is taken out of
    `pending`, which the server's close runs) just before the last one is handed out."""
    chunk = next(chunks, _END)
    try:
        for following in chunks:
            yield chunk
            chunk = following
    except Exception:
        # The body failed after `chunk`: hand it over first, as it would go without the gauge.
        # The server closes the body after the failure.
        if chunk is not _END:
            yield chunk
        raise
    pending.remove(leave)
    leave()
    if chunk is not _END:
        yield chunk


class _HandedOver:
    """Any other body: iterated through `_handing_over`; closing it closes the app's body and,
    if the last chunk was never reached, leaves."""

    # One is made for every such request.
    __slots__ = ("_body", "_leave", "_pending")

    def __init__(self, body: Iterable[bytes], leave: Callable[[], None]) -> None:
        self._body = body
        self._leave = leave
        self._pending = [leave]

    def __iter__(self) -> Iterator[bytes]:
        return _handing_over(iter(self._body), self._leave, self._pending)

    def close(self) -> None:
        try:
            if hasattr(self._body, "close"):
                self._body.close()
        finally:
            if self._pending:
                self._pending.pop()()


class Row(NamedTuple):
    pid: int
    inflight: int
    peak: int
    served: int


class Sample(NamedTuple):
    server: Row
    # One row per process holding a slot, sorted by pid; one that has died appears a last time.
    processes: list[Row]
    # Requests not counted at all because every slot was held by a live process.
    overflow: int
    # Requests that processes took with them when they died mid-request, since the reader began:
    # the server accepted them and never answered (a client may have retried them elsewhere).
    lost: int = 0
    # Events taken after the horizon they belonged to had been replayed; and events overwritten
    # before the reader took them or never written by a killed writer, since the reader began.
    late: int = 0
    dropped: int = 0


@dataclass
class _Owner:
    """The reader's account of one process that holds, or held, a slot."""

    slot: int
    pid: int
    # The next sequence number to read.
    copied: int
    # Events taken from the ring but not replayed yet: they are beyond the horizon. Sorted.
    pending: list[int] = field(default_factory=list)
    inflight: int = 0
    served: int = 0
    dead: bool = False

    def take_due(self, horizon: int) -> list[int]:
        """The pending events stamped at or before `horizon` (ns since the base)."""
        cut = bisect.bisect_right(self.pending, _last_event_at(horizon))
        due, self.pending = self.pending[:cut], self.pending[cut:]
        return due


def _last_event_at(ns: int) -> int:
    """The highest event stamped at `ns`: every event stamped up to `ns` is at most this."""
    return ns << _STAMP_SHIFT | (1 << _STAMP_SHIFT) - 1


def _replay(events: list[int], inflight: int) -> tuple[int, int, int]:
    """Inflight after `events`, the highest it was since (and including) the start, and leaves."""
    peak = inflight
    leaves = 0
    for event in events:
        if event & _ENTER:
            inflight += 1
            # Not max(): this loop runs in the launcher, which shares the target's CPU.
            if inflight > peak:  # noqa: PLR1730
                peak = inflight
        else:
            inflight -= 1
            leaves += 1
    return inflight, peak, leaves


def _tags(first: int, end: int) -> list[int]:
    """The tags of sequence numbers `first` to `end` - 1 (fewer than 2**15 of them): they count
    up through the sequence bits, and wrap round at most once."""
    low, count = first & _SEQUENCE_BITS, end - first
    upto_wrap = list(range(_WRITTEN + low, _WRITTEN + min(low + count, _SEQUENCE_BITS + 1)))
    return upto_wrap + list(range(_WRITTEN, _WRITTEN + count - len(upto_wrap)))


class GaugeReader:
    """The launcher's view of a gauge file: replays every process's events into counts."""

    def __init__(self, path: str) -> None:
        self._file = _GaugeFile(path)
        self._rings = [self._file.ring(slot) for slot in range(self._file.slots)]
        # By (slot, generation): a slot taken over from a dead process has a new generation.
        self._owners: dict[tuple[int, int], _Owner] = {}
        # Nanoseconds since the base up to which events have been replayed.
        self._horizon = -1
        self._inflight = self._served = 0
        self._lost = self._late = self._dropped = 0

    def pause(self, paused: bool) -> None:
        self._file.words[_PAUSED] = int(paused)

    def sample(self, horizon_ns: int | None = None) -> Sample:
        """Replay the events stamped up to `horizon_ns` (CLOCK_MONOTONIC), by default all.

        A process's `peak` is the highest inflight since the previous sample. A dead process
        appears one last time once all its events are replayed; then requests it left inside
        the app (it was killed mid-request) are counted as lost and its slot is freed.
        """
        with self._file.exclusive() as words:
            held = self._copy_new_events(words)
            now = time.monotonic_ns() if horizon_ns is None else horizon_ns
            horizon = now - self._file.base
            due = {key: owner.take_due(horizon) for key, owner in self._owners.items()}
            all_due = sorted(itertools.chain.from_iterable(due.values()))
            self._late += bisect.bisect_right(all_due, _last_event_at(self._horizon))
            self._horizon = max(self._horizon, horizon)
            self._inflight, peak, leaves = _replay(all_due, self._inflight)
            self._served += leaves
            server = Row(0, self._inflight, peak, self._served)
            processes = sorted(
                self._replay_owner(owner, due[key]) for key, owner in self._owners.items()
            )
            for key, owner in list(self._owners.items()):
                if owner.dead and not owner.pending:
                    self._retire(key, owner, held, words)
            overflow, dropped = words[_OVERFLOW], words[_DROPPED]
        return Sample(server, processes, overflow, self._lost, self._late, self._dropped + dropped)

    def _copy_new_events(self, words: memoryview) -> set[tuple[int, int]]:
        """Take every slot's new events into its owner's pending list; the held slots' keys."""
        pids = self._file.slot_column(_PID)
        generations = self._file.slot_column(_GENERATION)
        held = set()
        for slot, (pid, generation) in enumerate(zip(pids, generations, strict=True)):
            if pid == 0:
                continue
            key = (slot, generation)
            held.add(key)
            owner = self._owners.get(key)
            if owner is None:
                copied = words[self._file.slot_base(slot) + _COPIED]
                owner = self._owners[key] = _Owner(slot, pid, copied)
            # Before reading `taken`: a process that is dead has made its last store.
            owner.dead = owner.dead or not pid_alive(pid)
            self._copy(owner, words)
        for key, owner in self._owners.items():
            # Another process took the slot over: the claimer found this one dead.
            owner.dead = owner.dead or key not in held
        return held

    def _copy(self, owner: _Owner, words: memoryview) -> None:
        base = self._file.slot_base(owner.slot)
        ring = self._rings[owner.slot]
        size = len(ring)
        taken = words[base + _TAKEN]
        # Numbers before the last ring's worth have been overwritten, or are being.
        start = max(owner.copied, taken - size)
        self._dropped += start - owner.copied
        first = start & (size - 1)
        end = first + taken - start
        events = ring[first : min(end, size)].tolist()
        if end > size:
            events += ring[: end - size].tolist()
        tags, expected = [event & _TAG for event in events], _tags(start, taken)
        if tags == expected:
            owner.copied = taken
        elif owner.dead:
            # Final: a number without its word was taken by a writer killed before storing it.
            pairs = zip(events, tags, expected, strict=True)
            matching = [event for event, tag, want in pairs if tag == want]
            self._dropped += len(events) - len(matching)
            events, owner.copied = matching, taken
        else:
            # Not stored yet, or not visible here yet: from there on, again at the next sample.
            tag_pairs = zip(tags, expected, strict=True)
            stored = next(i for i, (tag, want) in enumerate(tag_pairs) if tag != want)
            del events[stored:]
            owner.copied = start + stored
        owner.pending += events
        # Writers take numbers and read the clock in either order.
        owner.pending.sort()
        words[base + _COPIED] = owner.copied

    def _replay_owner(self, owner: _Owner, due: list[int]) -> Row:
        owner.inflight, peak, leaves = _replay(due, owner.inflight)
        owner.served += leaves
        return Row(owner.pid, owner.inflight, peak, owner.served)

    def _retire(
        self, key: tuple[int, int], owner: _Owner, held: set[tuple[int, int]], words: memoryview
    ) -> None:
        self._lost += owner.inflight
        self._inflight -= owner.inflight
        del self._owners[key]
        if key in held:
            words[self._file.slot_base(owner.slot) + _PID] = 0

    def close(self) -> None:
        self._rings.clear()
        self._file.close()
