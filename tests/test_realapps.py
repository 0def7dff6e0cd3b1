"""Real apps as they are, through the real command on both runners:

- the corpus of public Flask apps (tests/realapps/), files unchanged, each with the smallest
  [app] config a user would write and a workload of its own: every cell ok, no request failed,
  gunicorn sync never above one request in flight per process, each gunicorn at the version the
  app pins (or flaskbench's where it pins none), and nothing of the host's environment in them;
- an app whose top-level modules are named after every module of the harness (tests/apps/shadow),
  under gunicorn, the dev server, an in-process server (waitress, through flaskbench_target.serve)
  and uvicorn (asgiserve);
- a sweep over two gunicorn versions of one target, on an app that pins one of them, compared
  side by side in the report;
- a real conflict between a version a target asks for and the app's pins, which leaves out only
  that target (and a run whose every target is left out, which fails in one line).

Every run is a whole `flaskbench run` with free ports of its own; they go AT_ONCE at a time in
the background of one module-scoped fixture, which keeps their share of CI small (the tests
only count things, so sharing the CPUs changes none of what they check), and the tests read
what each left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from benchrun import PROJECT, free_port, require_docker, run_dir_of, summary

from flaskbench.config.app import tree_digest
from flaskbench.execute.engines import docker_unavailable

pytestmark = pytest.mark.load

TESTS = Path(__file__).resolve().parent
REALAPPS = TESTS / "realapps"
SHADOW = TESTS / "apps" / "shadow"
SYNC = {"server": "gunicorn", "worker_class": "sync", "workers": 2}
# Each app's second target, another worker model, and the gunicorn its sync target must run on.
APPS: dict[str, tuple[dict[str, Any], str, str]] = {
    "microblog": ({"server": "waitress", "threads": 4}, "21.2.0", "app"),
    "rest-auth": ({"server": "werkzeug", "threaded": True}, "27.0.1", "flaskbench"),
    "flask-sqlalchemy-tutorial": (
        {"server": "gunicorn", "worker_class": "gthread", "workers": 2, "threads": 2},
        "21.2.0",
        "app",
    ),
    "sample-flask": ({"server": "uwsgi", "processes": 2}, "23.0.0", "app"),
    "azure-flask-quickstart": ({"server": "granian", "workers": 1}, "27.0.1", "flaskbench"),
}
# rest-auth pins click==6.7, and granian 2.8.9 needs click 8.1 or later.
CONFLICT = {"server": "granian", "version": "2.8.9"}
RUNNERS = ("local", "docker")
# Runs at once, on 2 cores: most of a run is waiting (for containers, servers, Locust). Six, the
# longest first, took 170 s for the fifteen runs here (four: 275 s).
AT_ONCE = 6
# Set in flaskbench's own environment: what a host (a CI machine) often has, which would change
# the apps were it to reach them (microblog's setup would migrate that database and fail), and a
# canary the shadow app answers 500 to.
HOST_ENV = {
    "DATABASE_URL": "postgresql://leaked.invalid/db",
    "ENVIRONMENT": "production",
    "FLASKBENCH_TEST_LEAK_CANARY": "the host's",
}


@dataclass(frozen=True)
class Done:
    result: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def run(self) -> Path:
        assert self.result.returncode == 0, self.result.stderr[-3000:]
        return run_dir_of(self.result)


def _toml(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else json.dumps(value)


def config(
    directory: Path,
    runner: str,
    targets: dict[str, dict[str, Any]],
    rest: str,
    users: str = "[1, 2]",
) -> Path:
    lines = [
        "[run]",
        f'runner = "{runner}"',
        f"port = {free_port()}",
        f"master_port = {free_port()}",
        f'results_dir = "{directory / "results"}"',
        'ready_timeout = "60s"',
        "[load]",
        f"users = {users}",
        'warmup = "1s"',
        'measure = "2s"',
        'request_timeout = "10s"',
    ]
    for name, settings in targets.items():
        lines += [f"[targets.{name}]", *(f"{k} = {_toml(v)}" for k, v in settings.items())]
    path = directory / "bench.toml"
    path.write_text("\n".join(lines) + "\n" + rest)
    return path


def own_table(app: str) -> str:
    """The app's own [app] table and workload (tests/realapps/<app>.toml), its path absolute."""
    text = (REALAPPS / f"{app}.toml").read_text()
    return text.replace(f'path = "{app}"', f'path = "{REALAPPS / app}"', 1)


def corpus_config(app: str, runner: str) -> Callable[[Path], Path]:
    second, _, _ = APPS[app]
    targets = {"sync": SYNC, "other": second}
    if (app, runner) == ("rest-auth", "local"):
        targets["granian"] = CONFLICT
    return lambda directory: config(directory, runner, targets, own_table(app))


