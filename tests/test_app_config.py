"""[app] and the workload forms: what each key accepts, and one clear line for what it does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import problems, write

from flaskbench.config.app import server_pins
from flaskbench.config.load import load_config
from flaskbench.config.workloads import Request, Workload

TARGET = """
[cpus]
target = "0"
load = "1"

[targets.sync]
server = "gunicorn"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    app = tmp_path / "shop"
    (app / "loadtests").mkdir(parents=True)
    (app / "shop.py").write_text("def create_app():\n    pass\n")
    (app / "requirements.txt").write_text("Flask==3.0.3\n")
    (app / "loadtests" / "locustfile.py").write_text(
        "from locust import HttpUser\n\nclass Visitor(HttpUser):\n    pass\n"
    )
    return tmp_path


def app_config(app: str = "", workloads: str = '[workloads.home]\npath = "/"\n') -> str:
    table = app or 'path = "shop"\nwsgi = "shop:create_app()"\nrequirements = "requirements.txt"'
    return f"{TARGET}\n[app]\n{table}\n\n{workloads}"


def load(project: Path, text: str) -> object:
    return load_config(write(project, text))


def test_an_app_with_every_key(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_SECRET", "s3cret")
    config = load_config(
        write(
            project,
            app_config(
                'path = "shop"\nwsgi = "shop:create_app(\'prod\', debug=False)"\n'
                'requirements = "requirements.txt"\n'
                'env = { SECRET_KEY = "${SHOP_SECRET}", MODE = "${SHOP_MODE:-fast}", N = 3 }\n'
                'setup = "flask --app shop init-db"'
            ),
        )
    )
    app = config.app
    assert not app.builtin
    assert app.path == project / "shop"
    assert app.requirements == project / "shop" / "requirements.txt"
    assert app.resolved_env() == {"SECRET_KEY": "s3cret", "MODE": "fast", "N": "3"}
    # What is recorded is what the config wrote, never a value from the environment.
    assert app.describe()["env"] == {
        "SECRET_KEY": "${SHOP_SECRET}",
        "MODE": "${SHOP_MODE:-fast}",
        "N": "3",
    }
    assert "s3cret" not in repr(app.describe())


def test_without_app_the_built_in_app_is_served(project: Path) -> None:
    config = load_config(write(project, TARGET + "[workloads.io]\nio_ms = 100\n"))
    assert config.app.builtin
    assert config.app.wsgi == "flaskbench_target.builtin_app:app"


def test_a_pyproject_is_installed_when_there_is_no_requirements_file(project: Path) -> None:
    (project / "shop" / "pyproject.toml").write_text('[project]\nname = "shop"\n')
    config = load_config(write(project, app_config('path = "shop"\nwsgi = "shop:app"')))
    assert config.app.project
    assert config.app.requirements is None


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ('wsgi = "shop:app"', "app.path", "required"),
        ('path = "nowhere"\nwsgi = "shop:app"', "app.path", "is not a directory"),
        ('path = "shop"', "app.wsgi", "required"),
        ('path = "shop"\nwsgi = "shop-app:app"', "app.wsgi", "is not a module name"),
        ('path = "shop"\nwsgi = "shop:create_app(os.environ)"', "app.wsgi", "literals"),
        ('path = "shop"\nwsgi = "shop:"', "app.wsgi", "nothing after ':'"),
        (
            'path = "shop"\nwsgi = "shop:app"\nrequirements = "reqs.txt"',
            "app.requirements",
            "is not a file",
        ),
        ('path = "shop"\nwsgi = "shop:app"\nenv = "X=1"', "app.env", "must be a table"),
        ('path = "shop"\nwsgi = "shop:app"\nenv = { 1X = "a" }', "app.env.1X", "not a valid"),
        (
            'path = "shop"\nwsgi = "shop:app"\nenv = { KEY = "${FLASKBENCH_NOT_SET_ANYWHERE}" }',
            "app.env.KEY",
            "refers to ${FLASKBENCH_NOT_SET_ANYWHERE}, which is not set",
        ),
        ('path = "shop"\nwsgi = "shop:app"\nsetup = ""', "app.setup", "must be a shell command"),
        ('path = "shop"\nwsgi = "shop:app"\nport = 80', "app.port", "unknown key"),
        ('path = "shop"\nwsgi = "shop:app"\nservers = 1', "app.servers", "must be"),
    ],
)
def test_bad_app_keys_are_one_line_each(project: Path, table: str, key: str, message: str) -> None:
    found = problems(project, app_config(table))
    assert len(found) == 1, found
    assert f": {key}: " in found[0]
    assert message in found[0]


