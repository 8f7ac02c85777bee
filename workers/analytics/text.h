/* Unicode helpers with the semantics of Python's str methods, as NLTK's
 * VADER uses them: split() on Unicode whitespace, len() in code points,
 * lower(), isupper().  Text is UTF-8; a byte that is not valid UTF-8 counts
 * as one code point of its own. */
#ifndef ANALYTICS_TEXT_H
#define ANALYTICS_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Decodes one code point at s (n > 0 bytes left); sets *cp. Returns bytes used. */
size_t text_decode(const char *s, size_t n, uint32_t *cp);

/* Python str.isspace() for one code point. */
int text_is_space(uint32_t cp);

/* Next whitespace-separated token at or after *pos: 0 when there is none,
 * else 1 with [*start, *start + *len). Advances *pos past it. */
int text_next_token(const char *s, size_t n, size_t *pos,
                    const char **start, size_t *len);

size_t text_codepoints(const char *s, size_t n);

/* str.isupper(): at least one cased character and no lowercase one. */
int text_is_upper(const char *s, size_t n);

/* str.lower() into out (room for 2 * n bytes); returns the length. */
size_t text_lower(const char *s, size_t n, char *out);

/* One of Python's string.punctuation (ASCII). */
int text_is_punct(unsigned char c);

#endif
