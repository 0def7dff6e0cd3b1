"""appload: every form of the `wsgi` spec, every way loading an app can fail, and the gauge."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flaskbench_target import appload, gauge

TARGETS = Path(__file__).resolve().parent.parent / "targets"

MODULE = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain"]

app = application

def create_app(greeting="hello", *, punctuation="!"):
    def greet(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{greeting}{punctuation}".encode()]
    return greet

def broken_factory():
    raise RuntimeError("no database configured")

not_an_app = 42
"""


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "shop" / "web"
    package.mkdir(parents=True)
    (tmp_path / "shop" / "__init__.py").write_text("")
    (package / "__init__.py").write_text(MODULE)
    (tmp_path / "plain.py").write_text(MODULE)
    (tmp_path / "crashing.py").write_text("import not_installed_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def body(app: object) -> bytes:
    chunks = app({}, lambda status, headers, exc_info=None: None)  # type: ignore[operator]
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("plain:app", b"plain"),
        ("plain", b"plain"),
        ("plain:create_app()", b"hello!"),
        ("plain:create_app('hi', punctuation='?')", b"hi?"),
        ("shop.web:create_app()", b"hello!"),
    ],
)
def test_every_form_of_the_spec_loads(app_dir: Path, spec: str, expected: bytes) -> None:
    assert body(appload.load(spec)) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("plain:", "cannot read an empty name"),
        ("plain:1 +", "cannot read"),
        ("no-such:app", "'no-such' is not a module name"),
        (":app", "is not a module name"),
        ("plain:create_app(open('x'))", "arguments must be literals"),
        ("plain:app.attribute", "write module:variable or module:factory"),
        ("missing_module:app", "importing missing_module failed: ModuleNotFoundError"),
        ("crashing:app", "No module named 'not_installed_anywhere'"),
        ("plain:nothing", "module plain has no 'nothing'"),
        ("plain:broken_factory()", "raised RuntimeError: no database configured"),
        ("plain:not_an_app", "is a int, not a WSGI app"),
    ],
)
def test_each_failure_is_one_line_naming_the_cause(app_dir: Path, spec: str, message: str) -> None:
    with pytest.raises(appload.AppLoadError) as raised:
        appload.load(spec)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def in_app(
    argv: list[str], spec: str, app_dir: Path, gauge_path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a Python command as the launcher runs a server: in the app's directory, the app and
    the harness on the import path, a gauge only if given."""
    env = {k: v for k, v in os.environ.items() if k != appload.GAUGE_ENV}
    env |= {appload.APP_ENV: spec, "PYTHONPATH": f"{app_dir}:{TARGETS}"}
    if gauge_path:
        env[appload.GAUGE_ENV] = gauge_path
    return subprocess.run(
        [sys.executable, *argv], cwd=app_dir, env=env, capture_output=True, text=True, timeout=30
    )


def check(spec: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return in_app(["-m", "flaskbench_target.appload", "--check"], spec, cwd)


def test_check_says_what_the_app_is(app_dir: Path) -> None:
    done = check("plain:create_app()", app_dir)
    assert (done.returncode, done.stdout) == (
        0,
        "ok: plain:create_app() is the function plain.create_app.<locals>.greet\n",
    )


def test_check_of_a_factory_that_raises_has_the_traceback_on_stderr(app_dir: Path) -> None:
    done = check("plain:broken_factory()", app_dir)
    assert done.returncode == 1
    assert done.stdout == (
        "error: plain:broken_factory() raised RuntimeError: no database configured\n"
    )
    assert 'raise RuntimeError("no database configured")' in done.stderr


SERVE_THREE = """
from flaskbench_target import appload, gauge
print(isinstance(appload.application, gauge.GaugeMiddleware))
for _ in range(3):
    body = appload.application({}, lambda status, headers, exc_info=None: None)
    list(body)
    getattr(body, "close", lambda: None)()
"""


def serve_three(app_dir: Path, gauge_path: str | None) -> subprocess.CompletedProcess[str]:
    return in_app(["-c", SERVE_THREE], "plain:app", app_dir, gauge_path)


def test_without_a_gauge_file_the_app_is_served_bare(app_dir: Path) -> None:
    done = serve_three(app_dir, None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_with_a_gauge_file_every_request_of_any_wsgi_app_is_counted(
    app_dir: Path, tmp_path: Path
) -> None:
    path = str(tmp_path / "gauge")
    gauge.create(path)
    done = serve_three(app_dir, path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    reader = gauge.GaugeReader(path)
    try:
        # The subprocess has exited, so its row comes out one last time.
        sample = reader.sample()
    finally:
        reader.close()
    assert sample.server == gauge.Row(0, 0, 1, 3)


def test_a_server_loading_a_broken_app_logs_one_line_why(app_dir: Path) -> None:
    done = in_app(["-c", "import flaskbench_target.appload"], "plain:broken_factory()", app_dir)
    assert done.returncode == 1
    assert (
        "appload: cannot load plain:broken_factory(): plain:broken_factory() raised "
        "RuntimeError: no database configured\n"
    ) in done.stderr
