/*
 * ngx_http_insite_gdpr_module: GDPR audit trail: one hash-chained journal
 * record per authenticated data access.
 *
 * Loaded after ngx_http_insite_module, whose metrics registry it uses.
 *
 *   precontent phase  insite_gdpr_audit_fail closed: 503 while this worker's
 *                     journal is unwritable (checked before the response,
 *                     since the record itself is written after it)
 *   log phase         one record per audited request, one write()
 *
 * Files: ngx_insite_gdpr_record.c builds a record, ngx_insite_gdpr_journal.c
 * writes, chains, rotates and syncs it (docs/gdpr.md).
 */

#include "ngx_insite_gdpr.h"


static ngx_int_t ngx_http_insite_gdpr_precontent_handler(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_insite_gdpr_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_insite_gdpr_log_handler(ngx_http_request_t *r);
static void ngx_http_insite_gdpr_audit(ngx_http_request_t *r);

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

/* the request's ctx: markers, not data.  written: its record is written;
 * refused: insite_gdpr_audit_fail closed refused it (the record's reason) */
static ngx_uint_t  ngx_http_insite_gdpr_written;
static ngx_uint_t  ngx_http_insite_gdpr_refused;
static ngx_int_t ngx_http_insite_gdpr_user(ngx_http_request_t *r,
    ngx_http_insite_gdpr_loc_conf_t *lcf, ngx_str_t *user);

static void *ngx_http_insite_gdpr_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_insite_gdpr_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_insite_gdpr_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_insite_gdpr_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_insite_gdpr_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_insite_gdpr_variable_index(ngx_conf_t *cf,
    char *name);
static ngx_int_t ngx_http_insite_gdpr_init_process(ngx_cycle_t *cycle);
static void ngx_http_insite_gdpr_exit_process(ngx_cycle_t *cycle);
static char *ngx_http_insite_gdpr_journal_dir(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_insite_gdpr_rotate_time(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void ngx_http_insite_gdpr_pseudonym_free(void *data);
static char *ngx_http_insite_gdpr_pseudonym_key(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_insite_gdpr_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_insite_gdpr_paths(ngx_conf_t *cf,
    ngx_http_insite_gdpr_main_conf_t *mcf);


static char *ngx_http_insite_gdpr_check_rotate_size(ngx_conf_t *cf,
    void *post, void *data);

static ngx_conf_post_t  ngx_http_insite_gdpr_rotate_size_bounds = {
    ngx_http_insite_gdpr_check_rotate_size
};


static ngx_conf_enum_t  ngx_http_insite_gdpr_access_types[] = {
    { ngx_string("auto"), NGX_INSITE_GDPR_ACCESS_AUTO },
    { ngx_string("read"), NGX_INSITE_GDPR_ACCESS_READ },
    { ngx_string("write"), NGX_INSITE_GDPR_ACCESS_WRITE },
    { ngx_string("delete"), NGX_INSITE_GDPR_ACCESS_DELETE },
    { ngx_string("export"), NGX_INSITE_GDPR_ACCESS_EXPORT },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_insite_gdpr_fsync_modes[] = {
    { ngx_string("off"), NGX_INSITE_GDPR_FSYNC_OFF },
    { ngx_string("1s"), NGX_INSITE_GDPR_FSYNC_1S },
    { ngx_string("always"), NGX_INSITE_GDPR_FSYNC_ALWAYS },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_insite_gdpr_fail_modes[] = {
    { ngx_string("open"), NGX_INSITE_GDPR_FAIL_OPEN },
    { ngx_string("closed"), NGX_INSITE_GDPR_FAIL_CLOSED },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_insite_gdpr_commands[] = {

    { ngx_string("insite_gdpr_audit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_loc_conf_t, audit),
      NULL },

    { ngx_string("insite_gdpr_audit_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_loc_conf_t, user),
      NULL },

    { ngx_string("insite_gdpr_audit_anonymous"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_loc_conf_t, anonymous),
      NULL },

    { ngx_string("insite_gdpr_audit_query"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_loc_conf_t, query),
      NULL },

    { ngx_string("insite_gdpr_audit_fail"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_loc_conf_t, fail),
      &ngx_http_insite_gdpr_fail_modes },

    { ngx_string("insite_gdpr_data_type"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_loc_conf_t, data_type),
      NULL },

    { ngx_string("insite_gdpr_data_subject"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_loc_conf_t, data_subject),
      NULL },

    { ngx_string("insite_gdpr_access_type"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_loc_conf_t, access_type),
      &ngx_http_insite_gdpr_access_types },

    { ngx_string("insite_gdpr_journal"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_insite_gdpr_journal_dir,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_main_conf_t, dir),
      NULL },

    { ngx_string("insite_gdpr_fsync"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_main_conf_t, fsync),
      &ngx_http_insite_gdpr_fsync_modes },

    { ngx_string("insite_gdpr_rotate_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_main_conf_t, rotate_size),
      &ngx_http_insite_gdpr_rotate_size_bounds },

    { ngx_string("insite_gdpr_rotate_time"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_insite_gdpr_rotate_time,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_insite_gdpr_main_conf_t, rotate_time),
      NULL },

    { ngx_string("insite_gdpr_pseudonym_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_insite_gdpr_pseudonym_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_insite_gdpr_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_insite_gdpr_postconfiguration, /* postconfiguration */

    ngx_http_insite_gdpr_create_main_conf, /* create main configuration */
    ngx_http_insite_gdpr_init_main_conf,   /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_insite_gdpr_create_loc_conf,  /* create location configuration */
    ngx_http_insite_gdpr_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_insite_gdpr_module = {
    NGX_MODULE_V1,
    &ngx_http_insite_gdpr_module_ctx,      /* module context */
    ngx_http_insite_gdpr_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_insite_gdpr_init_module,      /* init module */
    ngx_http_insite_gdpr_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_insite_gdpr_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_insite_gdpr_precontent_handler(ngx_http_request_t *r)
{
    ngx_str_t                         user;
    ngx_insite_gdpr_journal_t        *j;
    ngx_http_insite_gdpr_loc_conf_t  *lcf;
    ngx_str_t  msg = ngx_string("the audit journal is unavailable; "
                                "audited data cannot be served");

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_gdpr_module);

    if (!lcf->audit || lcf->fail != NGX_INSITE_GDPR_FAIL_CLOSED
        || r != r->main)
    {
        return NGX_DECLINED;
    }

    j = ngx_insite_gdpr_journal();

    if (j != NULL && !j->failed) {
        return NGX_DECLINED;
    }

    if (ngx_http_insite_gdpr_user(r, lcf, &user) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (user.len == 0 && !lcf->anonymous) {
        return NGX_DECLINED;            /* not audited: nothing to refuse */
    }

    if (j) {
        ngx_insite_metric_inc(j->conf->metrics.rejected);
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    (void) ngx_insite_http_add_header(r, "Retry-After", (u_char *) "5", 1);

    ngx_http_set_ctx(r, &ngx_http_insite_gdpr_refused,
                     ngx_http_insite_gdpr_module);

    ngx_http_finalize_request(r, ngx_insite_json_error(r,
                              NGX_HTTP_SERVICE_UNAVAILABLE,
                              "audit_unavailable", &msg));
    return NGX_DONE;
}


/*
 * The record is written when the response header goes out, before any of
 * the body: a client that has its response has its audit record, even if
 * the worker dies right after (the log phase runs after the response, and a
 * kill -9 in between would lose the record of a served request).
 */

static ngx_int_t
ngx_http_insite_gdpr_header_filter(ngx_http_request_t *r)
{
    if (r == r->main) {
        ngx_http_insite_gdpr_audit(r);
    }

    return ngx_http_next_header_filter(r);
}


/* requests that ended without a response header (client gone, 444) */

static ngx_int_t
ngx_http_insite_gdpr_log_handler(ngx_http_request_t *r)
{
    ngx_http_insite_gdpr_audit(r);

    return NGX_OK;
}


static void
ngx_http_insite_gdpr_audit(ngx_http_request_t *r)
{
    u_char                           *rec, *mark;
    size_t                            len;
    ngx_str_t                         user, reason;
    ngx_insite_gdpr_journal_t        *j;
    ngx_http_insite_gdpr_loc_conf_t  *lcf;

    mark = ngx_http_get_module_ctx(r, ngx_http_insite_gdpr_module);

    if (mark == (u_char *) &ngx_http_insite_gdpr_written) {
        return;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_insite_gdpr_module);

    if (!lcf->audit) {
        return;
    }

    j = ngx_insite_gdpr_journal();
    if (j == NULL) {
        return;
    }

    if (ngx_http_insite_gdpr_user(r, lcf, &user) != NGX_OK) {
        user.len = 0;
    }

    if (user.len == 0 && !lcf->anonymous) {
        return;
    }

    ngx_http_set_ctx(r, &ngx_http_insite_gdpr_written,
                     ngx_http_insite_gdpr_module);

    if (mark == (u_char *) &ngx_http_insite_gdpr_refused) {
        ngx_str_set(&reason, "audit_unavailable");

    } else {
        ngx_insite_gdpr_consent_reason(r, &reason);
    }

    rec = ngx_insite_gdpr_record(r, lcf, &user, &reason, j, &len);
    if (rec == NULL) {
        ngx_insite_metric_inc(j->conf->metrics.failed);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "insite gdpr: no memory for an audit record");
        return;
    }

    (void) ngx_insite_gdpr_journal_append(j, rec, len);
}


static ngx_int_t
ngx_http_insite_gdpr_user(ngx_http_request_t *r,
    ngx_http_insite_gdpr_loc_conf_t *lcf, ngx_str_t *user)
{
    if (lcf->user == NULL) {
        return ngx_insite_gdpr_default_user(r, user);
    }

    return ngx_http_complex_value(r, lcf->user, user);
}


static char *
ngx_http_insite_gdpr_journal_dir(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_insite_gdpr_main_conf_t  *mcf = conf;

    ngx_str_t  *value;

    if (mcf->dir.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    mcf->dir = value[1];

    while (mcf->dir.len > 1 && mcf->dir.data[mcf->dir.len - 1] == '/') {
        mcf->dir.len--;
    }

    if (ngx_conf_full_name(cf->cycle, &mcf->dir, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* insite_gdpr_pseudonym_key FILE: read once, at configuration time */

static char *
ngx_http_insite_gdpr_pseudonym_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_insite_gdpr_main_conf_t  *mcf = conf;

    int                  n;
    u_char               key[INSITE_GDPR_PSN_KEY_MAX];
    ngx_str_t           *value, path;
    ngx_pool_cleanup_t  *cln;

    if (mcf->pseudonym_key_file.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* path is NUL-terminated by ngx_conf_full_name() */
    n = insite_gdpr_pseudonym_key_read((char *) path.data, key, sizeof(key));
    if (n < 0) {
        if (ngx_errno == NGX_EINVAL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "insite_gdpr_pseudonym_key \"%V\": at least "
                               "%d bytes of secret", &path,
                               INSITE_GDPR_PSN_KEY_MIN);
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "insite_gdpr_pseudonym_key \"%V\" cannot be "
                               "read", &path);
        }
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_explicit_memzero(key, sizeof(key));
        return NGX_CONF_ERROR;
    }

    /* prepared once: a pseudonym then costs two short digests, or a table
     * lookup for an id seen lately */
    mcf->pseudonym = insite_gdpr_psn_key_new(key, n);
    ngx_explicit_memzero(key, sizeof(key));

    if (mcf->pseudonym == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "insite_gdpr_pseudonym_key \"%V\": OpenSSL "
                           "cannot prepare HMAC-SHA256", &path);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_insite_gdpr_pseudonym_free;
    cln->data = mcf->pseudonym;

    mcf->pseudonym_key_file = path;

    return NGX_CONF_OK;
}


static void
ngx_http_insite_gdpr_pseudonym_free(void *data)
{
    insite_gdpr_psn_key_free(data);
}


static void *
ngx_http_insite_gdpr_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_insite_gdpr_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_insite_gdpr_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /* set by ngx_pcalloc(): dir = { 0, NULL }, used = 0, metrics */

    mcf->fsync = NGX_CONF_UNSET_UINT;
    mcf->rotate_size = NGX_CONF_UNSET;
    mcf->rotate_time = NGX_CONF_UNSET;
    mcf->var_user = NGX_ERROR;
    mcf->var_request_id = NGX_ERROR;
    mcf->var_request_id2 = NGX_ERROR;

    return mcf;
}


static char *
ngx_http_insite_gdpr_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_insite_gdpr_main_conf_t  *mcf = conf;

    if (mcf->dir.data == NULL) {
        ngx_str_set(&mcf->dir, "/var/lib/insite/audit");
    }

    ngx_conf_init_uint_value(mcf->fsync, NGX_INSITE_GDPR_FSYNC_1S);
    ngx_conf_init_value(mcf->rotate_size, 64 * 1024 * 1024);
    ngx_conf_init_value(mcf->rotate_time, 3600);

    return NGX_CONF_OK;
}


static void *
ngx_http_insite_gdpr_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_insite_gdpr_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_insite_gdpr_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->audit = NGX_CONF_UNSET;
    conf->anonymous = NGX_CONF_UNSET;
    conf->query = NGX_CONF_UNSET;
    conf->access_type = NGX_CONF_UNSET_UINT;
    conf->fail = NGX_CONF_UNSET_UINT;
    conf->user = NGX_CONF_UNSET_PTR;
    conf->data_type = NGX_CONF_UNSET_PTR;
    conf->data_subject = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_insite_gdpr_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_insite_gdpr_loc_conf_t *prev = parent;
    ngx_http_insite_gdpr_loc_conf_t *conf = child;

    ngx_http_insite_gdpr_main_conf_t  *mcf;

    ngx_conf_merge_value(conf->audit, prev->audit, 0);
    ngx_conf_merge_value(conf->anonymous, prev->anonymous, 0);
    ngx_conf_merge_value(conf->query, prev->query, 0);
    ngx_conf_merge_uint_value(conf->access_type, prev->access_type,
                              NGX_INSITE_GDPR_ACCESS_AUTO);
    ngx_conf_merge_uint_value(conf->fail, prev->fail,
                              NGX_INSITE_GDPR_FAIL_OPEN);
    ngx_conf_merge_ptr_value(conf->user, prev->user, NULL);
    ngx_conf_merge_ptr_value(conf->data_type, prev->data_type, NULL);
    ngx_conf_merge_ptr_value(conf->data_subject, prev->data_subject, NULL);

    if (conf->audit) {
        mcf = ngx_http_conf_get_module_main_conf(cf,
                                                 ngx_http_insite_gdpr_module);
        mcf->used = 1;
    }

    return NGX_CONF_OK;
}


/*
 * The index of a variable the record reads, resolved once here rather than
 * by name on every audited request.  $insite_user_id and
 * $insite_request_id belong to the gateway module, which need not be
 * loaded: ngx_http_get_variable_index() of an undefined name would fail the
 * configuration ("unknown variable"), so the name is looked for among the
 * defined ones first (all modules' preconfiguration has run by now).
 */
static ngx_int_t
ngx_http_insite_gdpr_variable_index(ngx_conf_t *cf, char *name)
{
    ngx_str_t                   n;
    ngx_uint_t                  i;
    ngx_hash_key_t             *key;
    ngx_http_core_main_conf_t  *cmcf;

    n.data = (u_char *) name;
    n.len = ngx_strlen(name);

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    key = cmcf->variables_keys->keys.elts;

    for (i = 0; i < cmcf->variables_keys->keys.nelts; i++) {
        if (key[i].key.len == n.len
            && ngx_strncmp(key[i].key.data, n.data, n.len) == 0)
        {
            return ngx_http_get_variable_index(cf, &n);
        }
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_insite_gdpr_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt               *h;
    ngx_insite_gdpr_metrics_t         *m;
    ngx_http_core_main_conf_t         *cmcf;
    ngx_http_insite_gdpr_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_insite_gdpr_module);

    /* also without an audited location: insite_gdpr_consent reads them */
    mcf->var_user = ngx_http_insite_gdpr_variable_index(cf, "insite_user_id");
    mcf->var_request_id = ngx_http_insite_gdpr_variable_index(cf,
                                                       "insite_request_id");
    mcf->var_request_id2 = ngx_http_insite_gdpr_variable_index(cf,
                                                               "request_id");

    if (!mcf->used) {
        return NGX_OK;
    }

    if (ngx_http_insite_gdpr_paths(cf, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

#if (NGX_THREADS)
    if (mcf->fsync != NGX_INSITE_GDPR_FSYNC_OFF) {
        mcf->thread_pool = ngx_thread_pool_add(cf, NULL);
        if (mcf->thread_pool == NULL) {
            return NGX_ERROR;
        }
    }
#endif

    m = &mcf->metrics;

    m->records = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                     "insite_gdpr_records_total", NULL,
                     "Audit records written to the journal.");
    m->bytes = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                     "insite_gdpr_journal_bytes_total", NULL,
                     "Bytes written to the audit journal.");
    m->failed = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                     "insite_gdpr_records_failed_total", NULL,
                     "Audit records that could not be written (lost).");
    m->rejected = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                     "insite_gdpr_rejected_total", NULL,
                     "Audited requests refused with 503 "
                     "(insite_gdpr_audit_fail closed).");
    m->errors = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                     "insite_gdpr_journal_errors_total", NULL,
                     "Journal open/write/fsync failures.");
    m->rotations = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                     "insite_gdpr_rotations_total", NULL,
                     "Journal files closed by size or time.");
    m->fsyncs = ngx_insite_metric_add(cf, NGX_INSITE_COUNTER,
                     "insite_gdpr_fsyncs_total", NULL,
                     "fdatasync() calls on the journal.");
    m->writable = ngx_insite_metric_add(cf, NGX_INSITE_GAUGE,
                     "insite_gdpr_journal_writable", NULL,
                     "Workers whose journal is writable.");

    if (m->records == NULL || m->bytes == NULL || m->failed == NULL
        || m->rejected == NULL || m->errors == NULL || m->rotations == NULL
        || m->fsyncs == NULL || m->writable == NULL)
    {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_insite_gdpr_precontent_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_insite_gdpr_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_insite_gdpr_header_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_insite_gdpr_init_process(ngx_cycle_t *cycle)
{
    ngx_http_insite_gdpr_main_conf_t  *mcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_insite_gdpr_module);
    if (mcf == NULL || !mcf->used) {
        return NGX_OK;
    }

    return ngx_insite_gdpr_journal_init(cycle, mcf);
}


static void
ngx_http_insite_gdpr_exit_process(ngx_cycle_t *cycle)
{
    ngx_insite_gdpr_journal_exit(cycle);
}


/*
 * The journal directory is an nginx path (created and chowned by the master)
 * and its state a /healthz check of the core module.
 */
static ngx_int_t
ngx_http_insite_gdpr_paths(ngx_conf_t *cf,
    ngx_http_insite_gdpr_main_conf_t *mcf)
{
    if (ngx_insite_gdpr_dir_add(cf, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_insite_health_add(cf, "audit", ngx_insite_gdpr_health, mcf);
}


/*
 * After the master made the journal directory: nginx -t and a first start
 * fail when the worker user cannot write there.  A reload cannot fail here
 * (init_module errors end the master), so then the workers' fail mode and
 * /healthz take over, after an alert.
 */
static ngx_int_t
ngx_http_insite_gdpr_init_module(ngx_cycle_t *cycle)
{
    ngx_http_insite_gdpr_main_conf_t  *mcf;

    if (ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module)
        == NULL)
    {
        return NGX_OK;                  /* no http block */
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_insite_gdpr_module);
    if (mcf == NULL || !mcf->used) {
        return NGX_OK;
    }

    if (ngx_insite_gdpr_dir_check(cycle, mcf) == NGX_OK) {
        return NGX_OK;
    }

    if (ngx_test_config || ngx_is_init_cycle(cycle->old_cycle)) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                  "insite gdpr: reloaded with an unwritable journal: "
                  "audited requests follow insite_gdpr_audit_fail");
    return NGX_OK;
}


/* insite_gdpr_rotate_time off | 1s..30d */
static char *
ngx_http_insite_gdpr_rotate_time(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_insite_gdpr_main_conf_t  *mcf = conf;

    time_t      t;
    ngx_str_t  *value;

    if (mcf->rotate_time != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        mcf->rotate_time = 0;           /* by size only */
        return NGX_CONF_OK;
    }

    t = ngx_parse_time(&value[1], 1);
    if (t == (time_t) NGX_ERROR || t < 1 || t > 30 * 86400) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\": insite_gdpr_rotate_time "
                           "takes 1s..30d, or \"off\" to rotate by size "
                           "only", &value[1]);
        return NGX_CONF_ERROR;
    }

    mcf->rotate_time = t;

    return NGX_CONF_OK;
}


/* insite_gdpr_rotate_size 4k..16g: a file holds records, not a page of one */
static char *
ngx_http_insite_gdpr_check_rotate_size(ngx_conf_t *cf, void *post, void *data)
{
    off_t      *sp = data;
    ngx_str_t  *value;

    if (*sp >= 4096 && *sp <= (off_t) 16 * 1024 * 1024 * 1024) {
        return NGX_CONF_OK;
    }

    value = cf->args->elts;

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\": insite_gdpr_rotate_size must "
                       "be at least 4k and at most 16g", &value[1]);

    return NGX_CONF_ERROR;
}
