/* The cache of closed bars pages: a hash table of pages by key, a least
 * recently used list, and per symbol slot a list of its pages (for
 * invalidation) and a generation (for tickets).  See bars_cache.h. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bars_cache.h"
#include "log.h"
#include "params.h"

#define SLOTS 1024                /* symbol slots: generations, page lists */
#define ENTRY_OVERHEAD 160        /* bytes counted per page besides its text */

typedef struct entry {
    struct entry *hnext;                    /* hash chain */
    struct entry *lru_prev, *lru_next;      /* lru_next: older */
    struct entry *slot_prev, *slot_next;
    uint32_t hash;
    unsigned slot;
    char symbol[STOCKS_SYMBOL_MAX];
    int64_t lo, hi, last_modified;
    char etag[35];
    size_t len, cost;
    char *key;
    char *body;
} entry;

struct stocks_bars_cache {
    pthread_mutex_t lock;
    size_t max_bytes, bytes, npages;
    entry **table;
    size_t nbuckets;                        /* a power of two */
    entry *newest, *oldest;
    entry *slot_pages[SLOTS];
    uint64_t slot_gen[SLOTS];
    int online;
    stocks_bars_cache_stats st;
};

static uint32_t key_hash(const char *s)
{
    uint32_t h = 2166136261u;               /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static unsigned slot_of(const char *symbol)
{
    return stocks_symbol_hash(symbol) % SLOTS;
}

stocks_bars_cache *stocks_bars_cache_new(size_t max_bytes)
{
    stocks_bars_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->nbuckets = 1024;
    if ((c->table = calloc(c->nbuckets, sizeof(*c->table))) == NULL) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->max_bytes = max_bytes;
    return c;
}

static void lru_unlink(stocks_bars_cache *c, entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->newest = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->oldest = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push(stocks_bars_cache *c, entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->newest;
    if (c->newest)
        c->newest->lru_prev = e;
    c->newest = e;
    if (c->oldest == NULL)
        c->oldest = e;
}

static entry **find_link(stocks_bars_cache *c, const char *key, uint32_t h)
{
    entry **p = &c->table[h & (c->nbuckets - 1)];
    while (*p != NULL && ((*p)->hash != h || strcmp((*p)->key, key) != 0))
        p = &(*p)->hnext;
    return p;
}

/* Unlinks e from every list and frees it. */
static void drop(stocks_bars_cache *c, entry *e)
{
    entry **p = find_link(c, e->key, e->hash);
    if (*p == e)
        *p = e->hnext;
    lru_unlink(c, e);
    if (e->slot_prev)
        e->slot_prev->slot_next = e->slot_next;
    else
        c->slot_pages[e->slot] = e->slot_next;
    if (e->slot_next)
        e->slot_next->slot_prev = e->slot_prev;
    c->bytes -= e->cost;
    c->npages--;
    free(e->key);
    free(e->body);
    free(e);
}

static void drop_all(stocks_bars_cache *c)
{
    while (c->newest != NULL)
        drop(c, c->newest);
    for (unsigned i = 0; i < SLOTS; i++)
        c->slot_gen[i]++;
}

void stocks_bars_cache_free(stocks_bars_cache *c)
{
    if (c == NULL)
        return;
    drop_all(c);
    pthread_mutex_destroy(&c->lock);
    free(c->table);
    free(c);
}

/* Doubles the table when it holds twice as many pages as buckets (failure
 * to grow only makes chains longer). */
static void maybe_grow(stocks_bars_cache *c)
{
    if (c->npages < 2 * c->nbuckets)
        return;
    size_t n = c->nbuckets * 2;
    entry **t = calloc(n, sizeof(*t));
    if (t == NULL)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        entry *e = c->table[i], *next;
        for (; e != NULL; e = next) {
            next = e->hnext;
            e->hnext = t[e->hash & (n - 1)];
            t[e->hash & (n - 1)] = e;
        }
    }
    free(c->table);
    c->table = t;
    c->nbuckets = n;
}

int stocks_bars_cache_get(stocks_bars_cache *c, const char *symbol, const char *key,
                          stocks_cached_page *out, uint64_t *ticket)
{
    uint32_t h = key_hash(key);
    int hit = 0;
    pthread_mutex_lock(&c->lock);
    *ticket = c->online ? c->slot_gen[slot_of(symbol)] : STOCKS_CACHE_NO_TICKET;
    entry *e = c->online ? *find_link(c, key, h) : NULL;
    if (e != NULL && (out->body = malloc(e->len + 1)) != NULL) {
        memcpy(out->body, e->body, e->len + 1);
        out->len = e->len;
        memcpy(out->etag, e->etag, sizeof(out->etag));
        out->last_modified = e->last_modified;
        lru_unlink(c, e);
        lru_push(c, e);
        hit = 1;
    }
    if (hit)
        c->st.hits++;
    else
        c->st.misses++;
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void stocks_bars_cache_put(stocks_bars_cache *c, const char *symbol, const char *key,
                           int64_t lo, int64_t hi, const stocks_cached_page *page,
                           uint64_t ticket)
{
    size_t klen = strlen(key), cost = page->len + klen + ENTRY_OVERHEAD;
    uint32_t h = key_hash(key);
    unsigned slot = slot_of(symbol);

    if (cost > c->max_bytes || ticket == STOCKS_CACHE_NO_TICKET
        || strlen(symbol) >= STOCKS_SYMBOL_MAX)
        return;
    /* copied before the lock: the common case is a store that goes in */
    entry *e = calloc(1, sizeof(*e));
    char *k = e ? malloc(klen + 1) : NULL, *b = k ? malloc(page->len + 1) : NULL;
    if (b == NULL) {
        insite_log_warn("stocks: out of memory for a cached page of %zu bytes", page->len);
        free(k);
        free(e);
        return;
    }
    memcpy(k, key, klen + 1);
    memcpy(b, page->body, page->len);
    b[page->len] = '\0';
    *e = (entry){ .hash = h, .slot = slot, .lo = lo, .hi = hi,
                  .last_modified = page->last_modified, .len = page->len, .cost = cost,
                  .key = k, .body = b };
    memcpy(e->symbol, symbol, strlen(symbol) + 1);
    memcpy(e->etag, page->etag, sizeof(e->etag));

    pthread_mutex_lock(&c->lock);
    int fresh = c->online && c->slot_gen[slot] == ticket;
    entry *old = fresh ? *find_link(c, key, h) : NULL;
    if (old != NULL)
        drop(c, old);                       /* another thread stored it first */
    while (fresh && c->bytes + cost > c->max_bytes && c->oldest != NULL) {
        drop(c, c->oldest);
        c->st.evicted++;
    }
    if (fresh) {
        entry **bucket = &c->table[h & (c->nbuckets - 1)];
        e->hnext = *bucket;
        *bucket = e;
        lru_push(c, e);
        e->slot_next = c->slot_pages[slot];
        if (e->slot_next)
            e->slot_next->slot_prev = e;
        c->slot_pages[slot] = e;
        c->bytes += cost;
        c->npages++;
        c->st.stores++;
        maybe_grow(c);
    }
    pthread_mutex_unlock(&c->lock);
    if (!fresh) {
        free(k);
        free(b);
        free(e);
    }
}

size_t stocks_bars_cache_invalidate(stocks_bars_cache *c, const char *symbol, int64_t first,
                                    int64_t last)
{
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    if (symbol == NULL) {
        n = c->npages;
        drop_all(c);
    } else {
        unsigned slot = slot_of(symbol);
        c->slot_gen[slot]++;
        entry *e = c->slot_pages[slot], *next;
        for (; e != NULL; e = next) {
            next = e->slot_next;
            if (strcmp(e->symbol, symbol) == 0 && first < e->hi && last >= e->lo) {
                drop(c, e);
                n++;
            }
        }
    }
    c->st.invalidated += n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

void stocks_bars_cache_set_online(stocks_bars_cache *c, int online)
{
    pthread_mutex_lock(&c->lock);
    drop_all(c);
    c->online = online;
    pthread_mutex_unlock(&c->lock);
}

void stocks_bars_cache_stats_get(stocks_bars_cache *c, stocks_bars_cache_stats *s)
{
    pthread_mutex_lock(&c->lock);
    *s = c->st;
    s->pages = c->npages;
    s->bytes = c->bytes;
    pthread_mutex_unlock(&c->lock);
}
