// ast.c — constructors, lists and the printer of the syntax tree (ast.h).
//
// Consumes nothing but the arena: every node and list array comes from it
// (a list that grows abandons its old array). Produces the `--emit=ast`
// dump: an S-expression, one declaration, formal or statement per line,
// indented by two spaces per level, with expressions inline:
//
//   (layer dense
//     (formal x (type f32 n))
//     (formal init = he_normal)
//     (result (type f32 units))
//     (param W (type f32 n units) = init)
//     (return (+ (@ x W) b)))
//
// The dump is deterministic (no pointers or locations), and numbers print
// in the shortest form that reads back as the same double.
#include "ast.h"

#include <stdlib.h>
#include <string.h>

// ---- construction -----------------------------------------------------------

Ast *ast_new(Arena *a, AstKind kind, Loc loc) {
  Ast *n = arena_alloc(a, sizeof *n);
  n->kind = kind;
  n->loc = loc;
  return n;
}

Ast *ast_num(Arena *a, double v, Loc loc) {
  Ast *n = ast_new(a, AST_NUM, loc);
  n->num = v;
  return n;
}

Ast *ast_name(Arena *a, AstKind kind, const char *name, Loc loc) {
  Ast *n = ast_new(a, kind, loc);
  n->name = name;
  return n;
}

Ast *ast_binary(Arena *a, AstOp op, Ast *l, Ast *r, Loc loc) {
  Ast *n = ast_new(a, AST_BINARY, loc);
  n->op = op;
  n->a = l;
  n->b = r;
  return n;
}

Ast *ast_unary(Arena *a, AstOp op, Ast *x, Loc loc) {
  Ast *n = ast_new(a, AST_UNARY, loc);
  n->op = op;
  n->a = x;
  return n;
}

void astlist_push(Arena *a, AstList *l, Ast *x) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 4;
    Ast **item = arena_alloc(a, sizeof *item * (size_t)cap);
    if (l->n)
      memcpy(item, l->item, sizeof *item * (size_t)l->n);
    l->item = item;
    l->cap = cap;
  }
  l->item[l->n++] = x;
}

void astlist_prepend(Arena *a, AstList *l, Ast *x) {
  astlist_push(a, l, x);
  memmove(l->item + 1, l->item, sizeof *l->item * (size_t)(l->n - 1));
  l->item[0] = x;
}

// ---- names ------------------------------------------------------------------

const char *ast_op_str(AstOp op) {
  switch (op) {
  case OPR_ADD: return "+";
  case OPR_SUB: return "-";
  case OPR_MUL: return "*";
  case OPR_DIV: return "/";
  case OPR_POW: return "^";
  case OPR_MATMUL: return "@";
  case OPR_NEG: return "-";
  }
  return "?";
}

const char *dtype_str(DType t) {
  switch (t) {
  case DT_F32: return "f32";
  case DT_F64: return "f64";
  case DT_INT: return "int";
  case DT_FLOAT: return "float";
  case DT_POISON: return "<poison>";
  }
  return "?";
}

// ---- printing ---------------------------------------------------------------

// The first of %.15g, %.16g, %.17g that reads back as `v` (%g alone would
// print 1e-08 and 1.0000000001e-08 alike; 15 digits keep 0.1 and 1000 short).
static void print_num(FILE *out, double v) {
  char buf[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (strtod(buf, NULL) == v)
      break;
  }
  fputs(buf, out);
}

static void print_str(FILE *out, const char *s) {
  fputc('"', out);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(out, "\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      fprintf(out, "\\x%02x", c);
    else
      fputc(c, out);
  }
  fputc('"', out);
}

static const char *name_or(const char *s) { return s ? s : "<error>"; }

static void print_node(FILE *out, const Ast *n, int indent);

static void print_line(FILE *out, const Ast *n, int indent) {
  fprintf(out, "\n%*s", indent, "");
  print_node(out, n, indent);
}

