#!/bin/sh
# The convolutional autoencoder: the reconstruction loss falls by at least 5x
# from its starting value within one (partial) epoch, and `reconstruct`
# writes a PNG grid of inputs above their reconstructions.
. "$(dirname "$0")/../lib.sh" "$@"
compile conv_autoencoder
# One step on one batch: the epoch's loss is the untrained loss.
./conv_autoencoder train --limit 64 --epochs 1 --json --quiet --no-save >start.json
./conv_autoencoder train --limit 12000 --epochs 1 --json --quiet --save ae.safetensors >log.json
cat start.json log.json
start=$(json_last loss start.json)
end=$(json_last test_loss log.json)
check "$end" "<" "$(awk -v s="$start" 'BEGIN { print s / 5 }')" "test loss at most a fifth of the starting loss $start"
./conv_autoencoder reconstruct --load ae.safetensors >out.txt
grep -q "^conv_autoencoder-reconstruct.png  mse " out.txt
file conv_autoencoder-reconstruct.png | grep -q "PNG image data, 242 x 122, 8-bit grayscale"
echo "ok: wrote a PNG grid: $(file conv_autoencoder-reconstruct.png)"
