/* Numbers as decimal text without printf; see decimal.h. */
#include "core/decimal.h"

size_t ps__decimal_u64(char *out, uint64_t v, unsigned min_digits)
{
    /* Count the digits first (comparisons, cheaper than the divisions
     * that write them) so they are written in place from the right,
     * without a scratch buffer and a copy. */
    static const uint64_t POWERS[PS_DECIMAL_MAX] = {1,
                                                    10,
                                                    100,
                                                    1000,
                                                    10000,
                                                    100000,
                                                    1000000,
                                                    10000000,
                                                    100000000,
                                                    1000000000,
                                                    10000000000ull,
                                                    100000000000ull,
                                                    1000000000000ull,
                                                    10000000000000ull,
                                                    100000000000000ull,
                                                    1000000000000000ull,
                                                    10000000000000000ull,
                                                    100000000000000000ull,
                                                    1000000000000000000ull,
                                                    10000000000000000000ull};
    unsigned n = 1;
    while (n < PS_DECIMAL_MAX && v >= POWERS[n])
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
