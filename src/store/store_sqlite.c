/*
 * SQLite backend: one database file, WAL journal, synchronous=FULL.
 *
 * FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power
 * loss, and a 200 answer promises the sync is on disk (docs/storage.md has
 * the measured cost). One writer connection guarded by a mutex held for the
 * whole write transaction: a sync is a read-modify-write of the user's chats,
 * and SQLite serialises writers anyway. Read transactions take a connection
 * of their own from a pool (opened on demand, query_only): in WAL mode a
 * reader works from the snapshot it took at BEGIN while the writer writes,
 * so a device polling never waits behind an upload. Which connection a
 * thread's transaction uses is thread-specific data, as store.h's calls
 * carry no transaction handle.
 */
#include "store/store.h"
#include "core/timestamp.h"
#include "core/chat_codec.h"
#include "core/json_compact.h"
#include "core/json_parse.h"
#include "store/doc_codec.h"
#include "store/doc_render.h"
#include "store/pack_codec.h"
#include "store/value_codec.h"
#include "store/sqlite_checkpointer.h"
#include "store/sqlite_quiet.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MSG_COLUMNS                                                                                \
    "id, value, ts, lamport, device, order_ts, seq, coalesce(origin, device), timed, received"

/* What a user's rows weigh (schema 5 to 9); kept up to date by chat_save,
 * recounted after a purge. Approximate by design (no index or page overhead). */
#define USER_BYTES_RECOUNT_9                                                                       \
    "UPDATE users SET bytes ="                                                                     \
    " (SELECT coalesce(sum(length(CAST(state AS BLOB)) + length(CAST(doc AS BLOB)) +"              \
    "   coalesce(length(CAST(shell AS BLOB)), 0)), 0)"                                             \
    "   FROM chat_bodies WHERE user_id = users.id) +"                                              \
    " (SELECT coalesce(sum(length(CAST(id AS BLOB)) + coalesce(length(CAST(value AS BLOB)), 0)),"  \
    "   0) FROM messages WHERE user_id = users.id)"

/* The same since schema 10: renderings in chat_docs. */
#define USER_BYTES_RECOUNT                                                                         \
    "UPDATE users SET bytes ="                                                                     \
    " (SELECT coalesce(sum(length(CAST(state AS BLOB)) +"                                          \
    "   coalesce(length(CAST(shell AS BLOB)), 0)), 0)"                                             \
    "   FROM chat_bodies WHERE user_id = users.id) +"                                              \
    " (SELECT coalesce(sum(length(CAST(doc AS BLOB))), 0) FROM chat_docs"                          \
    "   WHERE user_id = users.id) +"                                                               \
    " (SELECT coalesce(sum(length(CAST(id AS BLOB)) + coalesce(length(CAST(value AS BLOB)), 0)),"  \
    "   0) FROM messages WHERE user_id = users.id)"

/* The same since schema 12: message packs (docs/storage.md, "Packs"). */
#define USER_BYTES_RECOUNT_12                                                                      \
    USER_BYTES_RECOUNT " + (SELECT coalesce(sum(length(data)), 0) FROM packs"                      \
                       "   WHERE user_id = users.id)"

/* Forward migrations: entry i takes the schema from version i to i + 1. */
static const char *const MIGRATIONS[] = {
    /* 0 -> 1: users, their chats as merge state plus the rendered document */
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  clock INTEGER NOT NULL DEFAULT 0,"
    "  last_sync_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE chats ("
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  id TEXT NOT NULL,"
    "  live INTEGER NOT NULL,"
    "  state TEXT NOT NULL,"
    "  doc TEXT NOT NULL,"
    "  deleted_counter INTEGER NOT NULL DEFAULT 0,"
    "  deleted_device TEXT NOT NULL DEFAULT '',"
    "  PRIMARY KEY (user_id, id)) WITHOUT ROWID;",
    /* 1 -> 2: when each tombstone was made, so old ones can be purged */
    "ALTER TABLE chats ADD COLUMN deleted_at_ms INTEGER NOT NULL DEFAULT 0;"
    "UPDATE chats SET deleted_at_ms = coalesce(json_extract(state, '$.d[0]'), 0)"
    "  WHERE live = 0;"
    "CREATE INDEX chats_tombstones ON chats(deleted_at_ms) WHERE live = 0;",
    /* 2 -> 3: the change sequence, and messages in rows of their own so one
     * new message is one row written and one row pulled */
    "ALTER TABLE users ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE users ADD COLUMN purged_seq INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE chats ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE messages ("
    "  user_id INTEGER NOT NULL,"
    "  chat_id TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  value TEXT," /* the message JSON; NULL = deleted */
    "  ts INTEGER NOT NULL, lamport INTEGER NOT NULL, device TEXT NOT NULL,"
    "  order_ts INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL, origin TEXT NOT NULL,"
    "  PRIMARY KEY (user_id, chat_id, id),"
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE"
    ") WITHOUT ROWID;"
    "INSERT INTO messages SELECT c.user_id, c.id, json_extract(m.value, '$[0]'),"
    "  CASE json_type(m.value, '$[1]') WHEN 'null' THEN NULL"
    "    ELSE json_extract(m.value, '$[1]') END,"
    "  json_extract(m.value, '$[2][0]'), json_extract(m.value, '$[2][1]'),"
    "  json_extract(m.value, '$[2][2]'), json_extract(m.value, '$[3]'), 1, ''"
    "  FROM chats c, json_each(c.state, '$.m') m;"
    "UPDATE chats SET state = json_remove(state, '$.m'), seq = 1;"
    "UPDATE users SET seq = 1 WHERE id IN (SELECT user_id FROM chats);"
    "CREATE INDEX chats_by_seq ON chats(user_id, seq);"
    "CREATE INDEX messages_by_seq ON messages(user_id, chat_id, seq);",
    /* 3 -> 4: bytes stored per user, for quotas */
    "ALTER TABLE users ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;"
    "UPDATE users SET bytes ="
    " (SELECT coalesce(sum(length(state) + length(doc)), 0) FROM chats WHERE user_id = users.id) +"
    " (SELECT coalesce(sum(length(id) + coalesce(length(value), 0)), 0) FROM messages"
    "   WHERE user_id = users.id);",
    /* 4 -> 5: the big columns move to a table of their own. SQLite reaches a
     * column stored after a large one by walking its overflow pages, so every
     * listing of chats read every rendered chat; chats keeps the small
     * columns (state and doc stay, empty). Also: the hash of a chat's bytes
     * as a client last sent it, when that sync left it as sent. */
    "CREATE TABLE chat_bodies ("
    "  user_id INTEGER NOT NULL, chat_id TEXT NOT NULL,"
    "  state TEXT NOT NULL," /* small since schema 3: first */
    "  doc TEXT NOT NULL,"
    "  PRIMARY KEY (user_id, chat_id),"
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE);"
    "INSERT INTO chat_bodies SELECT user_id, id, state, doc FROM chats;"
    "UPDATE chats SET state = '', doc = '';"
    "ALTER TABLE chats ADD COLUMN sent_hash INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE chats ADD COLUMN sent_seq INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX chats_by_sent_hash ON chats(user_id, sent_hash) WHERE sent_hash <> 0;",
    /* 5 -> 6: messages keep the order they were first received (numbered
     * per chat; existing ones in the id order they were shown in, the
     * chat's next number in its state as "n"), a time-only write placed in
     * the Lamport order is flagged `timed`, and each full-state device's
     * base per chat (docs/merge.md, "The base rule"): the hashes of the
     * values it holds, 8 bytes each, native order. */
    "ALTER TABLE messages ADD COLUMN timed INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE messages ADD COLUMN received INTEGER NOT NULL DEFAULT 0;"
    "CREATE TEMP TABLE msg_rank AS SELECT user_id, chat_id, id,"
    "  row_number() OVER (PARTITION BY user_id, chat_id ORDER BY id) - 1 AS r FROM messages;"
    "UPDATE messages SET received = (SELECT r FROM msg_rank k WHERE k.user_id ="
    "  messages.user_id AND k.chat_id = messages.chat_id AND k.id = messages.id);"
    "DROP TABLE msg_rank;"
    "UPDATE chat_bodies SET state = json_set(state, '$.n', (SELECT count(*) FROM messages m"
    "  WHERE m.user_id = chat_bodies.user_id AND m.chat_id = chat_bodies.chat_id));"
    "CREATE TABLE bases ("
    "  user_id INTEGER NOT NULL, device TEXT NOT NULL, chat_id TEXT NOT NULL,"
    "  hashes BLOB NOT NULL, seq INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (user_id, chat_id, device),"
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE"
    ") WITHOUT ROWID;"
    /* the base of a device sent the chat whole, kept with its rendering */
    "ALTER TABLE chat_bodies ADD COLUMN hashes BLOB;",
    /* 6 -> 7: accounts: minted tokens (revocable by id), what is refused of a user
     * by name (disabled; tokens issued before a time), and the generation
     * a running server polls to notice a change made by another process */
    "CREATE TABLE tokens ("
    "  jti TEXT PRIMARY KEY, user_name TEXT NOT NULL,"
    "  issued_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,"
    "  revoked_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX tokens_by_user ON tokens(user_name, issued_ms);"
    "CREATE TABLE accounts ("
    "  name TEXT PRIMARY KEY, disabled INTEGER NOT NULL DEFAULT 0,"
    "  tokens_before_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE access_state (id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  generation INTEGER NOT NULL);"
    "INSERT INTO access_state VALUES (1, 0);"
    /* the device registry: every device of a user that synced, and the
     * change sequence it has applied */
    "CREATE TABLE devices ("
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  device_id TEXT NOT NULL,"
    "  first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,"
    "  client TEXT NOT NULL DEFAULT '', protocol TEXT NOT NULL,"
    "  acked_seq INTEGER NOT NULL DEFAULT -1,"
    "  PRIMARY KEY (user_id, device_id)) WITHOUT ROWID;",
    /* 7 -> 8: the "sent unchanged" skip keyed by (chat, device): the XXH3
     * hash of a chat's bytes as each device last sent them, the hash of
     * their content (ps_json_value_hash: the same data in other bytes), and
     * the chat's seq then. chats.sent_hash/sent_seq (one per chat: devices sending
     * their own bytes replaced each other's) are no longer used; their
     * ps__hash64 values could not match an XXH3 hash, so nothing is copied. */
    "CREATE TABLE sent ("
    "  user_id INTEGER NOT NULL, chat_id TEXT NOT NULL, device TEXT NOT NULL,"
    "  hash INTEGER NOT NULL, content INTEGER NOT NULL, seq INTEGER NOT NULL,"
    "  PRIMARY KEY (user_id, chat_id, device),"
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE"
    ") WITHOUT ROWID;"
    "CREATE INDEX sent_by_hash ON sent(user_id, device, hash);"
    "DROP INDEX chats_by_sent_hash;",
    /* 8 -> 9: message values compressed, and legacy renderings of chats
     * put together from the message rows when none is kept. Each user's
     * zstd dictionary, trained from their own messages (value_codec.h);
     * message values become zstd frames (BLOB) made with it, plain TEXT
     * values stay readable; migrate() trains and compresses per user
     * (train_user) and recounts bytes. A chat saved without its rendering
     * (a v2 push) keeps its "shell" (the rendering without messages,
     * doc_render.h) so a legacy read splices the rows into it without
     * parsing anything; NULL: none (work it out from `state`). */
    "CREATE TABLE value_dicts ("
    "  user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,"
    "  id INTEGER NOT NULL," /* the dictionary's id, in every frame made with it */
    "  dict BLOB NOT NULL);"
    "ALTER TABLE chat_bodies ADD COLUMN shell TEXT;",
    /* 9 -> 10: renderings in a table of their own, `chat_docs`, and
     * compressed (doc_codec.h): `doc` is an LZ4 frame (BLOB) or, when short
     * or not worth one, the text (TEXT); a chat without a rendering has no
     * row. chat_bodies keeps the small columns: a rendering of tens of KB
     * filled a page of its own, so reading a chat's state or `hashes`
     * (copied into a device's base for every chat a fresh device is sent)
     * read a 16 KiB page per chat; now they share pages. migrate()
     * recounts bytes. */
    "CREATE TABLE chat_docs ("
    "  user_id INTEGER NOT NULL, chat_id TEXT NOT NULL,"
    "  doc NOT NULL,"
    "  PRIMARY KEY (user_id, chat_id),"
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE);"
    "INSERT INTO chat_docs(user_id, chat_id, doc)"
    "  SELECT user_id, chat_id, ps_pack_doc(doc) FROM chat_bodies WHERE doc <> '';"
    "CREATE TABLE chat_bodies_10 ("
    "  user_id INTEGER NOT NULL, chat_id TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  hashes BLOB," /* the base of a device sent the rendering (schema 6) */
    "  shell TEXT,"  /* the rendering without messages, when none is kept (schema 9) */
    "  PRIMARY KEY (user_id, chat_id),"
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE);"
    "INSERT INTO chat_bodies_10(user_id, chat_id, state, hashes, shell)"
    "  SELECT user_id, chat_id, state, hashes, shell FROM chat_bodies;"
    "DROP TABLE chat_bodies;"
    "ALTER TABLE chat_bodies_10 RENAME TO chat_bodies;"
    /* Bases keyed by device first: a fresh device's pull writes one base
     * per chat it is sent, and keyed by chat first those rows went between
     * every other device's, rewriting the whole table's pages each time;
     * now they are appended together. The index finds a chat's bases when
     * the chat goes (the foreign key's cascade). */
    "CREATE TABLE bases_10 ("
    "  user_id INTEGER NOT NULL, device TEXT NOT NULL, chat_id TEXT NOT NULL,"
    "  hashes BLOB NOT NULL, seq INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (user_id, device, chat_id),"
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE"
    ") WITHOUT ROWID;"
    "INSERT INTO bases_10(user_id, device, chat_id, hashes, seq)"
    "  SELECT user_id, device, chat_id, hashes, seq FROM bases;"
    "DROP TABLE bases;"
    "ALTER TABLE bases_10 RENAME TO bases;"
    "CREATE INDEX bases_by_chat ON bases(user_id, chat_id);",
    /* 10 -> 11: smaller message rows and index (docs/storage.md, "Hot and
     * cold rows"). A message's `origin` is NULL when it is its stamp's
     * device (most rows: 37 bytes each). The index by sequence number
     * holds only "hot" rows: a chat's rows written when the chat was new
     * are cold, and every one of them has a sequence number at most the
     * chat's `cold_seq`; a row written later is hot. A device asking for
     * what changed after a cursor at or past `cold_seq` needs hot rows
     * only (the index); one before it reads the whole chat, which then
     * all changed anyway. Existing rows: those of a chat's first sequence
     * number are cold. The copy in key order also fills the table's pages. */
    "ALTER TABLE chats ADD COLUMN cold_seq INTEGER NOT NULL DEFAULT 0;"
    "UPDATE chats SET cold_seq = coalesce((SELECT min(seq) FROM messages m"
    "  WHERE m.user_id = chats.user_id AND m.chat_id = chats.id), 0);"
    "CREATE TABLE messages_11 ("
    "  user_id INTEGER NOT NULL,"
    "  chat_id TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  value TEXT," /* the message JSON, a zstd frame (BLOB) or text; NULL = deleted */
    "  ts INTEGER NOT NULL, lamport INTEGER NOT NULL, device TEXT NOT NULL,"
    "  order_ts INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL, origin TEXT," /* NULL: the same as device */
    "  timed INTEGER NOT NULL DEFAULT 0, received INTEGER NOT NULL DEFAULT 0,"
    "  hot INTEGER NOT NULL DEFAULT 1,"
    "  PRIMARY KEY (user_id, chat_id, id),"
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE"
    ") WITHOUT ROWID;"
    "INSERT INTO messages_11 SELECT m.user_id, m.chat_id, m.id, m.value, m.ts, m.lamport,"
    "  m.device, m.order_ts, m.seq, nullif(m.origin, m.device), m.timed, m.received,"
    "  m.seq > c.cold_seq"
    "  FROM messages m JOIN chats c ON c.user_id = m.user_id AND c.id = m.chat_id"
    "  ORDER BY m.user_id, m.chat_id, m.id;"
    "DROP TABLE messages;"
    "ALTER TABLE messages_11 RENAME TO messages;"
    "CREATE INDEX messages_hot ON messages(user_id, chat_id, seq) WHERE hot;",
    /* 11 -> 12: packs (docs/storage.md, "Packs"). The cold rows of a chat
     * saved without a rendering (a v2 push of a new chat) are one zstd
     * frame (pack_codec.h) instead of a row each: their keys, stamps and
     * marks compress with them, and what a chat of 50 messages weighs
     * drops from ~18 KB of rows to ~9 KB. The frame is cut into pieces of
     * PACK_PIECE bytes in a table with a rowid, appended in order, so
     * pages fill (a 9 KB row alone on a 16 KiB page would waste 7 KB).
     * A row of `messages` with the same id as a packed message shadows it.
     * Rows already there stay rows (read as before): a chat is packed when
     * it is saved new. */
    "CREATE TABLE packs ("
    "  id INTEGER PRIMARY KEY,"
    "  user_id INTEGER NOT NULL, chat_id TEXT NOT NULL,"
    "  data BLOB NOT NULL," /* a piece of the frame; a chat's pieces in id order */
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE);"
    "CREATE INDEX packs_by_chat ON packs(user_id, chat_id);"
    /* A user's message tombstones, counted whenever a v2 device's ack
     * moves (devices.c: whether a collection is worth a write) and
     * collected by it: without this those read every message row of the
     * user (3 ms a request at 20,000 rows; docs/performance.md, "packs") */
    "CREATE INDEX messages_tombstones ON messages(user_id, seq) WHERE value IS NULL;",
    /* 12 -> 13: no table changes. Packs written from here on may start
     * with a prefix an older polysyncd does not know (pack_codec.h: the
     * based prefix, and the summary that lets a read skip a pack owing
     * nothing); the version number is what makes an older polysyncd refuse
     * the store at open ("this polysyncd knows up to 12") instead of
     * reading such a chat as corrupt. Packs already stored read as before. */
    "SELECT 1;",
    /* 13 -> 14: no table changes. A chat a legacy save makes new may keep
     * its pack as an LZ4 frame (doc_codec.h) and no rendering: legacy
     * reads put it together from its shell and pack (docs/storage.md,
     * "Packs"). As for 13, the number makes an older polysyncd refuse the
     * store rather than read such a pack as corrupt. */
    "SELECT 1;",
};
#define SCHEMA_VERSION ((int)(sizeof MIGRATIONS / sizeof *MIGRATIONS))
#define PS_STR_(x) #x
#define PS_STR(x) PS_STR_(x)

enum {
    Q_MSG_ALL,
    Q_MSG_ONE,
    Q_MSG_PUT,
    Q_MSG_SINCE,
    Q_MSG_SINCE_ALL,
    Q_COLD_SEQ,
    Q_COLD_SET,
    Q_PACK_GET,
    Q_PACK_PUT,
    Q_PACK_DEL,
    Q_MSG_IDS,
    Q_USER_DEL_PACKS,
    Q_PACK_SIZES,
    Q_ROW_SIZES,
    Q_ROWS_FOLD,
    Q_COLD_RAISE,
    Q_CHAT_NEXT,
    Q_PURGE_MARK,
    Q_USER_GET,
    Q_USER_ADD,
    Q_USER_SAVE,
    Q_CHAT_GET,
    Q_BODY_PUT,
    Q_DOC_PUT,
    Q_DOC_DEL,
    Q_CHAT_PUT,
    Q_CHAT_EACH,
    Q_CHAT_EACH_AFTER,
    Q_CHAT_DOC,
    Q_DOC_MSGS,
    Q_DICT_ID,
    Q_STATS,
    Q_PURGE,
    Q_USER_LIST,
    Q_SENT_FIND,
    Q_SENT_SET,
    Q_SENT_CHAT_SEQ,
    Q_SENT_UPDATE,
    Q_SENT_OF,
    Q_CHAT_SIZE,
    Q_MSG_SIZE,
    Q_USER_GROW,
    Q_USER_BYTES,
    Q_RECOUNT,
    Q_USER_DEL_MSGS,
    Q_USER_DEL_CHATS,
    Q_USER_DEL,
    Q_USER_SEEN,
    Q_USER_NAMED,
    Q_DEVICE_GET,
    Q_BASE_GET,
    Q_BASE_PUT,
    Q_USER_DEL_BASES,
    Q_BASE_COPY,
    /* Transaction control too: sqlite3_exec would compile these again on
     * every request. */
    Q_BEGIN,
    Q_BEGIN_WRITE,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_COUNT
};

