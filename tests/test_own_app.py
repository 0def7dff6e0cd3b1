"""A user's own app through the real command: every workload form, its writes and secrets kept
out of every file, verification before load, and each way it can fail, on both runners."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
from benchrun import ALL_TARGETS, PROJECT, free_port, require_docker, run_dir_of, summary

from flaskbench.config.app import tree_digest

pytestmark = pytest.mark.load

SHOP = Path(__file__).resolve().parent / "apps" / "shop"
FLASKR = Path(__file__).resolve().parent / "thirdparty" / "flaskr"
SETUP = "mkdir -p instance && echo ready > instance/setup.txt"


def token() -> str:
    return "sk-" + "".join(
        secrets.choice(string.ascii_lowercase + string.digits) for _ in range(21)
    )


def config(
    directory: Path,
    app: Path,
    app_table: str,
    workloads: str,
    targets: tuple[str, ...] = ("sync",),
    runner: str = "local",
    users: str = "[1, 4]",
) -> Path:
    lines = [
        "[run]",
        f'runner = "{runner}"',
        f"port = {free_port()}",
        f"master_port = {free_port()}",
        f'results_dir = "{directory / "results"}"',
        'ready_timeout = "20s"',
        "[load]",
        f"users = {users}",
        'warmup = "1s"',
        'measure = "2s"',
        'request_timeout = "10s"',
        "[app]",
        f'path = "{app}"',
        app_table,
    ]
    for name in targets:
        lines.append(f"[targets.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in ALL_TARGETS[name].items()]
    path = directory / "bench.toml"
    path.write_text("\n".join(lines) + "\n" + workloads)
    return path


def flaskbench(
    config_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flaskbench", "run", "--config", str(config_path), *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def files_containing(root: Path, text: str) -> list[Path]:
    return [
        path for path in root.rglob("*") if path.is_file() and text.encode() in path.read_bytes()
    ]


SHOP_APP = f"""wsgi = "shop:create_app('welcome')"
requirements = "requirements.txt"
env = {{ TOKEN = "${{SHOP_TOKEN}}" }}
setup = "{SETUP}"
"""
SHOP_WORKLOADS = """
[workloads.home]
path = "/"
[workloads.mix]
requests = [
  { path = "/slow", weight = 3 },
  { path = "/secret" },
  { path = "/items", method = "POST", form = { name = "tea" }, expect = 303 },
]
[workloads.visitor]
locustfile = "loadtests/locustfile.py"
user_class = "Visitor"
"""


def run_shop(tmp_path: Path, runner: str, targets: tuple[str, ...]) -> tuple[Path, str, Path]:
    """The shop app in a copy (so its checked-in files are never at risk); run dir, token, app."""
    app = tmp_path / "shop"
    shutil.copytree(SHOP, app)
    secret = token()
    path = config(tmp_path, app, SHOP_APP, SHOP_WORKLOADS, targets, runner)
    # The Locust file is named relative to the config: put the config beside the app's files.
    (tmp_path / "loadtests").symlink_to(app / "loadtests")
    before = tree_digest(app)
    result = flaskbench(path, env={**os.environ, "SHOP_TOKEN": secret})
    assert result.returncode == 0, result.stderr
    assert tree_digest(app) == before, "the app's own directory changed"
    return run_dir_of(result), secret, app


def check_shop_run(run: Path, secret: str, targets: tuple[str, ...]) -> None:
    rows = summary(run)
    assert {(r["target"], r["workload"], r["users"]) for r in rows} == {
        (t, w, u) for t in targets for w in ("home", "mix", "visitor") for u in ("1", "4")
    }
    assert all(r["failures"] == "0" for r in rows), rows
    assert all(float(r["rps"]) > 0 for r in rows)
    for row in rows:
        if row["target"] == "sync":
            assert int(row["peak_inflight_process"]) <= 1
    # The token reached the app (/secret answered 200 in every check and step) and no file
    # flaskbench wrote holds it.
    assert files_containing(run, secret) == []
    meta = json.loads((run / "meta.json").read_text())
    assert meta["app"]["env"] == {"TOKEN": "${SHOP_TOKEN}"}
    assert meta["app"]["wsgi"] == "shop:create_app('welcome')"
    assert meta["runner"]["details"]["app_packages"]["Flask"] == "3.1.3"
    for cell in (run / "raw").iterdir():
        assert (cell / "setup.log").is_file()
    report = (run / "report.md").read_text()
    assert "App: `shop:create_app('welcome')`" in report
    assert "Measured at 1 user" in report
    assert "sets its own wait_time, between(0.005, 0.01)" in report


def test_an_app_of_ones_own_on_the_local_runner(tmp_path: Path) -> None:
    targets = ("sync", "dev")
    run, secret, _ = run_shop(tmp_path, "local", targets)
    check_shop_run(run, secret, targets)


@pytest.mark.docker
def test_an_app_of_ones_own_on_the_docker_runner(tmp_path: Path) -> None:
    require_docker()
    run, secret, _ = run_shop(tmp_path, "docker", ("sync",))
    check_shop_run(run, secret, ("sync",))


def test_each_cell_fails_on_its_own_and_the_others_go_on(tmp_path: Path) -> None:
    app = tmp_path / "shop"
    shutil.copytree(SHOP, app)
    # Setup fails in the dev server's cells only (each cell runs in a directory named for it).
    setup = f'case "$PWD" in *dev--*) echo "no database for dev" >&2; exit 1;; esac; {SETUP}'
    table = f'wsgi = "shop:create_app()"\nrequirements = "requirements.txt"\nsetup = \'{setup}\''
    workloads = """
