// parse_test.c — unit tests of the front end (grammar/lex.re,
// grammar/parse.y, compiler/ast.c).
//
// Each test parses an in-memory source with parse_source(), then checks the
// tree directly or through its ast_print() dump, and the diagnostics that a
// memstream captured from ctx.diag. Sources are built by hand (not with
// source_from_string) so that they may hold NUL bytes.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"

// One parse: its arena, context, tree and captured diagnostics.
typedef struct Parse {
  Arena arena;
  Ctx ctx;
  AstFile *file;
  char *errs;     // everything diag printed
  size_t errs_len;
  FILE *errf;
} Parse;

static void parse_bytes(Parse *ps, const char *text, size_t len) {
  memset(ps, 0, sizeof *ps);
  ps->errf = open_memstream(&ps->errs, &ps->errs_len);
  cr_assert(ps->errf);
  ps->ctx.arena = &ps->arena;
  ps->ctx.diag.arena = &ps->arena;
  ps->ctx.diag.out = ps->errf;
  char *buf = arena_alloc(&ps->arena, len + 16);  // NUL padding, like common.c
  memcpy(buf, text, len);
  Source *src = arena_alloc(&ps->arena, sizeof *src);
  *src = (Source){.path = "t.nn", .text = buf, .len = len};
  ptrvec_push(&ps->arena, &ps->ctx.diag.sources, src);
  ps->file = parse_source(&ps->ctx, src);
  cr_assert(ps->file);
  fflush(ps->errf);
}

static void parse(Parse *ps, const char *text) {
  parse_bytes(ps, text, strlen(text));
}

static void parse_done(Parse *ps) {
  fclose(ps->errf);
  free(ps->errs);
  arena_free(&ps->arena);
}

// The ast_print dump of a whole file (caller frees).
static char *dump(const AstFile *f) {
  char *s = NULL;
  size_t n = 0;
  FILE *out = open_memstream(&s, &n);
  ast_print(out, f);
  fclose(out);
  return s;
}

// Parses `text` and returns its dump; the test fails on any diagnostic.
static char *dump_ok(const char *text) {
  Parse ps;
  parse(&ps, text);
  cr_expect_eq(ps.ctx.diag.nerrors, 0, "errors in:\n%s\n%s", text, ps.errs);
  char *s = dump(ps.file);
  parse_done(&ps);
  return s;
}

// The dump of `expr`, parsed as the body of `layer f() = expr` (caller
// frees). Only the expression is kept: "(return EXPR))" is stripped.
static char *expr_dump(const char *expr) {
  char src[512];
  snprintf(src, sizeof src, "layer f() = %s\n", expr);
  char *s = dump_ok(src);
  char *r = strstr(s, "(return ");
  cr_assert(r, "no return in %s", s);
  size_t n = strlen(r + 8);
  cr_assert(n >= 3);
  char *e = strndup(r + 8, n - 3);  // drop "))\n"
  free(s);
  return e;
}

static void expect_expr(const char *expr, const char *want) {
  char *got = expr_dump(expr);
  cr_expect_str_eq(got, want, "%s", expr);
  free(got);
}

// Parses `text` and expects exactly `nerrors` errors and `want` as output.
static void expect_errors(const char *text, int nerrors, const char *want) {
  Parse ps;
  parse(&ps, text);
  cr_expect_eq(ps.ctx.diag.nerrors, nerrors, "%s", ps.errs);
  if (want)
    cr_expect_str_eq(ps.errs, want);
  parse_done(&ps);
}

static const char sample[] =
    "# stdlib/layers.nn\n"
    "layer dense(x: f32[n], units: int, init = he_normal) -> f32[units] {\n"
    "    param W: f32[n, units] = init\n"
    "    param b: f32[units]    = zeros\n"
    "    return x @ W + b\n"
    "}\n"
    "layer leaky_relu(x, alpha = 0.01) = max(x, alpha * x)\n"
    "model classifier(x: f32[784]) -> f32[10] {\n"
    "    return x |> dense(256) |> relu\n"
    "             |> dense(128) |> relu |> dense(10)\n"
    "}\n"
    "loss mse(y_hat: f32[n], y: f32[n]) = mean((y_hat - y)^2)\n"
    "optimizer adam(lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, "
    "weight_decay = 0) {\n"
    "    state m = 0, v = 0\n"
    "    update(p, g, t) {\n"
    "        g = g + weight_decay * p\n"
    "        m = beta1 * m + (1 - beta1) * g\n"
    "        v = beta2 * v + (1 - beta2) * g^2\n"
    "        p = p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + "
    "eps)\n"
    "    }\n"
    "}\n"
    "train classifier {\n"
    "    data      = idx(\"fashion-mnist/train-images-idx3-ubyte.gz\", "
    "\"fashion-mnist/train-labels-idx1-ubyte.gz\", scale = 1/255)\n"
    "    loss      = softmax_cross_entropy\n"
    "    optimizer = adam(lr = 1e-3); batch = 128\n"
    "    epochs    = 5\n"
    "    metrics   = [accuracy]\n"
    "    data2 = inline([[0, 0], [0, 1], [1, 0], [1, 1]], [[0], [1], [1], "
    "[0]])\n"
    "}\n";

