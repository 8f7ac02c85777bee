/*
 * The per-worker audit journal.
 *
 * Files: <dir>/audit-<chain>-<first seq, 20 digits>.jsonl, one JSON record a
 * line.  <chain> is the worker number ("0", "1", ...) when this worker holds
 * <dir>/audit-<n>.lock (flock, released by the kernel when the process dies,
 * also on kill -9), so a respawned worker continues its predecessor's chain.
 * A worker started while the previous holder of its number still runs (a
 * reload: old workers finish their requests) writes its own chain
 * "<n>.<pid>" instead: one writer per chain, always.
 *
 * At worker start the chain state (last seq and hash) is recovered from the
 * tail of the chain's newest non-empty file; a partial last line (a write
 * cut short by a crash) is truncated, and the records the previous worker
 * left in its ring (below) are appended.  Records then go to a new file
 * named after the next seq (O_APPEND); the file rotates after
 * insite_gdpr_rotate_size bytes or insite_gdpr_rotate_time, and after a
 * failed write (so a repaired disk or directory is picked up).  A record is
 * only in the journal when its whole line was written; a short write is
 * truncated away.
 *
 * The ring (insite_gdpr_ring.h, <dir>/audit-<n>.ring): with fsync off or
 * 1s, a worker holding chain <n> copies each record into a small mapped
 * file before the response leaves, and writes the ring's records to the
 * journal with one write() when it is half full (at the end of that
 * event-loop turn, a posted event) or NGX_INSITE_GDPR_FLUSH_DELAY after the
 * first of them, whichever comes first.  Under load that is one write() per
 * ~70 records, not one per turn (an ext4 append costs a journal handle and
 * an i_size update each time); a quiet worker's record reaches the file
 * within a few milliseconds.  A kill -9 leaves them in the page cache,
 * where the successor's recovery finds them.  When that write fails the
 * ring's records are lost (counted) and the chain goes back to the last
 * record in the journal, as a failed write of one record did before.
 * Without a ring (fsync always, whose promise is a synced record before the
 * response; a chain of its own during a reload; a ring that could not be
 * made) each record is written with a write() of its own.
 */

#include <sys/file.h>
#include <sys/statvfs.h>
#include <grp.h>
#include <pwd.h>

#include "ngx_insite_gdpr.h"


#define NGX_INSITE_GDPR_TAIL_READ   65536

/* a test-only switch (t/406): the ring is not flushed when half full nor
 * by the timers, only when full or at exit; set with `env` in nginx.conf */
#define NGX_INSITE_GDPR_HOLD_ENV    "INSITE_GDPR_TEST_HOLD_RING"

/* the longest a record waits in the ring before its write() (ms) */
#define NGX_INSITE_GDPR_FLUSH_DELAY  5


#if (NGX_THREADS)
typedef struct {
    ngx_insite_gdpr_journal_t  *journal;
    ngx_fd_t                    fd;         /* ours: closed when synced */
    ngx_err_t                   err;
} ngx_insite_gdpr_sync_t;

static ngx_int_t ngx_insite_gdpr_sync_post(ngx_insite_gdpr_journal_t *j,
    ngx_fd_t fd);
static void ngx_insite_gdpr_sync_thread(void *data, ngx_log_t *log);
static void ngx_insite_gdpr_sync_done(ngx_event_t *ev);
#endif
static ngx_insite_gdpr_journal_t  *ngx_insite_gdpr_current;


static ngx_int_t ngx_insite_gdpr_journal_lock(ngx_insite_gdpr_journal_t *j);
static ngx_int_t ngx_insite_gdpr_journal_recover(
    ngx_insite_gdpr_journal_t *j);
static ngx_int_t ngx_insite_gdpr_journal_tail(ngx_insite_gdpr_journal_t *j,
    u_char *path);
static ngx_int_t ngx_insite_gdpr_journal_open(ngx_insite_gdpr_journal_t *j);
static ngx_int_t ngx_insite_gdpr_journal_write(ngx_insite_gdpr_journal_t *j,
    u_char *buf, size_t len, ngx_uint_t records, uint64_t seq,
    const char *hash);
static ngx_int_t ngx_insite_gdpr_journal_flush(ngx_insite_gdpr_journal_t *j,
    ngx_uint_t keep);
static void ngx_insite_gdpr_journal_flush_handler(ngx_event_t *ev);
static ngx_int_t ngx_insite_gdpr_ring_start(ngx_insite_gdpr_journal_t *j);
static void ngx_insite_gdpr_journal_synced(ngx_insite_gdpr_journal_t *j);
static void ngx_insite_gdpr_journal_close(ngx_insite_gdpr_journal_t *j);
static void ngx_insite_gdpr_journal_fail(ngx_insite_gdpr_journal_t *j,
    ngx_err_t err, const char *what);
static void ngx_insite_gdpr_journal_timer(ngx_event_t *ev);
static void ngx_insite_gdpr_journal_own_chain(ngx_insite_gdpr_journal_t *j);
static void ngx_insite_gdpr_journal_adopt(ngx_insite_gdpr_journal_t *j);
static int ngx_libc_cdecl ngx_insite_gdpr_cmp_seq(const void *a,
    const void *b);


ngx_insite_gdpr_journal_t *
ngx_insite_gdpr_journal(void)
{
    return ngx_insite_gdpr_current;
}


