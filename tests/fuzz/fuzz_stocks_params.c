/*
 * insite-stocks request parameters: the bars cursor and time parsers take
 * client bytes.  Whatever they accept must round-trip (a decoded cursor
 * encodes to the same text), and nothing may read or write out of bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../workers/stocks/params.c"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char            *s, enc[STOCKS_CURSOR_MAX], sym[STOCKS_SYMBOL_MAX];
    char             err[160];
    int64_t          t, f, to;
    long             lim;
    stocks_cursor    c;

    s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';

    if (stocks_cursor_decode(s, &c) == 0) {
        if (stocks_cursor_encode(&c, enc, sizeof(enc)) != 0 || strcmp(enc, s) != 0) {
            abort();
        }
    }
    if (stocks_time_parse(s, &t) == 0 && t < 0) {
        abort();
    }
    /* a JSON number by this check is a whole C number too (strtod takes
     * every byte; jansson is no oracle: it refuses integers beyond 64 bits) */
    if (stocks_json_number_ok(s)) {
        char *end = NULL;
        (void) strtod(s, &end);
        if (end != s + strlen(s) || s[0] == '\0') {
            abort();
        }
    }
    (void) stocks_symbol_normalize(s, sym);
    /* a change notification (NOTIFY insite_stock_bars): what it accepts is
     * a valid symbol and an ordered range, and prints back to itself */
    {
        char    csym[STOCKS_SYMBOL_MAX], back[64];
        int64_t first, last;
        int     k = stocks_bars_change_parse(s, csym, &first, &last);
        if (k == 0 && strcmp(s, "*") != 0) {
            abort();
        }
        if (k == 1) {
            snprintf(back, sizeof(back), "%s %lld %lld", csym, (long long) first,
                     (long long) last);
            if (first > last || strcmp(back, s) != 0) {
                abort();
            }
        }
    }
    (void) stocks_limit_parse(s, 500, 5000, &lim, err, sizeof(err));
    (void) stocks_range_resolve(stocks_interval_parse("1m"), s, NULL, 1700000000,
                                &f, &to, err, sizeof(err));
    if (size < 64) {
        char *esc = malloc(2 * size + 1);
        if (esc != NULL) {
            stocks_like_escape(s, esc);
            free(esc);
        }
    }
    free(s);
    return 0;
}
