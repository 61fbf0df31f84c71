// nnrt_resume_test.c — optimizer state in checkpoints and exact resuming.
// A fake model in C (softmax regression 6 -> 3 on inline data, trained with
// Adam, whose update depends on the step count t through bias correction)
// calls the runtime as generated code does and starts t from
// nnrt_step_start. Checks that train → save → train --load gives parameters
// and optimizer state bit-identical to one uninterrupted run, also after a
// Ctrl-C in the middle of an epoch; that checkpoints without optimizer state
// still load (with a note) and start the optimizer fresh; that eval and
// predict ignore the state; and the loader's handling of state that is
// missing, partial, from another optimizer or malformed.
#include <math.h>
#include <signal.h>

#include "nnrt_test.h"

// A copy of a path that outlives in_dir's rotating buffers.
static const char *kept(const char *s) {
  static char b[16][512];
  static int n;
  char *d = b[n++ % 16];
  snprintf(d, sizeof b[0], "%s", s);
  return d;
}

enum { IN = 6, OUT = 3, NW = IN * OUT, NP = NW + OUT, ROWS = 50 };

// Test knobs and observations (each Criterion test is its own process).
static int64_t sigint_at_step = -1;  // raise SIGINT during this step of a run
static int64_t seen_start = -1;      // nnrt_step_start at the start
static float seen_state0 = -1;       // state[0] and state[NP] at the start
static float seen_state1 = -1;

static void logits(const float *params, const float *x, float *p) {
  float mx = -INFINITY, sum = 0;
  for (int k = 0; k < OUT; k++) {
    float z = params[NW + k];
    for (int j = 0; j < IN; j++)
      z += x[j] * params[j * OUT + k];
    p[k] = z;
    mx = fmaxf(mx, z);
  }
  for (int k = 0; k < OUT; k++)
    sum += p[k] = expf(p[k] - mx);
  for (int k = 0; k < OUT; k++)
    p[k] /= sum;
}

static int argmax(const float *v) {
  int c = 0;
  for (int k = 1; k < OUT; k++)
    c = v[k] > v[c] ? k : c;
  return c;
}

// Adam: state 0 is the first moment, state 1 the second, at
// state[k * NP + i]; the step t starts from the runtime's count.
static void adam_train(NnrtRun *run, float *params, float *state, float *ws,
                       int64_t max_batch) {
  float *x = ws, *y = x + max_batch * IN, *g = y + max_batch * OUT;
  int64_t t = nnrt_step_start(run), local = 0;
  seen_start = t;
  seen_state0 = state[0], seen_state1 = state[NP];
  for (int64_t e = 0;; e++) {
    int64_t nb = nnrt_epoch_begin(run, e);
    if (nb == 0)
      return;
    for (int64_t i = 0; i < nb; i++) {
      int64_t rows = nnrt_batch_fetch(run, i, x, y);
      double loss = 0, correct = 0;
      memset(g, 0, NP * sizeof(float));
      for (int64_t r = 0; r < rows; r++) {
        float p[OUT];
        const float *xr = x + r * IN, *yr = y + r * OUT;
        logits(params, xr, p);
        loss -= log(p[argmax(yr)] + 1e-12);
        correct += argmax(p) == argmax(yr);
        for (int k = 0; k < OUT; k++) {
          float d = (p[k] - yr[k]) / (float)rows;
          g[NW + k] += d;
          for (int j = 0; j < IN; j++)
            g[j * OUT + k] += xr[j] * d;
        }
      }
      t++;
      float c1 = 1 - powf(0.9f, (float)t), c2 = 1 - powf(0.999f, (float)t);
      for (int q = 0; q < NP; q++) {
        float *m1 = &state[q], *m2 = &state[NP + q];
        *m1 = 0.9f * *m1 + 0.1f * g[q];
        *m2 = 0.999f * *m2 + 0.001f * g[q] * g[q];
        params[q] -= 0.05f * (*m1 / c1) / (sqrtf(*m2 / c2) + 1e-8f);
      }
      if (local++ == sigint_at_step)
        raise(SIGINT);
      if (nnrt_batch_end(run, rows, loss, correct))
        return;
    }
    if (nnrt_epoch_end(run, e))
      return;
  }
}

