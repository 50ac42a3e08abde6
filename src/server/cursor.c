/* The v2 cursor's text; see cursor.h. */
#include "server/cursor.h"

#include <stddef.h>

/* The decimal digits at `s` into *out; returns the first byte after them,
 * or NULL when there are none or the number does not fit. */
static const char *digits(const char *s, int64_t *out)
{
    int64_t v = 0;
    const char *start = s;
    for (; *s >= '0' && *s <= '9'; s++) {
        int d = *s - '0';
        if (v > (INT64_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
    }
    if (s == start)
        return NULL;
    *out = v;
    return s;
}

bool ps__cursor_parse(const char *s, int64_t *base, int64_t *pos)
{
    int64_t b, p;
    if (!s || s[0] != 'c' || s[1] != '1' || s[2] != '.')
        return false;
    s = digits(s + 3, &b);
    if (!s || *s != '.')
        return false;
    s = digits(s + 1, &p);
    if (!s || *s != '\0' || p < b)
        return false;
    *base = b;
    *pos = p;
    return true;
}
