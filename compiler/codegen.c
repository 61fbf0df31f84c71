// codegen.c — the LLVM module for one IrModule: target setup, the workspace
// plan, the generated entry points, the runtime's descriptor table, the pass
// pipeline and emission (object, assembly or textual IR).
//
// Consumes an optimized, fused IrModule (values numbered in order, every
// parameter with its gradient) and produces one module defining
//   nnc_train  the training loop: epochs, batches, forward, loss, backward
//              kernels and the optimizer update, calling the runtime back;
//   nnc_infer  the forward pass (and, given labels, loss and metrics);
//   nnc_model  the NnrtModel table of runtime/nnrt.h;
//   main       which hands over to nnrt_main.
// Per-value kernels come from codegen_kernels.c. Invariants: every buffer is
// planned here at compile time (nothing is allocated in the loop); each
// materialized value owns a 16-float-aligned workspace region that no other
// value shares, which is what makes the kernels' noalias arguments true.
// All LLVM objects are created and disposed inside codegen_emit.
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen_internal.h"
#include "nnrt.h"

// The generated table must match runtime/nnrt.h; the enums are shared by
// value.
_Static_assert(MAX_RANK == NNRT_MAX_RANK, "rank limits differ");
_Static_assert((int)INIT_HE_NORMAL == (int)NNRT_INIT_HE_NORMAL &&
                   (int)INIT_XAVIER_UNIFORM == (int)NNRT_INIT_XAVIER_UNIFORM,
               "InitKind and NnrtInit differ");
_Static_assert((int)DATA_INLINE == (int)NNRT_DATA_INLINE &&
                   (int)DATA_CSV == (int)NNRT_DATA_CSV,
               "DataKind and NnrtDataKind differ");
_Static_assert(sizeof(NnrtModel) == 8 * (21 + NNRT_MAX_RANK + 2 * 11),
               "NnrtModel changed: update build_model");

// ---- which values are live, inline or stored --------------------------------
static void mark_root(bool *set, const IrValue *v) {
  if (v)
    set[v->id] = true;
}

// Closes a set of roots over arguments (values are in topological order).
static void close_live(const IrFn *fn, bool *live) {
  for (int i = fn->values.n - 1; i >= 0; i--) {
    const IrValue *v = fn->values.item[i];
    if (live[i])
      for (int a = 0; a < v->narg; a++)
        live[v->arg[a]->id] = true;
  }
}

// Where a value lives. Only ST_ROW and ST_FIXED values get a kernel.
typedef enum Store {
  ST_NONE,  // computed inline wherever it is used
  ST_PARAM, // params + the parameter's offset
  ST_INPUT, // the batch inputs (train: workspace; infer: argument x)
  ST_LABEL, // the batch labels (train: workspace; infer: argument y)
  ST_ALIAS, // RESHAPE: its argument's buffer
  ST_ROW,   // workspace, per-row part: off x max_batch
  ST_FIXED, // workspace, fixed part after all per-row regions
} Store;

// The workspace plan of one entry point, in floats. The workspace is
// [per-row regions x max_batch][fixed regions]; every region starts on a
// 16-float (64-byte) boundary when ws does. Simple: one region per value,
// no reuse. This is the one place to make smarter.
typedef struct Plan {
  Store *st;              // per value id
  int64_t *off;           // ST_ROW / ST_FIXED: region offset in its part
  int64_t *scr;           // kernel scratch: offset in the fixed part, or -1
  int64_t per_row, fixed; // sizes of the two parts
  int64_t x_off, y_off;   // train: batch inputs and labels (per-row part)
} Plan;

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

static void plan_storage(Cg *cg, Plan *p, const bool *live, bool batch_io) {
  const IrModule *m = cg->m;
  int n = m->fn->values.n;
  p->st = arena_alloc(cg->arena, sizeof *p->st * (size_t)n);
  p->off = arena_alloc(cg->arena, sizeof *p->off * (size_t)n);
  p->scr = arena_alloc(cg->arena, sizeof *p->scr * (size_t)n);
  p->per_row = p->fixed = 0;
  p->x_off = p->y_off = -1;
  if (batch_io) {
    p->x_off = 0;
    p->per_row = round16(m->input ? shape_numel(m->input->shape) : 0);
    p->y_off = p->per_row;
    p->per_row += round16(m->label ? shape_numel(m->label->shape) : 0);
  }
  for (int i = 0; i < n; i++) {
    const IrValue *v = m->fn->values.item[i];
    if (!live[i] || cg->inl[i]) {
      p->st[i] = ST_NONE;
      continue;
    }
    switch (v->op) {
    case OP_PARAM:
      p->st[i] = ST_PARAM;
      break;
    case OP_INPUT:
      p->st[i] = ST_INPUT;
      break;
    case OP_LABEL:
      p->st[i] = ST_LABEL;
      break;
    case OP_RESHAPE:
      p->st[i] = ST_ALIAS;
      break;
    default:
      if (v->batched) {
        p->st[i] = ST_ROW;
        p->off[i] = p->per_row;
        p->per_row += round16(shape_numel(v->shape));
      } else {
        p->st[i] = ST_FIXED;
        p->off[i] = p->fixed;
        p->fixed += round16(shape_numel(v->shape));
      }
    }
  }
  for (int i = 0; i < n; i++) {
    int64_t sn = p->st[i] == ST_ROW || p->st[i] == ST_FIXED
                     ? kernel_scratch(cg, m->fn->values.item[i])
                     : 0;
    p->scr[i] = sn > 0 ? p->fixed : -1;
    p->fixed += round16(sn);
  }
}

