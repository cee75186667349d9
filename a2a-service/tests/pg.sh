#!/usr/bin/env bash
# A private PostgreSQL server for the crate's PostgreSQL tests.
#
#   tests/pg.sh run -- cargo test -p attach-a2a-service   start, run with A2A_TEST_DATABASE_URL, stop
#   tests/pg.sh start                                      start; print the URL to export
#   tests/pg.sh stop                                       stop and remove the data directory
#
# Uses the Debian packages' binaries (/usr/lib/postgresql/<version>/bin, or
# PG_BIN), a free port on 127.0.0.1, trust authentication, and a data
# directory under A2A_PG_DIR (default: a fresh directory in $TMPDIR). As root
# the server runs as the `postgres` user (PostgreSQL refuses root).
set -euo pipefail

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
    echo "pg.sh: no PostgreSQL binaries found (install postgresql or set PG_BIN)" >&2
    exit 1
fi
STATE_FILE=${A2A_PG_STATE:-${TMPDIR:-/tmp}/attach-a2a-pg.state}

as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir port user
    dir=${A2A_PG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/attach-a2a-pg.XXXXXX")}
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres "$dir"
        user=postgres
    else
        user=$(id -un)
    fi
    port=$(free_port)
    as_owner "$PG_BIN/initdb" -D "$dir/data" -U "$user" --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    printf '%s\n%s\n' "$dir" "$port" >"$STATE_FILE"
    echo "postgres://$user@127.0.0.1:$port/postgres"
}

stop() {
    [[ -f "$STATE_FILE" ]] || return 0
    local dir
    dir=$(sed -n 1p "$STATE_FILE")
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir" "$STATE_FILE"
}

case "${1:-}" in
    start)
        url=$(start)
        echo "export A2A_TEST_DATABASE_URL=$url"
        ;;
    stop)
        stop
        ;;
    run)
        shift
        [[ "${1:-}" == "--" ]] && shift
        url=$(start)
        trap stop EXIT
        A2A_TEST_DATABASE_URL=$url "$@"
        ;;
    *)
        echo "usage: $0 start | stop | run -- COMMAND..." >&2
        exit 2
        ;;
esac
