// ir_loop.c — building and printing recurrences: the LOOP primitive (see
// IrLoop in ir.h).
//
// A LOOP value is one SSA value of the module's function whose attr.loop
// holds a body function of its own: the body is built once, whatever the
// number of steps T, so the IR (and the code generated from it) does not
// grow with the sequence length. The operands of the loop are the LOOP
// value's ordinary arguments, so every pass that follows arguments (use
// counts, liveness, the simplifier's rewiring, dead code elimination) sees
// them; the body reads them only through its LOOP_SEQ / LOOP_CARRY /
// LOOP_OUTER leaves. The one result is the record [T, R]: the recorded body
// values of every step, side by side; ir_loop_stack and ir_loop_at take
// them apart with SLICE and RESHAPE.
// open_memstream is POSIX 2008 (the build defines _GNU_SOURCE)
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

IrLoop *ir_loop_new(Arena *a, int64_t T, bool reverse) {
  IrLoop *l = arena_alloc(a, sizeof *l);
  l->body = ir_fn_new(a);
  l->T = T;
  l->reverse = reverse;
  return l;
}

int ir_loop_nargs(const IrLoop *l) { return l->nseq + l->ncarry + l->nouter; }

static IrValue *body_leaf(IrLoop *l, Op op, Shape s, bool batched, int index,
                          Loc loc) {
  assert(ir_loop_nargs(l) < MAX_ARGS && "sema bounds a loop's operands");
  return ir_leaf(l->body, op, s, batched, index, NULL, loc);
}

// The shape of one row of a stacked [T, ...] value.
static Shape row_shape(Shape s) {
  Shape r = {.rank = s.rank - 1};
  for (int i = 1; i < s.rank; i++)
    r.dim[i - 1] = s.dim[i];
  return r;
}

IrValue *ir_loop_seq(IrLoop *l, IrValue *x, Loc loc) {
  assert(x->shape.rank >= 1 && x->shape.dim[0] == l->T);
  IrValue *leaf =
      body_leaf(l, OP_LOOP_SEQ, row_shape(x->shape), x->batched, l->nseq, loc);
  l->seq[l->nseq] = x;
  l->leaf_seq[l->nseq++] = leaf;
  return leaf;
}

IrValue *ir_loop_carry(IrLoop *l, IrValue *init, Loc loc) {
  assert(init->batched && "a carry is batched");
  IrValue *leaf =
      body_leaf(l, OP_LOOP_CARRY, init->shape, true, l->ncarry, loc);
  l->init[l->ncarry] = init;
  l->leaf_carry[l->ncarry++] = leaf;
  return leaf;
}

IrValue *ir_loop_outer(IrLoop *l, IrValue *x, Loc loc) {
  IrValue *leaf =
      body_leaf(l, OP_LOOP_OUTER, x->shape, x->batched, l->nouter, loc);
  l->outer[l->nouter] = x;
  l->leaf_outer[l->nouter++] = leaf;
  return leaf;
}

IrValue *ir_loop_index(IrLoop *l, Loc loc) {
  if (!l->leaf_index)
    l->leaf_index = ir_leaf(l->body, OP_LOOP_INDEX, shape_scalar(), false, 0,
                            NULL, loc);
  return l->leaf_index;
}

int ir_loop_record(IrLoop *l, IrValue *v) {
  assert(v->batched && "a recorded value is batched");
  Arena *a = l->body->arena;
  if (l->nrec == l->rec_cap) {
    int cap = l->rec_cap ? 2 * l->rec_cap : 8;
    IrValue **rec = arena_alloc(a, sizeof *rec * (size_t)cap);
    int64_t *off = arena_alloc(a, sizeof *off * (size_t)cap);
    if (l->nrec) {
      memcpy(rec, l->rec, sizeof *rec * (size_t)l->nrec);
      memcpy(off, l->rec_off, sizeof *off * (size_t)l->nrec);
    }
    l->rec = rec, l->rec_off = off, l->rec_cap = cap;
  }
  l->rec[l->nrec] = v;
  l->rec_off[l->nrec] = l->R;
  l->R += shape_numel(v->shape);
  return l->nrec++;
}

IrValue *ir_loop_finish(IrFn *fn, IrLoop *l, IrValue **next, Loc loc) {
  for (int k = 0; k < l->ncarry; k++) {
    assert(shape_eq(next[k]->shape, l->leaf_carry[k]->shape) &&
           next[k]->batched);
    l->next[k] = next[k];
  }
  if (!l->nrec_user)
    l->nrec_user = l->nrec;
  IrValue *args[MAX_ARGS] = {0};
  int n = 0;
  for (int i = 0; i < l->nseq; i++)
    args[n++] = l->seq[i];
  for (int i = 0; i < l->ncarry; i++)
    args[n++] = l->init[i];
  for (int i = 0; i < l->nouter; i++)
    args[n++] = l->outer[i];
  // ir_prim knows the LOOP as a primitive of no arguments; its operands
  // are set here, after the shape rule ran.
  IrValue *v = ir_prim(fn, OP_LOOP, args, (Attr){.loop = l}, loc);
  v->narg = n;
  for (int i = 0; i < n; i++)
    v->arg[i] = args[i];
  return v;
}