static void adam_infer(const float *params, float *ws, int64_t max_batch,
                       const float *x, const float *y, int64_t rows,
                       float *out, double *stats) {
  (void)ws, (void)max_batch;
  for (int64_t r = 0; r < rows; r++) {
    float p[OUT];
    logits(params, x + r * IN, p);
    if (out)
      memcpy(out + r * OUT, p, sizeof p);
    if (y) {
      stats[0] -= log(p[argmax(y + r * OUT)] + 1e-12);
      stats[1] += argmax(p) == argmax(y + r * OUT);
    }
  }
}

static const NnrtParamInfo adam_params[2] = {
    {"dense.W", 2, {IN, OUT}, NW, 0, NNRT_INIT_XAVIER_UNIFORM, 0, 0, IN, OUT, 0, 0},
    {"dense.b", 1, {OUT}, OUT, NW, NNRT_INIT_ZEROS, 0, 0, 0, 0, 0, 0},
};
static const double adam_state[2] = {0, 0};

// Three classes of points: the class is the largest of three sums of inputs.
static float data_x[ROWS * IN], data_y[ROWS];

static NnrtModel adam_model(void) {
  for (int r = 0; r < ROWS; r++) {
    float s[3] = {0, 0, 0};
    for (int j = 0; j < IN; j++) {
      float v = (float)((r * 7 + j * 13) % 17) / 17.0f - 0.5f;
      data_x[r * IN + j] = v;
      s[j % 3] += v;
    }
    data_y[r] = (float)(s[0] > s[1] && s[0] > s[2] ? 0 : s[1] > s[2] ? 1 : 2);
  }
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "adam";
  m.in_rank = 1, m.in_dim[0] = IN, m.in_numel = IN, m.out_numel = OUT;
  m.nparams = 2, m.params = adam_params, m.param_numel = NP;
  m.nstate = 2, m.state_init = adam_state;
  NnrtDataSpec d = {NNRT_DATA_INLINE, NULL, NULL, 1.0, 0, NULL,
                    ROWS, IN, 1, data_x, data_y, 0, 0, 0, 0, 0};
  m.train_data = d;
  m.batch = 8, m.epochs = 2, m.seed = 3;
  m.accuracy = 1;
  m.train_ws_per_row = IN + OUT, m.train_ws_fixed = NP;
  m.infer_ws_per_row = 0, m.infer_ws_fixed = 1;
  m.train = adam_train, m.infer = adam_infer;
  return m;
}

typedef struct Saved {
  float params[NP], state[2 * NP];
  NnrtTrainPos pos;
  NnrtStateLoad st;
} Saved;

static Saved read_saved(const NnrtModel *m, const char *path) {
  Saved s;
  memset(&s, 0, sizeof s);
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_read(path, m, s.params, s.state, &s.pos, &s.st,
                                    &e), 0, "%s", e.msg);
  return s;
}

static Captured train(const NnrtModel *m, const char *dir, char **argv) {
  Captured c = run_main(m, dir, argv);
  return c;
}

// The value of `key` in the JSON line of epoch `epoch` (1-based) in out.
static double epoch_value(const char *out, int epoch, const char *key) {
  char pat[32];
  snprintf(pat, sizeof pat, "{\"epoch\":%d,", epoch);
  const char *line = strstr(out, pat);
  cr_assert_not_null(line, "no epoch %d in %s", epoch, out);
  return json_get(line, key);
}

