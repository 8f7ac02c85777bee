/* Wall-clock and monotonic time helpers shared by logging, envelopes and the
 * publish path (all of which must agree on the timestamp format). */
#ifndef INSITE_CLOCK_H
#define INSITE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* "2026-11-26T10:30:45.123Z" plus NUL */
#define INSITE_RFC3339_LEN 25

/* Writes the current UTC time as RFC 3339 with milliseconds; buf must hold
 * INSITE_RFC3339_LEN bytes.  Returns buf. */
char *insite_clock_rfc3339(char *buf, size_t size);
/* Same for a given time in milliseconds since the epoch. */
char *insite_clock_rfc3339_ms(char *buf, size_t size, int64_t epoch_ms);
/* Monotonic milliseconds, for timeouts and backoff. */
int64_t insite_clock_mono_ms(void);
/* Monotonic seconds as a double, for latency histograms. */
double insite_clock_mono_s(void);

#endif
