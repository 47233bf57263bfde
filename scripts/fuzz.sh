#!/usr/bin/env bash
# Runs each fuzz target in tests/fuzz for a bounded time and prints how many
# executions each ran. With a nightly toolchain and cargo-fuzz, uses libFuzzer
# (coverage-guided); otherwise the stable fallback `fuzz-stable` (random
# mutations of the seeds). Exits non-zero if any target found a crash; the
# input is saved under tests/fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default: 60 s each, all targets
#   FUZZ_ENGINE=stable scripts/fuzz.sh 10     # force the stable fallback
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sni_peek proxy_header config)

engine=${FUZZ_ENGINE:-}
if [ -z "$engine" ]; then
  if cargo +nightly --version >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1; then
    engine=libfuzzer
  else
    echo "fuzz: nightly or cargo-fuzz missing (cargo install cargo-fuzz); using the stable fallback" >&2
    engine=stable
  fi
fi

seeds_for() {
  case "$1" in
    sni_peek) echo tests/fixtures/tls ;;
    proxy_header) echo tests/fuzz/seeds/proxy_header ;;
    config) echo conf ;;
    *) echo "fuzz: unknown target $1" >&2; exit 2 ;;
  esac
}

# Long enough for a ClientHello past MAX_CLIENT_HELLO (32 KiB) and a PROXY v2
# header past MAX_HEADER_LEN (4112 bytes), so the size limits are exercised.
max_len_for() {
  case "$1" in
    sni_peek) echo 40000 ;;
    proxy_header) echo 5000 ;;
    *) echo 8192 ;;
  esac
}

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
summary=()
failed=0

# WHY: no AddressSanitizer (`-s none`): the fuzzed parsers are safe Rust
# (`#![deny(unsafe_code)]` outside src/uring/), so bounds and overflow checks
# (on: cargo-fuzz builds with debug assertions) already turn every memory
# error into a panic, and ASAN would cost several times the executions.
sanitizer=(--sanitizer none)

if [ "$engine" = libfuzzer ]; then
  cargo +nightly fuzz build --fuzz-dir tests/fuzz "${sanitizer[@]}"
else
  cargo build --release --manifest-path tests/fuzz/Cargo.toml --no-default-features --features stable --bin fuzz-stable
fi

for target in "${targets[@]}"; do
  log="$logs/$target.log"
  echo "== $target: ${seconds}s ($engine)"
  status=0
  if [ "$engine" = libfuzzer ]; then
    corpus="tests/fuzz/corpus/$target"
    mkdir -p "$corpus"
    cargo +nightly fuzz run --fuzz-dir tests/fuzz "${sanitizer[@]}" "$target" "$corpus" "$(seeds_for "$target")" -- \
      -max_total_time="$seconds" -max_len="$(max_len_for "$target")" -print_final_stats=1 \
      >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ -z "$execs" ]; then
      # A crash ends the run before the final stats: take the last progress line.
      execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    fi
  else
    tests/fuzz/target/release/fuzz-stable "$target" "$seconds" "$(seeds_for "$target")" \
      >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^executions: //p' "$log" | tail -n 1)
  fi
  if [ "$status" -ne 0 ]; then
    failed=1
    tail -n 40 "$log"
    summary+=("$target: ${execs:-?} executions, FINDING (exit $status), see tests/fuzz/artifacts/$target/")
  else
    summary+=("$target: ${execs:-?} executions in ${seconds}s, no findings")
  fi
done

echo
echo "== fuzz summary ($engine)"
printf '%s\n' "${summary[@]}"
exit "$failed"