ngx_int_t
ngx_insite_gdpr_journal_init(ngx_cycle_t *cycle,
    ngx_http_insite_gdpr_main_conf_t *conf)
{
    ngx_insite_gdpr_journal_t  *j;

    j = ngx_pcalloc(cycle->pool, sizeof(ngx_insite_gdpr_journal_t));
    if (j == NULL) {
        return NGX_ERROR;
    }

    j->conf = conf;
    j->log = cycle->log;
    j->fd = NGX_INVALID_FILE;
#if (NGX_THREADS)
    j->pool = conf->thread_pool;
#endif
    j->lock_fd = NGX_INVALID_FILE;
    j->ring.fd = -1;
    ngx_memcpy(j->hash, INSITE_GDPR_GENESIS, INSITE_GDPR_HASH_LEN);
    ngx_insite_gdpr_journal_synced(j);

    j->flush.handler = ngx_insite_gdpr_journal_flush_handler;
    j->flush.data = j;
    j->flush.log = cycle->log;
    j->flush.cancelable = 1;        /* the exit handler flushes */
    j->hold = (getenv(NGX_INSITE_GDPR_HOLD_ENV) != NULL);

    j->path.data = ngx_pnalloc(cycle->pool, conf->dir.len + NGX_INT_T_LEN * 3
                                            + 64);
    if (j->path.data == NULL) {
        return NGX_ERROR;
    }

    /* the directory: made by the master (ngx_insite_gdpr_dir_add) */

    ngx_insite_gdpr_current = j;

    if (ngx_insite_gdpr_journal_lock(j) != NGX_OK
        || ngx_insite_gdpr_journal_recover(j) != NGX_OK
        || (j->lock_fd != NGX_INVALID_FILE
            && ngx_insite_gdpr_ring_start(j) != NGX_OK))
    {
        /* never guess a position in a chain: start one of our own */
        ngx_insite_gdpr_journal_own_chain(j);
        j->seq = 0;
        ngx_memcpy(j->hash, INSITE_GDPR_GENESIS, INSITE_GDPR_HASH_LEN);
        ngx_insite_gdpr_journal_synced(j);
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "insite gdpr: cannot continue the chain of worker %ui "
                      "in \"%V\": writing chain \"%*s\" from its start",
                      ngx_worker, &conf->dir, j->chain_len, j->chain);
    }

    /* the first file now: an unwritable journal is known before a request */
    ngx_insite_metric_add_value(conf->metrics.writable, 1);

    if (j->fd != NGX_INVALID_FILE || ngx_insite_gdpr_journal_open(j) == NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                      "insite gdpr: chain \"%*s\" continues at seq %uL in "
                      "\"%V\"%s", j->chain_len, j->chain, j->seq + 1,
                      &j->path, j->ring.base ? " (ring)" : "");
    }

    j->timer.handler = ngx_insite_gdpr_journal_timer;
    j->timer.data = j;
    j->timer.log = cycle->log;
    j->timer.cancelable = 1;
    ngx_add_timer(&j->timer, 1000);

    return NGX_OK;
}


void
ngx_insite_gdpr_journal_exit(ngx_cycle_t *cycle)
{
    ngx_insite_gdpr_journal_t  *j = ngx_insite_gdpr_current;

    if (j == NULL) {
        return;
    }

    if (j->flush.posted) {
        ngx_delete_posted_event(&j->flush);
    }

    if (j->flush.timer_set) {
        ngx_del_timer(&j->flush);
    }

    /* what the journal does not take stays for the next worker */
    (void) ngx_insite_gdpr_journal_flush(j, 1);
    insite_gdpr_ring_close(&j->ring);

    ngx_insite_gdpr_journal_close(j);

    if (!j->failed) {
        ngx_insite_metric_add_value(j->conf->metrics.writable, -1);
    }

    if (j->lock_fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(j->lock_fd);
        j->lock_fd = NGX_INVALID_FILE;
    }

    ngx_insite_gdpr_current = NULL;
}


