/* A page of bars as JSON text, written straight from PostgreSQL's column
 * text: a page is up to stocks.page_max bars of seven values, and building
 * a json_t per value then printing each double back (%.17g) cost more than
 * the query.  PostgreSQL's numeric text is already a JSON number (and the
 * exact stored value); the rest is times and integers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "stocks.h"

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} text_buf;

static void put(text_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(text_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* a column as a JSON number, null when NULL or not a number (NaN) */
static void put_number(text_buf *b, PGresult *r, int row, int col)
{
    const char *v = PQgetvalue(r, row, col);
    puts_(b, !PQgetisnull(r, row, col) && stocks_json_number_ok(v) ? v : "null");
}

char *stocks_bars_text(PGresult *r, int n, const char *head)
{
    static const char *const keys[] = { "\"open\":", ",\"high\":", ",\"low\":", ",\"close\":",
                                        ",\"volume\":", ",\"minutes\":" };
    text_buf b = { 0 };
    size_t hl = strlen(head);

    put(&b, head, hl - 1);             /* head without its closing brace */
    puts_(&b, hl > 2 ? ",\"bars\":[" : "\"bars\":[");
    for (int i = 0; i < n; i++) {
        char t[INSITE_RFC3339_LEN];
        insite_clock_rfc3339_ms(t, sizeof(t), strtoll(PQgetvalue(r, i, 0), NULL, 10) * 1000);
        puts_(&b, i ? ",{\"time\":\"" : "{\"time\":\"");
        puts_(&b, t);
        puts_(&b, "\",");
        for (int c = 0; c < 6; c++) {
            puts_(&b, keys[c]);
            put_number(&b, r, i, c + 1);
        }
        puts_(&b, "}");
    }
    puts_(&b, "]}\n");
    if (b.oom) {
        insite_log_error("stocks: out of memory for a page of %d bars", n);
        free(b.p);
        return NULL;
    }
    return b.p;
}
