/*
 * A chat's pack as bytes (pack_codec.h). Layout: a version byte (1, or 2:
 * each seq below is relative to the pack's base, kept outside the frame by
 * the store: ps_pack_begin_based), then
 * per message: id, value, device, origin as
 * strings (a varint length, the bytes, a NUL), then ts, lamport, order_ts
 * (zigzag varints), seq, received (varints) and a flags byte (bit 0:
 * timed; bit 1: the origin is the device's, and its string is empty).
 * Varints are LEB128, as small as the numbers (a sequence number in a few
 * bytes where a row spent eight). Outside the frame, the stored bytes may
 * start with a prefix: 0x02 and a base, or 0x03, a base and a summary
 * (ps_pack_summary_put), which a reader checks without decompressing.
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

/* The stored prefix of a summarized pack (version 3): this byte, the base,
 * the lowest seq's offset from it, the highest's from the lowest (all
 * varints), then the sole origin as a varint n + 1 and its n bytes, or a
 * varint 0 when the entries have several origins. */
#define SUMMARY_MARK 0x03

bool ps_pack_base_get(const char *stored, size_t len, int64_t *base, size_t *skip)
{
    ps_pack_prefix pre;
    bool based = ps_pack_prefix_get(stored, len, &pre) == PS_OK && pre.based;
    *base = based ? pre.base : 0;
    *skip = based ? pre.skip : 0;
    return based;
}

/* An entry's origin: its own, or its device's. */
static const char *entry_origin(const ps_pack_entry *e)
{
    return e->origin ? e->origin : e->device;
}

ps_code ps_pack_summarize(const char *raw, size_t len, int64_t base, ps_pack_summary *sum,
                          bool *any)
{
    *any = false;
    *sum = (ps_pack_summary){0};
    size_t pos = 0;
    for (;;) {
        ps_pack_entry e;
        bool more;
        ps_code rc = ps_pack_next(raw, len, &pos, &e, &more);
        if (rc != PS_OK || !more)
            return rc;
        int64_t seq;
        if (__builtin_add_overflow(e.seq, base, &seq))
            return PS_ERR_STORE;
        const char *origin = entry_origin(&e);
        if (!*any) {
            *sum = (ps_pack_summary){seq, seq, origin, strlen(origin)};
            *any = true;
            continue;
        }
        if (seq < sum->lo)
            sum->lo = seq;
        if (seq > sum->hi)
            sum->hi = seq;
        if (sum->origin &&
            (strlen(origin) != sum->origin_len || memcmp(origin, sum->origin, sum->origin_len)))
            sum->origin = NULL;
    }
}

ps_code ps_pack_summary_put(ps_dynbuf *out, int64_t base, const ps_pack_summary *sum)
{
    if (base < 0 || sum->lo < base || sum->hi < sum->lo)
        return PS_ERR_INVALID;
    char mark = SUMMARY_MARK;
    bool sole = sum->origin && sum->origin_len <= PS_PACK_ORIGIN_MAX;
    ps_code rc = ps__dynbuf_add(out, &mark, 1);
    if (rc == PS_OK)
        rc = put_varint(out, (uint64_t)base);
    if (rc == PS_OK)
        rc = put_varint(out, (uint64_t)(sum->lo - base));
    if (rc == PS_OK)
        rc = put_varint(out, (uint64_t)sum->hi - (uint64_t)sum->lo);
    if (rc == PS_OK)
        rc = put_varint(out, sole ? (uint64_t)sum->origin_len + 1 : 0);
    if (rc == PS_OK && sole && sum->origin_len)
        rc = ps__dynbuf_add(out, sum->origin, sum->origin_len);
    return rc;
}

ps_code ps_pack_prefix_get(const char *stored, size_t len, ps_pack_prefix *pre)
{
    *pre = (ps_pack_prefix){0};
    if (len < 1 || (stored[0] != BASE_MARK && stored[0] != SUMMARY_MARK))
        return PS_OK; /* version 1: the frame at once */
    size_t pos = 1;
    uint64_t base, lo, span;
    if (!get_varint(stored, len, &pos, &base) || base > INT64_MAX)
        return PS_ERR_STORE;
    pre->based = true;
    pre->base = (int64_t)base;
    if (stored[0] == SUMMARY_MARK) {
        uint64_t tag;
        if (!get_varint(stored, len, &pos, &lo) || !get_varint(stored, len, &pos, &span) ||
            !get_varint(stored, len, &pos, &tag) || lo > (uint64_t)INT64_MAX - base ||
            span > (uint64_t)INT64_MAX - base - lo || (tag && tag - 1 > len - pos))
            return PS_ERR_STORE;
        pre->summarized = true;
        pre->sum.lo = (int64_t)(base + lo);
        pre->sum.hi = (int64_t)(base + lo + span);
        if (tag) {
            pre->sum.origin = stored + pos;
            pre->sum.origin_len = (size_t)(tag - 1);
            pos += (size_t)(tag - 1);
        }
    }
    pre->skip = pos;
    return PS_OK;
}

/* Whether `origin` is the summary's sole origin. */
static bool sole_origin_is(const ps_pack_summary *sum, const char *origin)
{
    return sum->origin && strlen(origin) == sum->origin_len &&
           memcmp(origin, sum->origin, sum->origin_len) == 0;
}

bool ps_pack_summary_may_owe(const ps_pack_summary *sum, int64_t after_seq, const char *skip_origin,
                             int64_t skip_after)
{
    if (sum->hi <= after_seq)
        return false; /* every entry at or before the cursor */
    /* all the skipped origin's: owed only those in (after_seq, skip_after] */
    if (skip_origin && sole_origin_is(sum, skip_origin) &&
        (sum->lo > skip_after || skip_after <= after_seq))
        return false;
    return true;
}

bool ps_pack_summary_covers(const ps_pack_summary *sum, const ps_pack_entry *e)
{
    return e->seq >= sum->lo && e->seq <= sum->hi &&
           (!sum->origin || sole_origin_is(sum, entry_origin(e)));
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
