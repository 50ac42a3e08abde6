/*
 * How the local store packs what it keeps (zstd, docs/client.md "The local
 * store on disk"): message rows with a dictionary trained on the store's own
 * rows (a 700-byte row alone compresses 1.6x, with the dictionary 3.4x),
 * change bodies and old rows without one. Internal to lstore*.c.
 */
#ifndef PS_CLIENT_LSTORE_PACK_H
#define PS_CLIENT_LSTORE_PACK_H

#include "polysync/client.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ps_pack ps_pack;

/* Rows without a dictionary after which one is trained (lstore.c). */
#define PS_PACK_TRAIN_AT 2000

ps_pack *ps__pack_new(void);
void ps__pack_free(ps_pack *p);

/*
 * zstd of in[0..len) into a new buffer (*out, the caller's), with the
 * dictionary `dict` (0 = none; it must be loaded: ps__pack_use_dict).
 */
ps_code ps__pack(ps_pack *p, int64_t dict, const char *in, size_t len, void **out, size_t *out_len,
                 ps_error *err);

/*
 * The bytes packed in blob[0..len) with dictionary `dict` (loaded from the
 * store's zdicts table on first use): a new NUL-terminated buffer (*out, the
 * caller's), *out_len without the NUL. PS_ERR_STORE if it does not unpack.
 */
ps_code ps__unpack(ps_pack *p, sqlite3 *db, int64_t dict, const void *blob, size_t len, char **out,
                   size_t *out_len, ps_error *err);

/* How many bytes blob[0..len) unpacks to, read from its zstd frame without
 * unpacking it (no dictionary needed). PS_ERR_STORE if it does not say. */
ps_code ps__unpacked_size(const void *blob, size_t len, size_t *size, ps_error *err);

/* After a rollback: what it knew of dictionaries may have been undone. */
void ps__pack_forget(ps_pack *p);

/* The dictionary new rows use: the store's (zdicts), 0 while it has none. */
ps_code ps__pack_current_dict(ps_pack *p, sqlite3 *db, int64_t *dict, ps_error *err);

/*
 * Inside a write transaction: if the store has no dictionary and at least
 * PS_PACK_TRAIN_AT rows packed without one, trains one from them, keeps it
 * in zdicts and repacks those rows with it. A training that fails (too few
 * or too alike samples) leaves the rows as they are.
 */
ps_code ps__pack_train(ps_pack *p, sqlite3 *db, ps_error *err);

#endif
