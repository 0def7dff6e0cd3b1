"""The built-in Flask app: endpoints that wait, compute, move bytes, or do nothing.

Served as `flaskbench_target.builtin_app:app` (see appload.py, which also wraps it in the gauge)
unless the config names an app of its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

from flask import Flask, Response, request

MAX_MS = 60_000
# At most five digits before the point keeps the conversion cheap and far from int()'s
# 4300-digit limit; up to three after it let two workloads differ by a few percent
# (`make compare-check`'s /cpu?ms=10 against /cpu?ms=10.5).
_NUMBER = re.compile(r"0*[0-9]{1,5}(\.[0-9]{1,3})?")
# /upload reads and /bytes writes in pieces of this size, as servers move them.
CHUNK = 65536
MAX_BYTES = 1024**3
_BYTES = re.compile(r"0*[0-9]{1,10}")

app = Flask(__name__)


class BadParameter(Exception):
    pass


@app.errorhandler(BadParameter)
def bad_parameter(error: BadParameter) -> tuple[str, int, dict[str, str]]:
    return f"{error}\n", 400, {"Content-Type": "text/plain; charset=utf-8"}


def milliseconds(name: str) -> float:
    """The query parameter `name`: a required number of milliseconds, 0 to MAX_MS, with at
    most three decimals."""
    value = request.args.get(name)
    if value is None:
        raise BadParameter(f"missing parameter {name}: a number from 0 to {MAX_MS}")
    # A strict pattern rather than float(), which also takes "+5", " 5", "1_0", "1e3" and "nan".
    if not _NUMBER.fullmatch(value) or float(value) > MAX_MS:
        raise BadParameter(
            f"parameter {name} must be a number from 0 to {MAX_MS} (at most three decimals)"
        )
    return float(value)


def _shown(ms: float) -> str:
    return f"{ms:g}"


def burn_cpu(ms: float) -> None:
    # Thread CPU time, not wall time: the request costs the same CPU however many compete.
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


@app.get("/hello")
def hello() -> str:
    return "hello"


@app.get("/io")
def io() -> str:
    ms = milliseconds("ms")
    # time.sleep, so that gevent's monkey patching turns it into a cooperative wait.
    time.sleep(ms / 1000)
    return f"slept {_shown(ms)} ms"


@app.get("/cpu")
def cpu() -> str:
    ms = milliseconds("ms")
    burn_cpu(ms)
    return f"burned {_shown(ms)} ms"


@app.get("/mixed")
def mixed() -> str:
    io_ms, cpu_ms = milliseconds("io"), milliseconds("cpu")
    time.sleep(io_ms / 1000)
    burn_cpu(cpu_ms)
    return f"slept {_shown(io_ms)} ms, burned {_shown(cpu_ms)} ms"


@app.post("/upload")
def upload() -> str:
    # Read to the end in pieces, as an app that stores an upload would: the server hands the
    # body over as fast as its client sends it.
    stream = request.stream
    size = 0
    while piece := stream.read(CHUNK):
        size += len(piece)
    return f"{size}\n"


@app.get("/bytes")
def many_bytes() -> Response:
    value = request.args.get("n")
    if value is None or not _BYTES.fullmatch(value) or int(value) > MAX_BYTES:
        raise BadParameter(f"parameter n must be an integer from 0 to {MAX_BYTES}")
    size = int(value)
    piece = b"x" * CHUNK

    def body() -> Iterator[bytes]:
        # Streamed in pieces, with its length announced: the server writes the response as its
        # client reads it, without holding all of it in memory.
        left = size
        while left > 0:
            yield piece[: min(left, CHUNK)]
            left -= CHUNK

    length = {"Content-Length": str(size)}
    return Response(body(), mimetype="application/octet-stream", headers=length)