// ---- the sample -------------------------------------------------------------

Test(parse, sample_tree) {
  Parse ps;
  parse(&ps, sample);
  cr_assert_eq(ps.ctx.diag.nerrors, 0, "%s", ps.errs);
  AstList *d = &ps.file->decls;
  cr_assert_eq(d->n, 6);
  AstKind kinds[] = {AST_LAYER, AST_LAYER, AST_MODEL,
                     AST_LOSS, AST_OPTIMIZER, AST_TRAIN};
  const char *names[] = {"dense", "leaky_relu", "classifier",
                         "mse", "adam", "classifier"};
  for (int i = 0; i < 6; i++) {
    cr_expect_eq(d->item[i]->kind, kinds[i]);
    cr_expect_str_eq(d->item[i]->name, names[i]);
  }

  // dense: formals, result type, params, and the return's locations
  Ast *dense = d->item[0];
  cr_expect_eq(dense->loc.line, 2);
  cr_expect_eq(dense->loc.col, 1);
  cr_assert_eq(dense->formals.n, 3);
  Ast *x = dense->formals.item[0];
  cr_expect_eq(x->kind, AST_FORMAL);
  cr_expect_eq(x->a->kind, AST_TYPE);
  cr_expect_eq(x->a->dtype, DT_F32);
  cr_expect_eq(x->a->list.n, 1);
  cr_expect_eq(dense->formals.item[1]->a->dtype, DT_INT);
  cr_expect_null(dense->formals.item[2]->a);
  cr_expect_str_eq(dense->formals.item[2]->b->name, "he_normal");
  cr_assert_not_null(dense->ret);
  cr_expect_str_eq(dense->ret->list.item[0]->name, "units");
  cr_assert_eq(dense->body.n, 3);
  Ast *W = dense->body.item[0];
  cr_expect_eq(W->kind, AST_PARAM);
  cr_expect_str_eq(W->name, "W");
  cr_expect_eq(W->a->list.n, 2);
  Ast *ret = dense->body.item[2];
  cr_expect_eq(ret->kind, AST_RETURN);
  cr_expect_eq(ret->loc.line, 5);
  cr_expect_eq(ret->loc.col, 5);
  Ast *add = ret->a;
  cr_expect_eq(add->kind, AST_BINARY);
  cr_expect_eq(add->op, OPR_ADD);
  cr_expect_eq(add->loc.col, 18);  // binary nodes sit on their operator
  cr_expect_eq(add->a->op, OPR_MATMUL);
  cr_expect_eq(add->a->loc.col, 14);

  // `= expr` bodies hold one return
  Ast *leaky = d->item[1];
  cr_assert_eq(leaky->body.n, 1);
  cr_expect_eq(leaky->body.item[0]->kind, AST_RETURN);
  cr_expect_eq(leaky->body.item[0]->loc.col, 37);  // at `max`
  cr_expect_eq(leaky->body.item[0]->a->kind, AST_CALL);
  cr_expect_null(leaky->ret);

  // optimizer: one state node per name, then the update
  Ast *adam = d->item[4];
  cr_expect_eq(adam->formals.n, 5);
  cr_assert_eq(adam->body.n, 3);
  cr_expect_eq(adam->body.item[0]->kind, AST_STATE);
  cr_expect_str_eq(adam->body.item[1]->name, "v");
  cr_expect_eq(adam->body.item[1]->loc.col, 18);
  Ast *upd = adam->body.item[2];
  cr_expect_eq(upd->kind, AST_UPDATE);
  cr_expect_eq(upd->formals.n, 3);
  cr_expect_eq(upd->formals.item[2]->kind, AST_FORMAL);
  cr_expect_str_eq(upd->formals.item[2]->name, "t");
  cr_expect_eq(upd->body.n, 4);
  cr_expect_eq(adam->formals.item[3]->b->num, 1e-8);

  // train: settings are assignments, keywords may name them
  Ast *train = d->item[5];
  cr_assert_eq(train->body.n, 7);
  const char *keys[] = {"data", "loss", "optimizer", "batch",
                        "epochs", "metrics", "data2"};
  for (int i = 0; i < 7; i++) {
    cr_expect_eq(train->body.item[i]->kind, AST_ASSIGN);
    cr_expect_str_eq(train->body.item[i]->name, keys[i]);
  }
  Ast *data = train->body.item[0]->a;
  cr_expect_eq(data->kind, AST_CALL);
  cr_expect_eq(data->list.n, 3);
  cr_expect_str_eq(data->list.item[0]->name,
                   "fashion-mnist/train-images-idx3-ubyte.gz");
  cr_expect_eq(data->list.item[2]->kind, AST_NAMED_ARG);
  cr_expect_eq(train->body.item[5]->a->kind, AST_LIST);
  parse_done(&ps);
}