Test(resume, save_load_continue_is_bit_identical) {
  const char *dir = tmpdir();
  NnrtModel m = adam_model();
  char *whole[] = {"./adam", "--epochs", "4", "--json", "--quiet", "--save",
                   (char *)in_dir(dir, "whole.st"), NULL};
  Captured a = train(&m, dir, whole);
  cr_assert_eq(a.rc, 0, "%s", a.err);
  cr_assert_eq(seen_start, 0);  // a fresh run
  cr_assert_eq(seen_state0, 0.0f);

  char *first[] = {"./adam", "--epochs", "2", "--json", "--quiet", "--save",
                   (char *)in_dir(dir, "part.st"), NULL};
  Captured b = train(&m, dir, first);
  cr_assert_eq(b.rc, 0, "%s", b.err);
  Saved mid = read_saved(&m, in_dir(dir, "part.st"));
  cr_assert_eq(mid.st, NNRT_STATE_RESTORED);
  cr_assert_eq(mid.pos.epoch, 2);
  cr_assert_eq(mid.pos.step, 14);  // 50 rows in batches of 8: 7 steps
  cr_assert_eq(mid.pos.examples, 0);
  captured_free(&b);

  char *rest[] = {"./adam", "--epochs", "2", "--json", "--load",
                  (char *)in_dir(dir, "part.st"), "--save",
                  (char *)in_dir(dir, "part.st"), NULL};
  b = train(&m, dir, rest);
  cr_assert_eq(b.rc, 0, "%s", b.err);
  cr_assert_eq(seen_start, 14);
  cr_assert_eq(seen_state0, mid.state[0]);
  cr_assert_eq(seen_state1, mid.state[NP]);
  cr_assert(strstr(b.err, "loaded weights and optimizer state from "),
            "%s", b.err);
  cr_assert(strstr(b.err, "part.st (after epoch 2, step 14)\n"), "%s", b.err);
  // The numbering continues: this run's epochs are 3 and 4 of 4.
  cr_assert(strstr(b.err, "epoch 3/4  loss "), "%s", b.err);
  for (int ep = 3; ep <= 4; ep++)
    cr_assert_eq(epoch_value(b.out, ep, "loss"),
                 epoch_value(a.out, ep, "loss"), "epoch %d", ep);

  Saved x = read_saved(&m, in_dir(dir, "whole.st"));
  Saved y = read_saved(&m, in_dir(dir, "part.st"));
  cr_assert_eq(memcmp(x.params, y.params, sizeof x.params), 0);
  cr_assert_eq(memcmp(x.state, y.state, sizeof x.state), 0);
  cr_assert_eq(y.pos.epoch, 4);
  cr_assert_eq(y.pos.step, 28);
  captured_free(&a);
  captured_free(&b);
}

Test(resume, ctrl_c_mid_epoch_then_load_is_bit_identical) {
  const char *dir = tmpdir();
  NnrtModel m = adam_model();
  char *whole[] = {"./adam", "--epochs", "3", "--quiet", "--save",
                   (char *)in_dir(dir, "whole.st"), NULL};
  Captured a = train(&m, dir, whole);
  cr_assert_eq(a.rc, 0, "%s", a.err);
  captured_free(&a);

  // Step 10 is the fourth batch of epoch 2 (7 steps per epoch).
  sigint_at_step = 10;
  char *first[] = {"./adam", "--epochs", "3", "--save",
                   (char *)in_dir(dir, "part.st"), NULL};
  Captured b = train(&m, dir, first);
  cr_assert_eq(b.rc, 130, "%s", b.err);
  cr_assert(strstr(b.err, "interrupted at epoch 2, step 4; weights saved"),
            "%s", b.err);
  Saved mid = read_saved(&m, in_dir(dir, "part.st"));
  cr_assert_eq(mid.st, NNRT_STATE_RESTORED);
  cr_assert_eq(mid.pos.epoch, 1);
  cr_assert_eq(mid.pos.step, 11);
  cr_assert_eq(mid.pos.examples, 32);
  captured_free(&b);

  // Two more epochs: the rest of epoch 2, then epoch 3.
  sigint_at_step = -1;
  char *rest[] = {"./adam", "--epochs", "2", "--load",
                  (char *)in_dir(dir, "part.st"), "--save",
                  (char *)in_dir(dir, "part.st"), NULL};
  b = train(&m, dir, rest);
  cr_assert_eq(b.rc, 0, "%s", b.err);
  cr_assert(strstr(b.err, "(after epoch 1 and 32 examples, step 11)\n"), "%s",
            b.err);
  cr_assert_eq(seen_start, 11);
  cr_assert(strstr(b.out, "epoch 2/3  loss ") && strstr(b.out, "epoch 3/3"),
            "%s", b.out);
  Saved x = read_saved(&m, in_dir(dir, "whole.st"));
  Saved y = read_saved(&m, in_dir(dir, "part.st"));
  cr_assert_eq(memcmp(x.params, y.params, sizeof x.params), 0);
  cr_assert_eq(memcmp(x.state, y.state, sizeof x.state), 0);
  cr_assert_eq(y.pos.epoch, 3);
  cr_assert_eq(y.pos.step, 21);
  captured_free(&b);
}

