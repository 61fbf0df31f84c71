// parse.y — the Bison grammar of nnc. It consumes the tokens of
// grammar/lex.re and produces the AstFile of compiler/ast.h.
//
// Invariants: the parser is pure (all state in one Parser, no globals) and
// allocates only from ctx->arena, so an unwinding parse needs no %destructor.
// `a |> f(args)` is desugared here into f(a, args). Every full expression is
// checked against EXPR_DEPTH_MAX so later phases may recurse freely.
// Syntax errors go to ctx->diag; recovery happens at statement and
// declaration boundaries (`error NEWLINE`, `error skip_block NEWLINE`), at
// most one error is reported per statement (Parser.quiet), and parsing stops
// after ERRORS_MAX errors in a file.

%code requires {
#include "ast.h"

// The state of one parse: the lexer cursor, the line bookkeeping for Loc,
// and the file being built. Shared by grammar/lex.re and grammar/parse.y.
typedef struct Parser {
  Ctx *ctx;                // diagnostics
  Arena *arena;            // == ctx->arena; every node comes from it
  const char *file;        // path put into every Loc
  AstFile *out;            // the file being built, decl by decl
  // lexer (grammar/lex.re)
  const char *text;        // start of the source text
  const char *cur;         // next byte to scan
  const char *lim;         // end of the text; NUL padding follows
  const char *tok;         // first byte of the last token returned
  const char *tok_end;     // one past its last byte
  Loc tok_loc;             // its location
  const char *line_start;  // first byte of the current line
  const char *col_pos;     // byte whose column is col_at (column cache)
  int line;                // current line, 1-based
  int col_at;              // column of col_pos, in display cells
  int depth;               // open '(' and '[': newlines inside are skipped
  int last;                // kind of the last token returned (0 at start)
  const char *pipe_at;     // a '|>' known to continue the current line
  bool nl_pending;         // a newline was skipped inside brackets...
  const char *nl_tok;      // ...here,
  Loc nl_loc;              // ...at this location
  bool nl_before;          // one was skipped just before the last token
  const char *bad_end;     // end of the last junk byte run reported
  bool quiet;              // an error was reported in this statement
  int nerrors;             // errors reported in this file
  bool stop;               // too many: the lexer ends the file early
} Parser;
}

