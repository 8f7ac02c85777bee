/* GET and PUT /api/v1/watchlists: the caller's named symbol lists
 * (personal data; docs/stocks.md).  The user is X-User-Id as nginx sets it
 * (insite_http_user), never a parameter, so a caller reaches only their
 * own lists: there is no way to name another user's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stocks.h"

#define NAME_MAX_BYTES 64

static int bad(json_t **reply, const char *msg)
{
    *reply = insite_http_error("bad_request", msg);
    return 400;
}

static int read_lists(stocks_ctx *ctx, stocks_conn *conn, const char *user, json_t **reply)
{
    static const char sql[] =
        "SELECT name, array_to_json(symbols)::text, to_char(updated_at AT TIME ZONE 'UTC',"
        " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM watchlists WHERE user_id = $1"
        " ORDER BY position, name";
    const char *p[1] = { user };
    PGresult *r = stocks_query(ctx, conn, "read watchlists", sql, 1, p, reply);
    if (r == NULL)
        return 500;
    json_t *lists = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *syms = json_loads(PQgetvalue(r, i, 1), 0, NULL);
        json_array_append_new(lists, json_pack("{s:s, s:o, s:s}", "name", PQgetvalue(r, i, 0),
                                               "symbols", syms ? syms : json_array(),
                                               "updated_at", PQgetvalue(r, i, 2)));
    }
    PQclear(r);
    *reply = json_pack("{s:o, s:{s:I, s:I}}", "watchlists", lists, "limits",
                       "lists", (json_int_t)ctx->watchlists_max,
                       "symbols_per_list", (json_int_t)ctx->watchlist_symbols_max);
    return 200;
}

/* Checks one list and renders its symbols as a PostgreSQL array literal
 * ({"AAPL","MSFT"}: symbols cannot hold quotes or backslashes). */
static int check_list(stocks_ctx *ctx, json_t *l, size_t idx, char **arr, char *err, size_t errlen)
{
    json_t *name = json_object_get(l, "name"), *syms = json_object_get(l, "symbols"), *s;
    size_t i, j;

    if (!json_is_object(l) || !json_is_string(name) || !json_is_array(syms)) {
        snprintf(err, errlen, "watchlists[%zu]: expected {\"name\": string, \"symbols\": [..]}", idx);
        return -1;
    }
    const char *nm = json_string_value(name);
    size_t nl = json_string_length(name);
    if (nl == 0 || nl > NAME_MAX_BYTES || strlen(nm) != nl) {
        snprintf(err, errlen, "watchlists[%zu].name: 1 to %d bytes", idx, NAME_MAX_BYTES);
        return -1;
    }
    for (i = 0; i < nl; i++)
        if ((unsigned char)nm[i] < 0x20 || nm[i] == 0x7f) {
            snprintf(err, errlen, "watchlists[%zu].name: control characters are not allowed", idx);
            return -1;
        }
    if (json_array_size(syms) > (size_t)ctx->watchlist_symbols_max) {
        snprintf(err, errlen, "watchlists[%zu]: at most %ld symbols", idx, ctx->watchlist_symbols_max);
        return -1;
    }
    char *out = malloc(json_array_size(syms) * (STOCKS_SYMBOL_MAX + 3) + 3);
    char (*seen)[STOCKS_SYMBOL_MAX] = calloc(json_array_size(syms) + 1, STOCKS_SYMBOL_MAX);
    if (out == NULL || seen == NULL) {
        free(out);
        free(seen);
        snprintf(err, errlen, "out of memory");
        return -2;
    }
    size_t len = 0;
    out[len++] = '{';
    json_array_foreach(syms, i, s) {
        if (!json_is_string(s) || stocks_symbol_normalize(json_string_value(s), seen[i]) != 0) {
            snprintf(err, errlen, "watchlists[%zu].symbols[%zu]: a symbol matching "
                     "[A-Za-z0-9.^=-]{1,15}", idx, i);
            goto fail;
        }
        for (j = 0; j < i; j++)
            if (strcmp(seen[j], seen[i]) == 0) {
                snprintf(err, errlen, "watchlists[%zu]: %s is listed twice", idx, seen[i]);
                goto fail;
            }
        len += (size_t)sprintf(out + len, "%s\"%s\"", i ? "," : "", seen[i]);
    }
    out[len++] = '}';
    out[len] = '\0';
    free(seen);
    *arr = out;
    return 0;
fail:
    free(out);
    free(seen);
    return -1;
}