// Interrupted during the last step of an epoch: the resumed run starts the
// next epoch rather than an empty one.
Test(resume, ctrl_c_after_last_step_of_an_epoch) {
  const char *dir = tmpdir();
  NnrtModel m = adam_model();
  char *whole[] = {"./adam", "--epochs", "2", "--quiet", "--save",
                   (char *)in_dir(dir, "whole.st"), NULL};
  Captured a = train(&m, dir, whole);
  cr_assert_eq(a.rc, 0);
  captured_free(&a);
  sigint_at_step = 6;
  char *first[] = {"./adam", "--quiet", "--save",
                   (char *)in_dir(dir, "part.st"), NULL};
  Captured b = train(&m, dir, first);
  cr_assert_eq(b.rc, 130);
  Saved mid = read_saved(&m, in_dir(dir, "part.st"));
  cr_assert_eq(mid.pos.epoch, 0);
  cr_assert_eq(mid.pos.examples, 50);
  captured_free(&b);
  sigint_at_step = -1;
  char *rest[] = {"./adam", "--epochs", "1", "--json", "--load",
                  (char *)in_dir(dir, "part.st"), "--save",
                  (char *)in_dir(dir, "part.st"), NULL};
  b = train(&m, dir, rest);
  cr_assert_eq(b.rc, 0, "%s", b.err);
  cr_assert(strstr(b.out, "{\"epoch\":2,"), "%s", b.out);
  Saved x = read_saved(&m, in_dir(dir, "whole.st"));
  Saved y = read_saved(&m, in_dir(dir, "part.st"));
  cr_assert_eq(memcmp(x.params, y.params, sizeof x.params), 0);
  cr_assert_eq(memcmp(x.state, y.state, sizeof x.state), 0);
  captured_free(&b);
}

Test(resume, checkpoint_without_state_still_loads) {
  const char *dir = tmpdir();
  NnrtModel m = adam_model();
  float w[NP];
  for (int i = 0; i < NP; i++)
    w[i] = 0.01f * (float)i;
  NnrtErr e;
  const char *old = kept(in_dir(dir, "old.st"));
  cr_assert_eq(nnrt_checkpoint_save(old, &m, w, 2, &e), 0);
  char *argv[] = {"./adam", "--epochs", "1", "--json", "--no-save", "--load",
                  (char *)old, NULL};
  Captured c = train(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert(strstr(c.err, "loaded weights from "), "%s", c.err);
  cr_assert(strstr(c.err, "old.st (after epoch 2); note: it holds no "
                   "optimizer state, so the optimizer starts fresh\n"),
            "%s", c.err);
  cr_assert_eq(seen_start, 0);
  cr_assert_eq(seen_state0, 0.0f);
  cr_assert(strstr(c.out, "{\"epoch\":3,"), "%s", c.out);
  captured_free(&c);
  // --quiet: no note at all.
  char *quiet[] = {"./adam", "--epochs", "1", "--quiet", "--no-save",
                   "--load", (char *)old, NULL};
  c = train(&m, dir, quiet);
  cr_assert_eq(c.rc, 0);
  cr_assert_str_eq(c.err, "");
  captured_free(&c);
  // A file with no metadata at all starts at epoch 1.
  const char *bare = kept(in_dir(dir, "bare.st"));
  float z[NP] = {0};
  char hdr[512];
  int n = snprintf(hdr, sizeof hdr, "{\"dense.W\":{\"dtype\":\"F32\",\"shape\""
                   ":[6,3],\"data_offsets\":[0,72]},\"dense.b\":{\"dtype\":"
                   "\"F32\",\"shape\":[3],\"data_offsets\":[72,84]}}");
  char file[8 + 512 + sizeof z];
  uint64_t hl = (uint64_t)n;
  memcpy(file, &hl, 8);
  memcpy(file + 8, hdr, (size_t)n);
  memcpy(file + 8 + n, z, sizeof z);
  write_file(bare, file, 8 + (size_t)n + sizeof z);
  char *b2[] = {"./adam", "--epochs", "1", "--json", "--no-save", "--load",
                (char *)bare, NULL};
  c = train(&m, dir, b2);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert(strstr(c.err, "loaded weights from "), "%s", c.err);
  cr_assert(strstr(c.err, "bare.st; note: it holds no optimizer state"), "%s",
            c.err);
  cr_assert(strstr(c.out, "{\"epoch\":1,"), "%s", c.out);
  captured_free(&c);
}

Test(resume, eval_and_predict_ignore_the_state) {
  const char *dir = tmpdir();
  NnrtModel m = adam_model();
  const char *ck = kept(in_dir(dir, "w.st"));
  char *tr[] = {"./adam", "--epochs", "2", "--json", "--quiet", "--save",
                (char *)ck, NULL};
  Captured c = train(&m, dir, tr);
  cr_assert_eq(c.rc, 0);
  double loss = epoch_value(c.out, 2, "loss");
  cr_assert(isfinite(loss));
  captured_free(&c);
  char *ev[] = {"./adam", "eval", "--json", "--quiet", "--load", (char *)ck,
                NULL};
  c = run_main(&m, dir, ev);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert(isfinite(json_get(c.out, "train_loss")), "%s", c.out);
  cr_assert_eq(json_get(c.out, "examples"), ROWS);
  captured_free(&c);
  write_text(in_dir(dir, "in.csv"), "1,2,3,4,5,6\n0,0,0,0,0,0\n");
  char *pr[] = {"./adam", "predict", "--load", (char *)ck,
                (char *)in_dir(dir, "in.csv"), NULL};
  c = run_main(&m, dir, pr);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  captured_free(&c);
  // The parameters-only reader gets the same weights.
  float w[NP];
  int64_t epoch;
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_load(ck, &m, w, &epoch, &e), 0, "%s", e.msg);
  Saved s = read_saved(&m, ck);
  cr_assert_eq(memcmp(w, s.params, sizeof w), 0);
  cr_assert_eq(epoch, 2);
}

