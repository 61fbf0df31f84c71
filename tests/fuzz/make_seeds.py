#!/usr/bin/env python3
# make_seeds.py — writes the reader fuzz targets' seed inputs into seeds/:
# small valid IDX, CSV, NPY and safetensors files behind the mode byte and
# the two length bytes that fuzz_util.h reads. Run once; the output is
# committed (python3 is not needed to fuzz).
import gzip, json, os, struct

here = os.path.dirname(os.path.abspath(__file__))

def put(target, name, mode, a, b=b""):
    d = os.path.join(here, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes([mode]) + struct.pack("<H", len(a)) + a + b)

def idx(dims, data):
    return b"\0\0\x08" + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)

images = idx([5, 2, 2], range(20))
labels = idx([5], [0, 1, 2, 1, 0])
put("idx", "train", 0, images, labels)
put("idx", "train-gz", 3, images, labels)           # both compressed by the target
put("idx", "train-gzfile", 0, gzip.compress(images), gzip.compress(labels))
put("idx", "classes", 16, images, idx([5], [1, 7, 7, 1, 3]))
put("idx", "images-only", 2 << 5 | 3 << 2, images)   # the 4 -> 4 model
put("idx", "predict", 3 << 5, images)

csv = b"a,b,c,d,label\n1,2,3,4,0\n0.5,-1,2e3,4,2\n\n1,1,1,1,1\r\n"
put("csv", "labels", 0, csv)
put("csv", "gz", 1, csv)
put("csv", "onehot", 0, b"1,2,3,4,1,0,0\n5,6,7,8,0,0,1\n")
put("csv", "classes", 8, b"1,2,3,4,2\n5,6,7,8,0\n")
put("csv", "predict", 16, b"1,2,3,4\n5,6,7,8\n")
put("csv", "scalar", 1 << 1, b"0.5,1\n0.25,0\n")

def npy(descr, shape, payload):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join("%d, " % s for s in shape) if len(shape) == 1 else ", ".join(map(str, shape)))
    h = h.encode()
    pad = 64 - (10 + len(h) + 1) % 64
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h) + pad + 1) + h + b" " * pad + b"\n" + payload

xf = npy("<f4", [3, 4], struct.pack("<12f", *range(12)))
yi = npy("<i8", [3], struct.pack("<3q", 0, 2, 1))
put("npy", "f4-i8", 0, xf, yi)
put("npy", "gz", 3, xf, yi)
put("npy", "u1-f8", 0, npy("|u1", [2, 2, 2], bytes(range(8))), npy("<f8", [2, 3], struct.pack("<6d", 1, 0, 0, 0, 0, 1)))
put("npy", "i4", 16, npy("<i4", [2, 4], struct.pack("<8i", *range(8))), npy("<i4", [2], struct.pack("<2i", 1, 2)))
put("npy", "predict", 32, xf)

def st(tensors, meta):
    hdr, data, off = {"__metadata__": meta}, b"", 0
    for name, shape, vals in tensors:
        raw = struct.pack("<%df" % len(vals), *vals)
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data

W = ("dense_1.W", [3, 2], [0.5, -1, 2, 0.25, 3, 1])
b = ("dense_1.b", [2], [0.1, 0.2])
put("safetensors", "params", 0, st([W, b], {"format": "pt", "model": "fuzz", "epoch": "1"}))
state = [("optimizer.%d.%s" % (k, n), s, v) for k in range(2) for n, s, v in (W, b)]
put("safetensors", "state", 1, st([W, b] + state, {"format": "pt", "model": "fuzz", "epoch": "2", "step": "10", "epoch_examples": "3"}))