static int write_lists(stocks_ctx *ctx, stocks_conn *conn, const char *user, json_t *lists,
                       char **arrs, json_t **reply)
{
    static const char ins[] =
        "INSERT INTO watchlists (user_id, name, position, symbols) VALUES ($1, $2, $3, $4::text[])";
    const char *pu[1] = { user };
    PGresult *r = stocks_query(ctx, conn, "BEGIN", "BEGIN", 0, NULL, reply);
    if (r == NULL)
        return 500;
    PQclear(r);
    r = stocks_query(ctx, conn, "clear watchlists", "DELETE FROM watchlists WHERE user_id = $1",
                     1, pu, reply);
    for (size_t i = 0; r != NULL && i < json_array_size(lists); i++) {
        char pos[24];
        PQclear(r);
        snprintf(pos, sizeof(pos), "%zu", i);
        const char *p[4] = { user, json_string_value(json_object_get(json_array_get(lists, i), "name")),
                             pos, arrs[i] };
        r = stocks_query(ctx, conn, "insert watchlist", ins, 4, p, reply);
    }
    if (r == NULL) {
        PQclear(PQexec(conn->pg, "ROLLBACK"));
        return 500;
    }
    PQclear(r);
    if ((r = stocks_query(ctx, conn, "COMMIT", "COMMIT", 0, NULL, reply)) == NULL)
        return 500;
    PQclear(r);
    return 0;
}

static int put_lists(stocks_ctx *ctx, const insite_http_request *req, const char *user,
                     json_t **reply)
{
    json_t *lists = json_object_get(req->body, "watchlists");
    char err[192];
    size_t i, j, n;
    int rc = 400;

    if (!json_is_object(req->body) || !json_is_array(lists))
        return bad(reply, "expected {\"watchlists\": [{\"name\": string, \"symbols\": [..]}, ..]}");
    n = json_array_size(lists);
    if (n > (size_t)ctx->watchlists_max) {
        snprintf(err, sizeof(err), "at most %ld watchlists", ctx->watchlists_max);
        return bad(reply, err);
    }
    char **arrs = calloc(n + 1, sizeof(*arrs));
    if (arrs == NULL) {
        *reply = insite_http_error("internal", "out of memory");
        return 500;
    }
    for (i = 0; i < n; i++) {
        int c = check_list(ctx, json_array_get(lists, i), i, &arrs[i], err, sizeof(err));
        if (c != 0) {
            rc = c == -2 ? 500 : 400;
            *reply = insite_http_error(c == -2 ? "internal" : "bad_request", err);
            goto out;
        }
        for (j = 0; j < i; j++)
            if (strcmp(json_string_value(json_object_get(json_array_get(lists, j), "name")),
                       json_string_value(json_object_get(json_array_get(lists, i), "name"))) == 0) {
                snprintf(err, sizeof(err), "watchlists[%zu]: the name is used twice", i);
                *reply = insite_http_error("bad_request", err);
                goto out;
            }
    }
    stocks_conn *conn = stocks_acquire(ctx, reply);
    if (conn == NULL) {
        rc = 503;
        goto out;
    }
    rc = write_lists(ctx, conn, user, lists, arrs, reply);
    if (rc == 0)
        rc = read_lists(ctx, conn, user, reply);
    stocks_release(ctx, conn);
out:
    for (i = 0; i < n; i++)
        free(arrs[i]);
    free(arrs);
    return rc;
}

int stocks_api_watchlists(const insite_http_request *req, json_t **reply, void *ud)
{
    stocks_ctx *ctx = ud;
    const char *user = insite_http_user(req);
    int rc;

    if (req->rest[0] != '\0') {
        *reply = insite_http_error("not_found", "no such path (use /api/v1/watchlists)");
        return 404;
    }
    if (user == NULL) {
        *reply = insite_http_error("unauthorized", "no authenticated user (X-User-Id)");
        return 401;
    }
    insite_counter_inc(ctx->req_watchlists);
    if (strcmp(req->method, "PUT") == 0) {
        rc = put_lists(ctx, req, user, reply);
    } else {
        stocks_conn *conn = stocks_acquire(ctx, reply);
        if (conn == NULL)
            return 503;
        rc = read_lists(ctx, conn, user, reply);
        stocks_release(ctx, conn);
    }
    if (rc == 200)
        stocks_cache_headers(req, -1, 0);
    return rc;
}
