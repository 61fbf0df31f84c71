#!/bin/sh
# Times nnc against PyTorch on this machine, alternating the two ROUNDS
# times per workload, and prints the medians and their ratio as a Markdown
# table, then the machine's FMA ceiling and how close fashion_mlp gets to it.
# Usage: sh bench/run.sh [ROUNDS] [WORKLOAD...]   (from the repository root)
# Workloads:
#   fashion_mlp         one training epoch (784-256-128-10, Adam, batch 128)
#   fashion_mlp_bn      the same with batch norm and dropout after each hidden
#                       layer (not in the default list)
#   softmax_regression  one training epoch (784-10, SGD 0.1, batch 32)
#   mlp_small           one training epoch (784-32-10, SGD 0.1, batch 32)
#   lstm_fashion        one training epoch of examples/lstm_fashion.nn (an
#                       LSTM of 128 units over 28 rows of 28 pixels, Adam,
#                       batch 128) against nn.LSTM (not in the default list)
#   gru_fashion         the same with a GRU, against nn.GRU
#   infer               fashion_mlp on the 10k test images at batch 1000:
#                       samples/s of inference alone (nnc: `eval --json`,
#                       PyTorch: torch_ref.py --epochs 0)
#   clib                fashion_mlp through the C inference library
#                       (nnc --emit=lib, examples/classify.c --bench): images/s
#                       at batch 1 and at batch 256, each the median of 5
#                       passes, against torch_ref.py --infer-batch 1 / 256
# Both sides use every CPU (nnc's default --threads; PyTorch with Debian's
# OpenMP OpenBLAS and torch.set_num_threads(nproc)); TORCH_THREADS=N and
# NNC_THREADS=N override either. The machine is shared: compare only within
# one run, and prefer more rounds (PyTorch's OpenMP barriers degrade badly
# when another process takes a core).
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-5}
[ $# -gt 0 ] && shift
workloads=${*:-fashion_mlp softmax_regression mlp_small infer clib}
sh scripts/deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 -mavx512f -mfma -pthread bench/fma_peak.c -o "$out/fma_peak"
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
tt=${TORCH_THREADS:-$(nproc)}
nt=${NNC_THREADS:-$(nproc)}
torch() {
  LD_LIBRARY_PATH=$blas OMP_NUM_THREADS=$tt /usr/bin/python3 bench/torch_ref.py "$@" --threads "$tt"
}
key() { sed -n "s/.*\"$1\": *\([0-9.eE+-]*\).*/\1/p" | tail -n 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
lowest() { sort -g | head -n 1; }
highest() { sort -g | tail -n 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
# A table row for a throughput workload: medians (best rounds) of
# $out/nnc.txt and $out/torch.txt and their ratio.
throughput_row() {
  n=$(median <"$out/nnc.txt")
  t=$(median <"$out/torch.txt")
  nb=$(highest <"$out/nnc.txt")
  tb=$(highest <"$out/torch.txt")
  echo "| $1 | $(printf %.0f "$n") ($(printf %.0f "$nb")) | $(printf %.0f "$t") ($(printf %.0f "$tb")) | $(ratio "$n" "$t") x ($(ratio "$nb" "$tb") x) throughput |"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d), load $(cut -d' ' -f1-3 /proc/loadavg); nnc --threads $nt, PyTorch $tt threads"
echo
echo "| workload | nnc median of $rounds (best) | PyTorch median (best) | nnc / PyTorch, medians (best) |"
echo "|---|---|---|---|"
fm_seconds=""
rnn_lines=""
peak=$("$out/fma_peak" "$(nproc)" "$rounds")
for w in $workloads; do
  model=$w
  [ "$w" = infer ] || [ "$w" = clib ] && model=fashion_mlp
  build/nnc "examples/$model.nn" -o "$out/$model"
  : >"$out/nnc.txt"
  : >"$out/torch.txt"
  if [ "$w" = clib ]; then
    (cd "$out" && "./$model" train --epochs 1 --quiet --save w.safetensors >/dev/null)
    build/nnc --emit=lib "examples/$model.nn" -o "$out/libmodel.a"
    cc -O2 examples/classify.c -I"$out" "$out/libmodel.a" -lz -lm -lpthread -o "$out/classify"
    images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
    for b in 1 256; do
      : >"$out/nnc.txt"
      : >"$out/torch.txt"
      for r in $(seq "$rounds"); do
        # (the library's thread pool: one thread per CPU, like nnc's default)
        (cd "$out" && ./classify --bench w.safetensors "$images") |
          sed -n "s/^batch $b: \([0-9.]*\).*/\1/p" >>"$out/nnc.txt"
        torch "$model" --epochs 0 --infer-batch "$b" | key infer_samples_per_s >>"$out/torch.txt"
      done
      throughput_row "C library (classify.c) fashion_mlp, batch $b (images/s)"
    done
    continue
  fi
  if [ "$w" = infer ]; then
    (cd "$out" && "./$model" train --epochs 1 --quiet --save w.safetensors >/dev/null)
    for r in $(seq "$rounds"); do
      (cd "$out" && "./$model" eval --load w.safetensors --batch 1000 --json --threads "$nt") |
        key samples_per_s >>"$out/nnc.txt"
      torch "$model" --epochs 0 | key infer_samples_per_s >>"$out/torch.txt"
    done
    throughput_row "infer fashion_mlp, 10k at batch 1000 (samples/s)"
    continue
  fi
  for r in $(seq "$rounds"); do
    (cd "$out" && "./$model" train --epochs 1 --json --quiet --no-save --threads "$nt") |
      key seconds >>"$out/nnc.txt"
    torch "$model" --epochs 1 | key seconds >>"$out/torch.txt"
  done
  n=$(median <"$out/nnc.txt")
  t=$(median <"$out/torch.txt")
  nb=$(lowest <"$out/nnc.txt")
  tb=$(lowest <"$out/torch.txt")
  [ "$w" = fashion_mlp ] && fm_seconds=$n fm_best=$nb
  echo "| $w epoch (s) | $(printf %.4f "$n") ($(printf %.4f "$nb")) | $(printf %.3f "$t") ($(printf %.3f "$tb")) | $(ratio "$n" "$t") ($(ratio "$nb" "$tb")) |"
  # LSTM (GRU) 128 over 28 steps: forward x W and h U, backward the same
  # twice but for x's gradient: 12.6 (9.6) MFLOP per example, 60000 of them.
  case $w in
    lstm_fashion) gf=756 ;;
    gru_fashion) gf=567 ;;
    *) gf= ;;
  esac
  [ -n "$gf" ] && rnn_lines="$rnn_lines$(awk -v g="$gf" -v n="$n" -v t="$t" -v w="$w" 'BEGIN {
    printf "%s: %d GFLOP per epoch (matmuls): nnc %.1f GFLOP/s, PyTorch %.1f GFLOP/s (medians)", w, g, g / n, g / t }')