// ---- the loader, directly ---------------------------------------------------
static NnrtParamInfo small_info[2];
static double inits[3] = {0.5, 0.25, 0.125};

// p [2, 2] and q [3]: 7 floats; nstate states.
static NnrtModel small_model(int64_t nstate) {
  NnrtParamInfo p = {"p", 2, {2, 2}, 4, 0, NNRT_INIT_ZEROS, 0, 0, 0, 0, 0, 0};
  NnrtParamInfo q = {"q", 1, {3}, 3, 4, NNRT_INIT_ZEROS, 0, 0, 0, 0, 0, 0};
  small_info[0] = p, small_info[1] = q;
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "s";
  m.nparams = 2, m.params = small_info, m.param_numel = 7;
  m.nstate = nstate, m.state_init = inits;
  return m;
}

Test(checkpoint_state, layout_and_round_trip) {
  cr_assert_eq(chdir(tmpdir()), 0);
  NnrtModel m = small_model(2);
  float w[7], st[14];
  for (int i = 0; i < 7; i++)
    w[i] = (float)i;
  for (int i = 0; i < 14; i++)
    st[i] = 100.0f + (float)i;
  NnrtTrainPos pos = {3, 21, 5};
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_write("s.st", &m, w, st, &pos, &e), 0, "%s",
               e.msg);
  cr_assert_eq(access("s.st.tmp", F_OK), -1);
  size_t n;
  char *f = read_all("s.st", &n);
  uint64_t hl;
  memcpy(&hl, f, 8);
  cr_assert_eq(hl % 8, 0);
  cr_assert_eq(n, 8 + hl + 21 * 4);
  const char *want =
      "{\"__metadata__\":{\"format\":\"pt\",\"model\":\"s\",\"epoch\":\"3\","
      "\"step\":\"21\",\"epoch_examples\":\"5\"},"
      "\"p\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
      "\"q\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[16,28]},"
      "\"optimizer.0.p\":{\"dtype\":\"F32\",\"shape\":[2,2],"
      "\"data_offsets\":[28,44]},"
      "\"optimizer.0.q\":{\"dtype\":\"F32\",\"shape\":[3],"
      "\"data_offsets\":[44,56]},"
      "\"optimizer.1.p\":{\"dtype\":\"F32\",\"shape\":[2,2],"
      "\"data_offsets\":[56,72]},"
      "\"optimizer.1.q\":{\"dtype\":\"F32\",\"shape\":[3],"
      "\"data_offsets\":[72,84]}}";
  cr_assert_eq(strncmp(f + 8, want, strlen(want)), 0, "%.*s", (int)hl, f + 8);
  const float *data = (const float *)(f + 8 + hl);
  cr_assert_eq(memcmp(data, w, 28), 0);
  cr_assert_eq(memcmp(data + 7, st, 56), 0);  // state k of p then of q
  free(f);
  float w2[7], st2[14];
  NnrtTrainPos back;
  NnrtStateLoad s;
  cr_assert_eq(nnrt_checkpoint_read("s.st", &m, w2, st2, &back, &s, &e), 0,
               "%s", e.msg);
  cr_assert_eq(s, NNRT_STATE_RESTORED);
  cr_assert_arr_eq(w, w2, sizeof w);
  cr_assert_arr_eq(st, st2, sizeof st);
  cr_assert_eq(back.epoch, 3);
  cr_assert_eq(back.step, 21);
  cr_assert_eq(back.examples, 5);
  // Without a status pointer the state is not read at all.
  float st3[14] = {0};
  cr_assert_eq(nnrt_checkpoint_read("s.st", &m, w2, st3, &back, NULL, &e), 0);
  for (int i = 0; i < 14; i++)
    cr_assert_eq(st3[i], 0.0f);
  // A model without optimizer state reads the file as another optimizer's.
  NnrtModel m0 = small_model(0);
  cr_assert_eq(nnrt_checkpoint_read("s.st", &m0, w2, st3, &back, &s, &e), 0);
  cr_assert_eq(s, NNRT_STATE_MISMATCH);
}

