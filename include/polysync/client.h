/*
 * libpolysync client API: a local store of chats that syncs with polysyncd.
 *
 * A ps_client is an opaque handle on one local store (a SQLite file). Every
 * change made through it is applied locally at once and recorded in the
 * store's change log; ps_client_sync() sends what the log holds since the
 * last successful push and applies what other devices changed (protocol v2,
 * or the legacy /sync when the server has no v2). docs/client.md explains
 * the model; docs/protocol.md the wire format.
 *
 * Memory, once for every function below:
 *   - strings and structs passed in are borrowed for the call only; the
 *     library copies what it keeps;
 *   - what a function returns through an out-pointer (char **, struct **)
 *     becomes the caller's, freed with ps_free() or the *_free() function
 *     named beside it; on failure the out-pointer is set to NULL;
 *   - a `const char *` return value belongs to the handle and lives until
 *     ps_client_close().
 * Each prototype repeats who owns what.
 *
 * Errors: functions return a ps_code (polysync/error.h) and fill the
 * optional ps_error with a human message. A sync fails with
 *   PS_ERR_IO             server unreachable after the retries (or interrupted)
 *   PS_ERR_RATE_LIMITED   still 429 after the retries (PS_ERR_TOO_MANY_REQUESTS
 *                         when the server said too_many_requests)
 *   PS_ERR_UNAUTHORIZED / PS_ERR_INVALID_TOKEN   credentials refused (401/403);
 *                         PS_ERR_TOKEN_REVOKED / PS_ERR_USER_DISABLED when the
 *                         operator revoked the token or disabled the user
 *   PS_ERR_INVALID, PS_ERR_TOO_LARGE, PS_ERR_BODY_TOO_LARGE, PS_ERR_ENCODING,
 *   PS_ERR_MEDIA_TYPE, ...   request rejected (400/413/415); PS_ERR_QUOTA (507)
 *   PS_ERR_CONFIG         a setting is wrong (no server, token file mode, ...)
 * and ps_client_last_http_status() gives the HTTP status behind it.
 *
 * Threads: a handle is used by one thread at a time. Several handles, in
 * one process or many, may share one store file; ps_client_stop() may be
 * called from any thread or from a signal handler.
 */
#ifndef POLYSYNC_CLIENT_H
#define POLYSYNC_CLIENT_H

#include "polysync/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ps_client ps_client;

/* The library's version, "MAJOR.MINOR.PATCH"; a static string. */
const char *ps_client_version(void);

/* Frees a string or buffer the library handed over (NULL is fine). */
void ps_free(void *p);

/* ---- opening a store --------------------------------------------------- */

/*
 * Opens (creating if needed, mode 0600) the local store at `path` and returns
 * a new handle in *out, the caller's, to be released with ps_client_close().
 * A device id is made on first use and kept in the store. `path` is copied.
 * PS_ERR_SCHEMA: the store was written by a newer polysync.
 */
ps_code ps_client_open(const char *path, ps_client **out, ps_error *err);

/* Closes the handle and frees everything it owns. NULL is fine. */
void ps_client_close(ps_client *c);

/* This store's device id; owned by the handle. */
const char *ps_client_device_id(const ps_client *c);

/* ---- where and how to sync ---------------------------------------------- */

/*
 * The server, "http://host:port" or "https://..." (a path prefix is kept).
 * Copied. PS_ERR_CONFIG for another scheme. Plain http:// is refused for a
 * host other than loopback while a token is set, unless
 * ps_client_allow_plain_http() was called: the token would travel in clear.
 */
ps_code ps_client_set_server(ps_client *c, const char *url, ps_error *err);

/* The bearer token sent as "Authorization: Bearer T"; copied; NULL clears. */
ps_code ps_client_set_token(ps_client *c, const char *token, ps_error *err);

/*
 * Reads the token from the first line of `path` (copied). The file must be a
 * regular file readable by its owner only (mode 0600 or 0400):
 * PS_ERR_CONFIG otherwise, naming the mode found.
 */
ps_code ps_client_set_token_file(ps_client *c, const char *path, ps_error *err);

/* A CA bundle (PEM) to verify the server with instead of the system's;
 * `path` is copied. Certificates are always verified. */
ps_code ps_client_set_cacert(ps_client *c, const char *path, ps_error *err);

/* Allows a token over plain http:// to a non-loopback host. */
void ps_client_allow_plain_http(ps_client *c, bool allow);

/*
 * Retries: a request that fails to connect, times out or is answered
 * 429/500/502/503/504 is tried again up to max_attempts times in all, after
 * base_delay_ms * 2^n with jitter (half to all of it), at most max_delay_ms;
 * a Retry-After header on 429/503 is honoured, up to max_retry_after_s.
 * timeout_s bounds each request's connection and stalls (not its length).
 */