ngx_int_t
ngx_insite_gdpr_journal_append(ngx_insite_gdpr_journal_t *j, u_char *fields,
    size_t len)
{
    u_char                     *p;
    size_t                      body;
    ngx_insite_gdpr_metrics_t  *m = &j->conf->metrics;

    p = ngx_cpymem(fields + len, ",\"seq\":", sizeof(",\"seq\":") - 1);
    p = (u_char *) insite_gdpr_json_uint((char *) p, j->seq + 1);
    p = ngx_cpymem(p, ",\"prev_hash\":\"", sizeof(",\"prev_hash\":\"") - 1);
    p = ngx_cpymem(p, j->hash, INSITE_GDPR_HASH_LEN);
    *p++ = '"';
    body = p - fields;

    p = ngx_cpymem(p, ",\"hash\":\"", sizeof(",\"hash\":\"") - 1);

    if (insite_gdpr_hash(j->hash, (char *) fields, body, (char *) p) != 0) {
        ngx_insite_metric_inc(m->failed);
        ngx_log_error(NGX_LOG_ALERT, j->log, 0, "insite gdpr: SHA-256 failed");
        return NGX_ERROR;
    }

    p += INSITE_GDPR_HASH_LEN;
    *p++ = '"'; *p++ = '}'; *p++ = LF;
    len = p - fields;

    if (j->ring.base == NULL) {
        if (ngx_insite_gdpr_journal_write(j, fields, len, 1, j->seq + 1,
                                          (char *) p - 3 - INSITE_GDPR_HASH_LEN)
            != NGX_OK)
        {
            ngx_insite_metric_inc(m->failed);
            return NGX_ERROR;
        }

        j->seq = j->written_seq;
        ngx_memcpy(j->hash, j->written_hash, INSITE_GDPR_HASH_LEN);
        return NGX_OK;
    }

    if (insite_gdpr_ring_put(&j->ring, (char *) fields, len) != 0) {

        /* the ring is full: its records go now; the record
         * continues the chain after them, so it is lost if they are */
        if (ngx_insite_gdpr_journal_flush(j, 0) != NGX_OK
            || insite_gdpr_ring_put(&j->ring, (char *) fields, len) != 0)
        {
            ngx_insite_metric_inc(m->failed);
            return NGX_ERROR;
        }
    }

    j->seq++;
    ngx_memcpy(j->hash, p - 3 - INSITE_GDPR_HASH_LEN, INSITE_GDPR_HASH_LEN);

    if (j->hold || j->flush.posted) {
        return NGX_OK;
    }

    if (j->ring.used >= j->ring.size / 2) {
        ngx_post_event(&j->flush, &ngx_posted_events);

    } else if (!j->flush.timer_set) {
        ngx_add_timer(&j->flush, NGX_INSITE_GDPR_FLUSH_DELAY);
    }

    return NGX_OK;
}


/*
 * One write() of whole records (one, or a turn's from the ring) ending with
 * seq / hash.  On failure nothing of them stays in the file, the file is
 * closed (the next attempt opens a new one) and the failure is reported.
 */
static ngx_int_t
ngx_insite_gdpr_journal_write(ngx_insite_gdpr_journal_t *j, u_char *buf,
    size_t len, ngx_uint_t records, uint64_t seq, const char *hash)
{
    ssize_t                     n;
    ngx_err_t                   err;
    ngx_insite_gdpr_metrics_t  *m = &j->conf->metrics;

    if (j->fd == NGX_INVALID_FILE && ngx_insite_gdpr_journal_open(j) != NGX_OK)
    {
        return NGX_ERROR;
    }

    n = write(j->fd, buf, len);

    if (n != (ssize_t) len) {
        err = (n == -1) ? ngx_errno : NGX_ENOSPC;

        if (n > 0 && ftruncate(j->fd, j->size) == -1) {
            ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                          "insite gdpr: ftruncate(\"%V\") after a short "
                          "write failed", &j->path);
        }

        ngx_insite_gdpr_journal_close(j);
        ngx_insite_gdpr_journal_fail(j, err, "write");
        return NGX_ERROR;
    }

    j->written_seq = seq;
    ngx_memcpy(j->written_hash, hash, INSITE_GDPR_HASH_LEN);
    j->size += n;
    j->dirty = 1;

    ngx_insite_metric_add_value(m->records, records);
    ngx_insite_metric_add_value(m->bytes, n);

    if (j->failed) {
        j->failed = 0;
        ngx_insite_metric_add_value(m->writable, 1);
        ngx_log_error(NGX_LOG_NOTICE, j->log, 0,
                      "insite gdpr: journal \"%V\" is writable again",
                      &j->path);
    }

    if (j->conf->fsync == NGX_INSITE_GDPR_FSYNC_ALWAYS) {
        if (fdatasync(j->fd) == -1) {
            ngx_insite_gdpr_journal_fail(j, ngx_errno, "fdatasync");
        }
        ngx_insite_metric_inc(m->fsyncs);
        j->dirty = 0;
    }

    if (j->size >= j->conf->rotate_size) {
        ngx_insite_gdpr_journal_close(j);
        ngx_insite_metric_inc(m->rotations);
    }

    return NGX_OK;
}


/*
 * The ring's records to the journal.  When the journal refuses them they
 * are lost (counted) and the chain goes back to the journal's last record;
 * keep (at exit): they stay in the ring for the next worker instead.
 */
static ngx_int_t
ngx_insite_gdpr_journal_flush(ngx_insite_gdpr_journal_t *j, ngx_uint_t keep)
{
    if (j->ring.base == NULL || j->ring.used == 0) {
        return NGX_OK;
    }

    if (ngx_insite_gdpr_journal_write(j, (u_char *) j->ring.base,
                                      j->ring.used, j->ring.records, j->seq,
                                      j->hash)
        == NGX_OK)
    {
        insite_gdpr_ring_clear(&j->ring);
        return NGX_OK;
    }

    if (keep) {
        return NGX_ERROR;
    }

    ngx_insite_metric_add_value(j->conf->metrics.failed, j->ring.records);
    insite_gdpr_ring_clear(&j->ring);

    j->seq = j->written_seq;
    ngx_memcpy(j->hash, j->written_hash, INSITE_GDPR_HASH_LEN);

    return NGX_ERROR;
}


/* the ring half full (posted), or its first record's delay is up (timer) */
static void
ngx_insite_gdpr_journal_flush_handler(ngx_event_t *ev)
{
    ngx_insite_gdpr_journal_t  *j = ev->data;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    if (!j->hold) {
        (void) ngx_insite_gdpr_journal_flush(j, 0);
    }
}


