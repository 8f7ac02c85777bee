/*
 * Metrics registry in shared memory.
 *
 * Layout: a header (layout hash + slot count) then one ngx_atomic_t per slot.
 * A counter or gauge is one slot; a histogram is one slot per bucket (not
 * cumulative: an observation touches one slot), one for +Inf, one for the sum
 * in microseconds and one for the count.  Across `nginx -s reload` the zone is
 * kept when the layout is unchanged, so counters do not fall back to zero.
 */

#include "ngx_insite_core.h"


typedef struct {
    uint32_t        layout;
    ngx_uint_t      nslots;
    ngx_atomic_t    values[1];
} ngx_insite_metrics_shm_t;


static const double  ngx_insite_default_buckets[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
    5, 10
};


static ngx_insite_metric_t *ngx_insite_metric_register(ngx_conf_t *cf,
    ngx_insite_metric_type_e type, const char *name, ngx_str_t *labels,
    const char *help, const double *buckets, ngx_uint_t nbuckets);
static ngx_int_t ngx_insite_metrics_init_zone(ngx_shm_zone_t *zone,
    void *data);
static uint32_t ngx_insite_metrics_layout(ngx_http_insite_main_conf_t *imcf);
static size_t ngx_insite_metrics_zone_size(ngx_uint_t nslots);
static ngx_insite_metric_t *ngx_insite_metric_find(
    ngx_http_insite_main_conf_t *imcf, ngx_str_t *name, ngx_str_t *labels);
static u_char *ngx_insite_metrics_render_one(u_char *p,
    ngx_insite_metric_t *m, ngx_uint_t header);
static size_t ngx_insite_metrics_render_len(ngx_insite_metric_t *m);


ngx_int_t
ngx_insite_metrics_init_conf(ngx_conf_t *cf)
{
    ngx_str_t                     name = ngx_string("insite_metrics");
    ngx_http_insite_main_conf_t  *imcf;

    imcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_module);

    if (ngx_array_init(&imcf->metrics, cf->pool, 32,
                       sizeof(ngx_insite_metric_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    imcf->metrics_zone = ngx_shared_memory_add(cf, &name,
                                               ngx_insite_metrics_zone_size(0),
                                               &ngx_http_insite_module);
    if (imcf->metrics_zone == NULL) {
        return NGX_ERROR;
    }

    imcf->metrics_zone->init = ngx_insite_metrics_init_zone;
    imcf->metrics_zone->data = imcf;

    return NGX_OK;
}


ngx_insite_metric_t *
ngx_insite_metric_add(ngx_conf_t *cf, ngx_insite_metric_type_e type,
    const char *name, ngx_str_t *labels, const char *help)
{
    return ngx_insite_metric_register(cf, type, name, labels, help,
                                      ngx_insite_default_buckets,
                                      sizeof(ngx_insite_default_buckets)
                                      / sizeof(double));
}


ngx_insite_metric_t *
ngx_insite_histogram_add(ngx_conf_t *cf, const char *name, ngx_str_t *labels,
    const char *help, const double *buckets, ngx_uint_t nbuckets)
{
    if (buckets == NULL) {
        buckets = ngx_insite_default_buckets;
        nbuckets = sizeof(ngx_insite_default_buckets) / sizeof(double);
    }

    return ngx_insite_metric_register(cf, NGX_INSITE_HISTOGRAM, name, labels,
                                      help, buckets, nbuckets);
}


static ngx_insite_metric_t *
ngx_insite_metric_register(ngx_conf_t *cf, ngx_insite_metric_type_e type,
    const char *name, ngx_str_t *labels, const char *help,
    const double *buckets, ngx_uint_t nbuckets)
{
    ngx_str_t                     n, empty = ngx_null_string;
    ngx_insite_metric_t          *m, **mp;
    ngx_http_insite_main_conf_t  *imcf;

    imcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_module);
    if (imcf == NULL || imcf->metrics_zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite metric \"%s\" registered outside http{}",
                           name);
        return NULL;
    }

    if (labels == NULL) {
        labels = &empty;
    }

    n.data = (u_char *) name;
    n.len = ngx_strlen(name);

    m = ngx_insite_metric_find(imcf, &n, labels);
    if (m) {
        if (m->type != type) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "insite metric \"%V\" registered twice "
                               "with different types", &n);
            return NULL;
        }
        return m;
    }

    m = ngx_pcalloc(cf->pool, sizeof(ngx_insite_metric_t));
    if (m == NULL) {
        return NULL;
    }

    m->name = n;
    m->help.data = (u_char *) help;
    m->help.len = ngx_strlen(help);
    m->type = type;

    m->labels.len = labels->len;
    if (labels->len) {
        m->labels.data = ngx_pstrdup(cf->pool, labels);
        if (m->labels.data == NULL) {
            return NULL;
        }
    }

    m->slot = imcf->nslots;
    m->nslots = 1;

    if (type == NGX_INSITE_HISTOGRAM) {
        m->buckets = buckets;
        m->nbuckets = nbuckets;
        m->nslots = nbuckets + 3;             /* +Inf, sum, count */
    }

    mp = ngx_array_push(&imcf->metrics);
    if (mp == NULL) {
        return NULL;
    }

    *mp = m;
    imcf->nslots += m->nslots;

    /* the zone is allocated after the whole configuration is read */
    imcf->metrics_zone->shm.size = ngx_insite_metrics_zone_size(imcf->nslots);

    return m;
}


