#!/bin/sh
# fashion_mlp on 10,000 Fashion-MNIST images for one epoch: > 80% test accuracy.
. "$(dirname "$0")/../lib.sh" "$@"
compile fashion_mlp
./fashion_mlp train --limit 10000 --epochs 1 --json --quiet --save w.safetensors >log.json
cat log.json
check "$(json_last test_accuracy log.json)" ">" 0.80 "fashion_mlp test accuracy"
./fashion_mlp eval --load w.safetensors --json >eval.json
cat eval.json
check "$(json_last test_accuracy eval.json)" ">" 0.80 "eval reproduces the accuracy"
