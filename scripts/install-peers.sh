#!/usr/bin/env bash
# Installs the real peers of the TLS-passthrough, PROXY-protocol and HTTP-mode
# end-to-end tests (tests/e2e/tls.rs, proxy_protocol.rs, http.rs) from Debian
# packages:
# `openssl` (s_server and s_client as TLS backend and client) and `nginx` (a
# backend that reads PROXY headers with `listen … proxy_protocol`), and
# `systemd-analyze` (package systemd) to verify the shipped unit
# (tests/e2e/systemd.rs); for the deployment files (tests/e2e/deploy.rs)
# `podman` (builds the image's runtime stage; nothing is run), Debian's
# `python3-seccomp` (runs spliced under conf/seccomp/spliced.json) and
# `kubernetes-validate` from PyPI in its own venv under /opt/spliced-tools
# (the Kubernetes schemas, offline; linked as /usr/local/bin/kubernetes-validate).
# `kubectl` (for `kubectl kustomize`) comes with the machine image. The tests run nginx themselves, in the foreground on
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
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

have openssl || missing+=(openssl)
have nginx || missing+=(nginx)
# systemd-analyze (`verify` checks the shipped units) and
# systemd-socket-activate (passes a listening socket), for tests/e2e/systemd.rs.
{ have systemd-analyze && have systemd-socket-activate; } || missing+=(systemd)
# The HTTP mode's real clients and backends (tests/e2e/http.rs): curl (h1,
# h2, h2c), h2load and nghttpd, and Debian's Python WebSocket, HTTP/2 and
# gRPC libraries for /usr/bin/python3.
have curl || missing+=(curl)
have h2load || missing+=(nghttp2-client)
have nghttpd || missing+=(nghttp2-server)
py_has() { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import $1" 2>/dev/null; }
py_has websockets || missing+=(python3-websockets)
py_has h2 || missing+=(python3-h2)
py_has grpc || missing+=(python3-grpcio)
have podman || missing+=(podman)
# libseccomp's Python binding: tests/e2e/engines.rs and deploy.rs run spliced
# under seccomp filters (one refusing io_uring as default container profiles
# do, and the shipped profile).
py_has seccomp || missing+=(python3-seccomp)

# kubernetes-validate: pinned, in a venv of Debian's python3 (python3-venv),
# so nothing touches the system's Python packages.
KV_VERSION=1.37.0
KV_VENV=/opt/spliced-tools/kubernetes-validate
install_kubernetes_validate() {
  if [ "$("$KV_VENV/bin/kubernetes-validate" --version 2>/dev/null)" != "$KV_VERSION" ]; then
    /usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv
    as_root /usr/bin/python3 -m venv "$KV_VENV"
    as_root "$KV_VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
  fi
  [ -e /usr/local/bin/kubernetes-validate ] || as_root ln -s "$KV_VENV/bin/kubernetes-validate" /usr/local/bin/kubernetes-validate
}
install_kubernetes_validate

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

apt_install "${missing[@]}"
keep_service_off nginx

have openssl && have nginx && have systemd-analyze && have systemd-socket-activate \
  && have curl && have h2load && have nghttpd && py_has websockets && py_has h2 && py_has grpc \
  && have podman && py_has seccomp || {
  echo "install-peers: openssl/nginx/systemd-analyze/curl/h2load/nghttpd/podman/python3 websockets, h2, grpc, seccomp still missing after apt-get install" >&2
  exit 1
}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
echo "install-peers: $(openssl version), $("$nginx_bin" -v 2>&1)"
