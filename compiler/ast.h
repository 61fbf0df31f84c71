// ast.h — the syntax tree the parser produces (grammar/parse.y) and sema
// consumes. Nothing here is evaluated: dimension expressions such as `n` or
// `units * 2` stay expressions until sema binds them per layer instance.
//
// Invariants: every node carries the Loc of its first token (binary nodes:
// the operator); lists are arena arrays; `a |> f(args)` is already desugared
// by the parser into the call f(a, args), and `a |> f` into f(a).
#ifndef NNC_AST_H
#define NNC_AST_H

#include "common.h"

typedef enum AstKind {
  // declarations (top level)
  AST_IMPORT,     // import "path.nn"                      name = path
  AST_LAYER,      // layer NAME(formals) [-> type] { body } | = expr
  AST_MODEL,      // model NAME(formals) -> type { body }
  AST_LOSS,       // loss NAME(formals) = expr | { body }
  AST_OPTIMIZER,  // optimizer NAME(formals) { state ...  update(p, g, t) {...} }
  AST_SCHEDULE,   // schedule NAME(formals) = expr | { body } (a learning rate)
  AST_TRAIN,      // train MODEL { settings }              name = model name
  // statements
  AST_PARAM,      // param NAME: type = init               a = type, b = init
  AST_ASSIGN,     // NAME = expr (let, rebinding, setting) a = value
  AST_RETURN,     // return expr                           a = value
  AST_STATE,      // state NAME = expr (one node per name) a = initial value
  AST_UPDATE,     // update(p, g, t) { body }              formals, body
  AST_BUFFER,     // buffer NAME: type = init              a = type, b = init
  AST_BUFFER_UPDATE, // update NAME = expr (a buffer's next value) a = value
  AST_PENALTY,    // penalty expr (added to the training objective) a = value
  AST_IF,         // if COND { body } else { list }        a = COND
  // expressions
  AST_NUM,        // 1, 0.5, 1e-3                          num
  AST_STR,        // "path"                                name = contents
  AST_NAME,       // identifier                            name
  AST_BINARY,     // a OP b                                op, a, b
  AST_UNARY,      // -a                                    op, a
  AST_CALL,       // NAME(args)                            name, list = args
  AST_NAMED_ARG,  // NAME = expr inside a call             name, a = value
  AST_LIST,       // [a, b, ...] (tensor literal or list)  list
  // types and formals
  AST_TYPE,       // f32[dims] / f64[dims] / int / float   dtype, list = dims
  AST_FORMAL,     // NAME [: type] [= default]            a = type, b = default
  // training programs of several steps, models with several results
  AST_STEP,       // step NAME { statements } in a train block   name, body
  AST_WORD,       // minimize expr / report NAME in a step  name = word, a
  AST_OPT_INSTANCE, // optimizer NAME = call in a train block   name, a
  AST_RESULTS,    // -> (mu: type, logvar: type) of a model  formals
  AST_RECORD,     // (mu = expr, logvar = expr)            list = named args
  AST_FIELD,      // expr.NAME (a result of a model)       a, name
} AstKind;

typedef enum AstOp {
  OPR_ADD, OPR_SUB, OPR_MUL, OPR_DIV, OPR_POW, OPR_MATMUL, OPR_NEG,
} AstOp;

// Element types a source file can name. DT_INT/DT_FLOAT are compile-time
// scalars (layer arguments such as `units: int`).
typedef enum DType { DT_F32, DT_F64, DT_INT, DT_FLOAT, DT_POISON } DType;

typedef struct Ast Ast;
typedef struct AstList {
  Ast **item;
  int n, cap;
} AstList;

struct Ast {
  AstKind kind;
  Loc loc;
  const char *name;  // identifier, callee, declared name, string contents
  double num;        // AST_NUM value
  AstOp op;          // AST_BINARY / AST_UNARY
  DType dtype;       // AST_TYPE
  Ast *a, *b;        // operands; see the per-kind comments above
  Ast *ret;          // declared result type of layer/model/loss, or NULL
  AstList list;      // call arguments, list items, type dims
  AstList formals;   // AST_FORMAL nodes of a declaration or update
  AstList body;      // statements of a declaration, update or train block
};

// A parsed file: its top-level declarations in source order.
typedef struct AstFile {
  const char *path;
  AstList decls;
} AstFile;

// ---- construction (used by the parser; all memory from the arena) --------
Ast *ast_new(Arena *a, AstKind kind, Loc loc);
Ast *ast_num(Arena *a, double v, Loc loc);
Ast *ast_name(Arena *a, AstKind kind, const char *name, Loc loc);
Ast *ast_binary(Arena *a, AstOp op, Ast *l, Ast *r, Loc loc);
Ast *ast_unary(Arena *a, AstOp op, Ast *x, Loc loc);
void astlist_push(Arena *a, AstList *l, Ast *x);
void astlist_prepend(Arena *a, AstList *l, Ast *x);  // for `x |> f(...)`

// ---- parsing (grammar/lex.re + grammar/parse.y) ------------------------------
// Parses one source; syntax errors go to ctx->diag (several per run, with
// recovery at statement and declaration boundaries). Never returns NULL.
AstFile *parse_source(Ctx *ctx, Source *src);

// ---- printing -----------------------------------------------------------------
// Deterministic, indented S-expression dump for `--emit=ast` and golden tests.
void ast_print(FILE *out, const AstFile *f);
const char *ast_op_str(AstOp op);  // "+", "@", ...
const char *dtype_str(DType t);    // "f32", "int", ...

#endif
