#!/bin/sh
# A dense autoencoder trained on images without labels (the target is the
# input): the reconstruction error falls, and `reconstruct` draws a PNG grid
# (as `file` and pngcheck see it) whose error agrees with the test loss, or
# a PGM when asked for one.
. "$(dirname "$0")/../lib.sh" "$@"
compile autoencoder
./autoencoder train --limit 64 --epochs 1 --json --quiet --no-save >start.json
./autoencoder train --limit 6000 --epochs 2 --json --quiet --save ae.safetensors >log.json
cat start.json log.json
start=$(json_last loss start.json)
end=$(json_last test_loss log.json)
check "$end" "<" "$(awk -v s="$start" 'BEGIN { print s / 3 }')" "test loss well under the starting loss $start"
./autoencoder reconstruct --load ae.safetensors --out grid.png --count 8 >out.txt
cat out.txt
file grid.png | grep -q "PNG image data, 242 x 62, 8-bit grayscale"
if command -v pngcheck >/dev/null; then pngcheck grid.png; fi
./autoencoder reconstruct --load ae.safetensors --out grid.pgm --count 8 --quiet >/dev/null
head -c 2 grid.pgm | grep -q P5
mse=$(sed -n 's/.*mse \([0-9.eE+-]*\).*/\1/p' out.txt)
check "$mse" "<" 0.05 "reconstruction error of the grid"
