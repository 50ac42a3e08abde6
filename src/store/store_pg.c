/*
 * PostgreSQL backend (libpq): several polysyncd instances on one database.
 *
 * A pool of connections (--db-pool N); begin() takes one for the calling
 * thread and commit()/rollback() give it back, so the vtable's calls, which
 * carry no transaction handle, find it in thread-specific data.
 *
 * Concurrency across instances: a write transaction runs READ COMMITTED and
 * its user_load() locks the user's row (SELECT ... FOR UPDATE) before the
 * merge reads anything, so every read-modify-write of a user's chats, the
 * change sequence and the Lamport clock is serialised across instances the
 * way SQLite's single writer serialises them in one process. Reads run
 * REPEATABLE READ (one snapshot) and never wait for a writer. A deadlock,
 * serialisation failure, lock or statement timeout is PS_ERR_BUSY (503
 * store_busy, Retry-After); a lost connection is PS_ERR_UNAVAILABLE (503
 * store_unavailable) and the connection is re-opened at the next begin().
 *
 * Durability: a 200 follows COMMIT, which waits for the WAL flush as the
 * server's synchronous_commit says (docs/storage.md). The one write that may
 * be lost, a no-op sync's time, waits in memory as in store_sqlite.c and is
 * written, at most a second later, in a transaction of its own with
 * synchronous_commit off, into a table no writer locks.
 *
 * Round trips: one per chat loaded, one per batch of messages loaded, one
 * per chat saved (the chat row and all its changed messages as one pipeline,
 * messages as one multi-row INSERT over unnest()).
 *
 * Live channel: a write transaction that changed something sends
 * pg_notify(CHANNEL, instance device user) before COMMIT (delivered only if
 * it commits); a listener thread with a dedicated connection LISTENs and
 * rings the local streams for changes made by other instances, and rings
 * everyone once after it reconnects (it may have missed some).
 */
#include "store/store.h"
#include "core/base.h"
#include "core/chat_codec.h"
#include "core/dynbuf.h"
#include "core/json_parse.h"
#include "core/timestamp.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHANNEL "polysync_changes"
/* pg_advisory_lock key taken while migrating: "polysync" in ASCII */
#define MIGRATE_LOCK_KEY "8101819436469217895"

#define MSG_COLUMNS "id, value, ts, lamport, device, order_ts, seq, origin, timed, received"
#define TOKEN_COLUMNS "jti, user_name, issued_ms, expires_ms, revoked_ms"

/* Forward migrations: entry i takes the schema from version i to i + 1.
 * Same concepts as the SQLite schema (store_sqlite.c) as of its version 7;
 * text keys compare bytewise (COLLATE "C") as SQLite's do, so listings come
 * in the same order on both backends. The big columns stay in chats:
 * PostgreSQL keeps them out of line (TOAST) by itself. */
static const char *const MIGRATIONS[] = {
    /* 0 -> 1 */
    "CREATE TABLE users ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  name TEXT COLLATE \"C\" NOT NULL UNIQUE,"
    "  clock BIGINT NOT NULL DEFAULT 0,"
    "  last_sync_ms BIGINT NOT NULL DEFAULT 0,"
    "  seq BIGINT NOT NULL DEFAULT 0,"
    "  purged_seq BIGINT NOT NULL DEFAULT 0,"
    "  bytes BIGINT NOT NULL DEFAULT 0);"
    /* no-op sync times, apart from users so that they never wait for (nor
     * make wait) a writer holding the user's row */
    "CREATE TABLE user_seen ("
    "  name TEXT COLLATE \"C\" PRIMARY KEY,"
    "  ms BIGINT NOT NULL);"
    "CREATE TABLE chats ("
    "  user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  id TEXT COLLATE \"C\" NOT NULL,"
    "  live BOOLEAN NOT NULL,"
    "  state TEXT NOT NULL,"
    "  doc TEXT NOT NULL," /* "" = not rendered */
    "  deleted_counter BIGINT NOT NULL DEFAULT 0,"
    "  deleted_device TEXT NOT NULL DEFAULT '',"
    "  deleted_at_ms BIGINT NOT NULL DEFAULT 0,"
    "  seq BIGINT NOT NULL DEFAULT 0,"
    "  sent_hash BIGINT NOT NULL DEFAULT 0,"
    "  sent_seq BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (user_id, id));"
    /* lz4, not the default pglz: compressing each rendered chat (tens of KB)
     * was a third of the database's time in a first upload */
    "ALTER TABLE chats ALTER COLUMN doc SET COMPRESSION lz4;"
    "CREATE INDEX chats_by_seq ON chats(user_id, seq);"
    "CREATE INDEX chats_tombstones ON chats(deleted_at_ms) WHERE NOT live;"
    "CREATE INDEX chats_by_sent_hash ON chats(user_id, sent_hash) WHERE sent_hash <> 0;"
    "CREATE TABLE messages ("
    "  user_id BIGINT NOT NULL,"
    "  chat_id TEXT COLLATE \"C\" NOT NULL,"
    "  id TEXT COLLATE \"C\" NOT NULL,"
    "  value TEXT," /* the message JSON; NULL = deleted */
    "  ts BIGINT NOT NULL, lamport BIGINT NOT NULL, device TEXT NOT NULL,"
    "  order_ts BIGINT NOT NULL,"
    "  seq BIGINT NOT NULL, origin TEXT NOT NULL,"
    "  PRIMARY KEY (user_id, chat_id, id),"
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE);"
    "CREATE INDEX messages_by_seq ON messages(user_id, chat_id, seq);",
    /* 1 -> 2, as SQLite's 5 -> 6: messages keep the order they were first
     * received (numbered per chat; existing ones in id order, the chat's
     * next number in its state as "n"), a time-only write placed in the
     * Lamport order is flagged `timed`, and each full-state device's base
     * per chat (docs/merge.md, "The base rule"): the hashes of the values it
     * holds, 8 bytes each, native order; the base of a device sent the chat
     * whole is kept with its rendering (chats.hashes). */
    "ALTER TABLE messages ADD COLUMN timed BOOLEAN NOT NULL DEFAULT false;"
    "ALTER TABLE messages ADD COLUMN received BIGINT NOT NULL DEFAULT 0;"
    "UPDATE messages m SET received = k.r FROM (SELECT user_id, chat_id, id,"
    "  row_number() OVER (PARTITION BY user_id, chat_id ORDER BY id) - 1 AS r FROM messages) k"
    "  WHERE k.user_id = m.user_id AND k.chat_id = m.chat_id AND k.id = m.id;"
    "UPDATE chats SET state = jsonb_set(state::jsonb, '{n}', to_jsonb((SELECT count(*)"
    "  FROM messages m WHERE m.user_id = chats.user_id AND m.chat_id = chats.id)))::text;"
    "CREATE TABLE bases ("
    "  user_id BIGINT NOT NULL, device TEXT COLLATE \"C\" NOT NULL,"
    "  chat_id TEXT COLLATE \"C\" NOT NULL,"
    "  hashes BYTEA NOT NULL, seq BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (user_id, chat_id, device),"
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE);"
    "ALTER TABLE chats ADD COLUMN hashes BYTEA;",
    /* 2 -> 3, as SQLite's 6 -> 7: accounts (minted tokens, revocable by id;
     * what is refused of a user by name; the generation a running server
     * polls to notice a change made by another process or instance) and
     * the device registry (every device of a user that synced, and the
     * change sequence it has applied) */
    "CREATE TABLE tokens ("
    "  jti TEXT COLLATE \"C\" PRIMARY KEY, user_name TEXT COLLATE \"C\" NOT NULL,"
    "  issued_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL,"
    "  revoked_ms BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX tokens_by_user ON tokens(user_name, issued_ms);"
    "CREATE TABLE accounts ("
    "  name TEXT COLLATE \"C\" PRIMARY KEY, disabled BOOLEAN NOT NULL DEFAULT false,"
    "  tokens_before_ms BIGINT NOT NULL DEFAULT 0);"
    "CREATE TABLE access_state (id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  generation BIGINT NOT NULL);"
    "INSERT INTO access_state VALUES (1, 0);"
    "CREATE TABLE devices ("
    "  user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  device_id TEXT COLLATE \"C\" NOT NULL,"
    "  first_seen_ms BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL,"
    "  client TEXT NOT NULL DEFAULT '', protocol TEXT NOT NULL,"
    "  acked_seq BIGINT NOT NULL DEFAULT -1,"
    "  PRIMARY KEY (user_id, device_id));",
    /* 3 -> 4, as SQLite's 7 -> 8: the "sent unchanged" skip keyed by (chat,
     * device): the XXH3 hash of a chat's bytes as each device last sent
     * them, and the chat's seq then. chats.sent_hash/sent_seq are no longer
     * used (their old hashes could not match: nothing is copied). */
    "CREATE TABLE sent ("
    "  user_id BIGINT NOT NULL, chat_id TEXT COLLATE \"C\" NOT NULL,"
    "  device TEXT COLLATE \"C\" NOT NULL,"
    "  hash BIGINT NOT NULL, content BIGINT NOT NULL, seq BIGINT NOT NULL,"
    "  PRIMARY KEY (user_id, chat_id, device),"
    "  FOREIGN KEY (user_id, chat_id) REFERENCES chats(user_id, id) ON DELETE CASCADE);"
    "CREATE INDEX sent_by_hash ON sent(user_id, device, hash);"
    "DROP INDEX chats_by_sent_hash;",
    /* 4 -> 5: SQLite's messages_tombstones (added with its packs), missing here
     * until now: a user's deleted messages found by index. Without it the
     * device registry's tombstone count and the purge by acknowledgement,
     * which a v2 device's first sync on each instance runs (devices.c),
     * read every message row of the user: 0.5 s and more at 55,000
     * messages, stalling that listening thread's other connections
     * (docs/performance.md, "The #15 targets after the quiet-poll round"). */
    "CREATE INDEX messages_tombstones ON messages(user_id, seq) WHERE value IS NULL;",
};
#define SCHEMA_VERSION ((int)(sizeof MIGRATIONS / sizeof *MIGRATIONS))

/* A user's stored weight, recounted after a purge for the users in $1.
 * octet_length, not length: it reads a large value's size from its TOAST
 * pointer instead of fetching and decompressing the value. */
#define USER_BYTES_RECOUNT                                                                         \
    "UPDATE users SET bytes ="                                                                     \
    " (SELECT coalesce(sum(octet_length(state) + octet_length(doc)), 0) FROM chats"                \
    "   WHERE user_id = users.id) +"                                                               \
    " (SELECT coalesce(sum(octet_length(id) + coalesce(octet_length(value), 0)), 0) FROM messages" \
    "   WHERE user_id = users.id)"                                                                 \
    " WHERE id = ANY($1::bigint[])"

enum {
    Q_BEGIN_READ,
    Q_BEGIN_WRITE,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_USER_GET,
    Q_USER_LOCK,
    Q_USER_ADD,
    Q_USER_SAVE,
    Q_USER_SEEN,
    Q_CHAT_GET,
    Q_MSG_ALL,
    Q_MSG_SOME,
    Q_CHAT_PUT,
    Q_MSG_PUT,
    Q_CHAT_NEXT,
    Q_MSG_SINCE,
    Q_CHAT_EACH,
    Q_CHAT_EACH_AFTER,
    Q_CHAT_DOC,
    Q_STATS,
    Q_PURGE_LOCK,
    Q_PURGE_MARK,
    Q_PURGE,
    Q_RECOUNT,
    Q_SENT_FIND,
    Q_SENT_SET,
    Q_SENT_OF,
    Q_USER_BYTES,
    Q_USER_LIST,
    Q_USER_DEL,
    Q_USER_DEL_SEEN,
    Q_NOTIFY,
    Q_ASYNC_COMMIT,
    Q_USER_RESTORE,
    Q_SEEN_FLUSH,
    Q_BASE_GET,
    Q_BASE_PUT,
    Q_BASE_COPY,
    Q_PROBE,
    Q_TOKEN_ADD,
    Q_TOKEN_LIST,
    Q_TOKEN_REVOKED,
    Q_TOKEN_REVOKE_ONE,
    Q_TOKEN_REVOKE_USER,
    Q_ACCESS_BUMP,
    Q_ACCESS_GEN,
    Q_ACCOUNT_SET,
    Q_ACCOUNT_EACH,
    Q_USER_EXISTS,
    Q_USER_RENAME,
    Q_USER_RENAME_SEEN_DROP,
    Q_USER_RENAME_SEEN,
    Q_DEVICE_SEEN,
    Q_DEVICE_LIST,
    Q_ACKED_MIN,
    Q_ACK_MARK,
    Q_ACK_PURGE_MSG,
    Q_ACK_PURGE_CHATS,
    Q_USER_TOMBSTONES,
    Q_DEVICE_FORGET,
    Q_DEVICE_GET,
    Q_COUNT
};

