#!/usr/bin/env bash
# Run the `header` fuzz target with libFuzzer on a stable toolchain (no cargo-fuzz, no
# nightly): SanitizerCoverage instrumentation through LLVM flags, applied to the target only
# (--target keeps build scripts uninstrumented). Usage: fuzz/run-stable.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=3 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
  cargo build --release --target "$target" --bin header
mkdir -p corpus/header
printf '\x40\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' > corpus/header/seed
"./target/$target/release/header" corpus/header -max_total_time="${1:-120}" -print_final_stats=1
