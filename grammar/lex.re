// lex.re — the re2c lexer of nnc. It consumes a Source (a whole file, NUL-
// padded past its end) and produces the tokens of grammar/parse.y, each
// with a Loc (1-based line and column; the column counts display cells, so a
// UTF-8 character is one cell).
//
// Statements end at a newline or ';', and the lexer decides which newlines
// are statement ends, so the grammar only sees NEWLINE tokens that matter:
//   - newlines inside '(' and '[' are skipped;
//   - a line ending with a binary operator, ',', '=', '|>' or '->', or
//     followed by a line starting with '|>', continues on the next line;
//   - blank lines, a newline after '{' and repeated ';' are skipped;
//   - a NEWLINE is inserted before '}' and at the end of the file when
//     needed, so every statement and declaration is NEWLINE-terminated.
// Invariants: the scanner never reads past the padding (`re2c:eof` with a
// `$` rule: a NUL inside the file is an error, not the end); lexical errors
// are reported and scanning goes on; nothing is allocated outside the arena.
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

// Deeper '(' / '[' nesting is reported and skipped, so that neither the
// parser stack nor the tree grows without bound.
enum { NEST_MAX = 256 };

// Raw tokens that lex_next() turns into NEWLINE (or drops).
enum { RAW_NL = -1, RAW_SEMI = -3 };

/*!re2c
  re2c:define:YYCTYPE = "unsigned char";
  re2c:define:YYCURSOR = cur;
  re2c:define:YYMARKER = mar;
  re2c:define:YYLIMIT = lim;
  re2c:yyfill:enable = 0;
  re2c:eof = 0;

  digit  = [0-9];
  exp    = [eE] [+-]? digit+;
  number = digit+ ("." digit*)? exp? | "." digit+ exp?;
  ident  = [A-Za-z_] [A-Za-z0-9_]*;
  utf8   = [\xc2-\xdf] [\x80-\xbf] | [\xe0-\xef] [\x80-\xbf]{2}
         | [\xf0-\xf4] [\x80-\xbf]{3};
*/

void lex_init(Parser *p, const Source *src) {
  p->text = p->cur = src->text;
  p->lim = src->text + src->len;
  if (src->len >= 3 && memcmp(p->cur, "\xEF\xBB\xBF", 3) == 0)
    p->cur += 3;  // a UTF-8 byte order mark is not part of the first line
  p->line = 1;
  p->line_start = p->col_pos = p->pipe_at = p->cur;
  p->col_at = 1;
}

// Whether the byte at `q` continues a UTF-8 character begun at most three
// bytes before it (and not before `start`); a stray one takes a cell.
static bool lex_utf8_tail(const char *start, const char *q) {
  if (((unsigned char)*q & 0xC0) != 0x80)
    return false;
  for (int back = 1; back <= 3 && q - back >= start; back++) {
    unsigned char c = (unsigned char)q[-back];
    if ((c & 0xC0) != 0x80)
      return c >= 0xC2 && back < (c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2);
  }
  return false;
}

// The location of `at`, which is on the current line and not before the
// previous call's: columns are counted incrementally, so lexing stays linear
// even on very long lines.
static Loc lex_loc(Parser *p, const char *at) {
  if (p->col_pos < p->line_start) {
    p->col_pos = p->line_start;
    p->col_at = 1;
  }
  for (; p->col_pos < at; p->col_pos++)
    if (!lex_utf8_tail(p->line_start, p->col_pos))
      p->col_at++;
  return (Loc){p->file, p->line, p->col_at};
}

// Records the token [tok, end) and returns its kind.
static int lex_tok(Parser *p, const unsigned char *tok,
                   const unsigned char *end, int kind) {
  p->tok = (const char *)tok;
  p->tok_end = p->cur = (const char *)end;
  p->tok_loc = lex_loc(p, p->tok);
  return kind;
}

// Whether the junk bytes [at, end) continue a run already reported: binary
// junk gets one error, not one per byte.
static bool lex_junk_run(Parser *p, const unsigned char *at,
                         const unsigned char *end) {
  bool run = (const char *)at == p->bad_end;
  p->bad_end = (const char *)end;
  return run;
}

static void lex_nul(Parser *p, const unsigned char *at) {
  if (!lex_junk_run(p, at, at + 1))
    lex_error(p, lex_loc(p, (const char *)at), "unexpected NUL byte");
}

// "unexpected character": printable ones quoted, other bytes in hex.
static void lex_bad_char(Parser *p, const unsigned char *at,
                         const unsigned char *end) {
  if (lex_junk_run(p, at, end))
    return;
  Loc loc = lex_loc(p, (const char *)at);
  if (end - at > 1)
    lex_error(p, loc, "unexpected character '%.*s'", (int)(end - at),
              (const char *)at);
  else if (*at >= 0x20 && *at < 0x7f)
    lex_error(p, loc, "unexpected character '%c'", *at);
  else
    lex_error(p, loc, "unexpected character '\\x%02x'", *at);
}

