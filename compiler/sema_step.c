// sema_step.c — lowers the `step` blocks of a train block: a training
// program of several objectives, each minimized over the parameters of the
// models it names, with its own optimizer and schedule (a GAN's
// discriminator and generator steps, a VAE's ELBO).
//
//   train gan {
//       data = idx("fashion-mnist/train-images-idx3-ubyte.gz", scale = 1/255)
//       step d_loss {
//           fake = detach(generator(normal([64])))
//           minimize bce_with_logits(discriminator(input), 1) +
//                    bce_with_logits(discriminator(fake), 0)
//           over = discriminator
//           optimizer = adam(lr = 2e-4, beta1 = 0.5)
//       }
//       ...
//   }
//
// Each step is lowered twice, like the model: into the training graph
// (its objective with penalties, its reports, its buffer updates) and into
// the inference graph (the objective and reports the test set is measured
// by). A model's parameters are shared by all its calls (sema.c), and
// which parameters each model's calls touched is recorded (ModelUse), so
// `over = generator` resolves to parameter lists here. Diagnostics: a
// minimized model the objective does not depend on, a parameter two steps
// update, a named optimizer two steps share, unknown words and settings.
#include <math.h>
#include <string.h>

#include "sema_internal.h"

// The settings a step may hold (`NAME = value` lines that bind nothing).
static const char *const step_settings[] = {
    "over", "optimizer", "schedule", "warmup", "clip_norm",
};
enum { SS_OVER, SS_OPTIMIZER, SS_SCHEDULE, SS_WARMUP, SS_CLIP,
       NSTEP_SETTINGS };

// One lowering of a step's statements: the objective and reports it
// computes in the current mode.
typedef struct StepValues {
  IrValue *objective;
  int nreports;
  const char **report_name;
  IrValue **report;
  Loc *report_loc;
} StepValues;

// A scalar per batch: a batched scalar is averaged over the batch, a
// number becomes a constant; NULL (after a diagnostic) for anything else.
static IrValue *batch_scalar(Sema *s, SVal v, const char *what, Loc loc) {
  if (v.kind == SV_POISON)
    return NULL;
  if (v.kind == SV_NUM)
    return ir_const(s->fn, v.num, loc);
  if (v.kind != SV_TENSOR || v.t->shape.rank != 0) {
    diag_error(s->diag, loc,
               "%s needs one number per example or per batch, got %s", what,
               sval_describe(s, v));
    return NULL;
  }
  return v.t->batched ? ir_unary(s->fn, OP_BATCH_MEAN, v.t, loc) : v.t;
}

static int setting_index(const char *name) {
  for (int i = 0; i < NSTEP_SETTINGS; i++)
    if (strcmp(name, step_settings[i]) == 0)
      return i;
  return -1;
}

