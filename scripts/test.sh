#!/usr/bin/env bash
# Runs every test of the workspace. This is the test command the README names.
# PostgreSQL: tests use TIDEMARK_TEST_PG_URL (a server URL without database); when it is unset and
# PostgreSQL is installed, a throwaway cluster is started here and stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${TIDEMARK_TEST_PG_URL:-}" ]]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [[ -n "$PG_BIN" && -x "$PG_BIN/initdb" ]]; then
    PG_DIR=$(mktemp -d /tmp/tidemark-pg.XXXXXX)
    PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_pg=()
    if [[ $(id -u) == 0 ]]; then
      chown postgres "$PG_DIR"
      as_pg=(runuser -u postgres --)
    fi
    "${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    trap '"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$PG_DIR"' EXIT
    export TIDEMARK_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT"
    echo "test PostgreSQL on port $PG_PORT"
  fi
fi

cargo nextest run --workspace --no-fail-fast "$@"
# Doc tests are not run by nextest.
cargo test --workspace --doc --quiet