Test(parse, sample_dump) {
  char *s = dump_ok(sample);
  const char *dense =
      "(layer dense\n"
      "  (formal x (type f32 n))\n"
      "  (formal units (type int))\n"
      "  (formal init = he_normal)\n"
      "  (result (type f32 units))\n"
      "  (param W (type f32 n units) = init)\n"
      "  (param b (type f32 units) = zeros)\n"
      "  (return (+ (@ x W) b)))\n"
      "(layer leaky_relu\n";
  cr_expect_eq(strncmp(s, dense, strlen(dense)), 0, "%s", s);
  cr_expect(strstr(s, "  (return (call dense (call relu (call dense (call "
                      "relu (call dense x 256)) 128)) 10)))\n"), "%s", s);
  cr_expect(strstr(s, "  (state m 0)\n  (state v 0)\n  (update\n"
                      "    (formal p)\n"), "%s", s);
  cr_expect(strstr(s, "  (formal eps = 1e-08)\n"), "%s", s);
  cr_expect(strstr(s, "  (assign optimizer (call adam (named lr 0.001)))\n"
                      "  (assign batch 128)\n"), "%s", s);
  cr_expect(strstr(s, "(list (list 0 0) (list 0 1)"), "%s", s);
  free(s);
}

// ---- expressions ------------------------------------------------------------

Test(parse, precedence) {
  expect_expr("-x^2", "(- (^ x 2))");
  expect_expr("a + b * c", "(+ a (* b c))");
  expect_expr("a @ W + b", "(+ (@ a W) b)");
  expect_expr("a ^ b ^ c", "(^ a (^ b c))");
  expect_expr("a - b - c", "(- (- a b) c)");
  expect_expr("a / b * c @ d", "(@ (* (/ a b) c) d)");
  expect_expr("2 ^ -x", "(^ 2 (- x))");
  expect_expr("-a * b", "(* (- a) b)");
  expect_expr("- -a", "(- (- a))");
  expect_expr("(a + b) * c", "(* (+ a b) c)");
  expect_expr("f() + g(1, [2, 3], k = 4)",
              "(+ (call f) (call g 1 (list 2 3) (named k 4)))");
}

Test(parse, numbers_and_strings) {
  expect_expr("[12, 0.5, .5, 1e-3, 2.5E+4, 1., 0.1, 1000]",
              "(list 12 0.5 0.5 0.001 25000 1 0.1 1000)");
  expect_expr("[1e-8, 1.0000000001e-8, 0.30000000000000004]",
              "(list 1e-08 1.0000000001e-08 0.30000000000000004)");
  expect_expr("\"a\\\"b\\\\c\"", "\"a\\\"b\\\\c\"");
  Parse ps;
  parse(&ps, "import \"a\\\"b\\\\c\"\n");
  cr_assert_eq(ps.ctx.diag.nerrors, 0, "%s", ps.errs);
  cr_expect_str_eq(ps.file->decls.item[0]->name, "a\"b\\c");
  parse_done(&ps);
}