[workloads.ok]
path = "/"
[workloads.missing]
requests = [{ path = "/" }, { path = "/nowhere" }]
[workloads.crash]
path = "/crash"
"""
    result = flaskbench(config(tmp_path, app, table, workloads, ("sync", "dev"), users="[2]"))
    assert result.returncode == 1, result.stderr
    run = run_dir_of(result)
    statuses = {p.parent.name: json.loads(p.read_text()) for p in (run / "raw").glob("*/cell.json")}
    assert statuses["sync--ok--r1"]["status"] == "ok"
    missing = statuses["sync--missing--r1"]
    assert missing["status"] == "failed"
    assert missing["reason"].startswith("verification: GET /nowhere gave HTTP 404, expected 2xx")
    assert missing["reason"].endswith("no load was sent")
    loadgen = json.loads((run / "raw" / "sync--missing--r1" / "loadgen.json").read_text())
    assert loadgen["steps"] == []
    assert sum(b["requests"] for b in loadgen["buckets"]) == 0
    crash = statuses["sync--crash--r1"]
    assert crash["status"] == "failed"
    assert "the app raised RuntimeError: the shop's database went away" in crash["reason"]
    for workload in ("ok", "missing", "crash"):
        dev = statuses[f"dev--{workload}--r1"]
        assert dev["status"] == "failed"
        assert dev["reason"].startswith("app.setup failed: `case")
        assert "exited with code 1; last lines: no database for dev" in dev["reason"]
    assert {r["target"] + "/" + r["workload"] for r in summary(run)} == {"sync/ok"}
    report = (run / "report.md").read_text()
    assert "The app's first traceback in sync--crash--r1:" in report
    assert 'raise RuntimeError("the shop\'s database went away")' in report


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'wsgi = "shopping:create_app()"\nrequirements = "requirements.txt"',
            "app.wsgi: cannot load shopping:create_app() from {app}: importing shopping failed: "
            "ModuleNotFoundError: No module named 'shopping'; check app.path and app.wsgi",
        ),
        (
            'wsgi = "shop:broken()"\nrequirements = "requirements.txt"',
            "app.wsgi: cannot load shop:broken() from {app}: shop:broken() raised RuntimeError: "
            "no database configured; check app.path and app.wsgi",
        ),
        (
            'wsgi = "shop:create_app()"\nrequirements = "requirements.txt"\nsetup = "exit 3"',
            "app.setup: `exit 3` exited with code 3 (no output); full output in",
        ),
        (
            'wsgi = "shop:create_app()"\nrequirements = "broken-requirements.txt"',
            "app.requirements: installing the app's requirements failed: ERROR: ",
        ),
    ],
)
def test_a_broken_app_stops_the_run_before_any_load(
    tmp_path: Path, table: str, message: str
) -> None:
    app = tmp_path / "shop"
    shutil.copytree(SHOP, app)
    (app / "broken-requirements.txt").write_text("flaskbench-no-such-package-anywhere==0.0.1\n")
    result = flaskbench(config(tmp_path, app, table, '[workloads.ok]\npath = "/"\n'))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("flaskbench: ")]
    assert errors[-1].startswith("flaskbench: " + message.format(app=app)), result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "results").glob("*/raw/*/cell.json"))


def test_a_third_party_app_configured_only_through_app(tmp_path: Path) -> None:
    """Flask's own tutorial app, as its authors wrote it, installed from its pyproject.toml."""
    app = tmp_path / "flaskr"
    shutil.copytree(FLASKR, app)
    table = 'wsgi = "flaskr:create_app()"\nsetup = "flask --app flaskr init-db"'
    workloads = """
[workloads.browse]
requests = [{ path = "/", weight = 3 }, { path = "/auth/login", weight = 1 }]
"""
    result = flaskbench(config(tmp_path, app, table, workloads, ("sync",)))
    assert result.returncode == 0, result.stderr
    rows = summary(run_dir_of(result))
    assert [r["failures"] for r in rows] == ["0", "0"]
    assert all(int(r["peak_inflight_process"]) <= 1 for r in rows)
    assert all(int(r["peak_inflight_server"]) <= 2 for r in rows)
    assert not (app / "instance").exists()