typedef struct ps_retry_policy {
    unsigned max_attempts;      /* default 6; 1 = no retry */
    unsigned base_delay_ms;     /* default 500 */
    unsigned max_delay_ms;      /* default 30000 */
    unsigned max_retry_after_s; /* default 120 */
    unsigned timeout_s;         /* default 30 */
} ps_retry_policy;

/* Fills *out with the defaults above. */
void ps_retry_policy_default(ps_retry_policy *out);
/* Copies *policy into the handle; zero fields take the default. */
void ps_client_set_retry(ps_client *c, const ps_retry_policy *policy);

/* ---- changing chats ------------------------------------------------------ */

/*
 * Creates a chat titled `title` (copied). *id_out: the new chat's id, a
 * string the caller frees with ps_free().
 */
ps_code ps_client_chat_create(ps_client *c, const char *title, char **id_out, ps_error *err);

/* Sets the title of a live chat. Strings borrowed. PS_ERR_NOT_FOUND if no
 * live chat has that id. */
ps_code ps_client_chat_rename(ps_client *c, const char *chat_id, const char *title, ps_error *err);

/* Archives (true) or unarchives (false) a live chat. `chat_id` borrowed. */
ps_code ps_client_chat_archive(ps_client *c, const char *chat_id, bool archived, ps_error *err);

/* Deletes a chat on every device (a tombstone). `chat_id` borrowed. */
ps_code ps_client_chat_delete(ps_client *c, const char *chat_id, ps_error *err);

/*
 * Adds a message (`role` "user" or "assistant", `content` UTF-8) to a live
 * chat. Strings borrowed. *id_out: the new message id, for ps_free().
 */
ps_code ps_client_msg_add(ps_client *c, const char *chat_id, const char *role, const char *content,
                          char **id_out, ps_error *err);

/* Replaces a message's content. Strings borrowed. */
ps_code ps_client_msg_edit(ps_client *c, const char *chat_id, const char *msg_id,
                           const char *content, ps_error *err);

/* Deletes one message on every device. Strings borrowed. */
ps_code ps_client_msg_delete(ps_client *c, const char *chat_id, const char *msg_id, ps_error *err);

/* ---- reading chats -------------------------------------------------------- */

typedef struct ps_chat_info {
    char *id;    /* owned by the list */
    char *title; /* owned by the list; NULL when the chat has none */
    bool archived;
    size_t message_count; /* live messages */
    int64_t created_ms;   /* ms since the epoch; 0 when unknown */
    int64_t updated_ms;
} ps_chat_info;

/*
 * The live chats, most recently updated first. *list_out is an array of
 * *count_out entries, the caller's, freed with ps_chat_info_free().
 */
ps_code ps_client_chat_list(ps_client *c, ps_chat_info **list_out, size_t *count_out,
                            ps_error *err);
void ps_chat_info_free(ps_chat_info *list, size_t count);

typedef struct ps_message_info {
    char *id;      /* owned by the chat detail */
    char *role;    /* owned; "" when absent */
    char *content; /* owned; a non-string content as its JSON text */
    int64_t timestamp_ms;
} ps_message_info;

typedef struct ps_chat_detail {
    ps_chat_info info;
    ps_message_info *messages; /* info.message_count entries, in display order */
} ps_chat_detail;

/* One live chat with its messages; *out is the caller's, freed with
 * ps_chat_detail_free(). `chat_id` borrowed. */
ps_code ps_client_chat_get(ps_client *c, const char *chat_id, ps_chat_detail **out, ps_error *err);
void ps_chat_detail_free(ps_chat_detail *detail);

/*
 * One live chat as the Polyglot client sees it (JSON object with its
 * messages and updatedAtLamport). *json_out: a NUL-terminated string for
 * ps_free().
 */
ps_code ps_client_chat_json(ps_client *c, const char *chat_id, char **json_out, ps_error *err);

/* ---- import and export ----------------------------------------------------- */

/*
 * Every live chat as a JSON array of legacy chats, which the Polyglot client
 * loads. *json_out (NUL-terminated, *len_out bytes without the NUL) is the
 * caller's, for ps_free().
 */
ps_code ps_client_export(ps_client *c, char **json_out, size_t *len_out, ps_error *err);

typedef struct ps_import_report {
    size_t chats_imported;
    size_t messages_imported;
    size_t private_dropped; /* isPrivate messages: never stored nor sent */
    size_t skipped_count;   /* chats refused */
    size_t reason_count;    /* entries in `reasons`: one per skipped chat, up to
                             * 1000; the last then says how many more */
    char **reasons;         /* human reasons, owned by the report */
} ps_import_report;