// Prints `n` from the current column; nested lines get `indent` + 2.
static void print_node(FILE *out, const Ast *n, int indent) {
  if (!n) {
    fputs("<error>", out);  // an expression that failed to parse
    return;
  }
  switch (n->kind) {
  case AST_IMPORT:
    fputs("(import ", out);
    print_str(out, n->name);
    fputc(')', out);
    return;
  case AST_LAYER: case AST_MODEL: case AST_LOSS: case AST_OPTIMIZER:
  case AST_SCHEDULE: case AST_TRAIN: case AST_UPDATE: case AST_STEP:
  case AST_RESULTS: {
    static const char *const head[] = {
        [AST_LAYER] = "layer", [AST_MODEL] = "model", [AST_LOSS] = "loss",
        [AST_OPTIMIZER] = "optimizer", [AST_SCHEDULE] = "schedule",
        [AST_TRAIN] = "train", [AST_UPDATE] = "update", [AST_STEP] = "step",
        [AST_RESULTS] = "results"};
    fprintf(out, "(%s", head[n->kind]);
    if (n->kind != AST_UPDATE && n->kind != AST_RESULTS)
      fprintf(out, " %s", name_or(n->name));
    for (int i = 0; i < n->formals.n; i++)
      print_line(out, n->formals.item[i], indent + 2);
    if (n->ret) {
      fprintf(out, "\n%*s(result ", indent + 2, "");
      print_node(out, n->ret, indent + 2);
      fputc(')', out);
    }
    for (int i = 0; i < n->body.n; i++)
      print_line(out, n->body.item[i], indent + 2);
    fputc(')', out);
    return;
  }
  case AST_FORMAL: case AST_PARAM: case AST_BUFFER:
    fprintf(out, "(%s %s",
            n->kind == AST_FORMAL ? "formal"
            : n->kind == AST_PARAM ? "param" : "buffer",
            name_or(n->name));
    if (n->a) {
      fputc(' ', out);
      print_node(out, n->a, indent);
    }
    if (n->b || n->kind != AST_FORMAL) {
      fputs(" = ", out);
      print_node(out, n->b, indent);
    }
    fputc(')', out);
    return;
  case AST_ASSIGN: case AST_STATE: case AST_NAMED_ARG: case AST_BUFFER_UPDATE:
  case AST_WORD: case AST_OPT_INSTANCE:
    fprintf(out, "(%s %s ", n->kind == AST_ASSIGN ? "assign"
                            : n->kind == AST_STATE ? "state"
                            : n->kind == AST_NAMED_ARG ? "named"
                            : n->kind == AST_WORD ? "word"
                            : n->kind == AST_OPT_INSTANCE ? "optimizer"
                                                          : "update",
            name_or(n->name));
    print_node(out, n->a, indent);
    fputc(')', out);
    return;
  case AST_RETURN: case AST_PENALTY:
    fputs(n->kind == AST_RETURN ? "(return " : "(penalty ", out);
    print_node(out, n->a, indent);
    fputc(')', out);
    return;
  case AST_IF:
    fputs("(if ", out);
    print_node(out, n->a, indent);
    for (int i = 0; i < n->body.n; i++)
      print_line(out, n->body.item[i], indent + 2);
    if (n->list.n) {
      fprintf(out, "\n%*s(else", indent + 2, "");
      for (int i = 0; i < n->list.n; i++)
        print_line(out, n->list.item[i], indent + 4);
      fputc(')', out);
    }
    fputc(')', out);
    return;
  case AST_NUM:
    print_num(out, n->num);
    return;
  case AST_STR:
    print_str(out, n->name);
    return;
  case AST_NAME:
    fputs(name_or(n->name), out);
    return;
  case AST_BINARY:
    fprintf(out, "(%s ", ast_op_str(n->op));
    print_node(out, n->a, indent);
    fputc(' ', out);
    print_node(out, n->b, indent);
    fputc(')', out);
    return;
  case AST_UNARY:
    fprintf(out, "(%s ", ast_op_str(n->op));
    print_node(out, n->a, indent);
    fputc(')', out);
    return;
  case AST_FIELD:
    fputs("(field ", out);
    print_node(out, n->a, indent);
    fprintf(out, " %s)", name_or(n->name));
    return;
  case AST_CALL: case AST_LIST: case AST_TYPE: case AST_RECORD:
    if (n->kind == AST_CALL)
      fprintf(out, "(call %s", name_or(n->name));
    else if (n->kind == AST_LIST)
      fputs("(list", out);
    else if (n->kind == AST_RECORD)
      fputs("(record", out);
    else
      fprintf(out, "(type %s", dtype_str(n->dtype));
    for (int i = 0; i < n->list.n; i++) {
      fputc(' ', out);
      print_node(out, n->list.item[i], indent);
    }
    fputc(')', out);
    return;
  }
  fprintf(out, "(<kind %d>)", (int)n->kind);
}

void ast_print(FILE *out, const AstFile *f) {
  for (int i = 0; i < f->decls.n; i++) {
    print_node(out, f->decls.item[i], 0);
    fputc('\n', out);
  }
}