static const char *const QUERIES[Q_COUNT] = {
    [Q_BEGIN_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ",
    [Q_BEGIN_WRITE] = "BEGIN ISOLATION LEVEL READ COMMITTED",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_USER_GET] = "SELECT id, clock, last_sync_ms, seq, purged_seq, bytes FROM users"
                   " WHERE name = $1",
    /* the lock that serialises a user's writers across instances */
    [Q_USER_LOCK] = "SELECT id, clock, last_sync_ms, seq, purged_seq, bytes FROM users"
                    " WHERE name = $1 FOR UPDATE",
    [Q_USER_ADD] = "INSERT INTO users(name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
    [Q_USER_SAVE] = "UPDATE users SET clock = $2, last_sync_ms = $3, seq = $4 WHERE id = $1",
    [Q_USER_SEEN] = "INSERT INTO user_seen(name, ms) VALUES ($1, $2) ON CONFLICT (name)"
                    " DO UPDATE SET ms = greatest(user_seen.ms, excluded.ms)",
    /* many at once: names and times as two arrays */
    [Q_SEEN_FLUSH] =
        "INSERT INTO user_seen(name, ms) SELECT * FROM unnest($1::text[], $2::bigint[])"
        " ON CONFLICT (name) DO UPDATE SET ms = greatest(user_seen.ms, excluded.ms)",
    [Q_CHAT_GET] = "SELECT state FROM chats WHERE user_id = $1 AND id = $2",
    [Q_MSG_ALL] = "SELECT " MSG_COLUMNS " FROM messages WHERE user_id = $1 AND chat_id = $2",
    [Q_MSG_SOME] = "SELECT " MSG_COLUMNS " FROM messages"
                   " WHERE user_id = $1 AND chat_id = $2 AND id = ANY($3::text[])",
    /* The chat row and the change in the user's weight, in one statement
     * (every sub-statement sees the row as it was before). */
    [Q_CHAT_PUT] =
        "WITH old AS (SELECT octet_length(state) + octet_length(doc) AS n FROM chats"
        "   WHERE user_id = $1::bigint AND id = $2::text),"
        " put AS (INSERT INTO chats(user_id, id, live, state, doc, deleted_counter,"
        "   deleted_device, deleted_at_ms, seq, hashes)"
        "   VALUES ($1::bigint, $2::text, $3::boolean, $4::text, $5::text, $6::bigint,"
        "   $7::text, $8::bigint, $9::bigint, $10::bytea)"
        "   ON CONFLICT (user_id, id) DO UPDATE SET live = excluded.live,"
        "   state = excluded.state, doc = excluded.doc, hashes = excluded.hashes,"
        "   deleted_counter = excluded.deleted_counter,"
        "   deleted_device = excluded.deleted_device,"
        "   deleted_at_ms = excluded.deleted_at_ms,"
        "   seq = CASE excluded.seq WHEN 0 THEN chats.seq ELSE excluded.seq END)"
        " UPDATE users SET bytes = bytes + octet_length($4::text) + octet_length($5::text)"
        "   - coalesce((SELECT n FROM old), 0) WHERE id = $1::bigint",
    /* Every changed message of a chat as one multi-row upsert. */
    [Q_MSG_PUT] =
        "WITH new AS (SELECT * FROM unnest($3::text[], $4::text[], $5::bigint[], $6::bigint[],"
        "   $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::boolean[], $12::bigint[])"
        "   AS t(id, value, ts, lamport, device, order_ts, seq, origin, timed, received)),"
        " old AS (SELECT coalesce(sum(octet_length(m.id) + coalesce(octet_length(m.value), 0)), 0) "
        "AS n"
        "   FROM messages m WHERE m.user_id = $1::bigint AND m.chat_id = $2::text"
        "   AND m.id IN (SELECT id FROM new)),"
        " put AS (INSERT INTO messages(user_id, chat_id, " MSG_COLUMNS ")"
        "   SELECT $1::bigint, $2::text, " MSG_COLUMNS " FROM new"
        "   ON CONFLICT (user_id, chat_id, id) DO UPDATE SET value = excluded.value,"
        "   ts = excluded.ts, lamport = excluded.lamport, device = excluded.device,"
        "   order_ts = excluded.order_ts, seq = excluded.seq, origin = excluded.origin,"
        "   timed = excluded.timed, received = excluded.received)"
        " UPDATE users SET bytes = bytes"
        "   + (SELECT coalesce(sum(octet_length(id) + coalesce(octet_length(value), 0)), 0) FROM "
        "new)"
        "   - (SELECT n FROM old) WHERE id = $1::bigint",
    [Q_CHAT_NEXT] = "SELECT state, seq FROM chats WHERE user_id = $1 AND seq > $2"
                    " ORDER BY seq LIMIT 1",
    [Q_MSG_SINCE] = "SELECT " MSG_COLUMNS " FROM messages"
                    " WHERE user_id = $1 AND chat_id = $2 AND seq > $3"
                    " AND ($4::text IS NULL OR origin <> $4::text OR seq <= $5)"
                    " ORDER BY order_ts, received, id",
    [Q_CHAT_EACH] = "SELECT id, live, deleted_counter, deleted_device, seq FROM chats"
                    " WHERE user_id = $1 ORDER BY id",
    [Q_CHAT_EACH_AFTER] = "SELECT id, live, deleted_counter, deleted_device, seq FROM chats"
                          " WHERE user_id = $1 AND id > $2 ORDER BY id",
    [Q_CHAT_DOC] = "SELECT doc FROM chats WHERE user_id = $1 AND id = $2",
    [Q_STATS] =
        "SELECT (SELECT count(*) FROM chats WHERE live),"
        " greatest((SELECT coalesce(max(last_sync_ms), 0) FROM users),"
        " (SELECT coalesce(max(s.ms), 0) FROM user_seen s JOIN users u ON u.name = s.name))",
    /* Users first, in id order, as a sync takes its user before its chats:
     * no lock cycle with the syncs. */
    [Q_PURGE_LOCK] = "SELECT id FROM users WHERE id IN (SELECT user_id FROM chats"
                     " WHERE NOT live AND deleted_at_ms < $1) ORDER BY id FOR UPDATE",
    [Q_PURGE_MARK] = "UPDATE users SET purged_seq = greatest(purged_seq, (SELECT max(seq)"
                     " FROM chats WHERE user_id = users.id AND NOT live AND deleted_at_ms < $1))"
                     " WHERE id = ANY($2::bigint[])",
    [Q_PURGE] = "DELETE FROM chats WHERE NOT live AND deleted_at_ms < $1"
                " AND user_id = ANY($2::bigint[])",
    [Q_RECOUNT] = USER_BYTES_RECOUNT,
    [Q_SENT_FIND] = "SELECT s.chat_id, c.seq = s.seq FROM sent s"
                    " JOIN chats c ON c.user_id = s.user_id AND c.id = s.chat_id"
                    " WHERE s.user_id = $1 AND s.device = $2 AND s.hash = $3 LIMIT 1",
    [Q_SENT_SET] = "INSERT INTO sent(user_id, chat_id, device, hash, content, seq)"
                   " SELECT $1::bigint, $3::text, $2::text, $4::bigint, $5::bigint, seq"
                   " FROM chats WHERE user_id = $1 AND id = $3"
                   " ON CONFLICT (user_id, chat_id, device) DO UPDATE SET hash = excluded.hash,"
                   " content = excluded.content, seq = excluded.seq",
    [Q_SENT_OF] = "SELECT s.content, c.seq = s.seq FROM sent s"
                  " JOIN chats c ON c.user_id = s.user_id AND c.id = s.chat_id"
                  " WHERE s.user_id = $1 AND s.chat_id = $3 AND s.device = $2",
    [Q_USER_BYTES] = "SELECT bytes FROM users WHERE id = $1",
    [Q_USER_LIST] = "SELECT name, (SELECT count(*) FROM chats WHERE user_id = users.id AND live)"
                    " FROM users ORDER BY name",
    [Q_USER_DEL] = "DELETE FROM users WHERE name = $1",
    [Q_USER_DEL_SEEN] = "DELETE FROM user_seen WHERE name = $1",
    [Q_NOTIFY] = "SELECT pg_notify('" CHANNEL "', $1)",
    /* the no-op sync times may be lost in a crash (store.h): no WAL flush */
    [Q_ASYNC_COMMIT] = "SELECT set_config('synchronous_commit', 'off', true)",
    [Q_BASE_GET] = "SELECT seq, hashes FROM bases WHERE user_id = $1 AND chat_id = $2"
                   " AND device = $3",
    [Q_BASE_PUT] = "INSERT INTO bases(user_id, chat_id, device, hashes, seq)"
                   " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, chat_id, device)"
                   " DO UPDATE SET hashes = excluded.hashes, seq = excluded.seq",
    [Q_BASE_COPY] = "INSERT INTO bases(user_id, chat_id, device, hashes, seq)"
                    " SELECT user_id, id, $3, hashes, $4 FROM chats"
                    " WHERE user_id = $1 AND id = $2 AND hashes IS NOT NULL"
                    " ON CONFLICT (user_id, chat_id, device)"
                    " DO UPDATE SET hashes = excluded.hashes, seq = excluded.seq",
    /* /health: a write that changes nothing, through to the WAL flush */
    [Q_PROBE] = "UPDATE schema_version SET applied_at = applied_at"
                " WHERE version = (SELECT max(version) FROM schema_version)",
    [Q_USER_RESTORE] = "UPDATE users SET clock = $2, last_sync_ms = $3, seq = $4,"
                       " purged_seq = $5 WHERE id = $1",
    /* accounts and tokens (store.h); the same statements as store_sqlite.c's */
    [Q_TOKEN_ADD] = "INSERT INTO tokens(jti, user_name, issued_ms, expires_ms)"
                    " VALUES ($1, $2, $3, $4)",
    [Q_TOKEN_LIST] = "SELECT " TOKEN_COLUMNS " FROM tokens"
                     " WHERE $1::text IS NULL OR user_name = $1::text ORDER BY issued_ms, jti",
    [Q_TOKEN_REVOKED] = "SELECT " TOKEN_COLUMNS " FROM tokens"
                        " WHERE revoked_ms <> 0 AND expires_ms >= $1 ORDER BY jti",
    [Q_TOKEN_REVOKE_ONE] = "UPDATE tokens SET revoked_ms = $2 WHERE jti = $1 AND revoked_ms = 0",
    [Q_TOKEN_REVOKE_USER] = "UPDATE tokens SET revoked_ms = $2 WHERE user_name = $1"
                            " AND revoked_ms = 0",
    [Q_ACCESS_BUMP] = "UPDATE access_state SET generation = generation + 1",
    [Q_ACCESS_GEN] = "SELECT generation FROM access_state WHERE id = 1",
    /* disabled, tokens_before_ms: -1 keeps the stored one */
    [Q_ACCOUNT_SET] = "INSERT INTO accounts(name, disabled, tokens_before_ms)"
                      " VALUES ($1::text, greatest($2::int, 0) <> 0, greatest($3::bigint, 0))"
                      " ON CONFLICT (name) DO UPDATE SET"
                      " disabled = CASE WHEN $2::int < 0 THEN accounts.disabled"
                      "   ELSE $2::int <> 0 END,"
                      " tokens_before_ms = CASE WHEN $3::bigint < 0 THEN accounts.tokens_before_ms"
                      "   ELSE $3::bigint END",
    [Q_ACCOUNT_EACH] = "SELECT name, disabled, tokens_before_ms FROM accounts"
                       " WHERE disabled OR tokens_before_ms <> 0 ORDER BY name",
    [Q_USER_EXISTS] = "SELECT 1 FROM users WHERE name = $1",
    [Q_USER_RENAME] = "UPDATE users SET name = $2 WHERE name = $1",
    /* the no-op sync time follows the name (a stale one of `to` goes) */
    [Q_USER_RENAME_SEEN_DROP] = "DELETE FROM user_seen WHERE name = $1",
    [Q_USER_RENAME_SEEN] = "UPDATE user_seen SET name = $2 WHERE name = $1",
    /* the device registry; acked_seq -1 and client "" keep the stored ones */
    [Q_DEVICE_SEEN] =
        "INSERT INTO devices(user_id, device_id, first_seen_ms, last_seen_ms, client,"
        " protocol, acked_seq) SELECT id, $2::text, $6::bigint, $6::bigint, $3::text, $4::text,"
        " $5::bigint FROM users WHERE name = $1::text"
        " ON CONFLICT (user_id, device_id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms,"
        " client = CASE excluded.client WHEN '' THEN devices.client ELSE excluded.client END,"
        " protocol = excluded.protocol,"
        " acked_seq = CASE WHEN excluded.acked_seq < 0 THEN devices.acked_seq"
        "   ELSE excluded.acked_seq END",
    [Q_DEVICE_LIST] = "SELECT d.device_id, d.first_seen_ms, d.last_seen_ms, d.client,"
                      " d.protocol, d.acked_seq FROM devices d JOIN users u"
                      " ON u.id = d.user_id WHERE u.name = $1"
                      " ORDER BY d.first_seen_ms, d.device_id",
    /* the least acknowledgement of the devices seen since $2 (a legacy one
     * counts as none); NULL when none was seen */
    [Q_ACKED_MIN] = "SELECT min(CASE protocol WHEN 'legacy' THEN -1 ELSE acked_seq END)"
                    " FROM devices WHERE user_id = $1 AND last_seen_ms >= $2",
    [Q_ACK_MARK] = "UPDATE users SET purged_seq = greatest(purged_seq,"
                   " coalesce((SELECT max(seq) FROM chats WHERE user_id = $1"
                   "   AND NOT live AND seq <= $2), 0),"
                   " coalesce((SELECT max(seq) FROM messages WHERE user_id = $1"
                   "   AND value IS NULL AND seq <= $2), 0)) WHERE id = $1",
    [Q_ACK_PURGE_MSG] = "DELETE FROM messages WHERE user_id = $1 AND value IS NULL AND seq <= $2",
    [Q_ACK_PURGE_CHATS] = "DELETE FROM chats WHERE user_id = $1 AND NOT live AND seq <= $2",
    [Q_USER_TOMBSTONES] = "SELECT (SELECT count(*) FROM chats WHERE user_id = u.id AND NOT live)"
                          " + (SELECT count(*) FROM messages WHERE user_id = u.id"
                          "   AND value IS NULL) FROM users u WHERE u.name = $1",
    [Q_DEVICE_FORGET] = "DELETE FROM devices WHERE device_id = $2"
                        " AND user_id = (SELECT id FROM users WHERE name = $1)",
    [Q_DEVICE_GET] = "SELECT d.first_seen_ms, d.last_seen_ms, d.client, d.protocol, d.acked_seq"
                     " FROM devices d JOIN users u ON u.id = d.user_id"
                     " WHERE u.name = $1 AND d.device_id = $2",
};

