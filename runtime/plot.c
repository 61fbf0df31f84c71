// plot.c — training curves: the per-epoch CSV log and its SVG picture.
//
// `train` appends one row per epoch to a CSV file (--log FILE; by default
// beside the checkpoint, NAME.safetensors -> NAME.csv): epoch, training
// loss and accuracy, validation and test loss and accuracy (empty when the
// run has none), training seconds. `plot FILE.csv --out FILE.svg` reads such
// a file (any columns in any order, by their header names) and draws two
// panels, loss and accuracy against the epoch, one polyline per series
// (train, validation, test) with a point per epoch, axes with rounded ticks
// and a legend; a log with named metrics (columns NAME, val_NAME,
// test_NAME, see NnrtModel.nmetrics) gets a third panel with them. The SVG is plain SVG 1.1 (lines, polylines, circles, text),
// so browsers, rsvg-convert and Inkscape all show it; every series is a
// <polyline id="loss-train"> etc. so that tests can read it back.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nnrt_internal.h"

// ---- the log ----------------------------------------------------------------
static const char *const log_columns =
    "epoch,loss,accuracy,val_loss,val_accuracy,test_loss,test_accuracy,"
    "seconds";

FILE *nnrt_log_open(const char *path, int append, const NnrtModel *m,
                    NnrtErr *err) {
  FILE *f = fopen(path, append ? "a" : "w");
  if (!f) {
    nnrt_fail(err, "%s: cannot write the training log (%s)", path,
              strerror(errno));
    return NULL;
  }
  if (!append || ftell(f) == 0) {
    fprintf(f, "%s", log_columns);
    static const char *const prefix[3] = {"", "val_", "test_"};
    for (int s = 0; m && s < 3; s++)
      for (int64_t k = 0; k < m->nmetrics; k++)
        fprintf(f, ",%s%s", prefix[s], m->metric_names[k]);
    fputc('\n', f);
  }
  fflush(f);
  return f;
}

static void cell(FILE *f, int has, double v) {
  if (has && isfinite(v))
    fprintf(f, ",%.9g", v);
  else
    fputc(',', f);
}

int nnrt_log_epoch(FILE *f, const NnrtMetrics *m) {
  fprintf(f, "%lld", (long long)m->epoch);
  cell(f, 1, m->loss);
  cell(f, m->has_accuracy, m->accuracy);
  cell(f, m->has_val, m->val_loss);
  cell(f, m->has_val && m->has_accuracy, m->val_accuracy);
  cell(f, m->has_test, m->test_loss);
  cell(f, m->has_test && m->has_accuracy, m->test_accuracy);
  cell(f, 1, m->seconds);
  for (int64_t k = 0; k < m->nmetrics; k++)
    cell(f, m->metrics != NULL, m->metrics ? m->metrics[k] : 0);
  for (int64_t k = 0; k < m->nmetrics; k++)
    cell(f, m->has_val && m->val_metrics, m->val_metrics ? m->val_metrics[k] : 0);
  for (int64_t k = 0; k < m->nmetrics; k++)
    cell(f, m->has_test && m->test_metrics,
         m->test_metrics ? m->test_metrics[k] : 0);
  fputc('\n', f);
  return fflush(f) || ferror(f) ? -1 : 0;
}

// ---- reading it back --------------------------------------------------------
enum { MAX_COLS = 64, MAX_ROWS = 100000 };

typedef struct Table {
  int ncols;
  char names[MAX_COLS][64];
  int64_t nrows;
  double *v; // nrows x ncols, NAN where empty
} Table;

static int col_index(const Table *t, const char *name) {
  for (int i = 0; i < t->ncols; i++)
    if (!strcmp(t->names[i], name))
      return i;
  return -1;
}

