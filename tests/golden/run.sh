#!/bin/sh
# run.sh — the golden test runner (POSIX sh; works with dash).
#
#   sh tests/golden/run.sh PATH/TO/nnc [--update]
#
# Runs from tests/golden, so messages read `name.nn:3:5: ...`. For each
# NAME.nn, each expectation beside it is one case:
#   NAME.ast      stdout of `nnc --emit=ast NAME.nn`, which must exit 0
#   NAME.ir       stdout of `nnc --emit=ir NAME.nn`, exit 0
#   NAME.grad     stdout of `nnc --emit=grad NAME.nn`, exit 0
#   NAME.summary  stdout of `nnc --summary NAME.nn`, exit 0
#   NAME.err      stderr of `nnc --emit=ir NAME.nn`, which must exit non-zero
# Prints `[PASS] NAME.ext` or `[FAIL] NAME.ext` with a `diff -u`, then
# `N passed, N failed`; exits 1 if any case failed. With --update, the
# expectations are rewritten from the actual output instead (review them as
# a diff). To add a case, create an empty expectation file and --update.

usage() {
  echo "usage: sh run.sh PATH/TO/nnc [--update]" >&2
  exit 2
}

nnc=
update=0
for arg in "$@"; do
  case $arg in
    --update) update=1 ;;
    -*) usage ;;
    *) [ -z "$nnc" ] || usage; nnc=$arg ;;
  esac
done
[ -n "$nnc" ] || usage

# Resolve nnc before leaving the caller's folder.
given=$nnc
case $nnc in
  /*) ;;
  */*) nnc=$(pwd)/$nnc ;;
  *) nnc=$(command -v "$nnc") || nnc= ;;
esac
if [ -z "$nnc" ] || [ ! -x "$nnc" ]; then
  echo "run.sh: cannot execute '$given'" >&2
  exit 2
fi

cd "$(dirname "$0")" || exit 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/golden.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# A hung compiler fails its case instead of the whole run.
limit=
if command -v timeout >/dev/null 2>&1; then
  limit="timeout 120"
fi

passed=0
failed=0

# check NAME EXT: runs one case and reports it.
check() {
  name=$1
  ext=$2
  case $ext in
    ast) flag=--emit=ast ;;
    ir | err) flag=--emit=ir ;;
    grad) flag=--emit=grad ;;
    summary) flag=--summary ;;
  esac
  $limit "$nnc" "$flag" "$name.nn" >"$tmp/out" 2>"$tmp/errout" </dev/null
  status=$?

  # The output compared, and whether the exit status is the expected one.
  if [ "$ext" = err ]; then
    actual=$tmp/errout
    if [ "$status" -ne 0 ]; then ok=1; else ok=0; fi
    why="exited 0; an error was expected"
  else
    actual=$tmp/out
    if [ "$status" -eq 0 ]; then ok=1; else ok=0; fi
    why="exited with status $status"
  fi
  cp "$actual" "$tmp/$name.$ext"

  if [ "$ok" -eq 0 ]; then
    echo "[FAIL] $name.$ext ($why)"
    sed 's/^/    /' "$tmp/errout"
    failed=$((failed + 1))
  elif [ "$update" -eq 1 ]; then
    if cmp -s "$tmp/$name.$ext" "$name.$ext"; then
      echo "[PASS] $name.$ext"
    else
      cp "$tmp/$name.$ext" "$name.$ext"
      echo "[UPDATED] $name.$ext"
    fi
    passed=$((passed + 1))
  elif diff -u "$name.$ext" "$tmp/$name.$ext" >"$tmp/diff"; then
    echo "[PASS] $name.$ext"
    passed=$((passed + 1))
  else
    echo "[FAIL] $name.$ext"
    cat "$tmp/diff"
    failed=$((failed + 1))
  fi
}

for src in *.nn; do
  [ -f "$src" ] || continue
  name=${src%.nn}
  found=0
  for ext in ast ir grad summary err; do
    if [ -f "$name.$ext" ]; then
      found=1
      check "$name" "$ext"
    fi
  done
  [ "$found" -eq 1 ] || echo "note: $src has no expectation file" >&2
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