/* A no-op sync time recorded in a read transaction, not written yet. */
typedef struct seen_time {
    char *name;
    int64_t ms;
} seen_time;

/* They are written once the oldest is this old, or this many wait. */
#define SEEN_FLUSH_MS 1000
#define SEEN_FLUSH_USERS 64

struct pg_store;

typedef struct pg_conn {
    struct pg_store *store;
    PGconn *pg;
    bool busy;     /* lent to a thread */
    bool prepared; /* QUERIES prepared on this session */
    /* the open transaction */
    bool writing;
    /* BEGIN not sent yet: it goes with the first statement, in one round
     * trip (a no-op sync is a handful of round trips; this is one of them) */
    bool begin_pending;
    char *notify; /* payload to announce before COMMIT, if it changed anything */
} pg_conn;

typedef struct pg_store {
    ps_store base;
    ps_store_options opt;
    char *url;
    pthread_key_t current; /* the calling thread's pg_conn */
    pthread_mutex_t lock;  /* guards the pool */
    pthread_cond_t freed;
    pg_conn *pool;
    unsigned npool;
    char instance[24]; /* tells our own notifications from other instances' */
    /* no-op sync times not written yet (guarded by seen_lock) */
    pthread_mutex_t seen_lock;
    seen_time *seen;
    size_t nseen, seen_cap;
    int64_t seen_flush_at; /* monotonic ms from which a commit writes them */
    /* the listener (listen op) */
    pthread_mutex_t listen_lock; /* guards fn/ctx against the listener's calls */
    ps_store_change_fn listen_fn;
    void *listen_ctx;
    pthread_t listener;
    bool listening;
    atomic_bool listen_tried; /* the listener's first LISTEN has run (or failed) */
    int wake[2];              /* close() writes here to stop the listener */
} pg_store;

/* ---- connections ---------------------------------------------------- */

/* Opens a session with the server-side limits: a statement or a lock wait
 * never outlives a request, and a dead server is noticed by the kernel. */
static PGconn *connect_db(const pg_store *s)
{
    char timeout[16], options[128];
    snprintf(timeout, sizeof timeout, "%u",
             s->opt.connect_timeout_s ? s->opt.connect_timeout_s : 5);
    unsigned stmt_ms = s->opt.statement_timeout_ms;
    snprintf(options, sizeof options,
             "-c statement_timeout=%u -c lock_timeout=%u -c client_min_messages=warning", stmt_ms,
             stmt_ms);
    /* The URL comes last: what it says wins over these defaults. */
    const char *keys[] = {"connect_timeout",  "keepalives",
                          "keepalives_idle",  "keepalives_interval",
                          "keepalives_count", "tcp_user_timeout",
                          "application_name", "options",
                          "dbname",           NULL};
    const char *vals[] = {timeout, "1",         "10",    "5",    "3",
                          "15000", "polysyncd", options, s->url, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

/* Whether the result is an error that means the connection is gone. */
static bool conn_lost(PGconn *pg, const PGresult *res)
{
    if (PQstatus(pg) == CONNECTION_BAD)
        return true;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* 08: connection exception; 57P01-03: admin shutdown, crash, cannot connect now */
    return state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0);
}

/* The ps_code a failed result means, with the detail for the log. */
static ps_code result_error(PGconn *pg, const PGresult *res, ps_error *err, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(pg);
    if (!msg || !*msg)
        msg = PQerrorMessage(pg);
    char detail[200];
    snprintf(detail, sizeof detail, "%s", msg);
    size_t n = strlen(detail);
    while (n && (detail[n - 1] == '\n' || detail[n - 1] == ' '))
        detail[--n] = '\0';
    ps_code code = PS_ERR_STORE;
    if (conn_lost(pg, res))
        code = PS_ERR_UNAVAILABLE;
    else if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
                       strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0))
        code = PS_ERR_BUSY; /* serialisation, deadlock, lock or statement timeout: retry */
    return ps_error_set(err, code, -1, "", "postgres %s: %s", what, detail);
}

static ps_code prepare_all(pg_conn *c, ps_error *err)
{
    /* one round trip for all of them */
    if (!PQenterPipelineMode(c->pg))
        return result_error(c->pg, NULL, err, "pipeline");
    char name[16];
    for (int i = 0; i < Q_COUNT; i++) {
        snprintf(name, sizeof name, "q%d", i);
        if (!PQsendPrepare(c->pg, name, QUERIES[i], 0, NULL))
            break;
    }
    PQpipelineSync(c->pg);
    ps_code rc = PS_OK;
    for (int i = 0; i < Q_COUNT; i++) {
        PGresult *res = PQgetResult(c->pg);
        if (!res) {
            rc = result_error(c->pg, NULL, err, "preparing statements");
            break;
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == PS_OK)
            rc = result_error(c->pg, res, err, "preparing statements");
        PQclear(res);
        PQclear(PQgetResult(c->pg)); /* the NULL ending each query's results */
    }
    PGresult *res;
    while ((res = PQgetResult(c->pg)) != NULL) { /* the sync point */
        ExecStatusType st = PQresultStatus(res);
        PQclear(res);
        if (st == PGRES_PIPELINE_SYNC)
            break;
    }
    PQexitPipelineMode(c->pg);
    if (rc == PS_OK)
        c->prepared = true;
    return rc;
}

/* Makes sure the pooled connection is open and prepared; re-opens a lost
 * one (after a database restart, say). */
static ps_code conn_ready(pg_store *s, pg_conn *c, ps_error *err)
{
    if (c->pg && PQstatus(c->pg) == CONNECTION_OK && c->prepared)
        return PS_OK;
    if (c->pg)
        PQfinish(c->pg);
    c->prepared = false;
    c->pg = connect_db(s);
    if (!c->pg)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (PQstatus(c->pg) != CONNECTION_OK) {
        ps_code rc = result_error(c->pg, NULL, err, "connecting");
        err->code = PS_ERR_UNAVAILABLE;
        return rc == PS_ERR_STORE ? PS_ERR_UNAVAILABLE : rc;
    }
    ps_code rc = prepare_all(c, err);
    if (rc != PS_OK && PQstatus(c->pg) != CONNECTION_OK)
        rc = err->code = PS_ERR_UNAVAILABLE;
    return rc;
}

static pg_conn *current(pg_store *s)
{
    return pthread_getspecific(s->current);
}

/* Lends the caller a connection, waiting up to the statement timeout for
 * one to be free. */
