/*
 * A real SQLite store whose calls a suite counts (test_legacy_skip,
 * test_devices_poll): the store's ops copied and the counted ones wrapped,
 * so what a sync or a poll asks of the store is seen from outside it, not
 * by timing. Header-only, like test_util.h; one store at a time.
 */
#ifndef PS_COUNTING_STORE_H
#define PS_COUNTING_STORE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const struct ps_store_ops *real_ops;
static struct ps_store_ops counting_ops;
/* store_calls: every counted call (begin, chat_load, user_tombstones, device_seen);
 * write_commits: write transactions committed (a rollback writes nothing) */
static int store_calls, write_begins, write_commits, device_seens, chat_loads, tombstone_counts;
static bool in_write;         /* a write transaction is open */
static int64_t last_seen_ack; /* of the last device_seen */
/* Run once just before the next write transaction begins: another
 * request's write landing between a sync's read and write transactions. */
static void (*before_write)(void);

static inline ps_code counting_begin(ps_store *s, bool write, ps_error *err)
{
    store_calls++;
    write_begins += write;
    void (*hook)(void) = write ? before_write : NULL;
    if (hook) {
        before_write = NULL;
        hook();
    }
    ps_code rc = real_ops->begin(s, write, err);
    in_write = write && rc == PS_OK;
    return rc;
}

static inline ps_code counting_commit(ps_store *s, ps_error *err)
{
    ps_code rc = real_ops->commit(s, err);
    write_commits += in_write && rc == PS_OK;
    in_write = false;
    return rc;
}

static inline void counting_rollback(ps_store *s)
{
    in_write = false;
    real_ops->rollback(s);
}

static inline ps_code counting_chat_load(ps_store *s, int64_t user, const char *id,
                                         bool with_messages, ps_chat **out, ps_error *err)
{
    store_calls++;
    chat_loads++;
    return real_ops->chat_load(s, user, id, with_messages, out, err);
}

static inline ps_code counting_user_tombstones(ps_store *s, const char *user, int64_t *count,
                                               ps_error *err)
{
    store_calls++;
    tombstone_counts++;
    return real_ops->user_tombstones(s, user, count, err);
}

static inline ps_code counting_device_seen(ps_store *s, const char *user, const char *device,
                                           const char *client, const char *protocol,
                                           int64_t acked_seq, int64_t now_ms, ps_error *err)
{
    store_calls++;
    device_seens++;
    last_seen_ack = acked_seq;
    return real_ops->device_seen(s, user, device, client, protocol, acked_seq, now_ms, err);
}

/* A fresh SQLite store in a new folder `dir` (/tmp/ps-<tag>-XXXXXX), its
 * calls counted from zero. */
static inline ps_store *counting_store_open(char dir[64], const char *tag)
{
    snprintf(dir, 64, "/tmp/ps-%s-XXXXXX", tag);
    assert_non_null(mkdtemp(dir));
    char url[128];
    snprintf(url, sizeof url, "sqlite:%s/store.db", dir);
    ps_store *s = NULL;
    ps_error err;
    assert_int_equal(ps_store_open(url, &s, &err), PS_OK);
    real_ops = s->ops;
    counting_ops = *real_ops;
    counting_ops.begin = counting_begin;
    counting_ops.commit = counting_commit;
    counting_ops.rollback = counting_rollback;
    counting_ops.chat_load = counting_chat_load;
    counting_ops.user_tombstones = counting_user_tombstones;
    counting_ops.device_seen = counting_device_seen;
    s->ops = &counting_ops;
    store_calls = write_begins = write_commits = device_seens = chat_loads = tombstone_counts = 0;
    in_write = false;
    before_write = NULL;
    return s;
}

/* Closes the store and removes its folder. */
static inline void counting_store_close(ps_store *s, const char *dir)
{
    s->ops = real_ops;
    ps_store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

#endif
