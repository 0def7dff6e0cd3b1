"""`[services.NAME]`: a real Postgres or Redis started beside the target for the app to talk to.

    [services.db]
    kind = "postgres"          # or "redis"
    version = "15"             # optional: the major version (Postgres: Debian's 15 by default)
    per_cell = true            # default: a fresh, empty service for every cell; false: one per run
    settings = { max_connections = 100 }   # optional: the server's own settings

Its address reaches the app through `{NAME.url}`, `{NAME.host}`, `{NAME.port}` (and a Postgres
service's `{NAME.user}`, `{NAME.password}`, `{NAME.database}`) in `app.env`, `app.setup` and a
target's `env` (see env.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flaskbench.config.problems import Problems, flag, named_tables, unknown_keys
from flaskbench.execute.services.kinds import KINDS
from flaskbench.execute.services.service import SETTING_NAME, Setting

SERVICE_KEYS = {"kind", "version", "per_cell", "settings"}
_VERSION = re.compile(r"\d+(\.\d+)*")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    kind: str
    # As the config wrote it (None: the kind's default).
    version: str | None
    # A fresh service per cell (True), or one for the whole run.
    per_cell: bool = True
    settings: Mapping[str, Setting] = field(default_factory=dict)

    @property
    def wanted_version(self) -> str | None:
        return self.version or KINDS[self.kind].default_version


def parse_services(data: Mapping[str, Any], problems: Problems) -> tuple[ServiceSpec, ...]:
    if "services" not in data:
        return ()
    found = []
    for name, key, raw in named_tables(data, "services", "db", problems):
        unknown_keys(raw, SERVICE_KEYS, key, problems)
        kind = raw.get("kind")
        if kind not in KINDS:
            problems.add((*key, "kind"), f"required: one of {', '.join(KINDS)}, got {kind!r}")
            continue
        version = raw.get("version")
        if isinstance(version, int) and not isinstance(version, bool):
            version = str(version)
        if version is not None and (
            not isinstance(version, str) or not _VERSION.fullmatch(version)
        ):
            problems.add(
                (*key, "version"), f'must be a version such as "15", got {raw["version"]!r}'
            )
            continue
        settings = _settings(raw.get("settings", {}), str(kind), key, problems)
        per_cell = flag({"per_cell": True} | raw, "per_cell", key, problems)
        found.append(ServiceSpec(name, str(kind), version, per_cell, settings))
    return tuple(found)


def _settings(
    value: object, kind: str, key: tuple[str, ...], problems: Problems
) -> dict[str, Setting]:
    where = (*key, "settings")
    if not isinstance(value, dict):
        problems.add(
            where, "must be a table of the server's settings, e.g. { max_connections = 100 }"
        )
        return {}
    settings: dict[str, Setting] = {}
    for name, setting in value.items():
        if not SETTING_NAME.fullmatch(name):
            problems.add((*where, name), "is not a setting name")
        elif name in KINDS[kind].reserved:
            problems.add(
                (*where, name),
                f"flaskbench sets it itself for every {kind} service; remove it",
            )
        elif not isinstance(setting, str | int | float | bool):
            problems.add((*where, name), "must be a string, a number or true/false")
        else:
            settings[name] = setting
    return settings