static ps_code pool_take(pg_store *s, pg_conn **out, ps_error *err)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    unsigned wait_ms = s->opt.statement_timeout_ms ? s->opt.statement_timeout_ms : 30000;
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    for (;;) {
        for (unsigned i = 0; i < s->npool; i++) {
            if (!s->pool[i].busy) {
                s->pool[i].busy = true;
                pthread_mutex_unlock(&s->lock);
                *out = &s->pool[i];
                return PS_OK;
            }
        }
        if (pthread_cond_timedwait(&s->freed, &s->lock, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&s->lock);
    return ps_error_set(err, PS_ERR_BUSY, -1, "", "postgres: every pooled connection is busy");
}

static void pool_give(pg_store *s, pg_conn *c)
{
    free(c->notify);
    c->notify = NULL;
    pthread_setspecific(s->current, NULL);
    pthread_mutex_lock(&s->lock);
    c->busy = false;
    pthread_cond_signal(&s->freed);
    pthread_mutex_unlock(&s->lock);
}

/* ---- running statements --------------------------------------------- */

/* Runs prepared query q with text parameters; NULL (and *rc, err set) on
 * failure. The result is the caller's to PQclear. */
/* Drains a pipeline's results up to its sync point. */
static void drain_pipeline(PGconn *pg)
{
    PGresult *res;
    int nulls = 0;
    while (nulls < 4) {
        if (!(res = PQgetResult(pg))) {
            if (PQstatus(pg) != CONNECTION_OK)
                break;
            nulls++;
            continue;
        }
        ExecStatusType st = PQresultStatus(res);
        PQclear(res);
        if (st == PGRES_PIPELINE_SYNC)
            break;
    }
    PQexitPipelineMode(pg);
}

/* The transaction's first statement, with its BEGIN, in one round trip. A
 * connection found dead here (it died while idle: a database restart) is
 * re-opened once and the whole tried again: nothing of the transaction
 * had happened. */
static PGresult *run_first(pg_conn *c, int q, int n, const char *const *params, ps_code *rc,
                           ps_error *err, const char *what)
{
    char begin[16], name[16];
    snprintf(begin, sizeof begin, "q%d", c->writing ? Q_BEGIN_WRITE : Q_BEGIN_READ);
    snprintf(name, sizeof name, "q%d", q);
    c->begin_pending = false;
    for (int attempt = 0;; attempt++) {
        PGresult *began = NULL, *res = NULL;
        if (PQenterPipelineMode(c->pg) &&
            PQsendQueryPrepared(c->pg, begin, 0, NULL, NULL, NULL, 0) &&
            PQsendQueryPrepared(c->pg, name, n, params, NULL, NULL, 0) && PQpipelineSync(c->pg)) {
            began = PQgetResult(c->pg);
            PQclear(PQgetResult(c->pg)); /* NULL */
            res = PQgetResult(c->pg);
            PQclear(PQgetResult(c->pg));
        }
        drain_pipeline(c->pg);
        ExecStatusType st = PQresultStatus(res);
        if (PQresultStatus(began) == PGRES_COMMAND_OK &&
            (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
            PQclear(began);
            *rc = PS_OK;
            return res;
        }
        PGresult *bad = PQresultStatus(began) == PGRES_COMMAND_OK ? res : began;
        *rc = result_error(c->pg, bad, err, what);
        PQclear(began);
        PQclear(res);
        if (*rc != PS_ERR_UNAVAILABLE || attempt > 0 || conn_ready(c->store, c, err) != PS_OK)
            return NULL;
    }
}

static PGresult *run(pg_conn *c, int q, int n, const char *const *params, ps_code *rc,
                     ps_error *err, const char *what)
{
    if (c->begin_pending)
        return run_first(c, q, n, params, rc, err, what);
    char name[16];
    snprintf(name, sizeof name, "q%d", q);
    PGresult *res = PQexecPrepared(c->pg, name, n, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        *rc = PS_OK;
        return res;
    }
    *rc = result_error(c->pg, res, err, what);
    PQclear(res);
    return NULL;
}

/* Runs a query whose rows are not wanted. */
static ps_code run_void(pg_conn *c, int q, int n, const char *const *params, ps_error *err,
                        const char *what)
{
    ps_code rc;
    PQclear(run(c, q, n, params, &rc, err, what));
    return rc;
}

static int64_t int_at(const PGresult *res, int row, int col)
{
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* int64 -> text parameter */
typedef struct num {
    char s[24];
} num;
static const char *numtext(num *n, int64_t v)
{
    snprintf(n->s, sizeof n->s, "%" PRId64, v);
    return n->s;
}

/* Appends `text` to a PostgreSQL array literal as one element (NULL when
 * text is NULL). */
static ps_code array_add(ps_dynbuf *b, const char *text, size_t len)
{
    if (b->len > 1 && ps__dynbuf_add(b, ",", 1) != PS_OK)
        return PS_ERR_NOMEM;
    if (!text)
        return ps__dynbuf_add(b, "NULL", 4);
    if (ps__dynbuf_add(b, "\"", 1) != PS_OK)
        return PS_ERR_NOMEM;
    size_t from = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"' || text[i] == '\\') {
            if (ps__dynbuf_add(b, text + from, i - from) != PS_OK ||
                ps__dynbuf_add(b, "\\", 1) != PS_OK)
                return PS_ERR_NOMEM;
            from = i;
        }
    }
    if (ps__dynbuf_add(b, text + from, len - from) != PS_OK)
        return PS_ERR_NOMEM;
    return ps__dynbuf_add(b, "\"", 1);
}

/* A bytea parameter in text form ("\\x" and hex) of n hashes, as their
 * bytes lie in memory (the SQLite store keeps them so too). */
static ps_code bytea_hex(ps_dynbuf *b, const uint64_t *hashes, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)hashes;
    if (ps__dynbuf_add(b, "\\x", 2) != PS_OK || ps__dynbuf_reserve(b, n * 16 + 1) != PS_OK)
        return PS_ERR_NOMEM;
    for (size_t i = 0; i < n * sizeof(uint64_t); i++) {
        char two[2] = {digits[p[i] >> 4], digits[p[i] & 15]};
        if (ps__dynbuf_add(b, two, 2) != PS_OK)
            return PS_ERR_NOMEM;
    }
    return PS_OK;
}

static ps_code array_add_int(ps_dynbuf *b, int64_t v)
{
    return ps__dynbuf_addf(b, "%s%" PRId64, b->len > 1 ? "," : "", v);
}

/* ---- transactions --------------------------------------------------- */

static ps_code pg_begin(ps_store *base, bool write, ps_error *err)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = NULL;
    ps_code rc = pool_take(s, &c, err);
    if (rc != PS_OK)
        return rc;
    pthread_setspecific(s->current, c);
    c->store = s;
    c->writing = write;
    /* BEGIN goes with the first statement (run_first) */
    if ((rc = conn_ready(s, c, err)) != PS_OK)
        pool_give(s, c);
    else
        c->begin_pending = true;
    return rc;
}

/* Takes the unwritten no-op sync times if they are due (or `all`); the
 * caller writes them (write_seen) and frees the list. */
static seen_time *take_seen(pg_store *s, bool all, size_t *n)
{
    seen_time *taken = NULL;
    *n = 0;
    pthread_mutex_lock(&s->seen_lock);
    if (s->nseen && (all || ps__time_monotonic_ms() >= s->seen_flush_at)) {
        taken = s->seen;
        *n = s->nseen;
        s->seen = NULL;
        s->nseen = s->seen_cap = 0;
    }
    pthread_mutex_unlock(&s->seen_lock);
    return taken;
}

static void free_seen(seen_time *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].name);
    free(v);
}

/* Writes no-op sync times in one transaction of their own that does not
 * wait for the WAL flush (a crash may forget them, as store.h allows), as
 * one statement. `c` has no transaction open. */
static ps_code write_seen(pg_conn *c, const seen_time *v, size_t n, ps_error *err)
{
    ps_dynbuf names, times;
    ps__dynbuf_init(&names, SIZE_MAX);
    ps__dynbuf_init(&times, SIZE_MAX);
    ps_code rc = ps__dynbuf_add(&names, "{", 1);
    if (rc == PS_OK)
        rc = ps__dynbuf_add(&times, "{", 1);
    for (size_t i = 0; i < n && rc == PS_OK; i++)
        if ((rc = array_add(&names, v[i].name, strlen(v[i].name))) == PS_OK)
            rc = array_add_int(&times, v[i].ms);
    if (rc == PS_OK && (rc = ps__dynbuf_add(&names, "}", 1)) == PS_OK)
        rc = ps__dynbuf_add(&times, "}", 1);
    if (rc != PS_OK) {
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    } else if ((rc = run_void(c, Q_BEGIN_WRITE, 0, NULL, err, "begin")) == PS_OK) {
        const char *params[2] = {names.data, times.data};
        if ((rc = run_void(c, Q_ASYNC_COMMIT, 0, NULL, err, "saving last sync times")) == PS_OK &&
            (rc = run_void(c, Q_SEEN_FLUSH, 2, params, err, "saving last sync times")) == PS_OK)
            rc = run_void(c, Q_COMMIT, 0, NULL, err, "commit");
        if (rc != PS_OK && PQstatus(c->pg) == CONNECTION_OK)
            run_void(c, Q_ROLLBACK, 0, NULL, NULL, "rollback");
    }
    ps__dynbuf_free(&names);
    ps__dynbuf_free(&times);
    return rc;
}

/* Puts times taken back (a failed write): kept for the next try, unless a
 * newer one came meanwhile. */
static void return_seen(pg_store *s, seen_time *v, size_t n);

/* Writes the due no-op sync times (or all) on `c`, which has no
 * transaction open. */
static void flush_seen(pg_store *s, pg_conn *c, bool all)
{
    size_t n;
    seen_time *v = take_seen(s, all, &n);
    if (!v)
        return;
    ps_error err;
    if (write_seen(c, v, n, &err) != PS_OK) {
        fprintf(stderr, "polysyncd: last sync times of %zu users not saved yet: %s\n", n,
                err.message);
        return_seen(s, v, n);
        return;
    }
    free_seen(v, n);
}

static ps_code pg_commit(ps_store *base, ps_error *err)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = current(s);
    ps_code rc = PS_OK;
    if (c->begin_pending) { /* nothing ran: nothing to commit */
        c->begin_pending = false;
        flush_seen(s, c, false);
        pool_give(s, c);
        return PS_OK;
    }
    if (c->notify) {
        const char *params[1] = {c->notify};
        rc = run_void(c, Q_NOTIFY, 1, params, err, "notify");
    }
    if (rc == PS_OK)
        rc = run_void(c, Q_COMMIT, 0, NULL, err, "commit");
    if (rc != PS_OK && PQstatus(c->pg) == CONNECTION_OK)
        run_void(c, Q_ROLLBACK, 0, NULL, NULL, "rollback");
    /* the times waiting go with a write (as SQLite's write transaction takes
     * them along), else once the oldest is due: bounds what a crash forgets */
    if (rc == PS_OK)
        flush_seen(s, c, c->writing);
    pool_give(s, c);
    return rc;
}

static void pg_rollback(ps_store *base)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = current(s);
    if (!c)
        return;
    if (c->begin_pending)
        c->begin_pending = false; /* nothing ran */
    else if (PQstatus(c->pg) == CONNECTION_OK)
        run_void(c, Q_ROLLBACK, 0, NULL, NULL, "rollback");
    pool_give(s, c);
}

static ps_code pg_announce(ps_store *base, const char *user, const char *device, int64_t seq_before,
                           int64_t seq_after, ps_error *err)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = current(s);
    free(c->notify);
    c->notify = NULL;
    /* "instance seq_before seq_after device-length:device user" ("-:" for
     * no device): the length, because names may hold any byte */
    const char *dev = device ? device : "";
    size_t len = strlen(s->instance) + strlen(dev) + strlen(user) + 80;
    if (!(c->notify = malloc(len)))
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    int at =
        snprintf(c->notify, len, "%s %" PRId64 " %" PRId64 " ", s->instance, seq_before, seq_after);
    if (device)
        snprintf(c->notify + at, len - (size_t)at, "%zu:%s%s", strlen(dev), dev, user);
    else
        snprintf(c->notify + at, len - (size_t)at, "-:%s", user);
    return PS_OK;
}

/* ---- users ---------------------------------------------------------- */

static void read_user(const PGresult *res, ps_user *out)
{
    out->id = int_at(res, 0, 0);
    out->clock = int_at(res, 0, 1);
    out->last_sync_ms = int_at(res, 0, 2);
    out->seq = int_at(res, 0, 3);
    out->purged_seq = int_at(res, 0, 4);
    out->bytes = int_at(res, 0, 5);
}

static ps_code user_get(pg_conn *c, int q, const char *name, ps_user *out, bool *found,
                        ps_error *err)
{
    ps_code rc;
    const char *params[1] = {name};
    PGresult *res = run(c, q, 1, params, &rc, err, "loading user");
    if (!res)
        return rc;
    *found = PQntuples(res) > 0;
    if (*found)
        read_user(res, out);
    PQclear(res);
    return PS_OK;
}

static ps_code pg_user_find(ps_store *base, const char *name, ps_user *out, bool *found,
                            ps_error *err)
{
    return user_get(current((pg_store *)base), Q_USER_GET, name, out, found, err);
}

static ps_code pg_user_load(ps_store *base, const char *name, ps_user *out, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    /* In a write transaction the row is locked until commit: the user's
     * other writers, on any instance, wait here. */
    int q = c->writing ? Q_USER_LOCK : Q_USER_GET;
    for (int attempt = 0; attempt < 2; attempt++) {
        bool found;
        ps_code rc = user_get(c, q, name, out, &found, err);
        if (rc != PS_OK || found)
            return rc;
        const char *params[1] = {name};
        if ((rc = run_void(c, Q_USER_ADD, 1, params, err, "adding user")) != PS_OK)
            return rc;
    }
    return ps_error_set(err, PS_ERR_STORE, -1, "", "postgres: the new user cannot be read");
}

static ps_code pg_user_save(ps_store *base, const ps_user *u, ps_error *err)
{
    num id, clock, ms, seq;
    const char *params[4] = {numtext(&id, u->id), numtext(&clock, u->clock),
                             numtext(&ms, u->last_sync_ms), numtext(&seq, u->seq)};
    return run_void(current((pg_store *)base), Q_USER_SAVE, 4, params, err, "saving user");
}

static ps_code pg_user_restore(ps_store *base, const ps_user *u, ps_error *err)
{
    num id, clock, ms, seq, purged;
    const char *params[5] = {numtext(&id, u->id), numtext(&clock, u->clock),
                             numtext(&ms, u->last_sync_ms), numtext(&seq, u->seq),
                             numtext(&purged, u->purged_seq)};
    return run_void(current((pg_store *)base), Q_USER_RESTORE, 5, params, err, "saving user");
}