/* the journal and the chain agree: nothing in a ring */
static void
ngx_insite_gdpr_journal_synced(ngx_insite_gdpr_journal_t *j)
{
    j->written_seq = j->seq;
    ngx_memcpy(j->written_hash, j->hash, INSITE_GDPR_HASH_LEN);
}


/*
 * With chain <n> locked and recovered from the journal: the ring
 * <dir>/audit-<n>.ring.  The records a predecessor left in it are appended
 * to the journal first (NGX_ERROR when they cannot be: the caller must not
 * continue this chain, they would be lost between two of its records).
 * Then the ring is kept for fsync off and 1s; without it (fsync always, or
 * no ring file) records are written one by one.
 */
static ngx_int_t
ngx_insite_gdpr_ring_start(ngx_insite_gdpr_journal_t *j)
{
    u_char    *p, name[NGX_MAX_PATH];
    size_t     len, start;
    uint64_t   seq;
    unsigned   records;
    char       hash[INSITE_GDPR_HASH_LEN];

    p = ngx_snprintf(name, NGX_MAX_PATH - 1, "%V/audit-%ui.ring",
                     &j->conf->dir, ngx_worker);
    *p = '\0';

    if (insite_gdpr_ring_open(&j->ring, (char *) name, INSITE_GDPR_RING_SIZE)
        != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                      "insite gdpr: cannot map \"%s\": records left there "
                      "by a killed worker are not recovered, records are "
                      "written one by one", name);
        j->ring.base = NULL;
        return NGX_OK;
    }

    seq = j->seq;
    ngx_memcpy(hash, j->hash, INSITE_GDPR_HASH_LEN);

    len = insite_gdpr_ring_recover(&j->ring, &seq, hash, &records, &start);

    if (len > 0) {
        if (ngx_insite_gdpr_journal_write(j, (u_char *) j->ring.base + start,
                                          len, records, seq, hash)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, j->log, 0,
                          "insite gdpr: %ui records of chain \"%*s\" in "
                          "\"%s\" cannot be appended to the journal",
                          (ngx_uint_t) records, j->chain_len, j->chain, name);
            insite_gdpr_ring_close(&j->ring);
            return NGX_ERROR;
        }

        ngx_log_error(NGX_LOG_NOTICE, j->log, 0,
                      "insite gdpr: %ui records of chain \"%*s\" (seq %uL "
                      "to %uL) recovered from \"%s\"", (ngx_uint_t) records,
                      j->chain_len, j->chain, j->seq + 1, seq, name);

        j->seq = seq;
        ngx_memcpy(j->hash, hash, INSITE_GDPR_HASH_LEN);
    }

    /* every page present and writable before the first request */
    insite_gdpr_ring_touch(&j->ring);

    if (j->conf->fsync == NGX_INSITE_GDPR_FSYNC_ALWAYS) {
        /* a synced record before the response: no ring */
        insite_gdpr_ring_close(&j->ring);
    }

    return NGX_OK;
}


static void
ngx_insite_gdpr_journal_fail(ngx_insite_gdpr_journal_t *j, ngx_err_t err,
    const char *what)
{
    ngx_insite_metric_inc(j->conf->metrics.errors);

    if (j->failed) {
        return;
    }

    j->failed = 1;
    ngx_insite_metric_add_value(j->conf->metrics.writable, -1);

    ngx_log_error(NGX_LOG_ALERT, j->log, err,
                  "insite gdpr: journal \"%V\": %s failed: audit records "
                  "are being lost%s", &j->conf->dir, what,
                  err == NGX_ENOSPC ? " (disk full)" : "");
}


/* flock <dir>/audit-<n>.lock: the chain "<n>" is ours while we live */
static ngx_int_t
ngx_insite_gdpr_journal_lock(ngx_insite_gdpr_journal_t *j)
{
    u_char  *p, name[NGX_MAX_PATH];

    p = ngx_snprintf(name, NGX_MAX_PATH - 1, "%V/audit-%ui.lock",
                     &j->conf->dir, ngx_worker);
    *p = '\0';

    j->lock_fd = ngx_open_file(name, NGX_FILE_RDWR, NGX_FILE_CREATE_OR_OPEN,
                               0640);
    if (j->lock_fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", name);
        return NGX_ERROR;
    }

    if (flock(j->lock_fd, LOCK_EX | LOCK_NB) == 0) {
        p = ngx_sprintf(j->chain, "%ui", ngx_worker);
        j->chain_len = p - j->chain;
        return NGX_OK;
    }

    /* the previous worker with our number is still shutting down */
    ngx_insite_gdpr_journal_own_chain(j);

    ngx_log_error(NGX_LOG_NOTICE, j->log, 0,
                  "insite gdpr: chain %ui is held by a previous worker, "
                  "writing chain \"%*s\"", ngx_worker, j->chain_len,
                  j->chain);

    return NGX_OK;
}


static void
ngx_insite_gdpr_journal_own_chain(ngx_insite_gdpr_journal_t *j)
{
    u_char  *p;

    if (j->lock_fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(j->lock_fd);
        j->lock_fd = NGX_INVALID_FILE;
    }

    p = ngx_sprintf(j->chain, "%ui.%P", ngx_worker, ngx_pid);
    j->chain_len = p - j->chain;
}


