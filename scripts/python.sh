#!/usr/bin/env bash
# Build the Python package `weightreel` (PyO3 + maturin: one abi3 wheel for CPython 3.9+, into
# target/wheels) and install it into the virtualenv VENV (created if missing) with numpy, its
# only runtime dependency. `--test` also installs pytest.
#
#   scripts/python.sh VENV [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:?usage: scripts/python.sh VENV [--test]}
extra=()
if [ "${2:-}" = "--test" ]; then extra=(pytest); fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.5,<2" numpy "${extra[@]}"
rm -f target/wheels/weightreel-*.whl
# The wheel links the system FFmpeg: built for this machine, not repaired for manylinux.
"$venv/bin/maturin" build --release --locked -q --auditwheel skip --compatibility linux -m python/Cargo.toml -o target/wheels >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/weightreel-*.whl
echo "$venv/bin/python"
