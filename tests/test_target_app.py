"""The built-in Flask app: its endpoints and its parameter checks, and the dev server's own."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from flaskbench_target import builtin_app as target_app

TARGETS = Path(__file__).resolve().parent.parent / "targets"


@pytest.fixture
def client() -> FlaskClient:
    return target_app.app.test_client()


def test_hello(client: FlaskClient) -> None:
    response = client.get("/hello")
    assert response.status_code == 200
    assert response.text == "hello"


def test_io_sleeps_at_least_the_requested_time(client: FlaskClient) -> None:
    start = time.monotonic()
    response = client.get("/io?ms=50")
    assert response.status_code == 200
    assert time.monotonic() - start >= 0.05


def test_cpu_burns_at_least_the_requested_thread_cpu_time(client: FlaskClient) -> None:
    # The test client runs the app in this thread, so this thread's CPU clock sees the burn.
    start = time.thread_time()
    response = client.get("/cpu?ms=50")
    assert response.status_code == 200
    assert time.thread_time() - start >= 0.05


def test_mixed_sleeps_then_burns(client: FlaskClient) -> None:
    wall, cpu = time.monotonic(), time.thread_time()
    response = client.get("/mixed?io=40&cpu=30")
    assert response.status_code == 200
    assert time.thread_time() - cpu >= 0.03
    assert time.monotonic() - wall >= 0.07


@pytest.mark.parametrize("path", ["/io?ms=0", "/cpu?ms=0", "/mixed?io=0&cpu=0", "/io?ms=00"])
def test_zero_is_allowed(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_a_fraction_of_a_millisecond_is_allowed(client: FlaskClient) -> None:
    cpu = time.thread_time()
    response = client.get("/cpu?ms=10.5")
    assert response.text == "burned 10.5 ms"
    assert time.thread_time() - cpu >= 0.0105
    assert client.get("/io?ms=20").text == "slept 20 ms"


def test_the_upper_bound_is_allowed() -> None:
    with target_app.app.test_request_context("/io?ms=60000"):
        assert target_app.milliseconds("ms") == 60000


BAD_VALUES = {
    "empty": "",
    "word": "abc",
    "four decimals": "1.5005",
    "bare point": "1.",
    "exponent": "1e3",
    "nan": "nan",
    "negative": "-1",
    "plus sign": "+5",
    "space": "%205",
    "underscore": "1_0",
    "hex": "0x10",
    "non-ASCII digit": "%D9%A3",
    "too large": "60001",
    "huge": "9" * 5000,
}
ENDPOINTS = {
    "ms": ["/io?{}", "/cpu?{}"],
    "io": ["/mixed?{}&cpu=0"],
    "cpu": ["/mixed?io=0&{}"],
}
CASES = [
    pytest.param(template.format(f"{name}={value}"), name, id=f"{template}-{name}-{kind}")
    for name, templates in ENDPOINTS.items()
    for template in templates
    for kind, value in BAD_VALUES.items()
] + [
    pytest.param(template.format("other=1"), name, id=f"{template}-{name}-missing")
    for name, templates in ENDPOINTS.items()
    for template in templates
]


@pytest.mark.parametrize(("path", "name"), CASES)
def test_bad_parameter_is_a_one_line_400_naming_it(
    client: FlaskClient, path: str, name: str
) -> None:
    response = client.get(path)
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    lines = response.text.splitlines()
    assert len(lines) == 1
    assert f" {name}" in lines[0]


def test_devserver_refuses_threads_with_processes() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "flaskbench_target.devserver"),
            *("--host", "127.0.0.1", "--port", "1", "--processes", "2"),
        ],
        cwd=TARGETS,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "cannot combine threads and processes" in result.stderr


def test_upload_reads_the_whole_body_and_answers_its_size(client: FlaskClient) -> None:
    body = b"u" * 200_000
    response = client.post("/upload", data=body, content_type="application/octet-stream")
    assert response.status_code == 200
    assert response.text == "200000\n"


def test_bytes_answers_exactly_n_bytes_with_its_length(client: FlaskClient) -> None:
    response = client.get("/bytes?n=150000")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == "150000"
    assert len(response.data) == 150_000
    assert client.get("/bytes?n=0").data == b""


@pytest.mark.parametrize("query", ["", "?n=-1", "?n=1e6", f"?n={2 * 1024**3}"])
def test_bytes_refuses_what_is_not_a_size(client: FlaskClient, query: str) -> None:
    assert client.get(f"/bytes{query}").status_code == 400
