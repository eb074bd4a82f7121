#!/usr/bin/env bash
# End-to-end benchmarks of the release binary, warm page cache, printed as Markdown tables:
#
# 1. encode of the real all-MiniLM-L6-v2 (F32, and F16/BF16 copies), an all-mpnet-base-v2-
#    shaped model (F32, 109 M params) and a LLaMA-shaped 1.1 B-parameter model (F16 and BF16),
#    in u16 and lossless, chunk (8192) and batch: wall time, params/s, peak RSS
#    (/usr/bin/time -v), reel bytes / raw tensor bytes, registry bytes and bytes per frame;
# 2. decode of each reel: wall time and peak RSS;
# 3. `list` and `stats` on a store holding 100 entries the size of the 1.1 B model's; one more
#    encode and a name lookup on a store of 10,000 entries;
# 4. with --zipnn: ZipNN's ratios on MiniLM's tensors beside ours (installs zipnn and torch
#    into target/bench-venv on request only; never in setup, tests or CI).
#
# The synthetic models are generated (examples/synth_model.rs) into target/bench-data, never
# committed. Usage: scripts/bench.sh [--quick] [--zipnn]   (--quick: MiniLM and mpnet only)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0; zipnn=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --zipnn) zipnn=1 ;;
    *) echo "usage: scripts/bench.sh [--quick] [--zipnn]" >&2; exit 2 ;;
  esac
done
cargo build --release --locked --quiet --bin weightreel --example synth_model --example convert_dtype
wr=./target/release/weightreel
data=target/bench-data
mkdir -p "$data"
minilm="$(bash scripts/fetch-minilm.sh)"

# --- the models ---------------------------------------------------------------------------
make_copy() { # dtype
  local out="$data/minilm-$1"
  if [ ! -s "$out/model.safetensors" ]; then
    mkdir -p "$out"
    ./target/release/examples/convert_dtype "$minilm/model.safetensors" "$out/model.safetensors" "$1"
    cp "$minilm/config.json" "$out/"
  fi
  echo "$out"
}
make_synth() { # name, args...
  local out="$data/$1"; shift
  [ -s "$out/model.safetensors" ] || ./target/release/examples/synth_model "$out" "$@" >&2
  echo "$out"
}
models=("MiniLM F32:$minilm" "MiniLM F16:$(make_copy f16)" "MiniLM BF16:$(make_copy bf16)"
        "mpnet-shaped F32:$(make_synth mpnet --arch mpnet)")