Test(parse, pipes) {
  expect_expr("x |> f", "(call f x)");
  expect_expr("x |> f(1, k = 2)", "(call f x 1 (named k 2))");
  expect_expr("x |> f |> g(2)", "(call g (call f x) 2)");
  expect_expr("a + b |> f", "(call f (+ a b))");
  expect_expr("x |> (f)", "(call f x)");
  expect_errors("layer f(x) = x |> 3\n"
                "layer g(x) = x |> f + 1\n",
                2,
                "t.nn:1:19: error: right side of '|>' must be a function "
                "or a call\n"
                "    layer f(x) = x |> 3\n"
                "                      ^\n"
                "t.nn:2:21: error: right side of '|>' must be a function "
                "or a call\n"
                "    layer g(x) = x |> f + 1\n"
                "                        ^\n");
}

// ---- newlines ---------------------------------------------------------------

Test(parse, newlines) {
  char *s = dump_ok(
      "\n# leading comment\n\n"
      "model m(x: f32[\n  784\n]) ->\n    f32[10] {\n\n"
      "    y = x   # a comment\n"
      "        |> relu\n\n"
      "        # between pipeline lines\n"
      "        |> dense(3,\n"
      "                 init = zeros)\n"
      "    z = y +\n        1; w = z *\n  2;;\n"
      "    return [1,\n 2]\n\n"
      "}\n"
      "optimizer o() { state a = 1,\n  b = 2; update(p) { p = p } }\n"
      "layer one() = 1");
  cr_expect_str_eq(s,
                   "(model m\n"
                   "  (formal x (type f32 784))\n"
                   "  (result (type f32 10))\n"
                   "  (assign y (call dense (call relu x) 3 "
                   "(named init zeros)))\n"
                   "  (assign z (+ y 1))\n"
                   "  (assign w (* z 2))\n"
                   "  (return (list 1 2)))\n"
                   "(optimizer o\n"
                   "  (state a 1)\n"
                   "  (state b 2)\n"
                   "  (update\n"
                   "    (formal p)\n"
                   "    (assign p p)))\n"
                   "(layer one\n"
                   "  (return 1))\n");
  free(s);
  // A newline ends `return x`, so `+ 1` is a statement of its own (wrong).
  expect_errors("layer f(x) {\n  return x\n  + 1\n}\n", 1,
                "t.nn:3:3: error: unexpected '+', expected one of '}', a "
                "statement\n"
                "      + 1\n"
                "      ^\n");
}

Test(parse, crlf_and_empty) {
  char *s = dump_ok("layer f(x) =\r\n  x\r\n\r\nlayer g() = 2\r\n");
  cr_expect_str_eq(s, "(layer f\n  (formal x)\n  (return x))\n"
                      "(layer g\n  (return 2))\n");
  free(s);
  s = dump_ok("");
  cr_expect_str_eq(s, "");
  free(s);
  s = dump_ok("# only a comment");
  cr_expect_str_eq(s, "");
  free(s);
  s = dump_ok("\xEF\xBB\xBFlayer f() = 1");  // a BOM is skipped
  cr_expect_str_eq(s, "(layer f\n  (return 1))\n");
  free(s);
}

// ---- errors -----------------------------------------------------------------

Test(errors, several_in_one_run) {
  expect_errors("layer f(x) {\n"
                "    param W f32[3] = 0\n"
                "    param b: f32[3] zeros\n"
                "    y = return\n"
                "    return x +\n"
                "}\n"
                "layer ok(x) = x\n"
                "train m {\n"
                "    batch 128\n"
                "    epochs = = 5\n"
                "}\n",
                6,
                "t.nn:2:13: error: unexpected 'f32', expected ':'\n"
                "        param W f32[3] = 0\n"
                "                ^\n"
                "t.nn:3:21: error: unexpected name 'zeros', expected '='\n"
                "        param b: f32[3] zeros\n"
                "                        ^\n"
                "t.nn:4:9: error: unexpected 'return', expected an "
                "expression\n"
                "        y = return\n"
                "            ^\n"
                "t.nn:6:1: error: unexpected '}', expected an expression\n"
                "    }\n"
                "    ^\n"
                "t.nn:9:11: error: unexpected number '128', expected one of a name, '='\n"
                "        batch 128\n"
                "              ^\n"
                "t.nn:10:14: error: unexpected '=', expected an expression\n"
                "        epochs = = 5\n"
                "                 ^\n");
}