/*
 * A worker on a chain of its own ("<n>.<pid>") takes over chain "<n>" as
 * soon as the previous worker with its number has exited: that chain ends.
 */
static void
ngx_insite_gdpr_journal_adopt(ngx_insite_gdpr_journal_t *j)
{
    u_char    *p, name[NGX_MAX_PATH], chain[NGX_INSITE_GDPR_CHAIN_LEN];
    size_t     chain_len;
    uint64_t   seq;
    ngx_fd_t   fd;
    char       hash[INSITE_GDPR_HASH_LEN];

    p = ngx_snprintf(name, NGX_MAX_PATH - 1, "%V/audit-%ui.lock",
                     &j->conf->dir, ngx_worker);
    *p = '\0';

    fd = ngx_open_file(name, NGX_FILE_RDWR, NGX_FILE_CREATE_OR_OPEN, 0640);
    if (fd == NGX_INVALID_FILE) {
        return;
    }

    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        (void) ngx_close_file(fd);
        return;
    }

    /* recover chain "<n>" with our own state set aside */
    ngx_memcpy(chain, j->chain, j->chain_len);
    chain_len = j->chain_len;
    seq = j->seq;
    ngx_memcpy(hash, j->hash, INSITE_GDPR_HASH_LEN);

    p = ngx_sprintf(j->chain, "%ui", ngx_worker);
    j->chain_len = p - j->chain;
    j->seq = 0;
    ngx_memcpy(j->hash, INSITE_GDPR_GENESIS, INSITE_GDPR_HASH_LEN);
    ngx_insite_gdpr_journal_synced(j);

    if (ngx_insite_gdpr_journal_recover(j) != NGX_OK) {
        goto restore;
    }

    /* our own chain's file ends (it has no ring: nothing pending) */
    ngx_insite_gdpr_journal_close(j);

    if (ngx_insite_gdpr_ring_start(j) != NGX_OK) {
        goto restore;
    }

    j->lock_fd = fd;

    ngx_log_error(NGX_LOG_NOTICE, j->log, 0,
                  "insite gdpr: chain \"%*s\" ends at seq %uL, chain "
                  "\"%*s\" continues at seq %uL", chain_len, chain, seq,
                  j->chain_len, j->chain, j->seq + 1);

    if (j->fd == NGX_INVALID_FILE) {
        (void) ngx_insite_gdpr_journal_open(j);
    }

    return;

restore:

    ngx_memcpy(j->chain, chain, chain_len);
    j->chain_len = chain_len;
    j->seq = seq;
    ngx_memcpy(j->hash, hash, INSITE_GDPR_HASH_LEN);
    ngx_insite_gdpr_journal_synced(j);
    (void) ngx_close_file(fd);
}


/* the last record of the chain, from the newest non-empty file */
static ngx_int_t
ngx_insite_gdpr_journal_recover(ngx_insite_gdpr_journal_t *j)
{
    u_char        *p, prefix[NGX_INSITE_GDPR_CHAIN_LEN + 8];
    u_char         path[NGX_MAX_PATH];
    size_t         plen, nlen;
    uint64_t       seq, *seqs;
    ngx_int_t      rc;
    ngx_uint_t     n, i, k, cap;
    ngx_dir_t      dir;
    ngx_str_t      d;

    p = ngx_sprintf(prefix, "audit-%*s-", j->chain_len, j->chain);
    plen = p - prefix;

    d.len = j->conf->dir.len;
    d.data = path;
    p = ngx_snprintf(path, NGX_MAX_PATH - 1, "%V", &j->conf->dir);
    *p = '\0';

    if (ngx_open_dir(&d, &dir) == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                      ngx_open_dir_n " \"%V\" failed", &j->conf->dir);
        return NGX_ERROR;
    }

    cap = 64;
    n = 0;
    seqs = ngx_alloc(cap * sizeof(uint64_t), j->log);
    if (seqs == NULL) {
        (void) ngx_close_dir(&dir);
        return NGX_ERROR;
    }

    for ( ;; ) {
        ngx_set_errno(0);

        if (ngx_read_dir(&dir) == NGX_ERROR) {
            break;
        }

        nlen = ngx_de_namelen(&dir);
        p = ngx_de_name(&dir);

        if (nlen != plen + 20 + 6
            || ngx_strncmp(p, prefix, plen) != 0
            || ngx_strncmp(p + plen + 20, ".jsonl", 6) != 0)
        {
            continue;
        }

        for (seq = 0, k = 0; k < 20; k++) {
            if (p[plen + k] < '0' || p[plen + k] > '9') {
                break;
            }
            seq = seq * 10 + (p[plen + k] - '0');
        }

        if (k != 20) {
            continue;
        }

        if (n == cap) {
            uint64_t  *ns = ngx_alloc(2 * cap * sizeof(uint64_t), j->log);
            if (ns == NULL) {
                break;
            }
            ngx_memcpy(ns, seqs, n * sizeof(uint64_t));
            ngx_free(seqs);
            seqs = ns;
            cap *= 2;
        }

        seqs[n++] = seq;
    }

    (void) ngx_close_dir(&dir);

    ngx_qsort(seqs, n, sizeof(uint64_t), ngx_insite_gdpr_cmp_seq);

    rc = NGX_OK;

    /* newest first; an empty file (a worker that wrote nothing) is skipped */
    for (i = n; i > 0; i--) {
        p = ngx_snprintf(path, NGX_MAX_PATH - 1, "%V/%*s%020uL.jsonl",
                         &j->conf->dir, plen, prefix, seqs[i - 1]);
        *p = '\0';

        rc = ngx_insite_gdpr_journal_tail(j, path);
        if (rc != NGX_DECLINED) {
            break;
        }

        rc = NGX_OK;
    }

    ngx_free(seqs);

    return rc == NGX_DECLINED ? NGX_OK : rc;
}


