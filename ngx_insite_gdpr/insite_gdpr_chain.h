/*
 * The audit journal's hash chain, shared by the nginx module (writer) and
 * insite-auditd (verifier).  Plain C + OpenSSL, no nginx headers.
 *
 * A journal line is one JSON object written by the module with a fixed tail:
 *
 *     {"id":...,...,"worker":"0","seq":42,"prev_hash":"<64 hex>","hash":"<64 hex>"}\n
 *
 * The "body" of a line is every byte before `,"hash":"`.  Then
 *
 *     hash = hex(SHA-256(prev_hash_hex || body))
 *
 * and prev_hash is the previous record's hash in the same chain (64 zeros
 * for the first record of a chain).  Because the body already contains
 * prev_hash and seq, editing, inserting, reordering or deleting any line
 * breaks the chain at that point.  Verification works on the raw bytes, so
 * no JSON re-serialisation can disagree with the writer.
 */

#ifndef _INSITE_GDPR_CHAIN_H_INCLUDED_
#define _INSITE_GDPR_CHAIN_H_INCLUDED_

#include <stddef.h>
#include <stdint.h>

#define INSITE_GDPR_HASH_LEN   64
#define INSITE_GDPR_GENESIS \
    "0000000000000000000000000000000000000000000000000000000000000000"

/* `,"hash":"` + 64 hex + `"}` */
#define INSITE_GDPR_TAIL_LEN   (9 + INSITE_GDPR_HASH_LEN + 2)

typedef struct {
    uint64_t     seq;
    const char  *prev_hash;     /* 64 hex chars inside the line */
    const char  *hash;          /* 64 hex chars inside the line */
    size_t       body_len;      /* bytes hashed after prev_hash */
} insite_gdpr_line_t;

enum {
    INSITE_GDPR_OK = 0,
    INSITE_GDPR_EFORMAT = -1,   /* not a journal line */
    INSITE_GDPR_EHASH = -2,     /* hash does not match the content */
    INSITE_GDPR_EPREV = -3,     /* prev_hash is not the previous hash */
    INSITE_GDPR_ESEQ = -4       /* seq is not previous seq + 1 */
};

/* out gets 64 lowercase hex chars (not NUL-terminated).  0, or -1 when the
 * digest failed. */
int insite_gdpr_hash(const char *prev_hash, const char *body, size_t len,
    char *out);

/* Finds seq, prev_hash, hash and the body in a line (without its '\n').
 * Checks the layout only. */
int insite_gdpr_line_parse(const char *line, size_t len,
    insite_gdpr_line_t *out);

/* Parses and checks one line against the chain so far: prev is the
 * previous hash (NULL: do not check linkage, e.g. the first line a verifier
 * sees of a chain it joins midway), prev_seq the previous seq.  Returns
 * INSITE_GDPR_OK or the first error found; out is filled when the layout
 * parsed. */
int insite_gdpr_line_check(const char *line, size_t len, const char *prev,
    uint64_t prev_seq, insite_gdpr_line_t *out);

const char *insite_gdpr_strerror(int rc);

#endif /* _INSITE_GDPR_CHAIN_H_INCLUDED_ */
