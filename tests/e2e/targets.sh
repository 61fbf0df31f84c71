#!/bin/sh
# --cpu: an unknown name is an error listing the choices; a binary built for
# x86-64-v3 holds no AVX-512 instruction outside the runtime's
# multiversioned clones (chosen at run time by CPUID), trains like the native
# build, and runs under qemu with a Haswell CPU (AVX2, no AVX-512), where a
# binary built for AVX-512 stops at start-up with a message instead of
# SIGILL.
. "$(dirname "$0")/../lib.sh" "$@"
expect_error 2 "unknown CPU 'pentium9'.*" "$NNC" --cpu=pentium9 "$ROOT/examples/xor.nn"
grep -q "x86-64-v3" err.txt && grep -q "skylake-avx512" err.txt && echo "ok: the choices are listed"
"$NNC" --cpu=help | grep -q znver4

compile fashion_mlp --cpu=x86-64-v3
mv fashion_mlp v3
compile fashion_mlp
mv fashion_mlp native

# Functions holding AVX-512 instructions (zmm or mask registers): only the
# runtime's target_clones for x86-64-v4 may.
objdump -d --no-show-raw-insn v3 | awk '
  /^[0-9a-f]+ <.*>:$/ { fn = $2 }
  /%zmm|%k[0-7]|\{%k/ { print fn }' | sort -u >avx512.txt
echo "functions with AVX-512 instructions:"; cat avx512.txt
if grep -v 'arch_x86_64_v4>:$' avx512.txt; then
  echo "FAIL: AVX-512 instructions outside the runtime's v4 clones"
  exit 1
fi
check "$(objdump -d v3 | grep -c ymm)" ">" 1000 "the v3 binary uses 256-bit vectors"

./native train --limit 3000 --epochs 1 --json --quiet >native.json
./v3 train --limit 3000 --epochs 1 --json --quiet >v3.json
a=$(json_last test_accuracy native.json)
b=$(json_last test_accuracy v3.json)
check "$b" ">" 0.6 "x86-64-v3 test accuracy"
check "$(awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; print d < 0 ? -d : d }')" "<" 0.01 \
  "x86-64-v3 and native accuracies agree ($a, $b)"

# A CPU without what the binary needs: refused at start-up, not SIGILL.
if grep -q avx512f /proc/cpuinfo && ! grep -q avx512_fp16 /proc/cpuinfo; then
  "$NNC" "$ROOT/examples/xor.nn" --cpu=sapphirerapids -o spr
  expect_error 1 "lacks .*avx512fp16.*--cpu=sapphirerapids" ./spr train --epochs 1
fi
if "$NNC" --link-flags | grep -q sanitize; then
  echo "skip: qemu with a sanitizer build"
elif command -v qemu-x86_64 >/dev/null; then
  # The same binary on a CPU without AVX-512 computes the same numbers.
  ./v3 train --limit 300 --epochs 1 --json --quiet --threads 1 --no-save >v3s.json
  qemu-x86_64 -cpu Haswell ./v3 train --limit 300 --epochs 1 --json --quiet \
    --threads 1 --no-save >qemu.json 2>qemu.err
  check "$(json_last test_accuracy qemu.json)" "=" "$(json_last test_accuracy v3s.json)" \
    "x86-64-v3 under qemu -cpu Haswell (no AVX-512) trains as on this CPU"
  if grep -q avx512f /proc/cpuinfo; then
    expect_error 1 "lacks avx512f" qemu-x86_64 -cpu Haswell ./native train --epochs 1
  fi
else
  echo "skip: no qemu-x86_64 (scripts/deps.sh installs qemu-user)"
fi
