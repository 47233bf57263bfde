#!/usr/bin/env bash
# The whole test suite, as README.md gives it: installs what the tests need on
# a fresh Debian/Ubuntu machine (a C compiler, util-linux's prlimit, Chromium
# and playwright-core for the dashboard test, Prometheus and promtool, nginx
# with its stream module and openssl for the TLS and PROXY protocol peers;
# podman, python3-seccomp and kubernetes-validate for the deployment files), then
# runs formatting and lint checks, the unit tests and the end-to-end tests
# (real sockets on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v prlimit >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt_install "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (rustup or your distribution's package) first" >&2
  exit 1
fi

scripts/install-browser.sh
scripts/install-prometheus.sh
scripts/install-peers.sh
# The browser and Prometheus tests must not skip silently here.
export SPLICED_REQUIRE_BROWSER=1 SPLICED_REQUIRE_PROMETHEUS=1 SPLICED_REQUIRE_PEERS=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --release -- -D warnings
echo "== cargo test"
# Release build: the e2e tests move hundreds of MiB through the balancer.
cargo test --release -- --test-threads="${TEST_THREADS:-2}"
echo "== the L4 end-to-end tests again, on the epoll engine (dataplane: epoll)"
# The same tests, not copies: the harness passes --dataplane epoll to every
# spliced it starts. The HTTP plane, the dashboard and config checks do not
# depend on the L4 engine and ran once above.
SPLICED_TEST_DATAPLANE=epoll cargo test --release --test e2e -- --test-threads="${TEST_THREADS:-2}" \
  --skip http:: --skip https:: --skip dashboard:: --skip config_check:: --skip engines::
echo "== bench/tcpload (the benchmark's TCP load tool: fmt, clippy, tests)"
cargo fmt --manifest-path bench/tcpload/Cargo.toml -- --check
cargo clippy --manifest-path bench/tcpload/Cargo.toml --all-targets --release -- -D warnings
cargo test --manifest-path bench/tcpload/Cargo.toml --release
echo "== bench smoke (SMOKE=1 bench/run.sh: spliced alone, 1 round x 2 s per test)"
# Starts spliced, moves bytes through it (wrk, iperf3 if installed, tcpload), prints
# the table; fails only if spliced had an error. Installs wrk itself when root.
SMOKE=1 bench/run.sh
