/*
 * Redis Cluster routing, plain C: see insite_cluster_slots.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <stdarg.h>

#include "insite_cluster_slots.h"


/* CRC16-CCITT (XMODEM): poly 0x1021, init 0, as the cluster spec defines */
uint16_t
insite_cluster_crc16(const char *buf, size_t len)
{
    size_t    i;
    int       b;
    uint16_t  crc = 0;

    for (i = 0; i < len; i++) {
        crc ^= (uint16_t) ((unsigned char) buf[i] << 8);

        for (b = 0; b < 8; b++) {
            crc = (crc & 0x8000) ? (uint16_t) ((crc << 1) ^ 0x1021)
                                 : (uint16_t) (crc << 1);
        }
    }

    return crc;
}


unsigned
insite_cluster_key_slot(const char *key, size_t len)
{
    size_t  s, e;

    for (s = 0; s < len && key[s] != '{'; s++) { /* void */ }

    if (s < len) {
        for (e = s + 1; e < len && key[e] != '}'; e++) { /* void */ }

        /* "{}" or no closing brace: the whole key */
        if (e < len && e != s + 1) {
            key += s + 1;
            len = e - s - 1;
        }
    }

    return insite_cluster_crc16(key, len) & (INSITE_CLUSTER_SLOTS - 1);
}


static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  ap;

    if (errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }

    return -1;
}


static void
map_reset(insite_cluster_map_t *map)
{
    unsigned  i;

    map->nnodes = 0;
    map->nmasters = 0;

    for (i = 0; i < INSITE_CLUSTER_SLOTS; i++) {
        map->owner[i] = -1;
    }
}


int
insite_cluster_map_find(const insite_cluster_map_t *map, const char *host,
    size_t hostlen, int port)
{
    unsigned  i;

    for (i = 0; i < map->nnodes; i++) {
        if (map->nodes[i].port == port
            && strlen(map->nodes[i].host) == hostlen
            && memcmp(map->nodes[i].host, host, hostlen) == 0)
        {
            return (int) i;
        }
    }

    return -1;
}


/* adds (or finds) a node; -1 when full or out of range */
static int
map_node(insite_cluster_map_t *map, const char *host, size_t hostlen,
    long long port, int master, int online, char *err, size_t errlen)
{
    int                     i;
    insite_cluster_node_t  *n;

    if (port < 1 || port > 65535) {
        return fail(err, errlen, "port %lld out of range", port);
    }

    if (hostlen > INSITE_CLUSTER_HOST_MAX) {
        return fail(err, errlen, "node address too long");
    }

    /* "?" is how a node that does not know its own address shows up */
    if (hostlen == 1 && host[0] == '?') {
        hostlen = 0;
    }

    i = insite_cluster_map_find(map, host, hostlen, (int) port);
    if (i >= 0) {
        return i;
    }

    if (map->nnodes == INSITE_CLUSTER_NODES_MAX) {
        return fail(err, errlen, "more than %d nodes",
                    INSITE_CLUSTER_NODES_MAX);
    }

    n = &map->nodes[map->nnodes];
    memcpy(n->host, host, hostlen);
    n->host[hostlen] = '\0';
    n->port = (int) port;
    n->master = master;
    n->online = online ? 1 : 0;

    return (int) map->nnodes++;
}


static int
reply_int(const redisReply *r, long long *v)
{
    char       buf[24], *end;
    long long  n;

    if (r->type == REDIS_REPLY_INTEGER) {
        *v = r->integer;
        return 0;
    }

    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len >= sizeof(buf)) {
        return -1;
    }

    memcpy(buf, r->str, r->len);
    buf[r->len] = '\0';
    n = strtoll(buf, &end, 10);

    if (*end != '\0') {
        return -1;
    }

    *v = n;
    return 0;
}


static int
reply_is(const redisReply *r, const char *s)
{
    size_t  n = strlen(s);

    return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
           && r->len == n && memcmp(r->str, s, n) == 0;
}


static int
map_assign(insite_cluster_map_t *map, long long start, long long end,
    int owner, char *err, size_t errlen)
{
    long long  s;

    if (start < 0 || end >= INSITE_CLUSTER_SLOTS || start > end) {
        return fail(err, errlen, "slot range %lld-%lld out of range",
                    start, end);
    }

    for (s = start; s <= end; s++) {
        map->owner[s] = (int16_t) owner;
    }

    return 0;
}


/* one node of CLUSTER SHARDS: a flat list of field, value pairs */
typedef struct {
    const char  *host;
    size_t       hostlen;
    long long    port;
    int          master;
    int          online;
} shard_node_t;


