/*
 * The audit ring (insite_gdpr_ring.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "insite_gdpr_ring.h"


int
insite_gdpr_ring_open(insite_gdpr_ring_t *ring, const char *path,
    size_t size)
{
    int          fd, err;
    void        *base;
    struct stat  st;

    ring->fd = -1;
    ring->base = NULL;
    ring->size = 0;
    ring->used = 0;
    ring->records = 0;

    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd == -1) {
        return -1;
    }

    if (fstat(fd, &st) == -1) {
        goto failed;
    }

    /* blocks for every byte, so that no store into the mapping can fault
     * on a full disk (SIGBUS); a file already that long keeps its content */
    if ((size_t) st.st_size < size) {
        err = posix_fallocate(fd, 0, (off_t) size);
        if (err != 0) {
            errno = err;
            goto failed;
        }
    }

    base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        goto failed;
    }

    ring->fd = fd;
    ring->base = base;
    ring->size = size;

    return 0;

failed:

    err = errno;
    (void) close(fd);
    errno = err;

    return -1;
}


size_t
insite_gdpr_ring_recover(const insite_gdpr_ring_t *ring, uint64_t *seq,
    char *hash, unsigned *records, size_t *start)
{
    char                *p, *end, *nl, *first;
    const char          *prev;
    uint64_t             prev_seq;
    insite_gdpr_line_t   line;

    p = ring->base;
    end = ring->base + ring->size;
    first = NULL;
    prev = NULL;                /* the first line: its own hash only */
    prev_seq = 0;
    *records = 0;
    *start = 0;

    while (p < end) {
        nl = memchr(p, '\n', end - p);
        if (nl == NULL) {
            break;
        }

        if (insite_gdpr_line_check(p, nl - p, prev, prev_seq, &line)
            != INSITE_GDPR_OK)
        {
            break;
        }

        if (first == NULL) {
            if (line.seq == *seq + 1
                && memcmp(line.prev_hash, hash, INSITE_GDPR_HASH_LEN) == 0)
            {
                first = p;

            } else if (line.seq > *seq) {
                break;          /* does not continue the journal */
            }

            /* else already in the journal (a flush cut short) */
        }

        if (first != NULL) {
            *seq = line.seq;
            memcpy(hash, line.hash, INSITE_GDPR_HASH_LEN);
            (*records)++;
        }

        prev = line.hash;
        prev_seq = line.seq;
        p = nl + 1;
    }

    if (first == NULL) {
        return 0;
    }

    *start = first - ring->base;

    return p - first;
}


void
insite_gdpr_ring_touch(insite_gdpr_ring_t *ring)
{
    memset(ring->base, 0, ring->size);
    ring->used = 0;
    ring->records = 0;
}


int
insite_gdpr_ring_put(insite_gdpr_ring_t *ring, const char *line, size_t len)
{
    if (len > ring->size - ring->used) {
        return -1;
    }

    memcpy(ring->base + ring->used, line, len);
    ring->used += len;
    ring->records++;

    return 0;
}


void
insite_gdpr_ring_clear(insite_gdpr_ring_t *ring)
{
    ring->base[0] = '\0';
    ring->used = 0;
    ring->records = 0;
}


void
insite_gdpr_ring_close(insite_gdpr_ring_t *ring)
{
    if (ring->base != NULL) {
        (void) munmap(ring->base, ring->size);
        ring->base = NULL;
    }

    if (ring->fd != -1) {
        (void) close(ring->fd);
        ring->fd = -1;
    }
}
