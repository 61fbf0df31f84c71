#!/bin/sh
# The classic single units: perceptron, ADALINE, logistic and softmax regression.
. "$(dirname "$0")/../lib.sh" "$@"
compile perceptron
./perceptron train --json --quiet --no-save >p.json
check "$(json_last accuracy p.json)" ">=" 1 "perceptron separates a separable set"
honest p.json "perceptron"

compile adaline
./adaline train --limit 2000 --epochs 1 --json --quiet --no-save >a.json
check "$(json_last test_accuracy a.json)" ">" 0.90 "adaline trousers vs bags"
honest a.json "adaline"

compile logistic
./logistic train --limit 4000 --epochs 2 --json --quiet --no-save >l.json
check "$(json_last test_accuracy l.json)" ">" 0.90 "logistic sneakers vs ankle boots"
check "$(json_last loss l.json)" "<" "$(json_first loss l.json)" "logistic loss falls"
honest l.json "logistic"

compile softmax_regression
./softmax_regression train --limit 10000 --epochs 2 --json --quiet --no-save >s.json
check "$(json_last test_accuracy s.json)" ">" 0.75 "softmax regression"
