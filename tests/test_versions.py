"""Server versions: what a target may ask for (and the one line that refuses the rest), how each
server's command line and log lines follow its version, which environments a run builds, and
where each target's version came from or why it is left out."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from fakerun import Step, make_run
from servertests import resolved
from test_config import MINIMAL, problems, write

from flaskbench.config.app import App, built_in_app, requirement_files
from flaskbench.config.load import load_config
from flaskbench.config.sweeps import expand_sweep
from flaskbench.execute import envbuild
from flaskbench.execute.environments import (
    Built,
    Environment,
    dotenv_notes,
    options,
    outcomes,
    plan_environments,
)
from flaskbench.execute.images import _assemble, target_spec
from flaskbench.execute.runners.runner import worker_troubles
from flaskbench.measure.analyze import SUMMARY_COLUMNS, analyze_run
from flaskbench.measure.collect import load_run
from flaskbench.report.blocks import render_markdown
from flaskbench.report.versions import left_out_notes, versions_section
from flaskbench.results.contract import read_meta
from flaskbench.servers.registry import SERVERS, server_argv

PINNED = MINIMAL.replace("[workloads.io]", 'version = "21.2.0"\n\n[workloads.io]')


def test_a_target_asks_for_a_version_of_its_server(tmp_path: Path) -> None:
    (target,) = load_config(write(tmp_path, PINNED)).targets
    assert target.version == "21.2.0"


@pytest.mark.parametrize(
    ("server", "version", "message"),
    [
        ("gunicorn", "21.x", "'21.x' is not a version (PEP 440); write it like \"20.1.0\""),
        ("gunicorn", 21, 'must be a version, e.g. "20.1.0"'),
        (
            "gunicorn",
            "19.9.0",
            "gunicorn 19.9.0 is older than the oldest flaskbench supports, 20.1.0",
        ),
        (
            "uwsgi",
            "2.0.20",
            "pyuwsgi 2.0.20 is older than the oldest flaskbench supports, 2.0.21: pyuwsgi "
            "2.0.20 and older do not build on Python 3.11",
        ),
        ("granian", "1.3.2", "granian 1.3.2 is older than the oldest flaskbench supports, 1.4.0"),
        ("asgi", "0.29.0", "uvicorn 0.29.0 is older than the oldest flaskbench supports, 0.30.0"),
        ("waitress", "2.0.0", "waitress 2.0.0 is older than the oldest flaskbench supports"),
        ("cheroot", "8.5.2", "cheroot 8.5.2 is older than the oldest flaskbench supports, 8.6.0"),
        (
            "werkzeug",
            "3.0.0",
            "werkzeug comes with the app (its werkzeug): pin werkzeug in the app's requirements",
        ),
    ],
)
def test_a_version_a_server_cannot_run_is_refused_in_one_line(
    tmp_path: Path, server: str, version: object, message: str
) -> None:
    text = f'[targets.t]\nserver = "{server}"\nversion = {json.dumps(version)}\n'
    text += '[workloads.io]\nio_ms = 10\n[cpus]\ntarget = "0"\nload = "1"\n'
    (found,) = problems(tmp_path, text)
    assert ": targets.t.version: " in found
    assert message in found


def test_a_version_the_targets_settings_cannot_run_on_is_refused(tmp_path: Path) -> None:
    text = '[targets.t]\nserver = "asgi"\nadapter = "asgiref"\nreset_contextvars = true\n'
    text += 'version = "0.44.0"\n[workloads.io]\nio_ms = 10\n[cpus]\ntarget = "0"\nload = "1"\n'
    (found,) = problems(tmp_path, text)
    assert "reset_contextvars needs uvicorn 0.45.0 or later, not 0.44.0" in found


def test_a_sweep_over_versions_runs_a_target_per_version() -> None:
    table = {"server": "gunicorn", "workers": 2, "version": ["21.2.0", "23.0.0"]}
    expansion = expand_sweep("gs", table, 1)
    assert expansion.problems == []
    assert [(t.name, t.version) for t in expansion.targets] == [
        ("gs-v21.2.0", "21.2.0"),
        ("gs-v23.0.0", "23.0.0"),
    ]
    refused = expand_sweep("gs", {**table, "version": ["20.0.4", "23.0.0"]}, 1)
    assert [t.name for t in refused.targets] == ["gs-v23.0.0"]
    assert refused.problems == [
        (
            "version",
            "gunicorn 20.0.4 is older than the oldest flaskbench supports, 20.1.0: older "
            "releases were never checked with flaskbench's launcher",
        )
    ]


def test_gunicorns_command_line_follows_its_version() -> None:
    sync = resolved("gunicorn")
    assert "--no-control-socket" in server_argv(sync, "127.0.0.1", 1)
    assert "--no-control-socket" in server_argv(sync, "127.0.0.1", 1, "25.1.0")
    assert "--no-control-socket" not in server_argv(sync, "127.0.0.1", 1, "25.0.3")
    assert "--no-control-socket" not in server_argv(sync, "127.0.0.1", 1, "20.1.0")


def test_granian_1_runs_the_app_on_its_blocking_threads() -> None:
    target = resolved("granian", blocking_threads=4)
    new = server_argv(target, "127.0.0.1", 1, "2.0.0")
    old = server_argv(target, "127.0.0.1", 1, "1.4.4")
    assert "--runtime-threads" in new
    assert "--threading-mode" not in new
    for option in ("--runtime-threads", "--runtime-blocking-threads", "--runtime-mode"):
        assert option not in old
    assert "--blocking-threads-idle-timeout" not in old
    assert old[old.index("--threads") : old.index("--threads") + 4] == [
        "--threads",
        "1",
        "--threading-mode",
        "workers",
    ]
    assert old[old.index("--blocking-threads") + 1] == "4"


def test_uvicorn_before_0_45_gets_no_reset_contextvars() -> None:
    target = resolved("asgi", adapter="a2wsgi")
    assert server_argv(target, "127.0.0.1", 1, "0.45.0")[-1] == "--no-reset-contextvars"
    assert "--no-reset-contextvars" not in server_argv(target, "127.0.0.1", 1, "0.44.0")


@pytest.mark.parametrize(
    ("line", "found"),
    [
        (
            "[2026-01-01 00:00:00 +0000] [7] [WARNING] Worker with pid 12 was terminated due to "
            "signal 9",
            ["gunicorn worker 12 was killed by signal 9"],
        ),
        # Every worker at every normal stop, on gunicorn 20.x.
        ("[WARNING] Worker with pid 12 was terminated due to signal 15", []),
        (
            "[ERROR] Worker (pid:12) was sent SIGKILL! Perhaps out of memory?",
            ["gunicorn worker 12 was killed (SIGKILL; out of memory?)"],
        ),
    ],
)
def test_gunicorns_worker_deaths_in_each_versions_words(line: str, found: list[str]) -> None:
    assert worker_troubles(SERVERS["gunicorn"], line) == found


def own_app(tmp_path: Path, requirements: str, servers: str = "app") -> App:
    (tmp_path / "requirements.txt").write_text(requirements)
    return App(tmp_path, "app:app", tmp_path / "requirements.txt", False, (), None, False, servers)


def test_the_apps_environment_and_one_per_version_asked_for(tmp_path: Path) -> None:
    app = own_app(tmp_path, "Flask==3.0.3\n")
    targets = [
        resolved("gunicorn"),
        replace(resolved("gunicorn"), name="g21", version="21.2.0"),
        replace(resolved("gunicorn"), name="g23", version="23.0.0"),
        replace(resolved("waitress"), name="w21", version="2.1.0"),
        replace(resolved("werkzeug"), name="dev"),
    ]
    plan = plan_environments(app, targets)
    assert [e.servers for e in plan.environments] == [
        (("werkzeug", None), ("gunicorn", None)),
        (("gunicorn", "21.2.0"), ("waitress", "2.1.0")),
        (("gunicorn", "23.0.0"),),
    ]
    assert plan.of_target == {"t": 0, "dev": 0, "g21": 1, "w21": 1, "g23": 2}
    assert len({e.key() for e in plan.environments}) == 3
    # flaskbench's pins, the built-in app's included: every server, whatever the targets.
    pinned = plan_environments(built_in_app(), targets[:1]).environments[0]
    assert pinned.pinned
    assert [s for s, _ in pinned.servers] == [s.name for s in SERVERS.values() if s.pins]


def test_what_the_environment_tries_for_a_server(tmp_path: Path) -> None:
    gunicorn = SERVERS["gunicorn"]
    pins = {"gunicorn": "21.2.0", "greenlet": "3.0.1"}
    first, *rest = options(gunicorn, None, pins)
    # The app's own pins stay; flaskbench's pins for the rest.
    assert not any(line.startswith(("gunicorn==", "greenlet==")) for line in first)
    assert "gevent==26.9.0" in first
    assert rest == [["gunicorn[gevent]>=20.1.0", "gevent>=22.10"], ["gunicorn>=20.1.0"]]
    asked, *_ = options(gunicorn, "23.0.0", pins)
    assert "gunicorn==23.0.0" in asked
    app = own_app(tmp_path, "gunicorn==21.2.0\n")
    spec = Environment(app, (("gunicorn", "23.0.0"),)).spec(["-r", "requirements.txt"], {}, "r")
    assert spec["override"] == ["gunicorn"]
    assert spec["constraints"] == []
    assert {"package": "gunicorn", "below": "21", "requirements": ["setuptools<82"]} in spec[
        "needs"
    ]
    with_pins = own_app(tmp_path, "gunicorn\n", servers="flaskbench")
    flaskbench = Environment(with_pins, (("gunicorn", None),))
    paths = {s.pins: f"/pins/{s.name}" for s in SERVERS.values() if s.pins}
    assert flaskbench.spec([], paths, "r")["constraints"] == ["/pins/gunicorn"]


def built(packages: dict[str, str], chosen: dict[str, int | None], **failures: str) -> Built:
    return Built("here", "3.11.7", packages, chosen, {k: [v] for k, v in failures.items()})


def test_where_each_version_came_from_or_why_its_target_is_left_out(tmp_path: Path) -> None:
    app = own_app(tmp_path, "gunicorn==21.2.0\ngreenlet==3.0.1\n")
    targets = [
        resolved("gunicorn"),
        replace(resolved("gunicorn", worker_class="gevent"), name="gevent"),
        replace(resolved("waitress"), name="waitress"),
        replace(resolved("granian"), name="granian"),
        replace(resolved("werkzeug"), name="dev"),
        replace(resolved("cheroot"), name="cheroot"),
    ]
    plan = plan_environments(app, targets)
    found = outcomes(
        targets,
        plan,
        [
            built(
                {
                    "gunicorn": "21.2.0",
                    "waitress": "3.0.2",
                    "granian": "2.5.0",
                    "Werkzeug": "3.0.1",
                    "cheroot": "8.0.0",
                },
                {"gunicorn": 2, "waitress": 0, "granian": 1, "cheroot": 1},
                gunicorn="gevent 26.9.0 depends on greenlet>=3.2.2",
            )
        ],
        ["k"],
    )
    sources = {name: (v["version"], v["source"]) for name, v in found.versions.items()}
    assert sources == {
        "t": ("21.2.0", "app"),
        "waitress": ("3.0.2", "flaskbench"),
        "granian": ("2.5.0", "resolved"),
        "dev": ("3.0.1", "with-app"),
    }
    assert found.left_out == {
        "gevent": "gevent (its worker model) cannot be installed beside the app's requirements "
        "(gevent 26.9.0 depends on greenlet>=3.2.2); loosen the app's pin pip names there, or "
        'ask for a version that fits (version = "..." in the target)',
        "cheroot": "cheroot 8.0.0 is older than the oldest flaskbench supports, 8.6.0: older "
        "releases were never checked with flaskbench's launcher (the newest that fits the "
        'app\'s pins); ask for a supported version (version = "...")',
    }


def test_requirement_files_lose_only_the_lines_of_a_version_asked_for(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("Flask==3.0.3\n-r more.txt\ngunicorn==21.2.0\n")
    (tmp_path / "more.txt").write_text("Gunicorn [gevent] == 21.2.0 ; python_version > '3'\nx\n")
    envbuild.leave_out(tmp_path / "requirements.txt", {"gunicorn"})
    assert (tmp_path / "requirements.txt").read_text().splitlines()[::2] == [
        "Flask==3.0.3",
        "# left out by flaskbench (a target asks for another version): gunicorn==21.2.0",
    ]
    assert (tmp_path / "more.txt").read_text().startswith("# left out by flaskbench")


def test_pips_reasons_in_one_line() -> None:
    output = """ERROR: Cannot install -r a.txt (line 1) and click==6.7 because ...

