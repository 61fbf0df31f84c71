#!/usr/bin/env python3
# make_corpus.py — writes the malformed-file corpus of this folder: small
# IDX, CSV, NPY and safetensors files that are each wrong in one way, for
# the models of tests/e2e/malformed.sh (inputs of 2 x 2 = 4 values, 3
# classes; a checkpoint of dense_1.W [4, 3] and dense_1.b [3] with adam's
# two states). cases.txt says how each is used and what its error must say.
# The output is committed; rerun only to add a case.
import gzip, json, os, struct

here = os.path.dirname(os.path.abspath(__file__))

def put(name, data):
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)

def gz(data):
    return gzip.compress(data, mtime=0)

def idx(dims, data, typ=8):
    return b"\0\0" + bytes([typ, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)

# good companions
images = idx([6, 2, 2], [(i * 37) % 256 for i in range(24)])
labels = idx([6], [0, 1, 2, 1, 0, 2])
put("good-images.idx", images)
put("good-labels.idx", labels)

# ---- IDX
put("idx-empty.idx", b"")
put("idx-short-header.idx", b"\0\0\x08")
put("idx-bad-magic.idx", b"\x01\x02\x08\x03" + images[4:])
put("idx-float-type.idx", idx([6, 2, 2], [0] * 96, typ=0x0D))
put("idx-no-dims.idx", b"\0\0\x08\0")
put("idx-short-dims.idx", b"\0\0\x08\x03\0\0\0\x06\0\0")
put("idx-truncated-data.idx", images[:-7])
put("idx-extra-data.idx", images + b"\x01\x02\x03")
put("idx-wrong-dims.idx", idx([6, 3, 3], [1] * 54))
put("idx-huge-dims.idx", b"\0\0\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
put("idx-count-mismatch.idx", idx([5], [0, 1, 2, 1, 0]))
put("idx-label-range.idx", idx([6], [0, 1, 2, 9, 0, 2]))
put("idx-labels-2d.idx", idx([6, 2], [0] * 12))
put("idx-zero-images.idx", idx([0, 2, 2], []))
put("idx-zero-labels.idx", idx([0], []))
put("idx-labels-truncated.idx", labels[:-2])
g = gz(images)
put("idx-gz-cut.idx.gz", g[: len(g) // 2])
bad = bytearray(g)
for i in range(12, len(bad) - 10, 3):
    bad[i] ^= 0x5A
put("idx-gz-corrupt.idx.gz", bytes(bad))
bad = bytearray(g)
bad[-8] ^= 0xFF  # the CRC-32 of the data
put("idx-gz-bad-crc.idx.gz", bytes(bad))
bad = bytearray(g)
bad[-1] ^= 0x01  # the length of the data
put("idx-gz-bad-length.idx.gz", bytes(bad))
put("idx-gz-header-only.idx.gz", g[:10])
gl = gz(labels)
put("idx-labels-gz-cut.idx.gz", gl[:-6])

# ---- CSV (4 inputs, then a class index 0..2)
rows = "1,2,3,4,0\n0.5,0.25,1,2,1\n3,2,1,0,2\n"
put("csv-empty.csv", b"")
put("csv-header-only.csv", b"a,b,c,d,label\n")
put("csv-short-row.csv", (rows + "1,2,3,0\n").encode())
put("csv-long-row.csv", (rows + "1,2,3,4,0,7\n").encode())
put("csv-text.csv", (rows + "1,two,3,4,0\n").encode())
put("csv-empty-field.csv", (rows + "1,,3,4,0\n").encode())
put("csv-nan.csv", (rows + "1,nan,3,4,0\n").encode())
put("csv-inf.csv", (rows + "1,2,inf,4,0\n").encode())
put("csv-huge.csv", (rows + "1,2,1e999,4,0\n").encode())
put("csv-label-range.csv", (rows + "1,2,3,4,5\n").encode())
put("csv-label-negative.csv", (rows + "1,2,3,4,-1\n").encode())
put("csv-label-fraction.csv", (rows + "1,2,3,4,1.5\n").encode())
put("csv-too-few-columns.csv", b"1,2,3\n4,5,6\n")
put("csv-binary.csv", bytes((i * 97 + 13) % 256 for i in range(300)))
put("csv-nul.csv", (rows + "1,2\x003,4,0\n").encode())
put("csv-gz-cut.csv.gz", gz((rows * 50).encode())[:-9])
put("csv-trailing-comma.csv", (rows + "1,2,3,4,0,\n").encode())

# ---- NPY (inputs [N, 4] or [N, 2, 2], labels [N])
def npy_header(d, major=1):
    h = d.encode()
    pre = 10 if major == 1 else 12
    pad = 64 - (pre + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    ln = struct.pack("<H", len(h)) if major == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([major, 0]) + ln + h

def npy(descr, shape, payload, fortran="False", major=1):
    sh = "(%s)" % ("".join("%d," % s for s in shape) if len(shape) == 1 else ", ".join(map(str, shape)))
    return npy_header("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, sh), major) + payload

xf = npy("<f4", [3, 4], struct.pack("<12f", *[i / 4 for i in range(12)]))
yl = npy("<i8", [3], struct.pack("<3q", 0, 2, 1))
put("good-x.npy", xf)
put("good-y.npy", yl)
put("npy-bad-magic.npy", b"\x93NUMPX" + xf[6:])
put("npy-short.npy", xf[:7])
put("npy-bad-version.npy", xf[:6] + b"\x04\x00" + xf[8:])
put("npy-complex.npy", npy("<c8", [3, 4], bytes(96)))
put("npy-big-endian.npy", npy(">f4", [3, 4], bytes(48)))
put("npy-object.npy", npy("|O", [3, 4], bytes(96)))
put("npy-fortran.npy", npy("<f4", [3, 4], bytes(48), fortran="True"))
put("npy-absurd-shape.npy", npy("<f4", [10 ** 18, 4], bytes(48)))
put("npy-overflow-shape.npy", npy("<f4", [2 ** 40, 2 ** 40, 2 ** 40], bytes(48)))
put("npy-negative-dim.npy", npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 4), }") + bytes(48))
put("npy-wrong-shape.npy", npy("<f4", [3, 5], bytes(60)))
put("npy-truncated-data.npy", xf[:-5])
put("npy-extra-data.npy", xf + b"\0\0\0\0")
put("npy-not-a-dict.npy", npy_header("['descr', '<f4']") + bytes(48))
put("npy-missing-shape.npy", npy_header("{'descr': '<f4', 'fortran_order': False, }") + bytes(48))
put("npy-header-cut.npy", xf[:10] + b"{'descr': '<f4', 'fortr")
put("npy-huge-header-len.npy", b"\x93NUMPY\x02\x00\xff\xff\xff\x7f{'descr'")
put("npy-count-mismatch.npy", npy("<i8", [2], struct.pack("<2q", 0, 1)))
put("npy-label-range.npy", npy("<i8", [3], struct.pack("<3q", 0, 7, 1)))
put("npy-nan.npy", npy("<f4", [3, 4], struct.pack("<12f", *([0.0] * 5 + [float("nan")] + [0.0] * 6))))
put("npy-scalar.npy", npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (), }") + bytes(4))
put("npy-gz-cut.npy.gz", gz(xf)[:-5])

# ---- safetensors (dense_1.W [4, 3], dense_1.b [3]; adam: optimizer.0/1.*)
def st_raw(hdr, data):
    h = hdr if isinstance(hdr, bytes) else json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data

def st(tensors, meta=None, extra=None):
    hdr = {"__metadata__": meta or {"format": "pt", "model": "m", "epoch": "1"}}
    data, off = b"", 0
    for t in tensors:
        name, shape = t[0], t[1]
        dtype = t[2] if len(t) > 2 else "F32"
        n = 1
        for s in shape:
            n *= s
        raw = struct.pack("<%df" % n, *[0.01 * i for i in range(n)])
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    if extra:
        extra(hdr)
    return st_raw(hdr, data)

W, B = ("dense_1.W", [4, 3]), ("dense_1.b", [3])
good = st([W, B])
put("good.safetensors", good)
put("st-empty.safetensors", b"")
put("st-short.safetensors", b"\x10\0\0\0\0")
put("st-huge-header-len.safetensors", struct.pack("<Q", 2 ** 63 + 5) + good[8:])
put("st-header-past-end.safetensors", struct.pack("<Q", len(good)) + good[8:])
put("st-not-json.safetensors", st_raw(b"[1, 2, 3]", b""))
put("st-json-cut.safetensors", st_raw(good[8:60], b""))
put("st-bad-escape.safetensors", st_raw(b'{"dense_1.\\x57":{}}', b""))
put("st-deep.safetensors", st_raw(b'{"dense_1.W":{"x":' + b"[" * 200 + b"]" * 200 + b"}}", b""))
def set_off(name, off):
    def f(h):
        h[name]["data_offsets"] = off
    return f
put("st-offsets-out-of-range.safetensors", st([W, B], extra=set_off("dense_1.b", [48, 4096])))
put("st-offsets-reversed.safetensors", st([W, B], extra=set_off("dense_1.b", [60, 48])))
put("st-overlap.safetensors", st([W, B], extra=set_off("dense_1.b", [0, 12])))
put("st-dtype-f16.safetensors", st([W, ("dense_1.b", [3], "F16")]))
put("st-wrong-shape.safetensors", st([("dense_1.W", [3, 4]), B]))
put("st-wrong-rank.safetensors", st([("dense_1.W", [12]), B]))
put("st-missing.safetensors", st([W]))
put("st-extra.safetensors", st([W, B, ("dense_2.W", [3, 3])]))
put("st-duplicate.safetensors", st_raw(good[8:8 + int.from_bytes(good[:8], "little")].rstrip()[:-1] + b',"dense_1.b":{"dtype":"F32","shape":[3],"data_offsets":[48,60]}}', good[8 + int.from_bytes(good[:8], "little"):]))
put("st-byte-count.safetensors", st([W, B], extra=set_off("dense_1.b", [48, 56])))
put("st-truncated-data.safetensors", good[:-10])
put("st-huge-dim.safetensors", st([W, B], extra=lambda h: h["dense_1.W"].update(shape=[10 ** 18, 3])))
put("st-bad-number.safetensors", st([W, B], extra=lambda h: h["dense_1.W"].update(shape=[4.5, 3])))
put("st-nan.safetensors", good[:-4] + struct.pack("<f", float("nan")))
put("st-text-after.safetensors", st_raw(good[8:8 + int.from_bytes(good[:8], "little")].rstrip() + b"{}", good[8 + int.from_bytes(good[:8], "little"):]))
put("st-partial-state.safetensors", st([W, B, ("optimizer.0.dense_1.W", [4, 3]), ("optimizer.0.dense_1.b", [3])], meta={"format": "pt", "model": "m", "epoch": "1", "step": "4"}))
