#!/bin/sh
# Cross-check against PyTorch: from the same initial weights and data, each
# nnc binary's training loss per epoch must equal PyTorch's (fixtures made by
# tests/torch/gen_fixtures.py) to a relative 1e-4. This pins the forward
# pass, every gradient and each optimizer's update rule together. Where the
# fixture has them, so must the learning rate of each epoch (schedules), the
# eval-mode test loss after each epoch and the running statistics after the
# last (batch norm, 1e-5).
. "$(dirname "$0")/../lib.sh" "$@"

# compare WANT GOT WHAT TOL: line by line, |got - want| <= TOL |want| + 1e-6
compare() {
  if ! awk -v tol="$4" 'NR == FNR { want[FNR] = $NF; n = FNR; next }
            { got[FNR] = $NF; m = FNR }
            END {
              if (n != m || n == 0) { print "lines: want " n ", got " m; exit 1 }
              for (i = 1; i <= n; i++) {
                d = got[i] - want[i]; if (d < 0) d = -d
                s = want[i] < 0 ? -want[i] : want[i]
                if (d > tol * s + 1e-6) { print "line " i ": nnc " got[i] ", PyTorch " want[i]; exit 1 }
              }
            }' "$1" "$2"; then
    echo "FAIL: $name: $3 differs from PyTorch"
    paste "$1" "$2"
    exit 1
  fi
}

for nn in "$ROOT"/tests/torch/*.nn; do
  name=$(basename "$nn" .nn)
  fix="$ROOT/tests/torch/$name"
  "$NNC" "$nn" -o "$name"
  "./$name" train --load "$fix.init.safetensors" --json --quiet \
    --save "$name.safetensors" >"$name.json"
  for key in loss lr test_loss; do
    grep '^{' "$name.json" |
      sed -n "s/.*\"$key\": *\([-0-9.eE+]*\).*/\1/p" >"$name.$key"
  done
  compare "$fix.expected" "$name.loss" "the training loss" 1e-4
  checked="loss"
  if [ -f "$fix.expected_lr" ]; then
    compare "$fix.expected_lr" "$name.lr" "the learning rate" 1e-6
    checked="$checked, lr"
  fi
  if [ -f "$fix.expected_test" ]; then
    compare "$fix.expected_test" "$name.test_loss" "the eval-mode loss" 1e-4
    checked="$checked, eval-mode loss"
  fi
  if [ -f "$fix.expected_buffers" ]; then
    for t in $(cut -d' ' -f1 "$fix.expected_buffers" | uniq); do
      safetensor "$name.safetensors" "$t"
    done >"$name.buffers"
    compare "$fix.expected_buffers" "$name.buffers" "the running statistics" 1e-5
    checked="$checked, running statistics"
  fi
  # Programs of steps: each other metric by name (NAME.expected_KEY).
  for want in "$fix".expected_*; do
    [ -f "$want" ] || continue
    key=${want##*.expected_}
    case $key in lr|test|buffers) continue ;; esac
    grep '^{' "$name.json" |
      sed -n "s/.*\"$key\": *\([-0-9.eE+]*\).*/\1/p" >"$name.$key"
    compare "$want" "$name.$key" "$key" 1e-4
    checked="$checked, $key"
  done
  echo "ok: $name matches PyTorch over $(wc -l <"$name.loss") epochs ($checked)"
done
