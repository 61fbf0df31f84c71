#!/bin/sh
# The malformed-file corpus (tests/malformed, cases.txt): every file is fed to
# a small model's binary and must give exit code 1 (never a signal, so never
# a crash; the sanitizer pass runs this too) and a message on stderr that
# names the file and matches the case's pattern.
#
# cases.txt: one case a line, "KIND FILE PATTERN" (PATTERN a grep -E
# pattern, the rest of the line); KIND says how FILE is used:
#   images / labels   the IDX training images or labels (the other file good)
#   csv               the CSV training data
#   x / y             the NPY inputs or labels
#   ckpt              a checkpoint for `train --load`
#   predict           the input of `predict`
. "$(dirname "$0")/../lib.sh" "$@"
M=$ROOT/tests/malformed
mkdir -p d
cat >m_idx.nn <<'NN'
model m(x: f32[2, 2]) -> f32[3] {
    return x |> flatten |> dense(3)
}
train m {
    data      = idx("d/images", "d/labels")
    loss      = softmax_cross_entropy
    optimizer = adam(lr = 0.01)
    batch     = 2
    epochs    = 1
}
NN
sed 's|idx("d/images", "d/labels")|csv("d/data.csv")|; s|f32\[2, 2\]|f32[4]|; s/|> flatten //' m_idx.nn >m_csv.nn
sed 's|idx("d/images", "d/labels")|npy("d/x.npy", "d/y.npy")|; s|f32\[2, 2\]|f32[4]|; s/|> flatten //' m_idx.nn >m_npy.nn
for k in idx csv npy; do "$NNC" m_$k.nn -o m_$k; done
cp "$M/good.safetensors" ./

# use KIND FILE: sets up d/ for the case and prints the command to run
run_case() {
  rm -rf d && mkdir d
  cp "$M/good-images.idx" d/images
  cp "$M/good-labels.idx" d/labels
  cp "$M/good-x.npy" d/x.npy
  cp "$M/good-y.npy" d/y.npy
  printf '1,2,3,4,0\n4,3,2,1,2\n' >d/data.csv
  f=$M/$2
  shown=$2
  case $1 in
    images) cp "$f" d/images; set -- ./m_idx train --no-save --quiet; shown=d/images ;;
    labels) cp "$f" d/labels; set -- ./m_idx train --no-save --quiet; shown=d/labels ;;
    csv) cp "$f" d/data.csv; set -- ./m_csv train --no-save --quiet; shown=d/data.csv ;;
    x) cp "$f" d/x.npy; set -- ./m_npy train --no-save --quiet; shown=d/x.npy ;;
    y) cp "$f" d/y.npy; set -- ./m_npy train --no-save --quiet; shown=d/y.npy ;;
    ckpt) set -- ./m_csv train --no-save --quiet --load "$f" ;;
    predict) set -- ./m_csv predict --load good.safetensors "$f" ;;
    *) echo "FAIL: unknown kind '$1'"; exit 1 ;;
  esac
  NNC_DATA=$TMP "$@" >out.txt 2>err.txt
}

n=0
failed=0
while read -r kind file pattern; do
  case $kind in ''|'#'*) continue ;; esac
  n=$((n + 1))
  set +e
  run_case "$kind" "$file"
  rc=$?
  set -e
  msg=$(head -n 1 err.txt)
  if [ "$rc" -ne 1 ]; then
    echo "FAIL: $file ($kind): exit $rc, want 1: $msg"
    failed=$((failed + 1))
  elif ! grep -qF "$shown" err.txt || ! grep -Eq "$pattern" err.txt; then
    echo "FAIL: $file ($kind): stderr lacks '$shown' or /$pattern/:"
    cat err.txt
    failed=$((failed + 1))
  else
    echo "ok: $file: $msg"
  fi
done <"$M/cases.txt"
echo "malformed corpus: $((n - failed)) passed, $failed failed"
[ "$n" -ge 60 ] || { echo "FAIL: only $n cases"; exit 1; }
[ "$failed" -eq 0 ]
