#!/usr/bin/env bash
# The whole test suite: formatting, lints, the wasm32 build of the sans-I/O crates, and
# every test (unit, property, adversarial, end-to-end with real processes on loopback), the
# store's against both SQLite and a real PostgreSQL server started here.
# Uses ../shared (models, attestation evidence) in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "wasm32 build of the sans-I/O crates"
scripts/wasm-check.sh

step "PostgreSQL for the store tests (Debian package, throwaway cluster)"
eval "$(scripts/postgres.sh)"
trap 'scripts/postgres.sh stop' EXIT

step "python env for the gateway's OpenAI SDK test (pinned, in target/py-venv)"
scripts/python-env.sh

step "cargo test"
cargo test --workspace --locked
