#!/bin/sh
# Cross-check against PyTorch: from the same initial weights and data, each
# nnc binary's training loss per epoch must equal PyTorch's (fixtures made by
# tests/torch/gen_fixtures.py) to a relative 1e-4. This pins the forward
# pass, every gradient and each optimizer's update rule together.
. "$(dirname "$0")/../lib.sh" "$@"
for nn in "$ROOT"/tests/torch/*.nn; do
  name=$(basename "$nn" .nn)
  "$NNC" "$nn" -o "$name"
  "./$name" train --load "$ROOT/tests/torch/$name.init.safetensors" --json --quiet --no-save >"$name.json"
  grep '^{' "$name.json" | sed -n 's/.*"loss": *\([-0-9.eE+]*\).*/\1/p' >"$name.got"
  if ! awk 'NR == FNR { want[FNR] = $1; n = FNR; next }
            { got[FNR] = $1; m = FNR }
            END {
              if (n != m || n == 0) { print "epochs: want " n ", got " m; exit 1 }
              for (i = 1; i <= n; i++) {
                d = got[i] - want[i]; if (d < 0) d = -d
                s = want[i] < 0 ? -want[i] : want[i]
                if (d > 1e-4 * s + 1e-6) { print "epoch " i ": nnc " got[i] ", PyTorch " want[i]; exit 1 }
              }
            }' "$ROOT/tests/torch/$name.expected" "$name.got"; then
    echo "FAIL: $name differs from PyTorch"
    paste "$ROOT/tests/torch/$name.expected" "$name.got"
    exit 1
  fi
  echo "ok: $name matches PyTorch over $(wc -l <"$name.got") epochs"
done
