#!/bin/sh
# Test accuracy after EPOCHS epochs (default 10) of examples/fashion_mlp.nn
# and examples/fashion_mlp_bn.nn for seeds 1..SEEDS (default 3), and of
# PyTorch's fashion_mlp_bn network (bench/torch_ref.py) for the same seeds.
# Usage: sh bench/accuracy_bn.sh [EPOCHS] [SEEDS]   (from the repository root)
set -eu
cd "$(dirname "$0")/.."
epochs=${1:-10}
seeds=${2:-3}
sh scripts/deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
key() { sed -n "s/.*\"$1\": *\([0-9.eE+-]*\).*/\1/p" | tail -n 1; }
for m in fashion_mlp fashion_mlp_bn; do
  build/nnc "examples/$m.nn" -o "$out/$m"
done
echo "| seed | nnc fashion_mlp | nnc fashion_mlp_bn | PyTorch fashion_mlp_bn |"
echo "|---|---|---|---|"
for s in $(seq "$seeds"); do
  a=$("$out/fashion_mlp" train --epochs "$epochs" --seed "$s" --json --quiet --no-save | key test_accuracy)
  b=$("$out/fashion_mlp_bn" train --epochs "$epochs" --seed "$s" --json --quiet --no-save | key test_accuracy)
  c=$(LD_LIBRARY_PATH=$blas /usr/bin/python3 bench/torch_ref.py fashion_mlp_bn --epochs "$epochs" --seed "$s" | key test_accuracy)
  echo "| $s | $a | $b | $c |"
done
