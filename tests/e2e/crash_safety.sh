#!/bin/sh
# Saved work is never lost: a save killed (SIGKILL) at any of its points
# leaves the old or the new checkpoint, whole; a full disk gives a clear
# error and keeps the old one; --save-every N checkpoints mid-epoch, and a
# run killed after such a save resumes to the same weights, bit for bit, as
# one never stopped. (The kill points come from the runtime's test hooks
# NNRT_TEST_KILL_AT and NNRT_TEST_KILL_AFTER_SAVE; see checkpoint.c, run.c.)
. "$(dirname "$0")/../lib.sh" "$@"
cat >m.nn <<'NN'
model m(x: f32[2]) -> f32[1] {
    return x |> dense(32) |> relu |> dense(1)
}
train m {
    data      = inline([[1, 2], [3, 4], [5, 6], [7, 8], [1, 0], [0, 1], [2, 2], [3, 1],
                        [0, 0], [4, 4], [5, 1], [1, 5], [2, 3], [3, 2], [6, 6], [0, 2]],
                       [[1], [2], [3], [4], [1], [0], [2], [2], [0], [4], [3], [3], [2], [2], [6], [1]])
    loss      = mse
    optimizer = adam(lr = 1e-3)
    batch     = 2
    epochs    = 1
}
NN
"$NNC" m.nn -o m
run() { ./m train --threads 1 --quiet "$@" >/dev/null; }
run --save old.safetensors
cp old.safetensors w.safetensors
run --load w.safetensors --save w.safetensors
mv w.safetensors new.safetensors
cmp -s old.safetensors new.safetensors && { echo "FAIL: training changed nothing"; exit 1; }

# 1. SIGKILL at every point of a save: w is always old or new, never torn.
n=0
while :; do
  n=$((n + 1))
  cp old.safetensors w.safetensors
  set +e
  NNRT_TEST_KILL_AT=$n ./m train --threads 1 --quiet --load w.safetensors --save w.safetensors >/dev/null 2>err.txt
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    break  # past the last point: the save completed
  fi
  if [ "$rc" -ne 137 ]; then
    echo "FAIL: kill point $n: exit $rc, want 137 (SIGKILL)"
    cat err.txt
    exit 1
  fi
  if cmp -s w.safetensors old.safetensors; then
    state=old
  elif cmp -s w.safetensors new.safetensors; then
    state=new
  else
    echo "FAIL: kill point $n left a checkpoint that is neither the old nor the new one"
    exit 1
  fi
  # and what is there loads
  ./m eval --load w.safetensors --quiet >/dev/null
  last=$state
done
cmp w.safetensors new.safetensors
points=$((n - 1))
echo "ok: killed at $points points of a save; each left the old or the new checkpoint (the last: $last)"
check "$points" ">=" 100 "kill points"

# 2. A full disk: a tmpfs that holds the old checkpoint and nothing more.
if mkdir -p full && mount -t tmpfs -o size=8k tmpfs full 2>/dev/null; then
  trap 'umount "$TMP/full" 2>/dev/null || true; rm -rf "$TMP"' EXIT
  cp old.safetensors full/w.safetensors
  dd if=/dev/zero of=full/filler bs=1024 count=64 2>/dev/null || true
  expect_error 1 "full/w.safetensors: cannot write \(No space left on device\); the file there is unchanged" \
    ./m train --threads 1 --quiet --load full/w.safetensors --save full/w.safetensors
  cmp full/w.safetensors old.safetensors
  test ! -e full/w.safetensors.tmp
  echo "ok: a full disk keeps the old checkpoint"
  umount full
  trap 'rm -rf "$TMP"' EXIT
else
  echo "skip: cannot mount a tmpfs here (not root?); the full-disk case did not run"
fi
# 3. --save-every 3: killed right after the second save (step 6 of 8 in
# epoch 1), then resumed: the same weights as two epochs never stopped.
run --epochs 2 --save full2.safetensors
set +e
NNRT_TEST_KILL_AFTER_SAVE=2 ./m train --threads 1 --quiet --epochs 2 --save-every 3 --save part.safetensors >/dev/null 2>&1
rc=$?
set -e
test "$rc" -eq 137 || { echo "FAIL: the hook did not kill the run (exit $rc)"; exit 1; }
grep -q '"step":"6"' part.safetensors || { echo "FAIL: the checkpoint is not the one of step 6"; exit 1; }
grep -q '"epoch_examples":"12"' part.safetensors
run --load part.safetensors --save part.safetensors --epochs 2
cmp part.safetensors full2.safetensors
echo "ok: --save-every 3, killed after step 6, resumes bit-exactly"
expect_error 2 "save-every.*not a whole number" ./m train --save-every x
expect_error 2 "save-every and --no-save contradict" ./m train --save-every 2 --no-save
