/* Message rendering with ICU MessageFormat (named arguments, plural and
 * select, locale number/percent/currency/date formatting).  The one C++
 * file of the worker (render.cc) sits behind this C interface, because
 * ICU's C API (umsg_*) only takes positional arguments.
 *
 * Arguments are a JSON object:
 *   number  -> a number ({n, plural, ...}, {p, number, ::percent .0}, ...)
 *   string  -> a string ({sym}, {kind, select, ...})
 *   {"amount": 189.5, "currency": "USD"} -> a currency amount
 *                                           ({price, number, currency})
 *   {"epoch_ms": 1764633600000}          -> a date ({at, date, short},
 *                                           {at, time, short}), shown in
 *                                           the time zone given to format
 * Language tags are BCP 47 (en, zh-Hans, pt-BR, ar). */
#ifndef NOTIFY_RENDER_H
#define NOTIFY_RENDER_H

#include <stddef.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parses a pattern.  0, or -1 with "line L, offset O: <ICU error>" in err. */
int notify_msg_check(const char *lang, const char *pattern, char *err, size_t errlen);

/* Renders pattern in lang with args, dates in time zone tz (IANA id; NULL =
 * UTC).  Every argument the pattern names must be in args.  Returns a
 * malloc'd UTF-8 string, or NULL with the reason in err. */
char *notify_msg_format(const char *lang, const char *tz, const char *pattern,
                        const json_t *args, char *err, size_t errlen);

/* 1 when the language is written right to left (ar). */
int notify_lang_rtl(const char *lang);

/* 1 when ICU knows the time zone id (and it is not the "Etc/Unknown"
 * fallback). */
int notify_tz_valid(const char *tz);

/* Local minutes after midnight (0..1439) of an instant in time zone tz. */
int notify_tz_minute_of_day(const char *tz, long long epoch_ms);

/* The first instant after from_ms at which the local wall clock in tz
 * reads minute_of_day (0..1439), DST included (a wall time skipped by a
 * spring-forward gap resolves to the instant after the gap).  -1 on error. */
long long notify_tz_next_local(const char *tz, long long from_ms, int minute_of_day);

#ifdef __cplusplus
}
#endif

#endif
