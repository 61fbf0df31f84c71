#!/bin/sh
# train writes per-epoch metrics to a CSV beside its checkpoint (or --log
# FILE; a resumed run appends), and `plot` draws them as SVG: parsed back
# here, it must have two panels with axes, epoch ticks, and one polyline per
# series with a point per epoch placed where the CSV's values say.
. "$(dirname "$0")/../lib.sh" "$@"
compile fashion_mlp
./fashion_mlp train --limit 2000 --epochs 3 --quiet --json >/dev/null
test -f fashion_mlp.csv
head -n 1 fashion_mlp.csv | grep -q "^epoch,loss,accuracy,val_loss,val_accuracy,test_loss,test_accuracy,seconds$"
check "$(tail -n +2 fashion_mlp.csv | wc -l)" "=" 3 "a CSV row per epoch"
./fashion_mlp train --load fashion_mlp.safetensors --limit 2000 --epochs 1 --quiet >/dev/null
check "$(tail -n +2 fashion_mlp.csv | wc -l)" "=" 4 "a resumed run appends its epoch"
./fashion_mlp train --limit 2000 --epochs 2 --quiet --no-save --log other.csv >/dev/null
check "$(tail -n +2 other.csv | wc -l)" "=" 2 "--log FILE"
./fashion_mlp plot fashion_mlp.csv -o curves.svg
python3 - fashion_mlp.csv curves.svg <<'PY'
import csv, sys, xml.etree.ElementTree as ET
rows = list(csv.DictReader(open(sys.argv[1])))
ns = {"s": "http://www.w3.org/2000/svg"}
root = ET.parse(sys.argv[2]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
def by_id(i):
    e = root.find(".//*[@id='%s']" % i)
    assert e is not None, "no element " + i
    return e
for panel in ("loss", "accuracy"):
    by_id(panel + "-panel")
    for a in ("x", "y"):
        ax = by_id("%s-%s-axis" % (panel, a))
        assert ax.tag.endswith("line")
    ticks = [t.text for t in by_id(panel + "-panel").findall("s:text[@class='xtick']", ns)]
    assert ticks == [str(i) for i in range(1, len(rows) + 1)], ticks
    for series, col in (("train", panel), ("test", "test_" + panel)):
        pl = by_id("%s-%s" % (panel, series))
        pts = [tuple(map(float, p.split(","))) for p in pl.get("points").split()]
        vals = [float(r[col]) for r in rows]
        assert len(pts) == len(vals), (panel, series, len(pts))
        xs = [p[0] for p in pts]
        assert xs == sorted(xs) and len(set(xs)) == len(xs), xs
        # SVG y grows downwards: a larger value is drawn higher up.
        for i in range(len(vals)):
            for j in range(len(vals)):
                if vals[i] > vals[j] + 1e-9:
                    assert pts[i][1] < pts[j][1], (panel, series, vals, pts)
    assert root.find(".//*[@id='%s-val']" % panel) is None  # no validation split
print("ok: the SVG has both panels, axes, ticks and %d points per series" % len(rows))
PY
expect_error 1 "not a training log" ./fashion_mlp plot fashion_mlp.safetensors -o x.svg
expect_error 2 "plot needs a training log" ./fashion_mlp plot
