#!/usr/bin/env bash
# A throwaway PostgreSQL server from the distribution's packages (Debian 12: PostgreSQL 15), for running
# the test suite on the Postgres users deploy rather than the embedded build:
#
#   scripts/ci-postgres.sh start     # initdb a fresh cluster and start it; prints the URL on stdout
#   export TEST_DATABASE_URL=$(scripts/ci-postgres.sh url)
#   npx vitest run test/integration/queue.test.ts
#   scripts/ci-postgres.sh stop      # stop it and delete the cluster
#
# The cluster is its own (never the distribution's main cluster): a folder under ${TMPDIR:-/tmp}, on
# 127.0.0.1:${SFW_CI_PG_PORT:-55432}, run by the `postgres` user when started as root. It has the
# settings a stock install has, with JIT on (jit_above_cost left at its default), and it refuses to start
# quietly without JIT. Tests connect as a password user that may create databases but is not a superuser,
# as on a managed Postgres. Environment: SFW_CI_PG_PORT, SFW_CI_PG_DIR (the cluster folder), PG_BINDIR
# (the server's bin folder; default the newest /usr/lib/postgresql/*/bin).
set -euo pipefail

PORT="${SFW_CI_PG_PORT:-55432}"
DIR="${SFW_CI_PG_DIR:-${TMPDIR:-/tmp}/sfw-ci-postgres-$PORT}"
APP_USER=sfw
APP_PASSWORD=sfw-ci-password
SUPER_PASSWORD=postgres-ci-password

die() {
  echo "ci-postgres: $*" >&2
  exit 1
}

bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then
    echo "$PG_BINDIR"
    return
  fi
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$found" ] && [ -x "$found/initdb" ] ||
    die "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql), or set PG_BINDIR"
  echo "$found"
}

# Runs a command as the cluster's owner: `postgres` when we are root (the server refuses root).
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

url() {
  echo "postgres://$APP_USER:$APP_PASSWORD@127.0.0.1:$PORT/postgres"
}

psql_super() {
  PGPASSWORD="$SUPER_PASSWORD" "$(bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" \
    -U postgres -d postgres "$@"
}

stop() {
  if [ -f "$DIR/data/postmaster.pid" ]; then
    as_owner "$(bindir)/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null ||
      echo "ci-postgres: pg_ctl stop failed; see $DIR/server.log" >&2
  fi
  rm -rf "$DIR"
}

start() {
  local bin
  bin=$(bindir)
  if [ "$(id -u)" = 0 ]; then
    id -u postgres >/dev/null 2>&1 || die 'running as root, and there is no "postgres" user to run the server'
  fi
  stop # a cluster left by an earlier run on this port
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "127.0.0.1:$PORT is already in use; set SFW_CI_PG_PORT"
  fi
  mkdir -p "$DIR"
  chmod 0755 "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
  local pw="$DIR/superuser-password"
  printf '%s\n' "$SUPER_PASSWORD" >"$pw"
  chmod 0600 "$pw"
  [ "$(id -u)" = 0 ] && chown postgres: "$pw"
  as_owner "$bin/initdb" -D "$DIR/data" -U postgres --pwfile="$pw" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 ||
    die "initdb failed: $(cat "$DIR/initdb.log")"
  rm -f "$pw"
  cat >>"$DIR/data/postgresql.conf" <<EOF
# scripts/ci-postgres.sh
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 300
jit = on
# The plan tests (test/integration/claim-plans.test.ts) read the plans of statements inside functions;
# auto_explain stays silent unless a session sets auto_explain.log_min_duration (granted below).
session_preload_libraries = 'auto_explain'
EOF
  touch "$DIR/server.log"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR/server.log"
  as_owner "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null ||
    die "the server did not start: $(tail -n 20 "$DIR/server.log")"

  local jit
  jit=$(psql_super -At -c "SELECT pg_jit_available()::text || ' ' || current_setting('jit')")
  [ "$jit" = "true on" ] ||
    die "JIT is not available and on (pg_jit_available, jit: $jit); is the server's llvmjit.so installed?"
  psql_super -c "CREATE ROLE $APP_USER LOGIN CREATEDB PASSWORD '$APP_PASSWORD'"
  psql_super -c "GRANT SET ON PARAMETER auto_explain.log_min_duration, auto_explain.log_nested_statements,
    auto_explain.log_analyze, auto_explain.log_format, auto_explain.log_level TO $APP_USER"
  local version
  version=$(psql_super -At -c 'SHOW server_version')
  echo "ci-postgres: PostgreSQL $version on 127.0.0.1:$PORT ($DIR), JIT on, jit_above_cost $(psql_super -At -c 'SHOW jit_above_cost')" >&2
  url
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
