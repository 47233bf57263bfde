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

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

# While the package installs, a policy-rc.d that answers 101 ("action
# forbidden") tells invoke-rc.d and deb-systemd-invoke not to start its service.
# An existing policy-rc.d (Docker images ship one) is kept as it is.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
  own_policy=1
fi
cleanup() {
  if [ "$own_policy" = 1 ]; then
    as_root rm -f "$policy"
  fi
}
trap cleanup EXIT

# Wait for another apt/dpkg run (e.g. a parallel install step) rather than fail.
lock=(-o DPkg::Lock::Timeout=600)
as_root apt-get "${lock[@]}" update -qq
# No recommends: they would pull in prometheus-node-exporter and its service.
as_root env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" install -y -qq \
  --no-install-recommends prometheus >/dev/null

# Belt and braces: if the service started anyway, stop it and keep it off.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if command -v service >/dev/null; then
  as_root service prometheus stop >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null; then
  as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
fi

command -v promtool >/dev/null && command -v prometheus >/dev/null || {
  echo "install-prometheus: promtool/prometheus still missing after apt-get install" >&2
  exit 1
}
echo "install-prometheus: $(prometheus --version 2>&1 | head -n1)"
