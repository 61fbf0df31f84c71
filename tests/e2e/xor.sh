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
# one-object build (NNC_ONE_OBJECT) must train to the same weights, bit for
# bit.
NNC_ONE_OBJECT=1 "$NNC" "$ROOT/examples/xor.nn" -o xor_one
./xor train --quiet --epochs 50 --save split.safetensors >/dev/null
./xor_one train --quiet --epochs 50 --save one.safetensors >/dev/null
cmp split.safetensors one.safetensors
echo "split and one-object builds agree"