static const char *const QUERIES[Q_COUNT] = {
    [Q_MSG_ALL] = "SELECT " MSG_COLUMNS " FROM messages WHERE user_id = ?1 AND chat_id = ?2",
    [Q_MSG_ONE] = "SELECT " MSG_COLUMNS " FROM messages"
                  " WHERE user_id = ?1 AND chat_id = ?2 AND id = ?3",
    /* Upserts, not INSERT OR REPLACE: with foreign keys on, a REPLACE
     * may delete a row (a child of chats) before inserting, so SQLite
     * makes it a multi-write statement with a statement journal, and
     * every one of them copied each 16 KiB page it touched, already
     * dirty in the transaction, to a sub-journal file: 5.4 GB written for
     * the 63 MB first upload (docs/performance.md, "upload: ..."). An
     * upsert updates in place; same rows, same foreign keys. */
    /* ?13: cold (0) when the chat is new in this save (schema 11); a row
     * written again is hot */
    [Q_MSG_PUT] = "INSERT INTO messages(user_id, chat_id, id, value, ts, lamport,"
                  " device, order_ts, seq, origin, timed, received, hot)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, nullif(?10, ?7), ?11, ?12, ?13)"
                  " ON CONFLICT(user_id, chat_id, id) DO UPDATE SET value = excluded.value,"
                  " ts = excluded.ts, lamport = excluded.lamport, device = excluded.device,"
                  " order_ts = excluded.order_ts, seq = excluded.seq, origin = excluded.origin,"
                  " timed = excluded.timed, received = excluded.received, hot = 1",
    /* after the chat's cold_seq: only hot rows can have changed */
    [Q_MSG_SINCE] = "SELECT " MSG_COLUMNS " FROM messages INDEXED BY messages_hot"
                    " WHERE user_id = ?1 AND chat_id = ?2 AND hot AND seq > ?3"
                    " AND (?4 IS NULL OR coalesce(origin, device) <> ?4 OR seq <= ?5)"
                    " ORDER BY order_ts, received, id",
    /* The same from before the chat's cold_seq (a first pull): its rows
     * in primary key order, one walk of the table's b-tree; cold rows
     * changed after the cursor, hot ones are filtered. `+seq` keeps the
     * planner off the index, which for every row would then look the row
     * up by its key again. */
    [Q_MSG_SINCE_ALL] = "SELECT " MSG_COLUMNS " FROM messages"
                        " WHERE user_id = ?1 AND chat_id = ?2 AND +seq > ?3"
                        " AND (?4 IS NULL OR coalesce(origin, device) <> ?4 OR seq <= ?5)"
                        " ORDER BY order_ts, received, id",
    [Q_COLD_SEQ] = "SELECT cold_seq FROM chats WHERE user_id = ?1 AND id = ?2",
    [Q_COLD_SET] = "UPDATE chats SET cold_seq = ?3 WHERE user_id = ?1 AND id = ?2",
    [Q_PACK_GET] = "SELECT data FROM packs WHERE user_id = ?1 AND chat_id = ?2 ORDER BY id",
    [Q_PACK_PUT] = "INSERT INTO packs(user_id, chat_id, data) VALUES (?1, ?2, ?3)",
    [Q_PACK_DEL] = "DELETE FROM packs WHERE user_id = ?1 AND chat_id = ?2",
    /* the rows of a chat, which shadow its packed messages of the same id */
    [Q_MSG_IDS] = "SELECT id FROM messages WHERE user_id = ?1 AND chat_id = ?2",
    [Q_USER_DEL_PACKS] = "DELETE FROM packs WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
    /* what a chat's pack weighs, then its live rows (repack_if_due): the
     * rows are weighed only for a chat that has a pack */
    [Q_PACK_SIZES] = "SELECT coalesce(sum(length(data)), 0) FROM packs"
                     " WHERE user_id = ?1 AND chat_id = ?2",
    [Q_ROW_SIZES] =
        "SELECT count(*), coalesce(sum(length(CAST(id AS BLOB)) + length(CAST(value AS BLOB))), 0)"
        " FROM messages WHERE user_id = ?1 AND chat_id = ?2 AND value IS NOT NULL",
    [Q_ROWS_FOLD] = "DELETE FROM messages WHERE user_id = ?1 AND chat_id = ?2"
                    " AND value IS NOT NULL",
    [Q_COLD_RAISE] = "UPDATE chats SET cold_seq = max(cold_seq, ?3) WHERE user_id = ?1 AND id = ?2",
    /* with the chat's cold_seq, for messages_since's next call (cold_hint) */
    [Q_CHAT_NEXT] = "SELECT b.state, c.seq, c.cold_seq, c.id FROM chats c JOIN chat_bodies b"
                    " ON b.user_id = c.user_id AND b.chat_id = c.id"
                    " WHERE c.user_id = ?1 AND c.seq > ?2"
                    " ORDER BY seq LIMIT 1",
    [Q_PURGE_MARK] = "UPDATE users SET purged_seq = max(purged_seq, (SELECT max(seq) FROM chats"
                     " WHERE user_id = users.id AND live = 0 AND deleted_at_ms < ?1))"
                     " WHERE id IN (SELECT user_id FROM chats WHERE live = 0"
                     " AND deleted_at_ms < ?1)",
    [Q_USER_GET] = "SELECT id, clock, last_sync_ms, seq, purged_seq, bytes FROM users"
                   " WHERE name = ?1",
    [Q_USER_ADD] = "INSERT INTO users(name) VALUES (?1)",
    [Q_USER_SAVE] = "UPDATE users SET clock = ?2, last_sync_ms = ?3, seq = ?4 WHERE id = ?1",
    [Q_CHAT_GET] = "SELECT state FROM chat_bodies WHERE user_id = ?1 AND chat_id = ?2",
    [Q_BODY_PUT] = "INSERT INTO chat_bodies(user_id, chat_id, state, hashes, shell)"
                   " VALUES (?1, ?2, ?3, ?5, ?6)"
                   " ON CONFLICT(user_id, chat_id) DO UPDATE SET state = excluded.state,"
                   " hashes = excluded.hashes, shell = excluded.shell",
    [Q_DOC_PUT] = "INSERT INTO chat_docs(user_id, chat_id, doc) VALUES (?1, ?2, ?3)"
                  " ON CONFLICT(user_id, chat_id) DO UPDATE SET doc = excluded.doc",
    [Q_DOC_DEL] = "DELETE FROM chat_docs WHERE user_id = ?1 AND chat_id = ?2",
    [Q_CHAT_PUT] =
        "INSERT INTO chats(user_id, id, live, state, doc, deleted_counter,"
        " deleted_device, deleted_at_ms, seq) VALUES (?1, ?2, ?3, '', '', ?6, ?7, ?8, ?9)"
        " ON CONFLICT(user_id, id) DO UPDATE SET live = excluded.live,"
        " deleted_counter = excluded.deleted_counter,"
        " deleted_device = excluded.deleted_device,"
        " deleted_at_ms = excluded.deleted_at_ms,"
        " seq = CASE excluded.seq WHEN 0 THEN chats.seq ELSE excluded.seq END",
    /* Not joined with chat_bodies: SQLite would read every rendered chat
     * (overflow pages and all) for each row, wanted or not; a legacy sync
     * lists every chat and wants the bodies of few. */
    [Q_CHAT_EACH] = "SELECT id, live, deleted_counter, deleted_device, seq FROM chats"
                    " WHERE user_id = ?1 ORDER BY id",
    [Q_CHAT_EACH_AFTER] = "SELECT id, live, deleted_counter, deleted_device, seq FROM chats"
                          " WHERE user_id = ?1 AND id > ?2 ORDER BY id",
    /* a rendering (a frame or the text; '' none) or its parts
     * (doc_render.h): the shell or the state, then the live messages in
     * display order (ps__message_order_cmp's); `doc` is stored last
     * (schema 10), so shell and state cost no overflow walk. The last
     * column: whether the chat has message rows (a chat a legacy save made
     * new has its pack only: its rows are not looked for) */
    [Q_CHAT_DOC] = "SELECT d.doc, b.shell, b.state, EXISTS (SELECT 1 FROM messages m"
                   " WHERE m.user_id = b.user_id AND m.chat_id = b.chat_id)"
                   " FROM chat_bodies b LEFT JOIN chat_docs d"
                   " ON d.user_id = b.user_id AND d.chat_id = b.chat_id"
                   " WHERE b.user_id = ?1 AND b.chat_id = ?2",
    [Q_DOC_MSGS] = "SELECT value, order_ts, received, id FROM messages"
                   " WHERE user_id = ?1 AND chat_id = ?2"
                   " AND value IS NOT NULL ORDER BY order_ts, received, id",
    [Q_DICT_ID] = "SELECT id FROM value_dicts WHERE user_id = ?1",
    [Q_STATS] = "SELECT (SELECT count(*) FROM chats WHERE live = 1),"
                " (SELECT coalesce(max(last_sync_ms), 0) FROM users)",
    [Q_PURGE] = "DELETE FROM chats WHERE live = 0 AND deleted_at_ms < ?1",
    /* sizes in bytes, as chat_save counts them (length() of TEXT counts
     * characters) */
    [Q_CHAT_SIZE] = "SELECT length(CAST(state AS BLOB)) + coalesce(length(CAST(shell AS BLOB)), 0)"
                    " + coalesce((SELECT length(CAST(doc AS BLOB)) FROM chat_docs"
                    "   WHERE user_id = ?1 AND chat_id = ?2), 0) FROM chat_bodies"
                    " WHERE user_id = ?1 AND chat_id = ?2",
    [Q_MSG_SIZE] = "SELECT length(CAST(id AS BLOB)) + coalesce(length(CAST(value AS BLOB)), 0)"
                   " FROM messages"
                   " WHERE user_id = ?1 AND chat_id = ?2 AND id = ?3",
    [Q_USER_GROW] = "UPDATE users SET bytes = bytes + ?2 WHERE id = ?1",
    [Q_USER_BYTES] = "SELECT bytes FROM users WHERE id = ?1",
    [Q_RECOUNT] = USER_BYTES_RECOUNT_12,
    [Q_SENT_FIND] = "SELECT s.chat_id, c.seq = s.seq FROM sent s INDEXED BY sent_by_hash"
                    " JOIN chats c ON c.user_id = s.user_id AND c.id = s.chat_id"
                    " WHERE s.user_id = ?1 AND s.device = ?2 AND s.hash = ?3 LIMIT 1",
    /* A row of a chat the device never synced: the chat's seq read first
     * (Q_SENT_CHAT_SEQ), then one row by its key. As one INSERT ... SELECT,
     * SQLite kept a statement journal for it (a legacy first upload wrote
     * each new chat's pages to a temporary file again) */
    [Q_SENT_SET] = "INSERT INTO sent(user_id, chat_id, device, hash, content, seq)"
                   " VALUES (?1, ?3, ?2, ?4, ?5, ?6)"
                   " ON CONFLICT(user_id, chat_id, device) DO UPDATE SET hash = excluded.hash,"
                   " content = excluded.content, seq = excluded.seq",
    [Q_SENT_CHAT_SEQ] = "SELECT seq FROM chats WHERE user_id = ?1 AND id = ?2",
    /* The row of a chat the device synced before, changed in place: one
     * row by its key, so SQLite keeps no statement journal for it (the
     * upsert above, an INSERT ... SELECT, wrote each page it touched to a
     * temporary file first: 91 MB for the 2,000 chats of the reference
     * history re-sent in other bytes) */
    [Q_SENT_UPDATE] = "UPDATE sent SET hash = ?4, content = ?5,"
                      " seq = (SELECT seq FROM chats WHERE user_id = ?1 AND id = ?3)"
                      " WHERE user_id = ?1 AND chat_id = ?3 AND device = ?2",
    [Q_SENT_OF] = "SELECT s.content, c.seq = s.seq FROM sent s"
                  " JOIN chats c ON c.user_id = s.user_id AND c.id = s.chat_id"
                  " WHERE s.user_id = ?1 AND s.chat_id = ?3 AND s.device = ?2",
    [Q_USER_LIST] =
        "SELECT name, (SELECT count(*) FROM chats WHERE user_id = users.id AND live = 1)"
        " FROM users ORDER BY name",
    [Q_USER_DEL_MSGS] =
        "DELETE FROM messages WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
    [Q_USER_DEL_CHATS] = "DELETE FROM chats WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
    [Q_USER_DEL] = "DELETE FROM users WHERE name = ?1",
    /* max: a time a reader kept in memory may be older than one written */
    [Q_USER_SEEN] = "UPDATE users SET last_sync_ms = max(last_sync_ms, ?2) WHERE name = ?1",
    [Q_USER_NAMED] = "SELECT 1 FROM users WHERE name = ?1",
    /* kept prepared, unlike the other registry queries: on every legacy
     * re-sync that changes nothing (sync_legacy.c, registry_current) */
    [Q_DEVICE_GET] = "SELECT d.first_seen_ms, d.last_seen_ms, d.client, d.protocol, d.acked_seq"
                     " FROM devices d JOIN users u ON u.id = d.user_id"
                     " WHERE u.name = ?1 AND d.device_id = ?2",
    [Q_BASE_GET] = "SELECT seq, hashes FROM bases WHERE user_id = ?1 AND chat_id = ?2"
                   " AND device = ?3",
    [Q_BASE_PUT] = "INSERT INTO bases(user_id, chat_id, device, hashes, seq)"
                   " VALUES (?1, ?2, ?3, ?4, ?5)"
                   " ON CONFLICT(user_id, chat_id, device) DO UPDATE SET hashes = excluded.hashes,"
                   " seq = excluded.seq",
    /* base_copy reads the chat's hashes, then writes them with Q_BASE_PUT:
     * one row by its key. As one INSERT OR REPLACE ... SELECT, SQLite kept
     * a statement journal for it, and a fresh device's legacy pull (a base
     * copied for each chat it gets) wrote ~12,600 pages to a temporary
     * file (docs/performance.md, "lead: a fresh device's legacy pull") */
    [Q_BASE_COPY] = "SELECT hashes FROM chat_bodies"
                    " WHERE user_id = ?1 AND chat_id = ?2 AND hashes IS NOT NULL",
    [Q_USER_DEL_BASES] = "DELETE FROM bases WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
    [Q_BEGIN] = "BEGIN",
    [Q_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
};

/* Unwritten no-op sync times (see sqlite_user_seen) are written by the next
 * commit once the oldest is this old (or the last try this long ago), or
 * once this many users have one. */
#define SEEN_FLUSH_MS 1000
#define SEEN_FLUSH_USERS 64

/* A user's last sync time, not written yet. Keyed by name, not id: a user
 * deleted by `polysyncd user delete` meanwhile may see its id reused. */
typedef struct seen_user {
    char *name;
    int64_t ms;
    int64_t written_ms; /* what the open write transaction writes; 0 none */
} seen_user;

/* The cold_seq of the chat chat_next_changed last gave on a connection:
 * messages_since, asked next for that chat, needs no look-up of its own. */
typedef struct cold_hint {
    int64_t user;
    char *chat_id; /* NULL: none */
    int64_t cold_seq;
} cold_hint;

/* Read connections kept open when idle (more are opened while needed). */
#define READERS_KEPT 16

/* A read connection, with its own prepared statements. */
typedef struct reader {
    sqlite3 *db;
    sqlite3_stmt *stmt[Q_COUNT];
    sqlite3_stmt *snapshot; /* a first read: takes the WAL snapshot at BEGIN */
    cold_hint hint;
    struct reader *next; /* in the idle list */
} reader;

typedef struct sqlite_store {
    ps_store base;
    /* The writer connection: write transactions, probe, migrations. */
    sqlite3 *db;
    sqlite3_stmt *stmt[Q_COUNT];
    cold_hint hint;       /* the writer's */
    pthread_mutex_t lock; /* held by the writer from BEGIN to COMMIT */
    /* The calling thread's transaction: its reader, or WRITER. */
    pthread_key_t current;
    char *path;
    pthread_mutex_t pool_lock; /* guards idle, nidle */
    reader *idle;
    size_t nidle;
    /* Guarded by seen_lock (readers add to it while the writer writes). */
    pthread_mutex_t seen_lock;
    /* Message bytes saved plain by users without a dictionary since the
     * last try to train one (train_user); guarded by `lock` (the writer's). */
    size_t plain_since_training;
    size_t train_after; /* ...and how many make the next try (0: a quarter of
                         * PS_VALUE_TRAIN_BYTES) */
    seen_user *seen;
    size_t nseen, seen_cap;
    int64_t seen_flush_at; /* monotonic ms from which a commit writes them */
    /* Checkpoints the WAL on a thread of its own (sqlite_checkpointer.h);
     * NULL: SQLite's automatic checkpoint at commit. */
    ps_checkpointer *checkpointer;
    /* Users' rows as read, while nothing is committed (sqlite_quiet.h);
     * NULL until the store is open, or when out of memory. */
    ps_quiet *quiet;
    /* The schema the store has (or the one a migration step is making). */
    int schema;
    /* Set once SQLite reports a corrupt file (or the start's quick_check
     * does): /health then fails until the store is reopened. */
    char corrupt[200];
} sqlite_store;

/* The thread-specific value of a write transaction (readers are theirs). */
static char writer_mark;
#define WRITER ((void *)&writer_mark)

/* The calling thread's read connection, or NULL (writer, or none). */
static reader *current_reader(sqlite_store *s)
{
    void *c = pthread_getspecific(s->current);
    return c == WRITER ? NULL : c;
}

static bool writing(sqlite_store *s)
{
    return pthread_getspecific(s->current) == WRITER;
}

/* The connection the calling thread's transaction uses. */
static sqlite3 *cur_db(sqlite_store *s)
{
    reader *r = current_reader(s);
    return r ? r->db : s->db;
}

/* The calling thread's connection's cold_hint. */
static cold_hint *conn_hint(sqlite_store *s)
{
    reader *r = current_reader(s);
    return r ? &r->hint : &s->hint;
}

static void hint_clear(cold_hint *h)
{
    free(h->chat_id);
    h->chat_id = NULL;
}

static ps_code db_error(sqlite_store *s, ps_error *err, const char *what)
{
    /* The detail goes to the operator's log via err->message; the HTTP layer
     * never shows it to clients. */
    sqlite3 *db = cur_db(s);
    int code = sqlite3_errcode(db);
    if ((code == SQLITE_CORRUPT || code == SQLITE_NOTADB) && !s->corrupt[0])
        snprintf(s->corrupt, sizeof s->corrupt, "%s", sqlite3_errmsg(db));
    return ps_error_set(err, code == SQLITE_BUSY ? PS_ERR_BUSY : PS_ERR_STORE, -1, "",
                        "sqlite %s: %s", what, sqlite3_errmsg(db));
}

/* Statement q of the calling thread's connection, reset. */
static sqlite3_stmt *stmt(sqlite_store *s, int q)
{
    reader *r = current_reader(s);
    sqlite3_stmt *st = r ? r->stmt[q] : s->stmt[q];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static ps_code exec(sqlite_store *s, const char *sql, ps_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        ps_error_set(err, PS_ERR_STORE, -1, "", "sqlite: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return PS_ERR_STORE;
    }
    return PS_OK;
}

static int schema_version(sqlite_store *s)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT max(version) FROM schema_version", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/*
 * Compression of message values (schema 9): each user's zstd dictionary,
 * trained from their own first PS_VALUE_TRAIN_BYTES of messages, in
 * value_dicts; values of users without one stay plain. These run rarely
 * (a dictionary loaded once per thread, trained once per user), so their
 * statements are prepared when used.
 */

/* ps_value_dict_fn over the open transaction: dictionary `id` of `user`. */
static ps_code load_dict(void *ctx, int64_t user, uint32_t id, ps_dynbuf *dict)
{
    sqlite_store *s = ctx;
    sqlite3_stmt *st = NULL;
    ps_code rc = PS_ERR_STORE;
    if (sqlite3_prepare_v2(cur_db(s), "SELECT dict FROM value_dicts WHERE user_id = ?1 AND id = ?2",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, user);
        sqlite3_bind_int64(st, 2, id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            ps__dynbuf_reset(dict);
            rc = ps__dynbuf_add(dict, sqlite3_column_blob(st, 0),
                                (size_t)sqlite3_column_bytes(st, 0));
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* ps_pack_value(user, dict id, value): the value as stored with that
 * dictionary (plain when not worth a frame). */
static void sql_pack_value(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    (void)argc;
    if (sqlite3_value_type(argv[2]) != SQLITE_TEXT) {
        sqlite3_result_value(cx, argv[2]);
        return;
    }
    const char *text = (const char *)sqlite3_value_text(argv[2]);
    size_t len = (size_t)sqlite3_value_bytes(argv[2]);
    ps_dynbuf frame;
    ps__dynbuf_init(&frame, SIZE_MAX - 1);
    bool packed = false;
    ps_code rc = text ? ps_value_pack(text, len, sqlite3_value_int64(argv[0]),
                                      (uint32_t)sqlite3_value_int64(argv[1]), load_dict,
                                      sqlite3_user_data(cx), &frame, &packed)
                      : PS_ERR_NOMEM;
    if (rc == PS_ERR_NOMEM)
        sqlite3_result_error_nomem(cx);
    else if (rc != PS_OK)
        sqlite3_result_error(cx, "compressing a message failed", -1);
    else if (packed)
        sqlite3_result_blob(cx, frame.data, (int)frame.len, SQLITE_TRANSIENT);
    else
        sqlite3_result_value(cx, argv[2]);
    ps__dynbuf_free(&frame);
}

/* ps_pack_doc(doc): a rendering as schema 10 stores it (doc_codec.h): a
 * frame, or the text when not worth one (and '' as it is). */
static void sql_pack_doc(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    (void)argc;
    if (sqlite3_value_type(argv[0]) != SQLITE_TEXT) {
        sqlite3_result_value(cx, argv[0]);
        return;
    }
    const char *text = (const char *)sqlite3_value_text(argv[0]);
    size_t len = (size_t)sqlite3_value_bytes(argv[0]);
    const void *frame = NULL;
    size_t frame_len = 0;
    bool packed = false;
    ps_code rc = text ? ps_doc_pack(text, len, &frame, &frame_len, &packed) : PS_ERR_NOMEM;
    if (rc == PS_ERR_NOMEM)
        sqlite3_result_error_nomem(cx);
    else if (rc != PS_OK)
        sqlite3_result_error(cx, "compressing a rendering failed", -1);
    else if (packed)
        sqlite3_result_blob(cx, frame, (int)frame_len, SQLITE_TRANSIENT);
    else
        sqlite3_result_value(cx, argv[0]);
}

/* Runs one statement of `sql` with ?1 = user (and ?2 = id); PS_OK when done. */
static ps_code run_user_sql(sqlite_store *s, const char *sql, int64_t user, int64_t id,
                            ps_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_error(s, err, "compressing messages");
    sqlite3_bind_int64(st, 1, user);
    if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_int64(st, 2, id);
    int r = sqlite3_step(st);
    ps_code rc = r == SQLITE_DONE ? PS_OK : db_error(s, err, "compressing messages");
    sqlite3_finalize(st);
    return rc;
}

/* Adds samples to train on from the user's packs (their messages of
 * PS_VALUE_PACK_MIN to PS_VALUE_SAMPLE_MAX bytes) until there are
 * PS_VALUE_TRAIN_BYTES: a user whose chats all came new in v2 pushes has
 * few rows of their own. */
static ps_code sample_packs(sqlite_store *s, int64_t user, ps_dynbuf *samples, size_t **sizes,
                            size_t *nsizes, size_t *cap, ps_error *err);

/*
 * Gives `user` a dictionary when they have none and PS_VALUE_TRAIN_BYTES of
 * plain message values to train it on, then stores their plain values
 * with it; *id = the user's dictionary (0: none yet). Inside the open
 * write transaction: the dictionary and the frames made with it commit or
 * roll back together.
 */
static ps_code train_user(sqlite_store *s, int64_t user, uint32_t *id, ps_error *err)
{
    *id = 0;
    sqlite3_stmt *st = NULL;
    /* typeof() and length() are read from the row's header: values of
     * other sizes are never loaded, however long (a long value is a poor
     * sample, and reading them all would fill the page cache). */
    if (sqlite3_prepare_v2(s->db,
                           "SELECT value FROM messages WHERE user_id = ?1"
                           " AND typeof(value) = 'text' AND length(value) BETWEEN ?2 AND ?3"
                           " LIMIT 100000",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(s, err, "reading messages to train on");
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_int(st, 2, PS_VALUE_PACK_MIN);
    sqlite3_bind_int(st, 3, PS_VALUE_SAMPLE_MAX);
    ps_dynbuf samples;
    ps__dynbuf_init(&samples, 2 * PS_VALUE_TRAIN_BYTES);
    size_t *sizes = NULL, nsizes = 0, cap = 0;
    ps_code rc = PS_OK;
    int r;
    while (rc == PS_OK && samples.len < PS_VALUE_TRAIN_BYTES &&
           (r = sqlite3_step(st)) == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        if (nsizes == cap) {
            cap = cap ? 2 * cap : 1024;
            size_t *grown = realloc(sizes, cap * sizeof *sizes);
            if (!grown) {
                rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
                break;
            }
            sizes = grown;
        }
        if (len > PS_VALUE_TRAIN_BYTES - samples.len)
            break; /* enough */
        if ((rc = ps__dynbuf_add(&samples, sqlite3_column_blob(st, 0), len)) != PS_OK)
            ps_error_set(err, rc, -1, "", "out of memory");
        else
            sizes[nsizes++] = len;
    }
    sqlite3_finalize(st);
    if (rc == PS_OK && s->schema >= 12 && samples.len < PS_VALUE_TRAIN_BYTES)
        rc = sample_packs(s, user, &samples, &sizes, &nsizes, &cap, err);
    ps_dynbuf dict;
    ps__dynbuf_init(&dict, PS_VALUE_DICT_BYTES);
    uint32_t fresh = 0;
    ps_code trained = PS_ERR_INVALID;
    if (rc == PS_OK && samples.len >= PS_VALUE_TRAIN_BYTES / 2)
        trained = ps_value_train(samples.data, sizes, (unsigned)nsizes, &dict, &fresh);
    ps__dynbuf_free(&samples);
    free(sizes);
    if (rc == PS_OK && trained == PS_OK) {
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO value_dicts(user_id, id, dict) VALUES (?1, ?2, ?3)", -1,
                               &st, NULL) != SQLITE_OK)
            rc = db_error(s, err, "saving a dictionary");
        else {
            sqlite3_bind_int64(st, 1, user);
            sqlite3_bind_int64(st, 2, fresh);
            sqlite3_bind_blob(st, 3, dict.data, (int)dict.len, SQLITE_STATIC);
            rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving a dictionary");
            sqlite3_finalize(st);
        }
        if (rc == PS_OK)
            rc = run_user_sql(s,
                              "UPDATE messages SET value = ps_pack_value(?1, ?2, value)"
                              " WHERE user_id = ?1 AND typeof(value) = 'text'"
                              " AND length(CAST(value AS BLOB)) >= " PS_STR(PS_VALUE_PACK_MIN),
                              user, fresh, err);
        if (rc == PS_OK)
            rc = run_user_sql(s,
                              s->schema >= 12   ? USER_BYTES_RECOUNT_12 " WHERE id = ?1"
                              : s->schema >= 10 ? USER_BYTES_RECOUNT " WHERE id = ?1"
                                                : USER_BYTES_RECOUNT_9 " WHERE id = ?1",
                              user, 0, err);
        if (rc == PS_OK)
            *id = fresh;
    } else if (trained == PS_ERR_IO && rc == PS_OK) {
        rc = ps_error_set(err, PS_ERR_IO, -1, "", "no random numbers for a dictionary id");
    }
    ps__dynbuf_free(&dict);
    return rc; /* too little to train on: stays plain, PS_OK */
}

/* The user's dictionary id, 0 when none. */
static ps_code user_dict(sqlite_store *s, int64_t user, uint32_t *id, ps_error *err)
{
    sqlite3_stmt *st = stmt(s, Q_DICT_ID);
    sqlite3_bind_int64(st, 1, user);
    int r = sqlite3_step(st);
    *id = r == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "reading a dictionary");
}

/* After migration 7 -> 8: every user's dictionary and frames. */
static ps_code train_everyone(sqlite_store *s, ps_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT id FROM users ORDER BY id", -1, &st, NULL) != SQLITE_OK)
        return db_error(s, err, "listing users");
    ps_code rc = PS_OK;
    int r;
    while (rc == PS_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t id;
        rc = train_user(s, sqlite3_column_int64(st, 0), &id, err);
    }
    sqlite3_finalize(st);
    if (rc == PS_OK)
        rc = exec(s, s->schema >= 10 ? USER_BYTES_RECOUNT : USER_BYTES_RECOUNT_9, err);
    return rc;
}

static ps_code migrate(sqlite_store *s, ps_error *err)
{
    if (sqlite3_create_function(s->db, "ps_pack_value", 3, SQLITE_UTF8, s, sql_pack_value, NULL,
                                NULL) != SQLITE_OK ||
        sqlite3_create_function(s->db, "ps_pack_doc", 1, SQLITE_UTF8, s, sql_pack_doc, NULL,
                                NULL) != SQLITE_OK)
        return db_error(s, err, "registering functions");
    ps_code rc = exec(s,
                      "CREATE TABLE IF NOT EXISTS schema_version ("
                      " version INTEGER PRIMARY KEY,"
                      " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ')))",
                      err);
    if (rc != PS_OK)
        return rc;
    int have = schema_version(s);
    if (have < 0)
        return db_error(s, err, "reading schema version");
    if (have > SCHEMA_VERSION)
        return ps_error_set(err, PS_ERR_SCHEMA, -1, "",
                            "the store has schema version %d; this polysyncd knows up to %d", have,
                            SCHEMA_VERSION);
    s->schema = have;
    for (int v = have; v < SCHEMA_VERSION; v++) {
        s->schema = v + 1; /* what the step's own code may rely on */
        char record[96];
        snprintf(record, sizeof record, "INSERT INTO schema_version(version) VALUES (%d)", v + 1);
        /* Each step is one transaction: a crash mid-migration leaves the
         * previous version, and the next start retries the step. */
        if ((rc = exec(s, "BEGIN IMMEDIATE", err)) != PS_OK)
            return rc;
        if ((rc = exec(s, MIGRATIONS[v], err)) != PS_OK ||
            /* the step that brings dictionaries compresses what is there */
            (strstr(MIGRATIONS[v], "CREATE TABLE value_dicts") &&
             (rc = train_everyone(s, err)) != PS_OK) ||
            /* the step that compresses renderings changes their sizes */
            (strstr(MIGRATIONS[v], "ps_pack_doc(") &&
             (rc = exec(s, USER_BYTES_RECOUNT, err)) != PS_OK) ||

            (rc = exec(s, record, err)) != PS_OK || (rc = exec(s, "COMMIT", err)) != PS_OK) {
            exec(s, "ROLLBACK", NULL);
            return rc;
        }
    }
    /* 10 -> 11 copies the message rows into a new table: the old one's
     * pages are left free, and the file (no auto_vacuum) keeps them: the
     * benchmark's 87 MB store became 123 MB. Given back once, here (1-2 s
     * for that store; docs/operations.md); a failure only costs space. */
    if (have >= 1 && have < 11)
        exec(s, "VACUUM", NULL);
    return PS_OK;
}

/* mkdir -p for the folder that will hold `path`. */
static ps_code make_parent_dirs(const char *path, ps_error *err)
{
    char *copy = strdup(path);
    if (!copy)
        return PS_ERR_NOMEM;
    ps_code rc = PS_OK;
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
            rc = ps_error_set(err, PS_ERR_IO, -1, "", "cannot create folder %s: %s", copy,
                              strerror(errno));
            break;
        }
        *p = '/';
    }
    free(copy);
    return rc;
}

/* Steps a transaction-control statement (BEGIN, COMMIT, ROLLBACK) on the
 * calling thread's connection. A writer kept out past busy_timeout (another
 * process holding the file, say `polysyncd user delete`) is PS_ERR_BUSY:
 * 503 store_busy, retry. */
static ps_code control(sqlite_store *s, int q, ps_error *err)
{
    reader *rd = current_reader(s);
    sqlite3_stmt *st = rd ? rd->stmt[q] : s->stmt[q];
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE) {
        sqlite3_reset(st);
        return PS_OK;
    }
    ps_code rc = db_error(s, err, "transaction");
    sqlite3_reset(st);
    return rc;
}

/* Writes every unwritten no-op sync time into the open write transaction;
 * those still unchanged when it commits are forgotten then (forget_seen). */
static ps_code write_seen(sqlite_store *s, ps_error *err)
{
    ps_code rc = PS_OK;
    pthread_mutex_lock(&s->seen_lock);
    for (size_t i = 0; i < s->nseen && rc == PS_OK; i++) {
        sqlite3_stmt *st = stmt(s, Q_USER_SEEN);
        sqlite3_bind_text(st, 1, s->seen[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, s->seen[i].ms);
        int r = sqlite3_step(st);
        sqlite3_reset(st);
        if (r != SQLITE_DONE)
            rc = db_error(s, err, "saving last sync times");
        s->seen[i].written_ms = s->seen[i].ms;
    }
    pthread_mutex_unlock(&s->seen_lock);
    return rc;
}

/* After a commit that wrote them: forgets the times written (a reader may
 * have put a newer one for the same user meanwhile: that one stays). */
static void forget_seen(sqlite_store *s)
{
    pthread_mutex_lock(&s->seen_lock);
    size_t kept = 0;
    for (size_t i = 0; i < s->nseen; i++) {
        if (s->seen[i].written_ms && s->seen[i].written_ms == s->seen[i].ms) {
            free(s->seen[i].name);
            continue;
        }
        s->seen[i].written_ms = 0;
        s->seen[kept++] = s->seen[i];
    }
    s->nseen = kept;
    /* A time kept here came in while the transaction wrote its older one:
     * it starts a new wait. Left due, every request's end would flush it
     * again (a write and an fdatasync each time two threads take turns at
     * it), not once a second. */
    if (kept && kept < SEEN_FLUSH_USERS) {
        int64_t now = ps__time_monotonic_ms();
        if (s->seen_flush_at <= now)
            s->seen_flush_at = now + SEEN_FLUSH_MS;
    }
    pthread_mutex_unlock(&s->seen_lock);
}

static void forget_all_seen(sqlite_store *s)
{
    for (size_t i = 0; i < s->nseen; i++)
        free(s->seen[i].name);
    s->nseen = 0;
}

static bool seen_due(sqlite_store *s)
{
    pthread_mutex_lock(&s->seen_lock);
    bool due = s->nseen && ps__time_monotonic_ms() >= s->seen_flush_at;
    pthread_mutex_unlock(&s->seen_lock);
    return due;
}

/* Writes the unwritten no-op sync times in a transaction of their own
 * (writer lock held and marked as this thread's, no transaction open). On
 * failure they stay for the next try. */
static ps_code flush_seen(sqlite_store *s, ps_error *err)
{
    ps_code rc = control(s, Q_BEGIN_WRITE, err);
    if (rc != PS_OK)
        return rc;
    if ((rc = write_seen(s, err)) != PS_OK || (rc = control(s, Q_COMMIT, err)) != PS_OK) {
        control(s, Q_ROLLBACK, NULL);
        /* not at every request while, say, another process holds the lock */
        pthread_mutex_lock(&s->seen_lock);
        s->seen_flush_at = ps__time_monotonic_ms() + SEEN_FLUSH_MS;
        pthread_mutex_unlock(&s->seen_lock);
        return rc;
    }
    forget_seen(s);
    return PS_OK;
}

static void reader_close(reader *r)
{
    if (!r)
        return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(r->stmt[i]);
    hint_clear(&r->hint);
    sqlite3_finalize(r->snapshot);
    sqlite3_close(r->db);
    free(r);
}

/* Opens a read connection: the same file, query_only (a read transaction
 * that tried to write would fail, not write), its statements prepared. */
static reader *reader_open(sqlite_store *s, ps_error *err)
{
    reader *r = calloc(1, sizeof *r);
    if (!r) {
        ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        return NULL;
    }
    const char *what = "opening a read connection";
    if (sqlite3_open_v2(s->path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) ==
        SQLITE_OK) {
        sqlite3_busy_timeout(r->db, 5000);
        /* a small page cache: a reader mostly streams rendered chats once,
         * and the kernel's file cache holds them anyway (see "Memory" in
         * docs/storage.md for the writer's) */
        if (sqlite3_exec(r->db, "PRAGMA query_only=ON; PRAGMA mmap_size=0; PRAGMA cache_size=-2048",
                         NULL, NULL, NULL) == SQLITE_OK &&
            sqlite3_prepare_v3(r->db, "SELECT 1 FROM schema_version LIMIT 1", -1,
                               SQLITE_PREPARE_PERSISTENT, &r->snapshot, NULL) == SQLITE_OK) {
            what = NULL;
            for (int i = 0; i < Q_COUNT && !what; i++)
                if (sqlite3_prepare_v3(r->db, QUERIES[i], -1, SQLITE_PREPARE_PERSISTENT,
                                       &r->stmt[i], NULL) != SQLITE_OK)
                    what = "preparing a read connection";
        }
    }
    if (what) {
        ps_error_set(err, PS_ERR_STORE, -1, "", "sqlite %s: %s", what,
                     r->db ? sqlite3_errmsg(r->db) : "out of memory");
        reader_close(r);
        return NULL;
    }
    return r;
}

static reader *reader_take(sqlite_store *s, ps_error *err)
{
    pthread_mutex_lock(&s->pool_lock);
    reader *r = s->idle;
    if (r) {
        s->idle = r->next;
        s->nidle--;
    }
    pthread_mutex_unlock(&s->pool_lock);
    return r ? r : reader_open(s, err);
}

static void reader_give_back(sqlite_store *s, reader *r)
{
    pthread_mutex_lock(&s->pool_lock);
    if (s->nidle < READERS_KEPT) {
        r->next = s->idle;
        s->idle = r;
        s->nidle++;
        r = NULL;
    }
    pthread_mutex_unlock(&s->pool_lock);
    reader_close(r); /* one too many: a burst is over */
}

static void sqlite_close(ps_store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    ps_error err;
    ps_error_clear(&err);
    pthread_setspecific(s->current, WRITER);
    if (s->nseen && flush_seen(s, &err) != PS_OK) /* a clean stop loses no sync time... */
        fprintf(stderr, "polysyncd: last sync times of %zu users not saved: %s\n", s->nseen,
                err.message); /* ...unless the file cannot be written */
    pthread_setspecific(s->current, NULL);
    /* before the connections: the last one to close checkpoints the log */
    ps__checkpointer_stop(s->checkpointer, s->db);
    forget_all_seen(s);
    free(s->seen);
    while (s->idle) {
        reader *r = s->idle;
        s->idle = r->next;
        reader_close(r);
    }
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    hint_clear(&s->hint);
    ps__quiet_free(s->quiet); /* reads the writer connection's mapping */
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->pool_lock);
    pthread_mutex_destroy(&s->seen_lock);
    pthread_key_delete(s->current);
    free(s->path);
    free(s);
}

static ps_code user_get(sqlite_store *s, const char *name, ps_user *out, bool *found,
                        ps_error *err);

/* A read transaction: a reader of the pool, BEGIN, and a first read so the
 * snapshot is the database as committed now (a deferred BEGIN would take
 * it at the transaction's first read): the user's row when `name` is given
 * (begin_user_find: no statement of its own), else a read of its own. */
static ps_code begin_read(sqlite_store *s, const char *name, ps_user *out, bool *found,
                          ps_error *err)
{
    ps_error own;
    if (!err)
        err = &own;
    reader *r = reader_take(s, err);
    if (!r)
        return err->code;
    pthread_setspecific(s->current, r);
    /* stamped before the snapshot is taken: a commit in between makes the
     * row noted newer than its stamp, which then no longer matches */
    ps_quiet_stamp before;
    bool stamped = name && ps__quiet_stamp(s->quiet, &before);
    ps_code rc = control(s, Q_BEGIN, err);
    if (rc == PS_OK) {
        if (name) {
            rc = user_get(s, name, out, found, err);
            if (rc == PS_OK && *found && stamped)
                ps__quiet_note(s->quiet, name, &before, out);
        } else {
            int step = sqlite3_step(r->snapshot);
            sqlite3_reset(r->snapshot);
            if (step != SQLITE_ROW && step != SQLITE_DONE)
                rc = db_error(s, err, "reading");
        }
        if (rc != PS_OK)
            control(s, Q_ROLLBACK, NULL);
    }
    if (rc != PS_OK) {
        pthread_setspecific(s->current, NULL);
        reader_give_back(s, r);
    }
    return rc;
}

static ps_code sqlite_begin_user_find(ps_store *base, const char *name, ps_user *out, bool *found,
                                      ps_error *err)
{
    return begin_read((sqlite_store *)base, name, out, found, err);
}

static ps_code sqlite_begin(ps_store *base, bool write, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    if (!write)
        return begin_read(s, NULL, NULL, NULL, err);
    pthread_mutex_lock(&s->lock);
    pthread_setspecific(s->current, WRITER);
    ps_code rc = control(s, Q_BEGIN_WRITE, err);
    /* A write transaction takes the unwritten sync times along, first: what
     * it then loads and saves of a user row sees them. */
    if (rc == PS_OK && (rc = write_seen(s, err)) != PS_OK)
        control(s, Q_ROLLBACK, NULL);
    if (rc != PS_OK) {
        pthread_setspecific(s->current, NULL);
        pthread_mutex_unlock(&s->lock);
    }
    return rc;
}

/* With no transaction open on the calling thread: writes the unwritten
 * no-op sync times once they are due. This bounds what a crash can forget;
 * it never waits for the writer (whose next transaction takes the times
 * along anyway). */
static void flush_seen_if_due(sqlite_store *s)
{
    if (seen_due(s) && pthread_mutex_trylock(&s->lock) == 0) {
        pthread_setspecific(s->current, WRITER);
        flush_seen(s, NULL);
        pthread_setspecific(s->current, NULL);
        pthread_mutex_unlock(&s->lock);
    }
}

/* Ends the calling thread's transaction (already committed or rolled back). */
static void end_transaction(sqlite_store *s)
{
    hint_clear(conn_hint(s)); /* the next transaction may see another cold_seq */
    reader *r = current_reader(s);
    bool wrote = writing(s);
    pthread_setspecific(s->current, NULL);
    if (wrote) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    reader_give_back(s, r);
    flush_seen_if_due(s);
}

static ps_code sqlite_commit(ps_store *base, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    ps_code rc = control(s, Q_COMMIT, err);
    if (rc != PS_OK)
        control(s, Q_ROLLBACK, NULL);
    else if (writing(s))
        forget_seen(s); /* written by this transaction (user_seen too) */
    end_transaction(s);
    return rc;
}

static void sqlite_rollback(ps_store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    control(s, Q_ROLLBACK, NULL);
    end_transaction(s);
}

/* Reads the user's row; *found false when there is none. */
static ps_code user_get(sqlite_store *s, const char *name, ps_user *out, bool *found, ps_error *err)
{
    sqlite3_stmt *st = stmt(s, Q_USER_GET);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    *found = r == SQLITE_ROW;
    if (r == SQLITE_ROW) {
        out->id = sqlite3_column_int64(st, 0);
        out->clock = sqlite3_column_int64(st, 1);
        out->last_sync_ms = sqlite3_column_int64(st, 2);
        out->seq = sqlite3_column_int64(st, 3);
        out->purged_seq = sqlite3_column_int64(st, 4);
        out->bytes = sqlite3_column_int64(st, 5);
    }
    sqlite3_reset(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "loading user");
}

static ps_code sqlite_user_find(ps_store *base, const char *name, ps_user *out, bool *found,
                                ps_error *err)
{
    return user_get((sqlite_store *)base, name, out, found, err);
}

static ps_code sqlite_user_load(ps_store *base, const char *name, ps_user *out, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    for (int attempt = 0; attempt < 2; attempt++) {
        bool found;
        ps_code rc = user_get(s, name, out, &found, err);
        if (rc != PS_OK || found)
            return rc;
        if (current_reader(s)) { /* a read transaction writes nothing (store.h) */
            *out = (ps_user){0};
            return PS_OK;
        }
        sqlite3_stmt *st = stmt(s, Q_USER_ADD);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            return db_error(s, err, "adding user");
    }
    return db_error(s, err, "loading new user");
}

/*
 * A sync that changed nothing would otherwise cost a write transaction of
 * its own — WAL frames and an fsync — for the one time it leaves. The time
 * waits in memory instead (where stats() sees it) and goes to disk with the
 * next write transaction, at close, or once it is SEEN_FLUSH_MS old.
 */
static ps_code sqlite_user_seen(ps_store *base, const char *name, int64_t ms, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    if (writing(s)) {
        sqlite3_stmt *st = stmt(s, Q_USER_SEEN);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, ms);
        int r = sqlite3_step(st);
        sqlite3_reset(st);
        return r == SQLITE_DONE ? PS_OK : db_error(s, err, "saving last sync time");
    }
    ps_code rc = PS_OK;
    pthread_mutex_lock(&s->seen_lock);
    size_t i = 0;
    while (i < s->nseen && strcmp(s->seen[i].name, name) != 0)
        i++;
    if (i == s->nseen) {
        if (s->nseen == s->seen_cap) {
            size_t cap = s->seen_cap ? 2 * s->seen_cap : 8;
            seen_user *grown = realloc(s->seen, cap * sizeof *grown);
            if (!grown) {
                rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
                goto out;
            }
            s->seen = grown;
            s->seen_cap = cap;
        }
        if (!(s->seen[i].name = strdup(name))) {
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
            goto out;
        }
        s->seen[i].written_ms = 0;
        if (i == 0)
            s->seen_flush_at = ps__time_monotonic_ms() + SEEN_FLUSH_MS;
        if (i + 1 == SEEN_FLUSH_USERS)
            s->seen_flush_at = 0;
        s->nseen = i + 1;
    }
    s->seen[i].ms = ms;
out:
    pthread_mutex_unlock(&s->seen_lock);
    /* a sync answered without a transaction (quiet_user) has no end of
     * one to flush the times at */
    if (rc == PS_OK && !current_reader(s))
        flush_seen_if_due(s);
    return rc;
}

