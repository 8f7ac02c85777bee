/*
 * ngx_http_insite_gdpr_module: what its files share.
 *
 *   ngx_http_insite_gdpr_module.c  directives, configuration, phase handlers
 *   ngx_insite_gdpr_record.c       one request -> the fields of one record
 *   ngx_insite_gdpr_journal.c      the per-worker append-only journal
 *   insite_gdpr_ring.c             records between response and journal
 *   insite_gdpr_chain.c            the hash chain (shared with insite-auditd)
 *   insite_gdpr_json.c             a record's strings as JSON, valid UTF-8
 *   insite_gdpr_fields.c           a line's members without a JSON library
 *                                  (insite-auditd only; not in the module)
 */

#ifndef _NGX_INSITE_GDPR_H_INCLUDED_
#define _NGX_INSITE_GDPR_H_INCLUDED_


#include "ngx_insite_core.h"

#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif
#include "insite_gdpr_chain.h"
#include "insite_gdpr_json.h"
#include "insite_gdpr_pseudonym.h"
#include "insite_gdpr_ring.h"


#define NGX_INSITE_GDPR_FSYNC_OFF     0
#define NGX_INSITE_GDPR_FSYNC_1S      1
#define NGX_INSITE_GDPR_FSYNC_ALWAYS  2

#define NGX_INSITE_GDPR_ACCESS_AUTO    0
#define NGX_INSITE_GDPR_ACCESS_READ    1
#define NGX_INSITE_GDPR_ACCESS_WRITE   2
#define NGX_INSITE_GDPR_ACCESS_DELETE  3
#define NGX_INSITE_GDPR_ACCESS_EXPORT  4
#define NGX_INSITE_GDPR_ACCESS_OTHER   5    /* auto: a method not listed */

#define NGX_INSITE_GDPR_FAIL_OPEN     0
#define NGX_INSITE_GDPR_FAIL_CLOSED   1

/* the chain name: "<worker>" or "<worker>.<pid>" */
#define NGX_INSITE_GDPR_CHAIN_LEN     (NGX_INT_T_LEN * 2 + 2)


typedef struct {
    ngx_insite_metric_t   *records;
    ngx_insite_metric_t   *bytes;
    ngx_insite_metric_t   *failed;
    ngx_insite_metric_t   *rejected;
    ngx_insite_metric_t   *errors;
    ngx_insite_metric_t   *rotations;
    ngx_insite_metric_t   *fsyncs;
    ngx_insite_metric_t   *writable;
} ngx_insite_gdpr_metrics_t;


typedef struct {
    ngx_str_t                   dir;
    ngx_uint_t                  fsync;
    off_t                       rotate_size;
    time_t                      rotate_time;
    ngx_flag_t                  used;       /* some location audits */
    ngx_str_t                   pseudonym_key_file;  /* empty: clear ids */
    insite_gdpr_psn_key_t      *pseudonym;  /* the key, prepared */
    ngx_insite_gdpr_metrics_t   metrics;
    /* indexes of $insite_user_id, $insite_request_id and $request_id,
     * NGX_ERROR where no loaded module defines one (postconfiguration) */
    ngx_int_t                   var_user;
    ngx_int_t                   var_request_id;
    ngx_int_t                   var_request_id2;
#if (NGX_THREADS)
    ngx_thread_pool_t          *thread_pool;  /* fdatasync() off the loop */
#endif
} ngx_http_insite_gdpr_main_conf_t;


typedef struct {
    ngx_flag_t                  audit;
    ngx_flag_t                  anonymous;
    ngx_flag_t                  query;
    ngx_uint_t                  access_type;
    ngx_uint_t                  fail;
    ngx_http_complex_value_t   *user;       /* NULL: $insite_user_id */
    ngx_http_complex_value_t   *data_type;  /* NULL: the location's name */
    ngx_http_complex_value_t   *data_subject;  /* NULL: the user */
} ngx_http_insite_gdpr_loc_conf_t;


