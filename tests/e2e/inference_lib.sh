#!/bin/sh
# nnc --emit=lib: a static library and model.h. examples/classify.c, built
# with the system cc, gives the same classes as `predict` on the 10k test
# images, from a weights file and from weights embedded with --embed; two
# contexts run concurrently on two threads give the single-context results;
# a bad weights file is an error message, not a crash.
. "$(dirname "$0")/../lib.sh" "$@"
compile fashion_mlp
./fashion_mlp train --limit 3000 --epochs 1 --quiet --save w.safetensors >/dev/null
"$NNC" --emit=lib "$ROOT/examples/fashion_mlp.nn" -o libmodel.a
test -f model.h && grep -q "model_create" model.h && echo "ok: model.h"
LINK=$("$NNC" --link-flags)
# shellcheck disable=SC2086
cc -O2 -Wall -Wextra -Werror "$ROOT/examples/classify.c" -I. libmodel.a $LINK -o classify
images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
./classify w.safetensors "$images" >c.txt
./fashion_mlp predict --load w.safetensors "$images" | cut -d, -f1 >p.txt
check "$(wc -l <c.txt)" ">=" 10000 "classify printed a class per image"
cmp c.txt p.txt
echo "ok: classify and predict agree on all $(wc -l <p.txt) test images"

mkdir emb
"$NNC" --emit=lib "$ROOT/examples/fashion_mlp.nn" -o emb/libmodel.a --embed w.safetensors
grep -q "MODEL_HAS_EMBEDDED_WEIGHTS 1" emb/model.h
# shellcheck disable=SC2086
cc -O2 "$ROOT/examples/classify.c" -Iemb emb/libmodel.a $LINK -o classify_emb
./classify_emb - "$images" | cmp - p.txt
echo "ok: embedded weights give the same classes"

# shellcheck disable=SC2086
cc -O2 -Wall -Wextra -Werror "$ROOT/tests/e2e/lib_threads.c" -I. libmodel.a $LINK -o lib_threads
./lib_threads w.safetensors

expect_error 1 "w.bad: not a safetensors file" sh -c "printf 'junk' >w.bad && ./classify w.bad $images"
expect_error 1 "no weights" ./classify - "$images"
