#!/bin/sh
# Times one training epoch of each workload through nnc and through PyTorch,
# alternating, ROUNDS times, and prints the medians and their ratio.
# Usage: sh bench/run.sh [ROUNDS] [WORKLOAD...]   (from the repository root)
# Workloads: fashion_mlp (Adam, batch 128), softmax_regression and mlp_small
# (SGD lr 0.1, batch 32). PyTorch runs with Debian's OpenMP OpenBLAS.
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-5}
[ $# -gt 0 ] && shift
workloads=${*:-fashion_mlp softmax_regression mlp_small}
sh scripts/deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
seconds() { sed -n 's/.*"seconds": *\([0-9.eE+-]*\).*/\1/p' | tail -n 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
echo "| workload | nnc epoch s (median of $rounds) | PyTorch epoch s | ratio nnc/PyTorch |"
echo "|---|---|---|---|"
for w in $workloads; do
  build/nnc "examples/$w.nn" -o "$out/$w"
  : >"$out/nnc.txt"
  : >"$out/torch.txt"
  for r in $(seq "$rounds"); do
    (cd "$out" && "./$w" train --epochs 1 --json --quiet --no-save) | seconds >>"$out/nnc.txt"
    LD_LIBRARY_PATH=$blas OMP_NUM_THREADS=$(nproc) /usr/bin/python3 bench/torch_ref.py "$w" --epochs 1 \
      | seconds >>"$out/torch.txt"
  done
  n=$(median <"$out/nnc.txt")
  t=$(median <"$out/torch.txt")
  echo "| $w | $n | $t | $(awk -v n="$n" -v t="$t" 'BEGIN {printf "%.2f", n / t}') |"
done
