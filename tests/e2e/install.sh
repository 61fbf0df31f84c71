#!/bin/sh
# cmake --install into a temporary prefix; nnc run from there, with a copy of
# the example outside the source tree, compiles, links and trains, and builds
# an inference library; the prefix holds the runtime, stdlib and headers.
. "$(dirname "$0")/../lib.sh" "$@"
BUILD=$(dirname "$NNC")
cmake --install "$BUILD" --prefix "$TMP/prefix" >install.log
P="$TMP/prefix"
for f in bin/nnc lib/nnc/libnnrt.a share/nnc/stdlib/layers.nn include/nnc/nnrt.h \
         share/doc/nnc/nnc.md; do
  test -f "$P/$f" || { echo "FAIL: $f not installed"; cat install.log; exit 1; }
done
echo "ok: installed $(find "$P" -type f | wc -l) files"
mkdir work
cp "$ROOT/examples/fashion_mlp.nn" work/
cd work
"$P/bin/nnc" --version
"$P/bin/nnc" fashion_mlp.nn -o m
./m train --limit 2000 --epochs 1 --json --quiet >log.json
check "$(json_last test_accuracy log.json)" ">" 0.6 "a binary built from the prefix trains"
"$P/bin/nnc" --emit=lib fashion_mlp.nn -o libmodel.a
test -f model.h && echo "ok: --emit=lib from the prefix"
# The installed nnc reads the installed stdlib: a broken copy there is seen.
echo "this is not nn" >"$P/share/nnc/stdlib/layers.nn"
expect_error 1 "layers.nn" "$P/bin/nnc" fashion_mlp.nn -o m2
