#!/usr/bin/env bash
# Installs the real peers of the TLS-passthrough and PROXY-protocol end-to-end
# tests (tests/e2e/tls.rs, tests/e2e/proxy_protocol.rs) from Debian packages:
# `openssl` (s_server and s_client as TLS backend and client) and `nginx` (a
# backend that reads PROXY headers with `listen … proxy_protocol`), and
# `systemd-analyze` (package systemd) to verify the shipped unit
# (tests/e2e/systemd.rs). The tests run nginx themselves, in the foreground on
# a free port with a temp prefix; the packages' own services are kept from
# starting.
#
# Idempotent: when every program is already installed it does nothing.
# Runs as root (CI does) or through sudo otherwise.
set -euo pipefail

have() {
  command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

missing=()
have openssl || missing+=(openssl)
have nginx || missing+=(nginx)
# systemd-analyze (`verify` checks the shipped units) and
# systemd-socket-activate (passes a listening socket), for tests/e2e/systemd.rs.
{ have systemd-analyze && have systemd-socket-activate; } || missing+=(systemd)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
apt_install "${missing[@]}"
keep_service_off nginx

have openssl && have nginx && have systemd-analyze && have systemd-socket-activate || {
  echo "install-peers: openssl/nginx/systemd-analyze still missing after apt-get install" >&2
  exit 1
}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
echo "install-peers: $(openssl version), $("$nginx_bin" -v 2>&1)"