// ---- entry-point frames: buffer pointers of one generated function ----------
typedef struct Frame {
  const Plan *plan;
  const int64_t *poff; // float offset of each parameter in `params`
  LLVMValueRef params, ws, max_batch, x, y, rows;
  LLVMValueRef *ptr; // per value id, once computed
} Frame;

// The fixed part of the workspace at float offset off.
static LLVMValueRef fixed_ptr(Cg *cg, Frame *f, int64_t off) {
  return cg_gep(cg, f->ws,
                cg_add(cg, cg_mul(cg, f->max_batch, cg_i64(cg, f->plan->per_row)),
                       cg_i64(cg, off)));
}

static LLVMValueRef value_ptr(Cg *cg, Frame *f, const IrValue *v) {
  if (f->ptr[v->id])
    return f->ptr[v->id];
  const Plan *p = f->plan;
  LLVMValueRef r = NULL;
  switch (p->st[v->id]) {
  case ST_NONE:
    assert(!"value has no buffer");
    break;
  case ST_PARAM:
    r = cg_gep(cg, f->params, cg_i64(cg, f->poff[v->attr.index]));
    break;
  case ST_INPUT:
    r = f->x;
    break;
  case ST_LABEL:
    r = f->y;
    break;
  case ST_ALIAS:
    r = value_ptr(cg, f, v->arg[0]);
    break;
  case ST_ROW:
    r = cg_gep(cg, f->ws, cg_mul(cg, f->max_batch, cg_i64(cg, p->off[v->id])));
    break;
  case ST_FIXED:
    r = fixed_ptr(cg, f, p->off[v->id]);
    break;
  }
  return f->ptr[v->id] = r;
}

// Computes every buffer pointer up front, so they sit in the entry block.
static void frame_pointers(Cg *cg, Frame *f, const bool *live) {
  f->ptr = arena_alloc(cg->arena, sizeof *f->ptr * (size_t)cg->m->fn->values.n);
  for (int i = 0; i < cg->m->fn->values.n; i++)
    if (live[i] && f->plan->st[i] != ST_NONE)
      value_ptr(cg, f, cg->m->fn->values.item[i]);
}

// Calls the kernels of every stored value in `set`, in order.
static void call_kernels(Cg *cg, Frame *f, const bool *set) {
  for (int i = 0; i < cg->m->fn->values.n; i++) {
    const IrValue *v = cg->m->fn->values.item[i];
    if (!set[i] || (f->plan->st[i] != ST_ROW && f->plan->st[i] != ST_FIXED))
      continue;
    const Kernel *k = kernel_get(cg, v);
    int n = k->nin + 2 + k->scratch;
    LLVMValueRef *args = arena_alloc(cg->arena, sizeof *args * (size_t)n);
    args[0] = value_ptr(cg, f, v);
    for (int a = 0; a < k->nin; a++)
      args[a + 1] = value_ptr(cg, f, k->in[a]);
    if (k->scratch) {
      assert(f->plan->scr[i] >= 0);
      args[k->nin + 1] = fixed_ptr(cg, f, f->plan->scr[i]);
    }
    args[n - 1] = f->rows;
    LLVMBuildCall2(cg->b, k->ty, k->fn, args, (unsigned)n, "");
  }
}

// A scalar root as a double (0 when absent).
static LLVMValueRef load_scalar(Cg *cg, Frame *f, const IrValue *v) {
  if (!v)
    return LLVMConstReal(cg->t_f64, 0);
  assert(shape_numel(v->shape) == 1 && !v->batched);
  return LLVMBuildFPExt(cg->b, cg_load(cg, value_ptr(cg, f, v), cg_i64(cg, 0)),
                        cg->t_f64, "");
}