if [ "$quick" = 0 ]; then
  models+=("LLaMA-1.1B F16:$(make_synth llama-f16 --dtype f16)" "LLaMA-1.1B BF16:$(make_synth llama-bf16 --dtype bf16)")
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
json() { python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(eval(sys.argv[2]))" "$@"; }
rss_mib() { awk -F': ' '/Maximum resident/ {printf "%.1f", $2/1024}' "$1"; }
wall() { awk -F': ' '/Elapsed \(wall/ {print $2}' "$1"; }
cpu() { awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$1"; }

echo "## Encode and decode"
echo
echo "| model | encode | params | wall | CPU (user+sys) | params/s | peak RSS | reel ÷ raw | registry | bytes/frame | decode wall | decode peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for entry in "${models[@]}"; do
  label="${entry%%:*}"; dir="${entry#*:}"
  raw=$(python3 - "$dir/model.safetensors" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
print(sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in h.items() if k != "__metadata__"))
PY
)
  cat "$dir/model.safetensors" > /dev/null   # warm the page cache
  for mode in u16 lossless; do
    for method in chunk batch; do
      store="$tmp/store"; rm -rf "$store"
      args=(encode "$dir" --mode "$mode" --store "$store" --quiet --json)
      [ "$method" = chunk ] && args+=(--chunk-encoding --chunk-size 8192)
      /usr/bin/time -v "$wr" "${args[@]}" > "$tmp/out.json" 2> "$tmp/time.txt" || { echo "| $label | $mode $method | failed: $(tail -1 "$tmp/time.txt") |"; continue; }
      params=$(json "$tmp/out.json" "d[0]['entry']['totals']['params']")
      frames=$(json "$tmp/out.json" "d[0]['entry']['totals']['frames']")
      reel=$(json "$tmp/out.json" "d[0]['reel']")
      reel_bytes=$(stat -c %s "$reel")
      python3 -c "import sqlite3,sys;c=sqlite3.connect(sys.argv[1]);c.execute('PRAGMA wal_checkpoint(TRUNCATE)');c.close()" "$store/registry.sqlite"
      reg=$(stat -c %s "$store/registry.sqlite")
      /usr/bin/time -v "$wr" decode "$reel" --out "$tmp/back.safetensors" --json > /dev/null 2> "$tmp/dtime.txt" || true
      python3 - "$label" "$mode $method" "$params" "$(wall "$tmp/time.txt")" "$(cpu "$tmp/time.txt")" "$(rss_mib "$tmp/time.txt")" "$reel_bytes" "$raw" "$reg" "$frames" "$(wall "$tmp/dtime.txt")" "$(rss_mib "$tmp/dtime.txt")" <<'PY'
import sys
label, how, params, wall, cpu, rss, reel, raw, reg, frames, dwall, drss = sys.argv[1:]
def secs(w):
    parts = [float(p) for p in w.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
params, reel, raw, reg, frames = int(params), int(reel), int(raw), int(reg), int(frames)
print(f"| {label} | {how} | {params:,} | {wall} | {cpu} s | {params / secs(wall) / 1e6:.1f} M | {rss} MiB | {reel / raw:.3f} | {reg / 1e6:.2f} MB | {reg / frames:.0f} | {dwall} | {drss} MiB |")
PY
      rm -f "$tmp/back.safetensors"
      if [ "$label" = "LLaMA-1.1B F16" ] && [ "$mode $method" = "u16 chunk" ]; then
        cp -r "$store" "$tmp/store-1b"
      fi
    done
  done
done

# --- the guide's commands on a local file ---------------------------------------------------
echo
echo "## The guide's commands on the local MiniLM (each a whole process)"
echo
echo "| command | wall | peak RSS |"
echo "|---|---|---|"
for cmd in "--max-params 50000 --chunk-size 5000" "--max-params 100000 --chunk-size 10000" \
           "--layers attention mlp --max-params 40000" "--chunk-encoding --chunk-size 8000 --max-params 40000"; do
  rm -rf "$tmp/guide"
  # shellcheck disable=SC2086
  /usr/bin/time -v "$wr" --model "$minilm" --stream $cmd --storage-dir "$tmp/guide" --quiet > /dev/null 2> "$tmp/time.txt"
  echo "| \`--model MiniLM --stream $cmd\` | $(wall "$tmp/time.txt") | $(rss_mib "$tmp/time.txt") MiB |"
done

# --- list and stats on 100 entries of the 1.1 B model's size -------------------------------
if [ -d "$tmp/store-1b" ]; then
  echo
  echo "## Registry of 100 LLaMA-1.1B-sized entries"
  echo
  python3 - "$tmp/store-1b/registry.sqlite" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
cols = [r[1] for r in c.execute("PRAGMA table_info(models)") if r[1] != "id"]
fcols = [r[1] for r in c.execute("PRAGMA table_info(frames)") if r[1] != "model_id"]
for i in range(1, 100):
    sel = ", ".join("name || '-copy-%d'" % i if n == "name" else n for n in cols)
    c.execute(f"INSERT INTO models ({', '.join(cols)}) SELECT {sel} FROM models WHERE id = 1")
    new = c.execute("SELECT last_insert_rowid()").fetchone()[0]
    c.execute(f"INSERT INTO frames (model_id, {', '.join(fcols)}) SELECT {new}, {', '.join(fcols)} FROM frames WHERE model_id = 1")
c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
  python3 - "$wr" "$tmp/store-1b" <<'PY'
import os, subprocess, sys, time
wr, store = sys.argv[1:]
size = os.path.getsize(os.path.join(store, "registry.sqlite"))
print("| command | best of 10 | registry |")
print("|---|---|---|")
for cmd in (["list"], ["stats"], ["list", "--json"]):
    best = 1e9
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run([wr, *cmd, "--store", store], check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t)
    print(f"| weightreel {' '.join(cmd)} | {best * 1e3:.0f} ms | {size / 1e6:.0f} MB |")
PY
fi

# --- a store of 10,000 entries: what one more encode and a name lookup cost -----------------
echo
echo "## A store of 10,000 entries (MiniLM, --max-params 20000)"
echo
rm -rf "$tmp/store-10k"
"$wr" encode "$minilm" --store "$tmp/store-10k" --max-params 20000 -q > /dev/null
python3 - "$tmp/store-10k/registry.sqlite" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
cols = [r[1] for r in c.execute("PRAGMA table_info(models)") if r[1] != "id"]
def sel(n):
    if n == "name":
        return "name || '-' || ?1"
    if n == "reel_file":
        return "replace(reel_file, '.mkv', '-' || ?1 || '.mkv')"
    return n
q = f"INSERT INTO models ({', '.join(cols)}) SELECT {', '.join(map(sel, cols))} FROM models WHERE id = 1"
for i in range(9999):
    c.execute(q, (str(i),))
c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
python3 - "$wr" "$tmp/store-10k" "$minilm" <<'PY'
import subprocess, sys, time
wr, store, minilm = sys.argv[1:]
def best(args, runs=5):
    b = 1e9
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([wr, *args], check=True, stdout=subprocess.DEVNULL)
        b = min(b, time.perf_counter() - t)
    return b
print("| command (10,000 entries) | best of 5 |")
print("|---|---|")
print(f"| weightreel show all-MiniLM-L6-v2 (a name lookup) | {best(['show', 'all-MiniLM-L6-v2', '--store', store]) * 1e3:.0f} ms |")
print(f"| weightreel list | {best(['list', '--store', store]) * 1e3:.0f} ms |")
print(f"| weightreel encode MiniLM --max-params 30000 | {best(['encode', minilm, '--store', store, '--max-params', '30000', '-q']) * 1e3:.0f} ms |")
PY

# --- ZipNN side by side (on request) --------------------------------------------------------
if [ "$zipnn" = 1 ]; then
  venv=target/bench-venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -c "import zipnn" 2>/dev/null || "$venv/bin/pip" install --quiet zipnn==0.5.4 numpy
  echo
  echo "## ZipNN 0.5.4 (numpy API) on MiniLM's float tensors"
  echo
  "$venv/bin/python" - "$minilm/model.safetensors" "$data/minilm-f16/model.safetensors" "$data/minilm-bf16/model.safetensors" <<'PY'
import json, struct, sys, time
import numpy as np
from zipnn import ZipNN
print("| dtype | ZipNN ratio | MB/s | round trip |")
print("|---|---|---|---|")
for path, name in zip(sys.argv[1:], ["F32", "F16", "BF16"]):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    raw = comp = 0; secs = 0.0; exact = True
    for k, v in header.items():
        if k == "__metadata__" or v["dtype"] not in ("F32", "F16", "BF16"):
            continue
        a, b = v["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=np.float32 if v["dtype"] == "F32" else np.uint16)
        z = ZipNN(bytearray_dtype="float32" if v["dtype"] == "F32" else ("float16" if v["dtype"] == "F16" else "bfloat16"), input_format="numpy")
        t = time.perf_counter(); c = z.compress(arr); secs += time.perf_counter() - t
        exact &= np.array_equal(z.decompress(c).view(arr.dtype), arr)
        raw += b - a; comp += len(c)
    print(f"| {name} | {comp / raw:.3f} | {raw / secs / 1e6:.0f} | {'bit-exact' if exact else 'NOT exact'} |")
PY
fi
