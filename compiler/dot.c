// dot.c — the model's graphs for Graphviz (`--emit=dot`, `--emit=dot-grad`).
//
// The forward graph is what the prediction depends on: one node per IR
// value (constants are folded into their users' labels), one cluster per
// layer instance (IrValue.layer, set by sema: the innermost layer whose call
// built the value), and on every edge the shape of the value it carries ("B"
// is the batch axis). The gradient graph adds the loss, the metrics and the
// backward pass (drawn in another colour): each backward value sits in a
// cluster "LAYER backward" of the forward value at its source position (the
// adjoint rules place their ops at the primal's location), and each
// parameter's gradient gets a dashed edge to its parameter.
#include <string.h>

#include "dot.h"

static void mark(bool *set, const IrValue *v) {
  if (v)
    set[v->id] = true;
}


static bool same_loc(Loc a, Loc b) {
  return a.line == b.line && a.col == b.col && a.file && b.file &&
         strcmp(a.file, b.file) == 0;
}

// Text for a DOT double-quoted string (labels keep their "\n" escapes).
static void quoted(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    if (*s == '"')
      fputc('\\', out);
    fputc(*s, out);
  }
  fputc('"', out);
}

static void node_label(FILE *out, const IrModule *m, const IrValue *v) {
  Arena *a = m->fn->arena;
  const char *label = prims[v->op].name;
  if (v->op == OP_PARAM)
    label = ((IrParam *)m->params.item[v->attr.index])->name;
  else if (v->op == OP_INPUT || v->op == OP_LABEL)
    label = v->name ? arena_printf(a, "%s (%s)", prims[v->op].name, v->name)
                    : prims[v->op].name;
  // Constant arguments in the label: "mul 0.5"
  for (int j = 0; j < v->narg; j++)
    if (v->arg[j]->op == OP_CONST)
      label = arena_printf(a, "%s %g", label, v->arg[j]->attr.num);
  if (v == m->output)
    label = arena_printf(a, "%s\\n= output", label);
  else if (m->nsteps && v == m->steps[0].objective)
    label = arena_printf(a, "%s\\n= objective", label);
  else if (v == m->loss)
    label = arena_printf(a, "%s\\n= loss", label);
  else if (v == m->correct)
    label = arena_printf(a, "%s\\n= correct", label);
  fprintf(out, "label=");
  quoted(out, label);
}

void dot_write(FILE *out, const IrModule *m, bool with_grad) {
  const IrFn *fn = m->fn;
  Arena *a = fn->arena;
  int n = fn->values.n;
  bool *fwd = arena_alloc(a, (size_t)n), *show = arena_alloc(a, (size_t)n);
  mark(fwd, m->output);
  ir_close_deps(fn, fwd);
  memcpy(show, fwd, (size_t)n);
  if (with_grad) {
    mark(show, m->loss);
    for (int i = 0; i < m->nsteps; i++)
      mark(show, m->steps[i].objective);
    mark(show, m->correct);
    for (int i = 0; i < m->params.n; i++)
      mark(show, ((IrParam *)m->params.item[i])->grad);
    ir_close_deps(fn, show);
  }
  bool *primal = arena_alloc(a, (size_t)n); // forward, loss and metrics
  mark(primal, m->output);
  mark(primal, m->loss);
  for (int i = 0; i < m->nsteps; i++)
    mark(primal, m->steps[i].objective);
  mark(primal, m->correct);
  ir_close_deps(fn, primal);
  // Each shown value's cluster name (NULL: none).
  const char **cl = arena_alloc(a, sizeof *cl * (size_t)n);
  for (int i = 0; i < n; i++) {
    const IrValue *v = fn->values.item[i];
    if (!show[i] || v->op == OP_CONST)
      continue;
    if (primal[i] || v->op == OP_PARAM || v->op == OP_INPUT ||
        v->op == OP_LABEL) {
      cl[i] = v->layer;
      continue;
    }
    for (int j = 0; j < n && !cl[i]; j++) { // backward: its primal's layer
      const IrValue *u = fn->values.item[j];
      if (primal[j] && u->layer && same_loc(u->loc, v->loc))
        cl[i] = arena_printf(a, "%s backward", u->layer);
    }
  }
  fprintf(out,
          "digraph \"%s%s\" {\n  rankdir=TB; fontname=\"Helvetica\";\n"
          "  node [shape=box, style=\"rounded,filled\", fillcolor=white, "
          "fontname=\"Helvetica\", fontsize=11];\n"
          "  edge [fontname=\"Helvetica\", fontsize=9];\n",
          m->name, with_grad ? " (with gradients)" : "");
  // Clusters in order of first appearance, then the unclustered nodes.
  bool *done = arena_alloc(a, (size_t)n);
  int ncl = 0;
  for (int i = 0; i <= n; i++) {
    const char *c = i < n ? cl[i] : NULL;
    if (i < n && (!c || done[i]))
      continue;
    if (c)
      fprintf(out, "  subgraph cluster_%d {\n    label=", ncl++);
    if (c) {
      quoted(out, c);
      fprintf(out, ";\n    style=\"rounded,filled\"; fillcolor=\"%s\";\n",
              strstr(c, " backward") ? "#fde9e4" : "#e8f0fb");
    }
    for (int j = 0; j < n; j++) {
      const IrValue *v = fn->values.item[j];
      if (!show[j] || v->op == OP_CONST || done[j])
        continue;
      if (c ? !cl[j] || strcmp(cl[j], c) != 0 : cl[j] != NULL)
        continue;
      done[j] = true;
      fprintf(out, "%s  v%d [", c ? "  " : "", j);
      node_label(out, m, v);
      if (v->op == OP_PARAM)
        fprintf(out, ", fillcolor=\"#fff3c4\"");
      else if (v->op == OP_INPUT || v->op == OP_LABEL)
        fprintf(out, ", shape=ellipse, fillcolor=\"#dff5df\"");
      else if (!primal[j])
        fprintf(out, ", color=\"#c0392b\"");
      fprintf(out, "];\n");
    }
    if (c)
      fprintf(out, "  }\n");
  }
  for (int j = 0; j < n; j++) {
    const IrValue *v = fn->values.item[j];
    if (!show[j] || v->op == OP_CONST)
      continue;
    for (int k = 0; k < v->narg; k++) {
      const IrValue *u = v->arg[k];
      if (u->op == OP_CONST)
        continue;
      fprintf(out, "  v%d -> v%d [label=", u->id, j);
      quoted(out, shape_str(a, u->shape, u->batched) + 3);
      fprintf(out, "%s];\n", primal[j] ? "" : ", color=\"#c0392b\"");
    }
  }
  if (with_grad)
    for (int i = 0; i < m->params.n; i++) {
      const IrParam *p = m->params.item[i];
      if (p->grad && p->grad->op != OP_CONST)
        fprintf(out,
                "  v%d -> v%d [style=dashed, label=\"grad\", "
                "constraint=false, color=\"#c0392b\"];\n",
                p->grad->id, p->value->id);
    }
  fprintf(out, "}\n");
}
