#!/bin/sh
# Test accuracy after EPOCHS epochs (default 5) of examples/lstm_fashion.nn
# (gru_fashion.nn with --gru) for seeds FIRST..LAST (default 1..3), and of
# PyTorch's same network (bench/torch_ref.py: nn.LSTM / nn.GRU, Adam 1e-3,
# batch 128) for the same seeds, alternating; then the medians of the test
# accuracies and of every training epoch's seconds (both sides print them)
# with their ratio and GFLOP/s. With --char, also char_lstm's test loss per
# epoch and a sample.
# Usage: sh bench/accuracy_rnn.sh [EPOCHS] [LAST] [FIRST] [--gru] [--char]
set -eu
cd "$(dirname "$0")/.."
epochs=${1:-5}
last=${2:-3}
first=${3:-1}
model=lstm_fashion
gflop=756  # per epoch: x W, h U forward; their weight and h gradients
char=0
for a in "$@"; do
  [ "$a" = --gru ] && model=gru_fashion gflop=567
  [ "$a" = --char ] && char=1
done
sh scripts/deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
all() { sed -n "s/.*\"$1\": *\([0-9.eE+-]*\).*/\1/p"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
build/nnc "examples/$model.nn" -o "$out/$model"
echo "machine: $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| seed | nnc $model test accuracy | PyTorch test accuracy | nnc epoch (s), median | PyTorch epoch (s), median |"
echo "|---|---|---|---|---|"
: >"$out/na.txt"; : >"$out/ta.txt"; : >"$out/ns.txt"; : >"$out/ts.txt"
for s in $(seq "$first" "$last"); do
  "$out/$model" train --epochs "$epochs" --seed "$s" --json --quiet --no-save >"$out/n.json"
  LD_LIBRARY_PATH=$blas /usr/bin/python3 bench/torch_ref.py "$model" --epochs "$epochs" --seed "$s" >"$out/t.json"
  a=$(all test_accuracy <"$out/n.json" | tail -n 1)
  b=$(all test_accuracy <"$out/t.json" | tail -n 1)
  echo "$a" >>"$out/na.txt"
  echo "$b" >>"$out/ta.txt"
  grep '"epoch"' "$out/n.json" | all seconds >>"$out/ns.txt"
  grep '"epoch"' "$out/t.json" | all seconds >>"$out/ts.txt"
  echo "| $s | $a | $b | $(grep '"epoch"' "$out/n.json" | all seconds | median) | $(all seconds <"$out/t.json" | median) |"
done
n=$(median <"$out/ns.txt")
t=$(median <"$out/ts.txt")
echo "| median | $(median <"$out/na.txt") | $(median <"$out/ta.txt") | $n | $t |"
awk -v n="$n" -v t="$t" -v g="$gflop" 'BEGIN {
  printf "epoch time nnc / PyTorch: %.2f; %d GFLOP per epoch: nnc %.1f GFLOP/s, PyTorch %.1f GFLOP/s\n", n / t, g, g / n, g / t }'
if [ "$char" = 1 ]; then
  build/nnc examples/char_lstm.nn -o "$out/char_lstm"
  (cd "$out" && ./char_lstm train --quiet && ./char_lstm sample --length 400 --temperature 0.6)
fi
