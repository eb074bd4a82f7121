#!/usr/bin/env bash
# End-to-end benchmarks of the release binary on the real all-MiniLM-L6-v2 (warm page cache):
# wall time, params/s, peak RSS (/usr/bin/time -v) and reel size for the encode modes, and the
# guide's example commands (at most 100k params). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
wr=./target/release/weightreel
model="$(bash scripts/fetch-minilm.sh)"
raw=$(stat -c %s "$model/model.safetensors")
cat "$model/model.safetensors" > /dev/null   # warm the page cache
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() { # label, args...
  local label="$1"; shift
  local store="$tmp/store-$RANDOM"
  /usr/bin/time -v "$wr" "$@" --store "$store" --quiet --json > "$tmp/out.json" 2> "$tmp/time.txt"
  local secs rss bytes params
  secs=$(python3 -c "import json;print('%.2f'%json.load(open('$tmp/out.json'))[0]['entry']['totals']['encoding_secs'])")
  params=$(python3 -c "import json;print(json.load(open('$tmp/out.json'))[0]['entry']['totals']['params'])")
  bytes=$(python3 -c "import json;print(json.load(open('$tmp/out.json'))[0]['entry']['totals']['reel_bytes'])")
  rss=$(awk -F': ' '/Maximum resident/ {printf "%.1f", $2/1024}' "$tmp/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall/ {print $2}' "$tmp/time.txt")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$tmp/time.txt")
  python3 - "$label" "$secs" "$params" "$rss" "$bytes" "$raw" "$wall" "$cpu" <<'PY'
import sys
label, secs, params, rss, size, raw, wall, cpu = sys.argv[1:]
secs=float(secs); params=int(params); size=int(size); raw=int(raw)
print(f"| {label} | {params:,} | {wall} | {cpu} s | {params/secs/1e6:.1f} M | {rss} MiB | {size:,} | {size/raw:.3f} |")
PY
}

echo "| encode | params | wall | CPU (user+sys) | params/s | peak RSS | reel bytes | reel ÷ raw F32 |"
echo "|---|---|---|---|---|---|---|---|"
run "u16, chunk 8192" encode "$model" --chunk-encoding --chunk-size 8192
run "u16, batch" encode "$model"
run "lossless, chunk 8192" encode "$model" --chunk-encoding --chunk-size 8192 --mode lossless
run "lossless, batch" encode "$model" --mode lossless
run "u8, chunk 8192" encode "$model" --chunk-encoding --chunk-size 8192 --mode u8
run "guide: --max-params 50000 --chunk-size 5000" --model "$model" --stream --max-params 50000 --chunk-size 5000
run "guide: --max-params 100000 --chunk-size 10000" --model "$model" --stream --max-params 100000 --chunk-size 10000
run "guide: --layers attention mlp --max-params 40000" --model "$model" --stream --layers attention mlp --max-params 40000
run "guide: --chunk-encoding --chunk-size 8000 --max-params 40000" --model "$model" --stream --chunk-encoding --chunk-size 8000 --max-params 40000

# Lossless size by source dtype: MiniLM as F32 and as F16/BF16 copies (scripts/dtype-copy.py);
# reel bytes ÷ the bytes of the tensors in their own dtype.
tensor_bytes() { python3 -c "import struct,os,sys;f=open(sys.argv[1],'rb');n=struct.unpack('<Q',f.read(8))[0];print(os.path.getsize(sys.argv[1])-8-n)" "$1"; }
python3 scripts/dtype-copy.py "$model/model.safetensors" "$tmp/minilm-f16.safetensors" F16
python3 scripts/dtype-copy.py "$model/model.safetensors" "$tmp/minilm-bf16.safetensors" BF16
echo
echo "| lossless | dtype | tensor bytes | reel bytes | reel ÷ tensor bytes | wall | peak RSS |"
echo "|---|---|---|---|---|---|---|"
for pair in "F32:$model/model.safetensors" "F16:$tmp/minilm-f16.safetensors" "BF16:$tmp/minilm-bf16.safetensors"; do
  dtype="${pair%%:*}"; file="${pair#*:}"
  raw_t=$(tensor_bytes "$file")
  for layout in "chunk 8192" "batch"; do
    args=(encode "$file" --mode lossless)
    [[ "$layout" == batch ]] || args+=(--chunk-encoding --chunk-size 8192)
    store="$tmp/store-$RANDOM"
    /usr/bin/time -v "$wr" "${args[@]}" --store "$store" --quiet --json > "$tmp/out.json" 2> "$tmp/time.txt"
    bytes=$(python3 -c "import json;print(json.load(open('$tmp/out.json'))[0]['entry']['totals']['reel_bytes'])")
    rss=$(awk -F': ' '/Maximum resident/ {printf "%.1f", $2/1024}' "$tmp/time.txt")
    wall=$(awk -F': ' '/Elapsed \(wall/ {print $2}' "$tmp/time.txt")
    python3 -c "import sys;l,d,r,b,w,m=sys.argv[1:];print(f'| {l} | {d} | {int(r):,} | {int(b):,} | {int(b)/int(r):.3f} | {w} | {m} MiB |')" \
      "$layout" "$dtype" "$raw_t" "$bytes" "$wall" "$rss"
  done
done
