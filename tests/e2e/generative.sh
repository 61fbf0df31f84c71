#!/bin/sh
# Generative models: the VAE and the GAN train as programs of steps (their
# losses move the right way on a slice, each step's numbers are reported by
# name per epoch, for the test set too), `sample` and `reconstruct` write
# PNG grids, and resuming a two-optimizer program is bit-exact.
. "$(dirname "$0")/../lib.sh" "$@"
compile vae
compile gan
compile conv_vae

# VAE: the ELBO's two terms, reported per epoch; the bound improves.
./vae train --limit 3000 --epochs 3 --json --quiet --save vae.safetensors >vae.json
cat vae.json
for key in elbo recon kl test_elbo test_recon test_kl; do
  grep -q "\"$key\"" vae.json || { echo "FAIL: no $key in the VAE's log"; exit 1; }
done
check "$(json_last elbo vae.json)" "<" "$(json_first elbo vae.json)" "the ELBO loss falls"
check "$(json_last recon vae.json)" "<" "$(json_first recon vae.json)" "the reconstruction term falls"
check "$(json_last kl vae.json)" ">" 1 "the KL term (the code carries information)"
# elbo = recon + kl (to print precision)
awk -v e="$(json_last elbo vae.json)" -v r="$(json_last recon vae.json)" \
    -v k="$(json_last kl vae.json)" \
    'BEGIN { d = e - r - k; if (d < 0) d = -d; if (d > 1e-3 * e) { print "FAIL: elbo " e " != recon " r " + kl " k; exit 1 } }'
./vae sample --load vae.safetensors -o samples.png --count 16 >/dev/null
./vae reconstruct --load vae.safetensors -o recon.png >/dev/null
for f in samples.png recon.png; do
  [ "$(head -c 8 $f | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
    { echo "FAIL: $f is not a PNG"; exit 1; }
done
# The same seed draws the same samples; another seed others.
./vae sample --load vae.safetensors -o again.png --count 16 >/dev/null
cmp samples.png again.png
./vae sample --load vae.safetensors -o other.png --count 16 --seed 5 >/dev/null
if cmp -s samples.png other.png; then echo "FAIL: --seed changed nothing"; exit 1; fi

# The convolutional VAE (transposed-conv decoder) trains too.
./conv_vae train --limit 1000 --epochs 2 --json --quiet --save cvae.safetensors >cvae.json
cat cvae.json
check "$(json_last elbo cvae.json)" "<" "$(json_first elbo cvae.json)" "the conv VAE's ELBO loss falls"
./conv_vae sample --load cvae.safetensors -o cvae.png --count 4 >/dev/null

# GAN: two steps, two optimizers; the discriminator learns to tell real
# from fake and the generator's loss is reported beside it.
./gan train --limit 3000 --epochs 2 --json --quiet --save gan.safetensors >gan.json
cat gan.json
for key in d_loss d_acc g_loss; do
  grep -q "\"$key\"" gan.json || { echo "FAIL: no $key in the GAN's log"; exit 1; }
done
check "$(json_first d_loss gan.json)" "<" 1.3863 "d_loss below log 4 (chance) in the first epoch"
check "$(json_first d_acc gan.json)" ">" 0.6 "the discriminator tells real from fake"
check "$(json_last g_loss gan.json)" ">" 0.6931 "g_loss above log 2 (the discriminator is not fooled)"
./gan sample --load gan.safetensors -o gan.png --count 16 >/dev/null
[ "$(head -c 4 gan.png | od -An -tx1 | tr -d ' \n')" = 89504e47 ] || { echo "FAIL: gan.png"; exit 1; }

# Resume: 1 + 1 epochs equal 2 epochs, both optimizers' states included.
./gan train --limit 500 --epochs 2 --quiet --save full.safetensors >/dev/null
./gan train --limit 500 --epochs 1 --quiet --save half.safetensors >/dev/null
./gan train --limit 500 --epochs 1 --quiet --load half.safetensors \
  --save half.safetensors >/dev/null
cmp full.safetensors half.safetensors
echo "ok: resumed two-optimizer run equals the uninterrupted one"
