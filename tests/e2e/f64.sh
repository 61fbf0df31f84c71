#!/bin/sh
# f64 models (examples with every f32 written f64): they train, their
# checkpoints are F64 safetensors that resume bit for bit, an f32
# checkpoint given to an f64 model (or the reverse) is an error naming the
# file, the f64 and f32 versions of a network train to nearly the same
# loss (LeNet; fashion_mlp_bn with its buffers and dropout draws),
# --check-numerics and eval/predict work, and an f64 inference
# library classifies as `predict` does. (tests/unit/f64_test.c compares
# f64 training with the interpreter to 1e-12.)
. "$(dirname "$0")/../lib.sh" "$@"
to64() { sed 's/f32\[/f64[/g' "$ROOT/examples/$1.nn" >"$1_64.nn"; }
to64 xor
"$NNC" xor_64.nn -o xor64
./xor64 train --json --quiet --save x64.safetensors >log64.json
check "$(json_last accuracy log64.json)" ">=" 1 "f64 xor training accuracy"
grep -q '"dtype":"F64"' x64.safetensors && ! grep -q '"dtype":"F32"' x64.safetensors
echo "ok: the f64 checkpoint holds F64 tensors only"
# Its values are doubles: a weight read as f8 is not a float widened.
hlen=$(od -A n -t u8 -N 8 x64.safetensors | tr -d ' ')
w=$(od -A n -v -t f8 -j $((8 + hlen)) -N 8 x64.safetensors | tr -d ' ')
check "$(awk -v w="$w" 'BEGIN { d = w * 16777216; print (d == int(d)) }')" "=" 0 "dense_1.W[0] ($w) has more than float precision"

# Resuming: 100 epochs at once equal 60, then 40 more from the checkpoint.
./xor64 train --epochs 100 --quiet --save full.safetensors >/dev/null
./xor64 train --epochs 60 --quiet --save half.safetensors >/dev/null
./xor64 train --epochs 40 --quiet --load half.safetensors --save half.safetensors >/dev/null 2>&1
cmp full.safetensors half.safetensors
echo "ok: the resumed f64 run equals the uninterrupted one"

# The element type of a checkpoint must be the model's.
compile xor
./xor train --epochs 5 --quiet --save x32.safetensors >/dev/null
expect_error 1 "x32.safetensors: tensor 'dense_1.W' has dtype F32; the model expects F64" \
  ./xor64 eval --load x32.safetensors
expect_error 1 "x64.safetensors: tensor 'dense_1.W' has dtype F64; the model expects F32" \
  ./xor eval --load x64.safetensors

# eval and predict; --check-numerics reads the f64 values right (no false
# alarm).
./xor64 eval --load x64.safetensors --json >eval.json
check "$(json_last train_accuracy eval.json)" ">=" 1 "f64 xor eval accuracy"
printf '0,0\n0,1\n1,0\n1,1\n' >in.csv
./xor64 predict --load x64.safetensors in.csv >pred.txt
cat pred.txt
awk -F, '{ d = $2 - ($1 == 1); if (d < 0) d = -d; if (d > 0.05) exit 1 }' pred.txt
./xor64 train --epochs 20 --quiet --check-numerics --no-save >/dev/null
echo "ok: f64 eval, predict and --check-numerics"

# LeNet on a slice in f64 and in f32 from the same seed: the same loss to
# float precision, far from chance.
compile lenet
to64 lenet
"$NNC" lenet_64.nn -o lenet64
./lenet train --limit 1000 --epochs 1 --json --quiet --no-save >l32.json
./lenet64 train --limit 1000 --epochs 1 --json --quiet --no-save >l64.json
a=$(json_last loss l32.json)
b=$(json_last loss l64.json)
check "$(awk -v a="$a" -v b="$b" 'BEGIN { d = (a - b) / a; print (d < 0 ? -d : d) }')" "<" 1e-4 "f64 LeNet's loss ($b) against f32's ($a)"
check "$(json_last test_accuracy l64.json)" ">" 0.25 "f64 LeNet test accuracy after 1000 images (chance: 0.1)"

# Batch norm and dropout in f64 (buffers, their updates, draws): the same
# loss as f32's to float noise (the draws are the same numbers); eval with
# the running statistics agrees at batch 1 and batch 1000.
compile fashion_mlp_bn
to64 fashion_mlp_bn
"$NNC" fashion_mlp_bn_64.nn -o bn64
./fashion_mlp_bn train --limit 2000 --epochs 1 --json --quiet --no-save >b32.json
./bn64 train --limit 2000 --epochs 1 --json --quiet --save bn64.safetensors >b64.json
a=$(json_last loss b32.json)
b=$(json_last loss b64.json)
check "$(awk -v a="$a" -v b="$b" 'BEGIN { d = (a - b) / a; print (d < 0 ? -d : d) }')" "<" 1e-4 "f64 fashion_mlp_bn's loss ($b) against f32's ($a)"
./bn64 eval --load bn64.safetensors --json --batch 1 >e1.json
./bn64 eval --load bn64.safetensors --json --batch 1000 >e1000.json
[ "$(json_last test_accuracy e1.json)" = "$(json_last test_accuracy e1000.json)" ]
check "$(json_last test_accuracy e1.json)" ">" 0.6 "f64 fashion_mlp_bn eval accuracy (batch 1 and 1000 agree)"

# A program of steps with draws and `sample` (the VAE) in f64: the same
# ELBO as f32's to float noise, and samples (floats) make a picture.
compile vae
to64 vae
"$NNC" vae_64.nn -o vae64
./vae train --limit 1000 --epochs 1 --json --quiet --no-save >v32.json
./vae64 train --limit 1000 --epochs 1 --json --quiet --save vae64.safetensors >v64.json
a=$(json_last elbo v32.json)
b=$(json_last elbo v64.json)
check "$(awk -v a="$a" -v b="$b" 'BEGIN { d = (a - b) / a; print (d < 0 ? -d : d) }')" "<" 1e-4 "f64 VAE's ELBO ($b) against f32's ($a)"
./vae64 sample --load vae64.safetensors --count 4 --out s64.png >/dev/null 2>&1
check "$(wc -c <s64.png)" ">" 1000 "f64 VAE samples as a PNG (bytes)"

# An f64 inference library: predictions are floats, as for f32 models.
to64 fashion_mlp
"$NNC" fashion_mlp_64.nn -o fm64
./fm64 train --limit 2000 --epochs 1 --quiet --save fm.safetensors >/dev/null
"$NNC" --emit=lib fashion_mlp_64.nn -o libmodel.a
LINK=$("$NNC" --link-flags)
# shellcheck disable=SC2086
cc -O2 -Wall -Wextra -Werror "$ROOT/examples/classify.c" -I. libmodel.a $LINK -o classify
images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
./classify fm.safetensors "$images" >c.txt
./fm64 predict --load fm.safetensors "$images" | cut -d, -f1 >p.txt
check "$(wc -l <c.txt)" ">=" 10000 "classify printed a class per image"
cmp c.txt p.txt
echo "ok: the f64 library and predict agree on all test images"
