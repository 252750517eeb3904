#!/usr/bin/env bash
# Fuzzes the wire format's decoding: runs each cargo-fuzz target of fuzz/ (envelope, request,
# reply) for SECONDS (default 20, CI's short run; `scripts/fuzz.sh 3600` is the long run). Each
# target's corpus is fuzz/corpus/<target>/ (not committed, kept between runs) plus the committed
# seeds in fuzz/seeds/<target>/. Installs cargo-fuzz if missing; the default (stable) toolchain
# builds the targets: without a sanitizer, cargo-fuzz needs no nightly.
# A crash or a failed check stops the run: its input is left in fuzz/artifacts/<target>/ and
# the script fails. See fuzz/README.md.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-20}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(envelope request reply)
fi

if ! cargo fuzz --version > /dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# No sanitizer: the crate has no unsafe code for AddressSanitizer to watch, and without it the
# build needs no nightly, takes half the time, and the targets run faster. Debug assertions
# (integer overflow included) stay on, as cargo-fuzz builds by default.
echo "== cargo fuzz build"
cargo fuzz build --sanitizer none

for target in "${targets[@]}"; do
  echo "== fuzz ${target}: ${seconds} s"
  mkdir -p "corpus/${target}" "artifacts/${target}"
  log="artifacts/${target}.log"
  if ! cargo fuzz run --sanitizer none "${target}" "corpus/${target}" "seeds/${target}" -- \
    -max_total_time="${seconds}" -timeout=10 -max_len=8192 -dict=json.dict \
    -print_final_stats=1 > "${log}" 2>&1; then
    tail -n 60 "${log}"
    echo "fuzz ${target} failed: the input is in fuzz/artifacts/${target}/, the log in fuzz/${log}"
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "${log}"
done
