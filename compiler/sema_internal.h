// sema_internal.h — what sema.c (declarations, expressions, layer
// instantiation) and sema_train.c (train block, optimizer, data) share.
#ifndef NNC_SEMA_INTERNAL_H
#define NNC_SEMA_INTERNAL_H

#include "sema.h"

// A compile-time value: what an expression evaluates to in sema.
typedef enum SValKind {
  SV_POISON,   // an error was already reported
  SV_NUM,      // a number (hyperparameters, dimensions)
  SV_STR,      // a string (file paths)
  SV_TENSOR,   // an IR value
  SV_INIT,     // an initializer (he_normal, constant(0.1), ...)
  SV_FUNC,     // a callable: a declaration or a builtin
  SV_LIST,     // [a, b, ...]
  SV_RECORD,   // a model's several named results: items named by fields
} SValKind;

typedef struct SVal SVal;
struct SVal {
  SValKind kind;
  Loc loc;            // where the value was written
  double num;
  const char *str;
  IrValue *t;
  Init init;
  Ast *decl;          // SV_FUNC: a layer/loss/model/optimizer declaration
  int builtin;        // SV_FUNC: index into the builtin table, or -1
  SVal *items;        // SV_LIST, SV_RECORD
  int nitems;
  const char **fields; // SV_RECORD: the name of each item
};

// A lexical binding; frames chain them newest first.
typedef struct Binding {
  struct Binding *next;
  const char *name;
  SVal val;
} Binding;

// The parameters a model's calls use (its own and those of the models it
// calls): what a step's `over = model` updates.
typedef struct ModelUse {
  const char *name;
  PtrVec params;       // IrParam*, each once
} ModelUse;

enum { MAX_MODEL_NEST = 8 };

typedef struct Frame {
  Binding *vars;
  const char *prefix;  // instance path for parameter names ("" for the model)
  int depth;           // instantiation depth (recursion guard)
  int layer_depth;     // for the summary table
  Ast *call;           // the call that instantiated this frame, or NULL
  // The models being lowered, innermost last: parameters this frame
  // declares or reuses are recorded in each (a model's parameters are
  // shared by all its calls, where a layer's belong to one instance).
  ModelUse *models[MAX_MODEL_NEST];
  int nmodels;
  bool shared;         // a model's frame: a parameter that exists is reused
} Frame;

typedef struct Counter {
  const char *key;     // prefix + "/" + layer name
  int n;
} Counter;

typedef struct Sema {
  Ctx *ctx;
  Arena *arena;
  Diag *diag;
  Program *prog;
  IrModule *m;
  IrFn *fn;            // the function being built (m->fn or the optimizer's)
  PtrVec counters;     // Counter*: instance numbering
  PtrVec *layers;      // LayerInfo* for the summary
  bool in_model;       // lowering the model's body (not its loss)
  // The mode being lowered: the model is lowered twice, into the training
  // graph (training = true: dropout on, batch statistics, buffer updates,
  // penalties) and then into the inference graph (`training` is 0 there).
  bool training;
  bool eval_pass;      // the second lowering: parameters exist already
  int draws;           // random draws numbered so far in this pass
  PtrVec penalties;    // IrValue*: `penalty` terms of the training pass
  Ast *top_call;       // the model-level call being instantiated
  Loc batch_stats_at;  // first batch statistic in training (file NULL: none)
  Ast *train_model;    // the train block's model (its parameters have no
                       // prefix, so checkpoints of one-model programs keep
                       // their names)
  PtrVec model_uses;   // ModelUse*
  bool has_steps;      // the train block has `step` blocks (no labels
                       // needed: steps say what they compare)
  PtrVec *step_params; // per step of a train block with `step`s: the
                       // IrParam* it updates (indices come after
                       // params_order); NULL outside such a block
  DType dtype;         // the model's element type (its input's), DT_F32
  Loc dtype_at;        // where the model's input type says it
} Sema;

// The parameter record of model `name` (created on first use).
ModelUse *sema_model_use(Sema *s, const char *name);

SVal sval_poison(void);
SVal sval_num(double v, Loc loc);
SVal sval_tensor(IrValue *t, Loc loc);
const char *sval_describe(Sema *s, SVal v);  // "f32[B, 10]", "a number", ...

Ast *sema_find_decl(Sema *s, const char *name);
Ast *sema_find_schedule(Sema *s, const char *name);  // `schedule` decls
void frame_bind(Sema *s, Frame *f, const char *name, SVal v);
SVal sema_eval(Sema *s, Frame *f, Ast *e);
// Runs a declaration's statements; returns what its `return` returns.
SVal sema_eval_body(Sema *s, Frame *f, Ast *decl);
// Calls a function value with evaluated arguments; `call` is for messages.
SVal sema_apply(Sema *s, Frame *f, SVal fn, SVal *pos, int npos,
                const char **names, SVal *named, int nnamed, Ast *call);
IrValue *sema_tensor_of(Sema *s, SVal v, Loc loc);  // numbers become CONST
// Builds a primitive after checking its shape rule; on failure reports both
// shapes (and where they came from) and returns poison.
SVal sema_build(Sema *s, Op op, SVal *args, Attr attr, Loc loc,
                const char *opname);
// Evaluates `e` and requires a number; reports and returns `fallback` if not.
double sema_number(Sema *s, Frame *f, Ast *e, const char *what,
                   double fallback);

// sema_window.c: conv, conv_transpose, maxpool, avgpool, maxunpool, concat
// and reshape, with positional or named arguments.
SVal sema_window(Sema *s, const char *name, SVal *pos, int npos,
                 const char **names, SVal *named, int nnamed, Ast *call);

// sema_train.c: lowers the train block (loss, optimizer, data, settings)
// for the training graph's output, and the loss and metrics of the
// inference graph's.
void sema_train(Sema *s, Ast *train, IrValue *output, IrValue *eval_output);
// The optimizer call e (`adam(lr = 1e-3)`) as step's update rule; with
// `scheduled`, lr becomes an argument of the rule. *lr gets the call's lr.
void sema_optimizer(Sema *s, Ast *e, bool scheduled, double *lr,
                    IrStep *step);
// `schedule = NAME(args)` as step's schedule (lr: the optimizer's).
void sema_schedule(Sema *s, Ast *e, double lr, IrStep *step);

// sema_step.c: a train block with `step` blocks (several objectives,
// models and optimizers). defaults: the block's optimizer, schedule,
// warmup and sample settings (each NULL when absent).
void sema_steps(Sema *s, Ast *train, Ast **defaults);

#endif