static ps_code sqlite_quiet_user(ps_store *base, const char *name, ps_user *out, bool *found,
                                 ps_error *err)
{
    (void)err;
    *found = ps__quiet_get(((sqlite_store *)base)->quiet, name, out);
    return PS_OK;
}

static ps_code sqlite_user_save(ps_store *base, const ps_user *u, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_USER_SAVE);
    sqlite3_bind_int64(st, 1, u->id);
    sqlite3_bind_int64(st, 2, u->clock);
    sqlite3_bind_int64(st, 3, u->last_sync_ms);
    sqlite3_bind_int64(st, 4, u->seq);
    return sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving user");
}

/* Parses the state column `col` of the current row into a (clean) chat. */
static ps_code parse_state(sqlite3_stmt *st, int col, ps_chat **out, ps_error *err)
{
    json_object *state = NULL;
    ps_code rc = ps__json_parse_trusted((const char *)sqlite3_column_text(st, col),
                                        (size_t)sqlite3_column_bytes(st, col), &state, err);
    if (rc == PS_OK)
        rc = ps__chat_state_from_json(state, out, err);
    json_object_put(state);
    if (rc != PS_OK && rc != PS_ERR_NOMEM)
        return ps_error_set(err, PS_ERR_STORE, -1, "", "a stored chat has a corrupt state");
    return rc;
}

/* Runs a query for (state[, seq]): *out NULL when it has no row. */
static ps_code step_state(sqlite_store *s, sqlite3_stmt *st, ps_chat **out, int64_t *seq,
                          ps_error *err)
{
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE)
        return PS_OK;
    if (r != SQLITE_ROW)
        return db_error(s, err, "reading a chat");
    if (seq)
        *seq = sqlite3_column_int64(st, 1);
    ps_code rc = parse_state(st, 0, out, err);
    sqlite3_reset(st);
    return rc;
}

/* The JSON text of a stored message value (column `col`): a zstd frame
 * (BLOB, schema 9) decompressed into this thread's buffer, or the TEXT as
 * it is. Valid until the next call on this thread or the next step. */