// Runs the step's statements in the current mode; `set` (training pass
// only) receives its settings.
static StepValues lower_step(Sema *s, Ast *step, Ast **set) {
  IrModule *m = s->m;
  StepValues r = {0};
  int cap = step->body.n + 1;
  r.report_name = arena_alloc(s->arena, sizeof(char *) * (size_t)cap);
  r.report = arena_alloc(s->arena, sizeof(IrValue *) * (size_t)cap);
  r.report_loc = arena_alloc(s->arena, sizeof(Loc) * (size_t)cap);
  Frame f = {.prefix = ""};
  frame_bind(s, &f, "input", sval_tensor(m->input, step->loc));
  if (m->label)
    frame_bind(s, &f, "label", sval_tensor(m->label, step->loc));
  int first_penalty = s->penalties.n;
  Ast *minimize = NULL;
  for (int i = 0; i < step->body.n; i++) {
    Ast *st = step->body.item[i];
    if (!st)
      continue;
    if (st->kind == AST_ASSIGN && setting_index(st->name) >= 0) {
      int k = setting_index(st->name);
      if (set && set[k]) {
        diag_error(s->diag, st->loc, "'%s' is set twice in step '%s'",
                   st->name, step->name);
        diag_note(s->diag, set[k]->loc, "first set here");
      } else if (set) {
        set[k] = st;
      }
      continue;
    }
    switch (st->kind) {
    case AST_ASSIGN:
      frame_bind(s, &f, st->name, sema_eval(s, &f, st->a));
      break;
    case AST_PENALTY:
      if (s->training) {
        SVal v = sema_eval(s, &f, st->a);
        IrValue *p = batch_scalar(s, v, "a penalty", st->a->loc);
        if (p)
          ptrvec_push(s->arena, &s->penalties, p);
      }
      break;
    case AST_WORD:
      if (strcmp(st->name, "minimize") == 0) {
        if (minimize) {
          diag_error(s->diag, st->loc, "step '%s' minimizes twice",
                     step->name);
          diag_note(s->diag, minimize->loc, "first here");
          break;
        }
        minimize = st;
        r.objective = batch_scalar(s, sema_eval(s, &f, st->a), "minimize",
                                   st->a->loc);
      } else if (strcmp(st->name, "report") == 0) {
        if (st->a->kind != AST_NAME) {
          diag_error(s->diag, st->a->loc,
                     "report names a value of the step: 'report kl' after "
                     "'kl = ...'");
          break;
        }
        for (int k = 0; k < r.nreports; k++)
          if (strcmp(r.report_name[k], st->a->name) == 0) {
            diag_error(s->diag, st->a->loc, "'%s' is reported twice",
                       st->a->name);
            break;
          }
        IrValue *v = batch_scalar(s, sema_eval(s, &f, st->a), "report",
                                  st->a->loc);
        if (v) {
          r.report_name[r.nreports] = st->a->name;
          r.report_loc[r.nreports] = st->a->loc;
          r.report[r.nreports++] = v;
        }
      } else {
        diag_error(s->diag, st->loc,
                   "unknown word '%s' in step '%s' (a step holds 'NAME = "
                   "expr', 'minimize expr', 'report NAME', 'penalty expr' "
                   "and the settings over, optimizer, schedule, warmup, "
                   "clip_norm)",
                   st->name, step->name);
      }
      break;
    default:
      diag_error(s->diag, st->loc, "this statement is not allowed in a step");
    }
  }
  if (!minimize) {
    diag_error(s->diag, step->loc, "step '%s' needs 'minimize expr'",
               step->name);
    return r;
  }
  // Penalties of the layers this step ran (and its own) join its objective.
  for (int i = first_penalty; r.objective && i < s->penalties.n; i++) {
    IrValue *p = s->penalties.item[i];
    if (p->batched)
      p = ir_unary(s->fn, OP_BATCH_MEAN, p, p->loc);
    r.objective = ir_binary(s->fn, OP_ADD, r.objective, p, p->loc);
  }
  s->penalties.n = first_penalty;
  return r;
}

// The values the objective's gradient can flow through: its closure, not
// looking through detach.
static bool *grad_reach(Sema *s, IrValue *objective) {
  IrFn *fn = s->m->fn;
  bool *in = arena_alloc(s->arena, (size_t)fn->values.n + 1);
  if (!objective)
    return in;
  ir_renumber(fn);
  in[objective->id] = true;
  for (int i = fn->values.n - 1; i >= 0; i--) {
    IrValue *v = fn->values.item[i];
    if (!in[i] || v->op == OP_DETACH)
      continue;
    for (int a = 0; a < v->narg; a++)
      in[v->arg[a]->id] = true;
  }
  return in;
}

// `over = model` or `over = [model, ...]`: the trainable parameters of
// those models that the objective depends on, into ps.
static void step_over(Sema *s, Ast *step, Ast *over, IrValue *objective,
                      PtrVec *ps) {
  if (!over) {
    diag_error(s->diag, step->loc,
               "step '%s' needs 'over = MODEL' (or a list of models): the "
               "parameters it updates",
               step->name);
    return;
  }
  Ast *e = over->a;
  int n = e->kind == AST_LIST ? e->list.n : 1;
  bool *reach = grad_reach(s, objective);
  for (int i = 0; i < n; i++) {
    Ast *it = e->kind == AST_LIST ? e->list.item[i] : e;
    Ast *d = it->kind == AST_NAME ? sema_find_decl(s, it->name) : NULL;
    if (!d || d->kind != AST_MODEL) {
      diag_error(s->diag, it->loc, "over names models%s%s%s",
                 it->kind == AST_NAME ? "; '" : "",
                 it->kind == AST_NAME ? it->name : "",
                 it->kind == AST_NAME ? "' is not a model" : "");
      continue;
    }
    ModelUse *u = sema_model_use(s, d->name);
    bool depends = false;
    for (int k = 0; k < u->params.n; k++) {
      IrParam *p = u->params.item[k];
      if (p->buffer)
        continue;
      depends |= reach[p->value->id];
      bool seen = false;
      for (int j = 0; j < ps->n && !seen; j++)
        seen = ps->item[j] == p;
      if (!seen)
        ptrvec_push(s->arena, ps, p);
    }
    if (!depends && objective)
      diag_error(s->diag, it->loc,
                 "step '%s' minimizes over '%s', but its objective does not "
                 "depend on %s's parameters%s",
                 step->name, d->name, d->name,
                 u->params.n ? " (is it inside detach?)" : "");
  }
}

