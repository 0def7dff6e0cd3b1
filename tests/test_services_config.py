"""[services], the placeholders that hand their addresses to the app, cpus.services, and the
app's environment of a target or a sweep: each problem one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import MINIMAL, problems, write

from flaskbench.config.env import fill
from flaskbench.config.load import load_config
from flaskbench.execute.services.kinds import KINDS
from flaskbench.execute.services.service import Address

APP = """
[app]
path = "{app}"
wsgi = "app:app"
env = {{ DATABASE_URL = "{{db.url}}", REDIS_URL = "{{cache.url}}" }}
setup = "flask --app app init-db --port {{db.port}}"
"""
SERVICES = """
[services.db]
kind = "postgres"

[services.cache]
kind = "redis"
per_cell = false
settings = { maxmemory = "64mb" }
"""


def config_text(tmp_path: Path, extra: str = "", services: str = SERVICES) -> str:
    (tmp_path / "app").mkdir(exist_ok=True)
    own_app = MINIMAL.replace("io_ms = 100", 'path = "/"')
    return own_app + APP.format(app=tmp_path / "app") + services + extra


def test_services_are_read_with_their_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, config_text(tmp_path)))
    db, cache = config.services
    assert (db.name, db.kind, db.version, db.per_cell, dict(db.settings)) == (
        "db",
        "postgres",
        None,
        True,
        {},
    )
    assert db.wanted_version == "15"
    assert (cache.kind, cache.per_cell, dict(cache.settings)) == (
        "redis",
        False,
        {"maxmemory": "64mb"},
    )
    assert config.cpus.services == ()


def test_placeholders_become_the_services_addresses() -> None:
    values = {
        "db": KINDS["postgres"].fields(Address("127.0.0.1", 5433, "pw")),
        "cache": KINDS["redis"].fields(Address("127.0.0.1", 6380)),
    }
    assert fill("{db.url} {cache.url} {db.port} ${HOME} {x}", values) == (
        "postgresql://bench:pw@127.0.0.1:5433/bench redis://127.0.0.1:6380/0 5433 ${HOME} {x}"
    )


@pytest.mark.parametrize(
    ("extra", "services", "key", "message"),
    [
        (
            "",
            SERVICES.replace('kind = "redis"', 'kind = "mysql"'),
            "services.cache.kind",
            "required: one of postgres, redis, got 'mysql'",
        ),
        (
            "",
            SERVICES.replace("maxmemory", "port"),
            "services.cache.settings.port",
            "flaskbench sets it itself for every redis service; remove it",
        ),
        (
            "",
            SERVICES.replace('kind = "postgres"', 'kind = "postgres"\nversion = "fifteen"'),
            "services.db.version",
            "must be a version such as \"15\", got 'fifteen'",
        ),
        (
            "",
            SERVICES.replace("per_cell = false", "per_cell = 1"),
            "services.cache.per_cell",
            "must be true or false, got 1",
        ),
        (
            "",
            SERVICES.replace("[services.cache]", "[services.store]"),
            "app.env.REDIS_URL",
            "{cache.url} names no service (the services are db, store); define "
            "[services.cache] or fix the name",
        ),
        (
            "",
            SERVICES.replace("[services.db]", "[services.pg]"),
            "app.setup",
            "{db.port} names no service (the services are pg, cache); define [services.db] "
            "or fix the name",
        ),
        (
            '[targets.sync.env]\nPOOL = "{cache.password}"\n',
            SERVICES,
            "targets.sync.env.POOL",
            "{cache.password}: a redis service has url, host, port",
        ),
    ],
)
def test_bad_services_and_placeholders_are_one_line_each(
    tmp_path: Path, extra: str, services: str, key: str, message: str
) -> None:
    found = problems(tmp_path, config_text(tmp_path, services=services) + extra)
    assert any(line.endswith(f": {key}: {message}") for line in found), found
    (line,) = [line for line in found if f": {key}: " in line]
    assert line.startswith(f"{tmp_path / 'bench.toml'}:")


def test_the_services_cpus_are_the_targets_or_their_own_never_the_loads(tmp_path: Path) -> None:
    def text(cpus: str) -> str:
        return config_text(tmp_path).replace('load = "1"', f'load = "1"\nservices = "{cpus}"')

    assert load_config(write(tmp_path, text("target"))).cpus.services == ()
    assert load_config(write(tmp_path, text("0"))).cpus.services == (0,)
    (line,) = problems(tmp_path, text("0-1"))
    assert line.endswith(
        ": cpus.services: shares CPU(s) 1 with cpus.load; the services run beside the target, "
        "on its CPUs or their own"
    )


def test_a_placeholder_without_any_services_says_so(tmp_path: Path) -> None:
    found = problems(tmp_path, config_text(tmp_path, services=""))
    assert any(
        line.endswith(
            "app.env.DATABASE_URL: {db.url} names no service (there is no [services]); define "
            "[services.db] or fix the name"
        )
        for line in found
    ), found


def test_a_sweep_varies_the_apps_environment_like_a_setting(tmp_path: Path) -> None:
    sweep = """
[sweep.pool]
server = "gunicorn"
worker_class = "gthread"
workers = 1
threads = [8, 16]
env.DB_POOL_SIZE = [4, 12]
env.MODE = "fast"
"""
    text = config_text(tmp_path).replace(
        '[targets.sync]\nserver = "gunicorn"\nworker_class = "sync"\nworkers = 2\n', ""
    )
    config = load_config(write(tmp_path, text + sweep))
    assert [(t.name, t.threads, dict(t.env)) for t in config.targets] == [
        ("pool-t8-db_pool_size4", 8, {"DB_POOL_SIZE": "4", "MODE": "fast"}),
        ("pool-t8-db_pool_size12", 8, {"DB_POOL_SIZE": "12", "MODE": "fast"}),
        ("pool-t16-db_pool_size4", 16, {"DB_POOL_SIZE": "4", "MODE": "fast"}),
        ("pool-t16-db_pool_size12", 16, {"DB_POOL_SIZE": "12", "MODE": "fast"}),
    ]


@pytest.mark.parametrize(
    ("env", "key", "message"),
    [
        (
            "env = { DB_POOL_SIZE = [4, 12] }",
            "targets.sync.env.DB_POOL_SIZE",
            "takes one value; a [sweep] varies it over a list",
        ),
        (
            'env = { "1BAD" = "x" }',
            "targets.sync.env.1BAD",
            "is not a valid environment variable name",
        ),
        (
            "env = { POOL = true }",
            "targets.sync.env.POOL",
            "must be a string or a whole number (in a sweep: a list of them)",
        ),
    ],
)
def test_a_targets_env_is_checked(tmp_path: Path, env: str, key: str, message: str) -> None:
    text = config_text(tmp_path).replace("workers = 2\n", f"workers = 2\n{env}\n", 1)
    found = problems(tmp_path, text)
    assert any(line.endswith(f": {key}: {message}") for line in found), found