SHADOW_TABLE = f"""[app]
path = "{SHADOW}"
wsgi = "app:create_app()"
requirements = "requirements.txt"
env = {{ PASSED = "through app.env" }}

[workloads.home]
path = "/"
"""
SHADOW_TARGETS: dict[str, dict[str, Any]] = {
    "sync": SYNC,
    "dev": {"server": "werkzeug", "threaded": True},
    "waitress": {"server": "waitress", "threads": 2},
    "a2wsgi": {"server": "asgi", "adapter": "a2wsgi", "threads": 2},
}
SWEEP = """[sweep.gs]
server = "gunicorn"
workers = 2
version = ["21.2.0", "23.0.0"]
"""


def shadow_config(runner: str) -> Callable[[Path], Path]:
    return lambda directory: config(directory, runner, SHADOW_TARGETS, SHADOW_TABLE, "[2]")


def sweep_config(runner: str) -> Callable[[Path], Path]:
    """sample-flask pins gunicorn==23.0.0: 21.2.0 leaves its pin out of the environment."""
    return lambda directory: config(directory, runner, {}, SWEEP + own_table("sample-flask"), "[2]")


def left_out_config(directory: Path) -> Path:
    return config(directory, "local", {"granian": CONFLICT}, own_table("rest-auth"))


RUNS: dict[str, Callable[[Path], Path]] = {
    **{f"{app}-{runner}": corpus_config(app, runner) for app in APPS for runner in RUNNERS},
    **{f"shadow-{runner}": shadow_config(runner) for runner in RUNNERS},
    **{f"sweep-{runner}": sweep_config(runner) for runner in RUNNERS},
    "left-out": left_out_config,
}


def _start(directory: Path, write: Callable[[Path], Path]) -> Done:
    directory.mkdir(parents=True)
    begun = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "flaskbench", "run", "--config", str(write(directory))],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=1200,
        env=os.environ | HOST_ENV,
    )
    return Done(result, time.monotonic() - begun)


def _selected(request: pytest.FixtureRequest) -> list[str]:
    """The runs this module's selected tests read (a test's `run` parameter)."""
    wanted: dict[str, None] = {}
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.module is request.module and "run" in params:
            wanted[params["run"]] = None
    return list(wanted)


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Done]]:
    trees = [REALAPPS / app for app in APPS] + [SHADOW]
    before = [tree_digest(tree) for tree in trees]
    docker = docker_unavailable() is None
    wanted = [name for name in _selected(request) if docker or not name.endswith("-docker")]
    # The longest first (containers take longer to start and stop), so none is left alone last.
    wanted.sort(key=lambda name: not name.endswith("-docker"))
    root = tmp_path_factory.mktemp("realapps")
    begun = time.monotonic()
    with ThreadPoolExecutor(AT_ONCE) as pool:
        done = list(pool.map(lambda name: _start(root / name, RUNS[name]), wanted))
    each = ", ".join(f"{name} {d.seconds:.0f}s" for name, d in zip(wanted, done, strict=True))
    print(f"\nrealapps: {len(done)} runs in {time.monotonic() - begun:.0f}s ({each})")
    yield dict(zip(wanted, done, strict=True))
    assert [tree_digest(tree) for tree in trees] == before, "an app's files changed"


def on(runner: str) -> list[Any]:
    return [pytest.mark.docker] if runner == "docker" else []


def cell_statuses(run: Path) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["status"] for p in run.glob("raw/*/cell.json")}


@pytest.mark.parametrize(
    "run", [pytest.param(f"{a}-{r}", marks=on(r)) for a in APPS for r in RUNNERS]
)
def test_a_real_app_runs_as_it_is(runs: dict[str, Done], run: str) -> None:
    app, runner = run.rsplit("-", 1)
    if runner == "docker":
        require_docker()
    directory = runs[run].run
    rows = summary(directory)
    assert {(r["target"], r["users"]) for r in rows} == {
        (t, u) for t in ("sync", "other") for u in ("1", "2")
    }
    assert all(r["failures"] == "0" for r in rows), rows
    # Each target served (a step alone may see no request end in its 2 s when the runs sharing
    # the machine starve it).
    assert {r["target"] for r in rows if int(r["requests"]) > 0} == {"sync", "other"}
    assert all(int(r["peak_inflight_process"]) <= 1 for r in rows if r["target"] == "sync")
    assert set(cell_statuses(directory).values()) == {"ok"}
    meta = json.loads((directory / "meta.json").read_text())
    _, version, source = APPS[app]
    sync = meta["server_versions"]["sync"]
    assert (sync["version"], sync["source"]) == (version, source)
    assert {r["server_version"] for r in rows if r["target"] == "sync"} == {version}
    assert meta["app_python"].startswith("3.")
    said = {"app": "pinned by the app", "flaskbench": "flaskbench's pin"}[source]
    report = (directory / "report.md").read_text()
    assert f"| sync | gunicorn {version}, {said} |" in report
    assert f"under Python {meta['app_python']}" in report
    if app == "microblog":
        # Its own docs' `flask db upgrade` names the app through .flaskenv.
        assert (
            "app: .flaskenv sets FLASK_APP, FLASK_DEBUG: `flask` commands in app.setup read it"
            in runs[run].result.stderr
        )


