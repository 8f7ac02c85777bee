#include <stdio.h>

#include "worker.h"

int insite_worker_usage(const insite_runtime *rt, const char *usage)
{
    int extra = usage != NULL && usage[0] != '\0';
    fprintf(stderr, "usage: %s [-c FILE]%s%s\n", rt->name, extra ? " " : "",
            extra ? usage : "");
    return 2;
}

static int build_schema(insite_config_schema *s, const insite_worker_options *o)
{
    if (insite_config_schema_add(s, insite_runtime_config_keys, insite_runtime_config_nkeys) != 0)
        return -1;
    for (size_t i = 0; i < o->nkeys; i++)
        if (insite_config_schema_add(s, o->keys[i].keys, o->keys[i].n) != 0)
            return -1;
    return 0;
}

int insite_worker_main(const insite_worker_options *o, int argc, char **argv)
{
    insite_runtime rt;
    insite_config_schema *s = insite_config_schema_new();
    insite_config *cfg = NULL;
    int rc = 2;

    if (insite_runtime_init(&rt, o->name, argc, argv) != 0 || s == NULL
        || build_schema(s, o) != 0)
        goto out;
    if ((rc = insite_runtime_common(&rt, s, o->usage)) >= 0)
        goto out;
    if (o->args != NULL)
        rc = o->args(&rt, o->ud);
    else if (rt.argc > 1)
        rc = insite_worker_usage(&rt, o->usage);
    if (rc >= 0)
        goto out;
    rc = 1;
    if ((cfg = insite_runtime_load_config(&rt, s)) == NULL)
        goto out;
    rc = o->run(&rt, &cfg, o->ud);
out:
    insite_config_free(cfg);
    insite_config_schema_free(s);
    insite_runtime_close(&rt);
    return rc;
}
