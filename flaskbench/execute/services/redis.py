"""Redis, from Debian's package: no persistence at all (no snapshots, no append-only file), its
working directory a fresh one of its own, listening on 127.0.0.1 only, without a password (the
loopback is its only door)."""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping

from flaskbench.execute.services.service import Address, Kind, Setting, setting_text


class Redis(Kind):
    name = "redis"
    # Debian ships one Redis; `version` then only checks which one that is.
    default_version = None
    program = "redis-server"
    stop_signal = signal.SIGTERM
    reserved = frozenset(
        {
            "port",
            "bind",
            "dir",
            "daemonize",
            "logfile",
            "pidfile",
            "supervised",
            "unixsocket",
            "protected-mode",
        }
    )
    apt_hint = "redis-server"

    def fields(self, address: Address) -> dict[str, str]:
        return {
            "url": f"redis://{address.host}:{address.port}/0",
            "host": address.host,
            "port": str(address.port),
        }

    def packages(self, version: str | None) -> list[str]:
        return ["redis-server"]

    def bin_dir(self, version: str | None) -> str:
        return "/usr/bin"

    def argv(self, settings: Mapping[str, Setting]) -> list[str]:
        args = ["redis"]
        for name, value in settings.items():
            text = setting_text(value)
            args += [f"--{name}", "yes" if text == "on" else "no" if text == "off" else text]
        return args

    def env(self, address: Address, data: str) -> dict[str, str]:
        return {"REDIS_PORT": str(address.port), "REDIS_DIR": data}

    def ready_argv(self, bin_dir: str, port: int) -> list[str]:
        return [f"{bin_dir}/redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"]

    def version_argv(self, bin_dir: str) -> list[str]:
        return [f"{bin_dir}/redis-server", "--version"]

    def parse_version(self, text: str) -> str:
        found = re.search(r"v=(\d+(?:\.\d+)*)", text)
        return found.group(1) if found else text.strip()[:40]


KIND = Redis()
