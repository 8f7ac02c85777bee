/* The compliance report as a PDF (report.h), drawn with cairo and laid out
 * with pango (fontconfig's fonts, subset and embedded by cairo's PDF
 * surface).  A4 portrait: a title page (period, generation time, the
 * SHA-256 of the numbers, the signing key's fingerprint, contents), then one
 * section per heading with its table, charts of operations per day,
 * consents per type and incidents per severity, and on every page a footer
 * with "page N of M", the SHA-256 and the key fingerprint.  The document is
 * drawn twice: the first pass, into a discarding stream, counts the pages
 * for "of M".  Numbers are printed as the JSON has them (integers as they
 * are, percentages with two decimals) so that the text of the PDF can be
 * checked against the JSON (t/714). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo.h>
#include <cairo-pdf.h>
#include <pango/pangocairo.h>

#include "log.h"
#include "report.h"

#define PAGE_W 595.0                 /* A4, points */
#define PAGE_H 842.0
#define MARGIN 56.0
#define BOTTOM (PAGE_H - 78.0)       /* the footer lives below */
#define FONT "DejaVu Sans"

typedef struct {
    unsigned char *buf;
    size_t len, cap;
    int discard;
} sink;

typedef struct {
    cairo_t *cr;
    cairo_surface_t *surface;
    const gdpr_report *r;
    const char *sha, *fingerprint;
    double y;
    int page, pages;                 /* pages: from the first pass, 0 = unknown */
} doc;

static cairo_status_t sink_write(void *closure, const unsigned char *data, unsigned int len)
{
    sink *s = closure;
    if (s->discard)
        return CAIRO_STATUS_SUCCESS;
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        while (cap < s->len + len)
            cap *= 2;
        unsigned char *b = realloc(s->buf, cap);
        if (b == NULL)
            return CAIRO_STATUS_NO_MEMORY;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return CAIRO_STATUS_SUCCESS;
}

/* ---- text ---- */

/* Draws text (pango markup when markup) at x, d->y, wrapped to width;
 * returns its height.  draw = 0 measures only. */
static double text(doc *d, double x, double width, double size, int bold, const char *s, int markup, int draw)
{
    PangoLayout *l = pango_cairo_create_layout(d->cr);
    PangoFontDescription *f = pango_font_description_from_string(FONT);
    int w, h;

    pango_font_description_set_absolute_size(f, size * PANGO_SCALE);
    pango_font_description_set_weight(f, bold ? PANGO_WEIGHT_BOLD : PANGO_WEIGHT_NORMAL);
    pango_layout_set_font_description(l, f);
    pango_layout_set_width(l, (int)(width * PANGO_SCALE));
    pango_layout_set_wrap(l, PANGO_WRAP_WORD_CHAR);
    if (markup)
        pango_layout_set_markup(l, s, -1);
    else
        pango_layout_set_text(l, s, -1);
    pango_layout_get_size(l, &w, &h);
    if (draw) {
        cairo_move_to(d->cr, x, d->y);
        pango_cairo_show_layout(d->cr, l);
    }
    pango_font_description_free(f);
    g_object_unref(l);
    return (double)h / PANGO_SCALE;
}

static void footer(doc *d)
{
    char buf[256];
    double y = d->y;

    cairo_set_source_rgb(d->cr, 0.75, 0.75, 0.75);
    cairo_set_line_width(d->cr, 0.5);
    cairo_move_to(d->cr, MARGIN, BOTTOM + 14);
    cairo_line_to(d->cr, PAGE_W - MARGIN, BOTTOM + 14);
    cairo_stroke(d->cr);
    cairo_set_source_rgb(d->cr, 0.35, 0.35, 0.35);
    d->y = BOTTOM + 20;
    snprintf(buf, sizeof(buf), "Report SHA-256: %s", d->sha);
    d->y += text(d, MARGIN, PAGE_W - 2 * MARGIN, 6.5, 0, buf, 0, 1);
    snprintf(buf, sizeof(buf), "Signing key fingerprint (SHA-256): %s",
             d->fingerprint ? d->fingerprint : "none (gdpr.signing_key not set)");
    d->y += text(d, MARGIN, PAGE_W - 2 * MARGIN, 6.5, 0, buf, 0, 1);
    if (d->pages)
        snprintf(buf, sizeof(buf), "Page %d of %d", d->page, d->pages);
    else
        snprintf(buf, sizeof(buf), "Page %d of 000", d->page);
    d->y += 2;
    text(d, MARGIN, PAGE_W - 2 * MARGIN, 7.5, 0, buf, 0, 1);
    d->y = y;
    cairo_set_source_rgb(d->cr, 0, 0, 0);
}

