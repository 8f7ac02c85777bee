#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "log.h"
#include "pg.h"
#include "scores_db.h"

struct sent_db {
    char *dsn, *migrations;
    PGconn *c;
    int down;                       /* outage already logged */
};

sent_db *sent_db_new(const char *dsn, const char *migrations_dir)
{
    sent_db *d = calloc(1, sizeof(*d));
    if (d == NULL || (d->dsn = strdup(dsn)) == NULL
        || (d->migrations = strdup(migrations_dir)) == NULL) {
        if (d != NULL)
            free(d->dsn);
        free(d);
        insite_log_error("sentiment db: out of memory");
        return NULL;
    }
    return d;
}

void sent_db_free(sent_db *d)
{
    if (d == NULL)
        return;
    if (d->c != NULL)
        PQfinish(d->c);
    free(d->dsn);
    free(d->migrations);
    free(d);
}

static void reset(sent_db *d)
{
    if (d->c != NULL)
        PQfinish(d->c);
    d->c = NULL;
}

int sent_db_ready(sent_db *d)
{
    char err[512];
    if (d->c != NULL && PQstatus(d->c) == CONNECTION_OK)
        return 0;
    reset(d);
    if ((d->c = insite_pg_connect(d->dsn, err, sizeof(err))) == NULL) {
        if (!d->down)
            insite_log_error("sentiment db: %s (retrying)", err);
        d->down = 1;
        return -1;
    }
    int n = insite_pg_migrate(d->c, d->migrations, err, sizeof(err));
    if (n < 0) {
        insite_log_error("sentiment db: migrations in %s: %s", d->migrations, err);
        reset(d);
        d->down = 1;
        return -1;
    }
    if (d->down)
        insite_log_info("sentiment db: connected again");
    d->down = 0;
    return 0;
}

/* Runs a statement; NULL on error (logged with what, connection reset). */
static PGresult *exec(sent_db *d, const char *what, const char *sql, int n,
                      const char *const *v, ExecStatusType want)
{
    if (sent_db_ready(d) != 0)
        return NULL;
    PGresult *r = PQexecParams(d->c, sql, n, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) == want)
        return r;
    insite_log_error("sentiment db: %s: %s", what, PQerrorMessage(d->c));
    PQclear(r);
    if (PQstatus(d->c) != CONNECTION_OK)
        reset(d);
    return NULL;
}

int sent_db_record(sent_db *d, const sent_post *p, const vader_scores *s, int64_t ts_ms,
                   int fresh[SENT_POST_SYMBOLS])
{
    char syms[SENT_POST_SYMBOLS * (SENT_SYMBOL_MAX + 3) + 3], ts[32], c[32], pos[32],
        neg[32], neu[32], what[160];
    size_t o = 0;
    syms[o++] = '{';
    for (size_t i = 0; i < p->nsymbols; i++)    /* symbols are [A-Za-z0-9._-] */
        o += (size_t)snprintf(syms + o, sizeof(syms) - o, "%s\"%s\"", i ? "," : "", p->symbols[i]);
    snprintf(syms + o, sizeof(syms) - o, "}");
    snprintf(ts, sizeof(ts), "%" PRId64, ts_ms);
    snprintf(c, sizeof(c), "%.17g", s->compound);
    snprintf(pos, sizeof(pos), "%.17g", s->pos);
    snprintf(neg, sizeof(neg), "%.17g", s->neg);
    snprintf(neu, sizeof(neu), "%.17g", s->neu);
    snprintf(what, sizeof(what), "record post %.40s/%.60s", p->source, p->source_id);
    const char *v[8] = { p->source, p->source_id, syms, ts, c, pos, neg, neu };
    PGresult *r = exec(d, what,
        "INSERT INTO sentiment_post_scores (source, source_id, symbol, ts, compound, pos, neg, neu)"
        " SELECT $1, $2, s, to_timestamp($4::bigint / 1000.0), $5, $6, $7, $8"
        " FROM unnest($3::text[]) s"
        " ON CONFLICT (source, source_id, symbol) DO NOTHING RETURNING symbol",
        8, v, PGRES_TUPLES_OK);
    if (r == NULL)
        return -1;
    memset(fresh, 0, sizeof(int) * SENT_POST_SYMBOLS);
    int n = PQntuples(r);
    for (int i = 0; i < n; i++)
        for (size_t k = 0; k < p->nsymbols; k++)
            if (strcmp(PQgetvalue(r, i, 0), p->symbols[k]) == 0)
                fresh[k] = 1;
    PQclear(r);
    return n;
}

long sent_db_load(sent_db *d, int64_t since_ms, sent_db_row_fn fn, void *ud)
{
    char since[32];
    snprintf(since, sizeof(since), "%" PRId64, since_ms);
    const char *v[1] = { since };
    PGresult *r = exec(d, "load recent scores",
        "SELECT symbol, (extract(epoch FROM ts) * 1000)::bigint, compound"
        " FROM sentiment_post_scores WHERE ts > to_timestamp($1::bigint / 1000.0) ORDER BY ts",
        1, v, PGRES_TUPLES_OK);
    if (r == NULL)
        return -1;
    long n = PQntuples(r);
    for (long i = 0; i < n; i++)
        if (fn(PQgetvalue(r, (int)i, 0), strtoll(PQgetvalue(r, (int)i, 1), NULL, 10),
               strtod(PQgetvalue(r, (int)i, 2), NULL), ud) != 0) {
            n = -1;
            break;
        }
    PQclear(r);
    return n;
}

int sent_db_store_aggregate(sent_db *d, const char *symbol, const char *window,
                            const sent_agg *a, int64_t ts_ms)
{
    char ts[32], mean[32], pos[16], neg[16], neu[16], men[16], what[96];
    snprintf(ts, sizeof(ts), "%" PRId64, ts_ms - ts_ms % 60000);
    snprintf(mean, sizeof(mean), "%.4f", a->compound);
    snprintf(pos, sizeof(pos), "%d", a->positive);
    snprintf(neg, sizeof(neg), "%d", a->negative);
    snprintf(neu, sizeof(neu), "%d", a->neutral);
    snprintf(men, sizeof(men), "%d", a->mentions);
    snprintf(what, sizeof(what), "store %s %s aggregate", symbol, window);
    const char *v[8] = { symbol, window, ts, a->mentions ? mean : NULL, pos, neg, neu, men };
    PGresult *r = exec(d, what,
        "INSERT INTO sentiment_data (symbol, \"window\", ts, mean_compound, pos_count,"
        " neg_count, neu_count, mentions)"
        " VALUES ($1, $2, to_timestamp($3::bigint / 1000.0), $4, $5, $6, $7, $8)"
        " ON CONFLICT (symbol, \"window\", ts) DO UPDATE SET mean_compound = EXCLUDED.mean_compound,"
        " pos_count = EXCLUDED.pos_count, neg_count = EXCLUDED.neg_count,"
        " neu_count = EXCLUDED.neu_count, mentions = EXCLUDED.mentions",
        8, v, PGRES_COMMAND_OK);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}
