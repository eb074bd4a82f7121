#!/usr/bin/env python3
"""Write the README's Families store: 1,000 two-tensor safetensors models (100 bases, each with
itself and 9 fine-tunes at 10% noise) into the current directory; then encode each:
  for f in m*.safetensors; do weightreel encode $f --store STORE --quiet; done
and time it: FAMILIES=1000 FAMILIES_STORE=STORE cargo bench --bench search -- 1000"""
import json
import random
import struct

def write(path, tensors):
    header = {}
    off = 0
    blobs = []
    for name, shape, vals in tensors:
        b = struct.pack(f"<{len(vals)}f", *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b); blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)
random.seed(1)
for fam in range(100):
    base = [[random.gauss(0, 0.02) for _ in range(64 * 64)], [random.gauss(0, 0.02) for _ in range(256)]]
    for k in range(10):
        vals = [[v + (random.gauss(0, 0.002) if k else 0) for v in t] for t in base]
        write(f"m{fam:03d}-{k}.safetensors", [("layers.0.attn.weight", [64, 64], vals[0]), ("layers.0.mlp.bias", [256], vals[1])])
