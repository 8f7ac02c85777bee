/*
 * libFuzzer target for the Redis Cluster routing core
 * (ngx_insite_core/insite_cluster_slots.c): the input is read as RESP by
 * hiredis' own reader (as a reply from a node would be) and given to both
 * slot map parsers; the raw bytes are also a formatted command for the
 * routing key, and an error text for the redirect parser.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

#include "insite_cluster_slots.h"


static insite_cluster_map_t  map;


/*
 * hiredis 0.14's reader allocates a multi-bulk's element array at the size
 * the header claims (no limit before hiredis 1.0): a header claiming more
 * elements than the input has bytes is not a reply any node sends, and
 * would only measure calloc.
 */
static int
counts_plausible(const uint8_t *data, size_t size)
{
    size_t        i;
    unsigned long n;

    for (i = 0; i < size; i++) {
        if (data[i] != '*') {
            continue;
        }
        for (n = 0, i++; i < size && data[i] >= '0' && data[i] <= '9'; i++) {
            n = n * 10 + (data[i] - '0');
            if (n > size) {
                return 0;
            }
        }
    }

    return 1;
}



/* a seed the parser accepts is a non-empty host and a port in range */
static int
seed_check(const char *host, int port, void *data)
{
    (void) data;

    if (host[0] == '\0' || port < 1 || port > 65535) {
        __builtin_trap();
    }

    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                        i;
    char                       err[128];
    void                      *reply;
    size_t                     klen;
    unsigned                   s;
    const char                *key;
    redisReader               *rr;
    insite_cluster_redirect_t  rd;

    (void) insite_cluster_key_slot((const char *) data, size);

    if (size < 4096) {
        char  list[4096], why[128];

        memcpy(list, data, size);
        list[size] = '\0';
        (void) insite_cluster_parse_seeds(list, seed_check, NULL, why,
                                          sizeof(why));
    }
    (void) insite_cluster_error((const char *) data, size, &rd);

    if (insite_cluster_command_key((const char *) data, size, &key, &klen)
        == 1)
    {
        /* the key lies inside the input */
        if (key < (const char *) data
            || key + klen > (const char *) data + size)
        {
            abort();
        }
    }

    if (!counts_plausible(data, size)) {
        return 0;
    }

    rr = redisReaderCreate();
    if (rr == NULL) {
        return 0;
    }

    reply = NULL;
    if (redisReaderFeed(rr, (const char *) data, size) == REDIS_OK
        && redisReaderGetReply(rr, &reply) == REDIS_OK && reply != NULL)
    {
        for (i = 0; i < 2; i++) {
            if ((i == 0 ? insite_cluster_map_from_shards(&map, reply, err,
                                                         sizeof(err))
                        : insite_cluster_map_from_slots(&map, reply, err,
                                                        sizeof(err)))
                != 0)
            {
                continue;
            }

            /* a map that parsed is consistent */
            if (map.nnodes > INSITE_CLUSTER_NODES_MAX) {
                abort();
            }
            for (s = 0; s < INSITE_CLUSTER_SLOTS; s += 97) {
                if (map.owner[s] >= (int) map.nnodes
                    || insite_cluster_map_reader(&map, s, s)
                       >= (int) map.nnodes)
                {
                    abort();
                }
            }
        }
        freeReplyObject(reply);
    }

    redisReaderFree(rr);
    return 0;
}
