#!/bin/sh
# --emit=dot: LeNet's forward graph has a cluster per layer instance holding
# its parameters, shapes on the edges and nothing of the loss; --emit=dot-grad
# adds the loss and the backward pass with a gradient edge per parameter.
# Graphviz must accept both (rendered to SVG and parsed back).
. "$(dirname "$0")/../lib.sh" "$@"
"$NNC" --emit=dot "$ROOT/examples/lenet.nn" -o lenet.dot
"$NNC" --emit=dot-grad "$ROOT/examples/lenet.nn" >lenet_grad.dot
for l in conv2d_1 conv2d_2 maxpool2d_1 maxpool2d_2 dense_1 dense_2 dense_3; do
  grep -q "label=\"$l\";" lenet.dot || { echo "FAIL: no cluster $l"; exit 1; }
done
grep -q 'v[0-9]* -> v[0-9]* \[label="\[B, 6, 28, 28\]"\]' lenet.dot
grep -q '\[label="\[B, 16, 5, 5\]"\]' lenet.dot
! grep -q "= loss" lenet.dot
grep -q "= loss" lenet_grad.dot && grep -q "= objective" lenet_grad.dot
check "$(grep -c 'label="grad"' lenet_grad.dot)" "=" 10 "a gradient edge per parameter"
check "$(grep -c backward lenet_grad.dot)" ">" 0 "backward clusters"
echo "ok: clusters, shapes and gradients in the DOT text"
if command -v dot >/dev/null; then
  dot -Tsvg lenet.dot -o lenet.svg
  dot -Tsvg lenet_grad.dot -o lenet_grad.svg
  python3 - lenet.svg <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
kinds = [g.get("class") for g in root.iter(ns + "g")]
clusters, nodes, edges = (kinds.count(k) for k in ("cluster", "node", "edge"))
assert clusters == 7 and nodes > 20 and edges > 20, (clusters, nodes, edges)
print("ok: Graphviz draws %d clusters, %d nodes, %d edges" % (clusters, nodes, edges))
PY
else
  echo "skip: no Graphviz (scripts/deps.sh installs graphviz)"
fi
# A model without a train block has a forward graph but no backward one.
"$NNC" --emit=dot "$ROOT/tests/golden/ir-conv-shapes.nn" | grep -q "^digraph"
expect_error 1 "nothing to train" "$NNC" --emit=dot-grad "$ROOT/tests/golden/ir-conv-shapes.nn"