static void new_page(doc *d)
{
    footer(d);
    cairo_show_page(d->cr);
    d->page++;
    d->y = MARGIN;
}

static void need(doc *d, double h)
{
    if (d->y + h > BOTTOM)
        new_page(d);
}

static void heading(doc *d, const char *s)
{
    need(d, 80);
    d->y += 8;
    cairo_set_source_rgb(d->cr, 0.10, 0.25, 0.45);
    d->y += text(d, MARGIN, PAGE_W - 2 * MARGIN, 15, 1, s, 0, 1) + 6;
    cairo_set_source_rgb(d->cr, 0, 0, 0);
}

static void para(doc *d, const char *s)
{
    double h = text(d, MARGIN, PAGE_W - 2 * MARGIN, 9, 0, s, 0, 0);
    need(d, h);
    cairo_set_source_rgb(d->cr, 0.3, 0.3, 0.3);
    d->y += text(d, MARGIN, PAGE_W - 2 * MARGIN, 9, 0, s, 0, 1) + 6;
    cairo_set_source_rgb(d->cr, 0, 0, 0);
}

/* ---- tables ---- */

#define COLS_MAX 6

/* rows of ncols cells; the first row is the header.  Column 0 is left
 * aligned, the others right aligned. */
static void table(doc *d, int ncols, const double *widths, char cells[][COLS_MAX][96], int nrows)
{
    const double row_h = 16;

    need(d, row_h * (nrows < 4 ? nrows : 4));     /* no header alone at a page's end */
    for (int i = 0; i < nrows; i++) {
        if (d->y + row_h > BOTTOM)
            new_page(d);
        double x = MARGIN;
        if (i == 0) {
            cairo_set_source_rgb(d->cr, 0.90, 0.93, 0.97);
            cairo_rectangle(d->cr, MARGIN, d->y - 2, PAGE_W - 2 * MARGIN, row_h);
            cairo_fill(d->cr);
        } else if (i % 2 == 0) {
            cairo_set_source_rgb(d->cr, 0.97, 0.97, 0.97);
            cairo_rectangle(d->cr, MARGIN, d->y - 2, PAGE_W - 2 * MARGIN, row_h);
            cairo_fill(d->cr);
        }
        cairo_set_source_rgb(d->cr, 0, 0, 0);
        for (int c = 0; c < ncols; c++) {
            double w = widths[c];
            if (c == 0)
                text(d, x + 4, w - 8, 9.5, i == 0, cells[i][c], 0, 1);
            else {
                /* right aligned: measure the ink width */
                PangoLayout *l = pango_cairo_create_layout(d->cr);
                PangoFontDescription *f = pango_font_description_from_string(FONT);
                int pw, ph;
                pango_font_description_set_absolute_size(f, 9.5 * PANGO_SCALE);
                pango_font_description_set_weight(f, i == 0 ? PANGO_WEIGHT_BOLD : PANGO_WEIGHT_NORMAL);
                pango_layout_set_font_description(l, f);
                pango_layout_set_text(l, cells[i][c], -1);
                pango_layout_get_size(l, &pw, &ph);
                cairo_move_to(d->cr, x + w - 4 - (double)pw / PANGO_SCALE, d->y);
                pango_cairo_show_layout(d->cr, l);
                pango_font_description_free(f);
                g_object_unref(l);
            }
            x += w;
        }
        d->y += row_h;
    }
    d->y += 10;
}

/* label | value tables */
typedef struct { const char *label; char value[64]; } kv;

static void kv_table(doc *d, const char *head, const kv *rows, int n)
{
    char (*cells)[COLS_MAX][96] = calloc((size_t)n + 1, sizeof(*cells));
    static const double w[2] = { 340, 143 };
    if (cells == NULL)
        return;
    snprintf(cells[0][0], 96, "%s", head);
    snprintf(cells[0][1], 96, "Value");
    for (int i = 0; i < n; i++) {
        snprintf(cells[i + 1][0], 96, "%s", rows[i].label);
        snprintf(cells[i + 1][1], 96, "%s", rows[i].value);
    }
    table(d, 2, w, cells, n + 1);
    free(cells);
}