// A declaration of a runtime function.
static LLVMValueRef runtime_fn(Cg *cg, const char *name, LLVMTypeRef ret,
                               LLVMTypeRef *params, unsigned n,
                               LLVMTypeRef *ty) {
  *ty = LLVMFunctionType(ret, params, n, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
  return fn ? fn : LLVMAddFunction(cg->mod, name, *ty);
}

static LLVMValueRef call(Cg *cg, LLVMTypeRef ty, LLVMValueRef fn,
                         LLVMValueRef *args, unsigned n) {
  return LLVMBuildCall2(cg->b, ty, fn, args, n, "");
}

static LLVMBasicBlockRef block(Cg *cg, LLVMValueRef fn, const char *name) {
  return LLVMAppendBasicBlockInContext(cg->lc, fn, name);
}

// ---- nnc_train --------------------------------------------------------------
// t = 0; for (epoch = 0;; epoch++) {
//   nb = nnrt_epoch_begin(run, epoch); if (!nb) break;
//   for (i = 0; i < nb; i++) {
//     B = nnrt_batch_fetch(run, i, x, y);
//     <forward, loss, backward kernels>; t++; <optimizer over every param>
//     if (nnrt_batch_end(run, B, objective * B, correct)) goto done;
//   }
//   if (nnrt_epoch_end(run, epoch)) break;
// }
static LLVMValueRef build_train(Cg *cg, const Plan *plan, const bool *live,
                                const int64_t *poff) {
  const IrModule *m = cg->m;
  LLVMTypeRef P = cg->t_ptr, I = cg->t_i64, D = cg->t_f64;
  LLVMTypeRef pt[5] = {P, P, P, P, I};
  LLVMValueRef fn = cg_function(cg, "nnc_train",
                                LLVMFunctionType(cg->t_void, pt, 5, 0), false);
  LLVMTypeRef ty_begin, ty_fetch, ty_bend, ty_eend;
  LLVMValueRef f_begin = runtime_fn(cg, "nnrt_epoch_begin", I,
                                    (LLVMTypeRef[]){P, I}, 2, &ty_begin);
  LLVMValueRef f_fetch = runtime_fn(cg, "nnrt_batch_fetch", I,
                                    (LLVMTypeRef[]){P, I, P, P}, 4, &ty_fetch);
  LLVMValueRef f_bend = runtime_fn(cg, "nnrt_batch_end", I,
                                   (LLVMTypeRef[]){P, I, D, D}, 4, &ty_bend);
  LLVMValueRef f_eend =
      runtime_fn(cg, "nnrt_epoch_end", I, (LLVMTypeRef[]){P, I}, 2, &ty_eend);

  LLVMValueRef run = LLVMGetParam(fn, 0), state = LLVMGetParam(fn, 2);
  Frame f = {.plan = plan, .poff = poff};
  f.params = LLVMGetParam(fn, 1);
  f.ws = LLVMGetParam(fn, 3);
  f.max_batch = LLVMGetParam(fn, 4);
  LLVMSetValueName2(run, "run", 3);
  LLVMSetValueName2(f.params, "params", 6);
  LLVMSetValueName2(state, "state", 5);
  LLVMSetValueName2(f.ws, "ws", 2);
  LLVMSetValueName2(f.max_batch, "max_batch", 9);

  LLVMBasicBlockRef entry = block(cg, fn, "entry");
  LLVMBasicBlockRef epoch_head = block(cg, fn, "epoch");
  LLVMBasicBlockRef batch_pre = block(cg, fn, "batches");
  LLVMBasicBlockRef batch_head = block(cg, fn, "batch");
  LLVMBasicBlockRef body = block(cg, fn, "step");
  LLVMBasicBlockRef next = block(cg, fn, "next");
  LLVMBasicBlockRef epoch_tail = block(cg, fn, "epoch_end");
  LLVMBasicBlockRef done = block(cg, fn, "done");
  LLVMValueRef zero = cg_i64(cg, 0), one = cg_i64(cg, 1);

  LLVMPositionBuilderAtEnd(cg->b, entry);
  f.x = cg_gep(cg, f.ws, cg_mul(cg, f.max_batch, cg_i64(cg, plan->x_off)));
  f.y = cg_gep(cg, f.ws, cg_mul(cg, f.max_batch, cg_i64(cg, plan->y_off)));
  frame_pointers(cg, &f, live);
  LLVMValueRef t = cg_alloca(cg, I, "t"), epoch = cg_alloca(cg, I, "epoch"),
               bi = cg_alloca(cg, I, "i");
  LLVMBuildStore(cg->b, zero, t);
  LLVMBuildStore(cg->b, zero, epoch);
  LLVMBuildBr(cg->b, epoch_head);

  LLVMPositionBuilderAtEnd(cg->b, epoch_head);
  LLVMValueRef e = LLVMBuildLoad2(cg->b, I, epoch, "e");
  LLVMValueRef nb = call(cg, ty_begin, f_begin, (LLVMValueRef[]){run, e}, 2);
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLE, nb, zero, ""), done,
                  batch_pre);

  LLVMPositionBuilderAtEnd(cg->b, batch_pre);
  LLVMBuildStore(cg->b, zero, bi);
  LLVMBuildBr(cg->b, batch_head);

  LLVMPositionBuilderAtEnd(cg->b, batch_head);
  LLVMValueRef iv = LLVMBuildLoad2(cg->b, I, bi, "");
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, iv, nb, ""), body,
                  epoch_tail);

  LLVMPositionBuilderAtEnd(cg->b, body);
  f.rows = call(cg, ty_fetch, f_fetch, (LLVMValueRef[]){run, iv, f.x, f.y}, 4);
  LLVMSetValueName2(f.rows, "B", 1);
  call_kernels(cg, &f, live);
  LLVMValueRef tv =
      LLVMBuildNSWAdd(cg->b, LLVMBuildLoad2(cg->b, I, t, ""), one, "");
  LLVMBuildStore(cg->b, tv, t);
  if (m->opt.fn) {
    LLVMValueRef opt = kernel_optimizer(cg);
    LLVMTypeRef oty = LLVMGlobalGetValueType(opt);
    LLVMValueRef tf = LLVMBuildSIToFP(cg->b, tv, cg->t_f32, "");
    int64_t total = poff[m->params.n];
    for (int i = 0; i < m->params.n; i++) {
      const IrParam *p = m->params.item[i];
      LLVMValueRef args[6] = {
          cg_gep(cg, f.params, cg_i64(cg, poff[i])),
          value_ptr(cg, &f, p->grad),
          cg_gep(cg, state, cg_i64(cg, poff[i])),
          cg_i64(cg, poff[i + 1] - poff[i]),
          cg_i64(cg, total),
          tf,
      };
      call(cg, oty, opt, args, 6);
    }
  }
  LLVMValueRef loss_sum =
      LLVMBuildFMul(cg->b, load_scalar(cg, &f, m->objective),
                    LLVMBuildSIToFP(cg->b, f.rows, D, ""), "");
  LLVMValueRef correct = load_scalar(cg, &f, m->correct);
  LLVMValueRef stop = call(cg, ty_bend, f_bend,
                           (LLVMValueRef[]){run, f.rows, loss_sum, correct}, 4);
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, stop, zero, ""), done,
                  next);

  LLVMPositionBuilderAtEnd(cg->b, next);
  LLVMBuildStore(cg->b, LLVMBuildNSWAdd(cg->b, iv, one, ""), bi);
  LLVMBuildBr(cg->b, batch_head);

  LLVMPositionBuilderAtEnd(cg->b, epoch_tail);
  LLVMValueRef s = call(cg, ty_eend, f_eend, (LLVMValueRef[]){run, e}, 2);
  LLVMBuildStore(cg->b, LLVMBuildNSWAdd(cg->b, e, one, ""), epoch);
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, s, zero, ""), done,
                  epoch_head);

  LLVMPositionBuilderAtEnd(cg->b, done);
  LLVMBuildRetVoid(cg->b);
  return fn;
}

