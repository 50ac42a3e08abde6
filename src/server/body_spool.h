/*
 * Where the chats of a legacy body wait between their arrival and the merge.
 *
 * A legacy /sync body is a user's whole history (hundreds of MB for a heavy
 * user). It cannot be merged as it arrives: the sync is all or nothing, and
 * the store's writer lock must not be held while a slow client uploads. So
 * the chats are kept until the body is in, chat by chat, each one's span
 * recorded. The first `memory_max` bytes stay in memory (most bodies never
 * touch the disk); past that they go to a temporary file in `dir` that has
 * no name (O_TMPFILE, or a name unlinked at once where the file system has
 * no O_TMPFILE): it disappears when closed, and with the process, whatever
 * happens. At merge time each chat is read back on its own.
 *
 * Memory: the first memory_max bytes of chats stay in memory, and a tail
 * buffer of a sixteenth of that takes the next (its sealed chats written
 * out a full tail at a time), each larger only to hold a single chat
 * larger than its limit (and then that size until the spool is cleared);
 * at merge time a chat read back from the file is one more buffer per
 * reader (PS_SPOOL_READERS), the size of the largest it read. So whatever
 * the body's size: memory_max + max(memory_max / 16, the largest chat) +
 * two of the largest chat in the file.
 * Past 1 MiB a buffer is its limit's size at once (its pages are only
 * touched as they fill), 2 MiB aligned for huge pages.
 */
#ifndef PS_SERVER_BODY_SPOOL_H
#define PS_SERVER_BODY_SPOOL_H

#include "polysync/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ps_body_spool ps_body_spool;

/* Bytes of chats held in memory before a file is used, by default: 64 MiB,
 * not less. Writing a body's chats to the file goes through the page cache
 * on every sync: at 4 MiB, a client re-sending the 63 MB reference history
 * unchanged cost 0.24 s of server CPU a sync (45 % of it copying into the
 * page cache), 0.17 s at 64 MiB. A large request's slot
 * (--max-large-requests) holds at most this much of a body's chats, and a
 * sixteenth more (the tail buffer), more only for a chat over that (see
 * "Memory" above; a chat is at most PS_CHAT_MAX_BYTES). */
#define PS_SPOOL_MEMORY_BYTES (64u * 1024 * 1024)

/* Bytes readable after every chat's bytes the spool hands out (seal, read):
 * its buffers are that much larger than what they hold, so the content
 * hash reads a chat where it lies, without a padded copy
 * (content_hash.h, PS_CONTENT_HASH_PADDING). Their values are whatever
 * follows: the next chat's bytes or anything. */
#define PS_SPOOL_PADDING 64u

/* A spool whose file, when one is needed, goes in `dir` (copied). NULL when
 * out of memory. */
ps_body_spool *ps_body_spool_new(const char *dir, size_t memory_max);
void ps_body_spool_free(ps_body_spool *sp);

/* The body is announced to be `bytes` long (its Content-Length; 0:
 * unknown): the first big buffer's pages up to there are made ready ahead
 * of the chats (prefault.h). */
void ps_body_spool_expect(ps_body_spool *sp, size_t bytes);

/* The next `n` bytes of the chat being received. PS_ERR_IO (the file cannot
 * be made or written: err says why) or PS_ERR_NOMEM. */
ps_code ps_body_spool_add(ps_body_spool *sp, const char *p, size_t n, ps_error *err);
/* The chat being received is complete: it becomes chat number
 * ps_body_spool_count() - 1, and *text, *len are its bytes (owned by the
 * spool, valid until its next call, PS_SPOOL_PADDING readable bytes after
 * them). */
ps_code ps_body_spool_seal(ps_body_spool *sp, const char **text, size_t *len, ps_error *err);
/* Forgets every chat (and the one being received). */
void ps_body_spool_clear(ps_body_spool *sp);

/* Buffers outliving a spool, so that a large body's chats land in memory
 * already faulted in (request.c keeps one per lane slot, lane.h): a new
 * spool adopts `buf` (malloc'ed, `cap` bytes, of which PS_SPOOL_PADDING
 * are kept as padding; freed if the spool has one), and a spool done with
 * gives its buffer away (NULL when it has none; the spool is then empty;
 * *cap: all its bytes, the padding too). */
void ps_body_spool_adopt_buffer(ps_body_spool *sp, char *buf, size_t cap);
char *ps_body_spool_take_buffer(ps_body_spool *sp, size_t *cap);

size_t ps_body_spool_count(const ps_body_spool *sp);
/* Chat i's length, without reading it. */
size_t ps_body_spool_length(const ps_body_spool *sp, size_t i);
/* Chat i's bytes: *text is owned by the spool and valid until its next
 * call, PS_SPOOL_PADDING readable bytes after them. PS_ERR_IO when the
 * file cannot be read. */
ps_code ps_body_spool_read(ps_body_spool *sp, size_t i, const char **text, size_t *len,
                           ps_error *err);

/* Threads that may read a complete spool at once: each with its own
 * `reader` number (below this), none adding or clearing meanwhile. */
#define PS_SPOOL_READERS 2u
/* ps_body_spool_read as `reader` (0 is ps_body_spool_read's): *text is
 * valid until that reader's next read; another reader's reads, on another
 * thread at the same time, leave it alone. */
ps_code ps_body_spool_read_as(ps_body_spool *sp, unsigned reader, size_t i, const char **text,
                              size_t *len, ps_error *err);
/* Bytes written to the file so far (0: all in memory). */
uint64_t ps_body_spool_file_bytes(const ps_body_spool *sp);

#endif