static ngx_insite_metric_t *
ngx_insite_metric_find(ngx_http_insite_main_conf_t *imcf, ngx_str_t *name,
    ngx_str_t *labels)
{
    ngx_uint_t            i;
    ngx_insite_metric_t **mp;

    mp = imcf->metrics.elts;

    for (i = 0; i < imcf->metrics.nelts; i++) {
        if (mp[i]->name.len == name->len
            && mp[i]->labels.len == labels->len
            && ngx_strncmp(mp[i]->name.data, name->data, name->len) == 0
            && ngx_strncmp(mp[i]->labels.data, labels->data, labels->len) == 0)
        {
            return mp[i];
        }
    }

    return NULL;
}


/* zones are slab pools: room for the pool's own pages plus our slots */

static size_t
ngx_insite_metrics_zone_size(ngx_uint_t nslots)
{
    size_t  page, size;

    page = ngx_pagesize ? ngx_pagesize : 4096;
    size = sizeof(ngx_insite_metrics_shm_t) + nslots * sizeof(ngx_atomic_t);

    return 8 * page + ngx_align(size, page);
}


static ngx_int_t
ngx_insite_metrics_init_zone(ngx_shm_zone_t *zone, void *data)
{
    size_t                        size;
    uint32_t                      layout;
    ngx_uint_t                    i;
    ngx_slab_pool_t              *shpool;
    ngx_insite_metric_t         **mp;
    ngx_insite_metrics_shm_t     *shm;
    ngx_http_insite_main_conf_t  *imcf;

    imcf = zone->data;
    shpool = (ngx_slab_pool_t *) zone->shm.addr;
    layout = ngx_insite_metrics_layout(imcf);

    /* kept across reloads (data) and binary upgrades (exists) */
    shm = (data || zone->shm.exists) ? shpool->data : NULL;

    if (shm && (shm->layout != layout || shm->nslots != imcf->nslots)) {
        ngx_slab_free(shpool, shm);
        shm = NULL;
    }

    if (shm == NULL) {
        size = sizeof(ngx_insite_metrics_shm_t)
               + imcf->nslots * sizeof(ngx_atomic_t);

        shm = ngx_slab_calloc(shpool, size);
        if (shm == NULL) {
            ngx_log_error(NGX_LOG_EMERG, zone->shm.log, 0,
                          "insite metrics: cannot allocate %uz bytes", size);
            return NGX_ERROR;
        }

        shm->layout = layout;
        shm->nslots = imcf->nslots;
        shpool->data = shm;
    }

    mp = imcf->metrics.elts;

    for (i = 0; i < imcf->metrics.nelts; i++) {
        mp[i]->values = &shm->values[mp[i]->slot];
    }

    return NGX_OK;
}


static uint32_t
ngx_insite_metrics_layout(ngx_http_insite_main_conf_t *imcf)
{
    uint32_t               crc;
    ngx_uint_t             i;
    ngx_insite_metric_t  **mp;

    ngx_crc32_init(crc);

    mp = imcf->metrics.elts;

    for (i = 0; i < imcf->metrics.nelts; i++) {
        ngx_crc32_update(&crc, mp[i]->name.data, mp[i]->name.len);
        ngx_crc32_update(&crc, mp[i]->labels.data, mp[i]->labels.len);
        ngx_crc32_update(&crc, (u_char *) &mp[i]->nslots, sizeof(ngx_uint_t));
    }

    ngx_crc32_final(crc);

    return crc;
}


void
ngx_insite_metric_inc(ngx_insite_metric_t *m)
{
    if (m && m->values) {
        (void) ngx_atomic_fetch_add(&m->values[0], 1);
    }
}


void
ngx_insite_metric_add_value(ngx_insite_metric_t *m, ngx_atomic_int_t v)
{
    if (m && m->values) {
        (void) ngx_atomic_fetch_add(&m->values[0], v);
    }
}


void
ngx_insite_metric_set(ngx_insite_metric_t *m, ngx_atomic_int_t v)
{
    if (m && m->values) {
        m->values[0] = (ngx_atomic_uint_t) v;
    }
}


ngx_atomic_int_t
ngx_insite_metric_value(ngx_insite_metric_t *m)
{
    if (m && m->values) {
        return (ngx_atomic_int_t) m->values[0];
    }

    return 0;
}