// ---- nnc_infer --------------------------------------------------------------
// The output's kernels; the prediction copied to `out` when given; with labels,
// the loss side too, accumulated into stats.
static LLVMValueRef build_infer(Cg *cg, const Plan *plan, const bool *out_set,
                                const bool *loss_set, const bool *live,
                                const int64_t *poff) {
  const IrModule *m = cg->m;
  LLVMTypeRef P = cg->t_ptr, I = cg->t_i64, D = cg->t_f64;
  LLVMTypeRef pt[8] = {P, P, I, P, P, I, P, P};
  LLVMValueRef fn = cg_function(cg, "nnc_infer",
                                LLVMFunctionType(cg->t_void, pt, 8, 0), false);
  Frame f = {.plan = plan, .poff = poff};
  f.params = LLVMGetParam(fn, 0);
  f.ws = LLVMGetParam(fn, 1);
  f.max_batch = LLVMGetParam(fn, 2);
  f.x = LLVMGetParam(fn, 3);
  f.y = LLVMGetParam(fn, 4);
  f.rows = LLVMGetParam(fn, 5);
  LLVMValueRef out = LLVMGetParam(fn, 6), stats = LLVMGetParam(fn, 7);
  const char *names[8] = {"params", "ws",   "max_batch", "x",
                          "y",      "rows", "out",       "stats"};
  for (unsigned i = 0; i < 8; i++)
    LLVMSetValueName2(LLVMGetParam(fn, i), names[i], strlen(names[i]));

  LLVMBasicBlockRef entry = block(cg, fn, "entry");
  LLVMBasicBlockRef copy = block(cg, fn, "copy_out");
  LLVMBasicBlockRef after_copy = block(cg, fn, "labels");
  LLVMBasicBlockRef with_y = block(cg, fn, "loss");
  LLVMBasicBlockRef done = block(cg, fn, "done");
  LLVMPositionBuilderAtEnd(cg->b, entry);
  frame_pointers(cg, &f, live);
  call_kernels(cg, &f, out_set);
  LLVMBuildCondBr(cg->b, LLVMBuildIsNotNull(cg->b, out, ""), copy, after_copy);

  LLVMPositionBuilderAtEnd(cg->b, copy);
  const IrValue *o = m->output;
  int64_t bytes = shape_numel(o->shape) * 4;
  LLVMValueRef src = value_ptr(cg, &f, o);
  if (o->batched) {
    LLVMBuildMemCpy(cg->b, out, 4, src, 4,
                    cg_mul(cg, f.rows, cg_i64(cg, bytes)));
  } else { // one prediction for every row
    Loop l;
    LLVMValueRef r = loop_begin(cg, &l, f.rows, "r");
    LLVMValueRef dst = cg_gep(cg, out, cg_mul(cg, r, cg_i64(cg, bytes / 4)));
    LLVMBuildMemCpy(cg->b, dst, 4, src, 4, cg_i64(cg, bytes));
    loop_end(cg, &l);
  }
  LLVMBuildBr(cg->b, after_copy);

  LLVMPositionBuilderAtEnd(cg->b, after_copy);
  bool has_loss = m->objective || m->correct;
  LLVMBuildCondBr(cg->b,
                  has_loss ? LLVMBuildIsNotNull(cg->b, f.y, "")
                           : LLVMConstInt(cg->t_i1, 0, 0),
                  with_y, done);

  LLVMPositionBuilderAtEnd(cg->b, with_y);
  call_kernels(cg, &f, loss_set);
  LLVMValueRef loss_sum =
      LLVMBuildFMul(cg->b, load_scalar(cg, &f, m->objective),
                    LLVMBuildSIToFP(cg->b, f.rows, D, ""), "");
  LLVMValueRef correct = load_scalar(cg, &f, m->correct);
  LLVMValueRef vals[2] = {loss_sum, correct};
  for (int i = 0; i < 2; i++) {
    LLVMValueRef idx = cg_i64(cg, i);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, D, stats, &idx, 1, "");
    LLVMValueRef cur = LLVMBuildLoad2(cg->b, D, p, "");
    LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, cur, vals[i], ""), p);
  }
  LLVMBuildBr(cg->b, done);

  LLVMPositionBuilderAtEnd(cg->b, done);
  LLVMBuildRetVoid(cg->b);
  return fn;
}

