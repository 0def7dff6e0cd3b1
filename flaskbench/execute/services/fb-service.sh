#!/bin/sh
# Start one of flaskbench's services in the foreground: prepare its data, then become the server
# (exec), so that whoever started this script holds the server's pid. The services image's
# entrypoint, and what the local runner runs as it is.
#
#   fb-service.sh postgres [-c name=value ...]   env: PGDATA PGSOCK PGPORT DB_NAME DB_USER
#                                                 DB_PASSWORD [PGTEMPLATE]; postgres' bin on PATH
#   fb-service.sh redis [--name value ...]       env: REDIS_PORT REDIS_DIR
#
# Runs as whoever started it, never root (postgres refuses to). Everything it writes is under
# PGSOCK (PGDATA inside it) or REDIS_DIR: a tmpfs in a container, /dev/shm for the local runner.
# Listens on 127.0.0.1 only; nothing is durable (a benchmark's data is thrown away).
set -eu

case "${1:-}" in
postgres)
    shift
    if [ -n "${PGTEMPLATE:-}" ] && [ -d "$PGTEMPLATE" ]; then
        # A cluster this run made already: copying it takes a fraction of initdb's second.
        cp -a "$PGTEMPLATE" "$PGDATA"
    else
        initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C -N --no-instructions \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        # The app's login and database, in single-user mode (no server to start and stop for
        # it). One statement per line: single-user mode runs each line on its own, and it exits
        # 0 even after an error, so its output is searched for one.
        password=$(printf %s "$DB_PASSWORD" | sed "s/'/''/g")
        out=$(postgres --single -D "$PGDATA" postgres 2>&1 <<SQL
CREATE ROLE "$DB_USER" LOGIN PASSWORD '$password';
GRANT pg_read_all_stats TO "$DB_USER";
CREATE DATABASE "$DB_NAME" OWNER "$DB_USER";
SQL
)
        if printf '%s\n' "$out" | grep -qE '(ERROR|FATAL|PANIC):'; then
            printf 'fb-service: creating the database failed:\n%s\n' "$out" >&2
            exit 1
        fi
        if [ -n "${PGTEMPLATE:-}" ]; then
            cp -a "$PGDATA" "$PGTEMPLATE"
        fi
    fi
    # Throwaway data: no fsync, minimal WAL. Shared memory in the data directory (mmap), so a
    # killed server leaves nothing elsewhere. The config's own -c options come last and win.
    exec postgres -D "$PGDATA" -p "$PGPORT" \
        -c listen_addresses=127.0.0.1 -c unix_socket_directories="$PGSOCK" \
        -c max_connections=200 -c shared_buffers=128MB \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
        -c wal_level=minimal -c max_wal_senders=0 -c huge_pages=off -c jit=off \
        -c dynamic_shared_memory_type=mmap -c logging_collector=off \
        "$@"
    ;;
redis)
    shift
    exec redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
        --save '' --appendonly no --dir "$REDIS_DIR" --daemonize no --logfile '' \
        "$@"
    ;;
*)
    echo "fb-service: usage: fb-service.sh postgres|redis [options]" >&2
    exit 2
    ;;
esac
