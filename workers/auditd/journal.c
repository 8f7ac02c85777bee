/* The files of a journal directory: audit-<chain>-<first seq>.jsonl. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "auditd.h"

int auditd_parse_name(const char *name, auditd_file *f)
{
    size_t n = strlen(name);
    const char *dash;

    if (n < 6 + 1 + 1 + 20 + 6 || n >= sizeof(f->name) || strncmp(name, "audit-", 6) != 0
        || strcmp(name + n - 6, ".jsonl") != 0)
        return -1;
    dash = name + n - 6 - 20 - 1;
    if (*dash != '-' || dash - (name + 6) < 1 || (size_t)(dash - (name + 6)) >= sizeof(f->chain))
        return -1;
    f->first_seq = 0;
    for (const char *p = dash + 1; p < name + n - 6; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        f->first_seq = f->first_seq * 10 + (uint64_t)(*p - '0');
    }
    for (const char *p = name + 6; p < dash; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '.'))
            return -1;
    memcpy(f->chain, name + 6, (size_t)(dash - (name + 6)));
    f->chain[dash - (name + 6)] = '\0';
    memcpy(f->name, name, n + 1);
    return 0;
}

static int cmp_file(const void *a, const void *b)
{
    const auditd_file *x = a, *y = b;
    int c = strcmp(x->chain, y->chain);
    if (c)
        return c;
    return (x->first_seq > y->first_seq) - (x->first_seq < y->first_seq);
}

int auditd_list(const char *dir, auditd_file **out)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    auditd_file *v = NULL, f;
    int n = 0, cap = 0;

    *out = NULL;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (auditd_parse_name(e->d_name, &f) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            auditd_file *nv = realloc(v, (size_t)cap * sizeof(*v));
            if (nv == NULL) {
                free(v);
                closedir(d);
                errno = ENOMEM;
                return -1;
            }
            v = nv;
        }
        v[n++] = f;
    }
    closedir(d);
    if (n > 1)
        qsort(v, (size_t)n, sizeof(*v), cmp_file);
    *out = v;
    return n;
}
