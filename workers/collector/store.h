/* PostgreSQL records of the collector: stock_prices (bars and quotes,
 * upserted on symbol + ts + interval) and the last stored bar per symbol. */
#ifndef COLLECTOR_STORE_H
#define COLLECTOR_STORE_H

#include <libpq-fe.h>

#include "collector.h"

/* Connects and applies the migrations; NULL on error (logged). */
PGconn *store_open(const char *dsn, const char *migrations_dir);
/* PQreset when the connection broke; 0 when usable. */
int store_ready(PGconn *c);

/* Upserts n bars in one transaction.  0, or -1 (logged). */
int store_bars(PGconn *c, const char *symbol, const char *interval, const char *source,
               const bar *b, size_t n);
/* Upserts the quote as interval 'quote' at its market time. */
int store_quote(PGconn *c, const quote *q);
/* Newest 1m bar stored for symbol (epoch s), 0 if none, -1 on error. */
int64_t store_last_bar(PGconn *c, const char *symbol);

#endif