// Loads s.st into a model with `nstate` states; the state buffer must be
// left as it was unless restored.
static NnrtStateLoad load_into(int64_t nstate) {
  NnrtModel m = small_model(nstate);
  float w[7], st[21];
  for (int i = 0; i < 21; i++)
    st[i] = -1;
  NnrtTrainPos pos;
  NnrtStateLoad s;
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_read("s.st", &m, w, st, &pos, &s, &e), 0, "%s",
               e.msg);
  if (s != NNRT_STATE_RESTORED)
    for (int i = 0; i < 21; i++)
      cr_assert_eq(st[i], -1.0f);
  return s;
}

Test(checkpoint_state, mismatched_state_is_left_alone) {
  cr_assert_eq(chdir(tmpdir()), 0);
  NnrtModel m2 = small_model(2);
  float w[7] = {0}, st[14] = {0};
  NnrtTrainPos pos = {1, 4, 0};
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_write("s.st", &m2, w, st, &pos, &e), 0);
  cr_assert_eq(load_into(2), NNRT_STATE_RESTORED);
  cr_assert_eq(load_into(1), NNRT_STATE_MISMATCH);  // a state too many
  cr_assert_eq(load_into(3), NNRT_STATE_MISMATCH);  // a state missing
  // Parameters only (as eval-era checkpoints are): absent.
  cr_assert_eq(nnrt_checkpoint_save("s.st", &m2, w, 1, &e), 0);
  cr_assert_eq(load_into(2), NNRT_STATE_ABSENT);
  // A stateless optimizer: restored when the step is there, else absent.
  cr_assert_eq(load_into(0), NNRT_STATE_ABSENT);
  NnrtModel m0 = small_model(0);
  cr_assert_eq(nnrt_checkpoint_write("s.st", &m0, w, st, &pos, &e), 0);
  cr_assert_eq(load_into(0), NNRT_STATE_RESTORED);
  cr_assert_eq(load_into(2), NNRT_STATE_ABSENT);
}

#define P_ "\"p\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}"
#define Q_ "\"q\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[16,28]}"
#define S0P_ "\"optimizer.0.p\":{\"dtype\":\"F32\",\"shape\":[2,2]," \
             "\"data_offsets\":[28,44]}"
#define S0Q_ "\"optimizer.0.q\":{\"dtype\":\"F32\",\"shape\":[3]," \
             "\"data_offsets\":[44,56]}"

