#!/bin/sh
# Builds nnc and runs the whole test suite twice: a normal build, then a
# build with AddressSanitizer and UndefinedBehaviorSanitizer (which also
# instruments the runtime linked into the binaries the tests compile).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
# deps.sh installed Open MPI: the MPI tests must run, not skip.
export NNC_REQUIRE_MPI=1
jobs="$(nproc)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"
if [ "${NNC_SKIP_SANITIZERS:-0}" != 1 ]; then
  cmake -S . -B build-san -DCMAKE_BUILD_TYPE=Debug -DNNC_SANITIZE=ON >/dev/null
  cmake --build build-san -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-san --output-on-failure -j "$jobs"
fi