/*
 * Imports `len` bytes of JSON (borrowed): a Polyglot export (an array of
 * chats), or a chatStore.json (an array, or {"chats": {id: chat, ...}} or
 * {"chats": [...]}). Every chat is validated as the server would; invalid
 * ones are skipped and named in the report. Imported content is stamped
 * with the chats' own times and no Lamport counter, so it fills in what a
 * server lacks and never overrides an edit made on a device since
 * (docs/client.md). *report_out is the caller's (ps_import_report_free),
 * set also when the file as a whole is refused (PS_ERR_INVALID, ...).
 */
ps_code ps_client_import(ps_client *c, const char *json, size_t len, ps_import_report **report_out,
                         ps_error *err);
void ps_import_report_free(ps_import_report *report);

/* ---- sync ---------------------------------------------------------------- */

typedef struct ps_sync_stats {
    const char *protocol; /* "v2" or "legacy"; static */
    size_t changes_total; /* local changes to send, when known */
    size_t changes_sent;  /* acknowledged by the server */
    size_t chats_sent, messages_sent;
    size_t chats_received, messages_received, deletions_received;
    size_t requests, retries, pages;
    bool full_resync;                    /* the cursor was dropped (410) and all chats sent */
    uint64_t bytes_sent, bytes_received; /* on the wire (compressed) */
    int64_t elapsed_ms;
    /* within the current request: bytes of the body sent so far / total */
    uint64_t upload_now, upload_total;
} ps_sync_stats;

/*
 * Called during a sync after each request and while large bodies move (at
 * most ~10 times a second). `now` is valid for the call only.
 */
typedef void (*ps_progress_fn)(const ps_sync_stats *now, void *userdata);

/* Installs (NULL removes) the progress callback; `userdata` is borrowed. */
void ps_client_set_progress(ps_client *c, ps_progress_fn fn, void *userdata);

/*
 * Pushes the local changes not yet acknowledged and pulls what changed
 * elsewhere, page by page, until both are done. A sync that fails part-way
 * leaves the store consistent; running it again is safe and completes.
 * `stats` (optional) is filled even on failure. Only one sync runs per
 * store at a time: a second one waits for the first.
 */
ps_code ps_client_sync(ps_client *c, ps_sync_stats *stats, ps_error *err);

/* The HTTP status behind the last failure of a sync (0: none or no answer). */
int ps_client_last_http_status(const ps_client *c);

/* Local changes not yet acknowledged by the server. */
ps_code ps_client_pending(ps_client *c, size_t *count_out, ps_error *err);

/* ---- watch ---------------------------------------------------------------- */

typedef enum ps_watch_kind {
    PS_WATCH_SYNCED = 0,      /* a sync finished; stats set */
    PS_WATCH_SYNC_FAILED = 1, /* a sync failed; rc, err, stats set; watch goes on */
    PS_WATCH_LIVE_ON = 2,     /* the live channel (GET /v2/events) is connected */
    PS_WATCH_LIVE_OFF = 3,    /* it dropped; reconnecting, with the interval meanwhile */
    PS_WATCH_LIVE_NONE = 4,   /* the server has none (404): interval only */
} ps_watch_kind;

typedef struct ps_watch_event {
    ps_watch_kind kind;
    const char *reason; /* why the sync ran: "start", "interval", "live", "local"; static */
    ps_code rc;
    const ps_sync_stats *stats; /* valid for the call */
    const ps_error *err;        /* valid for the call */
} ps_watch_event;

typedef void (*ps_watch_fn)(const ps_watch_event *ev, void *userdata);

/*
 * Syncs now, then every `interval_s` seconds (0: 60), whenever the server's
 * live channel says something changed, and within half a second of a local
 * change made through any handle on this store. Returns PS_OK after
 * ps_client_stop(); returns early only when the server refuses the
 * credentials (PS_ERR_UNAUTHORIZED, PS_ERR_INVALID_TOKEN) or a setting is
 * wrong (PS_ERR_CONFIG). A failed sync is reported to `on_event` and tried
 * again at the next occasion. `on_event` (may be NULL) and `userdata` are
 * borrowed.
 */
ps_code ps_client_watch(ps_client *c, unsigned interval_s, ps_watch_fn on_event, void *userdata,
                        ps_error *err);

/*
 * Ends ps_client_watch() and interrupts a sync in progress (it stops at a
 * consistent point and returns PS_ERR_IO "interrupted"). Async-signal-safe.
 * It stays in effect: later syncs on this handle return at once, so the
 * handle is then only to be closed (local changes still work).
 */
void ps_client_stop(ps_client *c);

/* ---- saved settings and state------------------------------ */

