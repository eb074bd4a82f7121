#!/usr/bin/env bash
# Install the Debian packages the build and tests need (FFmpeg 5.1 libraries and headers, clang
# for bindgen, pkg-config, the ffmpeg/ffprobe binaries the tests call, python3-pip for the test
# model, python3-venv for scripts/test-venv.sh, chromium and chromium-driver for the gallery's browser
# tests in tests/serve.rs, postgresql for the job queue's tests in tests/queue.rs, which start a
# private cluster of their own; the package's own service is not used). Skips apt entirely when everything is there.
set -euo pipefail
packages=(pkg-config clang libclang-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev ffmpeg time python3 python3-pip python3-venv chromium chromium-driver postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3/pip may come from elsewhere (pyenv); only ask apt for them if there is no python3 at all.
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in
      python3|python3-pip) ;;
      # venv (ensurepip) may come with that python too.
      python3-venv) python3 -c 'import ensurepip, venv' 2>/dev/null || filtered+=("$p") ;;
      *) filtered+=("$p") ;;
    esac
  done
  missing=("${filtered[@]}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
