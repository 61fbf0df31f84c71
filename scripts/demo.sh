#!/bin/sh
# Builds nnc and runs the main job: compile examples/fashion_mlp.nn and train
# it on Fashion-MNIST with the defaults written in the file.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"
mkdir -p out
build/nnc examples/fashion_mlp.nn -o out/fashion_mlp
cd out && ./fashion_mlp train "$@"
