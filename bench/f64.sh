#!/bin/sh
# Epoch time of f32 and f64 versions of the same examples (every f32[ of
# the file written f64[): fashion_mlp on the full training set and LeNet
# on 10000 images, ROUNDS rounds alternating the two, medians of the
# `seconds` each epoch reports, and the f64 / f32 ratio. Also the test
# accuracies, which agree to float noise.
# Usage: sh bench/f64.sh [ROUNDS]   (from the repository root; NNC=PATH
# skips building build/nnc)
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-3}
if [ -z "${NNC:-}" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j 2 >/dev/null
  NNC=build/nnc
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
key() { sed -n "s/.*\"$1\": *\([0-9.eE+-]*\).*/\1/p" | tail -n 1; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "| example | f32 epoch (s) | f64 epoch (s) | f64 / f32 | f32 test accuracy | f64 test accuracy |"
echo "|---|---|---|---|---|---|"
for ex in fashion_mlp:0 lenet:10000; do
  m=${ex%:*} limit=${ex#*:}
  lim=""
  [ "$limit" -gt 0 ] && lim="--limit $limit"
  cp "examples/$m.nn" "$out/${m}32.nn"
  sed 's/f32\[/f64[/g' "examples/$m.nn" >"$out/${m}64.nn"
  for d in 32 64; do "$NNC" "$out/$m$d.nn" -o "$out/$m$d"; done
  : >"$out/t32" && : >"$out/t64"
  for _ in $(seq "$rounds"); do
    for d in 32 64; do
      # shellcheck disable=SC2086
      "$out/$m$d" train --epochs 1 $lim --json --quiet --no-save >"$out/j$d"
      key seconds <"$out/j$d" >>"$out/t$d"
      key test_accuracy <"$out/j$d" >"$out/a$d"
    done
  done
  a=$(median <"$out/t32") b=$(median <"$out/t64")
  echo "| $m${lim:+ ($lim)} | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }') | $(cat "$out/a32") | $(cat "$out/a64") |"
done
