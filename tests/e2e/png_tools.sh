#!/bin/sh
# The runtime's PNGs checked by tools that know nothing of it: a fake
# generator program (tests/e2e/png_gen.c, linked against libnnrt.a as a
# generated one is) trains briefly, reporting named metrics in its JSON
# lines, and `sample` writes gray and RGB grids that `file` identifies as
# PNG images of the expected size and kind and that pngcheck (CRCs, zlib
# stream, filters) finds without errors.
. "$(dirname "$0")/../lib.sh" "$@"
LIB=$(dirname "$NNC")/libnnrt.a
LINK=$("$NNC" --link-flags)
for c in 1 3; do
  # shellcheck disable=SC2086
  cc -O2 -Wall -Wextra -Werror -DCHANNELS=$c "$ROOT/tests/e2e/png_gen.c" \
     -I"$ROOT/runtime" "$LIB" $LINK -o gen$c
done
./gen1 train --json --quiet --save gen.safetensors >log.json
cat log.json
d=$(json_last d_loss log.json)
g=$(json_last g_loss log.json)
t=$(json_last test_g_loss log.json)
check "$d" "=" 0.5 "d_loss of the last epoch"
check "$g" "=" 0.6 "g_loss of the last epoch"
check "$t" "=" 0.75 "test_g_loss"
grep -q '^epoch,.*,d_loss,g_loss,val_d_loss,val_g_loss,test_d_loss,test_g_loss$' gen.csv
./gen1 sample --load gen.safetensors -o gray.png --seed 3 >out.txt
cat out.txt
grep -q "^gray.png  64 samples of 28x28  seed 3$" out.txt
./gen3 sample --load gen.safetensors -o rgb.png --count 10 >out.txt
file gray.png rgb.png
file gray.png | grep -q "PNG image data, 242 x 242, 8-bit grayscale, non-interlaced"
file rgb.png | grep -q "PNG image data, 242 x 62, 8-bit/color RGB, non-interlaced"
if command -v pngcheck >/dev/null; then
  pngcheck -v gray.png | tail -n 1
  pngcheck gray.png rgb.png
else
  echo "note: no pngcheck (scripts/deps.sh installs it); checked with file only"
fi
echo "ok: the PNGs are PNGs to file and pngcheck"
