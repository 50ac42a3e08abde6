#!/bin/sh
# A throwaway PostgreSQL for the tests: `start DIR` creates a cluster in DIR
# (initdb, as an unprivileged user: PostgreSQL refuses to run as root), runs
# it on a free port on 127.0.0.1 and prints its URL (also written to
# DIR/url; DIR's parent must be reachable by that user); `stop DIR` stops it and
# deletes DIR; `restart DIR` stops and starts it (same port, same data).
# Uses Debian's postgresql package (/usr/lib/postgresql/<version>/bin).
set -eu
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|restart DIR" >&2; exit 2; }
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "$0: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

# as whom: root cannot run postgres; anyone else runs it as themselves
as_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
    as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
        -o "-p $(cat "$dir/port") -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
}

case "$cmd" in
start)
    "$0" stop "$dir"  # what an interrupted run left behind
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown nobody "$dir"
    chmod 700 "$dir"
    as_user "$bin/initdb" -D "$dir/data" -U polysync -A trust -E UTF8 --locale=C.UTF-8 \
        --no-sync >/dev/null
    echo "max_connections = 200" >>"$dir/data/postgresql.conf"
    echo "shared_buffers = 128MB" >>"$dir/data/postgresql.conf"
    # a test server: speed over durability (nothing here outlives the run);
    # PS_PG_DURABLE=1 (the benchmark) keeps PostgreSQL's defaults
    if [ "${PS_PG_DURABLE:-0}" != 1 ]; then
        printf 'fsync = off\nfull_page_writes = off\n' >>"$dir/data/postgresql.conf"
    fi
    free_port >"$dir/port"
    start
    echo "postgres://polysync@127.0.0.1:$(cat "$dir/port")/postgres" >"$dir/url"
    cat "$dir/url"
    ;;
restart)  # also starts a stopped one
    as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    start
    ;;
stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_user "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
*) echo "usage: $0 start|stop|restart DIR" >&2; exit 2 ;;
esac