static int read_table(const char *path, Table *t, NnrtErr *err) {
  memset(t, 0, sizeof *t);
  FILE *f = fopen(path, "r");
  if (!f)
    return nnrt_fail(err, "%s: cannot open (%s)", path, strerror(errno));
  char line[4096];
  int rc = 0;
  if (!fgets(line, sizeof line, f)) {
    rc = nnrt_fail(err, "%s: empty; expected a training log (%s)", path,
                   log_columns);
  } else {
    for (char *s = strtok(line, ",\r\n"); s && t->ncols < MAX_COLS;
         s = strtok(NULL, ",\r\n"))
      snprintf(t->names[t->ncols++], sizeof t->names[0], "%s", s);
    if (col_index(t, "epoch") < 0 || col_index(t, "loss") < 0)
      rc = nnrt_fail(err,
                     "%s: not a training log (the first line must name "
                     "the columns, 'epoch' and 'loss' among them)",
                     path);
  }
  int64_t cap = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    if (line[0] == '\n' || line[0] == '\r')
      continue;
    if (t->nrows == MAX_ROWS) {
      rc = nnrt_fail(err, "%s: more than %d rows", path, MAX_ROWS);
      break;
    }
    if (t->nrows == cap) {
      cap = cap ? 2 * cap : 64;
      double *nv = nnrt_alloc_array(cap * t->ncols, sizeof(double));
      if (!nv) {
        rc = nnrt_fail(err, "%s: out of memory", path);
        break;
      }
      if (t->v)
        memcpy(nv, t->v, sizeof(double) * (size_t)(t->nrows * t->ncols));
      nnrt_free(t->v);
      t->v = nv;
    }
    double *row = t->v + t->nrows * t->ncols;
    char *p = line;
    for (int c = 0; c < t->ncols; c++) {
      char *end;
      double x = strtod(p, &end);
      row[c] = end == p ? NAN : x;
      p = strchr(end, ',');
      if (!p) {
        for (int k = c + 1; k < t->ncols; k++)
          row[k] = NAN;
        break;
      }
      p++;
    }
    if (!isfinite(row[0])) {
      rc = nnrt_fail(err, "%s:%lld: the epoch is not a number", path,
                     (long long)t->nrows + 2);
      break;
    }
    t->nrows++;
  }
  fclose(f);
  if (!rc && t->nrows == 0)
    rc = nnrt_fail(err, "%s: no epochs in the log", path);
  if (rc)
    nnrt_free(t->v);
  return rc;
}

// ---- the picture ------------------------------------------------------------
enum { W = 960, H = 440, PW = 380, PH = 290, TOP = 60, LEFT0 = 70, GAP = 100 };

typedef struct Axis {
  double lo, hi, step;
} Axis;

// Rounded ticks covering [lo, hi]: a step of 1, 2 or 5 times a power of ten.
static Axis nice_axis(double lo, double hi, int ticks) {
  if (!(hi > lo)) {
    double d = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1;
    lo -= d, hi += d;
  }
  double raw = (hi - lo) / ticks, p = pow(10, floor(log10(raw)));
  double step = raw <= p       ? p
                : raw <= 2 * p ? 2 * p
                : raw <= 5 * p ? 5 * p
                               : 10 * p;
  return (Axis){floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step,
                step};
}

enum { MAX_SERIES = 24 };

typedef struct Series {
  const char *col;     // the column drawn
  char id[96];         // the polyline's id is "<panel id>-<id>"
  const char *color, *dash;  // dash: NULL for a solid line
  const char *label;   // its legend entry, or NULL for none
} Series;

typedef struct Panel {
  const char *title, *id;
  int nseries;
  Series s[MAX_SERIES];
  int left;            // x of the plot area
} Panel;

static const char *const series_name[3] = {"train", "validation", "test"};
static const char *const series_id[3] = {"train", "val", "test"};
static const char *const series_color[3] = {"#1f77b4", "#2ca02c", "#d62728"};
static const char *const series_dash[3] = {NULL, NULL, "6,3"};
// The named metrics: a color each; validation dotted, test dashed.
static const char *const metric_color[6] = {"#1f77b4", "#d62728", "#2ca02c",
                                            "#9467bd", "#ff7f0e", "#8c564b"};
static const char *const metric_dash[3] = {NULL, "2,3", "6,3"};
static const char *const metric_prefix[3] = {"", "val_", "test_"};

// The loss or accuracy panel: its train, validation and test columns.
static Panel standard_panel(const char *name, int left) {
  Panel pn;
  memset(&pn, 0, sizeof pn);
  pn.title = pn.id = name;
  pn.left = left;
  static const char *const cols[2][3] = {
      {"loss", "val_loss", "test_loss"},
      {"accuracy", "val_accuracy", "test_accuracy"}};
  int a = strcmp(name, "loss") != 0;
  for (int i = 0; i < 3; i++) {
    Series *se = &pn.s[pn.nseries++];
    se->col = cols[a][i];
    snprintf(se->id, sizeof se->id, "%s", series_id[i]);
    se->color = series_color[i], se->dash = series_dash[i];
    se->label = series_name[i];
  }
  return pn;
}

// A column the runtime writes itself, or one of its val_ / test_ forms.
static int standard_column(const char *name) {
  static const char *const std[] = {"epoch", "loss", "accuracy", "seconds",
                                    "val_loss", "val_accuracy", "test_loss",
                                    "test_accuracy"};
  for (size_t i = 0; i < sizeof std / sizeof std[0]; i++)
    if (!strcmp(name, std[i]))
      return 1;
  return !strncmp(name, "val_", 4) || !strncmp(name, "test_", 5);
}

