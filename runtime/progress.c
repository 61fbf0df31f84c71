// progress.c — the progress bar and the epoch summary lines.
//
// The bar is drawn on stderr, only when stderr is a terminal and --quiet was
// not given (the caller decides and sets NnrtProgress.enabled), and at most
// about ten times a second, so drawing never shows up in samples/s. It is
// redrawn in place with "\r" and erased before anything else is printed.
// The epoch summary is formatted here as either a human line or one JSON
// object (the model's named metrics by name after the loss and accuracy,
// and val_NAME, test_NAME with the evaluations); the caller chooses the
// stream. Formatting is pure (into a buffer)
// so tests can check the exact text.
#include <math.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "nnrt_internal.h"

double nnrt_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void nnrt_format_rate(char *b, size_t n, double r) {
  if (r >= 1e6)
    snprintf(b, n, "%.2fM", r / 1e6);
  else if (r >= 1e3)
    snprintf(b, n, "%.1fk", r / 1e3);
  else
    snprintf(b, n, "%.0f", r);
}

// Four decimals, or scientific notation when that would print 0.0000.
static void fmt_loss(char *b, size_t n, double v) {
  if (v == 0 || !isfinite(v) || fabs(v) >= 1e-3)
    snprintf(b, n, "%.4f", v);
  else
    snprintf(b, n, "%.3e", v);
}

static void fmt_clock(char *b, size_t n, double s) {
  long t = s > 0 && s < 1e8 ? (long)(s + 0.5) : 0;
  if (t >= 3600)
    snprintf(b, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(b, n, "%ld:%02ld", t / 60, t % 60);
}

static int term_width(void) {
  struct winsize w;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col > 0)
    return w.ws_col;
  return 80;
}

void nnrt_progress_update(NnrtProgress *p, int64_t epoch, int64_t epochs,
                          int64_t done, int64_t total, double mean_loss,
                          double elapsed, int force) {
  if (!p->enabled)
    return;
  double now = nnrt_now();
  if (!force && p->drawn && now - p->last_draw < 0.1)
    return;
  p->last_draw = now;
  double rate = elapsed > 0 ? (double)done / elapsed : 0;
  char rs[32], ls[32], eta[32];
  nnrt_format_rate(rs, sizeof rs, rate);
  fmt_loss(ls, sizeof ls, mean_loss);
  if (rate > 0)
    fmt_clock(eta, sizeof eta, (double)(total - done) / rate);
  else
    snprintf(eta, sizeof eta, "-");
  char tail[256];
  snprintf(tail, sizeof tail, " %lld/%lld  %s samples/s  loss %s  ETA %s",
           (long long)done, (long long)total, rs, done ? ls : "-", eta);
  char head[64];
  snprintf(head, sizeof head, "epoch %lld/%lld ", (long long)epoch,
           (long long)epochs);
  // The bar takes what the terminal has left, up to 30 cells; a line that
  // wrapped could not be redrawn in place. The room kept for the tail is
  // its longest likely form, so the bar does not change width as it fills.
  char widest[256];
  snprintf(widest, sizeof widest, " %lld/%lld  999.9k samples/s  loss "
           "0.0000  ETA 0:00:00", (long long)total, (long long)total);
  int tail_room = (int)(strlen(tail) > strlen(widest) ? strlen(tail)
                                                       : strlen(widest));
  int width = term_width() - 1 - (int)strlen(head) - tail_room - 2;
  if (width > 30)
    width = 30;
  char bar[40] = "";
  if (width >= 5) {
    int fill = total > 0 ? (int)((double)done / (double)total * width) : 0;
    for (int i = 0; i < width; i++)
      bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
    bar[width] = '\0';
    fprintf(stderr, "\r\033[K%s[%s]%s", head, bar, tail);
  } else {
    fprintf(stderr, "\r\033[K%s%s", head, tail);
  }
  fflush(stderr);
  p->drawn = 1;
}

void nnrt_progress_clear(NnrtProgress *p) {
  if (p->drawn) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
  }
  p->drawn = 0;
}

void nnrt_json_number(char *buf, size_t cap, double v) {
  size_t n = strlen(buf);
  if (n + 1 >= cap)
    return;
  if (isfinite(v))
    snprintf(buf + n, cap - n, "%.8g", v);
  else
    snprintf(buf + n, cap - n, "null");  // JSON has no NaN or infinity
}