static void fmt_ll(char *out, long long v)
{
    snprintf(out, 64, "%lld", v);
}

static void fmt_pct(char *out, long long part, long long whole)
{
    double v = gdpr_report_pct(part, whole);
    if (v < 0)
        snprintf(out, 64, "n/a");
    else
        snprintf(out, 64, "%.2f %%", v);
}

/* ---- charts ---- */

typedef struct { double r, g, b; } rgb;
static const rgb blue = { 0.20, 0.45, 0.75 }, grey = { 0.70, 0.72, 0.75 }, red = { 0.80, 0.30, 0.25 };

/* Bars of one or two series over n categories; labels under the first, the
 * last and (when few) every category. */
static void bar_chart(doc *d, const char *title, const char *const *labels, const long long *a,
                      const long long *b, size_t n, const char *a_name, const char *b_name, rgb ca)
{
    const double h = 170, x0 = MARGIN + 40, w = PAGE_W - 2 * MARGIN - 50;
    long long max = 1;
    char buf[64];

    need(d, h + 60);
    d->y += text(d, MARGIN, PAGE_W - 2 * MARGIN, 10, 1, title, 0, 1) + 6;
    double top = d->y, base = d->y + h;
    for (size_t i = 0; i < n; i++) {
        if (a[i] > max)
            max = a[i];
        if (b && b[i] > max)
            max = b[i];
    }
    /* axes and the scale */
    cairo_set_source_rgb(d->cr, 0.4, 0.4, 0.4);
    cairo_set_line_width(d->cr, 0.7);
    cairo_move_to(d->cr, x0, top);
    cairo_line_to(d->cr, x0, base);
    cairo_line_to(d->cr, x0 + w, base);
    cairo_stroke(d->cr);
    double y = d->y;
    d->y = top - 4;
    snprintf(buf, sizeof(buf), "%lld", max);
    text(d, MARGIN - 4, 42, 7, 0, buf, 0, 1);
    d->y = base - 8;
    text(d, MARGIN + 28, 12, 7, 0, "0", 0, 1);
    d->y = y;
    double slot = n ? w / (double)n : w;
    double bw = slot * (b ? 0.38 : 0.75);
    if (bw < 0.4)
        bw = 0.4;
    for (size_t i = 0; i < n; i++) {
        double x = x0 + slot * (double)i + slot * 0.12;
        double ha = h * (double)a[i] / (double)max;
        cairo_set_source_rgb(d->cr, ca.r, ca.g, ca.b);
        cairo_rectangle(d->cr, x, base - ha, bw, ha);
        cairo_fill(d->cr);
        if (b) {
            double hb = h * (double)b[i] / (double)max;
            cairo_set_source_rgb(d->cr, grey.r, grey.g, grey.b);
            cairo_rectangle(d->cr, x + bw, base - hb, bw, hb);
            cairo_fill(d->cr);
        }
        if (n <= 12 || i == 0 || i == n - 1) {
            cairo_set_source_rgb(d->cr, 0.2, 0.2, 0.2);
            d->y = base + 3;
            text(d, x - (n <= 12 ? 0 : 20), n <= 12 ? slot : 60, 7, 0, labels[i], 0, 1);
        }
    }
    d->y = base + 16;
    if (a_name) {
        cairo_set_source_rgb(d->cr, ca.r, ca.g, ca.b);
        cairo_rectangle(d->cr, x0, d->y + 2, 8, 8);
        cairo_fill(d->cr);
        cairo_set_source_rgb(d->cr, 0, 0, 0);
        text(d, x0 + 12, 120, 8, 0, a_name, 0, 1);
    }
    if (b_name) {
        cairo_set_source_rgb(d->cr, grey.r, grey.g, grey.b);
        cairo_rectangle(d->cr, x0 + 140, d->y + 2, 8, 8);
        cairo_fill(d->cr);
        cairo_set_source_rgb(d->cr, 0, 0, 0);
        text(d, x0 + 152, 120, 8, 0, b_name, 0, 1);
    }
    cairo_set_source_rgb(d->cr, 0, 0, 0);
    d->y += 22;
}

/* ---- the sections ---- */

