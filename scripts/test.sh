#!/usr/bin/env bash
# The whole test suite, as README.md gives it: installs what the tests need on
# a fresh Debian/Ubuntu machine, then runs formatting and lint checks, the unit
# tests and the end-to-end tests (real sockets on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  fi
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust from your distribution or rustup first" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --release -- -D warnings
echo "== cargo test"
# Release build: the e2e tests move hundreds of MiB through the balancer.
cargo test --release -- --test-threads="${TEST_THREADS:-2}"