static void add(char *buf, size_t cap, const char *fmt, const char *s) {
  size_t n = strlen(buf);
  if (n + 1 < cap)
    snprintf(buf + n, cap - n, fmt, s);
}

static void json_key(char *buf, size_t cap, const char *key, double v) {
  add(buf, cap, ",\"%s\":", key);  // "epoch" always comes first
  nnrt_json_number(buf, cap, v);
}

static void human_loss(char *buf, size_t cap, const char *key, double v) {
  char s[32], t[256];
  fmt_loss(s, sizeof s, v);
  snprintf(t, sizeof t, "  %s %s", key, s);
  add(buf, cap, "%s", t);
}

static void human_pct(char *buf, size_t cap, const char *key, double v) {
  char t[64];
  snprintf(t, sizeof t, "  %s %.2f%%", key, 100 * v);
  add(buf, cap, "%s", t);
}

// The named metrics (values v, NULL: none) as "prefixNAME" keys.
static void named(char *buf, size_t cap, const NnrtMetrics *m,
                  const char *prefix, const double *v, int json) {
  for (int64_t k = 0; v && k < m->nmetrics; k++) {
    char key[160];
    snprintf(key, sizeof key, "%s%s", prefix, m->metric_names[k]);
    if (json)
      json_key(buf, cap, key, v[k]);
    else
      human_loss(buf, cap, key, v[k]);
  }
}

void nnrt_metrics_format(char *buf, size_t cap, const NnrtMetrics *m,
                         int json) {
  if (cap == 0)
    return;
  buf[0] = '\0';
  if (json) {
    snprintf(buf, cap, "{\"epoch\":%lld", (long long)m->epoch);
    json_key(buf, cap, "loss", m->loss);
    if (m->has_accuracy)
      json_key(buf, cap, "accuracy", m->accuracy);
    if (m->has_mistakes)
      json_key(buf, cap, "mistakes", (double)m->mistakes);
    named(buf, cap, m, "", m->metrics, 1);
    if (m->has_val) {
      json_key(buf, cap, "val_loss", m->val_loss);
      if (m->has_accuracy)
        json_key(buf, cap, "val_accuracy", m->val_accuracy);
      named(buf, cap, m, "val_", m->val_metrics, 1);
    }
    if (m->has_test) {
      json_key(buf, cap, "test_loss", m->test_loss);
      if (m->has_accuracy)
        json_key(buf, cap, "test_accuracy", m->test_accuracy);
      named(buf, cap, m, "test_", m->test_metrics, 1);
    }
    if (m->has_lr)
      json_key(buf, cap, "lr", m->lr);
    json_key(buf, cap, "seconds", m->seconds);
    json_key(buf, cap, "samples_per_s", m->samples_per_s);
    add(buf, cap, "%s", "}");
    return;
  }
  snprintf(buf, cap, "epoch %lld/%lld", (long long)m->epoch,
           (long long)m->epochs);
  human_loss(buf, cap, "loss", m->loss);
  if (m->has_accuracy)
    human_pct(buf, cap, "accuracy", m->accuracy);
  if (m->has_mistakes) {
    char t[64];
    snprintf(t, sizeof t, "  mistakes %lld", (long long)m->mistakes);
    add(buf, cap, "%s", t);
  }
  named(buf, cap, m, "", m->metrics, 0);
  if (m->has_val) {
    human_loss(buf, cap, "val_loss", m->val_loss);
    if (m->has_accuracy)
      human_pct(buf, cap, "val_accuracy", m->val_accuracy);
    named(buf, cap, m, "val_", m->val_metrics, 0);
  }
  if (m->has_test) {
    human_loss(buf, cap, "test_loss", m->test_loss);
    if (m->has_accuracy)
      human_pct(buf, cap, "test_accuracy", m->test_accuracy);
    named(buf, cap, m, "test_", m->test_metrics, 0);
  }
  if (m->has_lr) {
    char lr[48];
    snprintf(lr, sizeof lr, "  lr %.4g", m->lr);
    add(buf, cap, "%s", lr);
  }
  char rs[32], t[96];
  nnrt_format_rate(rs, sizeof rs, m->samples_per_s);
  snprintf(t, sizeof t, "  %.2f s  %s samples/s", m->seconds, rs);
  add(buf, cap, "%s", t);
}