"
done
[ -n "$rnn_lines" ] && printf '\n%s' "$rnn_lines"

echo
# The ceiling is measured before and after the workloads; a ceiling is a
# best case, so the shares below use the best round of either.
peak2=$("$out/fma_peak" "$(nproc)" "$rounds")
best() { printf '%s\n%s\n' "$(echo "$peak" | key "$1")" "$(echo "$peak2" | key "$1")" | highest; }
p1=$(best best_1)
pall=$(best best_all)
echo "FMA ceiling (bench/fma_peak.c, 512-bit FMAs, $rounds rounds before and after): best $p1 GFLOP/s on 1 core, $pall GFLOP/s on $(nproc) (medians $(echo "$peak" | key gflops_1) / $(echo "$peak" | key gflops_all) before, $(echo "$peak2" | key gflops_1) / $(echo "$peak2" | key gflops_all) after)"
if [ -n "$fm_seconds" ]; then
  # 784-256-128-10 at 60000 examples: forward, weight gradients, and the
  # input gradients of layers 2 and 3 = 1,007,104 flops per example.
  for s in "$fm_seconds" "$fm_best"; do
    awk -v s="$s" -v p1="$p1" -v pa="$pall" -v n="$(nproc)" -v t="$nt" 'BEGIN {
      g = 60.4 / s
      printf "fashion_mlp: 60.4 GFLOP per epoch in %.4f s = %.0f GFLOP/s on %d thread(s): %.0f%% of the %d-core ceiling, %.0f%% of %d x the 1-core one\n", s, g, t, 100 * g / pa, n, 100 * g / (t * p1), t }'
  done
  rss=$( (cd "$out" && /usr/bin/time -f %M ./fashion_mlp train --epochs 1 --quiet --no-save) 2>&1 | tail -n 1)
  echo "fashion_mlp training peak RSS: $((rss / 1024)) MB"
fi
