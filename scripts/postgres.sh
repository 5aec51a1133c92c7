#!/usr/bin/env bash
# A throwaway PostgreSQL server for the sotto-store tests.
#
#   eval "$(scripts/postgres.sh)"          # start; exports SOTTO_TEST_POSTGRES_URL/_DIR
#   cargo test -p sotto-store
#   scripts/postgres.sh stop               # stop it and delete its files
#
# `start` (the default) installs PostgreSQL from Debian's packages if no server binaries are
# under /usr/lib/postgresql/*/bin (apt-get, through sudo when not root; the package's own
# "main" cluster is not created), initialises a fresh cluster in a temporary directory with
# initdb (trust auth, superuser `sotto`), starts it with pg_ctl on a free 127.0.0.1 port (and
# a Unix socket in that directory only), creates the database `sotto_test`, and prints
#
#   export SOTTO_TEST_POSTGRES_URL='postgresql://sotto@127.0.0.1:PORT/sotto_test'
#   export SOTTO_TEST_POSTGRES_DIR='/tmp/sotto-pg.XXXXXX'
#
# on stdout (progress goes to stderr), for `eval`. initdb and the server refuse to run as
# root, so as root they run as the `postgres` user (created by the Debian package) through
# runuser. The server keeps fsync and synchronous_commit on: the store's durability tests
# rely on real commits. `stop [DIR]` stops the server of DIR (default
# $SOTTO_TEST_POSTGRES_DIR) and removes DIR.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

say() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; fi
}

# Runs a PostgreSQL server program as an unprivileged user.
run_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

cmd="${1:-start}"

case "$cmd" in
stop)
    dir="${2:-${SOTTO_TEST_POSTGRES_DIR:-}}"
    if [ -z "$dir" ] || [ ! -d "$dir/data" ]; then
        say "nothing to stop (pass DIR or set SOTTO_TEST_POSTGRES_DIR)"
        exit 0
    fi
    bindir="$(find_bindir)"
    run_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
    say "stopped and removed $dir"
    exit 0
    ;;
start) ;;
*)
    echo "usage: $0 [start|stop [DIR]]" >&2
    exit 2
    ;;
esac

bindir="$(find_bindir)"
if [ -z "$bindir" ]; then
    say "installing postgresql (Debian)"
    # Only the binaries are wanted: no system-wide "main" cluster on port 5432.
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        as_root mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    log="$(mktemp)"
    if ! { as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends postgresql; } >"$log" 2>&1; then
        cat "$log" >&2
        say "apt-get failed"
        exit 1
    fi
    rm -f "$log"
    bindir="$(find_bindir)"
    if [ -z "$bindir" ]; then
        say "no initdb/pg_ctl under /usr/lib/postgresql/*/bin after installing"
        exit 1
    fi
fi
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    say "running as root needs the 'postgres' user (created by Debian's postgresql package)"
    exit 1
fi

dir="$(mktemp -d /tmp/sotto-pg.XXXXXX)"
chmod 755 "$dir"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi

say "initdb in $dir ($("$bindir/postgres" --version))"
if ! run_pg "$bindir/initdb" -D "$dir/data" -U sotto -A trust -E UTF8 --no-locale \
    >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    exit 1
fi

free_port() { # a port nothing listens on
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

started=0
for _ in 1 2 3 4 5; do
    port="$(free_port)"
    if run_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=200 -c fsync=on -c synchronous_commit=on" \
        start >&2; then
        started=1
        break
    fi
    say "start on port $port failed; retrying"
done
if [ "$started" -ne 1 ]; then
    cat "$dir/server.log" >&2 || true
    say "could not start PostgreSQL"
    exit 1
fi

"$bindir/createdb" -h 127.0.0.1 -p "$port" -U sotto sotto_test >&2

url="postgresql://sotto@127.0.0.1:$port/sotto_test"
say "ready: $url"
echo "export SOTTO_TEST_POSTGRES_URL='$url'"
echo "export SOTTO_TEST_POSTGRES_DIR='$dir'"