/*
 * Settings kept in the store itself (the file is mode 0600), so a person
 * says once where to sync (`polysync login`). Keys: "server", "token" (the
 * token itself), "token_file" (a path, read at each use with the checks of
 * ps_client_set_token_file), "cacert". The library does not apply them by
 * itself: an app reads them and calls the setters, so its own flags and
 * environment can win. ps_client_setting_get: *value_out is the caller's
 * (ps_free), NULL when the key was never saved. ps_client_setting_set:
 * `value` is copied; NULL forgets the key. PS_ERR_INVALID for another key.
 */
ps_code ps_client_setting_get(ps_client *c, const char *key, char **value_out, ps_error *err);
ps_code ps_client_setting_set(ps_client *c, const char *key, const char *value, ps_error *err);

typedef struct ps_client_state {
    char *cursor;           /* the v2 cursor; NULL before the first sync (owned) */
    char *cursor_server;    /* the server the cursor belongs to, or NULL (owned) */
    int64_t last_sync_ms;   /* when a sync last completed, ms since the epoch; 0 never */
    size_t pending_changes; /* local changes not yet acknowledged */
    int64_t clock;          /* the device's Lamport counter */
} ps_client_state;

/* What `polysync status` shows; *out is the caller's, ps_client_state_free(). */
ps_code ps_client_state_get(ps_client *c, ps_client_state **out, ps_error *err);
void ps_client_state_free(ps_client_state *state);

/* Whether the server knows this device (GET /v2/devices, docs/protocol.md). */
typedef enum ps_device_known {
    PS_DEVICE_UNREACHABLE, /* no server set, or no usable answer (offline, 4xx, 5xx) */
    PS_DEVICE_KNOWN,       /* listed */
    PS_DEVICE_EXPIRED,     /* listed as expired: its next sync gets 410 and resyncs */
    PS_DEVICE_UNKNOWN      /* not listed: never synced, or forgotten */
} ps_device_known;

/* Asks the server once, without retries; never fails for the server's
 * sake (no answer is PS_DEVICE_UNREACHABLE). */
ps_code ps_client_device_known(ps_client *c, ps_device_known *out, ps_error *err);
/* "known", "expired", "unknown", "unreachable". */
const char *ps_client_device_known_name(ps_device_known k);

/* ---- what a person may want to see while it works--------- */

/* A request failed and will be tried again after `delay_ms`. */
typedef struct ps_retry_info {
    unsigned attempt;      /* the attempt that failed, 1-based */
    unsigned max_attempts; /* the policy's */
    unsigned delay_ms;     /* the wait before attempt + 1 */
    const char *reason;    /* "connection refused", "HTTP 503: ...": valid for the call */
} ps_retry_info;
typedef void (*ps_retry_fn)(const ps_retry_info *info, void *userdata);
/* Installs (NULL removes) the retry callback; `userdata` is borrowed. */
void ps_client_set_retry_notify(ps_client *c, ps_retry_fn fn, void *userdata);

typedef enum ps_transfer_phase {
    PS_TRANSFER_SENDING = 0,   /* the request body is going out */
    PS_TRANSFER_WAITING = 1,   /* all sent, the server is working (merging) */
    PS_TRANSFER_RECEIVING = 2, /* the answer is coming in */
} ps_transfer_phase;

/* One request of a sync, while it moves (at most ~10 calls a second). */
typedef struct ps_transfer_info {
    ps_transfer_phase phase;
    uint64_t sent, send_total;        /* body bytes on the wire (compressed) */
    uint64_t received, receive_total; /* receive_total 0 when not announced */
    int64_t elapsed_ms;               /* since this request started */
    const ps_sync_stats *stats;       /* the sync so far; valid for the call */
} ps_transfer_info;
typedef void (*ps_transfer_fn)(const ps_transfer_info *info, void *userdata);
/* Installs (NULL removes) the transfer callback; `userdata` is borrowed.
 * While it is installed, it replaces the progress callback's calls during
 * a transfer (the progress callback is still called after each request). */
void ps_client_set_transfer_progress(ps_client *c, ps_transfer_fn fn, void *userdata);

/*
 * Long local work: ps_client_import ("parsing" 0/1, then "importing" chats
 * done/total, then "saving"), ps_client_export ("exporting" chats
 * done/total). `phase` is static. At most ~10 calls a second, plus the
 * first and last of each phase.
 */
typedef void (*ps_work_fn)(const char *phase, size_t done, size_t total, void *userdata);
/* Installs (NULL removes) the work callback; `userdata` is borrowed. */
void ps_client_set_work_progress(ps_client *c, ps_work_fn fn, void *userdata);

#ifdef __cplusplus
}
#endif
#endif
