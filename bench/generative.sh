#!/bin/sh
# The generative examples against PyTorch (bench/generative.py: the same
# networks, optimizers and batches), on this machine.
#   sh bench/generative.sh speed [ROUNDS] [vae gan conv_vae]
#       one training epoch each, alternating nnc and PyTorch ROUNDS times:
#       medians (best) and their ratio, as a Markdown table
#   sh bench/generative.sh elbo [EPOCHS] [SEEDS]
#       examples/vae.nn for EPOCHS (10) epochs with seeds 1..SEEDS (3), nnc
#       and PyTorch: the test ELBO per image (nats) after the last epoch
#   sh bench/generative.sh gan [EPOCHS]
#       examples/gan.nn for EPOCHS (20) epochs: the per-epoch curves of
#       d_loss, d_acc and g_loss (nnc and PyTorch) and nnc's sample grid
#       (docs/gan-samples.png), plus the VAE's (docs/vae-samples.png)
# Both sides use every CPU (nnc's default --threads; PyTorch with Debian's
# OpenMP OpenBLAS and torch.set_num_threads(nproc)).
set -eu
cd "$(dirname "$0")/.."
mode=${1:-speed}
[ $# -gt 0 ] && shift
sh scripts/deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
root=$(pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
tt=$(nproc)
torch() {
  (cd "$root/bench" && LD_LIBRARY_PATH=$blas OMP_NUM_THREADS=$tt \
    /usr/bin/python3 generative.py "$@" --threads "$tt")
}
key() { sed -n "s/.*\"$1\": *\([0-9.eE+-]*\).*/\1/p" | tail -n 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
lowest() { sort -g | head -n 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

case $mode in
speed)
  rounds=${1:-3}
  [ $# -gt 0 ] && shift
  echo "| workload | nnc median of $rounds (best) | PyTorch median (best) | nnc / PyTorch, medians (best) |"
  echo "|---|---|---|---|"
  for w in ${*:-vae gan conv_vae}; do
    build/nnc "examples/$w.nn" -o "$out/$w"
    : >"$out/nnc.txt"
    : >"$out/torch.txt"
    for r in $(seq "$rounds"); do
      (cd "$out" && "./$w" train --epochs 1 --json --quiet --no-save) |
        key seconds >>"$out/nnc.txt"
      torch "$w" --epochs 1 | key seconds >>"$out/torch.txt"
    done
    n=$(median <"$out/nnc.txt")
    t=$(median <"$out/torch.txt")
    nb=$(lowest <"$out/nnc.txt")
    tb=$(lowest <"$out/torch.txt")
    echo "| $w epoch (s) | $(printf %.3f "$n") ($(printf %.3f "$nb")) | $(printf %.3f "$t") ($(printf %.3f "$tb")) | $(ratio "$n" "$t") ($(ratio "$nb" "$tb")) |"
  done
  ;;
elbo)
  epochs=${1:-10}
  seeds=${2:-3}
  build/nnc examples/vae.nn -o "$out/vae"
  echo "| seed | nnc test ELBO (nats/image) | PyTorch test ELBO | nnc / PyTorch |"
  echo "|---|---|---|---|"
  for s in $(seq "$seeds"); do
    n=$(cd "$out" && ./vae train --epochs "$epochs" --seed "$s" --json --quiet --no-save | key test_elbo)
    t=$(torch vae --epochs "$epochs" --seed "$s" | key test_elbo)
    echo "| $s | $(printf %.2f "$n") | $(printf %.2f "$t") | $(awk -v a="$n" -v b="$t" 'BEGIN {printf "%.4f", a / b}') |"
  done
  ;;
gan)
  epochs=${1:-20}
  build/nnc examples/gan.nn -o "$out/gan"
  build/nnc examples/vae.nn -o "$out/vae"
  (cd "$out" && ./gan train --epochs "$epochs" --json --quiet --save gan.safetensors >gan.json &&
    ./gan sample --load gan.safetensors -o "$root/docs/gan-samples.png" >/dev/null &&
    ./vae train --epochs 10 --json --quiet --save vae.safetensors >/dev/null &&
    ./vae sample --load vae.safetensors -o "$root/docs/vae-samples.png" >/dev/null)
  torch gan --epochs "$epochs" >"$out/torch_gan.json"
  echo "| epoch | nnc d_loss | d_acc | g_loss | PyTorch d_loss | d_acc | g_loss |"
  echo "|---|---|---|---|---|---|---|"
  for e in $(seq "$epochs"); do
    a=$(sed -n "${e}p" "$out/gan.json")
    b=$(sed -n "${e}p" "$out/torch_gan.json")
    printf '| %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n' "$e" \
      "$(echo "$a" | key d_loss)" "$(echo "$a" | key d_acc)" "$(echo "$a" | key g_loss)" \
      "$(echo "$b" | key d_loss)" "$(echo "$b" | key d_acc)" "$(echo "$b" | key g_loss)"
  done
  echo
  echo "samples: docs/gan-samples.png, docs/vae-samples.png"
  ;;
*)
  echo "usage: sh bench/generative.sh speed|elbo|gan [...]" >&2
  exit 2
  ;;
esac
