#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collector.h"

void quote_result_clear(quote_result *r)
{
    free(r->bars);
    r->bars = NULL;
    r->nbars = 0;
}

int symbol_valid(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!isalnum(c) && c != '.' && c != '^' && c != '=' && c != '-')
            return 0;
    }
    return n > 0 && n < SYMBOL_MAX;
}

double price_round(double v)
{
    return round(v * 10000.0) / 10000.0;
}
