/*
 * A chat's pack (SQLite schema 12, docs/storage.md "Packs"): the message
 * rows a chat got when it was new, laid end to end in display order
 * (order_ts, received, id) as one byte string, which the store compresses
 * into one zstd frame (value_codec.h) and keeps in pieces. Per message:
 * id, value (the JSON text; a pack holds no deleted message), stamp,
 * display order, mark and `received`, as a row of `messages` holds them.
 * Strings are stored with a NUL after them, so a decoded entry points into
 * the decoded bytes without a copy.
 */
#ifndef PS_PACK_CODEC_H
#define PS_PACK_CODEC_H

#include "core/dynbuf.h"
#include "polysync/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One message of a pack. Strings NUL-terminated; borrowed. */
typedef struct ps_pack_entry {
    const char *id;
    const char *value; /* the message's JSON text */
    size_t value_len;
    const char *device; /* the stamp's */
    const char *origin; /* the mark's; NULL: the same as device */
    int64_t ts, lamport, order_ts, seq, received;
    bool timed;
} ps_pack_entry;

/* Starts a pack in *raw (replaced). */
PS_MUST_CHECK ps_code ps_pack_begin(ps_dynbuf *raw);

/* Starts a pack whose entries' seq are relative to a base the store keeps
 * beside the frame (version 2): a new chat's pack, whose messages all get
 * the chat's seq, can then be compressed before that seq is known (offsets
 * all 0). ps_pack_next gives such a pack's seq as stored (the offset). */
PS_MUST_CHECK ps_code ps_pack_begin_based(ps_dynbuf *raw);

/* Whether the pack's bytes were started by ps_pack_begin_based. */
bool ps_pack_is_based(const char *raw, size_t len);

/* Appends one message (the caller keeps display order). */
PS_MUST_CHECK ps_code ps_pack_put(ps_dynbuf *raw, const ps_pack_entry *e);

/* Reads the entry at *pos (0 for the first) of a pack's `len` bytes and
 * moves *pos past it; *more false (and PS_OK) at the end. PS_ERR_STORE
 * when the bytes are not a pack (a corrupt store). `raw` must be
 * NUL-terminated at raw[len] (ps_dynbuf's are). */
PS_MUST_CHECK ps_code ps_pack_next(const char *raw, size_t len, size_t *pos, ps_pack_entry *e,
                                   bool *more);

/* A based pack is stored as a prefix holding its base (ps_pack_base_put
 * appends it to *out; or ps_pack_summary_put's, below), then its zstd
 * frame. ps_pack_base_get: whether the stored bytes start with either
 * prefix, whole; *base and *skip (the prefix's length) then set, else 0. */
PS_MUST_CHECK ps_code ps_pack_base_put(ps_dynbuf *out, int64_t base);
bool ps_pack_base_get(const char *stored, size_t len, int64_t *base, size_t *skip);

/*
 * A pack's summary (stored prefix version 3, docs/storage.md "Packs"): the
 * lowest and highest seq of its entries (base added) and their sole origin
 * (each entry's origin, or its device when it has none), if they have one.
 * A reader checks it against a read's filter without decompressing: a
 * pack whose every entry the filter leaves out is not read at all.
 */
typedef struct ps_pack_summary {
    int64_t lo, hi;
    const char *origin; /* borrowed, origin_len bytes (no NUL); NULL: several */
    size_t origin_len;
} ps_pack_summary;

/* What a stored pack's prefix says: its base (0 with none), whether its
 * entries are based (the frame's bytes must then begin version 2),
 * whether it carries a summary, and its length (*skip: the frame's
 * start). */
typedef struct ps_pack_prefix {
    bool based;
    int64_t base;
    size_t skip;
    bool summarized;
    ps_pack_summary sum;
} ps_pack_prefix;

/* Summarizes a pack's decoded bytes `raw` (entries' seq plus `base`):
 * *any false (and no summary) for a pack without entries. PS_ERR_STORE
 * when the bytes are not a pack, or a seq plus base passes int64. */
PS_MUST_CHECK ps_code ps_pack_summarize(const char *raw, size_t len, int64_t base,
                                        ps_pack_summary *sum, bool *any);

/* Appends a version 3 prefix: `base` and `sum` (whose seqs must be at
 * least base). The frame after it may hold version 1 bytes only with
 * base 0. An origin longer than PS_PACK_ORIGIN_MAX is recorded as
 * several (the prefix stays small: it is read from a pack's first piece). */
#define PS_PACK_ORIGIN_MAX 512
PS_MUST_CHECK ps_code ps_pack_summary_put(ps_dynbuf *out, int64_t base, const ps_pack_summary *sum);

/* Reads the prefix of a pack's stored bytes (any version: none, based,
 * summarized). PS_ERR_STORE when a prefix is cut short or its numbers
 * overflow (a corrupt store, or only a first piece of the bytes given). */
PS_MUST_CHECK ps_code ps_pack_prefix_get(const char *stored, size_t len, ps_pack_prefix *pre);

/* Whether a pack so summarized may hold an entry a read owes: changed
 * after after_seq and not (of origin skip_origin, NULL for none, and
 * after skip_after). false: no entry can pass the filter. */
bool ps_pack_summary_may_owe(const ps_pack_summary *sum, int64_t after_seq, const char *skip_origin,
                             int64_t skip_after);

/* Whether entry e (seq with base added) is within the summary: its seq in
 * [lo, hi] and, when the summary names one, its origin that one. */
bool ps_pack_summary_covers(const ps_pack_summary *sum, const ps_pack_entry *e);

/* Whether message a comes before b in display order (order_ts, received,
 * then id in byte order, as SQLite's ORDER BY does). */
bool ps_pack_before(int64_t a_order_ts, int64_t a_received, const char *a_id, int64_t b_order_ts,
                    int64_t b_received, const char *b_id);

#endif
