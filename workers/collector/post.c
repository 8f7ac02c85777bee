#include <stdlib.h>
#include <string.h>

#include "social.h"

void post_clear(post *p)
{
    free(p->id);
    free(p->author);
    free(p->text);
    free(p->url);
    memset(p, 0, sizeof(*p));
}