/* one per worker */
typedef struct {
    ngx_http_insite_gdpr_main_conf_t  *conf;
    ngx_log_t                         *log;

    u_char                             chain[NGX_INSITE_GDPR_CHAIN_LEN];
    size_t                             chain_len;
    ngx_fd_t                           lock_fd;

    ngx_fd_t                           fd;
    ngx_str_t                          path;       /* current file */
    off_t                              size;
    time_t                             opened;

    /* the chain's last record: in the journal, or in the ring */
    uint64_t                           seq;
    char                               hash[INSITE_GDPR_HASH_LEN];

    /* the last record in the journal (the same without a ring) */
    uint64_t                           written_seq;
    char                               written_hash[INSITE_GDPR_HASH_LEN];

    /* records between the response and the journal; base NULL: none,
     * each record is written on its own (fsync always, a chain of its
     * own, or no ring file) */
    insite_gdpr_ring_t                 ring;
    ngx_event_t                        flush;      /* posted: end of turn */

    unsigned                           failed:1;   /* journal unwritable */
    unsigned                           dirty:1;    /* written, not synced */
    unsigned                           hold:1;     /* tests: no flush */

    ngx_event_t                        timer;

#if (NGX_THREADS)
    /* fdatasync() off the event loop: one task, one file at a time */
    ngx_thread_pool_t                 *pool;
    ngx_thread_task_t                 *sync_task;
    unsigned                           syncing:1;
#endif
} ngx_insite_gdpr_journal_t;


extern ngx_module_t  ngx_http_insite_gdpr_module;


/* the journal of this worker, or NULL when auditing is off */
ngx_insite_gdpr_journal_t *ngx_insite_gdpr_journal(void);

ngx_int_t ngx_insite_gdpr_journal_init(ngx_cycle_t *cycle,
    ngx_http_insite_gdpr_main_conf_t *conf);
void ngx_insite_gdpr_journal_exit(ngx_cycle_t *cycle);

/* Appends one record: fields is `{"id":...,"worker":"..."` without the
 * closing brace, in a buffer with NGX_INSITE_GDPR_TAIL_ROOM bytes to spare
 * after it; the journal adds seq, prev_hash and hash.  NGX_OK or NGX_ERROR
 * (counted and logged on a state change). */
ngx_int_t ngx_insite_gdpr_journal_append(ngx_insite_gdpr_journal_t *j,
    u_char *fields, size_t len);

#define NGX_INSITE_GDPR_TAIL_ROOM                                            \
    (sizeof(",\"seq\":,\"prev_hash\":\"\"") - 1 + NGX_INT64_LEN              \
     + INSITE_GDPR_HASH_LEN + INSITE_GDPR_TAIL_LEN + 1)

/* The record of r up to the worker field, in r's pool; NULL on error.
 * reason: why the edge refused the request (empty: it did not). */
u_char *ngx_insite_gdpr_record(ngx_http_request_t *r,
    ngx_http_insite_gdpr_loc_conf_t *lcf, ngx_str_t *user,
    ngx_str_t *reason, ngx_insite_gdpr_journal_t *j, size_t *len);

/* The record's "reason" when insite_gdpr_consent refused r:
 * "consent_required" (403) or "consent_unavailable" (503, fail closed);
 * empty otherwise (ngx_http_insite_gdpr_consent_module.c). */
void ngx_insite_gdpr_consent_reason(ngx_http_request_t *r, ngx_str_t *reason);

/* Journal directory checks (ngx_insite_gdpr_journal.c).  The directory is
 * registered as an nginx path, so the master creates it and chowns it to the
 * worker user at every (re)start like a temp path; dir_check then tells
 * whether the worker user can write there (nginx -t and start fail when
 * not), and the health check reports it per worker at /healthz. */
ngx_int_t ngx_insite_gdpr_dir_add(ngx_conf_t *cf,
    ngx_http_insite_gdpr_main_conf_t *mcf);
ngx_int_t ngx_insite_gdpr_dir_check(ngx_cycle_t *cycle,
    ngx_http_insite_gdpr_main_conf_t *mcf);
ngx_int_t ngx_insite_gdpr_health(ngx_cycle_t *cycle, void *data,
    const char **state);

/* $insite_user_id when a module defines it and it is set, else empty */
ngx_int_t ngx_insite_gdpr_default_user(ngx_http_request_t *r,
    ngx_str_t *user);

/* $insite_request_id (the gateway's: the client's X-Request-ID or a new
 * one), else nginx's $request_id, else empty.  Both read by index, as the
 * audit record and the consent module's log do. */
void ngx_insite_gdpr_request_id(ngx_http_request_t *r, ngx_str_t *id);


#endif /* _NGX_INSITE_GDPR_H_INCLUDED_ */