/* Records `name`'s time in the unwritten list (lock held). */
static ps_code remember_seen(pg_store *s, const char *name, int64_t ms)
{
    size_t i = 0;
    while (i < s->nseen && strcmp(s->seen[i].name, name) != 0)
        i++;
    if (i == s->nseen) {
        if (s->nseen == s->seen_cap) {
            size_t cap = s->seen_cap ? 2 * s->seen_cap : 8;
            seen_time *grown = realloc(s->seen, cap * sizeof *grown);
            if (!grown)
                return PS_ERR_NOMEM;
            s->seen = grown;
            s->seen_cap = cap;
        }
        if (!(s->seen[i].name = strdup(name)))
            return PS_ERR_NOMEM;
        s->seen[i].ms = 0;
        if (i == 0)
            s->seen_flush_at = ps__time_monotonic_ms() + SEEN_FLUSH_MS;
        if (i + 1 >= SEEN_FLUSH_USERS)
            s->seen_flush_at = 0;
        s->nseen = i + 1;
    }
    if (ms > s->seen[i].ms)
        s->seen[i].ms = ms;
    return PS_OK;
}

static void return_seen(pg_store *s, seen_time *v, size_t n)
{
    pthread_mutex_lock(&s->seen_lock);
    for (size_t i = 0; i < n; i++)
        remember_seen(s, v[i].name, v[i].ms);
    /* not at every request while the database is away */
    s->seen_flush_at = ps__time_monotonic_ms() + SEEN_FLUSH_MS;
    pthread_mutex_unlock(&s->seen_lock);
    free_seen(v, n);
}

/*
 * A sync that changed nothing would otherwise cost a write transaction (a
 * commit per poll of every device). Its time waits in memory (stats() sees
 * it) and is written by the first transaction to end once the oldest
 * waiting is a second old, by a write transaction's commit, or at close.
 */
static ps_code pg_user_seen(ps_store *base, const char *name, int64_t ms, ps_error *err)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = current(s);
    if (c->writing) {
        num n;
        const char *params[2] = {name, numtext(&n, ms)};
        return run_void(c, Q_USER_SEEN, 2, params, err, "saving last sync time");
    }
    pthread_mutex_lock(&s->seen_lock);
    ps_code rc = remember_seen(s, name, ms);
    pthread_mutex_unlock(&s->seen_lock);
    return rc == PS_OK ? PS_OK : ps_error_set(err, rc, -1, "", "out of memory");
}

/* ---- chats and messages --------------------------------------------- */

static ps_code parse_state(const char *text, size_t len, ps_chat **out, ps_error *err)
{
    json_object *state = NULL;
    ps_code rc = ps__json_parse_trusted(text, len, &state, err);
    if (rc == PS_OK)
        rc = ps__chat_state_from_json(state, out, err);
    json_object_put(state);
    if (rc != PS_OK && rc != PS_ERR_NOMEM)
        return ps_error_set(err, PS_ERR_STORE, -1, "", "a stored chat has a corrupt state");
    return rc;
}

static ps_code read_message(const PGresult *res, int row, ps_message *m, ps_error *err)
{
    memset(m, 0, sizeof *m);
    json_object *value = NULL;
    if (!PQgetisnull(res, row, 1)) {
        ps_code rc = ps__json_parse_trusted(PQgetvalue(res, row, 1),
                                            (size_t)PQgetlength(res, row, 1), &value, err);
        if (rc != PS_OK)
            return ps_error_set(err, PS_ERR_STORE, -1, "", "a stored message is corrupt");
    }
    m->id = strdup(PQgetvalue(res, row, 0));
    m->value = value;
    m->stamp.ts = int_at(res, row, 2);
    m->stamp.lamport = int_at(res, row, 3);
    m->stamp.device = strdup(PQgetvalue(res, row, 4));
    m->order_ts = int_at(res, row, 5);
    m->mark.seq = int_at(res, row, 6);
    m->mark.origin = strdup(PQgetvalue(res, row, 7));
    m->stamp.timed = PQgetvalue(res, row, 8)[0] == 't';
    m->received = int_at(res, row, 9);
    if (!m->id || !m->stamp.device || !m->mark.origin) {
        ps__message_release(m);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    return PS_OK;
}

static ps_code append_rows(const PGresult *res, ps_chat *chat, ps_error *err)
{
    ps_code rc = PS_OK;
    for (int i = 0; i < PQntuples(res) && rc == PS_OK; i++) {
        ps_message m;
        if ((rc = read_message(res, i, &m, err)) != PS_OK)
            break;
        rc = ps__chat_append_message(chat, m.id, m.value, &m.stamp, m.order_ts);
        if (rc == PS_OK) {
            chat->messages[chat->nmessages - 1].received = m.received;
            chat->messages[chat->nmessages - 1].mark = m.mark;
            m.mark.origin = NULL;
        } else {
            ps_error_set(err, rc, -1, "", "out of memory");
        }
        m.value = NULL; /* the reference went to the chat (or was dropped) */
        ps__message_release(&m);
    }
    return rc;
}

static ps_code pg_chat_load(ps_store *base, int64_t user, const char *id, bool with_messages,
                            ps_chat **out, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    *out = NULL;
    num u;
    const char *params[2] = {numtext(&u, user), id};
    ps_code rc;
    PGresult *res = run(c, Q_CHAT_GET, 2, params, &rc, err, "reading a chat");
    if (!res)
        return rc;
    if (PQntuples(res) > 0)
        rc = parse_state(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), out, err);
    PQclear(res);
    if (rc == PS_OK && *out && with_messages) {
        if ((res = run(c, Q_MSG_ALL, 2, params, &rc, err, "loading messages")) != NULL) {
            rc = append_rows(res, *out, err);
            PQclear(res);
        }
        ps__chat_normalize(*out);
    }
    if (rc != PS_OK) {
        ps__chat_free(*out);
        *out = NULL;
    }
    return rc;
}

static ps_code pg_messages_load(ps_store *base, int64_t user, ps_chat *chat, const char *const *ids,
                                size_t n, ps_error *err)
{
    if (n == 0)
        return PS_OK;
    pg_conn *c = current((pg_store *)base);
    ps_dynbuf arr;
    ps__dynbuf_init(&arr, SIZE_MAX);
    ps_code rc = ps__dynbuf_add(&arr, "{", 1);
    for (size_t i = 0; i < n && rc == PS_OK; i++)
        rc = array_add(&arr, ids[i], strlen(ids[i]));
    if (rc == PS_OK)
        rc = ps__dynbuf_add(&arr, "}", 1);
    if (rc != PS_OK) {
        ps__dynbuf_free(&arr);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    num u;
    const char *params[3] = {numtext(&u, user), chat->id, arr.data};
    PGresult *res = run(c, Q_MSG_SOME, 3, params, &rc, err, "loading messages");
    ps__dynbuf_free(&arr);
    if (!res)
        return rc;
    rc = append_rows(res, chat, err);
    PQclear(res);
    ps__chat_normalize(chat);
    return rc;
}

#define MSG_ARRAYS 10

/* The changed messages of a chat as the array parameters of Q_MSG_PUT;
 * *count = how many. */
static ps_code message_arrays(const ps_chat *chat, ps_dynbuf arr[MSG_ARRAYS], size_t *count)
{
    *count = 0;
    for (int k = 0; k < MSG_ARRAYS; k++)
        if (ps__dynbuf_add(&arr[k], "{", 1) != PS_OK)
            return PS_ERR_NOMEM;
    for (size_t i = 0; i < chat->nmessages; i++) {
        const ps_message *m = &chat->messages[i];
        if (!m->mark.dirty)
            continue;
        size_t len = 0;
        const char *text = m->value ? ps__json_text_kept(m->value, &len) : NULL;
        if (m->value && !text) /* out of memory: never stored as deleted */
            return PS_ERR_NOMEM;
        const char *dev = m->stamp.device ? m->stamp.device : "";
        const char *origin = m->mark.origin ? m->mark.origin : "";
        if (array_add(&arr[0], m->id, strlen(m->id)) != PS_OK ||
            array_add(&arr[1], text, len) != PS_OK || array_add_int(&arr[2], m->stamp.ts) ||
            array_add_int(&arr[3], m->stamp.lamport) || array_add(&arr[4], dev, strlen(dev)) ||
            array_add_int(&arr[5], m->order_ts) || array_add_int(&arr[6], m->mark.seq) ||
            array_add(&arr[7], origin, strlen(origin)) ||
            array_add(&arr[8], m->stamp.timed ? "t" : "f", 1) ||
            array_add_int(&arr[9], m->received))
            return PS_ERR_NOMEM;
        ++*count;
    }
    for (int k = 0; k < MSG_ARRAYS; k++)
        if (ps__dynbuf_add(&arr[k], "}", 1) != PS_OK)
            return PS_ERR_NOMEM;
    return PS_OK;
}

/* Reads the results of `n` pipelined statements and the sync point. */
static ps_code pipeline_results(PGconn *pg, int n, ps_error *err, const char *what)
{
    ps_code rc = PS_OK;
    for (int i = 0; i < n; i++) {
        PGresult *res = PQgetResult(pg);
        if (!res) {
            if (rc == PS_OK)
                rc = result_error(pg, NULL, err, what);
            break;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && rc == PS_OK)
            rc = result_error(pg, res, err, what);
        PQclear(res);
        PQclear(PQgetResult(pg)); /* NULL ends each statement's results */
    }
    PGresult *res;
    while ((res = PQgetResult(pg)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        PQclear(res);
        if (st == PGRES_PIPELINE_SYNC)
            break;
    }
    return rc;
}

static ps_code pg_chat_save(ps_store *base, int64_t user, const ps_chat *chat, const char *doc,
                            size_t doc_len, int64_t seq, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    (void)doc_len;
    json_object *state = ps__chat_header_to_json(chat);
    ps_dynbuf arr[MSG_ARRAYS], hashes;
    for (int k = 0; k < MSG_ARRAYS; k++)
        ps__dynbuf_init(&arr[k], SIZE_MAX);
    ps__dynbuf_init(&hashes, SIZE_MAX);
    size_t count = 0;
    /* with the rendering, the base of a device sent the chat whole
     * (base_copy); NULL = not worked out */
    ps_base base_hashes = {0};
    bool ok = state && message_arrays(chat, arr, &count) == PS_OK;
    if (ok && doc) {
        ok = ps__base_add_chat(&base_hashes, chat) == PS_OK;
        ps__base_seal(&base_hashes);
        ok = ok && bytea_hex(&hashes, base_hashes.hashes, base_hashes.n) == PS_OK;
    }
    ps__base_free(&base_hashes);
    size_t state_len = 0;
    const char *state_text = ok ? ps__json_text(state, &state_len) : NULL;
    if (!state_text) {
        json_object_put(state);
        for (int k = 0; k < MSG_ARRAYS; k++)
            ps__dynbuf_free(&arr[k]);
        ps__dynbuf_free(&hashes);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    bool live = ps__chat_is_live(chat);
    const ps_lamport *shown = &chat->deleted_lamport;
    num u, counter, at, sq;
    const char *chat_params[10] = {
        numtext(&u, user),
        chat->id,
        live ? "t" : "f",
        state_text,
        doc ? doc : "", /* "" = not rendered */
        numtext(&counter, chat->has_tombstone ? shown->counter : 0),
        chat->has_tombstone && shown->id ? shown->id : "",
        numtext(&at, chat->has_tombstone && !live ? chat->tombstone.ts : 0),
        numtext(&sq, seq),
        doc ? hashes.data : NULL,
    };
    const char *msg_params[12] = {u.s,         chat->id,    arr[0].data, arr[1].data,
                                  arr[2].data, arr[3].data, arr[4].data, arr[5].data,
                                  arr[6].data, arr[7].data, arr[8].data, arr[9].data};
    /* The chat row and its messages in one round trip. */
    ps_code rc = PS_OK;
    int sent = 0;
    if (c->begin_pending) { /* never in practice: user_load comes first */
        char begin[16];
        snprintf(begin, sizeof begin, "q%d", c->writing ? Q_BEGIN_WRITE : Q_BEGIN_READ);
        c->begin_pending = false;
        PGresult *res = PQexecPrepared(c->pg, begin, 0, NULL, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = result_error(c->pg, res, err, "begin");
        PQclear(res);
    }
    if (rc != PS_OK) {
        /* reported below */
    } else if (!PQenterPipelineMode(c->pg)) {
        rc = result_error(c->pg, NULL, err, "pipeline");
    } else {
        char chat_q[16], msg_q[16];
        snprintf(chat_q, sizeof chat_q, "q%d", Q_CHAT_PUT);
        snprintf(msg_q, sizeof msg_q, "q%d", Q_MSG_PUT);
        if (PQsendQueryPrepared(c->pg, chat_q, 10, chat_params, NULL, NULL, 0))
            sent++;
        if (count && sent == 1 && PQsendQueryPrepared(c->pg, msg_q, 12, msg_params, NULL, NULL, 0))
            sent++;
        PQpipelineSync(c->pg);
        rc = pipeline_results(c->pg, sent, err, "saving chat");
        if (rc == PS_OK && sent < (count ? 2 : 1))
            rc = result_error(c->pg, NULL, err, "saving chat");
        PQexitPipelineMode(c->pg);
    }
    json_object_put(state);
    for (int k = 0; k < MSG_ARRAYS; k++)
        ps__dynbuf_free(&arr[k]);
    ps__dynbuf_free(&hashes);
    return rc;
}

static ps_code pg_chat_next_changed(ps_store *base, int64_t user, int64_t after_seq, ps_chat **out,
                                    int64_t *seq, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    *out = NULL;
    num u, a;
    const char *params[2] = {numtext(&u, user), numtext(&a, after_seq)};
    ps_code rc;
    PGresult *res = run(c, Q_CHAT_NEXT, 2, params, &rc, err, "reading a chat");
    if (!res)
        return rc;
    if (PQntuples(res) > 0) {
        if (seq)
            *seq = int_at(res, 0, 1);
        rc = parse_state(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), out, err);
    }
    PQclear(res);
    return rc;
}

static ps_code pg_messages_since(ps_store *base, int64_t user, const char *chat_id,
                                 int64_t after_seq, const char *skip_origin, int64_t skip_after,
                                 ps_message_fn fn, void *ctx, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    num u, a, k;
    const char *params[5] = {numtext(&u, user), chat_id, numtext(&a, after_seq), skip_origin,
                             numtext(&k, skip_after)};
    ps_code rc;
    PGresult *res = run(c, Q_MSG_SINCE, 5, params, &rc, err, "listing messages");
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res) && rc == PS_OK; i++) {
        ps_message m;
        if ((rc = read_message(res, i, &m, err)) != PS_OK)
            break;
        rc = fn(ctx, &m);
        ps__message_release(&m);
    }
    PQclear(res);
    return rc;
}

/* chat_each's cursor, behind ps_chat_row.impl. */
typedef struct chat_listing {
    pg_conn *c;
    int64_t user;
    PGresult *doc; /* the last row's rendered chat */
} chat_listing;

/* The row's rendered chat, read only now (one round trip); valid until the
 * next row. */
static const char *row_doc(const ps_chat_row *row, size_t *len)
{
    chat_listing *l = row->impl;
    PQclear(l->doc);
    l->doc = NULL;
    *len = 0;
    num u;
    const char *params[2] = {numtext(&u, l->user), row->id};
    ps_code rc;
    ps_error err;
    l->doc = run(l->c, Q_CHAT_DOC, 2, params, &rc, &err, "reading a chat");
    if (!l->doc || PQntuples(l->doc) == 0)
        return NULL; /* as if not rendered; the caller renders it */
    *len = (size_t)PQgetlength(l->doc, 0, 0);
    return *len ? PQgetvalue(l->doc, 0, 0) : NULL;
}

static ps_code pg_chat_each_after(ps_store *base, int64_t user, const char *after,
                                  ps_chat_row_fn fn, void *ctx, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    chat_listing listing = {.c = c, .user = user};
    num u;
    const char *params[2] = {numtext(&u, user), after};
    ps_code rc;
    PGresult *res = after ? run(c, Q_CHAT_EACH_AFTER, 2, params, &rc, err, "listing chats")
                          : run(c, Q_CHAT_EACH, 1, params, &rc, err, "listing chats");
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        ps_chat_row row = {
            .id = PQgetvalue(res, i, 0),
            .doc = row_doc,
            .impl = &listing,
            .live = PQgetvalue(res, i, 1)[0] == 't',
            .deleted_counter = int_at(res, i, 2),
            .deleted_device = PQgetvalue(res, i, 3),
            .seq = int_at(res, i, 4),
        };
        if (fn(ctx, &row))
            break;
    }
    PQclear(listing.doc);
    PQclear(res);
    /* a connection lost under row_doc shows here */
    if (PQstatus(c->pg) != CONNECTION_OK)
        return result_error(c->pg, NULL, err, "listing chats");
    return PS_OK;
}