static ps_code value_text(sqlite_store *s, sqlite3_stmt *st, int col, int64_t user,
                          const char **text, size_t *len, ps_error *err)
{
    if (sqlite3_column_type(st, col) != SQLITE_BLOB) {
        *text = (const char *)sqlite3_column_text(st, col);
        *len = (size_t)sqlite3_column_bytes(st, col);
        return *text ? PS_OK : ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    ps_code rc =
        ps_value_unpack(sqlite3_column_blob(st, col), (size_t)sqlite3_column_bytes(st, col), user,
                        load_dict, s, text, len);
    if (rc == PS_ERR_NOMEM)
        return ps_error_set(err, rc, -1, "", "out of memory");
    return rc == PS_OK ? PS_OK
                       : ps_error_set(err, PS_ERR_STORE, -1, "", "a stored message is corrupt");
}

/* Reads a message row (MSG_COLUMNS) into a register. */
static ps_code read_message(sqlite_store *s, sqlite3_stmt *st, int64_t user, ps_message *m,
                            ps_error *err)
{
    memset(m, 0, sizeof *m);
    json_object *value = NULL;
    if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
        const char *text;
        size_t len;
        ps_code rc = value_text(s, st, 1, user, &text, &len, err);
        if (rc != PS_OK)
            return rc;
        if (ps__json_parse_trusted(text, len, &value, err) != PS_OK)
            return ps_error_set(err, PS_ERR_STORE, -1, "", "a stored message is corrupt");
    }
    m->id = strdup((const char *)sqlite3_column_text(st, 0));
    m->value = value;
    m->stamp.ts = sqlite3_column_int64(st, 2);
    m->stamp.lamport = sqlite3_column_int64(st, 3);
    m->stamp.device = strdup((const char *)sqlite3_column_text(st, 4));
    m->order_ts = sqlite3_column_int64(st, 5);
    m->mark.seq = sqlite3_column_int64(st, 6);
    m->mark.origin = strdup((const char *)sqlite3_column_text(st, 7));
    m->stamp.timed = sqlite3_column_int(st, 8) != 0;
    m->received = sqlite3_column_int64(st, 9);
    if (!m->id || !m->stamp.device || !m->mark.origin) {
        ps__message_release(m);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    return PS_OK;
}

/* Appends the rows of a prepared message query to the chat, clean. */
static ps_code append_rows(sqlite_store *s, sqlite3_stmt *st, int64_t user, ps_chat *chat,
                           ps_error *err)
{
    int r;
    ps_code rc = PS_OK;
    while (rc == PS_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
        ps_message m;
        if ((rc = read_message(s, st, user, &m, err)) != PS_OK)
            break;
        rc = ps__chat_append_message(chat, m.id, m.value, &m.stamp, m.order_ts);
        if (rc == PS_OK) {
            chat->messages[chat->nmessages - 1].received = m.received;
            ps_mark *dst = &chat->messages[chat->nmessages - 1].mark;
            *dst = m.mark;
            m.mark.origin = NULL;
        } else {
            ps_error_set(err, rc, -1, "", "out of memory");
        }
        m.value = NULL; /* the reference went to the chat (or was dropped) */
        ps__message_release(&m);
    }
    if (rc == PS_OK && r != SQLITE_DONE)
        rc = db_error(s, err, "loading messages");
    sqlite3_reset(st);
    return rc;
}

/*
 * Packs (schema 12; pack_codec.h, docs/storage.md "Packs"). A chat new in
 * a save (a v2 push; a legacy sync too, its rendering kept beside) keeps
 * the messages it comes with as one compressed pack instead of a row
 * each, when they hold between PACK_MIN_TEXT and PACK_MAX_TEXT bytes of
 * text: below, a pack saves little and costs a frame per read; above,
 * every message looked up by id in it (a push into the chat naming an old
 * one) would decompress a large frame, where a row is one look-up.
 * Deleted messages stay rows (the tombstone collection deletes rows). A
 * row of the chat with the id of a packed message shadows it: the row is
 * the message (written later).
 */
#define PACK_MIN_TEXT 2048
#define PACK_MAX_TEXT ((size_t)256 << 10)
/* The largest piece: two and their cells fit a 16 KiB page (a cell: the
 * piece, the chat's key and ~12 bytes of headers; room for keys of ~170
 * bytes). A pack is cut into as few pieces as this allows, all of one
 * size (pack_put_pieces). Each piece is a row and an entry of
 * packs_by_chat: a first upload's ~7,500 pieces of at most 4,000 bytes
 * cost 12 % of its CPU. Pieces of 8,000 and a tail took 12 % less, but a
 * page holding an 8 KB piece and a 1 KB tail has no room for the next
 * 8 KB one: a v2-pushed history's store grew 28 % (26.8 -> 34.1 MB);
 * equal pieces keep most of the gain (docs/performance.md, "the tree from
 * stage 1"). Pieces already stored keep their sizes: a pack's pieces are
 * read in order whatever they are. */
#define PACK_PIECE 8000

/* A chat's pack read whole: its frame's pieces and the bytes decoded. */
typedef struct pack_buf {
    ps_dynbuf frame;
    ps_dynbuf raw;
    int64_t base; /* a based pack's (ps_pack_begin_based): added to each seq */
    /* a summarized pack's (ps_pack_summary_put; its origin points into
     * frame): every entry read is checked against it */
    bool summarized;
    ps_pack_summary sum;
} pack_buf;

/* What a read leaves out of a pack (next_owed's filter): entries changed
 * at or before after_seq, and skip_origin's (NULL: none) after skip_after. */
typedef struct pack_filter {
    int64_t after_seq;
    const char *skip_origin;
    int64_t skip_after;
} pack_filter;

static void pack_buf_init(pack_buf *p)
{
    ps__dynbuf_init(&p->frame, SIZE_MAX - 1);
    ps__dynbuf_init(&p->raw, SIZE_MAX - 1);
    p->base = 0;
    p->summarized = false;
}

static void pack_buf_free(pack_buf *p)
{
    ps__dynbuf_free(&p->frame);
    ps__dynbuf_free(&p->raw);
}

/* Whether the first piece of a pack, `piece`, is a summarized pack's whose
 * summary says a read filtered by `f` owes nothing in it. A prefix that
 * does not parse from the first piece: not known here (the whole pack is
 * read, and judged). */
static bool pack_owes_nothing(const void *piece, size_t len, const pack_filter *f)
{
    ps_pack_prefix pre;
    return piece && ps_pack_prefix_get(piece, len, &pre) == PS_OK && pre.summarized &&
           !ps_pack_summary_may_owe(&pre.sum, f->after_seq, f->skip_origin, f->skip_after);
}

/* Reads the chat's pack into p->raw with the statement `get` (Q_PACK_GET's
 * SQL, reset); *found false when the chat has none. With a filter `f`: also
 * false, only its first piece read and nothing decompressed, when its
 * summary says no entry passes the filter (a first pull of a run skipping
 * the device's own messages of the run: every packed message it just
 * uploaded). */
static ps_code pack_read_with(sqlite_store *s, sqlite3_stmt *get, int64_t user, const char *chat_id,
                              const pack_filter *f, pack_buf *p, bool *found, ps_error *err)
{
    *found = false;
    ps__dynbuf_reset(&p->frame);
    ps__dynbuf_reset(&p->raw);
    p->base = 0;
    p->summarized = false;
    sqlite3_bind_int64(get, 1, user);
    sqlite3_bind_text(get, 2, chat_id, -1, SQLITE_STATIC);
    int r;
    ps_code rc = PS_OK;
    while (rc == PS_OK && (r = sqlite3_step(get)) == SQLITE_ROW) {
        if (f && !*found &&
            pack_owes_nothing(sqlite3_column_blob(get, 0), (size_t)sqlite3_column_bytes(get, 0),
                              f)) {
            r = SQLITE_DONE; /* *found stays false */
            break;
        }
        *found = true;
        rc = ps__dynbuf_add(&p->frame, sqlite3_column_blob(get, 0),
                            (size_t)sqlite3_column_bytes(get, 0));
        if (rc != PS_OK)
            rc = ps_error_set(err, rc, -1, "", "out of memory");
    }
    if (rc == PS_OK && r != SQLITE_DONE)
        rc = db_error(s, err, "reading a pack");
    sqlite3_reset(get);
    if (rc != PS_OK || !*found)
        return rc;
    /* a based or summarized pack's frame comes after its prefix (save_pack) */
    ps_pack_prefix pre;
    rc = ps_pack_prefix_get(p->frame.data, p->frame.len, &pre);
    const char *frame = p->frame.data + pre.skip;
    size_t frame_len = p->frame.len - pre.skip;
    if (rc == PS_OK)
        rc = ps_doc_is_frame(frame, frame_len)
                 ? ps_doc_unpack_append(frame, frame_len, &p->raw)
                 : ps_value_unpack_frame_append(frame, frame_len, user, load_dict, s, &p->raw);
    if (rc == PS_ERR_NOMEM)
        return ps_error_set(err, rc, -1, "", "out of memory");
    if (rc == PS_OK && pre.based != ps_pack_is_based(p->raw.data, p->raw.len))
        rc = PS_ERR_STORE;
    p->base = pre.base;
    p->summarized = pre.summarized;
    p->sum = pre.sum;
    return rc == PS_OK ? PS_OK
                       : ps_error_set(err, PS_ERR_STORE, -1, "", "a stored pack is corrupt");
}

static ps_code pack_read(sqlite_store *s, int64_t user, const char *chat_id, pack_buf *p,
                         bool *found, ps_error *err)
{
    *found = false;
    if (s->schema < 12)
        return PS_OK;
    return pack_read_with(s, stmt(s, Q_PACK_GET), user, chat_id, NULL, p, found, err);
}

/* Steps through a pack read by pack_read: *more false at its end. */
static ps_code pack_next(const pack_buf *p, size_t *pos, ps_pack_entry *e, bool *more,
                         ps_error *err)
{
    ps_code rc = ps_pack_next(p->raw.data, p->raw.len, pos, e, more);
    if (rc == PS_OK && *more && __builtin_add_overflow(e->seq, p->base, &e->seq))
        rc = PS_ERR_STORE; /* a corrupt base or offset */
    if (rc == PS_OK && *more && p->summarized && !ps_pack_summary_covers(&p->sum, e))
        rc = PS_ERR_STORE; /* a summary that lies would hide entries from reads */
    return rc == PS_OK ? PS_OK
                       : ps_error_set(err, PS_ERR_STORE, -1, "", "a stored pack is corrupt");
}

/* Appends the stored bytes of a pack, `data`, cut into PACK_PIECE pieces,
 * with `put` (Q_PACK_PUT's SQL): pieces fill pages (docs/storage.md). */
static ps_code pack_put_pieces(sqlite_store *s, sqlite3_stmt *put, int64_t user,
                               const char *chat_id, const char *data, size_t len, ps_error *err)
{
    ps_code rc = PS_OK;
    /* as few pieces as PACK_PIECE allows, all of one size: a 9 KB frame is
     * two of 4.5 KB, not 8 KB and 1 KB (a page that holds 9 KB would then
     * leave 7 KB unused) */
    size_t pieces = (len + PACK_PIECE - 1) / PACK_PIECE;
    size_t each = pieces ? (len + pieces - 1) / pieces : 0;
    for (size_t at = 0; rc == PS_OK && at < len; at += each) {
        size_t n = len - at < each ? len - at : each;
        sqlite3_reset(put);
        sqlite3_bind_int64(put, 1, user);
        sqlite3_bind_text(put, 2, chat_id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(put, 3, data + at, (int)n, SQLITE_STATIC);
        rc = sqlite3_step(put) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving a pack");
    }
    sqlite3_reset(put);
    return rc;
}

/* Appends a based pack with `put` (Q_PACK_PUT's SQL), in pieces: its
 * prefix — the base and the summary of its bytes `raw` (ps_pack_summarize:
 * read from the very bytes the frame holds), or the base alone when it
 * has no entries — then `frame`, raw compressed. *bytes = what they weigh. */
static ps_code pack_write_stored(sqlite_store *s, sqlite3_stmt *put, int64_t user,
                                 const char *chat_id, int64_t base, const char *raw, size_t raw_len,
                                 const void *frame, size_t len, int64_t *bytes, ps_error *err)
{
    ps_dynbuf all;
    ps__dynbuf_init(&all, SIZE_MAX - 1);
    ps_pack_summary sum;
    bool any;
    ps_code rc = ps_pack_summarize(raw, raw_len, base, &sum, &any);
    /* no summary for a pack with no entries (none to tell), or with an entry
     * below its base (not expected: a seq is never negative) */
    if (rc == PS_OK)
        rc = any && base >= 0 && sum.lo >= base ? ps_pack_summary_put(&all, base, &sum)
                                                : ps_pack_base_put(&all, base);
    if (rc == PS_OK)
        rc = ps__dynbuf_add(&all, frame, len);
    if (rc == PS_ERR_NOMEM || rc == PS_ERR_TOO_LARGE)
        rc = ps_error_set(err, rc, -1, "", "out of memory");
    else if (rc != PS_OK)
        rc = ps_error_set(err, rc, -1, "", "a pack to write is malformed");
    *bytes = (int64_t)all.len;
    if (rc == PS_OK)
        rc = pack_put_pieces(s, put, user, chat_id, all.data, all.len, err);
    ps__dynbuf_free(&all);
    return rc;
}

/* Compresses the based pack `raw` (base 0: each entry's seq as it is; with
 * the user's dictionary `dict`, 0: none) and appends it with `put`
 * (pack_write_stored); *bytes = what the pieces weigh. */
static ps_code pack_write_with(sqlite_store *s, sqlite3_stmt *put, int64_t user,
                               const char *chat_id, const ps_dynbuf *raw, uint32_t dict,
                               int64_t *bytes, ps_error *err)
{
    ps_dynbuf frame;
    ps__dynbuf_init(&frame, SIZE_MAX - 1);
    ps_code rc = ps_value_pack_frame(raw->data, raw->len, user, dict, load_dict, s, &frame);
    if (rc != PS_OK)
        rc = ps_error_set(err, rc, -1, "", "compressing a pack failed");
    if (rc == PS_OK)
        rc = pack_write_stored(s, put, user, chat_id, 0, raw->data, raw->len, frame.data, frame.len,
                               bytes, err);
    ps__dynbuf_free(&frame);
    return rc;
}

/* A packed message as a register, borrowing the pack's strings: only its
 * value (parsed here) is to be released, with json_object_put. */
static ps_code entry_message(const ps_pack_entry *e, ps_message *m, ps_error *err)
{
    memset(m, 0, sizeof *m);
    if (ps__json_parse_trusted(e->value, e->value_len, &m->value, err) != PS_OK)
        return ps_error_set(err, PS_ERR_STORE, -1, "", "a stored message is corrupt");
    m->id = (char *)e->id;
    m->stamp.ts = e->ts;
    m->stamp.lamport = e->lamport;
    m->stamp.device = (char *)e->device;
    m->stamp.timed = e->timed;
    m->order_ts = e->order_ts;
    m->mark.seq = e->seq;
    m->mark.origin = (char *)(e->origin ? e->origin : e->device);
    m->received = e->received;
    return PS_OK;
}

/* Adds a packed message to the chat (copies; not yet normalized), clean
 * as append_rows leaves a row's: a dirty one would be saved again as this
 * save's change, with its seq and origin (a losing write to it would then
 * count as the winner's, and its writer would never be sent the winner). */
static ps_code append_entry(ps_chat *chat, const ps_pack_entry *e, ps_error *err)
{
    ps_message m;
    ps_code rc = entry_message(e, &m, err);
    if (rc != PS_OK)
        return rc;
    rc = ps__chat_append_message(chat, m.id, m.value, &m.stamp, m.order_ts);
    if (rc == PS_OK) {
        ps_message *dst = &chat->messages[chat->nmessages - 1];
        dst->mark.dirty = false;
        dst->received = m.received;
        if (!(dst->mark.origin = strdup(m.mark.origin)))
            rc = PS_ERR_NOMEM;
        dst->mark.seq = m.mark.seq;
    }
    return rc == PS_OK ? PS_OK : ps_error_set(err, rc, -1, "", "out of memory");
}

/* The ids of the chat's rows (which shadow packed messages), sorted. */
typedef struct id_set {
    char **ids;
    size_t n, cap;
} id_set;

static int id_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void id_set_free(id_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        free(set->ids[i]);
    free(set->ids);
    memset(set, 0, sizeof *set);
}

static ps_code id_set_add(id_set *set, const char *id)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? 2 * set->cap : 16;
        char **grown = realloc(set->ids, cap * sizeof *grown);
        if (!grown)
            return PS_ERR_NOMEM;
        set->ids = grown;
        set->cap = cap;
    }
    return (set->ids[set->n] = strdup(id)) ? (set->n++, PS_OK) : PS_ERR_NOMEM;
}

static bool id_set_has(const id_set *set, const char *id)
{
    return set->n && bsearch(&id, set->ids, set->n, sizeof *set->ids, id_cmp);
}

/* Reads the ids `st` (one text column, bound, reset after) gives. */
static ps_code id_set_read(sqlite_store *s, sqlite3_stmt *st, id_set *set, ps_error *err)
{
    int r;
    ps_code rc = PS_OK;
    while (rc == PS_OK && (r = sqlite3_step(st)) == SQLITE_ROW)
        if (id_set_add(set, (const char *)sqlite3_column_text(st, 0)) != PS_OK)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (rc == PS_OK && r != SQLITE_DONE)
        rc = db_error(s, err, "reading messages");
    sqlite3_reset(st);
    if (set->n)
        qsort(set->ids, set->n, sizeof *set->ids, id_cmp);
    return rc;
}

/* The ids of the chat's rows. */
static ps_code row_ids(sqlite_store *s, int64_t user, const char *chat_id, id_set *set,
                       ps_error *err)
{
    sqlite3_stmt *st = stmt(s, Q_MSG_IDS);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, chat_id, -1, SQLITE_STATIC);
    return id_set_read(s, st, set, err);
}

/* Adds the chat's packed messages that no loaded message shadows (the
 * chat normalized, holding its rows), then normalizes it again. */
static ps_code add_packed(sqlite_store *s, int64_t user, ps_chat *chat, ps_error *err)
{
    pack_buf p;
    pack_buf_init(&p);
    bool found, more = true;
    ps_code rc = pack_read(s, user, chat->id, &p, &found, err);
    size_t rows = chat->nmessages, pos = 0;
    while (rc == PS_OK && found && more) {
        ps_pack_entry e;
        if ((rc = pack_next(&p, &pos, &e, &more, err)) != PS_OK || !more)
            break;
        bool shadowed = false; /* binary search over the rows (sorted by id) */
        for (size_t lo = 0, hi = rows; lo < hi && !shadowed;) {
            size_t mid = (lo + hi) / 2;
            int c = strcmp(chat->messages[mid].id, e.id);
            if (c == 0)
                shadowed = true;
            else if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (!shadowed)
            rc = append_entry(chat, &e, err);
    }
    pack_buf_free(&p);
    if (found)
        ps__chat_normalize(chat);
    return rc;
}

static ps_code sample_packs(sqlite_store *s, int64_t user, ps_dynbuf *samples, size_t **sizes,
                            size_t *nsizes, size_t *cap, ps_error *err)
{
    id_set chats = {0};
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT DISTINCT chat_id FROM packs WHERE user_id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return db_error(s, err, "reading packs to train on");
    sqlite3_bind_int64(st, 1, user);
    ps_code rc = id_set_read(s, st, &chats, err);
    sqlite3_finalize(st);
    pack_buf p;
    pack_buf_init(&p);
    for (size_t c = 0; c < chats.n && rc == PS_OK && samples->len < PS_VALUE_TRAIN_BYTES; c++) {
        bool found, more = true;
        size_t pos = 0;
        rc = pack_read(s, user, chats.ids[c], &p, &found, err);
        while (rc == PS_OK && found && more && samples->len < PS_VALUE_TRAIN_BYTES) {
            ps_pack_entry e;
            if ((rc = pack_next(&p, &pos, &e, &more, err)) != PS_OK || !more ||
                e.value_len < PS_VALUE_PACK_MIN || e.value_len > PS_VALUE_SAMPLE_MAX)
                continue;
            if (e.value_len > PS_VALUE_TRAIN_BYTES - samples->len) {
                more = false; /* enough */
                c = chats.n;
                break;
            }
            if (*nsizes == *cap) {
                size_t grown_cap = *cap ? 2 * *cap : 1024;
                size_t *grown = realloc(*sizes, grown_cap * sizeof *grown);
                if (!grown) {
                    rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
                    break;
                }
                *sizes = grown;
                *cap = grown_cap;
            }
            if ((rc = ps__dynbuf_add(samples, e.value, e.value_len)) != PS_OK)
                rc = ps_error_set(err, rc, -1, "", "out of memory");
            else
                (*sizes)[(*nsizes)++] = e.value_len;
        }
    }
    pack_buf_free(&p);
    id_set_free(&chats);
    return rc;
}

static ps_code sqlite_chat_load(ps_store *base, int64_t user, const char *id, bool with_messages,
                                ps_chat **out, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *out = NULL;
    sqlite3_stmt *st = stmt(s, Q_CHAT_GET);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    ps_code rc = step_state(s, st, out, NULL, err);
    if (rc == PS_OK && *out && with_messages) {
        st = stmt(s, Q_MSG_ALL);
        sqlite3_bind_int64(st, 1, user);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        rc = append_rows(s, st, user, *out, err);
        ps__chat_normalize(*out);
        if (rc == PS_OK)
            rc = add_packed(s, user, *out, err);
    }
    if (rc != PS_OK) {
        ps__chat_free(*out);
        *out = NULL;
    }
    return rc;
}

static ps_code sqlite_messages_load(ps_store *base, int64_t user, ps_chat *chat,
                                    const char *const *ids, size_t n, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    ps_code rc = PS_OK;
    id_set missing = {0}; /* no row: perhaps packed */
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        sqlite3_stmt *st = stmt(s, Q_MSG_ONE);
        sqlite3_bind_int64(st, 1, user);
        sqlite3_bind_text(st, 2, chat->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, ids[i], -1, SQLITE_STATIC);
        size_t had = chat->nmessages;
        rc = append_rows(s, st, user, chat, err);
        if (rc == PS_OK && chat->nmessages == had && s->schema >= 12 &&
            id_set_add(&missing, ids[i]) != PS_OK)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    if (rc == PS_OK && missing.n) {
        qsort(missing.ids, missing.n, sizeof *missing.ids, id_cmp);
        pack_buf p;
        pack_buf_init(&p);
        bool found, more = true;
        size_t pos = 0;
        rc = pack_read(s, user, chat->id, &p, &found, err);
        while (rc == PS_OK && found && more) {
            ps_pack_entry e;
            if ((rc = pack_next(&p, &pos, &e, &more, err)) == PS_OK && more &&
                id_set_has(&missing, e.id))
                rc = append_entry(chat, &e, err);
        }
        pack_buf_free(&p);
    }
    id_set_free(&missing);
    ps__chat_normalize(chat);
    return rc;
}

/* The stored size of a row (0 when there is none), via a size query. */
static int64_t stored_size(sqlite_store *s, int q, int64_t user, const char *chat_id,
                           const char *msg_id)
{
    sqlite3_stmt *st = stmt(s, q);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, chat_id, -1, SQLITE_STATIC);
    if (msg_id)
        sqlite3_bind_text(st, 3, msg_id, -1, SQLITE_STATIC);
    int64_t size = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return size;
}

