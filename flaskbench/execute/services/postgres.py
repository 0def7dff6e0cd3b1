"""PostgreSQL, from Debian's packages: a fresh cluster with one database and one login, tuned for
throwaway data (no fsync, minimal WAL: nothing here has to survive a crash), listening on
127.0.0.1 only, its shared memory in its own data directory so that nothing outlives it."""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping

from flaskbench.execute.services.service import Address, Kind, Setting, setting_text

# The login and database the app gets; the password is made per run.
USER = "bench"
DATABASE = "bench"
# Debian bookworm's PostgreSQL; `version` picks another major where it is installed.
DEBIAN_VERSION = "15"


class Postgres(Kind):
    name = "postgres"
    default_version = DEBIAN_VERSION
    program = "postgres"
    # SIGTERM is a "smart" shutdown, which waits for every client to leave; SIGINT is the fast
    # one, which ends their sessions.
    stop_signal = signal.SIGINT
    reserved = frozenset(
        {
            "listen_addresses",
            "port",
            "unix_socket_directories",
            "data_directory",
            "config_file",
            "hba_file",
            "ident_file",
            "external_pid_file",
            # posix would put shared memory segments in /dev/shm, where a killed server leaves them.
            "dynamic_shared_memory_type",
            # Its log must reach stderr: the cell keeps it, and a failure quotes it.
            "logging_collector",
        }
    )
    apt_hint = "postgresql"

    def fields(self, address: Address) -> dict[str, str]:
        return {
            "url": f"postgresql://{USER}:{address.password}@{address.host}:{address.port}/{DATABASE}",
            "host": address.host,
            "port": str(address.port),
            "user": USER,
            "password": address.password,
            "database": DATABASE,
        }

    def packages(self, version: str | None) -> list[str]:
        return [f"postgresql-{version or DEBIAN_VERSION}"]

    def bin_dir(self, version: str | None) -> str:
        return f"/usr/lib/postgresql/{version or DEBIAN_VERSION}/bin"

    def argv(self, settings: Mapping[str, Setting]) -> list[str]:
        args = ["postgres"]
        for name, value in settings.items():
            args += ["-c", f"{name}={setting_text(value)}"]
        return args

    def env(self, address: Address, data: str) -> dict[str, str]:
        return {
            "PGDATA": f"{data}/data",
            "PGSOCK": data,
            "PGPORT": str(address.port),
            "DB_NAME": DATABASE,
            "DB_USER": USER,
            "DB_PASSWORD": address.password,
        }

    def ready_argv(self, bin_dir: str, port: int) -> list[str]:
        return [f"{bin_dir}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "1"]

    def version_argv(self, bin_dir: str) -> list[str]:
        return [f"{bin_dir}/postgres", "--version"]

    def parse_version(self, text: str) -> str:
        found = re.search(r"PostgreSQL\)\s+(\d+(?:\.\d+)*)", text)
        return found.group(1) if found else text.strip()[:40]


KIND = Postgres()
