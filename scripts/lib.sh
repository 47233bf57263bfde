# Shared by the install scripts (source it): run as root or through sudo,
# install Debian packages without starting their services, and keep a
# package's service off afterwards. Every function is idempotent.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG...: installs the packages without recommends, waiting for
# another apt/dpkg run rather than failing. While they install, a
# policy-rc.d that answers 101 ("action forbidden") tells invoke-rc.d and
# deb-systemd-invoke not to start their services (nginx would take port 80);
# an existing policy-rc.d (Docker images ship one) is kept as it is.
apt_install() {
  local policy=/usr/sbin/policy-rc.d own_policy=0
  local lock=(-o DPkg::Lock::Timeout=600)
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    own_policy=1
  fi
  local status=0
  {
    as_root apt-get "${lock[@]}" update -qq &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" install -y -qq \
        --no-install-recommends "$@" >/dev/null
  } || status=$?
  if [ "$own_policy" = 1 ]; then
    as_root rm -f "$policy"
  fi
  return "$status"
}

# keep_service_off NAME: belt and braces, in case a package's service started
# anyway: stop it and keep it from starting at boot.
keep_service_off() {
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now "$1" >/dev/null 2>&1 || true
  fi
  if command -v service >/dev/null; then
    as_root service "$1" stop >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null; then
    as_root update-rc.d "$1" disable >/dev/null 2>&1 || true
  fi
}