static int ngx_libc_cdecl
ngx_insite_gdpr_cmp_seq(const void *a, const void *b)
{
    uint64_t  x = *(const uint64_t *) a, y = *(const uint64_t *) b;

    return (x > y) - (x < y);
}


/* NGX_OK: state recovered; NGX_DECLINED: no complete record in the file */
static ngx_int_t
ngx_insite_gdpr_journal_tail(ngx_insite_gdpr_journal_t *j, u_char *path)
{
    u_char              *buf, *end, *nl, *start;
    off_t                off, keep;
    ssize_t              n;
    ngx_fd_t             fd;
    ngx_int_t            rc;
    ngx_file_info_t      fi;
    insite_gdpr_line_t   line;

    fd = ngx_open_file(path, NGX_FILE_RDWR, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", path);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    if (ngx_file_size(&fi) == 0) {
        (void) ngx_close_file(fd);
        return NGX_DECLINED;
    }

    buf = ngx_alloc(NGX_INSITE_GDPR_TAIL_READ, j->log);
    if (buf == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    off = ngx_max(0, ngx_file_size(&fi) - NGX_INSITE_GDPR_TAIL_READ);
    n = pread(fd, buf, ngx_file_size(&fi) - off, off);

    rc = NGX_DECLINED;

    if (n <= 0) {
        rc = NGX_ERROR;
        goto done;
    }

    end = buf + n;

    /* a partial last line: a write cut short by a crash */
    nl = end;
    while (nl > buf && nl[-1] != LF) {
        nl--;
    }

    if (nl != end) {
        keep = off + (nl - buf);
        ngx_log_error(NGX_LOG_ERR, j->log, 0,
                      "insite gdpr: \"%s\" ends in a partial record "
                      "(%O bytes): truncated", path,
                      (off_t) (end - nl));
        if (ftruncate(fd, keep) == -1) {
            ngx_log_error(NGX_LOG_ALERT, j->log, ngx_errno,
                          "ftruncate(\"%s\") failed", path);
            rc = NGX_ERROR;
            goto done;
        }
        end = nl;
    }

    if (end == buf) {
        goto done;          /* no complete line in this window or file */
    }

    /* the last line: between the previous LF and end - 1 */
    for (start = end - 1; start > buf && start[-1] != LF; start--) {
        /* void */
    }

    if (insite_gdpr_line_parse((char *) start, end - 1 - start, &line)
        != INSITE_GDPR_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, j->log, 0,
                      "insite gdpr: the last record of \"%s\" is not a "
                      "journal record", path);
        rc = NGX_ERROR;
        goto done;
    }

    j->seq = line.seq;
    ngx_memcpy(j->hash, line.hash, INSITE_GDPR_HASH_LEN);
    ngx_insite_gdpr_journal_synced(j);
    rc = NGX_OK;

done:

    ngx_free(buf);
    (void) ngx_close_file(fd);

    return rc;
}


static ngx_int_t
ngx_insite_gdpr_journal_open(ngx_insite_gdpr_journal_t *j)
{
    u_char  *p;

    p = ngx_sprintf(j->path.data, "%V/audit-%*s-%020uL.jsonl",
                    &j->conf->dir, j->chain_len, j->chain,
                    j->written_seq + 1);
    j->path.len = p - j->path.data;
    *p = '\0';

    j->fd = open((char *) j->path.data,
                 O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

    if (j->fd == NGX_INVALID_FILE) {
        ngx_insite_gdpr_journal_fail(j, ngx_errno, "open");
        return NGX_ERROR;
    }

    j->size = lseek(j->fd, 0, SEEK_END);
    if (j->size == -1) {
        j->size = 0;
    }

    j->opened = ngx_time();

    return NGX_OK;
}


static void
ngx_insite_gdpr_journal_close(ngx_insite_gdpr_journal_t *j)
{
    if (j->fd == NGX_INVALID_FILE) {
        return;
    }

    if (j->dirty && j->conf->fsync != NGX_INSITE_GDPR_FSYNC_OFF) {
#if (NGX_THREADS)
        /* the task syncs and closes the finished file */
        if (!ngx_exiting && ngx_insite_gdpr_sync_post(j, j->fd) == NGX_OK) {
            j->fd = NGX_INVALID_FILE;
            j->dirty = 0;
            return;
        }
#endif
        (void) fdatasync(j->fd);
        ngx_insite_metric_inc(j->conf->metrics.fsyncs);
    }

    (void) ngx_close_file(j->fd);
    j->fd = NGX_INVALID_FILE;
    j->dirty = 0;
}


static void
ngx_insite_gdpr_journal_timer(ngx_event_t *ev)
{
    ngx_insite_gdpr_journal_t  *j = ev->data;

    if (j->lock_fd == NGX_INVALID_FILE && !ngx_exiting) {
        ngx_insite_gdpr_journal_adopt(j);
    }

    /* the ring's records into the file about to be synced or rotated */
    if (!j->hold) {
        (void) ngx_insite_gdpr_journal_flush(j, 0);
    }

    if (j->fd != NGX_INVALID_FILE) {

        if (j->dirty && j->conf->fsync == NGX_INSITE_GDPR_FSYNC_1S) {
#if (NGX_THREADS)
            /* a duplicate descriptor: rotation may close ours meanwhile */
            if (ngx_insite_gdpr_sync_post(j, dup(j->fd)) == NGX_OK) {
                j->dirty = 0;
                goto rotate;
            }
#endif
            if (fdatasync(j->fd) == -1) {
                ngx_insite_gdpr_journal_fail(j, ngx_errno, "fdatasync");
            }
            ngx_insite_metric_inc(j->conf->metrics.fsyncs);
            j->dirty = 0;
        }

#if (NGX_THREADS)
    rotate:
#endif


        if (j->conf->rotate_time
            && j->size > 0
            && ngx_time() - j->opened >= j->conf->rotate_time)
        {
            ngx_insite_gdpr_journal_close(j);
            ngx_insite_metric_inc(j->conf->metrics.rotations);
        }
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, 1000);
    }
}


