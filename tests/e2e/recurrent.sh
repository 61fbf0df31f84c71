#!/bin/sh
# Recurrent networks (issue 10) end to end, each on a slice: the examples
# lstm_fashion and gru_fashion (Fashion-MNIST row by row), rnn_sine (next
# value of a sine), char_lstm (a byte-level language model on the licence
# texts, then `sample`); bidirectional and stacked layers with truncated
# BPTT; and a recurrence's IR and object code that do not grow with the
# sequence length.
. "$(dirname "$0")/../lib.sh" "$@"

compile lstm_fashion
./lstm_fashion train --limit 3000 --epochs 1 --json --quiet --save l.safetensors >lstm.json
cat lstm.json
check "$(json_last test_accuracy lstm.json)" ">" 0.35 "lstm_fashion test accuracy after 3000 images (chance: 0.10)"
./lstm_fashion eval --load l.safetensors --json >lstm_eval.json
check "$(json_last test_accuracy lstm_eval.json)" "=" "$(json_last test_accuracy lstm.json)" \
  "eval of the saved LSTM reproduces its accuracy"

compile gru_fashion
./gru_fashion train --limit 3000 --epochs 1 --json --quiet --no-save >gru.json
cat gru.json
check "$(json_last test_accuracy gru.json)" ">" 0.35 "gru_fashion test accuracy after 3000 images (chance: 0.10)"

compile rnn_sine
./rnn_sine train --epochs 8 --json --quiet --no-save >sine.json
check "$(json_first test_loss sine.json)" ">" "$(json_last test_loss sine.json)" "rnn_sine learns"
check "$(json_last test_loss sine.json)" "<" 0.005 "rnn_sine test mse"

compile char_lstm
./char_lstm train --limit 600 --epochs 1 --json --quiet --save c.safetensors >char.json
cat char.json
# A uniform guess costs ln 256 = 5.55 nats per byte.
check "$(json_last test_loss char.json)" "<" 4.0 "char_lstm test loss (nats per byte) after 600 windows"
./char_lstm sample --load c.safetensors --length 200 --temperature 0.5 >sample.txt
cat sample.txt
check "$(wc -c <sample.txt)" ">=" 249 "sample prints the prompt and 200 bytes"
./char_lstm sample --load c.safetensors --length 50 --seed 3 >s1.txt
./char_lstm sample --load c.safetensors --length 50 --seed 3 >s2.txt
cmp s1.txt s2.txt && echo "ok: a seed repeats a sample"
if ./lstm_fashion sample --load l.safetensors 2>err.txt; then
  echo "FAIL: sample of a model not trained on text"; exit 1
fi
grep -q "sample needs a model trained on text data" err.txt && echo "ok: sample refuses an image model"
if ./char_lstm sample --load c.safetensors --temperature 0 2>err.txt; then
  echo "FAIL: --temperature 0 accepted"; exit 1
fi
grep -q "temperature" err.txt && echo "ok: --temperature must be positive"

# Bidirectional and stacked layers, truncated BPTT: a few epochs on inline
# sequences must lower the loss.
cat >seq.nn <<'NN'
model m(x: f32[6, 2]) -> f32[2] {
    return x |> bidirectional(gru, 5) |> lstm(4, bptt = 3, sequences = 0) |> dense(2)
}
train m {
    data = inline([[1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1], [0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0],
                   [1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]],
                  [[1, 0], [0, 1], [1, 0], [0, 1]])
    loss = softmax_cross_entropy
    optimizer = adam(lr = 0.01)
    batch = 4
    epochs = 40
    metrics = [accuracy]
}
NN
"$NNC" seq.nn -o seq
./seq train --json --quiet --no-save >seq.json
check "$(json_last loss seq.json)" "<" "$(json_first loss seq.json)" "bidirectional + stacked + bptt trains"
check "$(json_last accuracy seq.json)" "=" 1 "it separates the two patterns"

# The IR and the object code do not grow with the sequence length.
for t in 28 280; do
  sed "s/f32\[28, 28\]/f32[$t, 28]/" "$ROOT/examples/lstm_fashion.nn" >"len$t.nn"
  "$NNC" "len$t.nn" --emit=grad >"len$t.grad"
  "$NNC" "len$t.nn" --emit=obj -o "len$t.o"
done
check "$(wc -l <len28.grad)" "=" "$(wc -l <len280.grad)" "IR lines at t = 28 and t = 280"
s28=$(wc -c <len28.o)
s280=$(wc -c <len280.o)
check "$(awk -v a="$s28" -v b="$s280" 'BEGIN { d = a - b; if (d < 0) d = -d; print d / a }')" "<" 0.05 \
  "object size at t = 28 ($s28 bytes) and t = 280 ($s280 bytes)"
