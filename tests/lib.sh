# tests/lib.sh — shared by the end-to-end tests (sourced, not run).
# Usage in a test: . "$(dirname "$0")/../lib.sh" "$@"   (first argument: nnc)
set -eu
NNC=$(realpath "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"

# compile NAME [nnc options]: examples/NAME.nn -> ./NAME
compile() {
  name=$1
  shift
  "$NNC" "$ROOT/examples/$name.nn" -o "$name" "$@"
}

# json_last KEY FILE: KEY's number in the last JSON line of FILE
json_last() {
  grep '^{' "$2" | tail -n 1 | sed -n "s/.*\"$1\": *\([-0-9.eE+]*\).*/\1/p"
}

# json_first KEY FILE: KEY's number in the first JSON line of FILE
json_first() {
  grep '^{' "$2" | head -n 1 | sed -n "s/.*\"$1\": *\([-0-9.eE+]*\).*/\1/p"
}

# json_all KEY FILE: KEY's number in every JSON line of FILE, one a line
json_all() {
  grep '^{' "$2" | sed -n "s/.*\"$1\": *\([-0-9.eE+]*\).*/\1/p"
}

# honest LOG WHAT: every epoch of LOG (--json) whose accuracy is below 1
# reports a loss above 0 (a loss never says all is well while examples are
# misclassified).
honest() {
  json_all loss "$1" >honest_loss.txt
  json_all accuracy "$1" >honest_acc.txt
  [ -s honest_loss.txt ] || { echo "FAIL: $2: no epochs in $1"; exit 1; }
  if ! paste honest_loss.txt honest_acc.txt |
       awk '$2 < 1 && $1 <= 0 { bad = 1 } END { exit bad }'; then
    echo "FAIL: $2: a loss of 0 for an epoch that misclassified examples"
    paste honest_loss.txt honest_acc.txt
    exit 1
  fi
  echo "ok: $2: no loss of 0 while examples are misclassified"
}

# check A OP B WHAT: numeric comparison (OP is <, <=, >, >=, =), fails the test
check() {
  if awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN {
       if (a == "") exit 1
       if (op == "<")  exit !(a + 0 <  b + 0)
       if (op == "<=") exit !(a + 0 <= b + 0)
       if (op == ">")  exit !(a + 0 >  b + 0)
       if (op == ">=") exit !(a + 0 >= b + 0)
       if (op == "=")  exit !(a + 0 == b + 0)
       exit 1 }'; then
    echo "ok: $4: $1 $2 $3"
  else
    echo "FAIL: $4: got '$1', want $2 $3"
    exit 1
  fi
}

# expect_error CODE PATTERN CMD...: CMD must exit with CODE (never a signal)
# and print PATTERN (a grep -E pattern) on stderr.
expect_error() {
  code=$1
  pattern=$2
  shift 2
  set +e
  "$@" >out.txt 2>err.txt
  rc=$?
  set -e
  if [ "$rc" -ne "$code" ]; then
    echo "FAIL: '$*' exited $rc, want $code"
    cat err.txt
    exit 1
  fi
  if ! grep -Eq "$pattern" err.txt; then
    echo "FAIL: '$*' stderr lacks /$pattern/:"
    cat err.txt
    exit 1
  fi
  echo "ok: '$*' -> $rc: $(head -n 1 err.txt)"
}

# safetensor FILE NAME: the F32 tensor NAME of a safetensors file, one value
# per line (read with od from the header's data_offsets).
safetensor() {
  hlen=$(od -A n -t u8 -N 8 "$1" | tr -d ' ')
  offs=$(dd if="$1" bs=1 skip=8 count="$hlen" 2>/dev/null |
         sed -n "s/.*\"$2\":{[^}]*\"data_offsets\":\[\([0-9]*\),\([0-9]*\)\].*/\1 \2/p")
  set -- "$1" $offs
  od -A n -v -t f4 -j $((8 + hlen + $2)) -N $(($3 - $2)) "$1" | tr -s ' ' '\n' | sed '/^$/d'
}
