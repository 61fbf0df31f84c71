#!/bin/sh
# Divergence named: a run whose loss becomes infinite stops; with
# --check-numerics it names the first non-finite value (the primitive, its
# layer instance and the .nn line), keeps the last good checkpoint, and on a
# healthy run changes nothing (same weights bit for bit).
. "$(dirname "$0")/../lib.sh" "$@"
write() {  # write NAME LR EPOCHS
  cat >"$1.nn" <<NN
model m(x: f32[2]) -> f32[1] {
    return x |> dense(8) |> tanh |> dense(8) |> dense(8) |> dense(8) |> dense(1)
}
train m {
    data      = inline([[1, 2], [3, 4], [5, 6], [7, 8]], [[1], [2], [3], [4]])
    loss      = mse
    optimizer = sgd(lr = $2)
    batch     = 2
    epochs    = $3
}
NN
  "$NNC" "$1.nn" -o "$1"
}
write calm 1e-3 3
write diverge 1e15 5
./calm train --quiet --save m.safetensors >/dev/null
cp m.safetensors before.safetensors
expect_error 1 "loss is not finite at epoch 4, step 2; no weights were saved \(--check-numerics finds" \
  ./diverge train --quiet --load m.safetensors --save m.safetensors
cmp m.safetensors before.safetensors
expect_error 1 "diverge: the first non-finite value \(-?inf\) is element 0 of 'add' \(value %[0-9]+\) in dense_4 at diverge.nn:2:61, at epoch 4, step 2; no weights were saved" \
  ./diverge train --quiet --check-numerics --load m.safetensors --save m.safetensors
cmp m.safetensors before.safetensors
echo "ok: the divergence is named and the checkpoint survived"
# A learning rate so large that the update itself overflows.
write burst 1e38 1
expect_error 1 "the first non-finite value \(-?inf\) is in parameter 'dense_[0-9]\.[Wb]' after the optimizer's update, at epoch 1, step 1" \
  ./burst train --quiet --no-save --check-numerics
# Checking changes nothing on a healthy run.
./calm train --quiet --save a.safetensors >/dev/null
./calm train --quiet --check-numerics --save b.safetensors >/dev/null
cmp a.safetensors b.safetensors
echo "ok: --check-numerics trains to the same weights"
expect_error 2 "option '--check-numerics' does not apply to 'eval'" ./calm eval --check-numerics