/* Saves one message row; *grown takes the change in stored bytes. `fresh`:
 * the chat had no rows before this save, so there is no old row to weigh.
 * `value`: its text and, when packed, its frame (`frame`, value->frame_len
 * bytes: ps_value_pack_many's, or a form made ahead); NULL for a deleted
 * message. */
static ps_code save_message(sqlite_store *s, int64_t user, const char *chat_id, const ps_message *m,
                            const ps_value_item *value, const void *frame, bool fresh,
                            uint32_t dict, int64_t *grown, size_t *plain, ps_error *err)
{
    if (!fresh)
        *grown -= stored_size(s, Q_MSG_SIZE, user, chat_id, m->id);
    const char *text = value ? value->text : NULL;
    size_t len = value ? value->len : 0;
    bool packed = value && value->packed;
    if (text && !packed && !dict && len >= PS_VALUE_PACK_MIN)
        *plain += len; /* what a dictionary would compress: counts to training */
    sqlite3_stmt *st = stmt(s, Q_MSG_PUT);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, chat_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, m->id, -1, SQLITE_STATIC);
    if (packed)
        sqlite3_bind_blob(st, 4, frame, (int)value->frame_len, SQLITE_STATIC);
    else if (text)
        sqlite3_bind_text(st, 4, text, (int)len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_int64(st, 5, m->stamp.ts);
    sqlite3_bind_int64(st, 6, m->stamp.lamport);
    sqlite3_bind_text(st, 7, m->stamp.device ? m->stamp.device : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, m->order_ts);
    sqlite3_bind_int64(st, 9, m->mark.seq);
    sqlite3_bind_text(st, 10, m->mark.origin ? m->mark.origin : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 11, m->stamp.timed);
    sqlite3_bind_int64(st, 12, m->received);
    sqlite3_bind_int(st, 13, !fresh);
    ps_code rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving message");
    sqlite3_reset(st);
    *grown += (int64_t)(strlen(m->id) + (packed ? value->frame_len : len));
    return rc;
}

/* Whether a form made ahead (values_pack_ahead) is what chat_save would
 * store now: made for this user with the dictionary it packs with. A
 * dictionary made since (the user had none) or another user's: packed
 * again. */
static bool form_current(const ps_value_form *form, int64_t user, uint32_t dict)
{
    return form && dict && form->user == user && form->dict == dict;
}

static bool worth_a_pack(const sqlite_store *s, const ps_chat *chat, bool fresh);

/* Whether chat_save will keep this incoming chat's messages as a pack (a
 * chat new to the store, worth_a_pack): their values are compressed with
 * the pack, not alone, so packing them ahead would be work thrown away. */
static bool will_be_a_pack(sqlite_store *s, int64_t user, const ps_chat *chat)
{
    return worth_a_pack(s, chat, true) && stored_size(s, Q_CHAT_SIZE, user, chat->id, NULL) == 0;
}

static ps_code packs_ahead(sqlite_store *s, int64_t user, uint32_t dict, ps_chat *const *chats,
                           size_t n, const bool *new_pack, ps_values_ahead *ahead, ps_error *err);

static ps_code sqlite_values_pack_ahead(ps_store *base, int64_t user, ps_chat *const *chats,
                                        size_t n, ps_values_ahead *ahead, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    uint32_t dict = 0;
    ps_code rc = user_dict(s, user, &dict, err);
    if (rc != PS_OK || !dict)
        return rc;
    bool *skip = calloc(n + 1, sizeof *skip);
    if (!skip)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    size_t count = 0;
    for (size_t c = 0; c < n; c++) {
        if ((skip[c] = will_be_a_pack(s, user, chats[c])))
            continue;
        for (size_t i = 0; i < chats[c]->nmessages; i++)
            count += chats[c]->messages[i].value != NULL;
    }
    ps_value_item *items = calloc(count + 1, sizeof *items);
    ps_value_form *forms = calloc(count + 1, sizeof *forms);
    if (!items || !forms) {
        free(items);
        free(forms);
        free(skip);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    size_t k = 0;
    for (size_t c = 0; c < n && rc == PS_OK; c++)
        for (size_t i = 0; !skip[c] && i < chats[c]->nmessages && rc == PS_OK; i++) {
            json_object *value = chats[c]->messages[i].value;
            if (!value)
                continue;
            ps_value_item *it = &items[k++];
            if (!(it->text = ps__json_text_kept(value, &it->len)))
                rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        }
    ps__dynbuf_init(&ahead->frames, SIZE_MAX - 1);
    if (rc == PS_OK) {
        ps_code prc = ps_value_pack_many(items, count, user, dict, load_dict, s, &ahead->frames);
        if (prc != PS_OK)
            rc = ps_error_set(err, prc, -1, "", "compressing a message failed");
    }
    /* the frames stay where they are from here: the forms point into them */
    for (size_t c = 0, j = 0; c < n && rc == PS_OK; c++)
        for (size_t i = 0; !skip[c] && i < chats[c]->nmessages; i++) {
            ps_message *m = &chats[c]->messages[i];
            if (!m->value)
                continue;
            ps_value_form *f = &forms[j];
            const ps_value_item *it = &items[j++];
            *f = (ps_value_form){.user = user, .dict = dict, .packed = it->packed};
            if (it->packed) {
                f->frame = ahead->frames.data + it->frame_at;
                f->len = it->frame_len;
            }
            m->form = f;
        }
    free(items);
    if (rc != PS_OK) {
        free(skip);
        free(forms);
        return rc;
    }
    ahead->forms = forms;
    ahead->n = count;
    /* the chats that will be packs: their frames too */
    rc = ahead->device ? packs_ahead(s, user, dict, chats, n, skip, ahead, err) : PS_OK;
    free(skip);
    return rc;
}

static ps_code sqlite_user_bytes(ps_store *base, int64_t user, int64_t *bytes, ps_error *err);

/*
 * Whether every live message chat_save would write is numbered
 * (`received` >= 0, ps__chat_number_received). One that is not keeps the
 * chat in rows: a pack orders its entries by `received` and its reader
 * refuses a negative one as corrupt, and chat_save cannot number them
 * itself: numbering advances the chat's next_received, which the state
 * it stores holds (made by the caller), so a number given here would be
 * given again by the next save. Rows keep `received` as given, as every
 * version before packs did, and the next save through sync_common.c
 * numbers them. polysyncd's saves always number first (values_pack_ahead
 * runs before that and guesses the numbers: guess_received); this is for
 * a caller that does not.
 */
static bool numbered(const ps_chat *chat)
{
    for (size_t i = 0; i < chat->nmessages; i++)
        if (chat->messages[i].mark.dirty && chat->messages[i].value &&
            chat->messages[i].received < 0)
            return false;
    return true;
}

/* Whether a new chat's messages go into a pack: at schema 12, with
 * PACK_MIN_TEXT to PACK_MAX_TEXT bytes of message text (the packing rules
 * above pack_buf), with or without a rendering (a legacy sync keeps its
 * rendering beside the pack: the legacy pull copies the rendering, v2
 * reads the pack). chat_save asks numbered() too. */
static bool worth_a_pack(const sqlite_store *s, const ps_chat *chat, bool fresh)
{
    if (!fresh || s->schema < 12)
        return false;
    size_t text = 0, n = 0;
    for (size_t i = 0; i < chat->nmessages; i++) {
        const ps_message *m = &chat->messages[i];
        size_t len = 0;
        if (m->mark.dirty && m->value && ps__json_text_kept(m->value, &len)) {
            text += len;
            n++;
        }
    }
    return n >= 2 && text >= PACK_MIN_TEXT && text <= PACK_MAX_TEXT;
}

/* What a pack made ahead assumes the save will set (pack_raw): message
 * i's `received` and every message's origin. */
typedef struct pack_guess {
    const int64_t *received;
    const char *origin;
} pack_guess;

typedef struct pack_item {
    const ps_message *m;
    int64_t received;
} pack_item;

static int pack_item_cmp(const void *a, const void *b)
{
    const pack_item *x = a, *y = b;
    if (ps_pack_before(x->m->order_ts, x->received, x->m->id, y->m->order_ts, y->received,
                       y->m->id))
        return -1;
    return ps_pack_before(y->m->order_ts, y->received, y->m->id, x->m->order_ts, x->received,
                          x->m->id);
}

/* Arrival order of messages not numbered yet (received -(k + 1) for the
 * k-th), for guess_received; ties (not expected) by position. */
static int arrival_cmp(const void *a, const void *b)
{
    const pack_item *x = a, *y = b;
    int64_t kx = -x->m->received, ky = -y->m->received;
    if (kx != ky)
        return kx < ky ? -1 : 1;
    return (x->received > y->received) - (x->received < y->received);
}

/* The chat's dirty live messages as a based pack (ps_pack_begin_based) in
 * *raw, in display order, each seq relative to `base`. With a guess (a
 * pack made ahead, before the save numbers and marks the messages): the
 * guessed `received` and origin, every seq offset 0. */
static ps_code pack_raw(const ps_chat *chat, const pack_guess *guess, int64_t base, ps_dynbuf *raw)
{
    pack_item *order = calloc(chat->nmessages + 1, sizeof *order);
    if (!order)
        return PS_ERR_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < chat->nmessages; i++)
        if (chat->messages[i].mark.dirty && chat->messages[i].value)
            order[n++] = (pack_item){&chat->messages[i],
                                     guess ? guess->received[i] : chat->messages[i].received};
    qsort(order, n, sizeof *order, pack_item_cmp);
    ps_code rc = ps_pack_begin_based(raw);
    /* room for it all at once, not grown (and copied) as it is laid out:
     * per entry its four strings with a NUL each, their lengths and five
     * numbers (varints of 10 bytes at most), the flags */
    size_t room = 0;
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        const ps_message *m = order[i].m;
        size_t len = 0;
        const char *origin = guess ? guess->origin : m->mark.origin;
        if (!ps__json_text_kept(m->value, &len))
            rc = PS_ERR_NOMEM;
        room += len + strlen(m->id) + (m->stamp.device ? strlen(m->stamp.device) : 0) +
                (origin ? strlen(origin) : 0) + 4 + 9 * 10 + 1;
    }
    if (rc == PS_OK)
        rc = ps__dynbuf_reserve(raw, room);
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        const ps_message *m = order[i].m;
        const char *origin = guess ? guess->origin : m->mark.origin;
        ps_pack_entry e = {
            .id = m->id,
            .device = m->stamp.device ? m->stamp.device : "",
            .origin = origin ? origin : "",
            .ts = m->stamp.ts,
            .lamport = m->stamp.lamport,
            .order_ts = m->order_ts,
            .seq = guess ? 0 : m->mark.seq - base,
            .received = order[i].received,
            .timed = m->stamp.timed,
        };
        if (!(e.value = ps__json_text_kept(m->value, &e.value_len)))
            rc = PS_ERR_NOMEM;
        else
            rc = ps_pack_put(raw, &e);
    }
    free(order);
    return rc;
}

/* Whether pack entry `e` is what pack_raw lays out for message m of a
 * pack based on `base` (a dirty live message): every part ps_pack_put
 * writes — id (looked up by it), value text, stamp, display order, the
 * mark's origin (an origin equal to the device's is written as a flag),
 * seq relative to base, `received`. */
static bool pack_entry_is(const ps_pack_entry *e, const ps_message *m, int64_t base)
{
    size_t len = 0;
    const char *text = m->mark.dirty && m->value ? ps__json_text_kept(m->value, &len) : NULL;
    const char *device = m->stamp.device ? m->stamp.device : "";
    const char *origin = m->mark.origin ? m->mark.origin : "";
    bool own_origin = strcmp(origin, device) != 0;
    return text && e->value_len == len && memcmp(e->value, text, len) == 0 &&
           strcmp(e->device, device) == 0 &&
           (own_origin ? e->origin && strcmp(e->origin, origin) == 0 : !e->origin) &&
           e->ts == m->stamp.ts && e->lamport == m->stamp.lamport && e->order_ts == m->order_ts &&
           e->seq == m->mark.seq - base && e->received == m->received && e->timed == m->stamp.timed;
}

/* Whether a pack made ahead is what save_pack would store now, pack_raw's
 * bytes for `base`: made for this user with the codec (LZ4, or zstd with
 * the dictionary) it compresses with, and its bytes, read entry by entry, are the chat's dirty live
 * messages (pack_entry_is: the same messages, numbered and marked as
 * guessed, all of the chat's seq), each once, in display order, and no
 * other. Reading the bytes made ahead checks what laying them out again
 * and comparing did (the form's bytes were laid out by pack_raw, one
 * encoding per entry) without a second copy of every text, a sort and
 * its allocations (~7 % of a first upload's request threads). */
static bool pack_form_matches(const ps_pack_form *form, const ps_chat *chat, int64_t base,
                              int64_t user, uint32_t dict, bool lz4)
{
    if (!form || form->user != user || form->lz4 != lz4 ||
        (!lz4 && (!dict || form->dict != dict)) || !ps_pack_is_based(form->raw, form->raw_len))
        return false;
    size_t want = 0, seen = 0, pos = 0;
    for (size_t i = 0; i < chat->nmessages; i++)
        want += chat->messages[i].mark.dirty && chat->messages[i].value;
    ps_pack_entry e, prev = {0};
    bool more = true;
    for (;;) {
        if (ps_pack_next(form->raw, form->raw_len, &pos, &e, &more) != PS_OK)
            return false;
        if (!more)
            break;
        const ps_message *m = ps__chat_message(chat, e.id);
        /* strictly after the one before: display order, each id once */
        if (!m || !pack_entry_is(&e, m, base) ||
            (seen &&
             !ps_pack_before(prev.order_ts, prev.received, prev.id, e.order_ts, e.received, e.id)))
            return false;
        prev = e;
        seen++;
    }
    return seen == want;
}

/* Appends a based pack (its prefix with the summary of `raw`, then `frame`,
 * raw compressed) in pieces with Q_PACK_PUT; *bytes = what they weigh. */
static ps_code pack_write_based(sqlite_store *s, int64_t user, const char *chat_id, int64_t base,
                                const char *raw, size_t raw_len, const void *frame, size_t len,
                                int64_t *bytes, ps_error *err)
{
    return pack_write_stored(s, stmt(s, Q_PACK_PUT), user, chat_id, base, raw, raw_len, frame, len,
                             bytes, err);
}

/* `raw` compressed as a pack's frame into *frame: an LZ4 frame (lz4), or
 * zstd with the user's dictionary `dict` (0: none). */
static ps_code pack_compress(sqlite_store *s, int64_t user, uint32_t dict, bool lz4,
                             const ps_dynbuf *raw, ps_dynbuf *frame)
{
    return lz4 ? ps_doc_frame(raw->data, raw->len, frame)
               : ps_value_pack_frame(raw->data, raw->len, user, dict, load_dict, s, frame);
}

/* Writes the chat's dirty live messages as its pack (it has none yet),
 * based on their lowest seq (all the chat's, when it is new), an LZ4 frame
 * (lz4: a legacy save's, read whole by legacy reads) or zstd; the frame
 * made ahead (chat->pack_form) when it is still what would be made, else
 * compressed here. *bytes = what the pack weighs. */
static ps_code save_pack(sqlite_store *s, int64_t user, const ps_chat *chat, uint32_t dict,
                         bool lz4, int64_t *bytes, ps_error *err)
{
    int64_t base = INT64_MAX;
    for (size_t i = 0; i < chat->nmessages; i++)
        if (chat->messages[i].mark.dirty && chat->messages[i].value &&
            chat->messages[i].mark.seq < base)
            base = chat->messages[i].mark.seq;
    if (base == INT64_MAX || base < 0)
        base = 0;
    if (pack_form_matches(chat->pack_form, chat, base, user, dict, lz4))
        return pack_write_based(s, user, chat->id, base, chat->pack_form->raw,
                                chat->pack_form->raw_len, chat->pack_form->frame,
                                chat->pack_form->len, bytes, err);
    ps_dynbuf raw, frame;
    ps__dynbuf_init(&raw, SIZE_MAX - 1);
    ps__dynbuf_init(&frame, SIZE_MAX - 1);
    ps_code rc = pack_raw(chat, NULL, base, &raw);
    if (rc != PS_OK) {
        rc = ps_error_set(err, rc, -1, "", "out of memory");
    } else {
        rc = pack_compress(s, user, dict, lz4, &raw, &frame);
        if (rc != PS_OK)
            rc = ps_error_set(err, rc, -1, "", "compressing a pack failed");
        else
            rc = pack_write_based(s, user, chat->id, base, raw.data, raw.len, frame.data, frame.len,
                                  bytes, err);
    }
    ps__dynbuf_free(&raw);
    ps__dynbuf_free(&frame);
    return rc;
}

/* The `received` save will give the messages of a chat new to the store
 * (ps__chat_number_received from 0: as they arrived) in received[i];
 * false when it cannot be told (a message numbered already). */
static bool guess_received(const ps_chat *chat, int64_t *received)
{
    for (size_t i = 0; i < chat->nmessages; i++)
        if (chat->messages[i].received >= 0)
            return false;
    /* unnumbered ones are -(k + 1) for the k-th to arrive: rank them */
    pack_item *order = calloc(chat->nmessages + 1, sizeof *order);
    if (!order)
        return false;
    for (size_t i = 0; i < chat->nmessages; i++)
        order[i] = (pack_item){&chat->messages[i], (int64_t)i};
    qsort(order, chat->nmessages, sizeof *order, arrival_cmp);
    for (size_t k = 0; k < chat->nmessages; k++)
        received[order[k].received] = (int64_t)k;
    free(order);
    return true;
}

/*
 * The packs of the chats that will be new to the store (new_pack[c]),
 * compressed in values_pack_ahead's transaction with the user's
 * dictionary `dict`: each chat points at its form (ps_pack_form), which
 * save_pack takes only if it lays out the same bytes then. A pack's bytes
 * hold no seq (a based pack, offsets 0: the chat's seq is given in the
 * write transaction) and guess the rest the save sets: `received` numbered
 * as the messages arrived, every origin the pushing device. Laid out here,
 * then compressed together on both cores (ps_value_pack_frames): on a
 * legacy first upload that is most of a request's compression.
 */
static ps_code packs_ahead(sqlite_store *s, int64_t user, uint32_t dict, ps_chat *const *chats,
                           size_t n, const bool *new_pack, ps_values_ahead *ahead, ps_error *err)
{
    size_t count = 0;
    for (size_t c = 0; c < n; c++)
        count += new_pack[c];
    if (!count)
        return PS_OK;
    ps_value_item *items = calloc(count, sizeof *items);
    size_t *chat_of = calloc(count, sizeof *chat_of);
    if (!items || !chat_of || !(ahead->packs = calloc(count, sizeof *ahead->packs))) {
        free(items);
        free(chat_of);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    ps__dynbuf_init(&ahead->pack_frames, SIZE_MAX - 1);
    ps_code rc = PS_OK;
    for (size_t c = 0; c < n && rc == PS_OK; c++) {
        const ps_chat *chat = chats[c];
        int64_t *received = new_pack[c] ? calloc(chat->nmessages + 1, sizeof *received) : NULL;
        if (!received || !guess_received(chat, received)) {
            free(received);
            continue; /* compressed in the save */
        }
        pack_guess guess = {.received = received, .origin = ahead->device};
        ps_dynbuf raw;
        ps__dynbuf_init(&raw, SIZE_MAX - 1);
        rc = pack_raw(chat, &guess, 0, &raw);
        free(received);
        if (rc != PS_OK) {
            ps__dynbuf_free(&raw);
            break;
        }
        /* the dynbuf's memory is the form's from here (freed by
         * ps_values_ahead_free) */
        items[ahead->npacks] = (ps_value_item){.text = raw.data, .len = raw.len};
        chat_of[ahead->npacks] = c;
        ahead->packs[ahead->npacks++] =
            (ps_pack_form){.raw = raw.data, .raw_len = raw.len, .user = user, .dict = dict};
    }
    if (rc == PS_OK)
        rc = ps_value_pack_frames(items, ahead->npacks, user, dict, load_dict, s,
                                  &ahead->pack_frames);
    /* the frames stay where they are from here: the forms point into them */
    for (size_t k = 0; rc == PS_OK && k < ahead->npacks; k++) {
        ahead->packs[k].frame = ahead->pack_frames.data + items[k].frame_at;
        ahead->packs[k].len = items[k].frame_len;
        chats[chat_of[k]]->pack_form = &ahead->packs[k];
    }
    free(items);
    free(chat_of);
    return rc == PS_OK ? PS_OK : ps_error_set(err, rc, -1, "", "compressing a pack failed");
}

/*
 * Packs made ahead on any thread (store.h, pack_ahead_begin): what
 * packs_ahead does for one chat. They are a legacy sync's (its merge
 * pipe, legacy_pipe.h), so from schema 14 on they are LZ4 frames, as
 * chat_save stores a chat a legacy save makes new (`lz4`, no dictionary
 * needed); before, zstd with the user's dictionary, digested beforehand
 * in the transaction (the threads making packs touch no connection).
 */
struct ps_pack_ahead {
    const sqlite_store *s;   /* read for its schema only */
    ps_value_packer *packer; /* NULL: LZ4 */
    int64_t user;
    uint32_t dict;
};

static ps_code sqlite_pack_ahead_begin(ps_store *base, int64_t user, ps_pack_ahead **out,
                                       ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *out = NULL;
    uint32_t dict = 0;
    bool lz4 = s->schema >= 14;
    ps_code rc = lz4 ? PS_OK : user_dict(s, user, &dict, err);
    if (rc != PS_OK || (!lz4 && !dict) || s->schema < 12)
        return rc;
    ps_pack_ahead *pa = calloc(1, sizeof *pa);
    if (!pa)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    *pa = (ps_pack_ahead){.s = s, .user = user, .dict = dict};
    if (!lz4 && (rc = ps_value_packer_new(user, dict, load_dict, s, &pa->packer)) != PS_OK) {
        free(pa);
        return rc == PS_ERR_NOMEM ? ps_error_set(err, rc, -1, "", "out of memory")
                                  : db_error(s, err, "reading a dictionary");
    }
    *out = pa;
    return PS_OK;
}

static ps_code sqlite_chat_is_new(ps_store *base, int64_t user, const char *id, bool *is_new,
                                  ps_error *err)
{
    (void)err;
    *is_new = stored_size((sqlite_store *)base, Q_CHAT_SIZE, user, id, NULL) == 0;
    return PS_OK;
}

static ps_code sqlite_pack_ahead_make(ps_store *base, const ps_pack_ahead *pa, const ps_chat *chat,
                                      const char *device, ps_pack_form **out)
{
    (void)base; /* pa has what it needs: no connection is touched */
    *out = NULL;
    if (!worth_a_pack(pa->s, chat, true))
        return PS_OK;
    int64_t *received = calloc(chat->nmessages + 1, sizeof *received);
    if (!received)
        return PS_ERR_NOMEM;
    if (!guess_received(chat, received)) {
        free(received);
        return PS_OK; /* compressed in the save */
    }
    pack_guess guess = {.received = received, .origin = device};
    ps_dynbuf raw, frame;
    ps__dynbuf_init(&raw, SIZE_MAX - 1);
    ps__dynbuf_init(&frame, SIZE_MAX - 1);
    ps_code rc = pack_raw(chat, &guess, 0, &raw);
    free(received);
    ps_pack_form *form = NULL;
    if (rc == PS_OK)
        rc = pa->packer ? ps_value_packer_frame(pa->packer, raw.data, raw.len, &frame)
                        : ps_doc_frame(raw.data, raw.len, &frame);
    if (rc == PS_OK && !(form = malloc(sizeof *form)))
        rc = PS_ERR_NOMEM;
    if (rc != PS_OK) {
        ps__dynbuf_free(&raw);
        ps__dynbuf_free(&frame);
        return rc;
    }
    /* the dynbufs' memory is the form's from here (ps_pack_form_free) */
    *form = (ps_pack_form){.raw = raw.data,
                           .raw_len = raw.len,
                           .frame = frame.data,
                           .len = frame.len,
                           .user = pa->user,
                           .dict = pa->dict,
                           .lz4 = !pa->packer};
    *out = form;
    return PS_OK;
}

static bool sqlite_keeps_legacy_pack(ps_store *base, int64_t user, const ps_chat *chat)
{
    (void)user; /* new to the store: the caller knows (it loaded no chat) */
    sqlite_store *s = (sqlite_store *)base;
    return s->schema >= 14 && worth_a_pack(s, chat, true) && numbered(chat);
}

static void sqlite_pack_ahead_end(ps_store *base, ps_pack_ahead *pa)
{
    (void)base;
    if (!pa)
        return;
    ps_value_packer_free(pa->packer);
    free(pa);
}

/* A chat's live rows are folded into its pack once there are at least
 * REPACK_ROWS of them weighing at least 1/REPACK_SHARE of the pack. */
#define REPACK_ROWS 8
#define REPACK_SHARE 4

/* One message of a pack being made again: a packed one (strings in the
 * old pack's bytes) or a row's (strings owned). */
typedef struct fold_item {
    ps_pack_entry e;
    char *owned; /* the row's strings, one allocation; NULL for a packed one */
} fold_item;

static int fold_cmp(const void *a, const void *b)
{
    const ps_pack_entry *x = &((const fold_item *)a)->e, *y = &((const fold_item *)b)->e;
    if (ps_pack_before(x->order_ts, x->received, x->id, y->order_ts, y->received, y->id))
        return -1;
    return ps_pack_before(y->order_ts, y->received, y->id, x->order_ts, x->received, x->id);
}

/* A row (MSG_COLUMNS of the stepped `st`, live) as a fold_item. */
static ps_code fold_row(sqlite_store *s, sqlite3_stmt *st, int64_t user, fold_item *it,
                        size_t *text, ps_error *err)
{
    const char *value;
    size_t vlen;
    ps_code rc = value_text(s, st, 1, user, &value, &vlen, err);
    if (rc != PS_OK)
        return rc;
    const char *id = (const char *)sqlite3_column_text(st, 0);
    const char *device = (const char *)sqlite3_column_text(st, 4);
    const char *origin = (const char *)sqlite3_column_text(st, 7);
    if (!id || !device || !origin)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    size_t il = strlen(id) + 1, dl = strlen(device) + 1, ol = strlen(origin) + 1;
    if (!(it->owned = malloc(il + dl + ol + vlen + 1)))
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    char *p = it->owned;
    it->e.id = memcpy(p, id, il);
    it->e.device = memcpy(p += il, device, dl);
    it->e.origin = memcpy(p += dl, origin, ol);
    it->e.value = memcpy(p += ol, value, vlen);
    p[vlen] = '\0';
    it->e.value_len = vlen;
    it->e.ts = sqlite3_column_int64(st, 2);
    it->e.lamport = sqlite3_column_int64(st, 3);
    it->e.order_ts = sqlite3_column_int64(st, 5);
    it->e.seq = sqlite3_column_int64(st, 6);
    it->e.timed = sqlite3_column_int(st, 8) != 0;
    it->e.received = sqlite3_column_int64(st, 9);
    *text += vlen;
    return PS_OK;
}

/* The first `n` integer columns of query `q`'s one row for (user, chat). */
static ps_code weigh(sqlite_store *s, int q, int64_t user, const char *chat_id, int64_t *cols,
                     int n, ps_error *err)
{
    sqlite3_stmt *st = stmt(s, q);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, chat_id, -1, SQLITE_STATIC);
    ps_code rc = PS_OK;
    if (sqlite3_step(st) != SQLITE_ROW)
        rc = db_error(s, err, "weighing a pack");
    for (int i = 0; rc == PS_OK && i < n; i++)
        cols[i] = sqlite3_column_int64(st, i);
    sqlite3_reset(st);
    return rc;
}