// ---- the nnc_model descriptor -----------------------------------------------
static LLVMValueRef private_global(Cg *cg, LLVMValueRef init, const char *name,
                                   unsigned align) {
  LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), name);
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
  LLVMSetAlignment(g, align);
  return g;
}

static LLVMValueRef null_ptr(Cg *cg) { return LLVMConstNull(cg->t_ptr); }

static LLVMValueRef const_str(Cg *cg, const char *s) {
  if (!s)
    return null_ptr(cg);
  return private_global(cg, LLVMConstStringInContext2(cg->lc, s, strlen(s), 0),
                        ".str", 1);
}

// Raw bytes as a private constant (bulk data: inline floats, class lists);
// host and target are the same machine, so byte order agrees.
static LLVMValueRef const_bytes(Cg *cg, const void *data, size_t n,
                                const char *name) {
  if (!data || !n)
    return null_ptr(cg);
  return private_global(cg, LLVMConstStringInContext2(cg->lc, data, n, 1), name,
                        16);
}

static LLVMValueRef ci(Cg *cg, int64_t v) { return cg_i64(cg, v); }
static LLVMValueRef cd(Cg *cg, double v) { return LLVMConstReal(cg->t_f64, v); }

static LLVMValueRef dims(Cg *cg, Shape s) {
  LLVMValueRef d[NNRT_MAX_RANK];
  for (int i = 0; i < NNRT_MAX_RANK; i++)
    d[i] = ci(cg, i < s.rank ? s.dim[i] : 0);
  return LLVMConstArray2(cg->t_i64, d, NNRT_MAX_RANK);
}

static LLVMTypeRef struct_type(Cg *cg, LLVMTypeRef *f, unsigned n) {
  return LLVMStructTypeInContext(cg->lc, f, n, 0);
}

static LLVMValueRef data_spec(Cg *cg, const DataSpec *d) {
  LLVMValueRef x = NULL, y = NULL, classes = NULL;
  if (d->kind == DATA_INLINE) {
    size_t nx = (size_t)(d->nrows * d->xcols),
           ny = (size_t)(d->nrows * d->ycols);
    float *buf = arena_alloc(cg->arena, sizeof(float) * (nx + ny + 1));
    for (size_t i = 0; i < nx; i++)
      buf[i] = (float)d->x[i];
    for (size_t i = 0; i < ny; i++)
      buf[nx + i] = (float)d->y[i];
    x = const_bytes(cg, buf, nx * sizeof(float), ".data.x");
    y = const_bytes(cg, buf + nx, ny * sizeof(float), ".data.y");
  }
  if (d->nclasses > 0)
    classes = const_bytes(cg, d->classes, sizeof(int64_t) * (size_t)d->nclasses,
                          ".data.classes");
  LLVMValueRef f[11] = {
      ci(cg, d->kind),          const_str(cg, d->path_x),
      const_str(cg, d->path_y), cd(cg, d->scale),
      ci(cg, d->nclasses),      classes ? classes : null_ptr(cg),
      ci(cg, d->nrows),         ci(cg, d->xcols),
      ci(cg, d->ycols),         x ? x : null_ptr(cg),
      y ? y : null_ptr(cg),
  };
  return LLVMConstStructInContext(cg->lc, f, 11, 0);
}

