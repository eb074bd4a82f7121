#!/usr/bin/env bash
# The services the tests start on their own: an S3-compatible server for tests/objects.rs
# (s3s-fs, a small S3 server over a directory, built from crates.io into target/tools once).
# PostgreSQL comes from Debian's package (scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x target/tools/bin/s3s-fs ]; then
  echo "Installing s3s-fs 0.14.1 into target/tools (a few minutes, once)" >&2
  cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary --root target/tools >&2
fi
