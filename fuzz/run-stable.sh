#!/usr/bin/env bash
# Run a fuzz target (default `header`; also `read_header`, `reel_envelope`, `pickle`, `gguf`) with libFuzzer on a stable toolchain (no cargo-fuzz, no
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
case "$bin" in
  pickle) # an OrderedDict of one tensor, as torch.save writes it (protocol 2)
    printf '\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x000q\x06X\x03\x00\x00\x00cpuq\x07K\x06tq\x08QK\x00K\x02K\x03\x86q\tK\x03K\x01\x86q\n\x89h\x00)Rq\x0btq\x0cRq\rs.' > "corpus/$bin/seed" ;;
  gguf) # version 3, one metadata string, one F32 tensor of 2 values
    printf 'GGUF\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x14\x00\x00\x00\x00\x00\x00\x00general.architecture\x08\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00llama\x01\x00\x00\x00\x00\x00\x00\x00w\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' > "corpus/$bin/seed" ;;
  *) printf '\x36\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}\x00\x00\x00\x00\x00\x00\x00\x00' > "corpus/$bin/seed" ;;
esac
"./target/$target/release/$bin" "corpus/$bin" -max_total_time="${1:-120}" -print_final_stats=1
