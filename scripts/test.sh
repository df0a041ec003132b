#!/usr/bin/env bash
# Runs every test of the workspace. This is the test command the README names.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --workspace --no-fail-fast "$@"
# Doc tests are not run by nextest.
cargo test --workspace --doc --quiet