/*
 * After a save that wrote rows into a packed chat: once its live rows have
 * grown past the share above, they and the packed messages they do not
 * shadow become the chat's pack again (deleted messages stay rows; packed
 * ones a row shadows are dropped), and the chat's cold_seq rises to the
 * newest of them: a cursor before that reads the whole chat, one after it
 * needs hot rows only, as before. *grown takes the change in bytes.
 */
static ps_code repack_if_due(sqlite_store *s, int64_t user, const char *chat_id, uint32_t dict,
                             int64_t *grown, ps_error *err)
{
    int64_t pack_bytes, row_sizes[2];
    ps_code weighed = weigh(s, Q_PACK_SIZES, user, chat_id, &pack_bytes, 1, err);
    if (weighed != PS_OK || pack_bytes == 0)
        return weighed; /* rows only: nothing to fold into */
    if ((weighed = weigh(s, Q_ROW_SIZES, user, chat_id, row_sizes, 2, err)) != PS_OK)
        return weighed;
    int64_t rows = row_sizes[0], row_bytes = row_sizes[1];
    /* past a quarter of PACK_MAX_TEXT stored, the text may be over it (no
     * fold), found only by reading it all: such a chat keeps its rows */
    if (rows < REPACK_ROWS || row_bytes * REPACK_SHARE < pack_bytes ||
        pack_bytes + row_bytes > (int64_t)(PACK_MAX_TEXT / 4))
        return PS_OK;
    pack_buf p;
    pack_buf_init(&p);
    id_set shadows = {0};
    fold_item *items = NULL;
    size_t n = 0, cap = 0, text = 0;
    bool found, more = true;
    ps_code rc = pack_read(s, user, chat_id, &p, &found, err);
    if (rc == PS_OK)
        rc = row_ids(s, user, chat_id, &shadows, err);
    /* the live rows */
    sqlite3_stmt *st = stmt(s, Q_MSG_ALL);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, chat_id, -1, SQLITE_STATIC);
    int r = SQLITE_DONE;
    while (rc == PS_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_type(st, 1) == SQLITE_NULL)
            continue; /* a deleted message stays a row */
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            fold_item *grown_items = realloc(items, cap * sizeof *items);
            if (!grown_items) {
                rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
                break;
            }
            items = grown_items;
        }
        memset(&items[n], 0, sizeof items[n]);
        if ((rc = fold_row(s, st, user, &items[n], &text, err)) == PS_OK)
            n++;
    }
    if (rc == PS_OK && r != SQLITE_DONE)
        rc = db_error(s, err, "reading messages");
    sqlite3_reset(st);
    /* the packed messages no row shadows */
    size_t pos = 0;
    while (rc == PS_OK && found && more) {
        ps_pack_entry e;
        if ((rc = pack_next(&p, &pos, &e, &more, err)) != PS_OK || !more ||
            id_set_has(&shadows, e.id))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            fold_item *grown_items = realloc(items, cap * sizeof *items);
            if (!grown_items) {
                rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
                break;
            }
            items = grown_items;
        }
        items[n++] = (fold_item){.e = e};
        text += e.value_len;
    }
    ps_dynbuf raw;
    ps__dynbuf_init(&raw, SIZE_MAX - 1);
    int64_t newest = 0, bytes = 0;
    bool fold = rc == PS_OK && found && text <= PACK_MAX_TEXT;
    if (fold) {
        qsort(items, n, sizeof *items, fold_cmp);
        rc = ps_pack_begin_based(&raw); /* base 0: each seq as it is */
        for (size_t i = 0; i < n && rc == PS_OK; i++) {
            rc = ps_pack_put(&raw, &items[i].e);
            if (items[i].e.seq > newest)
                newest = items[i].e.seq;
        }
        if (rc != PS_OK)
            rc = ps_error_set(err, rc, -1, "", "out of memory");
    }
    static const int steps[2] = {Q_PACK_DEL, Q_ROWS_FOLD};
    for (int i = 0; fold && rc == PS_OK && i < 2; i++) {
        st = stmt(s, steps[i]);
        sqlite3_bind_int64(st, 1, user);
        sqlite3_bind_text(st, 2, chat_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "repacking a chat");
        sqlite3_reset(st);
    }
    if (fold && rc == PS_OK)
        rc = pack_write_with(s, stmt(s, Q_PACK_PUT), user, chat_id, &raw, dict, &bytes, err);
    if (fold && rc == PS_OK) {
        st = stmt(s, Q_COLD_RAISE);
        sqlite3_bind_int64(st, 1, user);
        sqlite3_bind_text(st, 2, chat_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, newest);
        rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "repacking a chat");
        sqlite3_reset(st);
        *grown += bytes - pack_bytes - row_bytes;
    }
    for (size_t i = 0; i < n; i++)
        free(items[i].owned);
    free(items);
    ps__dynbuf_free(&raw);
    id_set_free(&shadows);
    pack_buf_free(&p);
    return rc;
}

static ps_code sqlite_chat_save(ps_store *base, int64_t user, const ps_chat *chat, const char *doc,
                                size_t doc_len, int64_t seq, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    json_object *state = ps__chat_header_to_json(chat);
    if (!state)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    /* its text by json_compact.h's writer: json-c's bytes, without its
     * printbuf made and grown per chat */
    ps_dynbuf state_buf;
    ps__dynbuf_init(&state_buf, SIZE_MAX - 1);
    const char *state_text =
        ps__json_compact_append(&state_buf, state) == PS_OK ? state_buf.data : NULL;
    size_t state_len = state_buf.len;
    json_object_put(state);
    bool live = ps__chat_is_live(chat);
    int64_t stored = stored_size(s, Q_CHAT_SIZE, user, chat->id, NULL);
    bool fresh = stored == 0;
    bool packing = worth_a_pack(s, chat, fresh) && numbered(chat);
    /* A chat a legacy save makes new, kept as a pack (schema 14): the pack
     * is an LZ4 frame and the rendering is not stored — legacy reads put
     * it together from the shell and the pack (doc_render.h), decoding the
     * pack as fast as they would decode the rendering. Its messages are
     * then compressed once, not twice (zstd for the pack, LZ4 for the
     * rendering: the two were ~40 % of a first upload's CPU). */
    bool legacy_pack = doc && fresh && packing && s->schema >= 14;
    /* the caller asked keeps_legacy_pack, in this transaction: rendered
     * here only should the answer have changed meanwhile */
    ps_dynbuf rendered;
    ps__dynbuf_init(&rendered, SIZE_MAX - 1);
    if (doc == PS_DOC_FROM_PACK && !legacy_pack) {
        json_object *tree = ps__chat_to_legacy(chat);
        ps_code render_rc = tree ? ps__json_compact_append(&rendered, tree) : PS_ERR_NOMEM;
        json_object_put(tree);
        if (render_rc != PS_OK) {
            ps__dynbuf_free(&state_buf);
            ps__dynbuf_free(&rendered);
            return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        }
        doc = rendered.data;
        doc_len = rendered.len;
    }
    const char *kept_doc = legacy_pack ? NULL : doc;
    /* A chat with no body row has no message rows either (chat_save
     * writes both; deleting a chat takes both): its messages have no old
     * rows to weigh, which saves a first upload one lookup per message.
     * Without a rendering, its shell: legacy reads put it together from
     * the shell and the rows or pack (doc_render.h). */
    ps_dynbuf shell;
    ps__dynbuf_init(&shell, SIZE_MAX - 1);
    if (!state_text || (!kept_doc && ps_doc_shell(chat, &shell) != PS_OK)) {
        ps__dynbuf_free(&state_buf);
        ps__dynbuf_free(&rendered);
        ps__dynbuf_free(&shell);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    /* the rendering as stored: a frame when worth one (doc_codec.h; the
     * thread's buffer, valid through this save) */
    const void *doc_frame = NULL;
    size_t doc_frame_len = 0;
    bool doc_packed = false;
    if (kept_doc && ps_doc_pack(doc, doc_len, &doc_frame, &doc_frame_len, &doc_packed) != PS_OK) {
        ps__dynbuf_free(&state_buf);
        ps__dynbuf_free(&rendered);
        ps__dynbuf_free(&shell);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    hint_clear(&s->hint); /* the chat's cold_seq may change */
    size_t body_len = doc_packed ? doc_frame_len : kept_doc ? doc_len : shell.len;
    int64_t grown = (int64_t)(state_len + body_len) - stored;
    sqlite3_stmt *st = stmt(s, Q_CHAT_PUT);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, chat->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, live);
    const ps_lamport *shown = &chat->deleted_lamport;
    sqlite3_bind_int64(st, 6, chat->has_tombstone ? shown->counter : 0);
    sqlite3_bind_text(st, 7, chat->has_tombstone && shown->id ? shown->id : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, chat->has_tombstone && !live ? chat->tombstone.ts : 0);
    sqlite3_bind_int64(st, 9, seq);
    ps_code rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving chat");
    sqlite3_reset(st);
    /* With the rendering, the base of a device sent it (base_copy): every
     * field's and message's hash, each message's text made once for both
     * its hash and its row. Rows: only what changed (one new message in a
     * long chat is one row). */
    ps_base hashes = {0};
    for (size_t i = 0; doc && i < chat->nfields && rc == PS_OK; i++)
        if (ps__base_add(&hashes,
                         ps__base_field_hash(chat->fields[i].name, chat->fields[i].value)) != PS_OK)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    ps_dynbuf frames;
    ps__dynbuf_init(&frames, SIZE_MAX - 1);
    uint32_t dict = 0;
    size_t plain = 0; /* bytes stored plain for want of a dictionary */
    if (rc == PS_OK)
        rc = user_dict(s, user, &dict, err);
    /* The changed rows' values, compressed all at once (ps_value_pack_many
     * shares a chat's with a second thread); each is the text kept with
     * the value, made once for its base hash too (json-c's ps__json_text
     * would copy it into a new printbuf). */
    size_t changed = 0; /* a v2 push into a long chat changes a few */
    for (size_t i = 0; i < chat->nmessages && !packing; i++)
        changed += chat->messages[i].mark.dirty && chat->messages[i].value;
    ps_value_item *values = calloc(changed + 1, sizeof *values);
    /* values[order[j]]: the j-th value packed here (a form made ahead for
     * this user with this dictionary is taken as it is: values_pack_ahead) */
    size_t *order = calloc(changed + 1, sizeof *order);
    if ((!values || !order) && rc == PS_OK)
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    size_t nvalues = 0, npack = 0;
    for (size_t i = 0; i < chat->nmessages && rc == PS_OK; i++) {
        const ps_message *m = &chat->messages[i];
        if (!m->mark.dirty || !m->value || packing)
            continue;
        ps_value_item *v = &values[nvalues];
        if (!(v->text = ps__json_text_kept(m->value, &v->len)))
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        else if (!form_current(m->form, user, dict))
            order[npack++] = nvalues;
        nvalues++;
    }
    if (rc == PS_OK && dict && npack) {
        ps_value_item *pack = npack == nvalues ? values : calloc(npack, sizeof *pack);
        for (size_t j = 0; pack && pack != values && j < npack; j++)
            pack[j] = values[order[j]];
        ps_code prc = pack ? ps_value_pack_many(pack, npack, user, dict, load_dict, s, &frames)
                           : PS_ERR_NOMEM;
        if (prc != PS_OK)
            rc = ps_error_set(err, prc, -1, "", "compressing a message failed");
        for (size_t j = 0; prc == PS_OK && pack != values && j < npack; j++)
            values[order[j]] = pack[j];
        if (pack != values)
            free(pack);
    }
    for (size_t i = 0, k = 0; i < chat->nmessages && rc == PS_OK; i++) {
        const ps_message *m = &chat->messages[i];
        if (!doc && !m->mark.dirty)
            continue;
        size_t len = 0;
        const char *text = m->value ? ps__json_text_kept(m->value, &len) : NULL;
        if ((m->value && !text) || /* out of memory: not hashed as deleted */
            (doc && ps__base_add(&hashes, ps__base_message_hash_text(m->id, text, len)) != PS_OK))
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        else if (m->mark.dirty && !(packing && m->value)) { /* packed below */
            ps_value_item *v = m->value ? &values[k++] : NULL;
            const void *frame = NULL;
            if (v && form_current(m->form, user, dict)) {
                v->packed = m->form->packed;
                v->frame_len = m->form->len;
                frame = m->form->frame;
            } else if (v && v->packed) {
                frame = frames.data + v->frame_at;
            }
            rc = save_message(s, user, chat->id, m, v, frame, fresh, dict, &grown, &plain, err);
        } else if (m->mark.dirty && !dict && !legacy_pack) {
            /* packed by zstd without a dictionary: counts to training (an
             * LZ4 pack would not use one: training for it is work lost, 3 %
             * of a legacy first upload) */
            plain += len;
        }
    }
    if (rc == PS_OK && packing) {
        int64_t bytes = 0;
        rc = save_pack(s, user, chat, dict, legacy_pack, &bytes, err);
        grown += bytes;
    }
    /* live rows into a chat that may have a pack (a legacy save's too:
     * a chat it made new is a pack) */
    bool wrote_rows = false;
    for (size_t i = 0; !fresh && s->schema >= 12 && i < chat->nmessages; i++)
        wrote_rows |= chat->messages[i].mark.dirty && chat->messages[i].value;
    if (rc == PS_OK && wrote_rows)
        rc = repack_if_due(s, user, chat->id, dict, &grown, err);
    free(values);
    free(order);
    ps__dynbuf_free(&frames);
    /* A new chat's rows are cold: the newest of their sequence numbers is
     * the chat's cold_seq (a copy by `polysyncd migrate` brings rows of
     * several) */
    int64_t cold_seq = 0;
    for (size_t i = 0; fresh && i < chat->nmessages; i++)
        if (chat->messages[i].mark.dirty && chat->messages[i].mark.seq > cold_seq)
            cold_seq = chat->messages[i].mark.seq;
    if (rc == PS_OK && cold_seq) {
        st = stmt(s, Q_COLD_SET);
        sqlite3_bind_int64(st, 1, user);
        sqlite3_bind_text(st, 2, chat->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, cold_seq);
        rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving chat");
        sqlite3_reset(st);
    }
    if (rc == PS_OK) {
        st = stmt(s, Q_BODY_PUT);
        sqlite3_bind_int64(st, 1, user);
        sqlite3_bind_text(st, 2, chat->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, state_text, (int)state_len, SQLITE_STATIC);
        /* not rendered, or not kept: the shell */
        if (kept_doc)
            sqlite3_bind_null(st, 6);
        else
            sqlite3_bind_text(st, 6, shell.data, (int)shell.len, SQLITE_STATIC);
        ps__base_seal(&hashes);
        static const uint64_t none = 0; /* NULL = not worked out */
        if (doc)
            sqlite3_bind_blob(st, 5, hashes.n ? (const void *)hashes.hashes : (const void *)&none,
                              (int)(hashes.n * sizeof(uint64_t)), SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 5);
        rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving chat");
        sqlite3_reset(st);
    }
    /* the rendering (a frame when worth one), or none: a chat saved
     * without one (a v2 push, a legacy save's new pack) is put together
     * from its shell and rows or pack; a new chat has no old one to delete */
    if (rc == PS_OK && (kept_doc || !fresh)) {
        st = stmt(s, kept_doc ? Q_DOC_PUT : Q_DOC_DEL);
        sqlite3_bind_int64(st, 1, user);
        sqlite3_bind_text(st, 2, chat->id, -1, SQLITE_STATIC);
        if (doc_packed)
            sqlite3_bind_blob(st, 3, doc_frame, (int)doc_frame_len, SQLITE_STATIC);
        else if (kept_doc)
            sqlite3_bind_text(st, 3, doc, (int)doc_len, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving chat");
        sqlite3_reset(st);
    }
    ps__base_free(&hashes);
    ps__dynbuf_free(&state_buf);
    ps__dynbuf_free(&rendered);
    ps__dynbuf_free(&shell);
    if (rc == PS_OK && grown) {
        st = stmt(s, Q_USER_GROW);
        sqlite3_bind_int64(st, 1, user);
        sqlite3_bind_int64(st, 2, grown);
        rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "counting bytes");
        sqlite3_reset(st);
    }
    /* A user without a dictionary gets one once there is enough to train
     * on: tried each time another quarter of the amount came in plain, or
     * after a try that trained nothing (values too few or too alike),
     * four times the amount. */
    if (rc == PS_OK && !dict && plain) {
        s->plain_since_training += plain;
        int64_t bytes = 0;
        if (s->plain_since_training >=
                (s->train_after ? s->train_after : PS_VALUE_TRAIN_BYTES / 4) &&
            (rc = sqlite_user_bytes(base, user, &bytes, err)) == PS_OK &&
            bytes >= (int64_t)PS_VALUE_TRAIN_BYTES) {
            s->plain_since_training = 0;
            rc = train_user(s, user, &dict, err);
            s->train_after = dict ? PS_VALUE_TRAIN_BYTES / 4 : 4 * PS_VALUE_TRAIN_BYTES;
        }
    }
    return rc;
}

static ps_code sqlite_chat_next_changed(ps_store *base, int64_t user, int64_t after_seq,
                                        ps_chat **out, int64_t *seq, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *out = NULL;
    sqlite3_stmt *st = stmt(s, Q_CHAT_NEXT);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_int64(st, 2, after_seq);
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE)
        return PS_OK;
    if (r != SQLITE_ROW)
        return db_error(s, err, "reading a chat");
    *seq = sqlite3_column_int64(st, 1);
    /* messages_since is asked next for this chat: its cold_seq comes along
     * (strdup failing: no hint; messages_since then looks the chat up
     * itself) */
    cold_hint *h = conn_hint(s);
    hint_clear(h);
    h->user = user;
    h->cold_seq = sqlite3_column_int64(st, 2);
    h->chat_id = strdup((const char *)sqlite3_column_text(st, 3));
    ps_code rc = parse_state(st, 0, out, err);
    sqlite3_reset(st);
    return rc;
}

/* Moves *e to the next packed message a read owes: changed after
 * after_seq, not the skipped origin's after skip_after (as Q_MSG_SINCE's
 * filter), not shadowed by a row; *have false when none is left. */
static ps_code next_owed(const pack_buf *p, size_t *pos, const id_set *shadows, int64_t after_seq,
                         const char *skip_origin, int64_t skip_after, ps_pack_entry *e, bool *have,
                         ps_error *err)
{
    *have = false;
    for (;;) {
        bool more;
        ps_code rc = pack_next(p, pos, e, &more, err);
        if (rc != PS_OK || !more)
            return rc;
        const char *origin = e->origin ? e->origin : e->device;
        if (e->seq <= after_seq ||
            (skip_origin && strcmp(origin, skip_origin) == 0 && e->seq > skip_after) ||
            id_set_has(shadows, e->id))
            continue;
        *have = true;
        return PS_OK;
    }
}