typedef struct Plot {
  const Table *t;
  FILE *f;
  Axis x;
} Plot;

static double px(const Plot *p, const Panel *pn, double epoch) {
  return pn->left + (epoch - p->x.lo) / (p->x.hi - p->x.lo) * PW;
}
static double py(const Axis *y, double v) {
  return TOP + PH - (v - y->lo) / (y->hi - y->lo) * PH;
}

// Whether the panel has any finite value; its value range.
static int panel_range(const Plot *p, const Panel *pn, double *lo, double *hi) {
  *lo = INFINITY, *hi = -INFINITY;
  for (int s = 0; s < pn->nseries; s++) {
    int c = col_index(p->t, pn->s[s].col);
    for (int64_t r = 0; c >= 0 && r < p->t->nrows; r++) {
      double v = p->t->v[r * p->t->ncols + c];
      if (isfinite(v)) {
        *lo = v < *lo ? v : *lo;
        *hi = v > *hi ? v : *hi;
      }
    }
  }
  return *lo <= *hi;
}

static void draw_panel(const Plot *p, const Panel *pn) {
  FILE *f = p->f;
  double lo, hi;
  if (!panel_range(p, pn, &lo, &hi))
    return;
  Axis y = nice_axis(lo, hi, 5);
  fprintf(f, "<g id=\"%s-panel\">\n", pn->id);
  fprintf(f,
          "<text x=\"%d\" y=\"%d\" font-size=\"16\" font-weight=\"bold\" "
          "text-anchor=\"middle\">%s</text>\n",
          pn->left + PW / 2, TOP - 20, pn->title);
  // Grid and y ticks.
  for (double v = y.lo; v <= y.hi + y.step * 1e-6; v += y.step) {
    double yy = py(&y, v);
    fprintf(f,
            "<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" "
            "y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n",
            pn->left, yy, pn->left + PW, yy);
    fprintf(f,
            "<text class=\"ytick\" x=\"%d\" y=\"%.1f\" font-size=\"12\" "
            "text-anchor=\"end\">%.4g</text>\n",
            pn->left - 6, yy + 4, fabs(v) < y.step * 1e-6 ? 0 : v);
  }
  for (double e = ceil(p->x.lo / p->x.step) * p->x.step; e <= p->x.hi + 1e-9;
       e += p->x.step) {
    double xx = px(p, pn, e);
    fprintf(f,
            "<line class=\"grid\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" "
            "y2=\"%d\" stroke=\"#f0f0f0\"/>\n",
            xx, TOP, xx, TOP + PH);
    fprintf(f,
            "<text class=\"xtick\" x=\"%.1f\" y=\"%d\" font-size=\"12\" "
            "text-anchor=\"middle\">%.0f</text>\n",
            xx, TOP + PH + 18, e);
  }
  // Axes.
  fprintf(f,
          "<line id=\"%s-x-axis\" class=\"axis\" x1=\"%d\" y1=\"%d\" "
          "x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n",
          pn->id, pn->left, TOP + PH, pn->left + PW, TOP + PH);
  fprintf(f,
          "<line id=\"%s-y-axis\" class=\"axis\" x1=\"%d\" y1=\"%d\" "
          "x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n",
          pn->id, pn->left, TOP, pn->left, TOP + PH);
  fprintf(f,
          "<text x=\"%d\" y=\"%d\" font-size=\"13\" "
          "text-anchor=\"middle\">epoch</text>\n",
          pn->left + PW / 2, TOP + PH + 38);
  // Series.
  int legend = 0;
  for (int s = 0; s < pn->nseries; s++) {
    const Series *se = &pn->s[s];
    int c = col_index(p->t, se->col);
    int64_t n = 0;
    for (int64_t r = 0; c >= 0 && r < p->t->nrows; r++)
      n += isfinite(p->t->v[r * p->t->ncols + c]);
    if (!n)
      continue;
    char dash[48] = "";
    if (se->dash)
      snprintf(dash, sizeof dash, " stroke-dasharray=\"%s\"", se->dash);
    fprintf(f,
            "<polyline id=\"%s-%s\" class=\"series\" fill=\"none\" "
            "stroke=\"%s\" stroke-width=\"2\"%s points=\"",
            pn->id, se->id, se->color, dash);
    for (int64_t r = 0; r < p->t->nrows; r++) {
      double v = p->t->v[r * p->t->ncols + c];
      if (isfinite(v))
        fprintf(f, "%.2f,%.2f ", px(p, pn, p->t->v[r * p->t->ncols]),
                py(&y, v));
    }
    fprintf(f, "\"/>\n");
    for (int64_t r = 0; r < p->t->nrows; r++) {
      double v = p->t->v[r * p->t->ncols + c];
      if (isfinite(v))
        fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n",
                px(p, pn, p->t->v[r * p->t->ncols]), py(&y, v), se->color);
    }
    if (!se->label)
      continue;
    // The legend: rows of three under the axis label, out of the data's way.
    int lx = pn->left + 10 + 125 * (legend % 3);
    int ly = TOP + PH + 62 + 18 * (legend / 3);
    legend++;
    fprintf(f,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
            "stroke-width=\"2\"%s/>\n",
            lx, ly, lx + 25, ly, se->color, dash);
    fprintf(f,
            "<text class=\"legend\" x=\"%d\" y=\"%d\" font-size=\"12\">"
            "%s</text>\n",
            lx + 30, ly + 4, se->label);
  }
  fprintf(f, "</g>\n");
}

