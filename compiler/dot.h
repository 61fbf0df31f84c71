// dot.h — Graphviz output of the model's graphs (dot.c).
#ifndef NNC_DOT_H
#define NNC_DOT_H

#include <stdio.h>

#include "ir.h"

// The forward graph (with_grad false: what the prediction depends on), or
// the whole training graph with the backward pass (with_grad true).
void dot_write(FILE *out, const IrModule *m, bool with_grad);

#endif