static ps_code pg_chat_each(ps_store *base, int64_t user, ps_chat_row_fn fn, void *ctx,
                            ps_error *err)
{
    return pg_chat_each_after(base, user, NULL, fn, ctx, err);
}

static ps_code pg_stats(ps_store *base, ps_store_stats *out, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    ps_code rc;
    PGresult *res = run(c, Q_STATS, 0, NULL, &rc, err, "reading stats");
    if (!res)
        return rc;
    out->live_chats = int_at(res, 0, 0);
    out->last_sync_ms = int_at(res, 0, 1);
    PQclear(res);
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->seen_lock); /* the times not written yet */
    for (size_t i = 0; i < s->nseen; i++)
        if (s->seen[i].ms > out->last_sync_ms)
            out->last_sync_ms = s->seen[i].ms;
    pthread_mutex_unlock(&s->seen_lock);
    return PS_OK;
}

static ps_code pg_purge_tombstones(ps_store *base, int64_t older_than_ms, int64_t *purged,
                                   ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    *purged = 0;
    num before;
    const char *p1[1] = {numtext(&before, older_than_ms)};
    ps_code rc;
    PGresult *res = run(c, Q_PURGE_LOCK, 1, p1, &rc, err, "purging tombstones");
    if (!res)
        return rc;
    ps_dynbuf ids;
    ps__dynbuf_init(&ids, SIZE_MAX);
    rc = ps__dynbuf_add(&ids, "{", 1);
    for (int i = 0; i < PQntuples(res) && rc == PS_OK; i++)
        rc = array_add_int(&ids, int_at(res, i, 0));
    int users = PQntuples(res);
    PQclear(res);
    if (rc == PS_OK)
        rc = ps__dynbuf_add(&ids, "}", 1);
    if (rc != PS_OK) {
        ps__dynbuf_free(&ids);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    if (users) {
        const char *p2[2] = {before.s, ids.data};
        /* cursors from before a forgotten tombstone can no longer be served */
        if ((rc = run_void(c, Q_PURGE_MARK, 2, p2, err, "marking purged sequence")) == PS_OK &&
            (res = run(c, Q_PURGE, 2, p2, &rc, err, "purging tombstones")) != NULL) {
            *purged = strtoll(PQcmdTuples(res), NULL, 10);
            PQclear(res);
            const char *p3[1] = {ids.data};
            rc = run_void(c, Q_RECOUNT, 1, p3, err, "recounting bytes");
        }
    }
    ps__dynbuf_free(&ids);
    return rc;
}

static ps_code pg_chat_find_sent(ps_store *base, int64_t user, const char *device, uint64_t hash,
                                 char *id, size_t id_size, bool *unchanged, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    num u, h;
    const char *params[3] = {numtext(&u, user), device ? device : "", numtext(&h, (int64_t)hash)};
    id[0] = '\0';
    *unchanged = false;
    ps_code rc;
    PGresult *res = run(c, Q_SENT_FIND, 3, params, &rc, err, "finding a sent chat");
    if (!res)
        return rc;
    if (PQntuples(res) > 0) {
        snprintf(id, id_size, "%s", PQgetvalue(res, 0, 0));
        *unchanged = PQgetvalue(res, 0, 1)[0] == 't';
    }
    PQclear(res);
    return PS_OK;
}

static ps_code pg_chat_set_sent(ps_store *base, int64_t user, const char *device, const char *id,
                                uint64_t hash, uint64_t content, ps_error *err)
{
    num u, h, k;
    const char *params[5] = {numtext(&u, user), device ? device : "", id,
                             numtext(&h, (int64_t)hash), numtext(&k, (int64_t)content)};
    return run_void(current((pg_store *)base), Q_SENT_SET, 5, params, err, "recording a sent chat");
}

static ps_code pg_chat_sent_content(ps_store *base, int64_t user, const char *device,
                                    const char *id, uint64_t *content, bool *unchanged,
                                    ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    num u;
    const char *params[3] = {numtext(&u, user), device ? device : "", id};
    *content = 0;
    *unchanged = false;
    ps_code rc;
    PGresult *res = run(c, Q_SENT_OF, 3, params, &rc, err, "finding a sent chat");
    if (!res)
        return rc;
    if (PQntuples(res) > 0) {
        *content = (uint64_t)int_at(res, 0, 0);
        *unchanged = PQgetvalue(res, 0, 1)[0] == 't';
    }
    PQclear(res);
    return PS_OK;
}

static ps_code pg_user_bytes(ps_store *base, int64_t user, int64_t *bytes, ps_error *err)
{
    num u;
    const char *params[1] = {numtext(&u, user)};
    ps_code rc;
    PGresult *res =
        run(current((pg_store *)base), Q_USER_BYTES, 1, params, &rc, err, "reading bytes");
    if (!res)
        return rc;
    *bytes = PQntuples(res) > 0 ? int_at(res, 0, 0) : 0;
    PQclear(res);
    return PS_OK;
}

static ps_code pg_user_list(ps_store *base, int (*fn)(void *, const char *, int64_t), void *ctx,
                            ps_error *err)
{
    ps_code rc;
    PGresult *res = run(current((pg_store *)base), Q_USER_LIST, 0, NULL, &rc, err, "listing users");
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res); i++)
        if (fn(ctx, PQgetvalue(res, i, 0), int_at(res, i, 1)))
            break;
    PQclear(res);
    return PS_OK;
}

static ps_code pg_user_delete(ps_store *base, const char *name, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    const char *params[1] = {name};
    ps_code rc = run_void(c, Q_USER_DEL_SEEN, 1, params, err, "deleting user");
    if (rc != PS_OK)
        return rc;
    PGresult *res = run(c, Q_USER_DEL, 1, params, &rc, err, "deleting user");
    if (!res)
        return rc;
    bool none = strcmp(PQcmdTuples(res), "0") == 0;
    PQclear(res);
    return none ? ps_error_set(err, PS_ERR_NOT_FOUND, -1, "", "no user %s", name) : PS_OK;
}

/* GET /health: a write transaction through to COMMIT (the WAL flush), so a
 * database that cannot be reached, is read-only or cannot write shows.
 * PostgreSQL checks its own pages (data checksums): no deep check here. */
static ps_code pg_probe(ps_store *base, size_t deep_max_bytes, ps_error *err)
{
    (void)deep_max_bytes;
    ps_error detail;
    ps_error_clear(&detail);
    ps_code rc = pg_begin(base, true, &detail);
    if (rc == PS_OK) {
        rc = run_void(current((pg_store *)base), Q_PROBE, 0, NULL, &detail, "probe");
        if (rc == PS_OK)
            rc = pg_commit(base, &detail);
        else
            pg_rollback(base);
    }
    if (rc == PS_OK || rc == PS_ERR_BUSY) /* busy: in use, not broken (as SQLite's) */
        return PS_OK;
    fprintf(stderr, "polysyncd: health probe: %s\n", detail.message);
    return ps_error_set(err, PS_ERR_STORE, -1, "", "%s",
                        rc == PS_ERR_UNAVAILABLE ? "the database cannot be reached"
                                                 : "the database cannot be written");
}

/* ---- accounts and tokens (store.h) ---------------------------------- */

/* token_revoke and account_set raise it in their own transaction, so an
 * instance polling it sees the change with the change. */
static ps_code bump_access_generation(pg_conn *c, ps_error *err)
{
    return run_void(c, Q_ACCESS_BUMP, 0, NULL, err, "raising the access generation");
}