void ir_loop_reshape(IrValue *loop) {
  IrLoop *l = loop->attr.loop;
  loop->shape = shape_of(2, (int64_t[]){l->T, l->R});
}

IrValue *ir_loop_stack(IrFn *fn, IrValue *loop, int i, Loc loc) {
  const IrLoop *l = loop->attr.loop;
  const IrValue *r = l->rec[i];
  int64_t n = shape_numel(r->shape);
  IrValue *s = ir_prim(fn, OP_SLICE, (IrValue *[MAX_ARGS]){loop},
                       (Attr){.axis = 1, .start = l->rec_off[i],
                              .shape = shape_of(2, (int64_t[]){l->T, n})},
                       loc);
  if (r->shape.rank == 1)
    return s;
  Shape to = {.rank = r->shape.rank + 1, .dim = {l->T}};
  for (int k = 0; k < r->shape.rank; k++)
    to.dim[k + 1] = r->shape.dim[k];
  return ir_shaped(fn, OP_RESHAPE, s, to, true, loc);
}

IrValue *ir_loop_at(IrFn *fn, IrValue *loop, int i, int64_t t, Loc loc) {
  const IrLoop *l = loop->attr.loop;
  const IrValue *r = l->rec[i];
  int64_t n = shape_numel(r->shape);
  IrValue *s = ir_prim(fn, OP_SLICE, (IrValue *[MAX_ARGS]){loop},
                       (Attr){.axis = 0, .start = t,
                              .shape = shape_of(2, (int64_t[]){1, l->R})},
                       loc);
  s = ir_prim(fn, OP_SLICE, (IrValue *[MAX_ARGS]){s},
              (Attr){.axis = 1, .start = l->rec_off[i],
                     .shape = shape_of(2, (int64_t[]){1, n})},
              loc);
  return ir_shaped(fn, OP_RESHAPE, s, r->shape, true, loc);
}

bool ir_loop_same(const IrLoop *a, const IrLoop *b) {
  if (a->T != b->T || a->reverse != b->reverse || a->bptt != b->bptt ||
      a->nseq != b->nseq || a->ncarry != b->ncarry ||
      a->nouter != b->nouter || a->nrec != b->nrec || a->R != b->R ||
      a->nrec_user != b->nrec_user ||
      a->body->values.n != b->body->values.n)
    return false;
  for (int i = 0; i < a->body->values.n; i++) {
    const IrValue *x = a->body->values.item[i], *y = b->body->values.item[i];
    if (x->op != y->op || x->narg != y->narg || !shape_eq(x->shape, y->shape) ||
        x->batched != y->batched)
      return false;
    for (int j = 0; j < x->narg; j++)
      if (x->arg[j]->id != y->arg[j]->id)
        return false;
    // Arguments compared by position above; the attributes here.
    IrValue xa = *x, ya = *y;
    xa.narg = ya.narg = 0;
    if (!ir_same(&xa, &ya))
      return false;
  }
  for (int k = 0; k < a->ncarry; k++)
    if (a->next[k]->id != b->next[k]->id)
      return false;
  for (int i = 0; i < a->nrec; i++)
    if (a->rec[i]->id != b->rec[i]->id)
      return false;
  return true;
}

int64_t ir_loop_last(const IrLoop *l) { return l->reverse ? 0 : l->T - 1; }

// ---- printing -------------------------------------------------------------------
// The loop's header (steps, direction, operands by kind) and its body,
// indented by four more spaces, with the carries' next values and the
// records' columns.
void ir_print_loop(FILE *out, const IrValue *v) {
  const IrLoop *l = v->attr.loop;
  fprintf(out, "    loop T %lld %s seq %d carry %d outer %d",
          (long long)l->T, l->reverse ? "reverse" : "forward", l->nseq,
          l->ncarry, l->nouter);
  if (l->bptt)
    fprintf(out, " bptt %lld", (long long)l->bptt);
  fputs(" {\n", out);
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  if (mem) {
    ir_print_fn(mem, l->body);
    fclose(mem);
    for (char *line = buf; line && *line;) {
      char *nl = strchr(line, '\n');
      size_t n = nl ? (size_t)(nl - line) : strlen(line);
      fprintf(out, "    %.*s\n", (int)n, line);
      line = nl ? nl + 1 : line + n;
    }
    free(buf);
  }
  for (int k = 0; k < l->ncarry; k++)
    fprintf(out, "      carry #%d <- %%%d\n", k, l->next[k]->id);
  for (int i = 0; i < l->nrec; i++)
    fprintf(out, "      record %%%d at %lld%s\n", l->rec[i]->id,
            (long long)l->rec_off[i], i < l->nrec_user ? "" : "  (saved)");
  fputs("    }\n", out);
}
