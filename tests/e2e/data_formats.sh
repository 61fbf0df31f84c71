#!/bin/sh
# CSV data found beside the .nn file, a layer imported from another file, and
# `predict` on a CSV of inputs.
. "$(dirname "$0")/../lib.sh" "$@"
mkdir -p proj/lib
cat >proj/lib/blocks.nn <<'NN'
# A hidden layer with its activation, imported by circles.nn.
layer hidden(x: f32[n], units: int) = x |> dense(units, init = xavier_uniform) |> tanh
NN
cat >proj/circles.nn <<'NN'
import "lib/blocks.nn"
model circles(x: f32[2]) -> f32[2] {
    return x |> hidden(16) |> hidden(16) |> dense(2)
}
train circles {
    data      = csv("points.csv")
    loss      = softmax_cross_entropy
    optimizer = adam(lr = 0.02)
    batch     = 32
    epochs    = 60
    metrics   = [accuracy]
}
NN
# Points inside a circle of radius 0.6 are class 1; a header line and a class
# index per row (one-hot for the two outputs is made by the runtime).
awk 'BEGIN { srand(3); print "x1,x2,label"
  for (i = 0; i < 400; i++) { x = 2 * rand() - 1; y = 2 * rand() - 1
    printf "%.4f,%.4f,%d\n", x, y, (x * x + y * y < 0.36) } }' >proj/points.csv
"$NNC" proj/circles.nn -o circles
./circles train --json --quiet --save c.safetensors >log.json
check "$(json_last accuracy log.json)" ">" 0.9 "circles from CSV with an imported layer"
printf '0,0\n0.9,0.9\n' >query.csv
./circles predict --load c.safetensors query.csv >pred.csv
cat pred.csv
test "$(cut -d, -f1 pred.csv | tr '\n' ' ')" = "1 0 "
echo "ok: predict classifies the centre as 1 and a corner as 0"
