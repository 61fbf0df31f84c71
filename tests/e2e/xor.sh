#!/bin/sh
# XOR with inline data: a 2-layer net must classify all four points.
. "$(dirname "$0")/../lib.sh" "$@"
compile xor
./xor train --json --quiet --save xor.safetensors >log.json
check "$(json_last accuracy log.json)" ">=" 1 "xor training accuracy"
check "$(json_last loss log.json)" "<" "$(json_first loss log.json)" "xor loss falls"
./xor eval --load xor.safetensors --json >eval.json
cat eval.json