static void title_page(doc *d)
{
    const gdpr_report *r = d->r;
    char buf[512];

    d->y = 170;
    cairo_set_source_rgb(d->cr, 0.10, 0.25, 0.45);
    d->y += text(d, MARGIN, PAGE_W - 2 * MARGIN, 28, 1, "GDPR Compliance Report", 0, 1) + 8;
    cairo_set_source_rgb(d->cr, 0.3, 0.3, 0.3);
    d->y += text(d, MARGIN, PAGE_W - 2 * MARGIN, 13, 0, "InsiteChart Edge", 0, 1) + 40;
    cairo_set_source_rgb(d->cr, 0, 0, 0);
    snprintf(buf, sizeof(buf), "Reporting period: %s to %s (UTC, inclusive)", r->period.start, r->period.end);
    d->y += text(d, MARGIN, PAGE_W - 2 * MARGIN, 12, 0, buf, 0, 1) + 6;
    snprintf(buf, sizeof(buf), "Generated: %s", r->generated_at);
    d->y += text(d, MARGIN, PAGE_W - 2 * MARGIN, 12, 0, buf, 0, 1) + 30;
    d->y += text(d, MARGIN, PAGE_W - 2 * MARGIN, 11, 1, "Contents", 0, 1) + 4;
    static const char *const toc[] = {
        "1. Data processing", "2. Deletions (right to erasure)", "3. Consents",
        "4. Data portability", "5. Security incidents", "6. Audit summary", "7. Retention runs",
    };
    for (size_t i = 0; i < sizeof(toc) / sizeof(toc[0]); i++)
        d->y += text(d, MARGIN + 12, PAGE_W - 2 * MARGIN, 10.5, 0, toc[i], 0, 1) + 2;
    d->y += 30;
    para(d, "Every figure in this document is rendered from the same numbers as the JSON report "
            "(GET /api/v1/gdpr/compliance-report?format=json) for the same period. The footer's SHA-256 "
            "is the hash of those numbers (the JSON without generated_at and integrity, compact, keys "
            "sorted); the JSON's integrity.signature is its Ed25519 signature by the key whose "
            "fingerprint is shown.");
}

static void section_processing(doc *d)
{
    const gdpr_report *r = d->r;
    kv rows[2 + GDPR_ACCESS_N];
    static char names[GDPR_ACCESS_N][48];

    heading(d, "1. Data processing");
    para(d, "Authenticated accesses recorded in the audit trail during the period.");
    rows[0].label = "Users with recorded accesses";
    fmt_ll(rows[0].value, r->processing.users);
    rows[1].label = "Operations";
    fmt_ll(rows[1].value, r->processing.operations);
    for (int i = 0; i < GDPR_ACCESS_N; i++) {
        snprintf(names[i], sizeof(names[i]), "Operations: %s", gdpr_access_names[i]);
        rows[2 + i].label = names[i];
        fmt_ll(rows[2 + i].value, r->processing.by_access[i]);
    }
    kv_table(d, "Data processing", rows, 2 + GDPR_ACCESS_N);

    size_t n = r->processing.ndays;
    const char **labels = calloc(n + 1, sizeof(char *));
    long long *v = calloc(n + 1, sizeof(long long));
    if (labels && v) {
        for (size_t i = 0; i < n; i++) {
            labels[i] = r->processing.days[i].date;
            v[i] = r->processing.days[i].operations;
        }
        bar_chart(d, "Chart 1: operations per day", labels, v, NULL, n, "operations", NULL, blue);
    }
    free(labels);
    free(v);
}

static void section_deletions(doc *d)
{
    const gdpr_report *r = d->r;
    kv rows[6] = {
        { "Erasure requests", "" }, { "Erasures completed", "" }, { "Erasures failed", "" },
        { "Erasures cancelled", "" }, { "Erasures open", "" }, { "Rows erased or anonymized", "" },
    };
    fmt_ll(rows[0].value, r->deletions.requests);
    fmt_ll(rows[1].value, r->deletions.completed);
    fmt_ll(rows[2].value, r->deletions.failed);
    fmt_ll(rows[3].value, r->deletions.cancelled);
    fmt_ll(rows[4].value, r->deletions.open);
    fmt_ll(rows[5].value, r->deletions.rows_deleted);
    heading(d, "2. Deletions (right to erasure)");
    para(d, "Erasure requests made in the period (GDPR Art. 17) and what became of them.");
    kv_table(d, "Deletions", rows, 6);
}