Test(checkpoint_state, odd_files) {
  cr_assert_eq(chdir(tmpdir()), 0);
  NnrtModel m = small_model(1);
  float w[7], st[7];
  NnrtTrainPos pos;
  NnrtStateLoad s;
  NnrtErr e;
  // All the state but no step count: not restorable.
  write_st("a.st", "{" P_ "," Q_ "," S0P_ "," S0Q_ "}", 56);
  cr_assert_eq(nnrt_checkpoint_read("a.st", &m, w, st, &pos, &s, &e), 0);
  cr_assert_eq(s, NNRT_STATE_MISMATCH);
  cr_assert_eq(pos.step, -1);
  // A malformed step is no step.
  write_st("a.st", "{\"__metadata__\":{\"step\":\"-3\"}," P_ "," Q_ "," S0P_
           "," S0Q_ "}", 56);
  cr_assert_eq(nnrt_checkpoint_read("a.st", &m, w, st, &pos, &s, &e), 0);
  cr_assert_eq(s, NNRT_STATE_MISMATCH);
  // So is one too large to count on from.
  write_st("a.st", "{\"__metadata__\":{\"step\":\"9223372036854775807\","
           "\"epoch\":\"1152921504606846977\"}," P_ "," Q_ "," S0P_ "," S0Q_
           "}", 56);
  cr_assert_eq(nnrt_checkpoint_read("a.st", &m, w, st, &pos, &s, &e), 0);
  cr_assert_eq(s, NNRT_STATE_MISMATCH);
  cr_assert_eq(pos.epoch, -1);
  // A state tensor with the wrong shape is an error when it would be used...
  write_st("a.st", "{\"__metadata__\":{\"step\":\"3\"}," P_ "," Q_ ","
           "\"optimizer.0.p\":{\"dtype\":\"F32\",\"shape\":[4],"
           "\"data_offsets\":[28,44]}," S0Q_ "}", 56);
  cr_assert_eq(nnrt_checkpoint_read("a.st", &m, w, st, &pos, &s, &e), -1);
  cr_assert_str_eq(e.msg, "a.st: tensor 'optimizer.0.p' has shape [4]; the "
                   "model expects [2, 2]");
  // ... and ignored by eval.
  cr_assert_eq(nnrt_checkpoint_read("a.st", &m, w, NULL, &pos, NULL, &e), 0);
  // Twice the same state tensor.
  write_st("a.st", "{" P_ "," Q_ "," S0P_ "," S0P_ "}", 56);
  cr_assert_eq(nnrt_checkpoint_read("a.st", &m, w, st, &pos, &s, &e), -1);
  cr_assert_str_eq(e.msg, "a.st: tensor 'optimizer.0.p' appears twice");
  // Names that only look like state, and state of unknown parameters, are
  // extra tensors.
  write_st("a.st", "{\"__metadata__\":{\"step\":\"3\"}," P_ "," Q_ "," S0P_
           "," S0Q_ ",\"optimizer.00.p\":{\"dtype\":\"F32\",\"shape\":[],"
           "\"data_offsets\":[0,0]},\"optimizer.1.zz\":{\"dtype\":\"F32\","
           "\"shape\":[],\"data_offsets\":[0,0]},\"optimizer.x.p\":{\"dtype\""
           ":\"F32\",\"shape\":[],\"data_offsets\":[0,0]},\"optimizer.0\":{"
           "\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]},"
           "\"optimizer.99999999999999999999.p\":{\"dtype\":\"F32\",\"shape\""
           ":[],\"data_offsets\":[0,0]}}", 56);
  cr_assert_eq(nnrt_checkpoint_read("a.st", &m, w, st, &pos, &s, &e), 0, "%s",
               e.msg);
  cr_assert_eq(s, NNRT_STATE_RESTORED);
  cr_assert_eq(pos.step, 3);
}

// Every prefix and many byte changes of a checkpoint with state fail
// cleanly or load; ASan and UBSan watch the reads.
Test(checkpoint_state, hostile_files_never_crash) {
  cr_assert_eq(chdir(tmpdir()), 0);
  NnrtModel m = small_model(2);
  float w[7] = {1, 2, 3, 4, 5, 6, 7}, st[14] = {0};
  NnrtTrainPos pos = {2, 9, 0};
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_write("good.st", &m, w, st, &pos, &e), 0);
  size_t n;
  char *orig = read_all("good.st", &n);
  float back[7], sb[14];
  NnrtStateLoad s;
  for (size_t len = 0; len < n; len++) {
    write_file("bad.st", orig, len);
    cr_assert_eq(nnrt_checkpoint_read("bad.st", &m, back, sb, &pos, &s, &e),
                 -1, "prefix %zu loaded", len);
    cr_assert(strstr(e.msg, "bad.st: "), "%s", e.msg);
  }
  const char subst[] = {0, '"', '{', '}', ',', ':', '\\', '9', '.', 'x'};
  char *mut = malloc(n);
  for (size_t at = 0; at < n - 84; at++)
    for (size_t k = 0; k < sizeof subst; k++) {
      memcpy(mut, orig, n);
      mut[at] = subst[k];
      write_file("bad.st", mut, n);
      int rc = nnrt_checkpoint_read("bad.st", &m, back, sb, &pos, &s, &e);
      cr_assert(rc == 0 || strstr(e.msg, "bad.st: "), "%s", e.msg);
    }
  free(mut);
  free(orig);
}
