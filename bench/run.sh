#!/usr/bin/env bash
# spliced benchmark against HAProxy and nginx (stream) on loopback.
# Thin wrapper: installs missing tools (and python3-matplotlib for the charts),
# builds spliced and bench/tcpload, then runs bench/bench.py.
# See bench/README.md for the method and the knobs (REPS, DUR, TARGETS, TESTS, OUT,
# SMOKE, SCALE, SPLICED_BIN, SPLICED_REF, SPLICED_BIN_B, SPLICED_REF_B, TCPLOAD,
# CHARTS, ...).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# Where cargo puts work-tree builds: CARGO_TARGET_DIR when set (made absolute
# here, since cargo reads a relative one from its own working directory).
if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
    export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
fi
SMOKE=${SMOKE:-0}
INSTALL=${INSTALL:-1}
# Charts need matplotlib; SMOKE (CI) makes none.
if [[ $SMOKE == 1 ]]; then CHARTS=${CHARTS:-0}; else CHARTS=${CHARTS:-1}; fi
export CHARTS

log() { printf '[bench] %s\n' "$*" >&2; }

# Debian packages the full run needs; SMOKE=1 installs only wrk (the others are
# optional there: a missing iperf3 skips the iperf3 tests, a missing nginx makes
# the backends fall back to bench/backend.py).
missing_packages() {
    local pkgs=()
    command -v wrk >/dev/null 2>&1 || pkgs+=(wrk)
    if [[ $SMOKE != 1 ]]; then
        command -v haproxy >/dev/null 2>&1 || pkgs+=(haproxy)
        command -v nginx >/dev/null 2>&1 || pkgs+=(nginx)
        [[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || pkgs+=(libnginx-mod-stream)
        command -v iperf3 >/dev/null 2>&1 || pkgs+=(iperf3)
        command -v h2load >/dev/null 2>&1 || pkgs+=(nghttp2-client)  # the HTTPS tests
    fi
    if [[ $CHARTS == 1 ]] && ! plot_python >/dev/null; then
        pkgs+=(python3-matplotlib)
    fi
    echo "${pkgs[@]}"
}

# An interpreter that has matplotlib: PLOT_PYTHON, python3 on PATH (may be a
# pyenv shim), or the system one (where Debian's python3-matplotlib goes).
plot_python() {
    local py
    for py in ${PLOT_PYTHON:-} python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import matplotlib' >/dev/null 2>&1; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}

policy_backup=""
restore_policy() {
    if [[ -n $policy_backup ]]; then
        if [[ $policy_backup == none ]]; then
            rm -f /usr/sbin/policy-rc.d
        else
            mv -f "$policy_backup" /usr/sbin/policy-rc.d
        fi
        policy_backup=""
    fi
}

install_packages() {
    local pkgs=("$@")
    if [[ $(id -u) != 0 ]]; then
        log "not root: cannot install ${pkgs[*]}; targets/tests that need them are skipped"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "no apt-get: cannot install ${pkgs[*]}; targets/tests that need them are skipped"
        return 0
    fi
    # Keep apt from starting nginx/haproxy/iperf3 as system services: invoke-rc.d
    # asks /usr/sbin/policy-rc.d, and exit code 101 means "action forbidden".
    if ! { [[ -x /usr/sbin/policy-rc.d ]] && grep -qx 'exit 101' /usr/sbin/policy-rc.d; }; then
        if [[ -e /usr/sbin/policy-rc.d ]]; then
            policy_backup=$(mktemp /usr/sbin/policy-rc.d.bench.XXXXXX)
            cp -p /usr/sbin/policy-rc.d "$policy_backup"
        else
            policy_backup=none
        fi
        trap restore_policy EXIT
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
    fi
    log "installing: ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
    restore_policy
    trap - EXIT
}

if [[ $INSTALL == 1 ]]; then
    read -r -a pkgs <<<"$(missing_packages)"
    if ((${#pkgs[@]})); then
        install_packages "${pkgs[@]}"
    fi
fi
if [[ $CHARTS == 1 ]]; then
    if py=$(plot_python); then
        export PLOT_PYTHON=$py
    elif [[ $INSTALL == 1 ]] && ! command -v apt-get >/dev/null 2>&1; then
        # No apt: try pip (user site of the python3 on PATH).
        log "installing matplotlib with pip (no apt-get)"
        python3 -m pip install --quiet --user matplotlib >&2 || true
        if py=$(plot_python); then export PLOT_PYTHON=$py; fi
    fi
    [[ -n ${PLOT_PYTHON:-} ]] || log "matplotlib is not available: the report will have no charts"
fi
[[ ${INSTALL_ONLY:-0} == 1 ]] && exit 0

# Build a committed revision (resolved to a short hash before any build: see
# below) in a clean export, so that uncommitted edits in the work tree (other
# people's, half done) neither break nor colour the run. Prints the path of the
# binary, kept per revision as bench/out/.build/spliced-REV (a commit does not
# change: later runs reuse it; delete it to force a rebuild). All revisions share
# one cargo target dir (dependencies are built once), whose release/spliced the
# next build overwrites. Cargo's fingerprints cannot tell one export from another
# (same package, same relative paths, and the sources carry their commit's mtime,
# often older than the last build): it would call the previous revision's spliced
# fresh. So the spliced package is cleaned whenever the target dir last built
# another revision (target/.spliced-rev).
build_ref() {
    local ref=$1 rev=$2 src bin target
    src="$here/out/.build/src-$rev"
    bin="$here/out/.build/spliced-$rev"
    target="$here/out/.build/target"
    if [[ -x $bin ]]; then
        log "spliced $ref ($rev): using $bin, built before"
        echo "$bin"
        return 0
    fi
    if [[ ! -d $src ]]; then
        mkdir -p "$src.tmp"
        git -C "$root" archive "$rev" | tar -x -C "$src.tmp"
        mv "$src.tmp" "$src"
    fi
    log "building spliced $ref ($rev) in $src"
    if [[ $(cat "$target/.spliced-rev" 2>/dev/null) != "$rev" ]]; then
        (cd "$src" && CARGO_TARGET_DIR="$target" cargo clean --release --quiet -p spliced) >&2
        rm -f "$target/.spliced-rev"
    fi
    (cd "$src" && CARGO_TARGET_DIR="$target" cargo build --release --quiet) >&2
    echo "$rev" >"$target/.spliced-rev"
    cp -f "$target/release/spliced" "$bin.tmp"
    mv -f "$bin.tmp" "$bin"
    echo "$bin"
}

# Resolve both revisions before building anything: others commit while this runs,
# and HEAD~1 must mean the same commit for the build and for the report's label.
rev_a="" rev_b=""
if [[ -z ${SPLICED_BIN:-} && -n ${SPLICED_REF:-} ]]; then
    rev_a=$(git -C "$root" rev-parse --short "$SPLICED_REF^{commit}")
fi
if [[ -z ${SPLICED_BIN_B:-} && -n ${SPLICED_REF_B:-} ]]; then
    rev_b=$(git -C "$root" rev-parse --short "$SPLICED_REF_B^{commit}")
fi

if [[ -n ${SPLICED_BIN:-} ]]; then
    : # use the binary given
elif [[ -n ${SPLICED_REF:-} ]]; then
    SPLICED_BIN=$(build_ref "$SPLICED_REF" "$rev_a")
    export SPLICED_BIN
    export SPLICED_GIT="$rev_a (SPLICED_REF=$SPLICED_REF)"
else
    log "building spliced from the work tree (cargo build --release)"
    (cd "$root" && cargo build --release --quiet)
    export SPLICED_BIN="${CARGO_TARGET_DIR:-$root/target}/release/spliced"
fi

# Build B of an A/B run (target spliced-b, same config as spliced; bench.py adds it
# to TARGETS when SPLICED_BIN_B or SPLICED_REF_B is set).
if [[ -n ${SPLICED_BIN_B:-} ]]; then
    export SPLICED_BIN_B  # use the binary given (SPLICED_GIT_B then labels it)
elif [[ -n ${SPLICED_REF_B:-} ]]; then
    SPLICED_BIN_B=$(build_ref "$SPLICED_REF_B" "$rev_b")
    export SPLICED_BIN_B
    export SPLICED_GIT_B="$rev_b (SPLICED_REF_B=$SPLICED_REF_B)"
fi

# bench/tcpload: raw-TCP load generator, echo backend and idle-connection holder
# (tcprate, echo, idle, maxconn tests). Built from the work tree in every mode.
if [[ -n ${TCPLOAD:-} ]]; then
    : # use the binary given
elif [[ -f $here/tcpload/Cargo.toml ]]; then
    log "building bench/tcpload (cargo build --release)"
    cargo build --release --quiet --manifest-path "$here/tcpload/Cargo.toml"
    export TCPLOAD="${CARGO_TARGET_DIR:-$here/tcpload/target}/release/tcpload"
else
    log "no bench/tcpload: the tcprate, echo, idle and maxconn tests are skipped"
fi

# The balancers need many fds (HAProxy refuses to start if it cannot get them).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

exec python3 "$here/bench.py" "$@"
