#!/usr/bin/env bash
# Installs what the dashboard's real-browser test (tests/e2e/dashboard.rs)
# needs: Debian's chromium at /usr/bin/chromium, node + npm, and the npm
# dependencies of tests/browser (playwright-core only, which never downloads a
# browser of its own). Idempotent: quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-browser: apt-get install ${need_apt[*]}"
  # WHY: one retry, since a dpkg run interrupted by anything else on the machine
  # (e.g. a concurrent cleanup of /tmp) leaves a state that a second run repairs.
  apt_install "${need_apt[@]}" fonts-dejavu-core || { sleep 2; apt_install "${need_apt[@]}" fonts-dejavu-core; }
fi

# WHY: the playwright-core package ships no browser; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD
# makes sure nothing tries to fetch one (that cannot work here, and is not needed:
# the test launches /usr/bin/chromium).
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
cd tests/browser
if [ ! -f node_modules/playwright-core/package.json ] ||
   [ package.json -nt node_modules/.package-lock.json ] ||
   { [ -f package-lock.json ] && [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
fi
echo "install-browser: chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), node $(node --version), playwright-core $(node -p "require('./node_modules/playwright-core/package.json').version")"
