/*
 * What the client library's files share: the handle's fields and helpers.
 * Nothing here is public; include/polysync/client.h is the API.
 */
#ifndef PS_CLIENT_INTERNAL_H
#define PS_CLIENT_INTERNAL_H

#include "client/lstore.h"
#include "core/chat.h"
#include "polysync/client.h"

#include <json-c/json.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* The device name under which the client applies what the server sends:
 * '~' sorts after every character of a UUID, so among writes with one
 * Lamport counter the server's verdict wins (docs/client.md). */
#define PS_SERVER_WRITER "~server"

/* What v2 requests send as `client` (the device registry shows it). */
#define PS_CLIENT_NAME "polysync/" PS_VERSION

/* Stamps far in the future are clamped by the server, not locally. */
#define PS_LOCAL_SKEW_MS (100LL * 365 * 86400 * 1000)

/* What the server says it does (server_caps.c); all false/0 until asked,
 * and when it says nothing. */
typedef struct ps_server_caps {
    bool asked;              /* GET /health was tried during this sync (or answered before) */
    bool said;               /* its answer has a `capabilities` list */
    bool lost_writes_resent; /* "lostWritesResent": no verification pull needed */
    bool named_deletions;    /* "firstPullNamedDeletions": probes are answered */
    size_t max_changes;      /* `maxChanges`: changes per request; 0 = not said */
} ps_server_caps;

struct ps_client {
    char *path;
    char *device;
    ps_lstore *store;
    char *server; /* base URL, no trailing slash; NULL = none */
    char *token;
    char *cacert;
    bool allow_plain_http;
    bool no_gzip; /* the server refused a gzip body once (415) */
    ps_retry_policy retry;
    ps_progress_fn progress;
    void *progress_ud;
    ps_retry_fn on_retry; /* what a person sees while it works */
    void *on_retry_ud;
    ps_transfer_fn on_transfer;
    void *on_transfer_ud;
    ps_work_fn on_work;
    void *on_work_ud;
    int64_t work_last_ms; /* monotonic time of the last work call */
    int last_status;
    void *curl; /* CURL *, kept for connection reuse */
    int sock;   /* its connection's socket, -1 before one (for upload progress) */
    uint64_t rng;
    /* set by ps_client_stop() (any thread, a signal handler), read by the
     * sync's threads (its pull-ahead one too): a lock-free atomic, which is
     * async-signal-safe, where volatile sig_atomic_t is a data race between
     * threads */
    atomic_int stop;
    int stop_pipe[2]; /* ps_client_stop() writes a byte to [1] */
    /* What caps_server answered to GET /health, kept for the handle's later
     * syncs (a `watch`) while the server stays the same (server_caps.c). */
    ps_server_caps caps;
    char *caps_server;
};

/* A fresh random UUID v4, lowercase, into out[37]. */
void ps__uuid(char out[37]);
/* A random 64-bit number (xorshift seeded from the OS). */
uint64_t ps__random(ps_client *c);

/*
 * Applies one v2 change to the local store as written by `writer` (this
 * device, or PS_SERVER_WRITER for what the server sends): loads the chat
 * with the messages the change names, merges the change's registers in
 * with ps__chat_merge, raises the chat's Lamport tuple to `tuple` (may be
 * NULL) and saves. Must run inside a transaction. `change` is borrowed.
 */
ps_code ps__apply_change(ps_client *c, json_object *change, const char *writer,
                         const ps_lamport *tuple, ps_error *err);

/* What applying a change altered that a person would see: liveness, a
 * field's value, a message's content (stamps alone do not count). */
typedef struct ps_apply_effect {
    bool was_live;           /* the chat was live here before */
    bool chat_changed;       /* liveness, a field or a message differs */
    size_t messages_changed; /* messages new or with new content (not deletions) */
} ps_apply_effect;

/* ps__apply_change, also filling *eff (may be NULL). */
ps_code ps__apply_change_ex(ps_client *c, json_object *change, const char *writer,
                            const ps_lamport *tuple, ps_apply_effect *eff, ps_error *err);

/* Checks one change as the server will (ps__validate_v2_request). */
ps_code ps__validate_change(json_object *change, const char *device, ps_error *err);

/* The next Lamport counter of this device (inside a transaction). */
ps_code ps__tick(ps_client *c, int64_t *clock, ps_error *err);

/*
 * Calls the work callback for `phase` (done of total), at most ~10 times a
 * second unless `force` (the first and last call of a phase).
 */
void ps__work(ps_client *c, const char *phase, size_t done, size_t total, bool force);

/* Whether stop was asked. */
static inline bool ps__stopped(const ps_client *c)
{
    return atomic_load(&c->stop) != 0;
}

#endif