static void build_model(Cg *cg, const Plan *train, const Plan *infer,
                        const int64_t *poff, LLVMValueRef train_fn,
                        LLVMValueRef infer_fn, LLVMTargetDataRef td) {
  const IrModule *m = cg->m;
  LLVMTypeRef P = cg->t_ptr, I = cg->t_i64, D = cg->t_f64;
  LLVMTypeRef A = LLVMArrayType2(I, NNRT_MAX_RANK);

  // NnrtParamInfo, one per parameter.
  LLVMTypeRef pf[10] = {P, I, A, I, I, I, D, D, I, I};
  LLVMTypeRef t_param = struct_type(cg, pf, 10);
  int np = m->params.n;
  LLVMValueRef *rows = arena_alloc(cg->arena, sizeof *rows * (size_t)(np + 1));
  for (int i = 0; i < np; i++) {
    const IrParam *p = m->params.item[i];
    LLVMValueRef f[10] = {
        const_str(cg, p->name), ci(cg, p->shape.rank),
        dims(cg, p->shape),     ci(cg, poff[i + 1] - poff[i]),
        ci(cg, poff[i]),        ci(cg, p->init.kind),
        cd(cg, p->init.a),      cd(cg, p->init.b),
        ci(cg, p->fan_in),      ci(cg, p->fan_out),
    };
    rows[i] = LLVMConstNamedStruct(t_param, f, 10);
  }
  LLVMValueRef ptable =
      np ? private_global(cg, LLVMConstArray2(t_param, rows, (uint64_t)np),
                          ".params", 8)
         : null_ptr(cg);

  const IrOptimizer *o = &m->opt;
  LLVMValueRef state_init = null_ptr(cg);
  if (o->fn && o->nstate > 0) {
    LLVMValueRef *si = arena_alloc(cg->arena, sizeof *si * (size_t)o->nstate);
    for (int i = 0; i < o->nstate; i++)
      si[i] = cd(cg, o->state_init[i]);
    state_init = private_global(cg, LLVMConstArray2(D, si, (uint64_t)o->nstate),
                                ".state_init", 8);
  }

  // NnrtDataSpec and NnrtModel.
  LLVMTypeRef df[11] = {I, P, P, D, I, P, I, I, I, P, P};
  LLVMTypeRef t_data = struct_type(cg, df, 11);
  LLVMTypeRef mf[24] = {P,      P, I, A, I, I, I, P, I, I, P, t_data,
                        t_data, I, I, I, D, I, I, I, I, I, P, P};
  LLVMTypeRef t_model = struct_type(cg, mf, 24);
  assert(LLVMABISizeOfType(td, t_model) == sizeof(NnrtModel));
  assert(LLVMABISizeOfType(td, t_param) == sizeof(NnrtParamInfo));
  assert(LLVMABISizeOfType(td, t_data) == sizeof(NnrtDataSpec));
  (void)td;

  Shape in = m->input ? m->input->shape : shape_scalar();
  const TrainSpec *ts = &m->train;
  LLVMValueRef f[24] = {
      const_str(cg, m->name),
      const_str(cg, m->source_dir),
      ci(cg, in.rank),
      dims(cg, in),
      ci(cg, m->input ? shape_numel(in) : 0),
      ci(cg, m->output ? shape_numel(m->output->shape) : 0),
      ci(cg, np),
      ptable,
      ci(cg, poff[np]),
      ci(cg, o->fn ? o->nstate : 0),
      state_init,
      data_spec(cg, &ts->data),
      data_spec(cg, &ts->test),
      ci(cg, ts->batch),
      ci(cg, ts->epochs),
      ci(cg, ts->seed),
      cd(cg, ts->validation),
      ci(cg, ts->accuracy),
      ci(cg, train->per_row),
      ci(cg, train->fixed),
      ci(cg, infer->per_row),
      ci(cg, infer->fixed),
      train_fn,
      infer_fn,
  };
  LLVMValueRef g = LLVMAddGlobal(cg->mod, t_model, "nnc_model");
  LLVMSetInitializer(g, LLVMConstNamedStruct(t_model, f, 24));
  LLVMSetGlobalConstant(g, 1);
  LLVMSetAlignment(g, 8);
}