The conflict is caused by:
    The user requested click==6.7
    granian 2.8.9 depends on click>=8.1.0
    The user requested click==6.7
    granian 1.4.4 depends on click>=8.0.0; python_version >= "3"

To fix this you could try to:
"""
    assert envbuild.cause(output) == (
        "The user requested click==6.7; granian 1.4.4 to 2.8.9 depend on click>=8.1.0 or "
        "click>=8.0.0"
    )
    assert envbuild.cause("x\nERROR: No matching distribution found for gunicorn==99\n") == (
        "No matching distribution found for gunicorn==99"
    )


def test_the_builder_moves_on_only_the_servers_pip_blames(tmp_path: Path) -> None:
    """Every server at its first option; pip names one server's file: that one moves on, and
    out once it has none left; the others keep theirs."""
    spec = {
        "app": ["-r", "requirements.txt"],
        "servers": [
            {"name": "gunicorn", "options": [["gunicorn==27.0.1"], ["gunicorn>=20.1.0"]]},
            {"name": "granian", "options": [["granian==2.8.9"], ["granian>=1.4.0"]]},
        ],
    }
    builder = envbuild.Builder(spec, tmp_path)
    tried: list[list[str]] = []

    def attempt(files: list[Path], dry_run: bool = False) -> tuple[bool, str]:
        lines = [f.read_text().strip() for f in files]
        tried.append(lines)
        if any(line.startswith("granian") for line in lines):
            blamed = next(f for f in files if "granian" in f.name)
            return False, f"ERROR: Cannot install -r {blamed} (line 1)\n"
        return True, ""

    builder.attempt = attempt  # type: ignore[method-assign]
    result = builder.build()
    assert tried == [
        ["gunicorn==27.0.1", "granian==2.8.9"],
        ["gunicorn==27.0.1", "granian>=1.4.0"],
        ["gunicorn==27.0.1"],
    ]
    assert result["servers"]["gunicorn"] == {"option": 0, "failures": []}
    assert result["servers"]["granian"]["option"] is None
    assert len(result["servers"]["granian"]["failures"]) == 2


def test_runs_before_versions_were_recorded_read_with_none(tmp_path: Path) -> None:
    run = make_run(tmp_path / "old", {"sync--io--r1": [Step(1, 10, 100.0)]})
    meta = read_meta(run.meta_path)
    assert (meta["server_versions"], meta["targets_left_out"]) == ({}, {})
    rows = analyze_run(load_run(run)).rows
    assert {(r.server_version, r.server_version_source) for r in rows} == {(None, None)}


def test_summary_and_report_say_which_version_ran_and_compare_versions(tmp_path: Path) -> None:
    targets = {
        name: {**json.loads(json.dumps(resolved("gunicorn", workers=2).__dict__)), "name": name}
        for name in ("gs-v21.2.0", "gs-v23.0.0")
    }
    record = {"server": "gunicorn", "package": "gunicorn", "app_pin": "23.0.0"}
    meta = {
        "targets": targets,
        "app_python": "3.11.7",
        "server_versions": {
            "gs-v21.2.0": {**record, "version": "21.2.0", "source": "target", "environment": "a"},
            "gs-v23.0.0": {**record, "version": "23.0.0", "source": "target", "environment": "b"},
        },
        "targets_left_out": {"granian": "granian cannot be installed beside the app's pins"},
    }
    run = make_run(
        tmp_path / "run",
        {
            "gs-v21.2.0--io--r1": [Step(1, 10, 100.0), Step(2, 20, 100.0)],
            "gs-v23.0.0--io--r1": [Step(1, 10, 100.0), Step(2, 30, 66.0)],
        },
        meta=meta,
    )
    analysis = analyze_run(load_run(run))
    assert SUMMARY_COLUMNS[-2:] == ("server_version", "server_version_source")
    assert {(r.target, r.server_version, r.server_version_source) for r in analysis.rows} == {
        ("gs-v21.2.0", "21.2.0", "target"),
        ("gs-v23.0.0", "23.0.0", "target"),
    }
    text = render_markdown([*left_out_notes(analysis), *versions_section(analysis)], tmp_path)
    assert "- **granian**: granian cannot be installed beside the app's pins" in text
    assert "The app ran under Python 3.11.7." in text
    assert "| gs-v21.2.0 | gunicorn 21.2.0, asked for by the target (the app pins 23.0.0) |" in text
    assert "| gs-v23.0.0 | gunicorn 23.0.0, asked for by the target |" in text
    assert "with gunicorn 21.2.0, 23.0.0 side by side" in text
    assert "| 2 | 20.0" in text
    assert "req/s +50.0% (faster)" in text


def test_what_holds_for_an_apps_flaskenv_and_env(tmp_path: Path) -> None:
    app = own_app(tmp_path, "Flask==3.0.3\n")
    assert dotenv_notes(app, {"Flask": "3.0.3"}) == []
    (tmp_path / ".flaskenv").write_text("FLASK_APP=microblog.py\n# a comment\nFLASK_DEBUG=1\n")
    (tmp_path / ".env").write_text("export SECRET_KEY=not-for-the-log\n")
    (without,) = dotenv_notes(app, {"Flask": "3.0.3"})
    assert without.startswith(
        "app: .flaskenv and .env set FLASK_APP, FLASK_DEBUG, SECRET_KEY, but python-dotenv is "
        "not installed with the app, so Flask's CLI ignores it"
    )
    (with_it,) = dotenv_notes(app, {"Flask": "3.0.3", "python_dotenv": "1.0.0"})
    assert "`flask` commands in app.setup read it" in with_it
    assert "the servers do not, so what the app needs while serving goes in app.env" in with_it
    assert "not-for-the-log" not in without + with_it


def test_what_an_image_installs_from_is_only_what_pip_reads(tmp_path: Path) -> None:
    """Requirement files (and what they include) go before the app's code in a target image,
    so that a change to the code reuses the installed layer; a project needs its whole tree."""
    app = own_app(tmp_path, "Flask==3.0.3\n-r deps/more.txt\n")
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "more.txt").write_text("-c pins.txt\nwaitress\n")
    (tmp_path / "deps" / "pins.txt").write_text("waitress==3.0.2\n")
    (tmp_path / "app.py").write_text("app = None\n")
    assert requirement_files(app) == (
        tmp_path / "requirements.txt",
        tmp_path / "deps" / "more.txt",
        tmp_path / "deps" / "pins.txt",
    )
    assert set(app.install_files) >= set(requirement_files(app) or ())
    spec = target_spec(Environment(app, (("waitress", None),)))
    with tempfile.TemporaryDirectory() as directory:
        _assemble(spec, Path(directory), b"")
        reqs = Path(directory) / "reqs"
        assert sorted(str(p.relative_to(reqs)) for p in reqs.rglob("*.*")) == [
            "deps/more.txt",
            "deps/pins.txt",
            "requirements.txt",
        ]
    (tmp_path / "deps" / "pins.txt").write_text("-e .\n")
    assert requirement_files(app) is None
