#!/usr/bin/env bash
# Installs Prometheus and promtool from Debian's `prometheus` package, for the
# end-to-end test that lints the alert rules and has a real Prometheus scrape
# spliced (tests/e2e/prometheus.rs). The package's own service is kept from
# starting: the test runs its own server on a free port with a temp TSDB.
#
# Idempotent: when both binaries are already on PATH it does nothing.
# Runs as root (CI does) or through sudo otherwise.
set -euo pipefail

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  exit 0
fi

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
# No recommends: they would pull in prometheus-node-exporter and its service.
apt_install prometheus
keep_service_off prometheus

command -v promtool >/dev/null && command -v prometheus >/dev/null || {
  echo "install-prometheus: promtool/prometheus still missing after apt-get install" >&2
  exit 1
}
echo "install-prometheus: $(prometheus --version 2>&1 | head -n1)"