// Copies the body of a string literal, undoing the two escapes (backslash
// before '"' or '\\'); other escapes and NUL bytes were reported already.
static const char *lex_unescape(Parser *p, const unsigned char *s,
                                const unsigned char *end) {
  char *out = arena_alloc(p->arena, (size_t)(end - s) + 1), *o = out;
  for (; s < end; s++) {
    if (*s == '\\' && s + 1 < end && (s[1] == '"' || s[1] == '\\'))
      *o++ = (char)*++s;
    else if (*s != '\\' && *s != 0)
      *o++ = (char)*s;
  }
  *o = 0;
  return out;
}

// Scans a string literal whose opening quote is at `tok`. An unterminated
// string ends before the newline, which is still scanned as a token.
static int lex_string(Parser *p, const unsigned char *tok,
                      const unsigned char *cur, YYSTYPE *val) {
  const unsigned char *lim = (const unsigned char *)p->lim;
  const unsigned char *body = cur, *end;
  Loc start = lex_loc(p, (const char *)tok);
  for (;;) {
    const unsigned char *s = cur;
    /*!re2c
      ["]            { end = s; goto done; }
      "\\" ["\\]     { continue; }
      "\\" [^"\\\n\x00] {
        lex_error(p, lex_loc(p, (const char *)s),
                  "unknown escape sequence '\\%c' in string",
                  s[1] >= 0x20 && s[1] < 0x7f ? s[1] : '?');
        continue;
      }
      "\\"           { continue; }
      [\x00]         { lex_nul(p, s); continue; }
      [^"\\\n\x00]+  { continue; }
      "\n"           { end = cur = s; goto unterminated; }
      $              { end = cur = s; goto unterminated; }
    */
  }
unterminated:
  lex_error(p, start, "unterminated string");
done:
  val->STRING = lex_unescape(p, body, end);
  return lex_tok(p, tok, cur, STRING);
}

// Scans one raw token at p->cur, skipping blanks and comments and
// reporting bad bytes. Newlines and ';' come back as RAW_NL and RAW_SEMI.
static int lex_scan(Parser *p, YYSTYPE *val) {
  const unsigned char *cur = (const unsigned char *)p->cur;
  const unsigned char *lim = (const unsigned char *)p->lim, *mar = cur;
  for (;;) {
    const unsigned char *tok = cur;
    /*!re2c
      $              { return lex_tok(p, tok, cur, YYEOF); }
      [ \t\r]+       { continue; }
      "#" [^\n\x00]* { continue; }
      "\n" {
        int t = lex_tok(p, tok, cur, RAW_NL);
        p->line++;
        p->line_start = p->cur;
        return t;
      }
      ";"            { return lex_tok(p, tok, cur, RAW_SEMI); }
      "|>"           { return lex_tok(p, tok, cur, PIPE); }
      "->"           { return lex_tok(p, tok, cur, ARROW); }
      [-+*/@^{}(),:=.] | "[" | "]" { return lex_tok(p, tok, cur, *tok); }

      "import"       { return lex_tok(p, tok, cur, IMPORT); }
      "layer"        { return lex_tok(p, tok, cur, LAYER); }
      "model"        { return lex_tok(p, tok, cur, MODEL); }
      "loss"         { return lex_tok(p, tok, cur, LOSS); }
      "optimizer"    { return lex_tok(p, tok, cur, OPTIMIZER); }
      "schedule"     { return lex_tok(p, tok, cur, SCHEDULE); }
      "train"        { return lex_tok(p, tok, cur, TRAIN); }
      "param"        { return lex_tok(p, tok, cur, PARAM); }
      "return"       { return lex_tok(p, tok, cur, RETURN); }
      "state"        { return lex_tok(p, tok, cur, STATE); }
      "update"       { return lex_tok(p, tok, cur, UPDATE); }
      "buffer"       { return lex_tok(p, tok, cur, BUFFER); }
      "if"           { return lex_tok(p, tok, cur, IF); }
      "else"         { return lex_tok(p, tok, cur, ELSE); }
      "penalty"      { return lex_tok(p, tok, cur, PENALTY); }
      "f32"          { return lex_tok(p, tok, cur, F32); }
      "f64"          { return lex_tok(p, tok, cur, F64); }
      "int"          { return lex_tok(p, tok, cur, INT); }
      "float"        { return lex_tok(p, tok, cur, FLOAT); }

      ident {
        val->NAME = arena_strndup(p->arena, (const char *)tok,
                                  (size_t)(cur - tok));
        return lex_tok(p, tok, cur, NAME);
      }
      number {
        int t = lex_tok(p, tok, cur, NUMBER);
        const char *s = arena_strndup(p->arena, (const char *)tok,
                                      (size_t)(cur - tok));
        val->NUMBER = strtod(s, NULL);
        if (isinf(val->NUMBER))
          lex_error(p, p->tok_loc, "number '%.40s' is out of range", s);
        return t;
      }
      ["]            { return lex_string(p, tok, cur, val); }

      [\x00]         { lex_nul(p, tok); continue; }
      utf8           { lex_bad_char(p, tok, cur); continue; }
      *              { lex_bad_char(p, tok, cur); continue; }
    */
  }
}

