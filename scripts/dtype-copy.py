#!/usr/bin/env python3
"""Write a copy of a safetensors file with every F32 tensor converted to F16 or BF16 (round to
nearest even), for the lossless-size benchmark (scripts/bench.sh). Standard library only.

usage: dtype-copy.py SRC.safetensors OUT.safetensors F16|BF16
"""
import array
import json
import struct
import sys

src, out, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
if dtype not in ("F16", "BF16"):
    sys.exit(f"dtype-copy.py: invalid dtype '{dtype}' (expected F16, BF16)")
raw = open(src, "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8 : 8 + n])
data = raw[8 + n :]
meta = header.pop("__metadata__", None)
pieces, offset, new_header = [], 0, {}
for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    start, end = t["data_offsets"]
    blob = data[start:end]
    if t["dtype"] == "F32":
        if dtype == "F16":
            floats = array.array("f", blob)
            blob = struct.pack(f"<{len(floats)}e", *floats)
        else:
            words = array.array("I", blob)
            halves = array.array(
                "H", [(w + 0x7FFF + ((w >> 16) & 1)) >> 16 & 0xFFFF for w in words]
            )
            blob = halves.tobytes()
        t = dict(t, dtype=dtype)
    new_header[name] = dict(t, data_offsets=[offset, offset + len(blob)])
    pieces.append(blob)
    offset += len(blob)
if meta is not None:
    new_header["__metadata__"] = meta
text = json.dumps(new_header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for p in pieces:
        f.write(p)