static ps_code pg_token_add(ps_store *base, const char *jti, const char *user, int64_t issued_ms,
                            int64_t expires_ms, ps_error *err)
{
    num issued, expires;
    const char *params[4] = {jti, user, numtext(&issued, issued_ms), numtext(&expires, expires_ms)};
    return run_void(current((pg_store *)base), Q_TOKEN_ADD, 4, params, err, "recording a token");
}

/* Runs a token query and calls fn per row. */
static ps_code each_token(pg_conn *c, int q, int n, const char *const *params,
                          int (*fn)(void *, const ps_token_row *), void *ctx, ps_error *err)
{
    ps_code rc;
    PGresult *res = run(c, q, n, params, &rc, err, "listing tokens");
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        ps_token_row row = {
            .jti = PQgetvalue(res, i, 0),
            .user = PQgetvalue(res, i, 1),
            .issued_ms = int_at(res, i, 2),
            .expires_ms = int_at(res, i, 3),
            .revoked_ms = int_at(res, i, 4),
        };
        if (fn(ctx, &row))
            break;
    }
    PQclear(res);
    return PS_OK;
}

static ps_code pg_token_list(ps_store *base, const char *user,
                             int (*fn)(void *, const ps_token_row *), void *ctx, ps_error *err)
{
    const char *params[1] = {user}; /* NULL: every user's */
    return each_token(current((pg_store *)base), Q_TOKEN_LIST, 1, params, fn, ctx, err);
}

static ps_code pg_token_revoked_each(ps_store *base, int64_t now_ms,
                                     int (*fn)(void *, const ps_token_row *), void *ctx,
                                     ps_error *err)
{
    num now;
    const char *params[1] = {numtext(&now, now_ms)};
    return each_token(current((pg_store *)base), Q_TOKEN_REVOKED, 1, params, fn, ctx, err);
}

static ps_code pg_token_revoke(ps_store *base, const char *jti, const char *user, int64_t now_ms,
                               int64_t *count, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    *count = 0;
    num now;
    const char *params[2] = {jti ? jti : user, numtext(&now, now_ms)};
    ps_code rc;
    PGresult *res = run(c, jti ? Q_TOKEN_REVOKE_ONE : Q_TOKEN_REVOKE_USER, 2, params, &rc, err,
                        "revoking tokens");
    if (!res)
        return rc;
    *count = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return *count ? bump_access_generation(c, err) : PS_OK;
}

static ps_code pg_account_set(ps_store *base, const char *name, int disabled,
                              int64_t tokens_before_ms, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    num dis, before;
    const char *params[3] = {name, numtext(&dis, disabled), numtext(&before, tokens_before_ms)};
    ps_code rc = run_void(c, Q_ACCOUNT_SET, 3, params, err, "saving an account");
    return rc == PS_OK ? bump_access_generation(c, err) : rc;
}

static ps_code pg_account_each(ps_store *base, int (*fn)(void *, const ps_account_row *), void *ctx,
                               ps_error *err)
{
    ps_code rc;
    PGresult *res =
        run(current((pg_store *)base), Q_ACCOUNT_EACH, 0, NULL, &rc, err, "listing accounts");
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        ps_account_row row = {
            .name = PQgetvalue(res, i, 0),
            .disabled = PQgetvalue(res, i, 1)[0] == 't',
            .tokens_before_ms = int_at(res, i, 2),
        };
        if (fn(ctx, &row))
            break;
    }
    PQclear(res);
    return PS_OK;
}

static ps_code pg_access_generation(ps_store *base, int64_t *generation, ps_error *err)
{
    ps_code rc;
    PGresult *res =
        run(current((pg_store *)base), Q_ACCESS_GEN, 0, NULL, &rc, err, "reading access state");
    if (!res)
        return rc;
    *generation = PQntuples(res) > 0 ? int_at(res, 0, 0) : 0;
    PQclear(res);
    return PS_OK;
}

static ps_code pg_user_rename(ps_store *base, const char *from, const char *to, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    const char *p_to[1] = {to};
    ps_code rc;
    PGresult *res = run(c, Q_USER_EXISTS, 1, p_to, &rc, err, "renaming user");
    if (!res)
        return rc;
    bool taken = PQntuples(res) > 0;
    PQclear(res);
    if (taken)
        return ps_error_set(err, PS_ERR_INVALID, -1, "", "user %s exists already", to);
    const char *params[2] = {from, to};
    if (!(res = run(c, Q_USER_RENAME, 2, params, &rc, err, "renaming user")))
        return rc;
    bool none = strcmp(PQcmdTuples(res), "0") == 0;
    PQclear(res);
    if (none)
        return ps_error_set(err, PS_ERR_NOT_FOUND, -1, "", "no user %s", from);
    if ((rc = run_void(c, Q_USER_RENAME_SEEN_DROP, 1, p_to, err, "renaming user")) != PS_OK)
        return rc;
    return run_void(c, Q_USER_RENAME_SEEN, 2, params, err, "renaming user");
}

/* ---- the device registry and tombstone collection (store.h) ---------- */

static ps_code pg_device_seen(ps_store *base, const char *user, const char *device,
                              const char *client, const char *protocol, int64_t acked_seq,
                              int64_t now_ms, ps_error *err)
{
    num acked, now;
    const char *params[6] = {user,
                             device,
                             client ? client : "",
                             protocol,
                             numtext(&acked, acked_seq),
                             numtext(&now, now_ms)};
    return run_void(current((pg_store *)base), Q_DEVICE_SEEN, 6, params, err, "recording a device");
}

static ps_code pg_device_list(ps_store *base, const char *user,
                              int (*fn)(void *, const ps_device_row *), void *ctx, ps_error *err)
{
    const char *params[1] = {user};
    ps_code rc;
    PGresult *res =
        run(current((pg_store *)base), Q_DEVICE_LIST, 1, params, &rc, err, "listing devices");
    if (!res)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        ps_device_row row = {
            .id = PQgetvalue(res, i, 0),
            .first_seen_ms = int_at(res, i, 1),
            .last_seen_ms = int_at(res, i, 2),
            .client = PQgetvalue(res, i, 3),
            .protocol = PQgetvalue(res, i, 4),
            .acked_seq = int_at(res, i, 5),
        };
        if (fn(ctx, &row))
            break;
    }
    PQclear(res);
    return PS_OK;
}

/* Runs a collection query with $1 = user id, $2 = sequence; *changes = rows. */
static ps_code run_for_user(pg_conn *c, int q, const char *user_id, const char *seq,
                            int64_t *changes, ps_error *err)
{
    const char *params[2] = {user_id, seq};
    ps_code rc;
    PGresult *res = run(c, q, 2, params, &rc, err, "collecting tombstones");
    if (!res)
        return rc;
    if (changes)
        *changes = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return PS_OK;
}

static ps_code pg_purge_acknowledged(ps_store *base, const char *user, int64_t active_since_ms,
                                     int64_t *purged, ps_error *err)
{
    pg_conn *c = current((pg_store *)base);
    *purged = 0;
    /* The user's row first, locked as a sync locks it: the sync writers of
     * other instances wait, and the acknowledgements read next stand. In a
     * read transaction nothing would be written: read only. */
    ps_user u;
    bool found;
    ps_code rc = user_get(c, c->writing ? Q_USER_LOCK : Q_USER_GET, user, &u, &found, err);
    if (rc != PS_OK || !found)
        return rc;
    num id, since;
    const char *params[2] = {numtext(&id, u.id), numtext(&since, active_since_ms)};
    PGresult *res = run(c, Q_ACKED_MIN, 2, params, &rc, err, "reading acknowledgements");
    if (!res)
        return rc;
    int64_t acked = PQgetisnull(res, 0, 0) ? -1 : int_at(res, 0, 0);
    PQclear(res);
    if (acked <= 0)
        return PS_OK;
    num seq;
    numtext(&seq, acked);
    int64_t chats = 0, messages = 0;
    /* first the mark: cursors from before what goes can no longer be served */
    if ((rc = run_for_user(c, Q_ACK_MARK, id.s, seq.s, NULL, err)) != PS_OK ||
        (rc = run_for_user(c, Q_ACK_PURGE_MSG, id.s, seq.s, &messages, err)) != PS_OK ||
        (rc = run_for_user(c, Q_ACK_PURGE_CHATS, id.s, seq.s, &chats, err)) != PS_OK)
        return rc;
    *purged = chats + messages;
    if (*purged) { /* the running byte count does not see deletions */
        char ids[32];
        snprintf(ids, sizeof ids, "{%s}", id.s);
        const char *p[1] = {ids};
        rc = run_void(c, Q_RECOUNT, 1, p, err, "recounting bytes");
    }
    return rc;
}

static ps_code pg_user_tombstones(ps_store *base, const char *user, int64_t *count, ps_error *err)
{
    const char *params[1] = {user};
    ps_code rc;
    PGresult *res = run(current((pg_store *)base), Q_USER_TOMBSTONES, 1, params, &rc, err,
                        "counting tombstones");
    if (!res)
        return rc;
    *count = PQntuples(res) > 0 ? int_at(res, 0, 0) : 0;
    PQclear(res);
    return PS_OK;
}

static ps_code pg_device_get(ps_store *base, const char *user, const char *device,
                             int (*fn)(void *, const ps_device_row *), void *ctx, ps_error *err)
{
    const char *params[2] = {user, device};
    ps_code rc;
    PGresult *res =
        run(current((pg_store *)base), Q_DEVICE_GET, 2, params, &rc, err, "reading a device");
    if (!res)
        return rc;
    if (PQntuples(res) > 0) {
        ps_device_row row = {
            .id = device,
            .first_seen_ms = int_at(res, 0, 0),
            .last_seen_ms = int_at(res, 0, 1),
            .client = PQgetvalue(res, 0, 2),
            .protocol = PQgetvalue(res, 0, 3),
            .acked_seq = int_at(res, 0, 4),
        };
        fn(ctx, &row);
    }
    PQclear(res);
    return PS_OK;
}

static ps_code pg_device_forget(ps_store *base, const char *user, const char *device, ps_error *err)
{
    const char *params[2] = {user, device};
    ps_code rc;
    PGresult *res =
        run(current((pg_store *)base), Q_DEVICE_FORGET, 2, params, &rc, err, "forgetting a device");
    if (!res)
        return rc;
    bool none = strcmp(PQcmdTuples(res), "0") == 0;
    PQclear(res);
    return none ? ps_error_set(err, PS_ERR_NOT_FOUND, -1, "", "user %s has no device %s", user,
                               device)
                : PS_OK;
}

/* ---- full-state devices' bases (docs/merge.md, "The base rule") ------ */

static ps_code pg_base_load(ps_store *base, int64_t user, const char *device, const char *chat_id,
                            ps_base *out, int64_t *seq, bool *found, ps_error *err)
{
    num u;
    const char *params[3] = {numtext(&u, user), chat_id, device};
    ps_code rc;
    *found = false;
    PGresult *res =
        run(current((pg_store *)base), Q_BASE_GET, 3, params, &rc, err, "reading a device's base");
    if (!res)
        return rc;
    if (PQntuples(res) > 0) {
        *found = true;
        *seq = int_at(res, 0, 0);
        if (out) {
            size_t len = 0;
            unsigned char *raw =
                PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 1), &len);
            size_t n = len / sizeof(uint64_t);
            ps__base_free(out);
            if (!raw || (n && !(out->hashes = malloc(n * sizeof(uint64_t))))) {
                rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
            } else if (n) {
                memcpy(out->hashes, raw, n * sizeof(uint64_t));
                out->n = out->cap = n;
            }
            PQfreemem(raw);
        }
    }
    PQclear(res);
    return rc;
}

