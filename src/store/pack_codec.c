/*
 * A chat's pack as bytes (pack_codec.h). Layout: a version byte (1, or 2:
 * each seq below is relative to the pack's base, kept outside the frame by
 * the store: ps_pack_begin_based), then
 * per message: id, value, device, origin as
 * strings (a varint length, the bytes, a NUL), then ts, lamport, order_ts
 * (zigzag varints), seq, received (varints) and a flags byte (bit 0:
 * timed; bit 1: the origin is the device's, and its string is empty).
 * Varints are LEB128, as small as the numbers (a sequence number in a few
 * bytes where a row spent eight).
 */
#include "store/pack_codec.h"

#include <string.h>

#define PACK_VERSION 1
#define PACK_VERSION_BASED 2

static ps_code put_varint(ps_dynbuf *b, uint64_t v)
{
    char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return ps__dynbuf_add(b, tmp, n);
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static ps_code put_string(ps_dynbuf *b, const char *s, size_t len)
{
    ps_code rc = put_varint(b, len);
    if (rc == PS_OK && len)
        rc = ps__dynbuf_add(b, s, len);
    return rc == PS_OK ? ps__dynbuf_add(b, "", 1) : rc;
}

ps_code ps_pack_begin(ps_dynbuf *raw)
{
    ps__dynbuf_reset(raw);
    char v = PACK_VERSION;
    return ps__dynbuf_add(raw, &v, 1);
}

ps_code ps_pack_begin_based(ps_dynbuf *raw)
{
    ps__dynbuf_reset(raw);
    char v = PACK_VERSION_BASED;
    return ps__dynbuf_add(raw, &v, 1);
}

bool ps_pack_is_based(const char *raw, size_t len)
{
    return len >= 1 && raw[0] == PACK_VERSION_BASED;
}

ps_code ps_pack_put(ps_dynbuf *raw, const ps_pack_entry *e)
{
    bool own_origin = e->origin && strcmp(e->origin, e->device) != 0;
    char flags = (char)((e->timed ? 1 : 0) | (own_origin ? 0 : 2));
    ps_code rc = put_string(raw, e->id, strlen(e->id));
    if (rc == PS_OK)
        rc = put_string(raw, e->value, e->value_len);
    if (rc == PS_OK)
        rc = put_string(raw, e->device, strlen(e->device));
    if (rc == PS_OK)
        rc = put_string(raw, own_origin ? e->origin : "", own_origin ? strlen(e->origin) : 0);
    if (rc == PS_OK)
        rc = put_varint(raw, zigzag(e->ts));
    if (rc == PS_OK)
        rc = put_varint(raw, zigzag(e->lamport));
    if (rc == PS_OK)
        rc = put_varint(raw, zigzag(e->order_ts));
    if (rc == PS_OK)
        rc = put_varint(raw, (uint64_t)e->seq);
    if (rc == PS_OK)
        rc = put_varint(raw, (uint64_t)e->received);
    return rc == PS_OK ? ps__dynbuf_add(raw, &flags, 1) : rc;
}

static bool get_varint(const char *raw, size_t len, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
        unsigned char c = (unsigned char)raw[(*pos)++];
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return true;
    }
    return false;
}

static bool get_string(const char *raw, size_t len, size_t *pos, const char **s, size_t *slen)
{
    uint64_t n;
    if (!get_varint(raw, len, pos, &n) || n >= len - *pos || raw[*pos + n] != '\0')
        return false;
    *s = raw + *pos;
    *slen = (size_t)n;
    *pos += (size_t)n + 1;
    return true;
}

ps_code ps_pack_next(const char *raw, size_t len, size_t *pos, ps_pack_entry *e, bool *more)
{
    *more = false;
    if (*pos == 0) {
        if (len < 1 || (raw[0] != PACK_VERSION && raw[0] != PACK_VERSION_BASED))
            return PS_ERR_STORE;
        *pos = 1;
    }
    if (*pos >= len)
        return PS_OK;
    size_t id_len, dev_len, origin_len;
    (void)dev_len;
    (void)origin_len;
    uint64_t ts, lamport, order_ts, seq, received;
    if (!get_string(raw, len, pos, &e->id, &id_len) ||
        !get_string(raw, len, pos, &e->value, &e->value_len) ||
        !get_string(raw, len, pos, &e->device, &dev_len) ||
        !get_string(raw, len, pos, &e->origin, &origin_len) || !get_varint(raw, len, pos, &ts) ||
        !get_varint(raw, len, pos, &lamport) || !get_varint(raw, len, pos, &order_ts) ||
        !get_varint(raw, len, pos, &seq) || !get_varint(raw, len, pos, &received) || *pos >= len ||
        id_len == 0 || seq > INT64_MAX || received > INT64_MAX)
        return PS_ERR_STORE;
    char flags = raw[(*pos)++];
    e->timed = (flags & 1) != 0;
    if (flags & 2)
        e->origin = NULL;
    e->ts = unzigzag(ts);
    e->lamport = unzigzag(lamport);
    e->order_ts = unzigzag(order_ts);
    e->seq = (int64_t)seq;
    e->received = (int64_t)received;
    *more = true;
    return PS_OK;
}

/* The stored prefix of a based pack: a byte no zstd frame starts with
 * (their magic number begins 0x28), then the base as a varint. */
#define BASE_MARK 0x02

ps_code ps_pack_base_put(ps_dynbuf *out, int64_t base)
{
    char mark = BASE_MARK;
    ps_code rc = ps__dynbuf_add(out, &mark, 1);
    return rc == PS_OK ? put_varint(out, (uint64_t)base) : rc;
}

bool ps_pack_base_get(const char *stored, size_t len, int64_t *base, size_t *skip)
{
    *base = 0;
    *skip = 0;
    if (len < 1 || stored[0] != BASE_MARK)
        return false;
    size_t pos = 1;
    uint64_t v;
    if (!get_varint(stored, len, &pos, &v) || v > INT64_MAX)
        return false;
    *base = (int64_t)v;
    *skip = pos;
    return true;
}

bool ps_pack_before(int64_t a_order_ts, int64_t a_received, const char *a_id, int64_t b_order_ts,
                    int64_t b_received, const char *b_id)
{
    if (a_order_ts != b_order_ts)
        return a_order_ts < b_order_ts;
    if (a_received != b_received)
        return a_received < b_received;
    return strcmp(a_id, b_id) < 0;
}