SHOP = 'path = "shop"\nwsgi = "shop:create_app()"\nrequirements = "requirements.txt"'
FLASKBENCH_PINS = SHOP + '\nservers = "flaskbench"'


def test_an_app_may_pin_the_servers_it_deploys_with(project: Path) -> None:
    """By default the app's own pins decide (pip's resolver, when its environment is built)."""
    (project / "shop" / "requirements.txt").write_text("Flask==3.0.3\ngunicorn==20.1.0\n")
    config = load_config(write(project, app_config()))
    assert config.app.servers == "app"
    assert config.app.describe()["servers"] == "app"


def test_with_flaskbenchs_pins_an_app_pin_that_contradicts_one_names_both(project: Path) -> None:
    ours, _ = server_pins()["gunicorn"]
    (project / "shop" / "requirements.txt").write_text(
        "Flask==3.0.3\n-r more.txt\n# gunicorn is ours\n"
    )
    (project / "shop" / "more.txt").write_text("gunicorn==20.1.0\ngevent>=1.0\n")
    (found,) = problems(project, app_config(FLASKBENCH_PINS))
    assert "app.requirements" in found
    assert "more.txt:1 asks for gunicorn==20.1.0" in found
    assert (
        f"flaskbench measures with gunicorn=={ours} (flaskbench/servers/pins/gunicorn.txt) with "
        'app.servers = "flaskbench"' in found
    )
    assert found.endswith("leave out app.servers to measure the versions the app pins")


def test_with_flaskbenchs_pins_a_pyproject_dependency_that_contradicts_one(project: Path) -> None:
    (project / "shop" / "pyproject.toml").write_text(
        '[project]\nname = "shop"\ndependencies = ["flask", "gevent<20"]\n'
    )
    table = 'path = "shop"\nwsgi = "shop:app"\nservers = "flaskbench"'
    (found,) = problems(project, app_config(table))
    assert "[project] dependencies asks for gevent<20" in found


def test_with_flaskbenchs_pins_compatible_ranges_are_fine(project: Path) -> None:
    (project / "shop" / "requirements.txt").write_text("gunicorn>=21\ngevent\n")
    assert load_config(write(project, app_config(FLASKBENCH_PINS))).app.servers == "flaskbench"


def test_app_servers_takes_two_values(project: Path) -> None:
    (found,) = problems(project, app_config(SHOP + '\nservers = "mine"'))
    assert ': app.servers: must be "app"' in found


WORKLOADS = [
    ('[workloads.w]\npath = "/"', Workload("w", requests=(Request("/"),))),
    (
        '[workloads.w]\npath = "/login"\nmethod = "post"\nform = { user = "a" }\n'
        'headers = { "X-Test" = "1" }\nexpect = [200, 302]',
        Workload(
            "w",
            requests=(
                Request("/login", "POST", (("X-Test", "1"),), (("user", "a"),), None, (200, 302)),
            ),
        ),
    ),
    (
        '[workloads.w]\npath = "/api"\nmethod = "PUT"\njson = { n = 1, tags = ["a"] }\n'
        "expect = 201",
        Workload(
            "w", requests=(Request("/api", "PUT", (), None, '{"n": 1, "tags": ["a"]}', (201,)),)
        ),
    ),
    (
        '[workloads.w]\nrequests = [{ path = "/", weight = 3 }, { path = "/auth/login" }]',
        Workload("w", requests=(Request("/", weight=3), Request("/auth/login"))),
    ),
]


