/* The pipeline's PostgreSQL side: its own connection (not the HTTP
 * handlers'), migrated on first use; scored posts (sentiment_post_scores,
 * the idempotency record) and aggregates (sentiment_data). */
#ifndef ANALYTICS_SCORES_DB_H
#define ANALYTICS_SCORES_DB_H

#include <stdint.h>

#include "social_msg.h"
#include "vader.h"
#include "windows.h"

typedef struct sent_db sent_db;

/* Does not connect yet.  NULL on out of memory. */
sent_db *sent_db_new(const char *dsn, const char *migrations_dir);
void sent_db_free(sent_db *d);

/* Connected and migrated?  0, or -1 (logged once per outage). */
int sent_db_ready(sent_db *d);

/* Records the post's score for each of its symbols at ts_ms.  Sets
 * fresh[i] = 1 for the symbols not recorded before.  Returns how many are
 * fresh, or -1 on a database error (logged; the connection is reset). */
int sent_db_record(sent_db *d, const sent_post *p, const vader_scores *s, int64_t ts_ms,
                   int fresh[SENT_POST_SYMBOLS]);

/* Calls fn for every score recorded with ts > since_ms.  Returns the count,
 * or -1 (logged). */
typedef int (*sent_db_row_fn)(const char *symbol, int64_t ts_ms, double compound, void *ud);
long sent_db_load(sent_db *d, int64_t since_ms, sent_db_row_fn fn, void *ud);

/* Upserts one sentiment_data row: ts = ts_ms rounded down to the minute. */
int sent_db_store_aggregate(sent_db *d, const char *symbol, const char *window,
                            const sent_agg *a, int64_t ts_ms);

#endif