#if (NGX_THREADS)

/*
 * fdatasync() waits for the disk: in a worker's event loop that would stall
 * every connection of the worker, so it runs on nginx's thread pool (the
 * "default" pool; size it with `thread_pool default threads=N;`).  One sync
 * at a time: while one runs, the next second's is skipped, the data stays
 * dirty and is synced next time.  Without a task the sync runs inline.
 */

static ngx_int_t
ngx_insite_gdpr_sync_post(ngx_insite_gdpr_journal_t *j, ngx_fd_t fd)
{
    ngx_insite_gdpr_sync_t  *ctx;

    if (fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    if (j->pool == NULL || j->syncing) {
        if (fd != j->fd) {
            (void) ngx_close_file(fd);
        }
        return NGX_DECLINED;
    }

    if (j->sync_task == NULL) {
        j->sync_task = ngx_thread_task_alloc(ngx_cycle->pool,
                                             sizeof(ngx_insite_gdpr_sync_t));
        if (j->sync_task == NULL) {
            if (fd != j->fd) {
                (void) ngx_close_file(fd);
            }
            return NGX_ERROR;
        }

        j->sync_task->handler = ngx_insite_gdpr_sync_thread;
        j->sync_task->event.handler = ngx_insite_gdpr_sync_done;
        j->sync_task->event.data = j->sync_task->ctx;
        j->sync_task->event.log = j->log;
    }

    ctx = j->sync_task->ctx;
    ctx->journal = j;
    ctx->fd = fd;
    ctx->err = 0;

    if (ngx_thread_task_post(j->pool, j->sync_task) != NGX_OK) {
        if (fd != j->fd) {
            (void) ngx_close_file(fd);
        }
        return NGX_ERROR;
    }

    j->syncing = 1;

    return NGX_OK;
}


static void
ngx_insite_gdpr_sync_thread(void *data, ngx_log_t *log)
{
    ngx_insite_gdpr_sync_t  *ctx = data;

    if (fdatasync(ctx->fd) == -1) {
        ctx->err = ngx_errno;
    }

    (void) close(ctx->fd);
}


static void
ngx_insite_gdpr_sync_done(ngx_event_t *ev)
{
    ngx_insite_gdpr_sync_t     *ctx = ev->data;
    ngx_insite_gdpr_journal_t  *j = ctx->journal;

    j->syncing = 0;
    ngx_insite_metric_inc(j->conf->metrics.fsyncs);

    if (ctx->err) {
        ngx_insite_gdpr_journal_fail(j, ctx->err, "fdatasync");
    }
}

#endif


/*
 * The journal directory, owned the way nginx owns its temp paths: it is an
 * nginx path (cycle->paths), so at every start and reload the master creates
 * it (mode 0700) and chowns it to the `user` of the workers before they are
 * forked (ngx_create_paths()).  Missing parent directories are created here
 * (0755), since ngx_create_paths() makes the last component only.
 */
ngx_int_t
ngx_insite_gdpr_dir_add(ngx_conf_t *cf, ngx_http_insite_gdpr_main_conf_t *mcf)
{
    u_char      *parent, *p;
    ngx_path_t  *path;

    path = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
    if (path == NULL) {
        return NGX_ERROR;
    }

    /* NUL-terminated: ngx_create_paths() passes it to mkdir() */
    path->name.len = mcf->dir.len;
    path->name.data = ngx_pnalloc(cf->pool, mcf->dir.len + 1);
    if (path->name.data == NULL) {
        return NGX_ERROR;
    }
    ngx_cpystrn(path->name.data, mcf->dir.data, mcf->dir.len + 1);

    path->data = &ngx_http_insite_gdpr_module;  /* other users: an error */
    path->conf_file = cf->conf_file->file.name.data;
    path->line = cf->conf_file->line;

    parent = ngx_pstrdup(cf->pool, &path->name);
    if (parent == NULL) {
        return NGX_ERROR;
    }

    p = parent + path->name.len;
    while (p > parent && p[-1] != '/') {
        p--;
    }

    if (p > parent + 1) {
        *p = '\0';                      /* "/var/lib/insite/" */

        /* a failure is reported by ngx_create_paths()' own mkdir() */
        (void) ngx_create_full_path(parent, 0755);
    }

    return ngx_add_path(cf, &path);
}


/* whether uid/gid (and its supplementary groups) may `want` on st */
static ngx_uint_t
ngx_insite_gdpr_may(ngx_file_info_t *st, ngx_uid_t uid, gid_t *groups,
    int ngroups, mode_t want)
{
    int     i;
    mode_t  mode;

    if (uid == 0) {
        return 1;
    }

    if (st->st_uid == uid) {
        mode = (st->st_mode >> 6) & 7;

    } else {
        mode = st->st_mode & 7;

        for (i = 0; i < ngroups; i++) {
            if (st->st_gid == groups[i]) {
                mode = (st->st_mode >> 3) & 7;
                break;
            }
        }
    }

    return (mode & want) == want;
}


/*
 * In the master, after ngx_create_paths(): can the worker user create files
 * in the directory?  Root's access(2) says yes to everything, so for a root
 * master the permission bits of the directory and of every parent (search)
 * are checked against the worker's uid and groups; a read-only file system
 * is checked for everyone.
 */
ngx_int_t
ngx_insite_gdpr_dir_check(ngx_cycle_t *cycle,
    ngx_http_insite_gdpr_main_conf_t *mcf)
{
    u_char           *p, *name;
    int               ngroups;
    gid_t             groups[64];
    ngx_uid_t         uid;
    struct passwd    *pw;
    struct statvfs    vfs;
    ngx_file_info_t   fi;
    ngx_core_conf_t  *ccf;

    name = ngx_pnalloc(cycle->pool, mcf->dir.len + 1);
    if (name == NULL) {
        return NGX_ERROR;
    }
    ngx_cpystrn(name, mcf->dir.data, mcf->dir.len + 1);

    if (ngx_file_info(name, &fi) == NGX_FILE_ERROR || !ngx_is_dir(&fi)) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "insite gdpr: journal \"%s\" is not a directory", name);
        return NGX_ERROR;
    }

    if (statvfs((char *) name, &vfs) == 0 && (vfs.f_flag & ST_RDONLY)) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "insite gdpr: journal \"%s\" is on a read-only file "
                      "system", name);
        return NGX_ERROR;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (geteuid() != 0 || ccf->user == (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        /* the workers run as we do */
        if (access((char *) name, W_OK|X_OK) == -1) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                          "insite gdpr: journal \"%s\" is not writable", name);
            return NGX_ERROR;
        }
        return NGX_OK;
    }

    uid = ccf->user;
    groups[0] = ccf->group;
    ngroups = 1;

    pw = getpwuid(uid);
    if (pw != NULL) {
        ngroups = 64;
        if (getgrouplist(pw->pw_name, ccf->group, groups, &ngroups) == -1) {
            groups[0] = ccf->group;
            ngroups = 1;
        }
    }

    if (!ngx_insite_gdpr_may(&fi, uid, groups, ngroups, 3)) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "insite gdpr: journal \"%s\" is not writable by the "
                      "worker user (uid %d)", name, uid);
        return NGX_ERROR;
    }

    /* every parent must be searchable by the worker user */
    for (p = name + ngx_strlen(name); p > name; p--) {
        if (*p != '/') {
            continue;
        }

        *p = '\0';
        if (ngx_file_info(name, &fi) == NGX_FILE_ERROR
            || !ngx_insite_gdpr_may(&fi, uid, groups, ngroups, 1))
        {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "insite gdpr: journal \"%V\": the worker user "
                          "(uid %d) cannot enter \"%s\"", &mcf->dir, uid,
                          name);
            return NGX_ERROR;
        }
        *p = '/';
    }

    if (ngx_file_info((u_char *) "/", &fi) != NGX_FILE_ERROR
        && !ngx_insite_gdpr_may(&fi, uid, groups, ngroups, 1))
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "insite gdpr: journal \"%V\": the worker user cannot "
                      "enter \"/\"", &mcf->dir);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* insite_healthz: "audit":"ok" | "unwritable" in the worker that answers */
ngx_int_t
ngx_insite_gdpr_health(ngx_cycle_t *cycle, void *data, const char **state)
{
    u_char                            name[NGX_MAX_PATH];
    ngx_insite_gdpr_journal_t        *j;
    ngx_http_insite_gdpr_main_conf_t *mcf = data;

    j = ngx_insite_gdpr_current;

    /* a failed write, or the directory lost to us (permissions, removed):
     * the open file would still take records, the next rotation would not */
    if (j == NULL || j->failed || mcf->dir.len >= NGX_MAX_PATH) {
        *state = "unwritable";
        return NGX_DECLINED;
    }

    ngx_cpystrn(name, mcf->dir.data, mcf->dir.len + 1);

    if (access((char *) name, W_OK|X_OK) == -1) {
        *state = "unwritable";
        return NGX_DECLINED;
    }

    *state = "ok";
    return NGX_OK;
}
