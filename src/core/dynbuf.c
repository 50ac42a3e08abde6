/* Capped growable buffer; see dynbuf.h. Growth doubles, bounded by the limit. */
#include "core/dynbuf.h"

#include "core/decimal.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void ps__dynbuf_init(ps_dynbuf *b, size_t limit)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = limit;
}

#define HUGE_PAGE (2u * 1024 * 1024)
#define HUGE_BUFFER (8u * 1024 * 1024)

/*
 * A first allocation of many MB (a request body of known length): aligned
 * to 2 MiB and offered transparent huge pages, so filling it costs a few
 * dozen page faults instead of one per 4 KiB (that was ~10 % of a 63 MB
 * sync, docs/performance.md). realloc and free take it like any other.
 */
static char *huge_alloc(size_t cap)
{
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, cap) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, cap, MADV_HUGEPAGE); /* advice only: fine if refused */
#endif
    return p;
}

static ps_code reserve(ps_dynbuf *b, size_t extra)
{
    if (extra > b->limit || b->len > b->limit - extra)
        return PS_ERR_TOO_LARGE;
    if (b->len + extra == SIZE_MAX) /* no room for the NUL */
        return PS_ERR_TOO_LARGE;
    size_t need = b->len + extra + 1; /* room for the NUL */
    if (need <= b->cap)
        return PS_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need && cap <= SIZE_MAX / 2)
        cap *= 2;
    if (cap < need)
        cap = need;
    /* Never allocate past limit + 1 (the NUL); limit may be SIZE_MAX - 1 at most
     * here, since need <= limit + 1 was checked above. */
    if (b->limit < SIZE_MAX && cap > b->limit + 1)
        cap = b->limit + 1;
    char *p = b->data || cap < HUGE_BUFFER ? realloc(b->data, cap) : huge_alloc(cap);
    if (!p)
        return PS_ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return PS_OK;
}

ps_code ps__dynbuf_reserve(ps_dynbuf *b, size_t n)
{
    return reserve(b, n);
}

void ps__dynbuf_adopt(ps_dynbuf *b, char *data, size_t cap)
{
    free(b->data);
    b->data = data;
    b->cap = cap;
    b->len = 0;
    data[0] = '\0';
}

ps_code ps__dynbuf_add(ps_dynbuf *b, const void *p, size_t n)
{
    ps_code rc = reserve(b, n);
    if (rc != PS_OK)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return PS_OK;
}

ps_code ps__dynbuf_adds(ps_dynbuf *b, const char *s)
{
    return ps__dynbuf_add(b, s, strlen(s));
}

ps_code ps__dynbuf_add_int(ps_dynbuf *b, int64_t v)
{
    char text[PS_DECIMAL_MAX];
    return ps__dynbuf_add(b, text, ps__decimal_i64(text, v));
}

ps_code ps__dynbuf_addf(ps_dynbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return PS_ERR_INVALID;
    ps_code rc = reserve(b, (size_t)n);
    if (rc != PS_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return PS_OK;
}

ps_code ps__dynbuf_add_json_string(ps_dynbuf *b, const char *s)
{
    /* json-c does the escaping so the rules live in one library. */
    json_object *str = json_object_new_string(s);
    if (!str)
        return PS_ERR_NOMEM;
    const char *text = json_object_to_json_string_ext(str, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    ps_code rc = text ? ps__dynbuf_adds(b, text) : PS_ERR_NOMEM; /* NULL: out of memory */
    json_object_put(str);
    return rc;
}

char *ps__dynbuf_take(ps_dynbuf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void ps__dynbuf_reset(ps_dynbuf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void ps__dynbuf_free(ps_dynbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