@pytest.mark.parametrize("run", ["rest-auth-local"])
def test_a_real_conflict_leaves_out_only_its_targets(runs: dict[str, Done], run: str) -> None:
    done = runs[run]
    line = (
        "flaskbench: target granian left out: granian cannot be installed beside the app's "
        "requirements (The user requested click==6.7"
    )
    said = [x for x in done.result.stderr.splitlines() if x.startswith(line)]
    assert len(said) == 1, done.result.stderr
    assert "granian 2.8.9 depends on click>=8.1.0" in said[0]
    assert said[0].endswith("ask for another version, or loosen the app's pin pip names there")
    directory = done.run
    meta = json.loads((directory / "meta.json").read_text())
    assert list(meta["targets_left_out"]) == ["granian"]
    assert "granian" not in meta["server_versions"]
    assert not any(c.startswith("granian--") for c in meta["cells"])
    assert set(cell_statuses(directory)) == {"sync--api--r1", "other--api--r1"}
    report = (directory / "report.md").read_text()
    assert "Left out of this run" in report
    assert "**granian**: granian cannot be installed" in report


@pytest.mark.parametrize("run", ["left-out"])
def test_a_run_whose_every_target_is_left_out_fails_in_one_line(
    runs: dict[str, Done], run: str
) -> None:
    result = runs[run].result
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("flaskbench: ")]
    assert errors[-1].startswith("flaskbench: no target can run: granian: granian cannot be")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("run", [pytest.param(f"shadow-{r}", marks=on(r)) for r in RUNNERS])
def test_no_module_of_the_harness_shadows_the_apps(runs: dict[str, Done], run: str) -> None:
    """The app answers 200 only with its own modules and only the environment its config
    passes: every request of every cell counts that."""
    if run.endswith("docker"):
        require_docker()
    directory = runs[run].run
    rows = summary(directory)
    assert {r["target"] for r in rows} == set(SHADOW_TARGETS)
    assert all(r["failures"] == "0" for r in rows), rows
    assert {r["target"] for r in rows if int(r["requests"]) > 0} == set(SHADOW_TARGETS)
    assert set(cell_statuses(directory).values()) == {"ok"}
    check = (directory / "app-check.log").read_text()
    assert "ok: app:create_app() is a flask.app.Flask" in check


@pytest.mark.parametrize("run", [pytest.param(f"sweep-{r}", marks=on(r)) for r in RUNNERS])
def test_a_sweep_over_two_gunicorn_versions_compares_them(runs: dict[str, Done], run: str) -> None:
    if run.endswith("docker"):
        require_docker()
    directory = runs[run].run
    meta = json.loads((directory / "meta.json").read_text())
    versions = meta["server_versions"]
    assert {name: (v["version"], v["source"], v["app_pin"]) for name, v in versions.items()} == {
        "gs-v21.2.0": ("21.2.0", "target", "23.0.0"),
        "gs-v23.0.0": ("23.0.0", "target", "23.0.0"),
    }
    assert versions["gs-v21.2.0"]["environment"] != versions["gs-v23.0.0"]["environment"]
    rows = summary(directory)
    assert {(r["target"], r["server_version"]) for r in rows} == {
        ("gs-v21.2.0", "21.2.0"),
        ("gs-v23.0.0", "23.0.0"),
    }
    assert all(r["failures"] == "0" for r in rows), rows
    logs = {
        name: (directory / "raw" / f"{name}--home--r1" / "target.log").read_text()
        for name in versions
    }
    assert "Starting gunicorn 21.2.0" in logs["gs-v21.2.0"]
    assert "--no-control-socket" not in logs["gs-v21.2.0"]
    report = (directory / "report.md").read_text()
    assert "gunicorn 21.2.0, asked for by the target (the app pins 23.0.0)" in report
    assert "with gunicorn 21.2.0, 23.0.0 side by side" in report
    assert "| users | 21.2.0 req/s | 23.0.0 req/s | 21.2.0 p99 ms | 23.0.0 p99 ms |" in report