// int main(int argc, char **argv) { return nnrt_main(&nnc_model, argc, argv); }
static void build_main(Cg *cg) {
  LLVMTypeRef I32 = cg->t_i32, P = cg->t_ptr;
  LLVMTypeRef ty;
  LLVMValueRef nnrt_main =
      runtime_fn(cg, "nnrt_main", I32, (LLVMTypeRef[]){P, I32, P}, 3, &ty);
  LLVMTypeRef main_ty = LLVMFunctionType(I32, (LLVMTypeRef[]){I32, P}, 2, 0);
  LLVMValueRef fn = cg_function(cg, "main", main_ty, false);
  LLVMPositionBuilderAtEnd(cg->b, block(cg, fn, "entry"));
  LLVMValueRef args[3] = {LLVMGetNamedGlobal(cg->mod, "nnc_model"),
                          LLVMGetParam(fn, 0), LLVMGetParam(fn, 1)};
  LLVMBuildRet(cg->b, call(cg, ty, nnrt_main, args, 3));
}

// ---- the whole module -------------------------------------------------------
static void build_module(Cg *cg, LLVMTargetDataRef td) {
  IrModule *m = cg->m;
  int n = m->fn->values.n;
  for (int i = 0; i < n; i++)
    assert(((IrValue *)m->fn->values.item[i])->id == i &&
           "values must be numbered in order (ir_renumber)");
  assert(m->input && m->output && "a module has an input and an output");
  for (int i = 0; i < m->params.n && m->opt.fn; i++)
    assert(((IrParam *)m->params.item[i])->grad && "grad_emit has not run");

  // Roots must be stored even when marked fused: the driver reads them.
  bool *root = arena_alloc(cg->arena, (size_t)n);
  bool *train_live = arena_alloc(cg->arena, (size_t)n);
  bool *out_set = arena_alloc(cg->arena, (size_t)n);
  bool *loss_set = arena_alloc(cg->arena, (size_t)n);
  bool *infer_live = arena_alloc(cg->arena, (size_t)n);
  mark_root(root, m->output);
  mark_root(root, m->loss);
  mark_root(root, m->objective);
  mark_root(root, m->correct);
  for (int i = 0; i < m->params.n; i++)
    mark_root(root, ((IrParam *)m->params.item[i])->grad);
  memcpy(train_live, root, (size_t)n);
  close_live(m->fn, train_live);
  mark_root(out_set, m->output);
  close_live(m->fn, out_set);
  mark_root(loss_set, m->loss);
  mark_root(loss_set, m->objective);
  mark_root(loss_set, m->correct);
  close_live(m->fn, loss_set);
  for (int i = 0; i < n; i++) {
    if (out_set[i])
      loss_set[i] = false;
    infer_live[i] = out_set[i] || loss_set[i];
  }

  cg->inl = arena_alloc(cg->arena, (size_t)n);
  cg->kern = arena_alloc(cg->arena, sizeof *cg->kern * (size_t)n);
  for (int i = 0; i < n; i++) {
    const IrValue *v = m->fn->values.item[i];
    cg->inl[i] =
        !root[i] && (v->fused || v->op == OP_CONST || v->op == OP_BATCH_SIZE);
  }

  int64_t *poff =
      arena_alloc(cg->arena, sizeof *poff * (size_t)(m->params.n + 1));
  for (int i = 0; i < m->params.n; i++)
    poff[i + 1] = poff[i] + shape_numel(((IrParam *)m->params.item[i])->shape);

  Plan train, infer;
  plan_storage(cg, &train, train_live, true);
  plan_storage(cg, &infer, infer_live, false);
  LLVMValueRef train_fn = build_train(cg, &train, train_live, poff);
  LLVMValueRef infer_fn =
      build_infer(cg, &infer, out_set, loss_set, infer_live, poff);
  build_model(cg, &train, &infer, poff, train_fn, infer_fn, td);
  build_main(cg);
}

// ---- target, passes, emission -----------------------------------------------
static int write_out(Ctx *ctx, const char *path, const char *data, size_t n) {
  bool std = strcmp(path, "-") == 0;
  FILE *f = std ? stdout : fopen(path, "wb");
  if (!f) {
    diag_error(&ctx->diag, (Loc){0}, "cannot write '%s': %s", path,
               strerror(errno));
    return 1;
  }
  size_t w = fwrite(data, 1, n, f);
  int bad = w != n || (std ? fflush(f) : fclose(f)) != 0;
  if (bad)
    diag_error(&ctx->diag, (Loc){0}, "cannot write '%s'", path);
  return bad;
}

