/* Yahoo Finance chart API (/v8/finance/chart/{symbol}) response parsing,
 * shared by the yahoo provider and the replay feed. */
#ifndef COLLECTOR_CHART_H
#define COLLECTOR_CHART_H

#include <stddef.h>

#include "collector.h"

/* Parses body (HTTP status `status`; a 404 carries chart.error) for symbol
 * into r: the quote from chart.result[0].meta and the bars that are complete
 * at meta.regularMarketTime.  A bar holding a null or non-positive price is
 * skipped and counted in r->skipped; anything else missing, null or
 * inconsistent rejects the whole response.  Returns 0, or -1 with the reason
 * in r->err (never a quote made of zeros). */
int chart_parse(const char *symbol, long status, const char *body, size_t len,
                quote_result *r);

/* Seconds in a Yahoo granularity ("1m" -> 60, "1d" -> 86400); 0 if unknown. */
int chart_interval_seconds(const char *granularity);

#endif
