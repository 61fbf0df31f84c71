#!/bin/sh
# Test accuracy after EPOCHS epochs (default 5) of examples/lstm_fashion.nn
# (and gru_fashion.nn with --gru) for seeds 1..SEEDS (default 3), and of
# PyTorch's same network (bench/torch_ref.py: nn.LSTM / nn.GRU, Adam 1e-3,
# batch 128) for the same seeds; then the medians. Also char_lstm's test
# loss (nats per byte) per epoch and a sample.
# Usage: sh bench/accuracy_rnn.sh [EPOCHS] [SEEDS] [--gru] [--char]
set -eu
cd "$(dirname "$0")/.."
epochs=${1:-5}
seeds=${2:-3}
model=lstm_fashion
char=0
for a in "$@"; do
  [ "$a" = --gru ] && model=gru_fashion
  [ "$a" = --char ] && char=1
done
sh scripts/deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
key() { sed -n "s/.*\"$1\": *\([0-9.eE+-]*\).*/\1/p" | tail -n 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
build/nnc "examples/$model.nn" -o "$out/$model"
echo "| seed | nnc $model | PyTorch |"
echo "|---|---|---|"
: >"$out/n.txt"
: >"$out/t.txt"
for s in $(seq "$seeds"); do
  a=$("$out/$model" train --epochs "$epochs" --seed "$s" --json --quiet --no-save | key test_accuracy)
  b=$(LD_LIBRARY_PATH=$blas /usr/bin/python3 bench/torch_ref.py "$model" --epochs "$epochs" --seed "$s" | key test_accuracy)
  echo "$a" >>"$out/n.txt"
  echo "$b" >>"$out/t.txt"
  echo "| $s | $a | $b |"
done
echo "| median | $(median <"$out/n.txt") | $(median <"$out/t.txt") |"
if [ "$char" = 1 ]; then
  build/nnc examples/char_lstm.nn -o "$out/char_lstm"
  (cd "$out" && ./char_lstm train --quiet && ./char_lstm sample --length 400 --temperature 0.6)
fi
