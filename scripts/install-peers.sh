#!/usr/bin/env bash
# Installs the real peers of the TLS-passthrough and PROXY-protocol end-to-end
# tests (tests/e2e/tls.rs, tests/e2e/proxy_protocol.rs) from Debian packages:
# `openssl` (s_server and s_client as TLS backend and client) and `nginx` (a
# backend that reads PROXY headers with `listen … proxy_protocol`). The tests
# run nginx themselves, in the foreground on a free port with a temp prefix;
# the package's own service is kept from starting.
#
# Idempotent: when both programs are already installed it does nothing.
# Runs as root (CI does) or through sudo otherwise.
set -euo pipefail

have() {
  command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

missing=()
have openssl || missing+=(openssl)
have nginx || missing+=(nginx)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

# While the packages install, a policy-rc.d that answers 101 ("action
# forbidden") tells invoke-rc.d and deb-systemd-invoke not to start nginx's
# service (it would take port 80). An existing policy-rc.d is kept as it is.
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
as_root env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" install -y -qq \
  --no-install-recommends "${missing[@]}" >/dev/null

# Belt and braces: if nginx's service started anyway, stop it and keep it off.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  as_root systemctl disable --now nginx >/dev/null 2>&1 || true
fi
if command -v service >/dev/null; then
  as_root service nginx stop >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null; then
  as_root update-rc.d nginx disable >/dev/null 2>&1 || true
fi

have openssl && have nginx || {
  echo "install-peers: openssl/nginx still missing after apt-get install" >&2
  exit 1
}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
echo "install-peers: $(openssl version), $("$nginx_bin" -v 2>&1)"
