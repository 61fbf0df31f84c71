#!/bin/sh
# Installs what nnc needs from Debian's archive, only when something is
# missing, so it is cheap to run again. Usage: sh scripts/deps.sh [--bench]
set -eu
pkgs="gcc make cmake re2c bison llvm-19-dev libcriterion-dev zlib1g-dev dataset-fashion-mnist binutils python3 qemu-user graphviz clang-19 libclang-rt-19-dev file pngcheck openmpi-bin libopenmpi-dev"
if [ "${1:-}" = "--bench" ]; then
  pkgs="$pkgs python3 python3-torch python3-numpy libopenblas0-openmp hyperfine"
fi
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# shellcheck disable=SC2086
$sudo apt-get install -y -q --no-install-recommends $missing
