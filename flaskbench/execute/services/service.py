"""What every kind of service says about itself (one module per kind: postgres.py, redis.py), and
what a started service offers the app: its address, as `{NAME.field}` placeholders fill it in.

Both runners start a service with the same script (fb-service.sh: it prepares the data, then
becomes the server), as an unprivileged user, listening on 127.0.0.1 only, with its data in
memory and nothing durable; the kind says which arguments and environment that script gets.
"""

from __future__ import annotations

import re
import signal
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The script that starts every kind (the services image's entrypoint; run as it is locally).
SCRIPT = Path(__file__).resolve().parent / "fb-service.sh"
# The sampler, run as a plain script (stdlib and psycopg only) locally and in the image.
SAMPLER = Path(__file__).resolve().parent / "sampler.py"
# Where the app's services listen: beside the target, on its host's loopback.
LOOPBACK = "127.0.0.1"

Setting = str | int | float | bool


class ServiceFailed(Exception):
    """A service did not start, or died: the message names it and quotes its last log lines."""


@dataclass(frozen=True)
class Address:
    """Where one started service listens, and how the app logs in (kinds without logins have
    no password)."""

    host: str
    port: int
    password: str = ""


class Kind(ABC):
    """One kind of service: its facts and command lines, nothing about who starts it."""

    name: str
    # The version started when the config names none (None: whatever the packages bring).
    default_version: str | None
    # The process a container's sampler looks for (the server, once the script became it).
    program: str
    stop_signal: signal.Signals
    # Settings flaskbench passes itself: the config may not change them.
    reserved: frozenset[str]
    # What `apt-get install` needs for this kind (the doctor's fix, the image's packages).
    apt_hint: str

    @abstractmethod
    def fields(self, address: Address) -> dict[str, str]:
        """What `{NAME.field}` becomes: url, host, port and what else the kind has."""

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(self.fields(Address(LOOPBACK, 1, "x")))

    @abstractmethod
    def packages(self, version: str | None) -> list[str]:
        """The Debian packages the services image installs for this kind."""

    @abstractmethod
    def bin_dir(self, version: str | None) -> str:
        """Where the kind's programs are on a Debian system (first in the script's PATH)."""

    @abstractmethod
    def argv(self, settings: Mapping[str, Setting]) -> list[str]:
        """The script's arguments: the kind, then the config's settings as the server takes
        them."""

    @abstractmethod
    def env(self, address: Address, data: str) -> dict[str, str]:
        """The script's environment: where the data goes (`data`, a directory of its own),
        the port, the login."""

    @abstractmethod
    def ready_argv(self, bin_dir: str, port: int) -> list[str]:
        """A command that exits 0 once the server answers on 127.0.0.1:port."""

    @abstractmethod
    def version_argv(self, bin_dir: str) -> list[str]:
        """A command printing the server's version (`parse_version` reads it)."""

    @abstractmethod
    def parse_version(self, text: str) -> str: ...

    def version_matches(self, wanted: str | None, found: str) -> bool:
        """Whether the version started is the one the config asked for (major, or more)."""
        return wanted is None or found == wanted or found.startswith(f"{wanted}.")


def setting_text(value: Setting) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


SETTING_NAME = re.compile(r"[a-z][a-z0-9_.-]*")


def last_lines(text: str, count: int = 5) -> str:
    """The last non-empty lines of a service's log, joined for a one-line reason."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) if lines else "(no output)"