static int
shard_node(const redisReply *r, shard_node_t *n, char *err, size_t errlen)
{
    size_t             i;
    const redisReply  *k, *v;

    if (r->type != REDIS_REPLY_ARRAY
        || r->elements % 2)
    {
        return fail(err, errlen, "CLUSTER SHARDS: node is not a map");
    }

    memset(n, 0, sizeof(*n));
    n->port = -1;

    for (i = 0; i < r->elements; i += 2) {
        k = r->element[i];
        v = r->element[i + 1];

        if (reply_is(k, "ip") && v->type == REDIS_REPLY_STRING) {
            n->host = v->str;
            n->hostlen = v->len;

        } else if (reply_is(k, "endpoint") && v->type == REDIS_REPLY_STRING
                   && n->host == NULL)
        {
            n->host = v->str;
            n->hostlen = v->len;

        } else if (reply_is(k, "port")) {
            if (reply_int(v, &n->port) != 0) {
                return fail(err, errlen, "CLUSTER SHARDS: bad port");
            }

        } else if (reply_is(k, "role")) {
            n->master = reply_is(v, "master");

        } else if (reply_is(k, "health")) {
            n->online = reply_is(v, "online");
        }
    }

    if (n->port < 0) {
        return fail(err, errlen, "CLUSTER SHARDS: node without a port");
    }

    if (n->host == NULL) {
        n->host = "";
    }

    return 0;
}


int
insite_cluster_map_from_shards(insite_cluster_map_t *map,
    const redisReply *reply, char *err, size_t errlen)
{
    int                master, idx;
    size_t             i, j, k;
    long long          start, end;
    shard_node_t       n;
    const redisReply  *shard, *slots, *nodes;

    map_reset(map);

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return fail(err, errlen, "CLUSTER SHARDS: not an array");
    }

    for (i = 0; i < reply->elements; i++) {
        shard = reply->element[i];

        if (shard->type != REDIS_REPLY_ARRAY
            || shard->elements % 2)
        {
            return fail(err, errlen, "CLUSTER SHARDS: shard is not a map");
        }

        slots = NULL;
        nodes = NULL;

        for (j = 0; j < shard->elements; j += 2) {
            if (reply_is(shard->element[j], "slots")) {
                slots = shard->element[j + 1];

            } else if (reply_is(shard->element[j], "nodes")) {
                nodes = shard->element[j + 1];
            }
        }

        if (slots == NULL || nodes == NULL || slots->type != REDIS_REPLY_ARRAY
            || nodes->type != REDIS_REPLY_ARRAY || slots->elements % 2)
        {
            return fail(err, errlen, "CLUSTER SHARDS: shard without slots "
                        "or nodes");
        }

        /* the master first: replicas point at it */
        master = -1;

        for (k = 0; k < nodes->elements; k++) {
            if (shard_node(nodes->element[k], &n, err, errlen) != 0) {
                return -1;
            }

            if (n.master && master < 0) {
                master = map_node(map, n.host, n.hostlen, n.port, -1,
                                  n.online, err, errlen);
                if (master < 0) {
                    return -1;
                }
            }
        }

        for (k = 0; k < nodes->elements; k++) {
            (void) shard_node(nodes->element[k], &n, err, errlen);

            if (!n.master) {
                idx = map_node(map, n.host, n.hostlen, n.port, master,
                               n.online, err, errlen);
                if (idx < 0) {
                    return -1;
                }
            }
        }

        if (slots->elements == 0) {
            continue;               /* a shard without slots (empty master) */
        }

        if (master < 0) {
            return fail(err, errlen, "CLUSTER SHARDS: shard with slots "
                        "and no master");
        }

        map->nmasters++;

        for (j = 0; j < slots->elements; j += 2) {
            if (reply_int(slots->element[j], &start) != 0
                || reply_int(slots->element[j + 1], &end) != 0)
            {
                return fail(err, errlen, "CLUSTER SHARDS: bad slot");
            }

            if (map_assign(map, start, end, master, err, errlen) != 0) {
                return -1;
            }
        }
    }

    return 0;
}