typedef struct SvgJob {
  const Table *t;
  const char *title;
} SvgJob;

static int write_svg(FILE *f, void *ctx) {
  const SvgJob *job = ctx;
  const Table *t = job->t;
  double e0 = t->v[0], e1 = t->v[0];
  for (int64_t r = 0; r < t->nrows; r++) {
    double e = t->v[r * t->ncols];
    e0 = e < e0 ? e : e0;
    e1 = e > e1 ? e : e1;
  }
  Plot p = {t, f, {e0 - 0.5, e1 + 0.5, 1}};
  if (e1 - e0 > 10) {
    Axis a = nice_axis(e0, e1, 8);
    p.x = (Axis){e0 > a.lo ? a.lo : e0, a.hi, a.step};
    if (p.x.lo < 0)
      p.x.lo = 0;
  }
  // The named metrics (columns the runtime does not write itself) get a
  // third panel: each its own color, its val_ and test_ forms dotted and
  // dashed; the legend names each metric once.
  Panel met;
  memset(&met, 0, sizeof met);
  met.title = "metrics", met.id = "metrics", met.left = LEFT0 + 2 * (PW + GAP);
  int nmet = 0;
  for (int c = 0; c < t->ncols; c++) {
    if (standard_column(t->names[c]) || met.nseries + 3 > MAX_SERIES)
      continue;
    for (int k = 0; k < 3; k++) {
      char col[96];
      snprintf(col, sizeof col, "%s%s", metric_prefix[k], t->names[c]);
      int ci = col_index(t, col);
      if (ci < 0)
        continue;
      Series *se = &met.s[met.nseries++];
      se->col = t->names[ci];
      snprintf(se->id, sizeof se->id, "%s", col);
      se->color = metric_color[nmet % 6], se->dash = metric_dash[k];
      se->label = k == 0 ? t->names[c] : NULL;
    }
    nmet++;
  }
  Panel loss = standard_panel("loss", LEFT0);
  Panel acc = standard_panel("accuracy", LEFT0 + PW + GAP);
  double lo, hi;
  int has_acc = panel_range(&p, &acc, &lo, &hi);
  if (!has_acc)  // (a generative model) the metrics take its place
    met.left = acc.left;
  int width = nmet && has_acc ? W + PW + GAP : W;
  int height = H + 18 * (nmet > 3 ? (nmet - 1) / 3 : 0);
  fprintf(f,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
          "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
          "font-family=\"Helvetica, Arial, sans-serif\">\n"
          "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
          "<title>training curves of %s</title>\n",
          width, height, width, height, job->title);
  draw_panel(&p, &loss);
  draw_panel(&p, &acc);
  if (nmet) {
    if (nmet > 1)  // which line is which evaluation
      fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" "
              "text-anchor=\"middle\">solid: train, dotted: validation, "
              "dashed: test</text>\n", met.left + PW / 2, TOP - 6);
    draw_panel(&p, &met);
  }
  fprintf(f, "</svg>\n");
  return ferror(f) ? -1 : 0;
}

int nnrt_plot_command(const NnrtOptions *o, NnrtErr *err) {
  Table t;
  if (read_table(o->input, &t, err))
    return -1;
  const char *out = o->out ? o->out : "curves.svg";
  // The file name only, escaped enough for the SVG title.
  const char *base =
      strrchr(o->input, '/') ? strrchr(o->input, '/') + 1 : o->input;
  char title[256];
  size_t n = 0;
  for (const char *s = base; *s && n + 6 < sizeof title; s++)
    if (*s == '<' || *s == '>' || *s == '&')
      title[n++] = '_';
    else
      title[n++] = *s;
  title[n] = 0;
  SvgJob job = {&t, title};
  int rc = nnrt_write_atomic(out, write_svg, &job, err);
  nnrt_free(t.v);
  if (!rc && !o->quiet)
    fprintf(stderr, "%s: %lld epochs drawn to %s\n", o->prog,
            (long long)t.nrows, out);
  return rc;
}