Test(errors, recovery_keeps_going) {
  Parse ps;
  parse(&ps, "model m(x: f32[784] -> f32[10] {\n"
             "    return x )\n"
             "}\n"
             "layer ok(x) = x\n"
             "layer f(x = (1 +\n"
             "layer g(x) = x\n"
             "layer bad(x) = = x\n");
  cr_expect_eq(ps.ctx.diag.nerrors, 3, "%s", ps.errs);
  cr_expect(strstr(ps.errs, "t.nn:1:21: error: unexpected '->', expected "
                            "one of ')', ',', '='\n"), "%s", ps.errs);
  cr_expect(strstr(ps.errs, "t.nn:5:17: error: unexpected end of line, "
                            "expected an expression\n"), "%s", ps.errs);
  cr_expect(strstr(ps.errs, "t.nn:7:16: error: unexpected '=', expected "
                            "an expression\n"), "%s", ps.errs);
  // the good declarations are kept: the block of m was skipped as a whole
  cr_assert_eq(ps.file->decls.n, 2);
  cr_expect_str_eq(ps.file->decls.item[0]->name, "ok");
  cr_expect_str_eq(ps.file->decls.item[1]->name, "g");
  parse_done(&ps);
}

Test(errors, end_of_file) {
  expect_errors("layer f(x) {", 1,
                "t.nn:1:13: error: unexpected end of file, expected one of "
                "'}', a statement\n"
                "    layer f(x) {\n"
                "                ^\n");
  expect_errors("layer f(x) = g(x", 1, NULL);
  expect_errors("layer", 1, NULL);
  expect_errors("x = 1\n", 1,
                "t.nn:1:1: error: unexpected name 'x', expected a "
                "declaration\n"
                "    x = 1\n"
                "    ^\n");
}

Test(errors, nul_byte) {
  static const char text[] = "layer f(x) = x\0 + 1\n\0\nlayer g() = \"a\0b\"\n";
  Parse ps;
  parse_bytes(&ps, text, sizeof text - 1);
  cr_expect_eq(ps.ctx.diag.nerrors, 3, "%s", ps.errs);
  cr_expect(strstr(ps.errs, "t.nn:1:15: error: unexpected NUL byte\n"),
            "%s", ps.errs);
  cr_expect(strstr(ps.errs, "t.nn:2:1: error: unexpected NUL byte\n"),
            "%s", ps.errs);
  cr_expect(strstr(ps.errs, "t.nn:3:15: error: unexpected NUL byte\n"),
            "%s", ps.errs);
  cr_assert_eq(ps.file->decls.n, 2);  // scanning went on past each NUL
  cr_expect_str_eq(ps.file->decls.item[1]->body.item[0]->a->name, "ab");
  parse_done(&ps);
}

Test(errors, unterminated_string) {
  Parse ps;
  parse(&ps, "import \"abc\nlayer f() = \"x\\\"\n");
  cr_expect_eq(ps.ctx.diag.nerrors, 2, "%s", ps.errs);
  cr_expect_str_eq(ps.errs,
                   "t.nn:1:8: error: unterminated string\n"
                   "    import \"abc\n"
                   "           ^\n"
                   "t.nn:2:13: error: unterminated string\n"
                   "    layer f() = \"x\\\"\n"
                   "                ^\n");
  cr_assert_eq(ps.file->decls.n, 2);
  cr_expect_str_eq(ps.file->decls.item[0]->name, "abc");
  parse_done(&ps);
  expect_errors("import \"abc", 1, NULL);
  expect_errors("import \"a\\qb\"\n", 1,
                "t.nn:1:10: error: unknown escape sequence '\\q' in string\n"
                "    import \"a\\qb\"\n"
                "             ^\n");
}

Test(errors, bad_character) {
  // One error per bad character; the parser stays quiet on that statement.
  expect_errors("layer f(x) = x $ 2\n", 1,
                "t.nn:1:16: error: unexpected character '$'\n"
                "    layer f(x) = x $ 2\n"
                "                   ^\n");
  expect_errors("layer f(x) = x \x01\n", 1,
                "t.nn:1:16: error: unexpected character '\\x01'\n"
                "    layer f(x) = x ?\n"
                "                   ^\n");
  // Columns count UTF-8 characters, not bytes.
  expect_errors("layer f() = \"\xc3\xa9\" \xc3\xa9\n", 1,
                "t.nn:1:17: error: unexpected character '\xc3\xa9'\n"
                "    layer f() = \"\xc3\xa9\" \xc3\xa9\n"
                "                    ^\n");
  expect_errors("layer f() = \xff\n", 1, NULL);
  expect_errors("layer f() = 1e999\n", 1, NULL);
}

