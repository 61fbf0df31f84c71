#!/bin/sh
# Limits: a model whose training would not fit in memory (the machine's, or
# --max-memory) is a compile-time error with its size; bad options of nnc
# and of the binary are usage errors with a usage line. (Absurd numbers in
# sources are golden cases: tests/golden/limits-*.nn.)
. "$(dirname "$0")/../lib.sh" "$@"
cat >huge.nn <<'NN'
model m(x: f32[2]) -> f32[1] {
    return x |> dense(200000) |> relu |> dense(200000) |> dense(1)
}
train m {
    data      = inline([[1, 2]], [[1]])
    loss      = mse
    optimizer = adam(lr = 0.1)
    batch     = 32
}
NN
expect_error 1 "huge.nn:4:1: error: training 'm' needs 640.12 GB of memory at batch 32 \(parameters and optimizer state 480.01 GB, workspace 160.10 GB\), more than this machine's memory" \
  "$NNC" huge.nn -o huge
test ! -e huge
cat >small.nn <<'NN'
model m(x: f32[2]) -> f32[1] {
    return x |> dense(3) |> dense(1)
}
train m {
    data      = inline([[1, 2]], [[1]])
    loss      = mse
    optimizer = sgd(lr = 0.1)
    batch     = 2
}
NN
expect_error 1 "error: training 'm' needs 1.40 kB of memory at batch 2 .*more than --max-memory \(1.02 kB\)" \
  "$NNC" small.nn -o small --max-memory 1K
"$NNC" small.nn -o small --max-memory=1M
echo "ok: 1.40 kB fits in --max-memory=1M"
expect_error 2 "max-memory: '12Q' is not a size" "$NNC" small.nn --max-memory 12Q
grep -q "^usage: nnc" err.txt
expect_error 2 "max-memory: '' is not a size" "$NNC" small.nn --max-memory
expect_error 2 "unknown option '--bogus'" "$NNC" small.nn --bogus
grep -q "^usage: nnc" err.txt
# The binary's command line.
for args in "--bogus" "--epochs -3" "--epochs 1e3" "--epochs 99999999999999999999" \
            "--batch" "--batch=0" "--threads 100000" "--save-every 0" "fit" "eval --epochs 2" \
            "--quiet=yes" "predict"; do
  # shellcheck disable=SC2086
  expect_error 2 "^small: " ./small $args
  grep -q "^usage: ./small \[train | eval | predict INPUT | reconstruct\] \[options\]" err.txt || \
    { echo "FAIL: no usage line for '$args'"; exit 1; }
done