/* Calls fn with a packed message. */
static ps_code emit_entry(const ps_pack_entry *e, ps_message_fn fn, void *ctx, ps_error *err)
{
    ps_message m;
    ps_code rc = entry_message(e, &m, err);
    if (rc == PS_OK)
        rc = fn(ctx, &m);
    json_object_put(m.value);
    return rc;
}

static ps_code sqlite_messages_since(ps_store *base, int64_t user, const char *chat_id,
                                     int64_t after_seq, const char *skip_origin, int64_t skip_after,
                                     ps_message_fn fn, void *ctx, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    /* before the chat's cold_seq: the whole chat (a first pull); at or
     * after it, its hot rows (the index); the same rows either way */
    int64_t cold_seq = 0;
    cold_hint *hint = conn_hint(s);
    if (after_seq >= 1 && hint->chat_id && hint->user == user &&
        strcmp(hint->chat_id, chat_id) == 0) {
        cold_seq = hint->cold_seq; /* chat_next_changed read it with the chat */
    } else if (after_seq >= 1) {
        sqlite3_stmt *cs = stmt(s, Q_COLD_SEQ);
        sqlite3_bind_int64(cs, 1, user);
        sqlite3_bind_text(cs, 2, chat_id, -1, SQLITE_STATIC);
        int r = sqlite3_step(cs);
        if (r == SQLITE_ROW)
            cold_seq = sqlite3_column_int64(cs, 0);
        sqlite3_reset(cs);
        if (r != SQLITE_ROW && r != SQLITE_DONE)
            return db_error(s, err, "listing messages");
    }
    bool whole = after_seq < 1 || after_seq < cold_seq;
    /* Packed messages are cold (their seq at most cold_seq): only a whole
     * read can owe any. Merged with the rows in display order; a row
     * shadows a packed message of its id, sent or not. */
    pack_buf p;
    pack_buf_init(&p);
    bool packed = false, have = false;
    id_set shadows = {0};
    ps_pack_entry e;
    size_t pos = 0;
    /* a pack that can owe nothing (its summary says so) is not decompressed,
     * and needs no shadows: packed stays false */
    pack_filter filter = {after_seq, skip_origin, skip_after};
    ps_code rc = whole && s->schema >= 12 ? pack_read_with(s, stmt(s, Q_PACK_GET), user, chat_id,
                                                           &filter, &p, &packed, err)
                                          : PS_OK;
    if (rc == PS_OK && packed)
        rc = row_ids(s, user, chat_id, &shadows, err);
    if (rc == PS_OK && packed)
        rc = next_owed(&p, &pos, &shadows, after_seq, skip_origin, skip_after, &e, &have, err);
    sqlite3_stmt *st = stmt(s, whole ? Q_MSG_SINCE_ALL : Q_MSG_SINCE);
    sqlite3_bind_int64(st, 5, skip_after);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, chat_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, after_seq);
    if (skip_origin)
        sqlite3_bind_text(st, 4, skip_origin, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    int r = SQLITE_DONE;
    while (rc == PS_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
        ps_message m;
        if ((rc = read_message(s, st, user, &m, err)) != PS_OK)
            break;
        while (rc == PS_OK && have &&
               ps_pack_before(e.order_ts, e.received, e.id, m.order_ts, m.received, m.id)) {
            if ((rc = emit_entry(&e, fn, ctx, err)) == PS_OK)
                rc = next_owed(&p, &pos, &shadows, after_seq, skip_origin, skip_after, &e, &have,
                               err);
        }
        if (rc == PS_OK)
            rc = fn(ctx, &m);
        ps__message_release(&m);
    }
    if (rc == PS_OK && r != SQLITE_DONE && r != SQLITE_ROW)
        rc = db_error(s, err, "listing messages");
    sqlite3_reset(st);
    while (rc == PS_OK && have) {
        if ((rc = emit_entry(&e, fn, ctx, err)) == PS_OK)
            rc = next_owed(&p, &pos, &shadows, after_seq, skip_origin, skip_after, &e, &have, err);
    }
    id_set_free(&shadows);
    pack_buf_free(&p);
    return rc;
}

/* chat_each's cursor, behind ps_chat_row.impl. */
typedef struct chat_listing {
    sqlite_store *s;
    int64_t user;
    ps_doc_builder doc; /* the last row's rendering, when doc() made it */
} chat_listing;

/* Puts the rendering of a chat kept without one (doc '') together from
 * its shell or state (columns 1 and 2 of the stepped Q_CHAT_DOC `st`) and
 * its message rows and pack (doc_render.h), appended to `into` (NULL: the
 * listing's own buffer); *doc and *len: where it is. Resets `st`. */
static ps_code splice_doc(chat_listing *l, sqlite3_stmt *st, const char *chat_id, ps_dynbuf *into,
                          const char **doc, size_t *len, ps_error *err)
{
    sqlite_store *s = l->s;
    bool has_rows = sqlite3_column_int(st, 3) != 0;
    ps_code rc =
        ps_doc_start(&l->doc, into, (const char *)sqlite3_column_text(st, 1),
                     (size_t)sqlite3_column_bytes(st, 1), (const char *)sqlite3_column_text(st, 2),
                     (size_t)sqlite3_column_bytes(st, 2), err);
    sqlite3_reset(st);
    if (rc != PS_OK)
        return rc;
    /* its packed messages (schema 12) go between the rows in display
     * order, less those a row shadows (deleted ones too) */
    pack_buf p;
    pack_buf_init(&p);
    bool packed = false, have = false;
    id_set shadows = {0};
    ps_pack_entry e;
    size_t pos = 0;
    rc = pack_read(s, l->user, chat_id, &p, &packed, err);
    if (rc == PS_OK && packed && has_rows)
        rc = row_ids(s, l->user, chat_id, &shadows, err);
    if (rc == PS_OK && packed)
        rc = next_owed(&p, &pos, &shadows, -1, NULL, 0, &e, &have, err);
    st = stmt(s, Q_DOC_MSGS);
    sqlite3_bind_int64(st, 1, l->user);
    sqlite3_bind_text(st, 2, chat_id, -1, SQLITE_STATIC);
    int r = SQLITE_DONE;
    while (rc == PS_OK && has_rows && (r = sqlite3_step(st)) == SQLITE_ROW) {
        while (rc == PS_OK && have &&
               ps_pack_before(e.order_ts, e.received, e.id, sqlite3_column_int64(st, 1),
                              sqlite3_column_int64(st, 2),
                              (const char *)sqlite3_column_text(st, 3))) {
            if ((rc = ps_doc_add_message(&l->doc, e.value, e.value_len)) == PS_OK)
                rc = next_owed(&p, &pos, &shadows, -1, NULL, 0, &e, &have, err);
        }
        if (rc != PS_OK)
            break;
        if (sqlite3_column_type(st, 0) != SQLITE_BLOB) {
            rc = ps_doc_add_message(&l->doc, (const char *)sqlite3_column_text(st, 0),
                                    (size_t)sqlite3_column_bytes(st, 0));
            continue;
        }
        ps_dynbuf *value_to; /* decompressed straight into the rendering */
        if ((rc = ps_doc_next_message(&l->doc, &value_to)) == PS_OK)
            rc = ps_value_unpack_append(sqlite3_column_blob(st, 0),
                                        (size_t)sqlite3_column_bytes(st, 0), l->user, load_dict, s,
                                        value_to);
    }
    if (rc == PS_OK && r != SQLITE_DONE)
        rc = db_error(s, err, "reading messages");
    sqlite3_reset(st);
    while (rc == PS_OK && have) {
        if ((rc = ps_doc_add_message(&l->doc, e.value, e.value_len)) == PS_OK)
            rc = next_owed(&p, &pos, &shadows, -1, NULL, 0, &e, &have, err);
    }
    id_set_free(&shadows);
    pack_buf_free(&p);
    if (rc == PS_OK)
        rc = ps_doc_finish(&l->doc, doc, len);
    return rc == PS_OK || rc == PS_ERR_STORE || rc == PS_ERR_BUSY
               ? rc
               : ps_error_set(err, rc, -1, "", "a chat could not be put together");
}

/*
 * The row's rendering appended to *out: a frame (schema 10) decompressed
 * straight into it, a plain one copied, or one put together from its parts
 * (splice_doc). *appended false when the chat has no body row.
 */
static ps_code row_doc_append(const ps_chat_row *row, ps_dynbuf *out, bool *appended, ps_error *err)
{
    chat_listing *l = row->impl;
    sqlite_store *s = l->s;
    *appended = false;
    sqlite3_stmt *st = stmt(s, Q_CHAT_DOC);
    sqlite3_bind_int64(st, 1, l->user);
    sqlite3_bind_text(st, 2, row->id, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE)
        return PS_OK; /* no body row: as if not rendered */
    if (r != SQLITE_ROW)
        return db_error(s, err, "reading a chat");
    ps_code rc;
    size_t len = (size_t)sqlite3_column_bytes(st, 0);
    if (sqlite3_column_type(st, 0) == SQLITE_BLOB) {
        rc = ps_doc_unpack_append(sqlite3_column_blob(st, 0), len, out);
        if (rc == PS_ERR_STORE)
            rc = ps_error_set(err, rc, -1, "", "a stored chat %s is corrupt", row->id);
    } else if (len > 0) {
        rc = ps__dynbuf_add(out, sqlite3_column_text(st, 0), len);
    } else {
        const char *doc;
        size_t had = out->len;
        if ((rc = splice_doc(l, st, row->id, out, &doc, &len, err)) != PS_OK && out->data) {
            out->len = had; /* nothing of it appended */
            out->data[had] = '\0';
        }
    }
    sqlite3_reset(st);
    *appended = rc == PS_OK;
    if (rc == PS_ERR_NOMEM || rc == PS_ERR_TOO_LARGE)
        return ps_error_set(err, rc, -1, "", "out of memory");
    return rc;
}

/* The row's rendering, decompressed or put together now; valid until the
 * next row. NULL (as if not rendered: the caller renders it itself) when
 * it cannot be read. */
static const char *row_doc(const ps_chat_row *row, size_t *len)
{
    chat_listing *l = row->impl;
    sqlite_store *s = l->s;
    *len = 0;
    ps_error err;
    ps_error_clear(&err);
    sqlite3_stmt *st = stmt(s, Q_CHAT_DOC);
    sqlite3_bind_int64(st, 1, l->user);
    sqlite3_bind_text(st, 2, row->id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW)
        return NULL; /* no body row: as if not rendered */
    const char *doc = NULL;
    ps_code rc = PS_OK;
    if (sqlite3_column_type(st, 0) == SQLITE_BLOB) {
        ps__dynbuf_reset(&l->doc.own);
        rc = ps_doc_unpack_append(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                                  &l->doc.own);
        doc = l->doc.own.data;
        *len = l->doc.own.len;
    } else if ((*len = (size_t)sqlite3_column_bytes(st, 0)) > 0) {
        return (const char *)sqlite3_column_text(st, 0); /* kept: as stored */
    } else {
        rc = splice_doc(l, st, row->id, NULL, &doc, len, &err);
    }
    sqlite3_reset(st);
    if (rc != PS_OK) {
        *len = 0;
        return NULL;
    }
    return doc;
}

static ps_code sqlite_chat_each_after(ps_store *base, int64_t user, const char *after,
                                      ps_chat_row_fn fn, void *ctx, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    chat_listing listing = {.s = s, .user = user};
    ps_doc_builder_init(&listing.doc);
    sqlite3_stmt *st = stmt(s, after ? Q_CHAT_EACH_AFTER : Q_CHAT_EACH);
    sqlite3_bind_int64(st, 1, user);
    if (after)
        sqlite3_bind_text(st, 2, after, -1, SQLITE_STATIC);
    int r;
    bool stopped = false;
    while (!stopped && (r = sqlite3_step(st)) == SQLITE_ROW) {
        ps_chat_row row = {
            .id = (const char *)sqlite3_column_text(st, 0),
            .doc = row_doc,
            .doc_append = row_doc_append,
            .impl = &listing,
            .live = sqlite3_column_int(st, 1) != 0,
            .deleted_counter = sqlite3_column_int64(st, 2),
            .deleted_device = (const char *)sqlite3_column_text(st, 3),
            .seq = sqlite3_column_int64(st, 4),
        };
        stopped = fn(ctx, &row);
    }
    ps_code rc = stopped || r == SQLITE_DONE ? PS_OK : db_error(s, err, "listing chats");
    sqlite3_reset(st);
    sqlite3_reset(stmt(s, Q_CHAT_DOC));
    ps_doc_builder_free(&listing.doc);
    return rc;
}

static ps_code sqlite_chat_each(ps_store *base, int64_t user, ps_chat_row_fn fn, void *ctx,
                                ps_error *err)
{
    return sqlite_chat_each_after(base, user, NULL, fn, ctx, err);
}

static ps_code sqlite_stats(ps_store *base, ps_store_stats *out, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_STATS);
    if (sqlite3_step(st) != SQLITE_ROW)
        return db_error(s, err, "reading stats");
    out->live_chats = sqlite3_column_int64(st, 0);
    out->last_sync_ms = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    /* the times not written yet, of users that still exist */
    ps_code rc = PS_OK;
    pthread_mutex_lock(&s->seen_lock);
    for (size_t i = 0; i < s->nseen && rc == PS_OK; i++) {
        if (s->seen[i].ms <= out->last_sync_ms)
            continue;
        st = stmt(s, Q_USER_NAMED);
        sqlite3_bind_text(st, 1, s->seen[i].name, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        sqlite3_reset(st);
        if (r == SQLITE_ROW)
            out->last_sync_ms = s->seen[i].ms;
        else if (r != SQLITE_DONE)
            rc = db_error(s, err, "reading stats");
    }
    pthread_mutex_unlock(&s->seen_lock);
    return rc;
}

static ps_code sqlite_purge_tombstones(ps_store *base, int64_t older_than_ms, int64_t *purged,
                                       ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    /* Cursors from before a forgotten tombstone can no longer be served. */
    sqlite3_stmt *st = stmt(s, Q_PURGE_MARK);
    sqlite3_bind_int64(st, 1, older_than_ms);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_error(s, err, "marking purged sequence");
    st = stmt(s, Q_PURGE);
    sqlite3_bind_int64(st, 1, older_than_ms);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_error(s, err, "purging tombstones");
    *purged = sqlite3_changes64(s->db);
    if (*purged) { /* the running byte counts do not see deletions: recount */
        st = stmt(s, Q_RECOUNT);
        if (sqlite3_step(st) != SQLITE_DONE)
            return db_error(s, err, "recounting bytes");
    }
    return PS_OK;
}

static ps_code sqlite_chat_find_sent(ps_store *base, int64_t user, const char *device,
                                     uint64_t hash, char *id, size_t id_size, bool *unchanged,
                                     ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_SENT_FIND);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, device ? device : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)hash);
    int r = sqlite3_step(st);
    id[0] = '\0';
    *unchanged = false;
    if (r == SQLITE_ROW) {
        snprintf(id, id_size, "%s", (const char *)sqlite3_column_text(st, 0));
        *unchanged = sqlite3_column_int(st, 1) != 0;
    }
    sqlite3_reset(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "finding a sent chat");
}

/* Q_SENT_SET or Q_SENT_UPDATE with a sent row's key and hashes bound. */
static sqlite3_stmt *bind_sent(sqlite_store *s, int q, int64_t user, const char *device,
                               const char *id, uint64_t hash, uint64_t content)
{
    sqlite3_stmt *st = stmt(s, q);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, device ? device : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (int64_t)hash);
    sqlite3_bind_int64(st, 5, (int64_t)content);
    return st;
}

/* The row of a chat new to the device: with the chat's seq, if the chat
 * exists (none: nothing to record, as the sent row's foreign key says). */
static ps_code sent_insert(sqlite_store *s, int64_t user, const char *device, const char *id,
                           uint64_t hash, uint64_t content, ps_error *err)
{
    sqlite3_stmt *q = stmt(s, Q_SENT_CHAT_SEQ);
    sqlite3_bind_int64(q, 1, user);
    sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(q);
    int64_t seq = r == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    if (r == SQLITE_DONE)
        return PS_OK;
    if (r != SQLITE_ROW)
        return db_error(s, err, "recording a sent chat");
    sqlite3_stmt *st = bind_sent(s, Q_SENT_SET, user, device, id, hash, content);
    sqlite3_bind_int64(st, 6, seq);
    ps_code rc =
        sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "recording a sent chat");
    sqlite3_reset(st);
    return rc;
}

static ps_code sqlite_chat_set_sent(ps_store *base, int64_t user, const char *device,
                                    const char *id, uint64_t hash, uint64_t content, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    /* most often the device synced the chat before: its row is updated */
    sqlite3_stmt *st = bind_sent(s, Q_SENT_UPDATE, user, device, id, hash, content);
    ps_code rc =
        sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "recording a sent chat");
    bool updated = sqlite3_changes(s->db) > 0;
    sqlite3_reset(st);
    if (rc == PS_OK && !updated)
        rc = sent_insert(s, user, device, id, hash, content, err);
    return rc;
}

static ps_code sqlite_chat_sent_content(ps_store *base, int64_t user, const char *device,
                                        const char *id, uint64_t *content, bool *unchanged,
                                        ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_SENT_OF);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, device ? device : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    *content = 0;
    *unchanged = false;
    if (r == SQLITE_ROW) {
        *content = (uint64_t)sqlite3_column_int64(st, 0);
        *unchanged = sqlite3_column_int(st, 1) != 0;
    }
    sqlite3_reset(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "finding a sent chat");
}

static ps_code sqlite_user_bytes(ps_store *base, int64_t user, int64_t *bytes, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_USER_BYTES);
    sqlite3_bind_int64(st, 1, user);
    int r = sqlite3_step(st);
    *bytes = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "reading bytes");
}

static ps_code sqlite_user_list(ps_store *base, int (*fn)(void *, const char *, int64_t), void *ctx,
                                ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_USER_LIST);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ctx, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1)))
            break;
    ps_code rc = r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "listing users");
    sqlite3_reset(st);
    return rc;
}

static ps_code sqlite_user_delete(ps_store *base, const char *name, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    static const int steps[5] = {Q_USER_DEL_MSGS, Q_USER_DEL_PACKS, Q_USER_DEL_BASES,
                                 Q_USER_DEL_CHATS, Q_USER_DEL};
    for (int i = 0; i < 5; i++) {
        sqlite3_stmt *st = stmt(s, steps[i]);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            return db_error(s, err, "deleting user");
        if (i == 4 && sqlite3_changes(s->db) == 0)
            return ps_error_set(err, PS_ERR_NOT_FOUND, -1, "", "no user %s", name);
    }
    return PS_OK;
}

/* Not a prepared statement of QUERIES: only `polysyncd migrate` uses it. */
static ps_code sqlite_user_restore(ps_store *base, const ps_user *u, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE users SET clock = ?2, last_sync_ms = ?3, seq = ?4,"
                           " purged_seq = ?5 WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(s, err, "saving user");
    sqlite3_bind_int64(st, 1, u->id);
    sqlite3_bind_int64(st, 2, u->clock);
    sqlite3_bind_int64(st, 3, u->last_sync_ms);
    sqlite3_bind_int64(st, 4, u->seq);
    sqlite3_bind_int64(st, 5, u->purged_seq);
    ps_code rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving user");
    sqlite3_finalize(st);
    return rc;
}

/* The first problem PRAGMA quick_check finds, or "" for none. */
static void quick_check(sqlite_store *s, char *problem, size_t size)
{
    sqlite3_stmt *st = NULL;
    problem[0] = '\0';
    int r = sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (r == SQLITE_OK)
        r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        if (text && strcmp(text, "ok") != 0)
            snprintf(problem, size, "%s", text);
    } else {
        snprintf(problem, size, "%s", sqlite3_errmsg(s->db));
    }
    sqlite3_finalize(st);
}

static int64_t file_bytes(sqlite_store *s)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT page_count * page_size FROM pragma_page_count(), "
                           "pragma_page_size()",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* /health: a write transaction that rewrites the newest schema_version row
 * as it is and commits (one small WAL frame and an fsync, at most once a
 * second: the server caches the answer), after the corruption checks. */
static ps_code sqlite_probe(ps_store *base, size_t deep_max_bytes, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    ps_code rc = PS_OK;
    pthread_mutex_lock(&s->lock);
    pthread_setspecific(s->current, WRITER);
    if (deep_max_bytes && !s->corrupt[0]) {
        int64_t size = file_bytes(s);
        char problem[sizeof s->corrupt];
        if (size >= 0 && (uint64_t)size <= deep_max_bytes) {
            quick_check(s, problem, sizeof problem);
            if (problem[0])
                snprintf(s->corrupt, sizeof s->corrupt, "%s", problem);
        }
    }
    if (s->corrupt[0]) {
        rc =
            ps_error_set(err, PS_ERR_STORE, -1, "", "the database file is corrupt: %s", s->corrupt);
    } else if (sqlite3_db_readonly(s->db, "main") == 1) {
        rc = ps_error_set(err, PS_ERR_STORE, -1, "", "the database file is read-only");
    } else if ((rc = control(s, Q_BEGIN_WRITE, err)) == PS_OK) {
        if (sqlite3_exec(s->db,
                         "UPDATE schema_version SET applied_at = applied_at"
                         " WHERE version = (SELECT max(version) FROM schema_version)",
                         NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_changes(s->db) != 1)
            rc = db_error(s, err, "writing");
        if (rc == PS_OK)
            rc = control(s, Q_COMMIT, err);
        if (rc != PS_OK)
            control(s, Q_ROLLBACK, NULL);
    }
    if (rc != PS_OK && err->code != PS_ERR_STORE) /* busy: the store is in use, not broken */
        rc = PS_OK;
    pthread_setspecific(s->current, NULL);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static ps_code sqlite_base_load(ps_store *base, int64_t user, const char *device,
                                const char *chat_id, ps_base *out, int64_t *seq, bool *found,
                                ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_BASE_GET);
    *found = false;
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, chat_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, device, -1, SQLITE_STATIC);
    ps_code rc = PS_OK;
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW && !out) {
        *found = true;
        *seq = sqlite3_column_int64(st, 0);
    } else if (r == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(st, 1);
        size_t n = (size_t)sqlite3_column_bytes(st, 1) / sizeof(uint64_t);
        *found = true;
        *seq = sqlite3_column_int64(st, 0);
        ps__base_free(out);
        if (n && !(out->hashes = malloc(n * sizeof(uint64_t)))) {
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        } else if (n) {
            memcpy(out->hashes, blob, n * sizeof(uint64_t));
            out->n = out->cap = n;
        }
    } else if (r != SQLITE_DONE) {
        rc = db_error(s, err, "reading a device's base");
    }
    sqlite3_reset(st);
    return rc;
}