static ps_code pg_base_save(ps_store *base, int64_t user, const char *device, const char *chat_id,
                            const ps_base *b, int64_t seq, ps_error *err)
{
    ps_dynbuf hex;
    ps__dynbuf_init(&hex, SIZE_MAX);
    if (bytea_hex(&hex, b->hashes, b->n) != PS_OK) {
        ps__dynbuf_free(&hex);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    num u, sq;
    const char *params[5] = {numtext(&u, user), chat_id, device, hex.data, numtext(&sq, seq)};
    ps_code rc =
        run_void(current((pg_store *)base), Q_BASE_PUT, 5, params, err, "saving a device's base");
    ps__dynbuf_free(&hex);
    return rc;
}

static ps_code pg_base_copy(ps_store *base, int64_t user, const char *device, const char *chat_id,
                            int64_t seq, bool *copied, ps_error *err)
{
    num u, sq;
    const char *params[4] = {numtext(&u, user), chat_id, device, numtext(&sq, seq)};
    ps_code rc;
    *copied = false;
    PGresult *res =
        run(current((pg_store *)base), Q_BASE_COPY, 4, params, &rc, err, "saving a device's base");
    if (!res)
        return rc;
    *copied = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    return PS_OK;
}

/* ---- the listener --------------------------------------------------- */

static void ring(pg_store *s, const char *user, const char *device, int64_t before, int64_t after)
{
    pthread_mutex_lock(&s->listen_lock);
    if (s->listen_fn)
        s->listen_fn(s->listen_ctx, user, device, before, after);
    pthread_mutex_unlock(&s->listen_lock);
}

/* Hands one notification's payload to the subscriber, unless this
 * instance sent it (its streams were rung at commit already). */
static void deliver(pg_store *s, const char *payload)
{
    size_t ilen = strlen(s->instance);
    if (strncmp(payload, s->instance, ilen) == 0 && payload[ilen] == ' ')
        return;
    const char *sp = strchr(payload, ' ');
    if (!sp)
        return;
    char *end;
    int64_t before = strtoll(sp + 1, &end, 10);
    if (*end != ' ')
        return;
    int64_t after = strtoll(end + 1, &end, 10);
    if (*end != ' ')
        return;
    const char *p = end + 1;
    if (p[0] == '-' && p[1] == ':') {
        ring(s, p + 2, NULL, before, after);
        return;
    }
    unsigned long dlen = strtoul(p, &end, 10);
    if (*end != ':' || strlen(end + 1) < dlen)
        return;
    char *device = strndup(end + 1, dlen);
    if (device)
        ring(s, end + 1 + dlen, device, before, after);
    free(device);
}

/* Waits up to ms for the wake pipe; true when asked to stop. */
static bool listener_sleep(pg_store *s, int ms)
{
    struct pollfd pfd = {.fd = s->wake[0], .events = POLLIN};
    return poll(&pfd, 1, ms) > 0;
}

static void *listener_main(void *arg)
{
    pg_store *s = arg;
    bool missed = false; /* a connection was lost: changes may have gone unheard */
    int backoff_ms = 100;
    for (;;) {
        PGconn *pg = connect_db(s);
        PGresult *res = pg && PQstatus(pg) == CONNECTION_OK ? PQexec(pg, "LISTEN " CHANNEL) : NULL;
        bool ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        atomic_store(&s->listen_tried, true);
        if (!ok) {
            PQfinish(pg);
            missed = true;
            if (listener_sleep(s, backoff_ms))
                return NULL;
            backoff_ms = backoff_ms < 2000 ? backoff_ms * 2 : 2000;
            continue;
        }
        backoff_ms = 100;
        if (missed) { /* listening again: whatever changed meanwhile, pull */
            ring(s, NULL, NULL, 0, 0);
            missed = false;
        }
        for (;;) {
            struct pollfd pfd[2] = {{.fd = PQsocket(pg), .events = POLLIN},
                                    {.fd = s->wake[0], .events = POLLIN}};
            if (poll(pfd, 2, -1) < 0 && errno != EINTR)
                break;
            if (pfd[1].revents) {
                PQfinish(pg);
                return NULL;
            }
            if (!PQconsumeInput(pg))
                break; /* the connection is gone */
            PGnotify *n;
            while ((n = PQnotifies(pg)) != NULL) {
                deliver(s, n->extra);
                PQfreemem(n);
            }
        }
        PQfinish(pg);
        missed = true;
    }
}

static ps_code pg_listen(ps_store *base, ps_store_change_fn fn, void *ctx, ps_error *err)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->listen_lock);
    s->listen_fn = fn;
    s->listen_ctx = ctx;
    pthread_mutex_unlock(&s->listen_lock);
    if (fn && !s->listening) {
        if (pthread_create(&s->listener, NULL, listener_main, s) != 0)
            return ps_error_set(err, PS_ERR_STORE, -1, "", "cannot start the listener thread");
        s->listening = true;
        /* Serve only once LISTEN runs: a change another instance commits
         * in between would ring nobody here (its NOTIFY is not queued for
         * a channel not yet listened to). Bounded: a database that does not
         * answer is the reconnect path's job (it rings everyone after). */
        for (int waited_ms = 0; !atomic_load(&s->listen_tried) && waited_ms < 5000; waited_ms += 10)
            usleep(10 * 1000);
    }
    return PS_OK;
}

/* ---- opening, migrating, closing ------------------------------------ */

static void pg_close(ps_store *base)
{
    pg_store *s = (pg_store *)base;
    if (s->listening) {
        ssize_t w = write(s->wake[1], "x", 1);
        (void)w;
        pthread_join(s->listener, NULL);
    }
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    if (s->nseen && s->pool) { /* a clean stop loses no sync time... */
        ps_error err;
        if (conn_ready(s, &s->pool[0], &err) == PS_OK)
            flush_seen(s, &s->pool[0], true);
        else /* ...unless the database is away */
            fprintf(stderr, "polysyncd: last sync times of %zu users not saved: %s\n", s->nseen,
                    err.message);
    }
    free_seen(s->seen, s->nseen);
    for (unsigned i = 0; i < s->npool; i++) {
        if (s->pool[i].pg)
            PQfinish(s->pool[i].pg);
        free(s->pool[i].notify);
    }
    free(s->pool);
    free(s->url);
    pthread_key_delete(s->current);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->listen_lock);
    pthread_mutex_destroy(&s->seen_lock);
    pthread_cond_destroy(&s->freed);
    free(s);
}

static ps_code exec_simple(PGconn *pg, const char *sql, ps_error *err, const char *what)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    ps_code rc =
        st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? PS_OK : result_error(pg, res, err, what);
    PQclear(res);
    return rc;
}

/* Brings the schema forward under an advisory lock, so that instances
 * starting at once migrate one after the other (the later ones find the
 * work done). Each step is one transaction. */
static ps_code migrate(PGconn *pg, ps_error *err)
{
    ps_code rc = exec_simple(pg, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, "locking");
    if (rc != PS_OK)
        return rc;
    rc = exec_simple(pg,
                     "CREATE TABLE IF NOT EXISTS schema_version ("
                     " version INTEGER PRIMARY KEY,"
                     " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                     err, "creating schema_version");
    int have = -1;
    if (rc == PS_OK) {
        PGresult *res = PQexec(pg, "SELECT coalesce(max(version), 0) FROM schema_version");
        if (PQresultStatus(res) == PGRES_TUPLES_OK)
            have = atoi(PQgetvalue(res, 0, 0));
        else
            rc = result_error(pg, res, err, "reading schema version");
        PQclear(res);
    }
    if (rc == PS_OK && have > SCHEMA_VERSION)
        rc = ps_error_set(err, PS_ERR_SCHEMA, -1, "",
                          "the store has schema version %d; this polysyncd knows up to %d", have,
                          SCHEMA_VERSION);
    for (int v = have; rc == PS_OK && v < SCHEMA_VERSION; v++) {
        char record[96];
        snprintf(record, sizeof record, "INSERT INTO schema_version(version) VALUES (%d)", v + 1);
        if ((rc = exec_simple(pg, "BEGIN", err, "migrating")) != PS_OK)
            break;
        if ((rc = exec_simple(pg, MIGRATIONS[v], err, "migrating")) != PS_OK ||
            (rc = exec_simple(pg, record, err, "migrating")) != PS_OK ||
            (rc = exec_simple(pg, "COMMIT", err, "migrating")) != PS_OK)
            exec_simple(pg, "ROLLBACK", NULL, "rollback");
    }
    exec_simple(pg, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", NULL, "unlocking");
    return rc;
}

/* The first connection, retried with backoff for up to wait_s seconds:
 * instances may start before their database. */
static ps_code first_connection(pg_store *s, PGconn **out, ps_error *err)
{
    int64_t give_up = ps__time_monotonic_ms() + (int64_t)s->opt.wait_s * 1000;
    int backoff_ms = 200;
    for (;;) {
        PGconn *pg = connect_db(s);
        if (!pg)
            return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        if (PQstatus(pg) == CONNECTION_OK) {
            *out = pg;
            return PS_OK;
        }
        char why[200];
        snprintf(why, sizeof why, "%s", PQerrorMessage(pg));
        why[strcspn(why, "\n")] = '\0';
        PQfinish(pg);
        int64_t now = ps__time_monotonic_ms();
        if (now >= give_up)
            return ps_error_set(
                err, PS_ERR_UNAVAILABLE, -1, "", "cannot connect to PostgreSQL%s: %s",
                s->opt.wait_s ? " (gave up waiting)" : " (--db-wait S to wait)", why);
        fprintf(stderr, "polysyncd: waiting for PostgreSQL: %s\n", why);
        struct timespec ts = {.tv_sec = backoff_ms / 1000,
                              .tv_nsec = (long)(backoff_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        backoff_ms = backoff_ms < 5000 ? backoff_ms * 2 : 5000;
    }
}

static const struct ps_store_ops PG_OPS = {
    .name = "postgres",
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .user_load = pg_user_load,
    .user_find = pg_user_find,
    .user_save = pg_user_save,
    .user_restore = pg_user_restore,
    .user_seen = pg_user_seen,
    .chat_load = pg_chat_load,
    .chat_save = pg_chat_save,
    .chat_each = pg_chat_each,
    .chat_each_after = pg_chat_each_after,
    .messages_load = pg_messages_load,
    .chat_next_changed = pg_chat_next_changed,
    .messages_since = pg_messages_since,
    .stats = pg_stats,
    .purge_tombstones = pg_purge_tombstones,
    .user_list = pg_user_list,
    .user_bytes = pg_user_bytes,
    .chat_find_sent = pg_chat_find_sent,
    .chat_set_sent = pg_chat_set_sent,
    .chat_sent_content = pg_chat_sent_content,
    .user_delete = pg_user_delete,
    .probe = pg_probe,
    .base_load = pg_base_load,
    .base_save = pg_base_save,
    .base_copy = pg_base_copy,
    .token_add = pg_token_add,
    .token_list = pg_token_list,
    .token_revoke = pg_token_revoke,
    .token_revoked_each = pg_token_revoked_each,
    .account_set = pg_account_set,
    .account_each = pg_account_each,
    .access_generation = pg_access_generation,
    .user_rename = pg_user_rename,
    .device_seen = pg_device_seen,
    .device_list = pg_device_list,
    .device_get = pg_device_get,
    .purge_acknowledged = pg_purge_acknowledged,
    .user_tombstones = pg_user_tombstones,
    .device_forget = pg_device_forget,
    .announce = pg_announce,
    .listen = pg_listen,
    .close = pg_close,
};

ps_code ps__store_pg_open(const char *url, const ps_store_options *opt, ps_store **out,
                          ps_error *err)
{
    *out = NULL;
    pg_store *s = calloc(1, sizeof *s);
    if (!s)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    s->base.ops = &PG_OPS;
    s->opt = *opt;
    s->npool = opt->pool ? opt->pool : 8;
    s->wake[0] = s->wake[1] = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->listen_lock, NULL);
    pthread_mutex_init(&s->seen_lock, NULL);
    pthread_cond_init(&s->freed, NULL);
    pthread_key_create(&s->current, NULL);
    snprintf(s->instance, sizeof s->instance, "%lx.%x", (unsigned long)getpid(),
             (unsigned)(ps__time_now_ms() ^ (int64_t)(uintptr_t)s));
    s->url = strdup(url);
    s->pool = calloc(s->npool, sizeof *s->pool);
    ps_code rc = PS_OK;
    if (!s->url || !s->pool || pipe(s->wake) != 0) {
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        goto fail;
    }
    PGconn *first = NULL;
    if ((rc = first_connection(s, &first, err)) != PS_OK)
        goto fail;
    rc = migrate(first, err);
    PQfinish(first);
    if (rc != PS_OK)
        goto fail;
    /* the pool opens its connections when first used */
    *out = &s->base;
    return PS_OK;
fail:
    pg_close(&s->base);
    return rc;
}
