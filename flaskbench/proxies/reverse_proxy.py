"""What every proxy module says about its proxy, and a target's proxy settings.

A target with `proxy = "NAME"` is served behind that proxy: the proxy listens on the target's
address and port, the server on the next port of the loopback address (UPSTREAM_OFFSET), both on
the target's CPUs, started and stopped with the target. The proxy's config is generated per cell
(`config_text`) and kept in the cell's raw data; the proxy's processes are sampled apart from the
server's (resources.csv names them PROXY_RESOURCE, on the target side).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

# The keys a target (or a sweep) sets its proxy with; `proxy = "none"` is no proxy.
PROXY_KEYS = ("proxy", "proxy_buffering", "proxy_request_buffering", "proxy_keepalive")
NO_PROXY = "none"
# The server behind a proxy listens on the loopback address at the target's port + this.
UPSTREAM_OFFSET = 1
UPSTREAM_HOST = "127.0.0.1"
# Where a proxy's binary may be besides PATH (Debian installs daemons in sbin).
SYSTEM_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


@dataclass(frozen=True)
class ProxySpec:
    """A target's proxy: which one, and the settings that change what the server sees."""

    name: str
    # The proxy reads the whole response from the server before passing it on (the server is
    # done at once, whatever the client's pace).
    buffering: bool = True
    # The proxy reads the whole request body before passing the request on.
    request_buffering: bool = True
    # Connections to the server are kept and reused (HTTP/1.1); else a new one per request.
    keepalive: bool = False


class Proxy:
    """Everything flaskbench knows about one reverse proxy."""

    name: ClassVar[str]
    # The Debian packages that install it (in the target image, or on the host for the local
    # runner), and the binary they install.
    packages: ClassVar[tuple[str, ...]]
    binary_name: ClassVar[str]
    # What stops it at once (the load has stopped before: nothing is in flight).
    stop_signal: ClassVar[str] = "TERM"

    def binary(self, path: str | None = None) -> str | None:
        """Its binary on this host (PATH, then the system directories), or None."""
        search = ":".join(filter(None, [path, *SYSTEM_DIRS]))
        return shutil.which(self.binary_name, path=search)

    def install_hint(self) -> str:
        return f"apt-get install {' '.join(self.packages)}"

    def config_text(
        self, spec: ProxySpec, listen: tuple[str, int], upstream_port: int, prefix: str, cpus: int
    ) -> str:
        """Its configuration file for one cell: listening on `listen`, passing requests to the
        server on UPSTREAM_HOST:upstream_port, writing only under `prefix`, one worker process
        per CPU of the target's."""
        raise NotImplementedError

    def argv(self, binary: str, prefix: str, config: str) -> list[str]:
        """Its command line, in the foreground, with the config file `config`."""
        raise NotImplementedError

    def describe(self, spec: ProxySpec) -> str:
        """How the report names it in a target's description."""
        raise NotImplementedError

    def notes(self, spec: ProxySpec) -> tuple[str, ...]:
        """What the report should say about what the server sees behind it."""
        return ()


def proxy_record(spec: ProxySpec | None) -> dict[str, Any] | None:
    """A target's proxy as meta.json records it."""
    return asdict(spec) if spec is not None else None


def proxy_from_record(record: object) -> ProxySpec | None:
    """A target's proxy as meta.json recorded it (runs before proxies have none)."""
    if not isinstance(record, Mapping):
        return None
    return ProxySpec(
        str(record["name"]),
        bool(record.get("buffering", True)),
        bool(record.get("request_buffering", True)),
        bool(record.get("keepalive", False)),
    )


def on_off(value: bool) -> str:
    return "on" if value else "off"
