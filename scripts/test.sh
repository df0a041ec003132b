#!/usr/bin/env bash
# Runs every test of the workspace. This is the test command the README names.
# PostgreSQL: tests use TIDEMARK_TEST_PG_URL (a server URL without database); when it is unset and
# PostgreSQL is installed, a throwaway cluster is started here and stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# TLS tests: a throwaway test CA and certificates (scripts/tls-test-certs.sh); the test
# PostgreSQL below serves TLS with them.
if [[ -z "${TIDEMARK_TEST_TLS_DIR:-}" ]] && command -v openssl >/dev/null; then
  TLS_DIR=$(mktemp -d /tmp/tidemark-tls.XXXXXX)
  ./scripts/tls-test-certs.sh "$TLS_DIR"
  export TIDEMARK_TEST_TLS_DIR="$TLS_DIR"
  trap 'rm -rf "$TLS_DIR"' EXIT
fi

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
    pg_tls=()
    if [[ -n "${TIDEMARK_TEST_TLS_DIR:-}" ]]; then
      # The server's key must belong to the server's user and be private.
      install -m 600 -o "$(stat -c %U "$PG_DIR")" "$TIDEMARK_TEST_TLS_DIR/server.key" "$PG_DIR/server.key"
      install -m 644 -o "$(stat -c %U "$PG_DIR")" "$TIDEMARK_TEST_TLS_DIR/server.pem" "$PG_DIR/server.pem"
      pg_tls=(-c ssl=on -c "ssl_cert_file=$PG_DIR/server.pem" -c "ssl_key_file=$PG_DIR/server.key")
      export TIDEMARK_TEST_PG_TLS=1
    fi
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 ${pg_tls[*]}" start >/dev/null
    trap '"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$PG_DIR" "${TLS_DIR:-}"' EXIT
    export TIDEMARK_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT"
    echo "test PostgreSQL on port $PG_PORT"
  fi
fi

# The tests that need a real peer fail when it is missing (never skip silently), unless
# TIDEMARK_ALLOW_SKIPS=1 says to run what this machine can and report the rest as skipped.
missing=()
python3 -c 'import pyarrow, duckdb' 2>/dev/null || missing+=("pyarrow and duckdb (pip install 'pyarrow>=15' 'duckdb>=1.0')")
command -v moto_server >/dev/null || missing+=("moto_server, a real S3 server (pip install 'moto[server]>=5')")
[[ -n "${TIDEMARK_TEST_PG_URL:-}" ]] || missing+=("PostgreSQL (apt-get install postgresql, or set TIDEMARK_TEST_PG_URL)")
{ command -v prometheus && command -v promtool; } >/dev/null || missing+=("prometheus and promtool (apt-get install prometheus)")
command -v docker-compose >/dev/null || missing+=("docker-compose (apt-get install docker-compose)")
{ command -v tansu && command -v kcat; } >/dev/null || missing+=("tansu and kcat (cargo install tansu --locked --features dynostore,libsql; apt-get install kcat)")
command -v sqlite3 >/dev/null || missing+=("sqlite3, for the README's examples (apt-get install sqlite3)")
{ command -v stunnel && command -v openssl; } >/dev/null || missing+=("stunnel and openssl, for the TLS tests (apt-get install stunnel4 openssl)")
[[ -n "${TIDEMARK_TEST_PG_TLS:-}" ]] || missing+=("a PostgreSQL serving TLS with the test CA (this script starts one when PostgreSQL is installed and TIDEMARK_TEST_PG_URL is unset)")
command -v cargo-nextest >/dev/null || missing+=("cargo-nextest (cargo install cargo-nextest --locked)")
if (( ${#missing[@]} )); then
  printf 'missing test peer: %s\n' "${missing[@]}" >&2
  if [[ "${TIDEMARK_ALLOW_SKIPS:-}" != 1 ]]; then
    echo "install them (as root, .ci/run installs and starts everything), or set TIDEMARK_ALLOW_SKIPS=1 to skip what needs them" >&2
    exit 1
  fi
  echo "TIDEMARK_ALLOW_SKIPS=1: the tests that need these report 'skipped' and return early" >&2
else
  export TIDEMARK_REQUIRE_PY_READERS=1 TIDEMARK_REQUIRE_S3=1 TIDEMARK_REQUIRE_PG=1 \
    TIDEMARK_REQUIRE_PROMETHEUS=1 TIDEMARK_REQUIRE_COMPOSE=1 TIDEMARK_REQUIRE_TANSU=1 \
    TIDEMARK_REQUIRE_TLS=1
fi

cargo nextest run --workspace --no-fail-fast "$@"
# Doc tests are not run by nextest.
cargo test --workspace --doc --quiet
