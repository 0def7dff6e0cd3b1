"""The environment a target's app gets: `[app] env`, then the target's own `env` (a sweep may
vary it, as it varies a server's settings), with the addresses of the run's services filled in
where they are named as `{NAME.field}` (here, and in `app.setup`).

Placeholders name a service of `[services]` and one of its fields; anything else written in
braces with a dot is an error before anything starts, so a typo never reaches the app as a
literal `{db.uri}`. `${NAME}` references to the host's environment are a different thing and are
read later (config/app.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from flaskbench.config.problems import NAME
from flaskbench.config.services import ServiceSpec
from flaskbench.execute.services.kinds import KINDS

PLACEHOLDER = re.compile(r"\{(" + NAME.pattern + r")\.([a-z_]+)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def placeholder_problems(text: str, services: Sequence[ServiceSpec]) -> list[str]:
    """What is wrong with the placeholders in `text`: one message each."""
    by_name = {service.name: service for service in services}
    problems = []
    for match in PLACEHOLDER.finditer(text):
        name, attribute = match.group(1), match.group(2)
        service = by_name.get(name)
        if service is None:
            defined = (
                f"the services are {', '.join(by_name)}" if by_name else "there is no [services]"
            )
            problems.append(
                f"{match.group(0)} names no service ({defined}); define [services.{name}] or "
                "fix the name"
            )
            continue
        fields = KINDS[service.kind].field_names
        if attribute not in fields:
            problems.append(f"{match.group(0)}: a {service.kind} service has {', '.join(fields)}")
    return problems


def fill(text: str, values: Mapping[str, Mapping[str, str]]) -> str:
    """`text` with every placeholder replaced by the service's value."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1)][m.group(2)], text)


def env_values(
    value: object, report: Callable[[tuple[str, ...], str], None]
) -> dict[str, str | list[str]]:
    """An `env` table: names of environment variables, each a string or number, or (in a
    sweep) a list of them. Problems go to `report` as (key below env, message)."""
    if not isinstance(value, dict):
        report((), 'must be a table, e.g. env = { DB_POOL_SIZE = "10" }')
        return {}
    found: dict[str, str | list[str]] = {}
    for name, raw in value.items():
        values = raw if isinstance(raw, list) else [raw]
        if not _ENV_NAME.fullmatch(name):
            report((name,), "is not a valid environment variable name")
        elif not values or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in values
        ):
            report((name,), "must be a string or a whole number (in a sweep: a list of them)")
        else:
            texts = [str(v) for v in values]
            found[name] = texts if isinstance(raw, list) else texts[0]
    return found
