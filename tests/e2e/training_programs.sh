#!/bin/sh
# Training programs: batch norm and dropout train and evaluate in their own
# modes (eval uses the running statistics, so its result does not depend
# on the evaluation batch), draws are the same for a seed at 1 and 2
# threads, checkpoints hold the buffers and resume bit for bit, a denoising
# autoencoder restores noisy images better than a plain one.
. "$(dirname "$0")/../lib.sh" "$@"
compile fashion_mlp_bn

# Trains on a slice and beats chance by far, in eval mode on the test set.
./fashion_mlp_bn train --limit 6000 --epochs 2 --json --quiet \
  --save bn.safetensors >log.json
cat log.json
check "$(json_last test_accuracy log.json)" ">" 0.75 "test accuracy after 2 epochs on 6000 images"

# eval with running statistics: batch 1 and batch 1000 agree.
./fashion_mlp_bn eval --load bn.safetensors --json --batch 1 >e1.json
./fashion_mlp_bn eval --load bn.safetensors --json --batch 1000 >e1000.json
cat e1.json e1000.json
a1=$(json_last test_accuracy e1.json)
a1000=$(json_last test_accuracy e1000.json)
[ "$a1" = "$a1000" ] || { echo "FAIL: accuracy at batch 1 ($a1) and 1000 ($a1000) differ"; exit 1; }
check "$(json_last test_loss e1.json)" "<" "$(awk -v l="$(json_last test_loss e1000.json)" 'BEGIN { print l * 1.0001 + 1e-6 }')" "test loss at batch 1 against batch 1000"
check "$(json_last test_loss e1.json)" ">" "$(awk -v l="$(json_last test_loss e1000.json)" 'BEGIN { print l * 0.9999 - 1e-6 }')" "test loss at batch 1 against batch 1000"

# The checkpoint holds the running statistics, which moved from 0 and 1.
safetensor bn.safetensors batchnorm_1.running_mean >mean.txt
safetensor bn.safetensors batchnorm_1.running_var >var.txt
[ "$(wc -l <mean.txt)" -eq 256 ] || { echo "FAIL: running_mean has $(wc -l <mean.txt) values"; exit 1; }
awk '{ if ($1 != 0) n++ } END { if (n < 200) { print "FAIL: only " n " running means moved"; exit 1 } }' mean.txt
awk '{ if ($1 != 1) n++ } END { if (n < 200) { print "FAIL: only " n " running variances moved"; exit 1 } }' var.txt
if grep -q "optimizer.0.batchnorm_1.running" bn.safetensors; then
  echo "FAIL: buffers have optimizer state"; exit 1
fi

# Dropout's draws depend on the seed and step only: 1 and 2 threads train
# to the same bits.
./fashion_mlp_bn train --limit 1000 --epochs 1 --quiet --threads 1 --save t1.safetensors >/dev/null
./fashion_mlp_bn train --limit 1000 --epochs 1 --quiet --threads 2 --save t2.safetensors >/dev/null
cmp t1.safetensors t2.safetensors
./fashion_mlp_bn train --limit 1000 --epochs 1 --quiet --seed 7 --save t3.safetensors >/dev/null
if cmp -s t1.safetensors t3.safetensors; then
  echo "FAIL: another seed trained to the same weights"; exit 1
fi

# Resuming continues the draws and the running statistics: two epochs at
# once equal one, then one more from the checkpoint.
./fashion_mlp_bn train --limit 1000 --epochs 2 --quiet --save full.safetensors >/dev/null
./fashion_mlp_bn train --limit 1000 --epochs 1 --quiet --save half.safetensors >/dev/null
./fashion_mlp_bn train --limit 1000 --epochs 1 --quiet --load half.safetensors \
  --save half.safetensors >/dev/null 2>&1
cmp full.safetensors half.safetensors
echo "ok: resumed run equals the uninterrupted one"