static ps_code sqlite_base_save(ps_store *base, int64_t user, const char *device,
                                const char *chat_id, const ps_base *b, int64_t seq, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_BASE_PUT);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_text(st, 2, chat_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, device, -1, SQLITE_STATIC);
    /* a zero-length blob must still be a blob, not NULL */
    static const uint64_t none = 0;
    sqlite3_bind_blob(st, 4, b->n ? (const void *)b->hashes : (const void *)&none,
                      (int)(b->n * sizeof(uint64_t)), SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, seq);
    ps_code rc =
        sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving a device's base");
    sqlite3_reset(st);
    return rc;
}

static ps_code sqlite_base_copy(ps_store *base, int64_t user, const char *device,
                                const char *chat_id, int64_t seq, bool *copied, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *from = stmt(s, Q_BASE_COPY);
    sqlite3_bind_int64(from, 1, user);
    sqlite3_bind_text(from, 2, chat_id, -1, SQLITE_STATIC);
    *copied = false;
    ps_code rc = PS_OK;
    int r = sqlite3_step(from);
    if (r == SQLITE_ROW) {
        /* the blob stays valid until `from` is reset: written before */
        sqlite3_stmt *put = stmt(s, Q_BASE_PUT);
        sqlite3_bind_int64(put, 1, user);
        sqlite3_bind_text(put, 2, chat_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(put, 3, device, -1, SQLITE_STATIC);
        static const uint64_t none = 0; /* a zero-length blob stays a blob */
        const void *hashes = sqlite3_column_blob(from, 0);
        sqlite3_bind_blob(put, 4, hashes ? hashes : (const void *)&none,
                          sqlite3_column_bytes(from, 0), SQLITE_STATIC);
        sqlite3_bind_int64(put, 5, seq);
        rc = sqlite3_step(put) == SQLITE_DONE ? PS_OK : db_error(s, err, "saving a device's base");
        *copied = rc == PS_OK;
        sqlite3_reset(put);
    } else if (r != SQLITE_DONE) {
        rc = db_error(s, err, "reading a chat's hashes");
    }
    sqlite3_reset(from);
    return rc;
}

/* ---- Accounts and tokens (store.h). Rare or once-a-second calls: the
 * statements are prepared per call, not kept. ---- */

static ps_code prepare_sql(sqlite_store *s, const char *sql, sqlite3_stmt **st, ps_error *err)
{
    if (sqlite3_prepare_v2(cur_db(s), sql, -1, st, NULL) != SQLITE_OK) {
        sqlite3_finalize(*st);
        *st = NULL;
        return db_error(s, err, "preparing an account query");
    }
    return PS_OK;
}

/* Steps a statement that returns no rows, and finalizes it. */
static ps_code run_sql(sqlite_store *s, sqlite3_stmt *st, const char *what, ps_error *err)
{
    ps_code rc = sqlite3_step(st) == SQLITE_DONE ? PS_OK : db_error(s, err, what);
    sqlite3_finalize(st);
    return rc;
}

static ps_code bump_access_generation(sqlite_store *s, ps_error *err)
{
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s, "UPDATE access_state SET generation = generation + 1", &st, err);
    return rc == PS_OK ? run_sql(s, st, "raising the access generation", err) : rc;
}

static ps_code sqlite_token_add(ps_store *base, const char *jti, const char *user,
                                int64_t issued_ms, int64_t expires_ms, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s,
                             "INSERT INTO tokens(jti, user_name, issued_ms, expires_ms)"
                             " VALUES (?1, ?2, ?3, ?4)",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, jti, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, issued_ms);
    sqlite3_bind_int64(st, 4, expires_ms);
    return run_sql(s, st, "recording a token", err);
}

/* Calls fn per row of (jti, user_name, issued_ms, expires_ms, revoked_ms). */
static ps_code each_token(sqlite_store *s, sqlite3_stmt *st,
                          int (*fn)(void *, const ps_token_row *), void *ctx, ps_error *err)
{
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        ps_token_row row = {
            .jti = (const char *)sqlite3_column_text(st, 0),
            .user = (const char *)sqlite3_column_text(st, 1),
            .issued_ms = sqlite3_column_int64(st, 2),
            .expires_ms = sqlite3_column_int64(st, 3),
            .revoked_ms = sqlite3_column_int64(st, 4),
        };
        if (fn(ctx, &row))
            break;
    }
    ps_code rc = r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "listing tokens");
    sqlite3_finalize(st);
    return rc;
}

#define TOKEN_COLUMNS "jti, user_name, issued_ms, expires_ms, revoked_ms"

static ps_code sqlite_token_list(ps_store *base, const char *user,
                                 int (*fn)(void *, const ps_token_row *), void *ctx, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s,
                             "SELECT " TOKEN_COLUMNS " FROM tokens"
                             " WHERE ?1 IS NULL OR user_name = ?1 ORDER BY issued_ms, jti",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    if (user)
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    return each_token(s, st, fn, ctx, err);
}

static ps_code sqlite_token_revoked_each(ps_store *base, int64_t now_ms,
                                         int (*fn)(void *, const ps_token_row *), void *ctx,
                                         ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s,
                             "SELECT " TOKEN_COLUMNS " FROM tokens"
                             " WHERE revoked_ms <> 0 AND expires_ms >= ?1",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, now_ms);
    return each_token(s, st, fn, ctx, err);
}

static ps_code sqlite_token_revoke(ps_store *base, const char *jti, const char *user,
                                   int64_t now_ms, int64_t *count, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *count = 0;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s,
                             jti ? "UPDATE tokens SET revoked_ms = ?2 WHERE jti = ?1"
                                   " AND revoked_ms = 0"
                                 : "UPDATE tokens SET revoked_ms = ?2 WHERE user_name = ?1"
                                   " AND revoked_ms = 0",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, jti ? jti : user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    if ((rc = run_sql(s, st, "revoking tokens", err)) != PS_OK)
        return rc;
    *count = sqlite3_changes64(s->db);
    return *count ? bump_access_generation(s, err) : PS_OK;
}

static ps_code sqlite_account_set(ps_store *base, const char *name, int disabled,
                                  int64_t tokens_before_ms, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st;
    ps_code rc =
        prepare_sql(s,
                    "INSERT INTO accounts(name, disabled, tokens_before_ms)"
                    " VALUES (?1, max(?2, 0), max(?3, 0))"
                    " ON CONFLICT(name) DO UPDATE SET"
                    " disabled = CASE WHEN ?2 < 0 THEN disabled ELSE ?2 END,"
                    " tokens_before_ms = CASE WHEN ?3 < 0 THEN tokens_before_ms ELSE ?3 END",
                    &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, disabled);
    sqlite3_bind_int64(st, 3, tokens_before_ms);
    if ((rc = run_sql(s, st, "saving an account", err)) != PS_OK)
        return rc;
    return bump_access_generation(s, err);
}

static ps_code sqlite_account_each(ps_store *base, int (*fn)(void *, const ps_account_row *),
                                   void *ctx, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s,
                             "SELECT name, disabled, tokens_before_ms FROM accounts"
                             " WHERE disabled <> 0 OR tokens_before_ms <> 0 ORDER BY name",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        ps_account_row row = {
            .name = (const char *)sqlite3_column_text(st, 0),
            .disabled = sqlite3_column_int(st, 1) != 0,
            .tokens_before_ms = sqlite3_column_int64(st, 2),
        };
        if (fn(ctx, &row))
            break;
    }
    rc = r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "listing accounts");
    sqlite3_finalize(st);
    return rc;
}

static ps_code sqlite_access_generation(ps_store *base, int64_t *generation, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s, "SELECT generation FROM access_state WHERE id = 1", &st, err);
    if (rc != PS_OK)
        return rc;
    int r = sqlite3_step(st);
    *generation = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    rc = r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "reading access state");
    sqlite3_finalize(st);
    return rc;
}

static ps_code sqlite_user_rename(ps_store *base, const char *from, const char *to, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s, "SELECT 1 FROM users WHERE name = ?1", &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, to, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r == SQLITE_ROW)
        return ps_error_set(err, PS_ERR_INVALID, -1, "", "user %s exists already", to);
    if (r != SQLITE_DONE)
        return db_error(s, err, "renaming user");
    if ((rc = prepare_sql(s, "UPDATE users SET name = ?2 WHERE name = ?1", &st, err)) != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, to, -1, SQLITE_STATIC);
    if ((rc = run_sql(s, st, "renaming user", err)) != PS_OK)
        return rc;
    if (sqlite3_changes(s->db) == 0)
        return ps_error_set(err, PS_ERR_NOT_FOUND, -1, "", "no user %s", from);
    return PS_OK;
}

static ps_code sqlite_device_seen(ps_store *base, const char *user, const char *device,
                                  const char *client, const char *protocol, int64_t acked_seq,
                                  int64_t now_ms, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(
        s,
        "INSERT INTO devices(user_id, device_id, first_seen_ms, last_seen_ms, client,"
        " protocol, acked_seq) SELECT id, ?2, ?6, ?6, ?3, ?4, ?5 FROM users WHERE name = ?1"
        " ON CONFLICT(user_id, device_id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms,"
        " client = CASE excluded.client WHEN '' THEN client ELSE excluded.client END,"
        " protocol = excluded.protocol,"
        " acked_seq = CASE WHEN excluded.acked_seq < 0 THEN acked_seq"
        "   ELSE excluded.acked_seq END",
        &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, device, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, client ? client : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, protocol, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, acked_seq);
    sqlite3_bind_int64(st, 6, now_ms);
    return run_sql(s, st, "recording a device", err);
}

static ps_code sqlite_device_list(ps_store *base, const char *user,
                                  int (*fn)(void *, const ps_device_row *), void *ctx,
                                  ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s,
                             "SELECT d.device_id, d.first_seen_ms, d.last_seen_ms, d.client,"
                             " d.protocol, d.acked_seq FROM devices d JOIN users u"
                             " ON u.id = d.user_id WHERE u.name = ?1"
                             " ORDER BY d.first_seen_ms, d.device_id",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        ps_device_row row = {
            .id = (const char *)sqlite3_column_text(st, 0),
            .first_seen_ms = sqlite3_column_int64(st, 1),
            .last_seen_ms = sqlite3_column_int64(st, 2),
            .client = (const char *)sqlite3_column_text(st, 3),
            .protocol = (const char *)sqlite3_column_text(st, 4),
            .acked_seq = sqlite3_column_int64(st, 5),
        };
        if (fn(ctx, &row))
            break;
    }
    rc = r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "listing devices");
    sqlite3_finalize(st);
    return rc;
}

/* Runs `sql` with ?1 = user id, ?2 = sequence; *changes = rows changed. */
static ps_code run_for_user(sqlite_store *s, const char *sql, int64_t user_id, int64_t seq,
                            int64_t *changes, ps_error *err)
{
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s, sql, &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, seq);
    rc = run_sql(s, st, "collecting tombstones", err);
    if (changes)
        *changes = sqlite3_changes64(s->db);
    return rc;
}

/*
 * Before the user's message tombstones up to `acked` are forgotten: a
 * tombstone row shadowing a packed message (deleted after its chat came)
 * takes that message out of its pack, which is written again without it,
 * or the message would come back with the row gone.
 */
static ps_code unpack_forgotten(sqlite_store *s, int64_t user_id, int64_t acked, ps_error *err)
{
    id_set chats = {0};
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s,
                             "SELECT DISTINCT m.chat_id FROM messages m"
                             " INDEXED BY messages_tombstones WHERE m.user_id = ?1"
                             " AND m.value IS NULL AND m.seq <= ?2 AND EXISTS (SELECT 1"
                             " FROM packs p WHERE p.user_id = ?1 AND p.chat_id = m.chat_id)",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, acked);
    rc = id_set_read(s, st, &chats, err);
    sqlite3_finalize(st);
    uint32_t dict = 0;
    if (rc == PS_OK && chats.n)
        rc = user_dict(s, user_id, &dict, err);
    pack_buf p;
    pack_buf_init(&p);
    ps_dynbuf raw;
    ps__dynbuf_init(&raw, SIZE_MAX - 1);
    for (size_t c = 0; c < chats.n && rc == PS_OK; c++) {
        id_set gone = {0};
        bool found, more = true;
        size_t pos = 0, kept = 0, dropped = 0;
        if ((rc = prepare_sql(s,
                              "SELECT id FROM messages WHERE user_id = ?1 AND chat_id = ?2"
                              " AND value IS NULL AND seq <= ?3",
                              &st, err)) != PS_OK)
            break;
        sqlite3_bind_int64(st, 1, user_id);
        sqlite3_bind_text(st, 2, chats.ids[c], -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, acked);
        rc = id_set_read(s, st, &gone, err);
        sqlite3_finalize(st);
        if (rc == PS_OK)
            rc = pack_read(s, user_id, chats.ids[c], &p, &found, err);
        if (rc == PS_OK && (rc = ps_pack_begin_based(&raw)) != PS_OK) /* base 0 */
            rc = ps_error_set(err, rc, -1, "", "out of memory");
        while (rc == PS_OK && found && more) {
            ps_pack_entry e;
            if ((rc = pack_next(&p, &pos, &e, &more, err)) != PS_OK || !more)
                break;
            if (id_set_has(&gone, e.id))
                dropped++;
            else if ((rc = ps_pack_put(&raw, &e)) != PS_OK)
                rc = ps_error_set(err, rc, -1, "", "out of memory");
            else
                kept++;
        }
        id_set_free(&gone);
        if (rc != PS_OK || !dropped)
            continue;
        sqlite3_stmt *del = stmt(s, Q_PACK_DEL);
        sqlite3_bind_int64(del, 1, user_id);
        sqlite3_bind_text(del, 2, chats.ids[c], -1, SQLITE_STATIC);
        rc = sqlite3_step(del) == SQLITE_DONE ? PS_OK : db_error(s, err, "rewriting a pack");
        sqlite3_reset(del);
        int64_t bytes;
        if (rc == PS_OK && kept)
            rc = pack_write_with(s, stmt(s, Q_PACK_PUT), user_id, chats.ids[c], &raw, dict, &bytes,
                                 err);
    }
    ps__dynbuf_free(&raw);
    pack_buf_free(&p);
    id_set_free(&chats);
    return rc;
}

static ps_code sqlite_purge_acknowledged(ps_store *base, const char *user, int64_t active_since_ms,
                                         int64_t *purged, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *purged = 0;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s,
                             "SELECT u.id, min(CASE d.protocol WHEN 'legacy' THEN -1"
                             " ELSE d.acked_seq END) FROM users u JOIN devices d"
                             " ON d.user_id = u.id WHERE u.name = ?1 AND d.last_seen_ms >= ?2"
                             " GROUP BY u.id",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, active_since_ms);
    int r = sqlite3_step(st);
    int64_t user_id = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    int64_t acked = r == SQLITE_ROW ? sqlite3_column_int64(st, 1) : -1;
    sqlite3_finalize(st);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return db_error(s, err, "reading acknowledgements");
    if (acked <= 0)
        return PS_OK;
    int64_t chats = 0, messages = 0;
    /* first the mark: cursors from before what goes can no longer be served */
    if ((rc = run_for_user(s,
                           "UPDATE users SET purged_seq = max(purged_seq,"
                           " coalesce((SELECT max(seq) FROM chats WHERE user_id = ?1"
                           "   AND live = 0 AND seq <= ?2), 0),"
                           " coalesce((SELECT max(seq) FROM messages WHERE user_id = ?1"
                           "   AND value IS NULL AND seq <= ?2), 0)) WHERE id = ?1",
                           user_id, acked, NULL, err)) != PS_OK ||
        (rc = unpack_forgotten(s, user_id, acked, err)) != PS_OK ||
        (rc = run_for_user(s,
                           "DELETE FROM messages WHERE user_id = ?1 AND value IS NULL"
                           " AND seq <= ?2",
                           user_id, acked, &messages, err)) != PS_OK ||
        (rc = run_for_user(s, "DELETE FROM chats WHERE user_id = ?1 AND live = 0 AND seq <= ?2",
                           user_id, acked, &chats, err)) != PS_OK)
        return rc;
    *purged = chats + messages;
    if (*purged) /* the running byte count does not see deletions */
        rc = run_for_user(s, USER_BYTES_RECOUNT_12 " WHERE id = ?1", user_id, 0, NULL, err);
    return rc;
}

static ps_code sqlite_user_tombstones(ps_store *base, const char *user, int64_t *count,
                                      ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s,
                             "SELECT (SELECT count(*) FROM chats WHERE user_id = u.id"
                             "   AND live = 0) + (SELECT count(*) FROM messages"
                             "   INDEXED BY messages_tombstones"
                             "   WHERE user_id = u.id AND value IS NULL)"
                             " FROM users u WHERE u.name = ?1",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    *count = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    rc = r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "counting tombstones");
    sqlite3_finalize(st);
    return rc;
}

static ps_code sqlite_device_get(ps_store *base, const char *user, const char *device,
                                 int (*fn)(void *, const ps_device_row *), void *ctx, ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st = stmt(s, Q_DEVICE_GET);
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, device, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        ps_device_row row = {
            .id = device,
            .first_seen_ms = sqlite3_column_int64(st, 0),
            .last_seen_ms = sqlite3_column_int64(st, 1),
            .client = (const char *)sqlite3_column_text(st, 2),
            .protocol = (const char *)sqlite3_column_text(st, 3),
            .acked_seq = sqlite3_column_int64(st, 4),
        };
        fn(ctx, &row);
    }
    ps_code rc = r == SQLITE_ROW || r == SQLITE_DONE ? PS_OK : db_error(s, err, "reading a device");
    sqlite3_reset(st);
    return rc;
}

static ps_code sqlite_device_forget(ps_store *base, const char *user, const char *device,
                                    ps_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3_stmt *st;
    ps_code rc = prepare_sql(s,
                             "DELETE FROM devices WHERE device_id = ?2"
                             " AND user_id = (SELECT id FROM users WHERE name = ?1)",
                             &st, err);
    if (rc != PS_OK)
        return rc;
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, device, -1, SQLITE_STATIC);
    if ((rc = run_sql(s, st, "forgetting a device", err)) != PS_OK)
        return rc;
    if (sqlite3_changes(s->db) == 0)
        return ps_error_set(err, PS_ERR_NOT_FOUND, -1, "", "user %s has no device %s", user,
                            device);
    return PS_OK;
}

static const struct ps_store_ops SQLITE_OPS = {
    .name = "sqlite",
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .user_load = sqlite_user_load,
    .user_find = sqlite_user_find,
    .begin_user_find = sqlite_begin_user_find,
    .quiet_user = sqlite_quiet_user,
    .user_save = sqlite_user_save,
    .user_restore = sqlite_user_restore,
    .user_seen = sqlite_user_seen,
    .chat_load = sqlite_chat_load,
    .chat_save = sqlite_chat_save,
    .values_pack_ahead = sqlite_values_pack_ahead,
    .pack_ahead_begin = sqlite_pack_ahead_begin,
    .chat_is_new = sqlite_chat_is_new,
    .pack_ahead_make = sqlite_pack_ahead_make,
    .pack_ahead_end = sqlite_pack_ahead_end,
    .keeps_legacy_pack = sqlite_keeps_legacy_pack,
    .chat_each = sqlite_chat_each,
    .chat_each_after = sqlite_chat_each_after,
    .messages_load = sqlite_messages_load,
    .chat_next_changed = sqlite_chat_next_changed,
    .messages_since = sqlite_messages_since,
    .stats = sqlite_stats,
    .purge_tombstones = sqlite_purge_tombstones,
    .user_list = sqlite_user_list,
    .user_bytes = sqlite_user_bytes,
    .chat_find_sent = sqlite_chat_find_sent,
    .chat_set_sent = sqlite_chat_set_sent,
    .chat_sent_content = sqlite_chat_sent_content,
    .user_delete = sqlite_user_delete,
    .probe = sqlite_probe,
    .base_load = sqlite_base_load,
    .base_save = sqlite_base_save,
    .base_copy = sqlite_base_copy,
    .token_add = sqlite_token_add,
    .token_list = sqlite_token_list,
    .token_revoke = sqlite_token_revoke,
    .token_revoked_each = sqlite_token_revoked_each,
    .account_set = sqlite_account_set,
    .account_each = sqlite_account_each,
    .access_generation = sqlite_access_generation,
    .user_rename = sqlite_user_rename,
    .device_seen = sqlite_device_seen,
    .device_list = sqlite_device_list,
    .device_get = sqlite_device_get,
    .device_forget = sqlite_device_forget,
    .purge_acknowledged = sqlite_purge_acknowledged,
    .user_tombstones = sqlite_user_tombstones,
    .close = sqlite_close,
};

/* No memory statistics: nothing reads them, and with them every allocation
 * of SQLite (Debian's is built without lookaside, so statements allocate as
 * they run) takes one process-wide mutex, shared by all the read
 * connections' threads. Only possible before SQLite is first used in the
 * process; a process that used it already keeps the default. */
static void sqlite_configure(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

ps_code ps__store_sqlite_open(const char *path, ps_store **out, ps_error *err)
{
    static pthread_once_t configured = PTHREAD_ONCE_INIT;
    pthread_once(&configured, sqlite_configure);
    *out = NULL;
    ps_code rc = make_parent_dirs(path, err);
    if (rc != PS_OK)
        return rc;
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    s->base.ops = &SQLITE_OPS;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_mutex_init(&s->seen_lock, NULL);
    if (pthread_key_create(&s->current, NULL) != 0 || !(s->path = strdup(path))) {
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->pool_lock);
        pthread_mutex_destroy(&s->seen_lock);
        free(s);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    /* Chats are private: a new store is made 0600 whatever the umask, and
     * SQLite gives its -wal and -shm files the database file's mode. */
    int made = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (made >= 0)
        close(made);
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = ps_error_set(err, PS_ERR_STORE, -1, "", "cannot open %s: %s", path,
                          s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    /* 16 KiB pages for a new store (an existing one keeps its own): a chat
     * history is written as large rows, and 4 KiB pages made the first
     * upload of one (100,000 message rows) spend ~40 % of its time in the
     * kernel writing WAL frames, two write calls a page; 3.9 s -> 2.9 s */
    if ((rc = exec(s, "PRAGMA page_size=16384", err)) != PS_OK ||
        (rc = exec(s, "PRAGMA journal_mode=WAL", err)) != PS_OK ||
        (rc = exec(s, "PRAGMA synchronous=FULL", err)) != PS_OK ||
        /* No memory mapping: every page a mapping touches stays in the
         * server's resident memory (a listing that read every rendered
         * chat once left 140 MB there); a 16 MiB page cache over the
         * kernel's own file cache bounds what reads hold
         * (docs/storage.md, "Memory") */
        (rc = exec(s, "PRAGMA mmap_size=0", err)) != PS_OK ||
        (rc = exec(s, "PRAGMA cache_size=-16384", err)) != PS_OK ||
        (rc = exec(s, "PRAGMA foreign_keys=ON", err)) != PS_OK || (rc = migrate(s, err)) != PS_OK)
        goto fail;
    for (int i = 0; i < Q_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, QUERIES[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                               NULL) != SQLITE_OK) {
            rc = db_error(s, err, "preparing statements");
            goto fail;
        }
    }
    s->checkpointer = ps__checkpointer_start(path, s->db);
    s->quiet = ps__quiet_new(s->db);
    *out = &s->base;
    return PS_OK;
fail:
    sqlite_close(&s->base);
    return rc;
}
