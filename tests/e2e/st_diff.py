#!/usr/bin/env python3
# st_diff.py A.safetensors B.safetensors — the largest difference between
# the f32 tensors two checkpoints share, relative to each tensor's largest
# magnitude in B (max|a - b| / max|b|), and the tensor it is in. Standard
# library only (the tests run without numpy). Used by tests/e2e/mpi.sh.
import json
import struct
import sys


def tensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    head = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in head.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        lo, hi = t["data_offsets"]
        out[name] = struct.unpack("<%df" % ((hi - lo) // 4),
                                  data[base + lo:base + hi])
    return out


a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
if set(a) != set(b):
    sys.exit("st_diff: the files hold different tensors")
worst, where = 0.0, "-"
for name in sorted(b):
    scale = max(abs(v) for v in b[name]) if b[name] else 0.0
    d = max((abs(x - y) for x, y in zip(a[name], b[name])), default=0.0)
    rel = d / scale if scale > 0 else d
    if rel > worst:
        worst, where = rel, name
print("%.3g %s" % (worst, where))