static int emit(Cg *cg, const CodegenOptions *o) {
  if (o->kind == EMIT_LLVM) {
    char *s = LLVMPrintModuleToString(cg->mod);
    int r = write_out(cg->ctx, o->out_path, s, strlen(s));
    LLVMDisposeMessage(s);
    return r;
  }
  char *err = NULL;
  LLVMMemoryBufferRef buf = NULL;
  LLVMCodeGenFileType ft =
      o->kind == EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile;
  if (LLVMTargetMachineEmitToMemoryBuffer(cg->tm, cg->mod, ft, &err, &buf)) {
    diag_error(&cg->ctx->diag, (Loc){0}, "code generation failed: %s", err);
    LLVMDisposeMessage(err);
    return 1;
  }
  int r = write_out(cg->ctx, o->out_path, LLVMGetBufferStart(buf),
                    LLVMGetBufferSize(buf));
  LLVMDisposeMemoryBuffer(buf);
  return r;
}

// Verifies, optimizes with default<O?> and emits. Returns nonzero on error.
static int finish(Cg *cg, const CodegenOptions *o) {
  char *msg = NULL;
  if (LLVMVerifyModule(cg->mod, LLVMReturnStatusAction, &msg)) {
    diag_error(&cg->ctx->diag, (Loc){0},
               "internal error: invalid LLVM module: %s", msg);
    LLVMDisposeMessage(msg);
    return 1;
  }
  LLVMDisposeMessage(msg);
  int level = o->opt_level < 0 ? 0 : o->opt_level > 3 ? 3 : o->opt_level;
  char pipeline[32];
  snprintf(pipeline, sizeof pipeline, "default<O%d>", level);
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(cg->mod, pipeline, cg->tm, po);
  LLVMDisposePassBuilderOptions(po);
  if (e) {
    char *em = LLVMGetErrorMessage(e);
    diag_error(&cg->ctx->diag, (Loc){0}, "internal error: %s", em);
    LLVMDisposeErrorMessage(em);
    return 1;
  }
  return emit(cg, o);
}

static LLVMTargetMachineRef target_machine(Ctx *ctx, int opt_level,
                                           char **triple_out) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  char *triple = LLVMGetDefaultTargetTriple();
  LLVMTargetRef target;
  char *err = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &err)) {
    diag_error(&ctx->diag, (Loc){0}, "no LLVM target for '%s': %s", triple,
               err);
    LLVMDisposeMessage(err);
    LLVMDisposeMessage(triple);
    return NULL;
  }
  // The host name can be wrong on VMs (CPUID model), but the feature list
  // is right, and it is what enables AVX-512.
  char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
  LLVMCodeGenOptLevel lvl = opt_level <= 0   ? LLVMCodeGenLevelNone
                            : opt_level == 1 ? LLVMCodeGenLevelLess
                            : opt_level == 2 ? LLVMCodeGenLevelDefault
                                             : LLVMCodeGenLevelAggressive;
  // PIC: Debian's cc links position-independent executables by default.
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(
      target, triple, cpu, features, lvl, LLVMRelocPIC, LLVMCodeModelDefault);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(features);
  if (!tm) {
    diag_error(&ctx->diag, (Loc){0}, "cannot create a target machine for '%s'",
               triple);
    LLVMDisposeMessage(triple);
    return NULL;
  }
  *triple_out = triple;
  return tm;
}

int codegen_emit(IrModule *m, Ctx *ctx, const CodegenOptions *o) {
  char *triple = NULL;
  LLVMTargetMachineRef tm = target_machine(ctx, o->opt_level, &triple);
  if (!tm)
    return 1;
  Cg cg = {.m = m, .ctx = ctx, .arena = ctx->arena, .tm = tm};
  cg.lc = LLVMContextCreate();
  cg.mod = LLVMModuleCreateWithNameInContext(m->name ? m->name : "nnc", cg.lc);
  // Triple and data layout before any IR: the optimizer reads them.
  LLVMSetTarget(cg.mod, triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(cg.mod, td);
  cg.b = LLVMCreateBuilderInContext(cg.lc);
  cg.ab = LLVMCreateBuilderInContext(cg.lc);
  cg.t_void = LLVMVoidTypeInContext(cg.lc);
  cg.t_i1 = LLVMInt1TypeInContext(cg.lc);
  cg.t_i8 = LLVMInt8TypeInContext(cg.lc);
  cg.t_i32 = LLVMInt32TypeInContext(cg.lc);
  cg.t_i64 = LLVMInt64TypeInContext(cg.lc);
  cg.t_f32 = LLVMFloatTypeInContext(cg.lc);
  cg.t_f64 = LLVMDoubleTypeInContext(cg.lc);
  cg.t_ptr = LLVMPointerTypeInContext(cg.lc, 0);

  build_module(&cg, td);
  int r = finish(&cg, o);

  LLVMDisposeBuilder(cg.ab);
  LLVMDisposeBuilder(cg.b);
  LLVMDisposeModule(cg.mod);
  LLVMDisposeTargetData(td);
  LLVMContextDispose(cg.lc);
  LLVMDisposeTargetMachine(tm);
  LLVMDisposeMessage(triple);
  return r;
}