// The train block's named optimizers: `optimizer NAME = adam(...)`.
typedef struct NamedOpt {
  Ast *decl;         // the AST_OPT_INSTANCE
  int step;          // the first step that uses it, or -1
} NamedOpt;

void sema_steps(Sema *s, Ast *train, Ast **defaults) {
  IrModule *m = s->m;
  int nsteps = 0, nnamed = 0;
  for (int i = 0; i < train->body.n; i++) {
    Ast *st = train->body.item[i];
    nsteps += st && st->kind == AST_STEP;
    nnamed += st && st->kind == AST_OPT_INSTANCE;
  }
  NamedOpt *named = arena_alloc(s->arena, sizeof *named * (size_t)(nnamed + 1));
  nnamed = 0;
  for (int i = 0; i < train->body.n; i++) {
    Ast *st = train->body.item[i];
    if (!st || st->kind != AST_OPT_INSTANCE)
      continue;
    for (int k = 0; k < nnamed; k++)
      if (strcmp(named[k].decl->name, st->name) == 0) {
        diag_error(s->diag, st->loc, "optimizer '%s' is declared twice",
                   st->name);
        diag_note(s->diag, named[k].decl->loc, "first declared here");
      }
    named[nnamed++] = (NamedOpt){st, -1};
  }
  // The model's own lowering belongs to no step: its buffer updates and
  // penalties are the steps' to make.
  m->updates.n = 0;
  s->penalties.n = 0;
  m->steps = arena_alloc(s->arena, sizeof(IrStep) * (size_t)nsteps);
  m->nsteps = nsteps;
  m->step_blocks = true;
  s->step_params = arena_alloc(s->arena, sizeof(PtrVec) * (size_t)nsteps);
  int k = 0;
  for (int i = 0; i < train->body.n; i++) {
    Ast *ast = train->body.item[i];
    if (!ast || ast->kind != AST_STEP)
      continue;
    IrStep *step = &m->steps[k];
    *step = (IrStep){.name = ast->name, .loc = ast->loc};
    for (int j = 0; j < k; j++)
      if (strcmp(m->steps[j].name, ast->name) == 0) {
        diag_error(s->diag, ast->loc, "two steps are named '%s'", ast->name);
        diag_note(s->diag, m->steps[j].loc, "the first is here");
      }
    // The training graph: objective, penalties, reports, buffer updates.
    Ast *set[NSTEP_SETTINGS] = {0};
    int first_update = m->updates.n;
    s->fn->share = false;
    s->training = true;
    s->eval_pass = false;
    int first_draw = s->draws, errors = s->diag->nerrors;
    StepValues tv = lower_step(s, ast, set);
    for (int u = first_update; u < m->updates.n; u++)
      ((IrUpdate *)m->updates.item[u])->step = k;
    step->objective = tv.objective;
    step->nreports = tv.nreports;
    step->report_name = tv.report_name;
    step->report = tv.report;
    // The inference graph (the test set's numbers), sharing what does not
    // depend on the mode.
    s->fn->share = true;
    s->training = false;
    s->eval_pass = true;
    int after_draws = s->draws;
    s->draws = first_draw;  // the same numbers as the training pass's
    // (after an error the second pass would only repeat it)
    StepValues ev = s->diag->nerrors > errors ? (StepValues){0}
                                              : lower_step(s, ast, NULL);
    s->draws = after_draws;
    s->fn->share = false;
    s->training = true;
    s->eval_pass = false;
    step->eval_objective = ev.objective;
    step->eval_report =
        arena_alloc(s->arena, sizeof(IrValue *) * (size_t)(tv.nreports + 1));
    for (int r = 0; r < tv.nreports && r < ev.nreports; r++)
      step->eval_report[r] = ev.report[r];
    if (ev.nreports != tv.nreports)  // (only after an error)
      step->nreports = 0;

    // Parameters: the models named by `over`; none in two steps.
    PtrVec *ps = &s->step_params[k];
    step_over(s, ast, set[SS_OVER], tv.objective, ps);
    for (int p = 0; p < ps->n; p++)
      for (int j = 0; j < k; j++)
        for (int q = 0; q < s->step_params[j].n; q++)
          if (s->step_params[j].item[q] == ps->item[p]) {
            IrParam *par = ps->item[p];
            diag_error(s->diag, set[SS_OVER]->loc,
                       "parameter '%s' is updated by steps '%s' and '%s'; a "
                       "parameter belongs to one step",
                       par->name, m->steps[j].name, step->name);
            p = ps->n, j = k;  // one report per step
            break;
          }

    // The optimizer: the step's own, a named one, or the block's.
    Ast *oe = set[SS_OPTIMIZER] ? set[SS_OPTIMIZER]->a : defaults[0];
    if (oe && oe->kind == AST_NAME) {
      for (int n = 0; n < nnamed; n++) {
        if (strcmp(named[n].decl->name, oe->name) != 0)
          continue;
        if (named[n].step >= 0) {
          diag_error(s->diag, oe->loc,
                     "optimizer '%s' is used by steps '%s' and '%s', which "
                     "update different parameters; give each step its own",
                     oe->name, m->steps[named[n].step].name, step->name);
          diag_note(s->diag, named[n].decl->loc, "'%s' is declared here",
                    oe->name);
        }
        named[n].step = k;
        oe = named[n].decl->a;
        break;
      }
    }
    Ast *sched = set[SS_SCHEDULE] ? set[SS_SCHEDULE]->a : defaults[1];
    double lr = NAN;
    if (!oe)
      diag_error(s->diag, ast->loc,
                 "step '%s' needs an optimizer ('optimizer = adam(lr = "
                 "1e-3)')",
                 step->name);
    else
      sema_optimizer(s, oe, sched != NULL, &lr, step);
    if (sched && step->opt.lr_arg > 0)
      sema_schedule(s, sched, lr, step);
    Ast *warm = set[SS_WARMUP] ? set[SS_WARMUP]->a : defaults[2];
    if (warm) {
      double w = sema_number(s, &(Frame){.prefix = ""}, warm, "warmup", 0);
      if (w < 0 || w != (double)(int64_t)w)
        diag_error(s->diag, warm->loc, "warmup must be an integer >= 0");
      else if (!sched)
        diag_error(s->diag, warm->loc,
                   "warmup needs a schedule ('schedule = constant' keeps lr)");
      else
        step->sched.warmup = (int64_t)w;
    }
    if (set[SS_CLIP]) {
      double c = sema_number(s, &(Frame){.prefix = ""}, set[SS_CLIP]->a,
                             "clip_norm", 0);
      if (!(c >= 0))
        diag_error(s->diag, set[SS_CLIP]->a->loc,
                   "clip_norm must be a number of at least 0");
      else
        step->clip_norm = c;
    }
    k++;
  }
  // `sample = expr`: drawn in inference mode, from no input.
  Ast *sample = defaults[3];
  if (sample) {
    s->fn->share = true;
    s->training = false;
    s->eval_pass = true;
    Frame f = {.prefix = ""};
    SVal v = sema_eval(s, &f, sample->a);
    s->fn->share = false;
    s->training = true;
    s->eval_pass = false;
    if (v.kind == SV_TENSOR && v.t->batched) {
      bool *dep = arena_alloc(s->arena, (size_t)s->fn->values.n + 1);
      ir_renumber(s->fn);
      dep[v.t->id] = true;
      ir_close_deps(s->fn, dep);
      if (dep[m->input->id])
        diag_error(s->diag, sample->a->loc,
                   "sample must be drawn from random numbers, not computed "
                   "from the data's input");
      else
        m->sample = v.t;
    } else if (v.kind != SV_POISON) {
      diag_error(s->diag, sample->a->loc,
                 "sample must give one tensor per example, like "
                 "sigmoid(decoder(normal([20]))), got %s",
                 v.kind == SV_TENSOR ? "one value for every example"
                                     : sval_describe(s, v));
    }
  }
}