@pytest.mark.parametrize(("table", "expected"), WORKLOADS)
def test_each_workload_form(project: Path, table: str, expected: Workload) -> None:
    config = load_config(write(project, app_config(workloads=table)))
    assert config.workloads == (expected,)


def test_a_locustfile_workload(project: Path) -> None:
    table = '[workloads.w]\nlocustfile = "shop/loadtests/locustfile.py"\nuser_class = "Visitor"'
    (workload,) = load_config(write(project, app_config(workloads=table))).workloads
    assert workload.locustfile == str(project / "shop" / "loadtests" / "locustfile.py")
    assert workload.user_class == "Visitor"
    assert workload.kind == "locustfile"
    assert workload.path == "locustfile.py:Visitor"


def test_the_built_in_workloads_are_requests_too() -> None:
    assert Workload("io", io_ms=100).traffic == (Request("/io?ms=100", expect=(200,)),)
    assert Workload("mix", requests=(Request("/", weight=3), Request("/a"))).path == (
        "GET / 75%, GET /a 25%"
    )


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ("[workloads.w]\nio_ms = 100", "workloads.w.io_ms", "endpoints of the built-in app"),
        ('[workloads.w]\npath = "/"\nio_ms = 5', "workloads.w", "mixes io_ms/cpu_ms and path"),
        ('[workloads.w]\npath = "home"', "workloads.w.path", "starting with '/'"),
        ('[workloads.w]\npath = "/"\nmethod = "FETCH"', "workloads.w.method", "one of GET"),
        ('[workloads.w]\npath = "/"\nexpect = 700', "workloads.w.expect", "an HTTP status"),
        ('[workloads.w]\npath = "/"\nexpect = []', "workloads.w.expect", "an HTTP status"),
        ('[workloads.w]\npath = "/"\nform = { a = true }', "workloads.w.form", "strings"),
        (
            '[workloads.w]\npath = "/"\nform = { a = "1" }\njson = { b = 2 }',
            "workloads.w.json",
            "not both",
        ),
        ('[workloads.w]\npath = "/"\nweight = 2', "workloads.w.weight", "unknown key"),
        ("[workloads.w]\nrequests = []", "workloads.w.requests", "non-empty list"),
        (
            '[workloads.w]\nrequests = [{ path = "/", weight = 0 }]',
            "workloads.w.requests.0.weight",
            "1 or more",
        ),
        (
            '[workloads.w]\nrequests = [{ path = "/", speed = 1 }]',
            "workloads.w.requests.0.speed",
            "unknown key",
        ),
        (
            '[workloads.w]\nlocustfile = "missing.py"\nuser_class = "Visitor"',
            "workloads.w.locustfile",
            "does not exist",
        ),
        (
            '[workloads.w]\nlocustfile = "shop/loadtests/locustfile.py"\nuser_class = "Shopper"',
            "workloads.w.user_class",
            "defines no class Shopper",
        ),
        (
            '[workloads.w]\nlocustfile = "shop/loadtests/locustfile.py"',
            "workloads.w.user_class",
            "must name the user class",
        ),
    ],
)
def test_bad_workloads_are_one_line_each(project: Path, table: str, key: str, message: str) -> None:
    found = problems(project, app_config(workloads=table))
    assert len(found) == 1, found
    assert f": {key}: " in found[0]
    assert message in found[0]


def test_the_built_in_app_has_only_its_own_endpoints(project: Path) -> None:
    (found,) = problems(project, TARGET + '[workloads.w]\npath = "/login"\n')
    assert "workloads.w.path: the built-in app has no /login" in found
    assert "set [app]" in found
    config = load_config(write(project, TARGET + '[workloads.w]\npath = "/io?ms=5"\n'))
    assert config.workloads[0].traffic == (Request("/io?ms=5"),)
