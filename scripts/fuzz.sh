#!/bin/sh
# Fuzzing nnc with libFuzzer (clang-19, ASan + UBSan): the front end
# (tests/fuzz/fuzz_frontend.c) and the runtime's readers of IDX, CSV, NPY
# and safetensors files (fuzz_idx.c, fuzz_csv.c, fuzz_npy.c,
# fuzz_safetensors.c).
#
#   sh scripts/fuzz.sh [--build DIR] build              build the targets
#   sh scripts/fuzz.sh [--build DIR] short [RUNS]       every target, RUNS
#                                                       inputs each (the test
#                                                       suite's campaign)
#   sh scripts/fuzz.sh [--build DIR] run TARGET RUNS [libFuzzer options]
#                                                       a campaign of RUNS
#                                                       executions (-1: until
#                                                       stopped)
#
# DIR defaults to build-fuzz. Seeds: every .nn file of the repository for the
# front end (with tests/fuzz/nn.dict, the language's tokens), and
# tests/fuzz/seeds/TARGET plus the malformed-file corpus tests/malformed/
# for the readers. A campaign grows its corpus in DIR/corpus/TARGET (not
# committed) and writes what crashed to DIR/crashes/; the last line of its
# log DIR/TARGET.log says how many runs were done. A crash found becomes a
# golden case (tests/golden) or a malformed-corpus file (tests/malformed).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
if [ "${1:-}" = "--build" ]; then
  mkdir -p "$2"
  build=$(cd "$2" && pwd)
  shift 2
fi
cmd=${1:-}
[ -n "$cmd" ] || { sed -n '2,22p' "$0" >&2; exit 2; }
shift

targets="frontend idx csv npy safetensors"

do_build() {
  command -v clang-19 >/dev/null || { echo "fuzz.sh: clang-19 not found (sh scripts/deps.sh)" >&2; exit 1; }
  CC=clang-19 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNNC_FUZZ=ON >/dev/null
  # shellcheck disable=SC2046
  cmake --build "$build" -j "$(nproc)" $(for t in $targets; do printf -- '--target fuzz_%s ' "$t"; done) >/dev/null
}

# seeds TARGET: a folder holding the target's seed files
seeds() {
  s=$build/seeds/$1
  rm -rf "$s"
  mkdir -p "$s"
  if [ "$1" = frontend ]; then
    n=0
    for f in $(cd "$root" && git ls-files '*.nn' 2>/dev/null || find . -name '*.nn'); do
      n=$((n + 1))
      cp "$root/$f" "$s/$n.nn"
    done
    [ -d "$root/tests/fuzz/seeds/frontend" ] && cp "$root"/tests/fuzz/seeds/frontend/* "$s/" 2>/dev/null || true
  else
    cp "$root/tests/fuzz/seeds/$1"/* "$s/"
    # the malformed corpus, each file behind a mode byte and a length
    # (fuzz_util.h) that put it whole in the first file
    if [ -d "$root/tests/malformed" ]; then
      for f in "$root"/tests/malformed/*; do
        [ -f "$f" ] || continue
        case $f in *.sh|*.nn|*.expect) continue ;; esac
        { printf '\000\377\377'; cat "$f"; } >"$s/m-$(basename "$f")"
      done
    fi
  fi
  echo "$s"
}

# options TARGET: libFuzzer options of the target
options() {
  o="-timeout=10 -rss_limit_mb=2048 -print_final_stats=1"
  if [ "$1" = frontend ]; then
    o="$o -dict=$root/tests/fuzz/nn.dict -max_len=4096"
  else
    o="$o -max_len=16384"
  fi
  echo "$o"
}

run() {
  t=$1
  runs=$2
  shift 2
  s=$(seeds "$t")
  corpus=$build/corpus/$t
  mkdir -p "$corpus" "$build/crashes"
  # shellcheck disable=SC2046
  "$build/fuzz_$t" $(options "$t") -runs="$runs" \
    -artifact_prefix="$build/crashes/$t-" "$@" "$corpus" "$s"
}

case $cmd in
  build)
    do_build
    ;;
  short)
    runs=${1:-2000}
    do_build
    cd "$build"
    fail=0
    for t in $targets; do
      # a fresh corpus and a fixed seed: the suite does the same work each run
      rm -rf "$build/corpus/$t"
      if run "$t" "$runs" -seed=1 >"$build/$t.log" 2>&1; then
        echo "ok: fuzz_$t: $(grep -E '^(Done|stat::number_of_executed_units)' "$build/$t.log" | tail -n 1)"
      else
        echo "FAIL: fuzz_$t (log: $build/$t.log)"
        tail -n 40 "$build/$t.log"
        fail=1
      fi
    done
    exit $fail
    ;;
  run)
    [ $# -ge 2 ] || { echo "usage: fuzz.sh run TARGET RUNS [libFuzzer options]" >&2; exit 2; }
    t=$1
    case " $targets " in *" $t "*) ;; *) echo "fuzz.sh: unknown target '$t' ($targets)" >&2; exit 2 ;; esac
    do_build
    cd "$build"
    run "$@"
    ;;
  *)
    echo "fuzz.sh: unknown command '$cmd' (build, short, run)" >&2
    exit 2
    ;;
esac