%code provides {
// grammar/lex.re: starts scanning `src`, and returns the next token.
void lex_init(Parser *p, const Source *src);
int lex_next(YYSTYPE *val, Loc *loc, Parser *p);
// Reports a lexical error (always) and silences parser errors until the
// next statement, since they would only be consequences of it.
void lex_error(Parser *p, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
}

%code {
#include <stdarg.h>
#include <string.h>

#define yylex lex_next
#define YYLLOC_DEFAULT(Cur, Rhs, N) ((Cur) = YYRHSLOC(Rhs, (N) ? 1 : 0))

// Deeper expressions are rejected, so every later phase may recurse.
enum { EXPR_DEPTH_MAX = 1000 };
// Past this many errors in one file the rest is not parsed: each error
// prints its source line, so a flood on one long line would be quadratic.
enum { ERRORS_MAX = 100 };

static void yyerror(Loc *loc, Parser *p, const char *msg);
static void parse_error(Parser *p, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static AstList list_one(Parser *p, Ast *x);
static AstList list_add(Parser *p, AstList l, Ast *x);
static AstList list_cat(Parser *p, AstList l, AstList r);
static void file_add(Parser *p, Ast *decl);
static Ast *decl_new(Parser *p, AstKind kind, Loc loc, const char *name,
                     AstList formals, Ast *ret, AstList body);
static Ast *node_new(Parser *p, AstKind kind, Loc loc, const char *name,
                     Ast *a, Ast *b);
static Ast *type_new(Parser *p, DType dtype, AstList dims, Loc loc);
static AstList body_return(Parser *p, Ast *value, Loc loc);
static Ast *update_new(Parser *p, AstList names, AstList body, Loc loc);
static Ast *if_new(Parser *p, Ast *cond, AstList then, AstList otherwise,
                   Loc loc);
static Ast *call_new(Parser *p, const char *name, AstList args, Loc loc);
static Ast *list_new(Parser *p, AstList items, Loc loc);
static Ast *step_new(Parser *p, const char *word, Loc loc, const char *name,
                     AstList body);
static Ast *pipe_new(Parser *p, Ast *lhs, Ast *rhs);
static Ast *expr_checked(Parser *p, Ast *e);
}

%define api.pure full
%define api.value.type union
%define api.location.type {Loc}
%define parse.error custom
%define parse.lac full
%locations
%param {Parser *p}
%initial-action { @$ = (Loc){p->file, 1, 1}; }
%expect 0

%token <const char *> NAME "name" STRING "string"
%token <double> NUMBER "number"
%token NEWLINE "end of line"
%token PIPE "'|>'" ARROW "'->'"
// Keep IMPORT..UPDATE together and in this order: the lexer and
// expected_items() test ranges of them.
%token IMPORT "'import'" LAYER "'layer'" MODEL "'model'" LOSS "'loss'"
%token OPTIMIZER "'optimizer'" SCHEDULE "'schedule'" TRAIN "'train'"
%token PARAM "'param'"
%token RETURN "'return'" STATE "'state'" BUFFER "'buffer'" IF "'if'"
%token ELSE "'else'" PENALTY "'penalty'" UPDATE "'update'"
%token F32 "'f32'" F64 "'f64'" INT "'int'" FLOAT "'float'"

%left PIPE
%left '+' '-'
%left '*' '/' '@'
%precedence NEG
%right '^'
%precedence '.'

%nterm <Ast *> decl formal type type_opt default_opt result_opt stmt
%nterm <Ast *> full_expr expr arg step_item
%nterm <const char *> setting_name
%nterm <AstList> formals formal_list formal_seq body block stmts
%nterm <AstList> opt_items opt_item state_list names_opt names settings
%nterm <AstList> dims_opt dims args_opt args exprs_opt exprs step_items
%nterm <AstList> record_items

%%

file: decls ;

// The lexer ends the last line of a file and of a block with a NEWLINE,
// and never sends two in a row, so every item here is NEWLINE-terminated.
// A declaration with a broken header loses its whole block (skip_block),
// so the block's statements are not read as declarations.
decls
  : %empty
  | decls decl NEWLINE                { file_add(p, $2); }
  | decls error NEWLINE
  | decls error skip_block NEWLINE
  ;

decl
  : IMPORT STRING
      { $$ = node_new(p, AST_IMPORT, @1, $2, NULL, NULL); }
  | LAYER NAME formals result_opt body
      { $$ = decl_new(p, AST_LAYER, @1, $2, $3, $4, $5); }
  | MODEL NAME formals ARROW type block
      { $$ = decl_new(p, AST_MODEL, @1, $2, $3, $5, $6); }
  | MODEL NAME formals ARROW '(' formal_seq ')' block
      { $$ = decl_new(p, AST_MODEL, @1, $2, $3,
                      decl_new(p, AST_RESULTS, @5, NULL, $6, NULL,
                               (AstList){0}), $8); }
  | LOSS NAME formals result_opt body
      { $$ = decl_new(p, AST_LOSS, @1, $2, $3, $4, $5); }
  | OPTIMIZER NAME formals '{' opt_items '}'
      { $$ = decl_new(p, AST_OPTIMIZER, @1, $2, $3, NULL, $5); }
  | SCHEDULE NAME formals body
      { $$ = decl_new(p, AST_SCHEDULE, @1, $2, $3, NULL, $4); }
  | TRAIN NAME '{' settings '}'
      { $$ = decl_new(p, AST_TRAIN, @1, $2, (AstList){0}, NULL, $4); }
  ;

formals: '(' formal_list ')'          { $$ = $2; } ;

formal_list
  : %empty                            { $$ = (AstList){0}; }
  | formal_seq
  ;

formal_seq
  : formal                            { $$ = list_one(p, $1); }
  | formal_seq ',' formal             { $$ = list_add(p, $1, $3); }
  ;

formal: NAME type_opt default_opt
      { $$ = node_new(p, AST_FORMAL, @1, $1, $2, $3); } ;

type_opt
  : %empty                            { $$ = NULL; }
  | ':' type                          { $$ = $2; }
  ;

default_opt
  : %empty                            { $$ = NULL; }
  | '=' full_expr                     { $$ = $2; }
  ;

result_opt
  : %empty                            { $$ = NULL; }
  | ARROW type                        { $$ = $2; }
  ;

type
  : F32 dims_opt                      { $$ = type_new(p, DT_F32, $2, @1); }
  | F64 dims_opt                      { $$ = type_new(p, DT_F64, $2, @1); }
  | INT                  { $$ = type_new(p, DT_INT, (AstList){0}, @1); }
  | FLOAT                { $$ = type_new(p, DT_FLOAT, (AstList){0}, @1); }
  ;

dims_opt
  : %empty                            { $$ = (AstList){0}; }
  | '[' ']'                           { $$ = (AstList){0}; }
  | '[' dims ']'                      { $$ = $2; }
  ;

dims
  : full_expr                         { $$ = list_one(p, $1); }
  | dims ',' full_expr                { $$ = list_add(p, $1, $3); }
  ;

// `= expr` is stored as a body holding one AST_RETURN.
body
  : block
  | '=' full_expr                     { $$ = body_return(p, $2, @2); }
  ;

block: '{' stmts '}'                  { $$ = $2; } ;

stmts
  : %empty                            { $$ = (AstList){0}; }
  | stmts stmt NEWLINE                { $$ = list_add(p, $1, $2); }
  | stmts error NEWLINE               { $$ = $1; }
  | stmts error skip_block NEWLINE    { $$ = $1; }
  ;

stmt
  : PARAM NAME ':' type '=' full_expr
      { $$ = node_new(p, AST_PARAM, @1, $2, $4, $6); }
  | NAME '=' full_expr
      { $$ = node_new(p, AST_ASSIGN, @1, $1, $3, NULL); }
  | RETURN full_expr
      { $$ = node_new(p, AST_RETURN, @1, NULL, $2, NULL); }
  | BUFFER NAME ':' type '=' full_expr
      { $$ = node_new(p, AST_BUFFER, @1, $2, $4, $6); }
  | UPDATE NAME '=' full_expr
      { $$ = node_new(p, AST_BUFFER_UPDATE, @1, $2, $4, NULL); }
  | PENALTY full_expr
      { $$ = node_new(p, AST_PENALTY, @1, NULL, $2, NULL); }
  | IF full_expr block
      { $$ = if_new(p, $2, $3, (AstList){0}, @1); }
  | IF full_expr block ELSE block
      { $$ = if_new(p, $2, $3, $5, @1); }
  ;

// The body of an optimizer: `state` lines and `update(...) {...}` blocks.
opt_items
  : %empty                            { $$ = (AstList){0}; }
  | opt_items opt_item NEWLINE        { $$ = list_cat(p, $1, $2); }
  | opt_items error NEWLINE           { $$ = $1; }
  | opt_items error skip_block NEWLINE { $$ = $1; }
  ;

opt_item
  : STATE state_list                  { $$ = $2; }
  | UPDATE '(' names_opt ')' block
      { $$ = list_one(p, update_new(p, $3, $5, @1)); }
  ;

state_list
  : NAME '=' full_expr
      { $$ = list_one(p, node_new(p, AST_STATE, @1, $1, $3, NULL)); }
  | state_list ',' NAME '=' full_expr
      { $$ = list_add(p, $1, node_new(p, AST_STATE, @3, $3, $5, NULL)); }
  ;

names_opt
  : %empty                            { $$ = (AstList){0}; }
  | names
  ;

names
  : NAME
      { $$ = list_one(p, node_new(p, AST_FORMAL, @1, $1, NULL, NULL)); }
  | names ',' NAME
      { $$ = list_add(p, $1, node_new(p, AST_FORMAL, @3, $3, NULL, NULL)); }
  ;

// The settings of a train block, each `NAME = expr`.
settings
  : %empty                            { $$ = (AstList){0}; }
  | settings setting_name '=' full_expr NEWLINE
      { $$ = list_add(p, $1, node_new(p, AST_ASSIGN, @2, $2, $4, NULL)); }
  | settings OPTIMIZER NAME '=' full_expr NEWLINE
      { $$ = list_add(p, $1, node_new(p, AST_OPT_INSTANCE, @2, $3, $5, NULL)); }
  | settings NAME NAME '{' step_items '}' NEWLINE
      { $$ = list_add(p, $1, step_new(p, $2, @2, $3, $5)); }
  | settings error NEWLINE            { $$ = $1; }
  | settings error skip_block NEWLINE { $$ = $1; }
  ;

// The body of a `step NAME { ... }`: statements as in a layer, `minimize
// expr`, `report NAME`, and its settings (`over = ...`, `optimizer = ...`).
step_items
  : %empty                            { $$ = (AstList){0}; }
  | step_items step_item NEWLINE      { $$ = list_add(p, $1, $2); }
  | step_items error NEWLINE          { $$ = $1; }
  | step_items error skip_block NEWLINE { $$ = $1; }
  ;

step_item
  : stmt
  | NAME full_expr
      { $$ = node_new(p, AST_WORD, @1, $1, $2, NULL); }
  | OPTIMIZER '=' full_expr
      { $$ = node_new(p, AST_ASSIGN, @1, "optimizer", $3, NULL); }
  | SCHEDULE '=' full_expr
      { $$ = node_new(p, AST_ASSIGN, @1, "schedule", $3, NULL); }
  ;

// `loss = ...` and `optimizer = ...` are settings: keywords name them too.
setting_name
  : NAME
  | IMPORT { $$ = "import"; } | LAYER { $$ = "layer"; }
  | MODEL { $$ = "model"; } | LOSS { $$ = "loss"; }
  | OPTIMIZER { $$ = "optimizer"; } | TRAIN { $$ = "train"; }
  | SCHEDULE { $$ = "schedule"; }
  | PARAM { $$ = "param"; } | RETURN { $$ = "return"; }
  | STATE { $$ = "state"; } | UPDATE { $$ = "update"; }
  | BUFFER { $$ = "buffer"; } | IF { $$ = "if"; } | ELSE { $$ = "else"; }
  | PENALTY { $$ = "penalty"; }
  ;

// Error recovery only: skips a whole braced block (nested ones included)
// so its statements are not mistaken for declarations.
skip_block: '{' skip_toks '}' ;

skip_toks
  : %empty
  | skip_toks skip_tok
  | skip_toks skip_block
  ;

skip_tok
  : NAME | STRING | NUMBER | NEWLINE | PIPE | ARROW
  | IMPORT | LAYER | MODEL | LOSS | OPTIMIZER | SCHEDULE | TRAIN | PARAM
  | RETURN
  | STATE | BUFFER | IF | ELSE | PENALTY | UPDATE | F32 | F64 | INT | FLOAT
  | '+' | '-' | '*' | '/' | '@' | '^' | '(' | ')' | '[' | ']' | ',' | '='
  | ':' | '.'
  ;

// An expression where the grammar needs one whole (not a subexpression).
full_expr: expr                       { $$ = expr_checked(p, $1); } ;

expr
  : expr PIPE expr                    { $$ = pipe_new(p, $1, $3); }
  | expr '+' expr       { $$ = ast_binary(p->arena, OPR_ADD, $1, $3, @2); }
  | expr '-' expr       { $$ = ast_binary(p->arena, OPR_SUB, $1, $3, @2); }
  | expr '*' expr       { $$ = ast_binary(p->arena, OPR_MUL, $1, $3, @2); }
  | expr '/' expr       { $$ = ast_binary(p->arena, OPR_DIV, $1, $3, @2); }
  | expr '@' expr       { $$ = ast_binary(p->arena, OPR_MATMUL, $1, $3, @2); }
  | expr '^' expr       { $$ = ast_binary(p->arena, OPR_POW, $1, $3, @2); }
  | '-' expr %prec NEG  { $$ = ast_unary(p->arena, OPR_NEG, $2, @1); }
  | NUMBER              { $$ = ast_num(p->arena, $1, @1); }
  | STRING              { $$ = ast_name(p->arena, AST_STR, $1, @1); }
  | NAME                { $$ = ast_name(p->arena, AST_NAME, $1, @1); }
  | NAME '(' args_opt ')'             { $$ = call_new(p, $1, $3, @1); }
  | '(' expr ')'                      { $$ = $2; }
  | '(' record_items ')'              { $$ = list_new(p, $2, @1);
                                        $$->kind = AST_RECORD; }
  | expr '.' NAME
      { $$ = node_new(p, AST_FIELD, @2, $3, $1, NULL); }
  | '[' exprs_opt ']'                 { $$ = list_new(p, $2, @1); }
  ;

record_items
  : NAME '=' expr
      { $$ = list_one(p, node_new(p, AST_NAMED_ARG, @1, $1, $3, NULL)); }
  | record_items ',' NAME '=' expr
      { $$ = list_add(p, $1, node_new(p, AST_NAMED_ARG, @3, $3, $5, NULL)); }
  ;

args_opt
  : %empty                            { $$ = (AstList){0}; }
  | args
  ;

args
  : arg                               { $$ = list_one(p, $1); }
  | args ',' arg                      { $$ = list_add(p, $1, $3); }
  ;

arg
  : expr
  | NAME '=' expr
      { $$ = node_new(p, AST_NAMED_ARG, @1, $1, $3, NULL); }
  ;

exprs_opt
  : %empty                            { $$ = (AstList){0}; }
  | exprs
  ;

exprs
  : expr                              { $$ = list_one(p, $1); }
  | exprs ',' expr                    { $$ = list_add(p, $1, $3); }
  ;

%%

// ---- diagnostics ------------------------------------------------------------

static void parse_verror(Parser *p, Loc loc, const char *fmt, va_list ap) {
  if (p->stop)
    return;
  p->quiet = true;
  if (p->nerrors++ == ERRORS_MAX) {
    diag_error(&p->ctx->diag, loc, "too many errors, stopping here");
    p->stop = true;
    return;
  }
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  diag_error(&p->ctx->diag, loc, "%s", msg);
}

void lex_error(Parser *p, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  parse_verror(p, loc, fmt, ap);
  va_end(ap);
}

// A syntax error; silent when this statement already has one.
static void parse_error(Parser *p, Loc loc, const char *fmt, ...) {
  if (p->quiet)
    return;
  va_list ap;
  va_start(ap, fmt);
  parse_verror(p, loc, fmt, ap);
  va_end(ap);
}

// Bison calls this only when its stack is exhausted (YYMAXDEPTH); the
// lexer caps bracket nesting, so only long runs of '-' or '^' get here.
static void yyerror(Loc *loc, Parser *p, const char *msg) {
  if (strcmp(msg, "memory exhausted") == 0)
    msg = "expression nested too deeply";
  parse_error(p, *loc, "%s", msg);
}

// The lookahead as the user wrote it: 'return', name 'x', end of line...
static void describe_token(Parser *p, yysymbol_kind_t t, char *buf,
                           size_t size) {
  int len = (int)(p->tok_end - p->tok);
  const char *dots = len > 40 ? "..." : "";
  len = len > 40 ? 40 : len;
  switch (t) {
  case YYSYMBOL_NAME:
    snprintf(buf, size, "name '%.*s%s'", len, p->tok, dots);
    break;
  case YYSYMBOL_NUMBER:
    snprintf(buf, size, "number '%.*s%s'", len, p->tok, dots);
    break;
  case YYSYMBOL_NEWLINE:
    // The lexer also ends a statement on ';', before '}' and at the end.
    if (p->tok >= p->lim)
      snprintf(buf, size, "end of file");
    else if (*p->tok == ';' || *p->tok == '}')
      snprintf(buf, size, "'%c'", *p->tok);
    else
      snprintf(buf, size, "end of line");
    break;
  default:
    snprintf(buf, size, "%s", yysymbol_name(t));
  }
}

// How an expected token reads in "expected ...".
static const char *expected_name(yysymbol_kind_t t) {
  switch (t) {
  case YYSYMBOL_NAME: return "a name";
  case YYSYMBOL_NUMBER: return "a number";
  case YYSYMBOL_STRING: return "a string";
  default: return yysymbol_name(t);
  }
}

static bool is_expr_start(yysymbol_kind_t t) {
  return t == YYSYMBOL_NAME || t == YYSYMBOL_NUMBER || t == YYSYMBOL_STRING ||
         t == YYTRANSLATE('(') || t == YYTRANSLATE('[') ||
         t == YYTRANSLATE('-');
}

static bool is_operator(yysymbol_kind_t t) {
  static const int ops[] = {'+', '-', '*', '/', '@', '^', '(', '[', '.'};
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
    if (t == YYTRANSLATE(ops[i]))
      return true;
  return t == YYSYMBOL_PIPE;
}

// Fills `item` with what the parser expected, folding token families into
// "an expression", "an operator", "a type" and "a declaration" (and the
// keywords that may name a train setting into "a name").
static int expected_items(const yypcontext_t *yc, const char **item) {
  yysymbol_kind_t exp[YYNTOKENS];
  int n = yypcontext_expected_tokens(yc, exp, YYNTOKENS);
  bool has[YYNTOKENS] = {false};
  for (int i = 0; i < n; i++)
    has[exp[i]] = true;
  bool expr = has[YYSYMBOL_NUMBER], op = has[YYTRANSLATE('*')];
  bool type = has[YYSYMBOL_F32] && has[YYSYMBOL_INT];
  bool decl = has[YYSYMBOL_LAYER] && has[YYSYMBOL_TRAIN];
  bool name = has[YYSYMBOL_NAME] && has[YYSYMBOL_IMPORT] &&
              has[YYSYMBOL_UPDATE];
  bool stmt = has[YYSYMBOL_PARAM] && has[YYSYMBOL_RETURN] &&
              has[YYSYMBOL_PENALTY] && !name;
  int m = 0;
  for (int i = 0; i < n; i++) {
    yysymbol_kind_t t = exp[i];
    if ((expr && is_expr_start(t)) || (op && is_operator(t)) ||
        (type && (t == YYSYMBOL_F32 || t == YYSYMBOL_F64 ||
                  t == YYSYMBOL_INT || t == YYSYMBOL_FLOAT)) ||
        (decl && (t == YYSYMBOL_YYEOF || (t >= YYSYMBOL_IMPORT &&
                                          t <= YYSYMBOL_TRAIN))) ||
        (name && t >= YYSYMBOL_IMPORT && t <= YYSYMBOL_UPDATE) ||
        (stmt && (t == YYSYMBOL_NAME || t == YYSYMBOL_PARAM ||
                  (t >= YYSYMBOL_RETURN && t <= YYSYMBOL_UPDATE))))
      continue;
    item[m++] = expected_name(t);
  }
  if (stmt)
    item[m++] = "a statement";
  if (decl)
    item[m++] = "a declaration";
  if (type)
    item[m++] = "a type";
  if (expr)
    item[m++] = "an expression";
  if (op)
    item[m++] = "an operator";
  return m;
}

// "unexpected X", then "expected Y" or "expected one of Y, Z" (at most 4).
static int yyreport_syntax_error(const yypcontext_t *yc, Parser *p) {
  yysymbol_kind_t t = yypcontext_token(yc);
  Loc loc = *yypcontext_location(yc);
  if (t == YYSYMBOL_YYEMPTY) {
    parse_error(p, loc, "syntax error");
    return 0;
  }
  char what[80], msg[400];
  describe_token(p, t, what, sizeof what);
  if (p->nl_before) {
    // An unclosed '(' or '[' swallowed the newline before this token: the
    // line that ended there is the one to blame.
    loc = p->nl_loc;
    snprintf(what, sizeof what, "end of line");
  }
  // Forget the open brackets so that recovery stops at this line's end.
  p->depth = 0;
  const char *item[YYNTOKENS + 4];
  int m = expected_items(yc, item);
  int len = snprintf(msg, sizeof msg, "unexpected %s", what);
  if (m >= 1 && m <= 4) {
    len += snprintf(msg + len, sizeof msg - (size_t)len, ", expected %s%s",
                    m > 1 ? "one of " : "", item[0]);
    for (int i = 1; i < m; i++)
      len += snprintf(msg + len, sizeof msg - (size_t)len, ", %s", item[i]);
  }
  parse_error(p, loc, "%s", msg);
  return 0;
}

// ---- tree building ----------------------------------------------------------

static AstList list_one(Parser *p, Ast *x) {
  AstList l = {0};
  astlist_push(p->arena, &l, x);
  return l;
}

static AstList list_add(Parser *p, AstList l, Ast *x) {
  astlist_push(p->arena, &l, x);
  return l;
}

static AstList list_cat(Parser *p, AstList l, AstList r) {
  for (int i = 0; i < r.n; i++)
    astlist_push(p->arena, &l, r.item[i]);
  return l;
}

static void file_add(Parser *p, Ast *decl) {
  astlist_push(p->arena, &p->out->decls, decl);
}

static Ast *decl_new(Parser *p, AstKind kind, Loc loc, const char *name,
                     AstList formals, Ast *ret, AstList body) {
  Ast *d = ast_name(p->arena, kind, name, loc);
  d->formals = formals;
  d->ret = ret;
  d->body = body;
  return d;
}

// A node with a name and up to two operands (formal, param, assign...).
static Ast *node_new(Parser *p, AstKind kind, Loc loc, const char *name,
                     Ast *a, Ast *b) {
  Ast *n = ast_name(p->arena, kind, name, loc);
  n->a = a;
  n->b = b;
  return n;
}

static Ast *type_new(Parser *p, DType dtype, AstList dims, Loc loc) {
  Ast *t = ast_new(p->arena, AST_TYPE, loc);
  t->dtype = dtype;
  t->list = dims;
  return t;
}

// `loc` is the expression's first token (the value's own loc is its root,
// e.g. the operator of a binary node).
static AstList body_return(Parser *p, Ast *value, Loc loc) {
  return list_one(p, node_new(p, AST_RETURN, loc, NULL, value, NULL));
}

// if COND { then } else { otherwise }: a = COND, body = then, list = otherwise.
static Ast *if_new(Parser *p, Ast *cond, AstList then, AstList otherwise,
                   Loc loc) {
  Ast *n = ast_new(p->arena, AST_IF, loc);
  n->a = cond;
  n->body = then;
  n->list = otherwise;
  return n;
}

static Ast *update_new(Parser *p, AstList names, AstList body, Loc loc) {
  Ast *u = ast_new(p->arena, AST_UPDATE, loc);
  u->formals = names;
  u->body = body;
  return u;
}

static Ast *call_new(Parser *p, const char *name, AstList args, Loc loc) {
  Ast *c = ast_name(p->arena, AST_CALL, name, loc);
  c->list = args;
  return c;
}

static Ast *list_new(Parser *p, AstList items, Loc loc) {
  Ast *l = ast_new(p->arena, AST_LIST, loc);
  l->list = items;
  return l;
}

// `step NAME { ... }` in a train block; any other word before the name is
// a syntax error (`step` stays an ordinary name elsewhere: step(x) is the
// Heaviside function).
static Ast *step_new(Parser *p, const char *word, Loc loc, const char *name,
                     AstList body) {
  if (strcmp(word, "step") != 0)
    parse_error(p, loc, "expected 'step NAME { ... }' or a setting 'NAME = "
                        "value', got '%s %s'", word, name);
  Ast *st = ast_new(p->arena, AST_STEP, loc);
  st->name = name;
  st->body = body;
  return st;
}

// `a |> f(args)` is f(a, args) and `a |> f` is f(a).
static Ast *pipe_new(Parser *p, Ast *lhs, Ast *rhs) {
  if (rhs->kind == AST_NAME)
    return call_new(p, rhs->name, list_one(p, lhs), rhs->loc);
  if (rhs->kind == AST_CALL) {
    astlist_prepend(p->arena, &rhs->list, lhs);
    return rhs;
  }
  parse_error(p, rhs->loc, "right side of '|>' must be a function or a call");
  return lhs;
}

// The first node more than `left` levels below `e`, or NULL. Recursion
// is bounded by `left`.
static const Ast *expr_too_deep(const Ast *e, int left) {
  if (!e)
    return NULL;
  if (left == 0)
    return e;
  const Ast *d;
  if ((d = expr_too_deep(e->a, left - 1)) ||
      (d = expr_too_deep(e->b, left - 1)))
    return d;
  for (int i = 0; i < e->list.n; i++)
    if ((d = expr_too_deep(e->list.item[i], left - 1)))
      return d;
  return NULL;
}

// Returns `e`, or NULL (reported) when it is deeper than EXPR_DEPTH_MAX.
static Ast *expr_checked(Parser *p, Ast *e) {
  const Ast *deep = expr_too_deep(e, EXPR_DEPTH_MAX);
  if (!deep)
    return e;
  parse_error(p, deep->loc, "expression nested too deeply");
  return NULL;
}

// ---- entry point ------------------------------------------------------------

AstFile *parse_source(Ctx *ctx, Source *src) {
  Parser p = {.ctx = ctx, .arena = ctx->arena, .file = src->path};
  p.out = arena_alloc(ctx->arena, sizeof *p.out);
  p.out->path = src->path;
  lex_init(&p, src);
  yyparse(&p);
  return p.out;
}
