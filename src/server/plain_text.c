/* Small texts without printf; see plain_text.h. */
#include "server/plain_text.h"

#include "core/decimal.h"

#include <string.h>

void ps__copy_text(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void ps__hex16_text(uint64_t n, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, n >>= 4)
        out[i] = hex[n & 15];
    out[16] = '\0';
}

void ps__ipv4_text(const struct in_addr *addr, char out[INET_ADDRSTRLEN])
{
    const unsigned char *b = (const unsigned char *)&addr->s_addr; /* network order */
    for (int i = 0; i < 4; i++) {
        out += ps__decimal_u64(out, b[i], 1);
        *out++ = i < 3 ? '.' : '\0';
    }
}
