/* Finance awareness over plain VADER: a lexicon overlay and the ticker set.
 *
 * Overlay order (later wins): VADER's lexicon < words of the AFINN-165
 * financial-market-news list that VADER lacks (single tokens, scaled from
 * AFINN's -5..5 to VADER's -4..4 by 0.8, negators skipped) < the built-in
 * table in finance.c (bullish, bearish, beat, miss, downgrade, ...). */
#ifndef ANALYTICS_FINANCE_H
#define ANALYTICS_FINANCE_H

#include <stddef.h>

#include "lexicon.h"

/* Merges the AFINN file (afinn-165-financialmarketnews/index.js; NULL or
 * "" = skip) and the built-in table into lx.  Returns the number of words
 * added or changed, or -1 with the reason in err. */
long finance_overlay(lexicon *lx, const char *afinn_path, char *err, size_t errlen);

/* A set of ticker symbols (as given, e.g. "AAPL"); NULL on out of memory. */
lexicon *finance_tickers(char *const *symbols, size_t n);

#endif