/* CLUSTER SLOTS: [start, end, [ip, port, id, ...], [replica ...] ...] */
int
insite_cluster_map_from_slots(insite_cluster_map_t *map,
    const redisReply *reply, char *err, size_t errlen)
{
    int                master, idx;
    size_t             i, k;
    long long          start, end, port;
    const redisReply  *range, *node;

    map_reset(map);

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return fail(err, errlen, "CLUSTER SLOTS: not an array");
    }

    for (i = 0; i < reply->elements; i++) {
        range = reply->element[i];

        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3
            || reply_int(range->element[0], &start) != 0
            || reply_int(range->element[1], &end) != 0)
        {
            return fail(err, errlen, "CLUSTER SLOTS: bad slot range");
        }

        master = -1;

        for (k = 2; k < range->elements; k++) {
            node = range->element[k];

            if (node->type != REDIS_REPLY_ARRAY || node->elements < 2
                || node->element[0]->type != REDIS_REPLY_STRING
                || reply_int(node->element[1], &port) != 0)
            {
                return fail(err, errlen, "CLUSTER SLOTS: bad node");
            }

            idx = map_node(map, node->element[0]->str, node->element[0]->len,
                           port, master, 1, err, errlen);
            if (idx < 0) {
                return -1;
            }

            if (k == 2) {
                master = idx;
                map->nodes[idx].master = -1;
            }
        }

        if (map_assign(map, start, end, master, err, errlen) != 0) {
            return -1;
        }
    }

    /* masters owning at least one slot */
    for (i = 0; i < map->nnodes; i++) {
        if (map->nodes[i].master >= 0) {
            continue;
        }

        for (k = 0; k < INSITE_CLUSTER_SLOTS; k++) {
            if (map->owner[k] == (int16_t) i) {
                map->nmasters++;
                break;
            }
        }
    }

    return 0;
}


int
insite_cluster_map_reader(const insite_cluster_map_t *map, unsigned slot,
    unsigned pick)
{
    int       m;
    unsigned  i, n, want;

    if (slot >= INSITE_CLUSTER_SLOTS || map->owner[slot] < 0) {
        return -1;
    }

    m = map->owner[slot];
    n = 0;

    for (i = 0; i < map->nnodes; i++) {
        if (map->nodes[i].master == m && map->nodes[i].online
            && map->nodes[i].host[0])
        {
            n++;
        }
    }

    if (n == 0) {
        return m;
    }

    want = pick % n;

    for (i = 0; i < map->nnodes; i++) {
        if (map->nodes[i].master == m && map->nodes[i].online
            && map->nodes[i].host[0] && want-- == 0)
        {
            return (int) i;
        }
    }

    return m;
}


/* "<slot> <host>:<port>" after MOVED / ASK */
static int
parse_target(const char *p, const char *end, insite_cluster_redirect_t *out)
{
    const char  *colon, *q;
    unsigned     slot;
    long         port;

    if (p >= end || *p < '0' || *p > '9') {
        return -1;
    }

    for (slot = 0; p < end && *p >= '0' && *p <= '9'; p++) {
        slot = slot * 10 + (unsigned) (*p - '0');
        if (slot >= INSITE_CLUSTER_SLOTS) {
            return -1;
        }
    }

    if (p >= end || *p++ != ' ') {
        return -1;
    }

    /* the port is after the last ':' (an IPv6 address has colons) */
    colon = NULL;
    for (q = p; q < end; q++) {
        if (*q == ':') {
            colon = q;
        } else if (*q == ' ' || *q == '\r' || *q == '\n') {
            return -1;
        }
    }

    if (colon == NULL || colon + 1 == end
        || (size_t) (colon - p) > INSITE_CLUSTER_HOST_MAX)
    {
        return -1;
    }

    port = 0;
    for (q = colon + 1; q < end; q++) {
        if (*q < '0' || *q > '9') {
            return -1;
        }
        port = port * 10 + (*q - '0');
        if (port > 65535) {
            return -1;
        }
    }

    if (port == 0) {
        return -1;
    }

    memcpy(out->host, p, (size_t) (colon - p));
    out->host[colon - p] = '\0';
    out->port = (int) port;
    out->slot = slot;

    return 0;
}


static int
starts(const char *str, size_t len, const char *prefix)
{
    size_t  n = strlen(prefix);

    return len >= n && memcmp(str, prefix, n) == 0
           && (len == n || str[n] == ' ');
}


insite_cluster_err_e
insite_cluster_error(const char *str, size_t len,
    insite_cluster_redirect_t *out)
{
    memset(out, 0, sizeof(*out));

    if (str == NULL) {
        return INSITE_CLUSTER_ERR_NONE;
    }

    if (starts(str, len, "MOVED") && len > 6) {
        if (parse_target(str + 6, str + len, out) == 0) {
            out->kind = INSITE_CLUSTER_ERR_MOVED;
        }

    } else if (starts(str, len, "ASK") && len > 4) {
        if (parse_target(str + 4, str + len, out) == 0) {
            out->kind = INSITE_CLUSTER_ERR_ASK;
        }

    } else if (starts(str, len, "TRYAGAIN")) {
        out->kind = INSITE_CLUSTER_ERR_TRYAGAIN;

    } else if (starts(str, len, "CLUSTERDOWN")) {
        out->kind = INSITE_CLUSTER_ERR_CLUSTERDOWN;
    }

    return out->kind;
}


