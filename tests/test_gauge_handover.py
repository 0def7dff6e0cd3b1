"""What the gauge's middleware counts as in flight: from the call of the app until the last chunk
of the response body is handed to the server, or until the app or its body fails, or until the
server closes the body before its end, each request exactly once.

A fake server drives the middleware as Werkzeug and gunicorn do (call, next() per chunk, close)
and the reader is sampled at each step, so every test sees when the request stopped counting.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from flaskbench_target import gauge
from flaskbench_target.gauge import Row
from test_gauge import start_response
from werkzeug.wsgi import ClosingIterator

TARGETS = Path(__file__).resolve().parent.parent / "targets"
IN, GONE = Row(0, 1, 1, 0), Row(0, 0, 1, 1)


def generator(chunks: list[bytes]) -> Iterator[bytes]:
    yield from chunks


# The bodies a WSGI app may return: a list or tuple, a generator, or a Flask response.
BODIES: dict[str, Callable[[list[bytes]], Iterable[bytes]]] = {
    "list": list,
    "tuple": tuple,
    "generator": generator,
    "flask": lambda chunks: ClosingIterator(generator(chunks), []),
}


def app_returning(body: Iterable[bytes]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, object], respond: Callable[..., object]) -> Iterable[bytes]:
        respond("200 OK", [])
        return body

    return app


def server_rows(
    middleware: Callable[..., Iterable[bytes]], reader: gauge.GaugeReader, chunks: int
) -> tuple[list[Row], Iterable[bytes], Iterator[bytes]]:
    """The server row after the call and after each of `chunks` next() calls; the body and the
    iterator the server is taking its chunks from."""
    body = middleware({}, start_response)
    rows = [reader.sample().server]
    handed = iter(body)
    for _ in range(chunks):
        next(handed)
        rows.append(reader.sample().server)
    return rows, body, handed


@pytest.mark.parametrize("kind", BODIES)
def test_a_request_leaves_as_its_last_chunk_is_handed_over(
    counter: gauge.Gauge, reader: gauge.GaugeReader, kind: str
) -> None:
    middleware = gauge.GaugeMiddleware(app_returning(BODIES[kind]([b"a", b"b"])), counter)
    rows, body, handed = server_rows(middleware, reader, 2)
    # Inside while the server has the first chunk; out before it can send the second, the last:
    # its client cannot have the whole response, nor send its next request, before that.
    assert rows == [IN, IN, GONE]
    assert list(handed) == []
    body.close()  # type: ignore[attr-defined]
    assert reader.sample().server == Row(0, 0, 0, 1)


@pytest.mark.parametrize("kind", ["list", "tuple", "flask"])
@pytest.mark.parametrize("chunks", [[], [b"a"]])
def test_a_body_known_whole_at_the_return_is_handed_over_with_it(
    counter: gauge.Gauge, reader: gauge.GaugeReader, kind: str, chunks: list[bytes]
) -> None:
    # A list or tuple of at most one chunk, or any non-streamed Flask response (one chunk; none
    # for a HEAD request, a 204 or a 304): its last chunk, if any, goes to the server with it.
    body = gauge.GaugeMiddleware(app_returning(BODIES[kind](chunks)), counter)({}, start_response)
    assert reader.sample().server == GONE
    assert list(body) == chunks
    if hasattr(body, "close"):
        body.close()
    assert reader.sample().server == Row(0, 0, 0, 1)


def test_an_empty_stream_leaves_before_the_server_sends_its_headers(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    # The server sends the headers once the body has ended.
    rows, body, handed = server_rows(
        gauge.GaugeMiddleware(app_returning(generator([])), counter), reader, 0
    )
    assert rows == [IN]
    assert list(handed) == []
    assert reader.sample().server == GONE
    body.close()  # type: ignore[attr-defined]
    assert reader.sample().server == Row(0, 0, 0, 1)


@pytest.mark.parametrize("kind", BODIES)
@pytest.mark.parametrize("chunks_taken", [0, 1])
def test_a_body_closed_before_its_end_leaves_once_at_close(
    counter: gauge.Gauge, reader: gauge.GaugeReader, kind: str, chunks_taken: int
) -> None:
    # The client went away before the first chunk was sent, or in the middle of the body.
    middleware = gauge.GaugeMiddleware(app_returning(BODIES[kind]([b"a", b"b"])), counter)
    rows, body, _ = server_rows(middleware, reader, chunks_taken)
    assert rows == [IN] * (chunks_taken + 1)
    body.close()  # type: ignore[attr-defined]
    assert reader.sample().server == GONE
    assert reader.sample().server == Row(0, 0, 0, 1)


def failing_after(chunks: list[bytes]) -> Iterator[bytes]:
    yield from chunks
    raise RuntimeError("body failed")


@pytest.mark.parametrize("kind", ["generator", "flask"])
@pytest.mark.parametrize("chunks", [[], [b"a"]])
def test_a_body_that_fails_leaves_once_when_the_server_closes_it(
    counter: gauge.Gauge, reader: gauge.GaugeReader, kind: str, chunks: list[bytes]
) -> None:
    failing = failing_after(chunks)
    made = failing if kind == "generator" else ClosingIterator(failing, [])
    body = gauge.GaugeMiddleware(app_returning(made), counter)({}, start_response)
    handed: list[bytes] = []
    with pytest.raises(RuntimeError, match="body failed"):
        handed.extend(body)
    # The chunks before the failure still reach the server, and the failure comes where it
    # would without the gauge, which met it looking ahead. Both servers then close the body.
    assert handed == chunks
    assert reader.sample().server == IN
    body.close()  # type: ignore[attr-defined]
    assert reader.sample().server == GONE
    assert reader.sample().server == Row(0, 0, 0, 1)


def test_an_app_that_raises_leaves_the_gauge(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    def app(environ: dict[str, object], respond: Callable[..., object]) -> list[bytes]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        gauge.GaugeMiddleware(app, counter)({}, start_response)
    assert reader.sample().server == Row(0, 0, 1, 1)


@pytest.mark.parametrize("chunks", [[b"a"], [b"a", b"b"]])
def test_a_flask_response_is_changed_in_place_and_its_callbacks_still_run(
    counter: gauge.Gauge, reader: gauge.GaugeReader, chunks: list[bytes]
) -> None:
    closed: list[str] = []

    def failing_close() -> None:
        closed.append("app")
        raise RuntimeError("close failed")

    flask_like = app_returning(ClosingIterator(generator(chunks), [failing_close]))
    body = gauge.GaugeMiddleware(flask_like, counter)({}, start_response)
    # No wrapper: the server gets Werkzeug's own object.
    assert type(body) is ClosingIterator
    assert list(body) == chunks
    assert reader.sample().server == GONE
    with pytest.raises(RuntimeError, match="close failed"):
        body.close()  # type: ignore[attr-defined]
    assert closed == ["app"]
    assert reader.sample().server == Row(0, 0, 0, 1)


def test_the_apps_own_close_is_called_and_may_fail(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    class Body(list[bytes]):
        def close(self) -> None:
            raise RuntimeError("close failed")

    body = gauge.GaugeMiddleware(app_returning(Body([b"a"])), counter)({}, start_response)
    with pytest.raises(RuntimeError, match="close failed"):
        body.close()  # type: ignore[attr-defined]
    assert reader.sample().server == GONE


class OtherClosingIterator:
    """A ClosingIterator as another Werkzeug might have it: iterating ignores `_next`."""

    __module__ = "werkzeug.wsgi"
    __qualname__ = "ClosingIterator"

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._next = functools.partial(next, self._chunks)
        self._callbacks: list[Callable[[], None]] = []
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks).upper()

    def close(self) -> None:
        for callback in self._callbacks:
            callback()
        self.closed = True


class TransformingClosingIterator(OtherClosingIterator):
    """One whose `_next` does more than take the next chunk of its iterator."""

    __module__ = "werkzeug.wsgi"
    __qualname__ = "ClosingIterator"

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__(chunks)
        self._next = functools.partial(lambda chunks: next(chunks).upper(), self._chunks)

    def __next__(self) -> bytes:
        return self._next()


@pytest.mark.parametrize("other", [OtherClosingIterator, TransformingClosingIterator])
def test_a_closing_iterator_that_works_otherwise_is_wrapped(
    counter: gauge.Gauge, reader: gauge.GaugeReader, other: type[OtherClosingIterator]
) -> None:
    made = other([b"a", b"b"])
    rows, body, handed = server_rows(gauge.GaugeMiddleware(app_returning(made), counter), reader, 1)
    # Changed in place, it would hand over other chunks than its own, or count until close.
    assert body is not made
    assert [*rows, *handed] == [IN, IN, b"B"]
    assert reader.sample().server == GONE
    body.close()  # type: ignore[attr-defined]
    assert made.closed
    assert reader.sample().server == Row(0, 0, 0, 1)


def test_a_paused_gauge_neither_counts_nor_wraps(
    counter: gauge.Gauge, reader: gauge.GaugeReader
) -> None:
    made = generator([b"ok"])
    middleware = gauge.GaugeMiddleware(app_returning(made), counter)
    reader.pause(True)
    assert middleware({}, start_response) is made
    reader.pause(False)
    counted = middleware({}, start_response)
    assert counted is not made
    assert list(counted) == [b"ok"]
    counted.close()  # type: ignore[attr-defined]
    assert reader.sample().server == GONE


WITHOUT_WERKZEUG = """
import sys

sys.modules["werkzeug"] = None  # any import of werkzeug now fails

from flaskbench_target import gauge

path = sys.argv[1]
gauge.create(path)
counter, reader = gauge.Gauge(path), gauge.GaugeReader(path)


def app(environ, respond):
    respond("200 OK", [])
    return [b"a", b"b"]


body = gauge.GaugeMiddleware(app, counter)({}, lambda *args: None)
handed = iter(body)
next(handed)
inside = reader.sample().server.inflight
next(handed)
body.close()
print(inside, reader.sample().server.served)
"""


def test_the_gauge_needs_no_werkzeug(tmp_path: Path) -> None:
    # A WSGI app that is not Flask, on a Python without Werkzeug.
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_WERKZEUG, str(tmp_path / "gauge")],
        cwd=TARGETS,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]