static void section_consents(doc *d)
{
    const gdpr_report *r = d->r;
    size_t n = r->consents.ntypes;
    char (*cells)[COLS_MAX][96] = calloc(n + 1, sizeof(*cells));
    static const double w[6] = { 113, 70, 70, 80, 75, 75 };
    char buf[64];

    heading(d, "3. Consents");
    snprintf(buf, sizeof(buf), "%lld", r->consents.changes);
    char line[256];
    snprintf(line, sizeof(line), "Current consent state per type, and the changes recorded in the period. "
             "Consent changes in period: %s", buf);
    para(d, line);
    if (cells == NULL)
        return;
    static const char *const head[6] = { "Consent type", "Granted", "Withheld", "Grant rate",
                                         "Grants", "Withdrawals" };
    for (int c = 0; c < 6; c++)
        snprintf(cells[0][c], 96, "%s", head[c]);
    for (size_t i = 0; i < n; i++) {
        const gdpr_report_consent *t = &r->consents.types[i];
        snprintf(cells[i + 1][0], 96, "%s", t->type);
        snprintf(cells[i + 1][1], 96, "%lld", t->granted);
        snprintf(cells[i + 1][2], 96, "%lld", t->withheld);
        fmt_pct(buf, t->granted, t->granted + t->withheld);
        snprintf(cells[i + 1][3], 96, "%s", buf);
        snprintf(cells[i + 1][4], 96, "%lld", t->grants);
        snprintf(cells[i + 1][5], 96, "%lld", t->withdrawals);
    }
    table(d, 6, w, cells, (int)n + 1);
    free(cells);

    const char **labels = calloc(n + 1, sizeof(char *));
    long long *g = calloc(n + 1, sizeof(long long)), *wd = calloc(n + 1, sizeof(long long));
    if (labels && g && wd) {
        for (size_t i = 0; i < n; i++) {
            labels[i] = r->consents.types[i].type;
            g[i] = r->consents.types[i].granted;
            wd[i] = r->consents.types[i].withheld;
        }
        bar_chart(d, "Chart 2: consents per type", labels, g, wd, n, "granted", "withheld", blue);
    }
    free(labels);
    free(g);
    free(wd);
}

static void section_portability(doc *d)
{
    const gdpr_report *r = d->r;
    kv rows[6] = {
        { "Export requests", "" }, { "Exports ready", "" }, { "Exports failed", "" },
        { "Exports expired", "" }, { "Exports pending", "" }, { "Average completion (seconds)", "" },
    };
    fmt_ll(rows[0].value, r->portability.requests);
    fmt_ll(rows[1].value, r->portability.ready);
    fmt_ll(rows[2].value, r->portability.failed);
    fmt_ll(rows[3].value, r->portability.expired);
    fmt_ll(rows[4].value, r->portability.pending);
    fmt_ll(rows[5].value, r->portability.avg_completion_s);
    heading(d, "4. Data portability");
    para(d, "Data exports requested in the period (GDPR Art. 15 and 20).");
    kv_table(d, "Data portability", rows, 6);
}

static void section_incidents(doc *d)
{
    const gdpr_report *r = d->r;
    kv rows[1 + GDPR_SEV_N];
    static char names[GDPR_SEV_N][48];

    rows[0].label = "Incidents";
    fmt_ll(rows[0].value, r->incidents.total);
    for (int i = 0; i < GDPR_SEV_N; i++) {
        snprintf(names[i], sizeof(names[i]), "Incidents: %s", gdpr_severity_names[i]);
        rows[1 + i].label = names[i];
        fmt_ll(rows[1 + i].value, r->incidents.by_severity[i]);
    }
    heading(d, "5. Security incidents");
    para(d, "Security incidents detected in the period: broken audit chains, suspicious access patterns.");
    kv_table(d, "Security incidents", rows, 1 + GDPR_SEV_N);
    bar_chart(d, "Chart 3: incidents per severity", (const char *const *)gdpr_severity_names,
              r->incidents.by_severity, NULL, GDPR_SEV_N, "incidents", NULL, red);
}

