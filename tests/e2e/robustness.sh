#!/bin/sh
# Bad data, bad checkpoints and divergence end in clear errors, never crashes,
# and never destroy a checkpoint already saved.
. "$(dirname "$0")/../lib.sh" "$@"
compile softmax_regression
compile mlp_small

# A checkpoint of another model is refused with the tensor and both shapes.
./mlp_small train --limit 500 --epochs 1 --quiet --save small.safetensors >/dev/null
expect_error 1 "small.safetensors: .*(shape|missing)" ./softmax_regression eval --load small.safetensors

# A truncated checkpoint is refused.
head -c 100 small.safetensors >cut.safetensors
expect_error 1 "cut.safetensors" ./mlp_small eval --load cut.safetensors

# Malformed IDX files are found first through NNC_DATA.
mkdir -p data/fashion-mnist
printf 'not an idx file at all' | gzip >data/fashion-mnist/train-images-idx3-ubyte.gz
cp /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz data/fashion-mnist/
NNC_DATA=$TMP/data expect_error 1 "train-images-idx3-ubyte.gz" ./mlp_small train --epochs 1 --no-save
gzip -dc /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz | head -c 100000 | gzip >data/fashion-mnist/train-images-idx3-ubyte.gz
NNC_DATA=$TMP/data expect_error 1 "train-images-idx3-ubyte.gz" ./mlp_small train --epochs 1 --no-save

# A run that diverges stops with an error and keeps the last good checkpoint.
cat >diverge.nn <<'NN'
model m(x: f32[2]) -> f32[1] {
    return x |> dense(4) |> relu |> dense(1)
}
train m {
    data      = inline([[1, 2], [3, 4], [5, 6], [7, 8]], [[1], [2], [3], [4]])
    loss      = mse
    optimizer = sgd(lr = 1e30)
    batch     = 2
    epochs    = 50
}
NN
cat >calm.nn <<'NN'
model m(x: f32[2]) -> f32[1] {
    return x |> dense(4) |> relu |> dense(1)
}
train m {
    data      = inline([[1, 2], [3, 4], [5, 6], [7, 8]], [[1], [2], [3], [4]])
    loss      = mse
    optimizer = sgd(lr = 1e-3)
    batch     = 2
    epochs    = 2
}
NN
"$NNC" calm.nn -o calm
"$NNC" diverge.nn -o diverge
./calm train --quiet --save m.safetensors >/dev/null
cp m.safetensors before.safetensors
expect_error 1 "not finite" ./diverge train --load m.safetensors --save m.safetensors
cmp m.safetensors before.safetensors
echo "ok: the checkpoint survived the divergence"

# Resuming is exact: two epochs in one run, or one epoch, save, load and one
# more, give the same weights bit for bit (optimizer state and step restored).
./mlp_small train --limit 3000 --epochs 2 --quiet --save full.safetensors >/dev/null
./mlp_small train --limit 3000 --epochs 1 --quiet --save half.safetensors >/dev/null
./mlp_small train --limit 3000 --epochs 1 --quiet --load half.safetensors --save half.safetensors >/dev/null
cmp full.safetensors half.safetensors
echo "ok: a resumed run equals an uninterrupted one"
