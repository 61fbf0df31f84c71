#!/bin/sh
# XOR with inline data: a 2-layer net must classify all four points.
. "$(dirname "$0")/../lib.sh" "$@"
compile xor
./xor train --json --quiet --save xor.safetensors >log.json
check "$(json_last accuracy log.json)" ">=" 1 "xor training accuracy"
check "$(json_last loss log.json)" "<" "$(json_first loss log.json)" "xor loss falls"
./xor eval --load xor.safetensors --json >eval.json
cat eval.json
# nnc compiles an executable's kernels as two objects on two threads; the
# one-object build (--one-object) must train to the same weights, bit for
# bit.
"$NNC" --one-object "$ROOT/examples/xor.nn" -o xor_one
./xor train --quiet --epochs 50 --save split.safetensors >/dev/null
./xor_one train --quiet --epochs 50 --save one.safetensors >/dev/null
cmp split.safetensors one.safetensors
echo "split and one-object builds agree"
# The switches that change the kernels, not the arithmetic of training:
# --no-row-groups and --no-opt-fusion train to the same loss within float
# noise; --profile builds print their cycle table.
"$NNC" --no-row-groups --no-opt-fusion "$ROOT/examples/xor.nn" -o xor_plain
./xor_plain train --quiet --epochs 50 --json --no-save >plain.json
./xor train --quiet --epochs 50 --json --no-save >split.json
check "$(awk -v a="$(json_last loss plain.json)" -v b="$(json_last loss split.json)" \
  'BEGIN { d = a - b; print (d < 0 ? -d : d) }')" "<" 1e-4 "--no-row-groups --no-opt-fusion: same loss"
"$NNC" --profile "$ROOT/examples/xor.nn" -o xor_prof
./xor_prof train --quiet --epochs 2 --no-save 2>prof.txt >/dev/null
grep -q "nnc profile" prof.txt && echo "ok: --profile prints the kernel profile"
