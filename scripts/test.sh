#!/usr/bin/env bash
# The whole test suite: installs what it needs (packages, the MiniLM test model), then runs every
# test in release mode (the tests stream a real 91 MB model; release also reuses setup's build).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/fetch-minilm.sh >/dev/null
cargo test --release --locked
