#!/bin/sh
# Data-parallel scaling of fashion_mlp on this machine (docs/distributed.md):
# one thread per rank, `mpirun -np 2` against one rank, alternating ROUNDS
# times, and the medians of the epoch time (the JSON `seconds` of epoch 2,
# training only; epoch 1 pays the page faults). Three one-rank baselines:
# the plain binary (nnc without --mpi: Adam fused into the weight-gradient
# kernels), the --mpi binary run alone, and the --mpi binary under
# `mpirun -np 1`. Then the test accuracy after EPOCHS epochs for SEEDS seeds
# on 1 and on 2 ranks. LeNet's epoch time too, for the cost model.
# Usage: sh bench/mpi.sh [ROUNDS] [EPOCHS] [SEEDS]   (from the repository root)
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-7}
epochs=${2:-5}
seeds=${3:-3}
sh scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader
build/nnc examples/fashion_mlp.nn -o "$out/plain"
build/nnc --mpi examples/fashion_mlp.nn -o "$out/mpi"
key() { sed -n "s/.*\"$1\": *\([0-9.eE+-]*\).*/\1/p" | tail -n 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
T="train --epochs 2 --threads 1 --json --quiet --no-save --no-log"
for r in $(seq "$rounds"); do
  "$out/plain" $T | key seconds >>"$out/plain.txt"
  "$out/mpi" $T | key seconds >>"$out/alone.txt"
  mpirun -np 1 --bind-to core "$out/mpi" $T | key seconds >>"$out/np1.txt"
  mpirun -np 2 --bind-to core "$out/mpi" $T | key seconds >>"$out/np2.txt"
done
p=$(median <"$out/plain.txt")
a=$(median <"$out/alone.txt")
n1=$(median <"$out/np1.txt")
n2=$(median <"$out/np2.txt")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d), load $(cut -d' ' -f1-3 /proc/loadavg); $(mpirun --version | head -n 1)"
echo
echo "| fashion_mlp, one epoch (60k), 1 thread per rank | median of $rounds, s | all rounds | 2 ranks faster by |"
echo "|---|---|---|---|"
row() { echo "| $1 | $2 | $(tr '\n' ' ' <"$3" | sed 's/ $//') | $4 |"; }
row "plain binary (no --mpi), 1 process" "$p" "$out/plain.txt" "$(ratio "$p" "$n2") x"
row "--mpi binary alone (no mpirun)" "$a" "$out/alone.txt" "$(ratio "$a" "$n2") x"
row "--mpi, mpirun -np 1" "$n1" "$out/np1.txt" "$(ratio "$n1" "$n2") x"
row "--mpi, mpirun -np 2" "$n2" "$out/np2.txt" ""
# LeNet (batch 64, momentum): the plain binary against 2 ranks, fewer rounds.
build/nnc examples/lenet.nn -o "$out/lenet"
build/nnc --mpi examples/lenet.nn -o "$out/lenet_mpi"
for r in $(seq "$(( (rounds + 1) / 2 ))"); do
  "$out/lenet" $T | key seconds >>"$out/l1.txt"
  mpirun -np 2 --bind-to core "$out/lenet_mpi" $T | key seconds >>"$out/l2.txt"
done
l1=$(median <"$out/l1.txt")
l2=$(median <"$out/l2.txt")
row "lenet: plain binary, 1 process" "$l1" "$out/l1.txt" "$(ratio "$l1" "$l2") x"
row "lenet: --mpi, mpirun -np 2" "$l2" "$out/l2.txt" ""
echo
echo "| test accuracy after $epochs epochs | 1 rank (plain) | 2 ranks |"
echo "|---|---|---|"
A="train --epochs $epochs --threads 1 --json --quiet --no-save --no-log"
for s in $(seq "$seeds"); do
  one=$("$out/plain" $A --seed "$s" | key test_accuracy)
  two=$(mpirun -np 2 --bind-to core "$out/mpi" $A --seed "$s" | key test_accuracy)
  echo "| seed $s | $one | $two |"
done
