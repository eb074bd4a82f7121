#!/usr/bin/env bash
# Run a fuzz target (default `header`; also `read_header`, `reel_envelope`) with libFuzzer on a stable toolchain (no cargo-fuzz, no
# nightly): SanitizerCoverage instrumentation through LLVM flags, applied to the target only
# (--target keeps build scripts uninstrumented). Usage: fuzz/run-stable.sh [SECONDS] [TARGET]
set -euo pipefail
cd "$(dirname "$0")"
target=x86_64-unknown-linux-gnu
bin="${2:-header}"
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=3 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
  cargo build --release --target "$target" --bin "$bin"
mkdir -p "corpus/$bin"
printf '\x36\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}\x00\x00\x00\x00\x00\x00\x00\x00' > "corpus/$bin/seed"
"./target/$target/release/$bin" "corpus/$bin" -max_total_time="${1:-120}" -print_final_stats=1