// Pathological nesting must neither overflow the C stack nor cascade.
static void expect_deep(const char *open, const char *mid, const char *close,
                        int n) {
  size_t lo = strlen(open), lm = strlen(mid), lc = strlen(close);
  size_t len = 64 + (size_t)n * (lo + lc) + lm;
  char *text = malloc(len + 1), *q = text;
  q += sprintf(q, "layer f() = ");
  for (int i = 0; i < n; i++, q += lo)
    memcpy(q, open, lo);
  memcpy(q, mid, lm);
  q += lm;
  for (int i = 0; i < n; i++, q += lc)
    memcpy(q, close, lc);
  q += sprintf(q, "\nlayer g() = 1\n");
  Parse ps;
  parse_bytes(&ps, text, (size_t)(q - text));
  cr_expect_eq(ps.ctx.diag.nerrors, 1, "%s...: %.300s", open, ps.errs);
  cr_expect(strstr(ps.errs, "error: expression nested too deeply\n"),
            "%s", ps.errs);
  char *s = dump(ps.file);  // the tree stays printable
  free(s);
  parse_done(&ps);
  free(text);
}

Test(errors, deep_nesting) {
  expect_deep("(", "1", ")", 100000);
  expect_deep("(", "1", "", 100000);   // never closed
  expect_deep("[", "1", "]", 100000);
  expect_deep("f(", "1", ")", 100000);
  expect_deep("-", "1", "", 100000);
  expect_deep("", "1", "+1", 100000);  // left-deep tree, flat parser stack
  expect_deep("1^", "1", "", 100000);
}

Test(errors, deep_but_fine) {
  // 200 nested parentheses and a 500-term sum are within the limits.
  char text[4096], *q = text;
  q += sprintf(q, "layer f() = ");
  for (int i = 0; i < 200; i++)
    *q++ = '(';
  *q++ = '1';
  for (int i = 0; i < 200; i++)
    *q++ = ')';
  for (int i = 0; i < 500; i++)
    q += sprintf(q, "+1");
  strcpy(q, "\n");
  char *s = dump_ok(text);
  free(s);
}

Test(errors, unclosed_bracket) {
  // The error sits at the end of the line that left '(' or '[' open, and
  // the statements after it parse again.
  expect_errors("train m {\n"
                "    optimizer = sgd(lr = 0.1\n"
                "    batch = 2\n"
                "    epochs = = 10\n"
                "    x = [1, 2\n"
                "         3]\n"
                "    y = 2 2\n"
                "}\n",
                4,
                "t.nn:2:29: error: unexpected end of line, expected one of "
                "')', ',', an operator\n"
                "        optimizer = sgd(lr = 0.1\n"
                "                                ^\n"
                "t.nn:4:14: error: unexpected '=', expected an expression\n"
                "        epochs = = 10\n"
                "                 ^\n"
                "t.nn:5:14: error: unexpected end of line, expected one of "
                "',', ']', an operator\n"
                "        x = [1, 2\n"
                "                 ^\n"
                "t.nn:7:11: error: unexpected number '2', expected one of "
                "end of line, an operator\n"
                "        y = 2 2\n"
                "              ^\n");
}

Test(errors, junk_and_floods) {
  // A run of junk bytes is one error, wherever it is.
  static const char nuls[] = "layer f() = 1 \0\0\0\0 \x01\x02\xff\xfe\n";
  Parse ps;
  parse_bytes(&ps, nuls, sizeof nuls - 1);
  cr_expect_eq(ps.ctx.diag.nerrors, 2, "%s", ps.errs);
  parse_done(&ps);
  // Past 100 errors the file is given up, so output stays linear.
  size_t len = 11 + 300 * 8 + 1;
  char *text = malloc(len + 1);
  memcpy(text, "layer f() {", 11);
  for (int i = 0; i < 300; i++)
    memcpy(text + 11 + i * 8, "x = = 1;", 8);
  text[len - 1] = '}';
  parse_bytes(&ps, text, len);
  cr_expect_eq(ps.ctx.diag.nerrors, 101);
  const char *last = strstr(ps.errs, "too many errors, stopping here\n");
  cr_expect(last, "%.200s", ps.errs);
  cr_expect(last && !strstr(last + 1, "error:"), "nothing after the last");
  parse_done(&ps);
  free(text);
}
