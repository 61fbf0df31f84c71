#!/bin/sh
# LeNet on a slice of Fashion-MNIST: trains, and beats a bar on the test set.
. "$(dirname "$0")/../lib.sh" "$@"
compile lenet
./lenet train --limit 6000 --epochs 1 --json --quiet --save lenet.safetensors >log.json
cat log.json
check "$(json_last test_accuracy log.json)" ">" 0.70 "lenet test accuracy after 6000 images"
./lenet eval --load lenet.safetensors --json >eval.json
check "$(json_last test_accuracy eval.json)" ">" 0.70 "eval reproduces it"