/* reads "<c><decimal>\r\n" at *p; -1 when malformed */
static long long
resp_header(const char **p, const char *end, char c)
{
    long long  n;

    if (*p >= end || **p != c) {
        return -1;
    }

    (*p)++;

    if (*p >= end || **p < '0' || **p > '9') {
        return -1;
    }

    for (n = 0; *p < end && **p >= '0' && **p <= '9'; (*p)++) {
        n = n * 10 + (**p - '0');
        if (n > (1LL << 40)) {
            return -1;
        }
    }

    if (end - *p < 2 || (*p)[0] != '\r' || (*p)[1] != '\n') {
        return -1;
    }

    *p += 2;

    return n;
}


static int
resp_arg(const char **p, const char *end, const char **arg, size_t *len)
{
    long long  n;

    n = resp_header(p, end, '$');

    if (n < 0 || end - *p < n + 2 || (*p)[n] != '\r' || (*p)[n + 1] != '\n') {
        return -1;
    }

    *arg = *p;
    *len = (size_t) n;
    *p += n + 2;

    return 0;
}


static int
arg_is(const char *arg, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(arg, name, len) == 0;
}


int
insite_cluster_command_key(const char *cmd, size_t len, const char **key,
    size_t *keylen)
{
    long long    argc, numkeys;
    size_t       alen[4];
    const char  *p, *end, *arg[4];
    int          i, n;

    p = cmd;
    end = cmd + len;

    argc = resp_header(&p, end, '*');
    if (argc < 1) {
        return -1;
    }

    n = argc < 4 ? (int) argc : 4;

    for (i = 0; i < n; i++) {
        if (resp_arg(&p, end, &arg[i], &alen[i]) != 0) {
            return -1;
        }
    }

    if (arg_is(arg[0], alen[0], "EVAL") || arg_is(arg[0], alen[0], "EVALSHA")
        || arg_is(arg[0], alen[0], "EVAL_RO")
        || arg_is(arg[0], alen[0], "EVALSHA_RO")
        || arg_is(arg[0], alen[0], "FCALL")
        || arg_is(arg[0], alen[0], "FCALL_RO"))
    {
        if (argc < 3) {
            return 0;
        }

        numkeys = 0;
        for (i = 0; i < (int) alen[2]; i++) {
            if (arg[2][i] < '0' || arg[2][i] > '9' || numkeys > 100000000) {
                return -1;
            }
            numkeys = numkeys * 10 + (arg[2][i] - '0');
        }

        if (numkeys == 0 || argc < 4) {
            return 0;
        }

        *key = arg[3];
        *keylen = alen[3];
        return 1;
    }

    if (argc < 2) {
        return 0;
    }

    *key = arg[1];
    *keylen = alen[1];
    return 1;
}


int
insite_cluster_parse_seeds(const char *list,
    int (*add)(const char *host, int port, void *data), void *data,
    char *err, size_t errlen)
{
    char         item[INSITE_CLUSTER_HOST_MAX + 8], *colon, *end;
    long         port;
    size_t       n;
    unsigned     count;
    const char  *p, *b, *e;

    count = 0;

    for (p = list; *p != '\0'; p += n + (p[n] == ',')) {
        n = strcspn(p, ",");
        b = p;
        e = p + n;

        while (b < e && (*b == ' ' || *b == '\t')) {
            b++;
        }

        while (e > b && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }

        if (e == b || (size_t) (e - b) >= sizeof(item)) {
            snprintf(err, errlen, "an empty or over-long node address");
            return -1;
        }

        memcpy(item, b, (size_t) (e - b));
        item[e - b] = '\0';

        colon = strrchr(item, ':');
        end = NULL;
        port = 0;

        if (colon != NULL && colon != item && colon[1] >= '0'
            && colon[1] <= '9')
        {
            port = strtol(colon + 1, &end, 10);
        }

        if (end == NULL || *end != '\0' || port < 1 || port > 65535) {
            snprintf(err, errlen, "\"%s\" is not host:port", item);
            return -1;
        }

        *colon = '\0';

        if (add(item, (int) port, data) != 0) {
            snprintf(err, errlen, "cannot add node %s:%ld", item, port);
            return -1;
        }

        count++;
    }

    if (count == 0) {
        snprintf(err, errlen, "no node address");
        return -1;
    }

    return 0;
}
