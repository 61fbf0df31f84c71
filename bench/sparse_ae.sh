#!/bin/sh
# The sparse autoencoder's "Done means" of issue #8: examples/
# sparse_autoencoder.nn against the same network without its penalty (the
# `|> sparsity(...)` stage removed), both trained EPOCHS epochs on the full
# Fashion-MNIST training set with the same seed; prints each one's mean
# code activation over the 10000 test images (read through an encoder
# model with the same parameters whose output is the code), its test MSE,
# the fraction of code values that are exactly 0, and the two ratios
# (activation: plain / sparse; MSE: sparse / plain).
# Usage: sh bench/sparse_ae.sh [EPOCHS] [SEED]   (from the repository root)
# PENALTY='sparsity(1e-2)' overrides the example's penalty stage,
# EXAMPLE=FILE.nn the example (a variant of it), NNC=PATH the compiler
# (default: build/nnc, built first).
set -eu
cd "$(dirname "$0")/.."
epochs=${1:-}
seed=${2:-1}
if [ -z "${NNC:-}" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j 2 >/dev/null
  NNC=build/nnc
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ex=${EXAMPLE:-examples/sparse_autoencoder.nn}
stage=$(sed -n 's/.*code = x |> dense([0-9]*) |> [a-z_]* \(|> [a-z_]*sparsity([^)]*)\).*/\1/p' "$ex")
[ -n "$stage" ] || { echo "no sparsity stage in $ex" >&2; exit 1; }
if [ -n "${PENALTY:-}" ]; then
  sed "s/$stage/|> $PENALTY/" "$ex" >"$out/sparse.nn"
else
  cp "$ex" "$out/sparse.nn"
fi
sed "s/ $stage//" "$ex" >"$out/plain.nn"
width=$(sed -n 's/.*code = x |> dense(\([0-9]*\)).*/\1/p' "$ex")
act=$(sed -n 's/.*code = x |> dense([0-9]*) |> \([a-z_]*\).*/\1/p' "$ex")
zeros=$(awk 'BEGIN { for (i = 0; i < 784; i++) printf "%s0", i ? "," : "" }')
cat >"$out/encoder.nn" <<NN
model encoder(x: f32[784]) -> f32[$width] {
    code = x |> dense($width) |> $act
    decoded = code |> dense(784)
    return code
}
train encoder {
    data      = inline([[$zeros]], [[0]], scale = 1/255)
    loss      = mse
    optimizer = sgd
}
NN
for m in sparse plain encoder; do "$NNC" "$out/$m.nn" -o "$out/$m"; done
images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
key() { sed -n "s/.*\"$1\": *\([0-9.eE+-]*\).*/\1/p" | tail -n 1; }
ep=${epochs:+--epochs $epochs}
for m in sparse plain; do
  # shellcheck disable=SC2086
  "$out/$m" train $ep --seed "$seed" --json --quiet --save "$out/$m.safetensors" >"$out/$m.json"
  mse=$(key test_loss <"$out/$m.json")
  "$out/encoder" predict --load "$out/$m.safetensors" "$images" >"$out/codes.csv"
  code=$(awk -F, '{ for (i = 2; i <= NF; i++) { s += $i; n++ } } END { printf "%.4f", s / n }' "$out/codes.csv")
  zeros=$(awk -F, '{ for (i = 2; i <= NF; i++) { z += $i == 0; n++ } } END { printf "%.2f", z / n }' "$out/codes.csv")
  echo "$m: mean code activation $code ($zeros of the codes exactly 0), test MSE $mse"
  eval "${m}_mse=$mse ${m}_code=$code"
done
awk -v sc="$sparse_code" -v pc="$plain_code" -v sm="$sparse_mse" -v pm="$plain_mse" \
  'BEGIN { printf "activation %.2fx lower, MSE %.3fx the plain one\n", pc / sc, sm / pm }'