// Kinds after which a newline does not end the statement.
static bool lex_continues(int kind) {
  switch (kind) {
  case '+': case '-': case '*': case '/': case '@': case '^':
  case ',': case '=': case PIPE: case ARROW:
    return true;
  default:
    return false;
  }
}

// The first byte of the next line that holds a token.
static const char *lex_next_line(const char *q) {
  for (;;) {
    if (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
      q++;
    else if (*q == '#')
      while (*q && *q != '\n')
        q++;
    else
      break;
  }
  return q;
}

// Whether the next line that holds a token starts with '|>'. The answer is
// remembered in p->pipe_at so blank lines before it are not rescanned.
static bool lex_pipe_follows(Parser *p) {
  if (p->cur <= p->pipe_at)
    return true;
  const char *q = lex_next_line(p->cur);
  if (q[0] != '|' || q[1] != '>')
    return false;
  p->pipe_at = q;
  return true;
}

// Whether a '}' just ended is followed by `else` on a later line: the if
// statement goes on, as it would with `} else {` on one line.
static bool lex_else_follows(Parser *p) {
  if (p->last != '}')
    return false;
  const char *q = lex_next_line(p->cur);
  return strncmp(q, "else", 4) == 0 &&
         !(isalnum((unsigned char)q[4]) || q[4] == '_');
}

// Remembers the first newline skipped inside brackets since the last token:
// a NEWLINE goes there if a keyword shows up, and errors point there.
static void lex_note_newline(Parser *p) {
  if (!p->nl_pending) {
    p->nl_pending = true;
    p->nl_tok = p->tok;
    p->nl_loc = p->tok_loc;
  }
}

// Whether the newline just scanned is not a statement end.
static bool lex_skip_newline(Parser *p) {
  if (p->last == 0 || p->last == NEWLINE || p->last == '{')
    return true;
  if (p->depth > 0) {
    lex_note_newline(p);
    return true;
  }
  return lex_continues(p->last) || lex_pipe_follows(p) || lex_else_follows(p);
}

// Turns the token just scanned into a NEWLINE before it: the token itself is
// scanned again by the next call. The NEWLINE sits where a newline inside
// brackets was skipped, if any (an unclosed '(' is then reported at the end
// of its line).
static int lex_newline_before(Parser *p) {
  p->cur = p->tok;
  if (p->nl_pending) {
    p->tok = p->nl_tok;
    p->tok_loc = p->nl_loc;
  }
  p->tok_end = p->tok;
  return NEWLINE;
}

// Skips the contents of a bracket opened beyond NEST_MAX, up to its closing
// bracket (or a brace, a statement keyword or the end, which are left for
// the next call).
static void lex_skip_nested(Parser *p, YYSTYPE *val) {
  for (int depth = 1; depth > 0;) {
    int t = lex_scan(p, val);
    if (t == '(' || t == '[') {
      depth++;
    } else if (t == ')' || t == ']') {
      depth--;
    } else if (t == RAW_NL) {
      lex_note_newline(p);
    } else if (t == '{' || t == '}' || t == YYEOF ||
               (t >= IMPORT && t <= UPDATE)) {
      p->cur = p->tok;
      return;
    }
  }
}

int lex_next(YYSTYPE *val, Loc *loc, Parser *p) {
  if (p->last == NEWLINE || p->last == '{')
    p->quiet = false;  // a new statement: its errors are news again
  int t;
  for (;;) {
    t = lex_scan(p, val);
    if (p->stop) {
      t = YYEOF;  // too many errors: pretend the file ends here
    } else if (t == RAW_NL) {
      if (lex_skip_newline(p))
        continue;
      t = NEWLINE;
    } else if (t == RAW_SEMI) {
      if (p->last == 0 || p->last == NEWLINE || p->last == '{')
        continue;
      t = NEWLINE;
    } else if (t == '(' || t == '[') {
      if (p->depth == NEST_MAX) {
        lex_error(p, p->tok_loc, "expression nested too deeply");
        lex_skip_nested(p, val);
        continue;
      }
      p->depth++;
    } else if (t == ')' || t == ']') {
      if (p->depth > 0)
        p->depth--;
    } else if (t == '{' || t == '}' || t == YYEOF) {
      // Braces never sit inside brackets: an unclosed '(' ends here.
      p->depth = 0;
      if (t != '{' && p->last != 0 && p->last != NEWLINE && p->last != '{')
        t = lex_newline_before(p);
    } else if (t >= IMPORT && t <= UPDATE && p->depth > 0) {
      // Nor do statement keywords: end the statement at the skipped
      // newline, so that the next one parses.
      p->depth = 0;
      if (p->nl_pending)
        t = lex_newline_before(p);
    }
    break;
  }
  p->nl_before = p->nl_pending && t != NEWLINE;
  p->nl_pending = false;
  p->last = t;
  *loc = p->tok_loc;
  return t;
}
