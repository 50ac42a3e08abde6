/* Numbers as decimal text without printf; see decimal.h. */
#include "core/decimal.h"

size_t ps__decimal_u64(char *out, uint64_t v, unsigned min_digits)
{
    /* Count the digits first so they can be written in place from the
     * right, without a scratch buffer and a copy. */
    unsigned n = 1;
    for (uint64_t t = v; t >= 10; t /= 10)
        n++;
    if (n < min_digits)
        n = min_digits;
    for (char *p = out + n; p > out; v /= 10)
        *--p = (char)('0' + v % 10);
    return n;
}

size_t ps__decimal_i64(char *out, int64_t v)
{
    if (v >= 0)
        return ps__decimal_u64(out, (uint64_t)v, 1);
    /* -v overflows for INT64_MIN; the unsigned negation does not. */
    *out = '-';
    return 1 + ps__decimal_u64(out + 1, (uint64_t)0 - (uint64_t)v, 1);
}