void
ngx_insite_metric_observe(ngx_insite_metric_t *m, double seconds)
{
    ngx_uint_t  i;

    if (m == NULL || m->values == NULL) {
        return;
    }

    for (i = 0; i < m->nbuckets; i++) {
        if (seconds <= m->buckets[i]) {
            break;
        }
    }

    /* i == nbuckets is the +Inf slot */
    (void) ngx_atomic_fetch_add(&m->values[i], 1);
    (void) ngx_atomic_fetch_add(&m->values[m->nbuckets + 1],
                                (ngx_atomic_int_t) (seconds * 1e6));
    (void) ngx_atomic_fetch_add(&m->values[m->nbuckets + 2], 1);
}


ngx_chain_t *
ngx_insite_metrics_render(ngx_pool_t *pool)
{
    size_t                        len;
    ngx_uint_t                    i, j, header;
    ngx_buf_t                    *b;
    ngx_chain_t                  *cl;
    ngx_insite_metric_t         **mp;
    ngx_http_insite_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_insite_module);
    if (imcf == NULL) {
        return NULL;
    }

    mp = imcf->metrics.elts;
    len = 0;

    for (i = 0; i < imcf->metrics.nelts; i++) {
        len += ngx_insite_metrics_render_len(mp[i]);
    }

    b = ngx_create_temp_buf(pool, len + 1);
    if (b == NULL) {
        return NULL;
    }

    /*
     * Series of one name must be adjacent in the exposition format, with one
     * HELP/TYPE header: render names in order of first registration and each
     * name's series together.
     */

    for (i = 0; i < imcf->metrics.nelts; i++) {

        for (j = 0; j < i; j++) {
            if (mp[j]->name.len == mp[i]->name.len
                && ngx_strncmp(mp[j]->name.data, mp[i]->name.data,
                               mp[i]->name.len) == 0)
            {
                break;
            }
        }

        if (j < i) {
            continue;                 /* rendered with its first series */
        }

        header = 1;

        for (j = i; j < imcf->metrics.nelts; j++) {
            if (mp[j]->name.len == mp[i]->name.len
                && ngx_strncmp(mp[j]->name.data, mp[i]->name.data,
                               mp[i]->name.len) == 0)
            {
                b->last = ngx_insite_metrics_render_one(b->last, mp[j], header);
                header = 0;
            }
        }
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    cl = ngx_alloc_chain_link(pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    return cl;
}


static size_t
ngx_insite_metrics_render_len(ngx_insite_metric_t *m)
{
    size_t  series;

    /* "# HELP name help\n# TYPE name histogram\n" */
    series = m->name.len + sizeof("_bucket{,le=\"\"} \n") - 1 + m->labels.len
             + NGX_ATOMIC_T_LEN + 32;

    return sizeof("# HELP  \n# TYPE  histogram\n") - 1 + 2 * m->name.len
           + m->help.len + series * m->nslots;
}


static u_char *
ngx_insite_metrics_render_one(u_char *p, ngx_insite_metric_t *m,
    ngx_uint_t header)
{
    static const char  *types[] = { "counter", "gauge", "histogram" };

    ngx_uint_t          i;
    ngx_atomic_uint_t   cumulative;
    u_char             *sep;

    if (header) {
        p = ngx_sprintf(p, "# HELP %V %V\n# TYPE %V %s\n",
                        &m->name, &m->help, &m->name, types[m->type]);
    }

    if (m->type != NGX_INSITE_HISTOGRAM) {

        if (m->labels.len) {
            p = ngx_sprintf(p, "%V{%V} ", &m->name, &m->labels);

        } else {
            p = ngx_sprintf(p, "%V ", &m->name);
        }

        if (m->type == NGX_INSITE_GAUGE) {
            return ngx_sprintf(p, "%A\n", (ngx_atomic_int_t) m->values[0]);
        }

        return ngx_sprintf(p, "%uA\n", m->values[0]);
    }

    sep = (u_char *) (m->labels.len ? "," : "");
    cumulative = 0;

    for (i = 0; i <= m->nbuckets; i++) {
        cumulative += m->values[i];

        p = ngx_sprintf(p, "%V_bucket{%V%sle=\"", &m->name, &m->labels, sep);

        if (i == m->nbuckets) {
            p = ngx_cpymem(p, "+Inf", 4);

        } else {
            /* %.4f then trim: 0.0005 -> "0.0005", 1 -> "1" */
            u_char  *s = p;

            p = ngx_sprintf(p, "%.4f", m->buckets[i]);
            while (p > s && p[-1] == '0') {
                p--;
            }
            if (p > s && p[-1] == '.') {
                p--;
            }
        }

        p = ngx_sprintf(p, "\"} %uA\n", cumulative);
    }

    if (m->labels.len) {
        p = ngx_sprintf(p, "%V_sum{%V} %uA.%06uA\n%V_count{%V} %uA\n",
                        &m->name, &m->labels,
                        m->values[i] / 1000000, m->values[i] % 1000000,
                        &m->name, &m->labels, m->values[i + 1]);

    } else {
        p = ngx_sprintf(p, "%V_sum %uA.%06uA\n%V_count %uA\n",
                        &m->name,
                        m->values[i] / 1000000, m->values[i] % 1000000,
                        &m->name, m->values[i + 1]);
    }

    return p;
}