# A denoising autoencoder against the same network trained without noise,
# both evaluated on noisy test images (masking noise kept on in eval)
# against the clean ones.
compile denoising_autoencoder
sed 's/ |> masking_noise(0.3)//' "$ROOT/examples/denoising_autoencoder.nn" >plain.nn
sed 's/masking_noise(0.3)/masking_noise(0.3, always = 1)/' "$ROOT/examples/denoising_autoencoder.nn" >noisy_eval.nn
"$NNC" plain.nn -o plain
"$NNC" noisy_eval.nn -o noisy_eval
./denoising_autoencoder train --limit 6000 --epochs 2 --quiet --save dae.safetensors >/dev/null
./plain train --limit 6000 --epochs 2 --quiet --save ae.safetensors >/dev/null
./noisy_eval eval --load dae.safetensors --json >dae.json
./noisy_eval eval --load ae.safetensors --json >ae.json
./plain eval --load dae.safetensors --json >dae_clean.json
cat dae.json ae.json dae_clean.json
check "$(json_last test_loss dae.json)" "<" "$(json_last test_loss ae.json)" "denoiser's MSE on noisy inputs against the plain autoencoder's"

# Early stopping: a network that overfits 200 examples stops 3 epochs after
# its best validation loss and puts that epoch's weights back.
cat >es.nn <<'NN'
model m(x: f32[784]) -> f32[10] {
    return x |> dense(256) |> relu |> dense(10)
}
train m {
    data       = idx("fashion-mnist/train-images-idx3-ubyte.gz",
                     "fashion-mnist/train-labels-idx1-ubyte.gz", scale = 1/255)
    loss       = softmax_cross_entropy
    optimizer  = adam(lr = 3e-3)
    batch      = 32
    epochs     = 40
    validation = 0.5
    early_stopping = 3
}
NN
"$NNC" es.nn -o es
./es train --limit 400 --save es.safetensors --json >es.json 2>es.err
cat es.err
ran=$(grep -c '^{' es.json)
best=$(sed -n 's/.*restored the weights of epoch \([0-9]*\).*/\1/p' es.err)
[ -n "$best" ] || { echo "FAIL: no early stopping"; exit 1; }
[ "$ran" -eq $((best + 3)) ] || { echo "FAIL: stopped after $ran epochs, best $best"; exit 1; }
bestloss=$(grep '^{' es.json | sed -n "${best}p" | sed -n 's/.*"val_loss": *\([0-9.eE+-]*\).*/\1/p')
for e in $(seq "$ran"); do
  l=$(grep '^{' es.json | sed -n "${e}p" | sed -n 's/.*"val_loss": *\([0-9.eE+-]*\).*/\1/p')
  check "$bestloss" "<=" "$l" "the restored epoch's validation loss against epoch $e's"
done

# The sparse autoencoder's activity penalty: its codes for the test images
# (read with `predict` through a model with the same parameters whose
# output is the code) are much smaller on average than the same network's
# without it (1.7x here, after 2 epochs on 6000 images; 5.6x after 5 full
# epochs, bench/sparse_ae.sh).
compile sparse_autoencoder
sed 's/ |> sparsity([^)]*)//' "$ROOT/examples/sparse_autoencoder.nn" >dense_ae.nn
if grep -q "|> sparsity" dense_ae.nn; then echo "FAIL: the penalty is still in dense_ae.nn"; exit 1; fi
"$NNC" dense_ae.nn -o dense_ae
width=$(sed -n 's/.*code = x |> dense(\([0-9]*\)).*/\1/p' "$ROOT/examples/sparse_autoencoder.nn")
zeros=$(awk 'BEGIN { for (i = 0; i < 784; i++) printf "%s0", i ? "," : "" }')
cat >encoder.nn <<NN
model encoder(x: f32[784]) -> f32[$width] {
    code = x |> dense($width) |> relu
    decoded = code |> dense(784)
    return code
}
train encoder {
    data      = inline([[$zeros]], [[0]], scale = 1/255)
    loss      = mse
    optimizer = sgd
}
NN
"$NNC" encoder.nn -o encoder
./sparse_autoencoder train --limit 6000 --epochs 2 --quiet --json --save sae.safetensors >sae.json
./dense_ae train --limit 6000 --epochs 2 --quiet --json --save dae2.safetensors >dae2.json
images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
mean_code() {
  ./encoder predict --load "$1" "$images" | head -n 2000 |
    awk -F, '{ for (i = 2; i <= NF; i++) { s += $i; n++ } } END { print s / n }'
}
sparse=$(mean_code sae.safetensors)
plain=$(mean_code dae2.safetensors)
check "$sparse" "<" "$(awk -v p="$plain" 'BEGIN { print p / 1.4 }')" "mean code activation with the penalty against $plain / 1.4 without"
check "$(json_last test_loss sae.json)" "<" "$(awk -v l="$(json_last test_loss dae2.json)" 'BEGIN { print 1.5 * l }')" "the sparse autoencoder's test MSE against 1.5 x the plain one's"
