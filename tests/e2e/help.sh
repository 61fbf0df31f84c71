#!/bin/sh
# --help lists every option the parsers accept (read from their sources),
# and docs/nnc.md and docs/model.md document each; --version names the LLVM.
. "$(dirname "$0")/../lib.sh" "$@"
"$NNC" --help >nnc_help.txt
"$NNC" --version >version.txt
grep -Eq "^nnc [0-9]+\.[0-9]+\.[0-9]+ \(LLVM 19\.[0-9]+\.[0-9]+\)$" version.txt
echo "ok: $(cat version.txt)"
grep -v '^ *//' "$ROOT/compiler/driver.c" | grep -o '"--[a-z-]*' | tr -d '"' | sort -u >nnc_opts.txt
compile xor
./xor --help >model_help.txt
grep -o '{"[a-z-]*", [01],' "$ROOT/runtime/main.c" | sed 's/{"\([a-z-]*\)".*/--\1/' | sort -u >model_opts.txt
check "$(wc -l <nnc_opts.txt)" ">=" 12 "nnc options found in driver.c"
check "$(wc -l <model_opts.txt)" ">=" 15 "binary options found in runtime/main.c"
for o in $(cat nnc_opts.txt); do
  grep -q -- "$o" nnc_help.txt || { echo "FAIL: nnc --help lacks $o"; exit 1; }
  grep -q -- "\`$o" "$ROOT/docs/nnc.md" || { echo "FAIL: docs/nnc.md lacks $o"; exit 1; }
done
for o in $(cat model_opts.txt); do
  grep -q -- "$o" model_help.txt || { echo "FAIL: ./model --help lacks $o"; exit 1; }
  grep -q -- "\`$o" "$ROOT/docs/model.md" || { echo "FAIL: docs/model.md lacks $o"; exit 1; }
done
# Options that take a value or change a default say what the default is.
for o in -O3 --cpu --emit --stdlib --one-object --no-row-groups --profile; do
  grep -A2 -- "$o" nnc_help.txt | grep -q '\[' || { echo "FAIL: nnc --help: no default for $o"; exit 1; }
done
for o in --epochs --batch --seed --limit --save --log --threads --out --count; do
  grep -A2 -- "$o " model_help.txt | grep -q 'default' || { echo "FAIL: ./model --help: no default for $o"; exit 1; }
done
echo "ok: $(wc -l <nnc_opts.txt) nnc options and $(wc -l <model_opts.txt) binary options in --help and docs/"