static void section_audit(doc *d)
{
    const gdpr_report *r = d->r;
    kv rows[9] = {
        { "Audit entries", "" }, { "Audit users", "" }, { "Journal chains", "" },
        { "Expected records", "" }, { "Shipped records", "" }, { "Missing records", "" },
        { "Audit completeness", "" }, { "Checkpoints", "" }, { "Checkpoints verified", "" },
    };
    fmt_ll(rows[0].value, r->audit.entries);
    fmt_ll(rows[1].value, r->audit.users);
    fmt_ll(rows[2].value, r->audit.chains);
    fmt_ll(rows[3].value, r->audit.expected);
    fmt_ll(rows[4].value, r->audit.shipped);
    fmt_ll(rows[5].value, r->audit.expected - r->audit.shipped);
    fmt_pct(rows[6].value, r->audit.shipped, r->audit.expected);
    fmt_ll(rows[7].value, r->audit.checkpoints);
    if (r->audit.checkpoints_checked)
        snprintf(rows[8].value, 64, "%lld of %lld", r->audit.checkpoints_verified, r->audit.checkpoints);
    else
        snprintf(rows[8].value, 64, "not checked");
    heading(d, "6. Audit summary");
    para(d, "Completeness is measured, not assumed: within each journal chain the records of the period "
            "must carry every sequence number from the chain's first to its last; missing numbers are "
            "records written by nginx but not in the trail. Checkpoints verify when their Ed25519 "
            "signature checks with the audit key and each names its predecessor.");
    kv_table(d, "Audit", rows, 9);
}

static void section_retention(doc *d)
{
    const gdpr_report *r = d->r;
    size_t n = r->retention.ntypes;
    char (*cells)[COLS_MAX][96] = calloc(n + 2, sizeof(*cells));
    static const double w[5] = { 163, 80, 80, 80, 80 };
    static const char *const head[5] = { "Data type", "Runs", "Completed", "Failed", "Rows deleted" };

    heading(d, "7. Retention runs");
    para(d, "Automated deletions by the retention policies (gdpr_audit_log, action automated_deletion).");
    if (cells == NULL)
        return;
    for (int c = 0; c < 5; c++)
        snprintf(cells[0][c], 96, "%s", head[c]);
    for (size_t i = 0; i < n; i++) {
        const gdpr_report_retention *t = &r->retention.types[i];
        snprintf(cells[i + 1][0], 96, "%s", t->data_type);
        snprintf(cells[i + 1][1], 96, "%lld", t->runs);
        snprintf(cells[i + 1][2], 96, "%lld", t->completed);
        snprintf(cells[i + 1][3], 96, "%lld", t->failed);
        snprintf(cells[i + 1][4], 96, "%lld", t->rows);
    }
    snprintf(cells[n + 1][0], 96, "Total");
    snprintf(cells[n + 1][1], 96, "%lld", r->retention.runs);
    snprintf(cells[n + 1][2], 96, "%lld", r->retention.completed);
    snprintf(cells[n + 1][3], 96, "%lld", r->retention.failed);
    snprintf(cells[n + 1][4], 96, "%lld", r->retention.rows);
    table(d, 5, w, cells, (int)n + 2);
    free(cells);
}

/* One pass; the page count, or -1. */
static int render(doc *d, sink *s)
{
    d->surface = cairo_pdf_surface_create_for_stream(sink_write, s, PAGE_W, PAGE_H);
    d->cr = cairo_create(d->surface);
    cairo_pdf_surface_set_metadata(d->surface, CAIRO_PDF_METADATA_TITLE, "GDPR Compliance Report");
    cairo_pdf_surface_set_metadata(d->surface, CAIRO_PDF_METADATA_CREATOR, "insite-gdpr");
    d->page = 1;
    d->y = MARGIN;
    title_page(d);
    new_page(d);
    section_processing(d);
    section_deletions(d);
    section_consents(d);
    section_portability(d);
    section_incidents(d);
    section_audit(d);
    section_retention(d);
    footer(d);
    cairo_show_page(d->cr);
    int pages = d->page;
    cairo_status_t st = cairo_status(d->cr);
    cairo_destroy(d->cr);
    cairo_surface_finish(d->surface);
    if (st == CAIRO_STATUS_SUCCESS)
        st = cairo_surface_status(d->surface);
    cairo_surface_destroy(d->surface);
    if (st != CAIRO_STATUS_SUCCESS) {
        insite_log_error("report: pdf: %s", cairo_status_to_string(st));
        return -1;
    }
    return pages;
}

int gdpr_report_pdf(const gdpr_report *r, const char *sha256, const char *key_fingerprint,
                    unsigned char **out, size_t *len)
{
    doc d = { .r = r, .sha = sha256, .fingerprint = key_fingerprint };
    sink count = { .discard = 1 }, s = { .discard = 0 };

    if ((d.pages = render(&d, &count)) < 0 || render(&d, &s) < 0) {
        free(s.buf);
        return -1;
    }
    *out = s.buf;
    *len = s.len;
    return 0;
}
