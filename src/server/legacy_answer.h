/*
 * The legacy answers that list chats — /sync's {"missing", "deletions",
 * "serverClock"} and /fetchChats' [chats] — produced piece by piece as the
 * socket drains (http_response.c's streamed bodies), never whole: a fresh
 * device's pull of a 63 MB history holds about one piece in memory.
 *
 * Each piece (about PS_LEGACY_PIECE_BYTES of rendered chats) is one short
 * read transaction, which on SQLite is a read connection of its own: no
 * writer waits for it, and no slow client keeps a snapshot (and the WAL
 * behind it) alive while it reads. A chat is sent as stored when its piece
 * is made. /sync's answer is planned in its write transaction — which chats
 * go (their bases saved), the deletions, the clock — and its first piece is
 * made there too, so an answer that fits one piece is exactly the state the
 * sync committed, and a store error in it rolls the sync back.
 */
#ifndef PS_LEGACY_ANSWER_H
#define PS_LEGACY_ANSWER_H

#include "server/sync_common.h"

/* Rendered chats per piece: big enough that restarting the listing for
 * each piece costs little, small enough that 16 pulls hold little. */
#define PS_LEGACY_PIECE_BYTES (1024u * 1024)

typedef struct ps_legacy_answer ps_legacy_answer;

/* A /sync answer for the user `user_id` (named ctx->user). */
ps_code ps_legacy_answer_sync_new(const ps_sync_ctx *ctx, int64_t user_id,
                                  ps_legacy_answer **out, ps_error *err);
/* Plans chat `id` into `missing`: call in listing order (chat_each's). */
ps_code ps_legacy_answer_add_missing(ps_legacy_answer *a, const char *id);
/* Where the caller writes the `deletions` items, comma-separated. */
ps_dynbuf *ps_legacy_answer_deletions(ps_legacy_answer *a);
void ps_legacy_answer_set_clock(ps_legacy_answer *a, int64_t server_clock);
/* Makes the first piece now, in the caller's open transaction. */
ps_code ps_legacy_answer_head(ps_legacy_answer *a, ps_error *err);

/* When the first piece is the whole answer: moves it into `body` (freed
 * first) and says true; the answer is then spent. */
bool ps_legacy_answer_take_whole(ps_legacy_answer *a, ps_dynbuf *body);

/* A /fetchChats answer: every live chat of ctx->user, none if no user. */
ps_code ps_legacy_answer_fetch_new(const ps_sync_ctx *ctx, ps_legacy_answer **out,
                                   ps_error *err);

/* The next piece, appended to out (a ps_reply_stream's next); *done after
 * the last. A failure once the answer has begun going out cannot become an
 * error answer: the server cuts the connection (http_response.c), so the
 * client sees a broken answer, never a shorter valid one. */
ps_code ps_legacy_answer_next(ps_legacy_answer *a, ps_dynbuf *out, bool *done, ps_error *err);
void ps_legacy_answer_free(ps_legacy_answer *a);

#endif
