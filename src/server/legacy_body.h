/*
 * A legacy /sync or /pushChats body taken as it arrives: the "chats" array
 * split chat by chat (core/chat_splitter.h), each chat hashed when it is
 * complete and put in a spool (body_spool.h), the rest of the body (the
 * envelope: deviceId, clocks, deletions) kept in memory with `"chats":[]`
 * in the array's place. The body is never held whole, so its size is
 * bounded by --max-body only, not by memory.
 *
 * A problem in the body (bad JSON, too many chats, a spool that cannot be
 * written) does not stop the reading: the client is sending, and gets its
 * answer once it has sent everything. The first problem is kept for
 * ps_legacy_body_finish, and what follows is only counted.
 *
 * A chat is pre-checked (json_precheck.h) when it is first used, through
 * ps_chat_source_check, not as it arrives: a sync skips the chats a device
 * re-sends as it last synced them by their hash alone (sync_legacy.c), and
 * those bytes passed the pre-check when they were first taken. Whoever uses
 * a chat's bytes checks it first, in the body's order, so the error a bad
 * body gets is still its first bad chat's; when the body is refused for
 * another reason, finish (and ps_legacy_body_check_chats) check the chats
 * before that problem first.
 */
#ifndef PS_SERVER_LEGACY_BODY_H
#define PS_SERVER_LEGACY_BODY_H

#include "server/body_spool.h"
#include "server/sync_legacy.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct ps_legacy_body_config {
    size_t max_bytes;    /* --max-body: past it, PS_ERR_TOO_LARGE */
    size_t max_chats;    /* past it the chats are only counted (413 at the end) */
    int max_depth;       /* of the whole body (PS_JSON_MAX_DEPTH) */
    size_t envelope_max; /* the rest of the body */
    size_t chat_max;     /* one chat: it is held and parsed whole */
    const char *spool_dir;
    size_t memory_max;     /* chats held in memory before the spool uses a file */
    size_t expected_bytes; /* the body's Content-Length, 0 when unknown (ps_body_spool_expect) */
} ps_legacy_body_config;

/* Everything but the chats stays under this (deletions of max_chats chats
 * fit many times over). */
#define PS_ENVELOPE_MAX_BYTES (32u * 1024 * 1024)
/* One chat stays under this: the merge parses a chat whole (json-c takes
 * about ten times its bytes), so this, not --max-body, bounds what one
 * request can make the server allocate. 64 MiB was the whole body's limit
 * before bodies were taken chat by chat. */
#define PS_CHAT_MAX_BYTES (64u * 1024 * 1024)

typedef struct ps_legacy_body ps_legacy_body;

/* NULL when out of memory. The config's strings are copied. */
ps_legacy_body *ps_legacy_body_new(const ps_legacy_body_config *cfg);
void ps_legacy_body_free(ps_legacy_body *lb);

/* The next bytes (after gzip). PS_OK, or PS_ERR_TOO_LARGE once max_bytes is
 * passed (the caller reads and drops the rest, and answers 413). */
ps_code ps_legacy_body_feed(ps_legacy_body *lb, const char *p, size_t n);

/* The body is in: PS_OK, or the first problem met (err says which): a bad
 * chat before it comes first. Then the envelope and the chats can be had;
 * the chats are not pre-checked yet. */
ps_code ps_legacy_body_finish(ps_legacy_body *lb, ps_error *err);

/* Pre-checks every chat not checked yet, in order: PS_OK or the first bad
 * chat's error (for a body refused for something else found after it). */
ps_code ps_legacy_body_check_chats(ps_legacy_body *lb, ps_error *err);

/* The envelope (NUL-terminated, owned by lb): the body with the elements of
 * "chats" taken out, to be parsed whole (ps__json_parse). */
const char *ps_legacy_body_envelope(const ps_legacy_body *lb, size_t *len);

/* The chats taken out (none when the body has no "chats" array: then the
 * envelope is the whole body). `src` borrows lb. */
void ps_legacy_body_chats(ps_legacy_body *lb, ps_chat_source *src);

/* The spool's memory buffer, from and to an earlier body's
 * (ps_body_spool_adopt_buffer, ps_body_spool_take_buffer): the adopted one
 * before the first byte, taken once done with lb. */
void ps_legacy_body_adopt_buffer(ps_legacy_body *lb, char *buf, size_t cap);
char *ps_legacy_body_take_buffer(ps_legacy_body *lb, size_t *cap);

/* Bytes of chats the spool wrote to its file (0: all held in memory). */
uint64_t ps_legacy_body_spooled_bytes(const ps_legacy_body *lb);

/* Where spool files go for a store URL: the folder of a SQLite store, else
 * $TMPDIR, else /var/tmp. Malloc'ed; NULL when out of memory. */
char *ps_legacy_spool_dir(const char *db_url);

#endif
