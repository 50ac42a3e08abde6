/*
 * The client handle and local changes. Every change to a chat is built as
 * the v2 change it will be sent as, checked by the server's validator, turned
 * into registers by the server's codec (ps__chat_from_change) and merged by
 * the server's merge, all in one store transaction with its log entry: what
 * the device shows is exactly what the server will compute from the log.
 */
#include "client/client_internal.h"
#include "core/chat_codec.h"
#include "core/dynbuf.h"
#include "core/json_build.h"
#include "core/json_parse.h"
#include "core/merge.h"
#include "core/timestamp.h"
#include "core/validate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PS_VERSION
#define PS_VERSION "0.0.0"
#endif

const char *ps_client_version(void)
{
    return PS_VERSION;
}

void ps_free(void *p)
{
    free(p);
}

static void fill_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t got = getrandom(p, n, 0);
        if (got <= 0) {
            if (got < 0 && errno == EINTR)
                continue;
            /* No entropy source at all: fall back to time and pid. */
            uint64_t x = (uint64_t)ps__time_now_ms() ^ ((uint64_t)getpid() << 32);
            for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p[i] = (unsigned char)x;
            }
            return;
        }
        p += got;
        n -= (size_t)got;
    }
}

void ps__uuid(char out[37])
{
    unsigned char b[16];
    fill_random(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

uint64_t ps__random(ps_client *c)
{
    uint64_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return x;
}

void ps_retry_policy_default(ps_retry_policy *out)
{
    *out = (ps_retry_policy){.max_attempts = 6,
                             .base_delay_ms = 500,
                             .max_delay_ms = 30000,
                             .max_retry_after_s = 120,
                             .timeout_s = 30};
}

void ps_client_set_retry(ps_client *c, const ps_retry_policy *p)
{
    ps_retry_policy d;
    ps_retry_policy_default(&d);
    c->retry.max_attempts = p->max_attempts ? p->max_attempts : d.max_attempts;
    c->retry.base_delay_ms = p->base_delay_ms ? p->base_delay_ms : d.base_delay_ms;
    c->retry.max_delay_ms = p->max_delay_ms ? p->max_delay_ms : d.max_delay_ms;
    c->retry.max_retry_after_s = p->max_retry_after_s ? p->max_retry_after_s : d.max_retry_after_s;
    c->retry.timeout_s = p->timeout_s ? p->timeout_s : d.timeout_s;
}

/* ---- open / close ---- */

static ps_code ensure_device(ps_client *c, ps_error *err)
{
    ps_code rc = ps__lstore_begin(c->store, err);
    if (rc != PS_OK)
        return rc;
    rc = ps__lstore_meta_get(c->store, "device_id", &c->device, err);
    if (rc == PS_OK && !c->device) {
        char id[37];
        ps__uuid(id);
        rc = ps__lstore_meta_set(c->store, "device_id", id, err);
        if (rc == PS_OK && !(c->device = strdup(id)))
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    if (rc == PS_OK)
        return ps__lstore_commit(c->store, err);
    ps__lstore_rollback(c->store);
    return rc;
}

ps_code ps_client_open(const char *path, ps_client **out, ps_error *err)
{
    *out = NULL;
    if (!path || !*path)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "no store path");
    ps_client *c = calloc(1, sizeof *c);
    if (!c)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    c->stop_pipe[0] = c->stop_pipe[1] = -1;
    c->sock = -1;
    ps_retry_policy_default(&c->retry);
    fill_random(&c->rng, sizeof c->rng);
    c->rng |= 1;
    ps_code rc = PS_OK;
    if (!(c->path = strdup(path)))
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    else if (pipe2(c->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        rc = ps_error_set(err, PS_ERR_IO, -1, "", "pipe: %s", strerror(errno));
    if (rc == PS_OK)
        rc = ps__lstore_open(path, &c->store, err);
    if (rc == PS_OK)
        rc = ensure_device(c, err);
    if (rc != PS_OK) {
        ps_client_close(c);
        return rc;
    }
    *out = c;
    return PS_OK;
}

void ps__http_cleanup(ps_client *c); /* http.c */

void ps_client_close(ps_client *c)
{
    if (!c)
        return;
    ps__http_cleanup(c);
    ps__lstore_close(c->store);
    for (int i = 0; i < 2; i++)
        if (c->stop_pipe[i] >= 0)
            close(c->stop_pipe[i]);
    free(c->path);
    free(c->device);
    free(c->server);
    free(c->caps_server);
    free(c->token);
    free(c->cacert);
    free(c);
}

const char *ps_client_device_id(const ps_client *c)
{
    return c->device;
}

/* a signal handler may only touch lock-free atomics (C11 7.14.1.1) */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "ps_client_stop needs a lock-free atomic int");

void ps_client_stop(ps_client *c)
{
    atomic_store(&c->stop, 1);
    if (c->stop_pipe[1] >= 0) {
        ssize_t r = write(c->stop_pipe[1], "x", 1);
        (void)r; /* full pipe: a stop is already pending */
    }
}

void ps_client_set_progress(ps_client *c, ps_progress_fn fn, void *userdata)
{
    c->progress = fn;
    c->progress_ud = userdata;
}

int ps_client_last_http_status(const ps_client *c)
{
    return c->last_status;
}

/* ---- settings ---- */

static ps_code replace_string(char **slot, const char *value, ps_error *err)
{
    char *copy = NULL;
    if (value && !(copy = strdup(value)))
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    free(*slot);
    *slot = copy;
    return PS_OK;
}

ps_code ps_client_set_server(ps_client *c, const char *url, ps_error *err)
{
    if (!url || !*url)
        return replace_string(&c->server, NULL, err);
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "server",
                            "the server URL must start with http:// or https://, not '%s'", url);
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return ps_error_set(err, PS_ERR_CONFIG, -1, "server",
                                "the server URL contains a space or control character");
    ps_code rc = replace_string(&c->server, url, err);
    size_t n = c->server ? strlen(c->server) : 0;
    while (rc == PS_OK && n > 8 && c->server[n - 1] == '/')
        c->server[--n] = '\0';
    return rc;
}

static bool token_ok(const char *t)
{
    if (!*t)
        return false;
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        if (*p <= ' ' || *p >= 0x7f) /* it goes in a header line */
            return false;
    return true;
}

ps_code ps_client_set_token(ps_client *c, const char *token, ps_error *err)
{
    if (token && !token_ok(token))
        return ps_error_set(err, PS_ERR_CONFIG, -1, "token",
                            "the token must be printable ASCII without spaces");
    return replace_string(&c->token, token, err);
}

ps_code ps_client_set_token_file(ps_client *c, const char *path, ps_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "token-file", "cannot open token file %s: %s",
                            path, strerror(errno));
    struct stat stt;
    ps_code rc = PS_OK;
    char buf[8192];
    ssize_t got = 0;
    if (fstat(fd, &stt) != 0) {
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "token-file", "cannot stat %s: %s", path,
                          strerror(errno));
    } else if (!S_ISREG(stt.st_mode)) {
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "token-file", "%s is not a regular file", path);
    } else if (stt.st_mode & 077) {
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "token-file",
                          "token file %s has mode %04o: others could read the token; "
                          "run chmod 600 %s",
                          path, (unsigned)(stt.st_mode & 07777), path);
    } else if (stt.st_uid != geteuid()) {
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "token-file",
                          "token file %s belongs to another user", path);
    } else if ((got = read(fd, buf, sizeof buf - 1)) < 0) {
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "token-file", "cannot read %s: %s", path,
                          strerror(errno));
    }
    close(fd);
    if (rc != PS_OK)
        return rc;
    buf[got] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    char *start = buf;
    while (*start == ' ' || *start == '\t')
        start++;
    size_t n = strlen(start);
    while (n && (start[n - 1] == ' ' || start[n - 1] == '\t'))
        start[--n] = '\0';
    if (!*start)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "token-file", "token file %s is empty", path);
    rc = ps_client_set_token(c, start, err);
    memset(buf, 0, sizeof buf);
    return rc;
}

ps_code ps_client_set_cacert(ps_client *c, const char *path, ps_error *err)
{
    if (path && access(path, R_OK) != 0)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "cacert", "cannot read CA file %s: %s", path,
                            strerror(errno));
    return replace_string(&c->cacert, path, err);
}

void ps_client_allow_plain_http(ps_client *c, bool allow)
{
    c->allow_plain_http = allow;
}

/* ---- applying changes ---- */

ps_code ps__validate_change(json_object *change, const char *device, ps_error *err)
{
    json_object *req = json_object_new_object();
    json_object *list = json_object_new_array_ext(1);
    ps_code rc = req ? PS_OK : PS_ERR_NOMEM;
    ps__json_set(&rc, req, "deviceId", json_object_new_string(device));
    ps__json_push(&rc, list, json_object_get(change));
    ps__json_set(&rc, req, "changes", list);
    if (rc != PS_OK) {
        json_object_put(req);
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
    ps_limits lim = ps__limits_default();
    rc = ps__validate_v2_request(req, &lim, err);
    json_object_put(req);
    return rc;
}

ps_code ps__tick(ps_client *c, int64_t *clock, ps_error *err)
{
    int64_t now;
    ps_code rc = ps__lstore_meta_int(c->store, "clock", 0, &now, err);
    if (rc != PS_OK)
        return rc;
    if (now >= PS_MAX_COUNTER)
        return ps_error_set(err, PS_ERR_INVALID, -1, "", "the Lamport clock is exhausted");
    *clock = now + 1;
    return ps__lstore_meta_set_int(c->store, "clock", *clock, err);
}

/* Ids of the messages a change names, for loading only those. */
static const char **named_messages(json_object *change, size_t *n)
{
    json_object *msgs = NULL, *dels = NULL;
    json_object_object_get_ex(change, "messages", &msgs);
    json_object_object_get_ex(change, "deleteMessages", &dels);
    size_t a = msgs ? json_object_array_length(msgs) : 0;
    size_t b = dels ? json_object_array_length(dels) : 0;
    const char **ids = calloc(a + b + 1, sizeof *ids);
    if (!ids)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < a; i++)
        ids[k++] = json_object_get_string(
            json_object_object_get(json_object_array_get_idx(msgs, i), "id"));
    for (size_t i = 0; i < b; i++)
        ids[k++] = json_object_get_string(json_object_array_get_idx(dels, i));
    *n = k;
    return ids;
}

/* The values a change may alter, held before the merge, to tell afterwards
 * what a person would see differ (not just stamps). */
typedef struct before_merge {
    bool live;
    json_object **fields, **messages; /* one reference each, by incoming's order */
} before_merge;

static bool before_take(before_merge *b, const ps_chat *chat, const ps_chat *incoming)
{
    b->live = chat->stored && ps__chat_is_live(chat);
    b->fields = calloc(incoming->nfields + 1, sizeof *b->fields);
    b->messages = calloc(incoming->nmessages + 1, sizeof *b->messages);
    if (!b->fields || !b->messages)
        return false;
    for (size_t i = 0; i < incoming->nfields; i++) {
        const ps_field *f = ps__chat_field(chat, incoming->fields[i].name);
        b->fields[i] = f ? json_object_get(f->value) : NULL;
    }
    for (size_t i = 0; i < incoming->nmessages; i++) {
        const ps_message *m = ps__chat_message(chat, incoming->messages[i].id);
        b->messages[i] = m ? json_object_get(m->value) : NULL;
    }
    return true;
}

static void before_compare(const before_merge *b, const ps_chat *chat, const ps_chat *incoming,
                           ps_apply_effect *eff)
{
    bool live = ps__chat_is_live(chat);
    eff->was_live = b->live;
    eff->chat_changed = live != b->live;
    for (size_t i = 0; i < incoming->nfields; i++) {
        const ps_field *f = ps__chat_field(chat, incoming->fields[i].name);
        if (!json_object_equal(b->fields[i], f ? f->value : NULL))
            eff->chat_changed = true;
    }
    for (size_t i = 0; i < incoming->nmessages; i++) {
        const ps_message *m = ps__chat_message(chat, incoming->messages[i].id);
        json_object *now = m ? m->value : NULL;
        if (!json_object_equal(b->messages[i], now)) {
            eff->chat_changed = true;
            eff->messages_changed += now != NULL;
        }
    }
}

static void before_free(before_merge *b, const ps_chat *incoming)
{
    for (size_t i = 0; b->fields && i < incoming->nfields; i++)
        json_object_put(b->fields[i]);
    for (size_t i = 0; b->messages && i < incoming->nmessages; i++)
        json_object_put(b->messages[i]);
    free(b->fields);
    free(b->messages);
}

ps_code ps__apply_change(ps_client *c, json_object *change, const char *writer,
                         const ps_lamport *tuple, ps_error *err)
{
    return ps__apply_change_ex(c, change, writer, tuple, NULL, err);
}

ps_code ps__apply_change_ex(ps_client *c, json_object *change, const char *writer,
                            const ps_lamport *tuple, ps_apply_effect *eff, ps_error *err)
{
    ps_chat *chat = NULL, *incoming = NULL;
    size_t n = 0;
    const char **ids = named_messages(change, &n);
    const char *chat_id = json_object_get_string(json_object_object_get(change, "chatId"));
    before_merge before = {0};
    if (eff)
        memset(eff, 0, sizeof *eff);
    if (!ids)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    ps_code rc = ps__lstore_chat_load(c->store, chat_id, false, ids, n, &chat, err);
    if (rc == PS_OK && !chat && !(chat = ps__chat_new(chat_id)))
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    ps_ingest in = {.device = writer, .now_ms = ps__time_now_ms(), .max_skew_ms = PS_LOCAL_SKEW_MS};
    if (rc == PS_OK && ps__chat_from_change(change, &in, &incoming) != PS_OK)
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (rc == PS_OK && eff && !before_take(&before, chat, incoming))
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    bool changed = false;
    if (rc == PS_OK && ps__chat_merge(chat, incoming, &changed) != PS_OK)
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (rc == PS_OK && eff)
        before_compare(&before, chat, incoming, eff);
    if (rc == PS_OK && tuple && tuple->counter && ps__lamport_cmp(tuple, &chat->lamport) > 0) {
        if (ps__lamport_set(&chat->lamport, tuple->counter, tuple->id) != PS_OK)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        changed = true;
    }
    if (rc == PS_OK && (changed || !chat->stored))
        rc = ps__lstore_chat_save(c->store, chat, err);
    if (incoming)
        before_free(&before, incoming);
    free(ids);
    ps__chat_free(incoming);
    ps__chat_free(chat);
    return rc;
}

/* One local edit, from the loaded chat to the log. */
typedef struct local_op {
    ps_client *c;
    const char *chat_id;
    const char *msg_id; /* the message the op needs, or NULL */
    ps_chat *chat;      /* loaded, or NULL when there is none */
    json_object *change;
    ps_code built; /* PS_ERR_NOMEM once building the change lost a piece */
    int64_t clock;
    char at[32];
} local_op;

static ps_code op_begin(local_op *op, ps_client *c, const char *chat_id, const char *msg_id,
                        bool must_exist, ps_error *err)
{
    memset(op, 0, sizeof *op);
    op->c = c;
    op->chat_id = chat_id;
    op->msg_id = msg_id;
    if (!chat_id || !*chat_id)
        return ps_error_set(err, PS_ERR_INVALID, -1, "chatId", "no chat id");
    ps_code rc = ps__lstore_begin(c->store, err);
    if (rc != PS_OK)
        return rc;
    rc = ps__lstore_chat_load(c->store, chat_id, false, &msg_id, msg_id ? 1 : 0, &op->chat, err);
    if (rc == PS_OK && must_exist && (!op->chat || !ps__chat_is_live(op->chat)))
        rc = ps_error_set(err, PS_ERR_NOT_FOUND, -1, "chatId", "no chat %s", chat_id);
    if (rc == PS_OK && msg_id) {
        const ps_message *m = ps__chat_message(op->chat, msg_id);
        if (!m || !m->value)
            rc = ps_error_set(err, PS_ERR_NOT_FOUND, -1, "messageId", "no message %s in chat %s",
                              msg_id, chat_id);
    }
    if (rc == PS_OK)
        rc = ps__tick(c, &op->clock, err);
    if (rc == PS_OK && !(op->change = json_object_new_object()))
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (rc != PS_OK) {
        ps__lstore_rollback(c->store);
        ps__chat_free(op->chat);
        op->chat = NULL;
        return rc;
    }
    ps__time_format_iso(ps__time_now_ms(), op->at);
    ps__json_set(&op->built, op->change, "chatId", json_object_new_string(chat_id));
    ps__json_set(&op->built, op->change, "clock", json_object_new_int64(op->clock));
    ps__json_set(&op->built, op->change, "at", json_object_new_string(op->at));
    return PS_OK;
}

/* Sets change[key] = value (the sticky op->built records a failure). */
static void op_set(local_op *op, const char *key, json_object *value)
{
    ps__json_set(&op->built, op->change, key, value);
}

/* The change's `fields` object, created on first use (NULL, with
 * op->built set, when that failed: the ps__json_* calls then add nothing). */
static json_object *op_fields(local_op *op)
{
    json_object *f;
    if (json_object_object_get_ex(op->change, "fields", &f))
        return f;
    f = json_object_new_object();
    op_set(op, "fields", f);
    return op->built == PS_OK ? f : NULL;
}

/* fields[key] = value. */
static void op_field(local_op *op, const char *key, json_object *value)
{
    ps__json_set(&op->built, op_fields(op), key, value);
}

static ps_code op_finish(local_op *op, ps_code rc, ps_error *err)
{
    ps_client *c = op->c;
    /* A change missing a piece it was built with is never logged or sent. */
    if (rc == PS_OK && op->built != PS_OK)
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (rc == PS_OK)
        rc = ps__validate_change(op->change, c->device, err);
    if (rc == PS_OK) {
        /* What the server's strict parser would refuse (bad UTF-8 from the
         * caller's strings) must not reach the log, or it blocks every sync. */
        size_t len;
        const char *text = ps__json_text(op->change, &len);
        json_object *back = NULL;
        ps_error perr;
        if (!text)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        else if ((rc = ps__json_parse(text, len, PS_JSON_MAX_DEPTH, &back, &perr)) != PS_OK)
            ps_error_set(err, rc, -1, "", "%s",
                         rc == PS_ERR_UTF8 ? "the text is not valid UTF-8" : perr.message);
        json_object_put(back);
    }
    ps_lamport tuple = {.counter = op->clock, .id = c->device};
    if (rc == PS_OK)
        rc = ps__apply_change(c, op->change, c->device, &tuple, err);
    if (rc == PS_OK)
        rc = ps__lstore_change_add(c->store, op->chat_id, PS_CHANGE_LOCAL, op->clock, op->change,
                                   err);
    if (rc == PS_OK)
        rc = ps__lstore_commit(c->store, err);
    else
        ps__lstore_rollback(c->store);
    json_object_put(op->change);
    ps__chat_free(op->chat);
    return rc;
}

static ps_code check_text(const char *what, const char *s, ps_error *err)
{
    if (!s)
        return ps_error_set(err, PS_ERR_INVALID, -1, what, "%s is required", what);
    return PS_OK;
}

ps_code ps_client_chat_create(ps_client *c, const char *title, char **id_out, ps_error *err)
{
    *id_out = NULL;
    char id[37];
    ps__uuid(id);
    local_op op;
    ps_code rc = check_text("title", title, err);
    if (rc == PS_OK)
        rc = op_begin(&op, c, id, NULL, false, err);
    if (rc != PS_OK)
        return rc;
    op_field(&op, "title", json_object_new_string(title));
    op_field(&op, "createdAt", json_object_new_string(op.at));
    op_field(&op, "updatedAt", json_object_new_string(op.at));
    if ((rc = op_finish(&op, PS_OK, err)) == PS_OK && !(*id_out = strdup(id)))
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    return rc;
}

ps_code ps_client_chat_rename(ps_client *c, const char *chat_id, const char *title, ps_error *err)
{
    local_op op;
    ps_code rc = check_text("title", title, err);
    if (rc == PS_OK)
        rc = op_begin(&op, c, chat_id, NULL, true, err);
    if (rc != PS_OK)
        return rc;
    op_field(&op, "title", json_object_new_string(title));
    op_field(&op, "updatedAt", json_object_new_string(op.at));
    return op_finish(&op, PS_OK, err);
}

ps_code ps_client_chat_archive(ps_client *c, const char *chat_id, bool archived, ps_error *err)
{
    local_op op;
    ps_code rc = op_begin(&op, c, chat_id, NULL, true, err);
    if (rc != PS_OK)
        return rc;
    op_field(&op, "isArchived", json_object_new_boolean(archived));
    op_field(&op, "updatedAt", json_object_new_string(op.at));
    return op_finish(&op, PS_OK, err);
}

ps_code ps_client_chat_delete(ps_client *c, const char *chat_id, ps_error *err)
{
    local_op op;
    ps_code rc = op_begin(&op, c, chat_id, NULL, true, err);
    if (rc != PS_OK)
        return rc;
    op_set(&op, "deleteChat", json_object_new_boolean(1));
    return op_finish(&op, PS_OK, err);
}

ps_code ps_client_msg_add(ps_client *c, const char *chat_id, const char *role, const char *content,
                          char **id_out, ps_error *err)
{
    *id_out = NULL;
    if (!role || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0 &&
                  strcmp(role, "system") != 0))
        return ps_error_set(err, PS_ERR_INVALID, -1, "role",
                            "role must be user, assistant or system");
    local_op op;
    ps_code rc = check_text("content", content, err);
    if (rc == PS_OK)
        rc = op_begin(&op, c, chat_id, NULL, true, err);
    if (rc != PS_OK)
        return rc;
    char id[37];
    ps__uuid(id);
    json_object *msg = json_object_new_object();
    json_object *list = json_object_new_array_ext(1);
    ps__json_set(&op.built, msg, "id", json_object_new_string(id));
    ps__json_set(&op.built, msg, "role", json_object_new_string(role));
    ps__json_set(&op.built, msg, "content", json_object_new_string(content));
    ps__json_set(&op.built, msg, "timestamp", json_object_new_string(op.at));
    ps__json_push(&op.built, list, msg);
    op_set(&op, "messages", list);
    op_field(&op, "updatedAt", json_object_new_string(op.at));
    if ((rc = op_finish(&op, PS_OK, err)) == PS_OK && !(*id_out = strdup(id)))
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    return rc;
}

ps_code ps_client_msg_edit(ps_client *c, const char *chat_id, const char *msg_id,
                           const char *content, ps_error *err)
{
    local_op op;
    ps_code rc = check_text("content", content, err);
    if (rc == PS_OK && (!msg_id || !*msg_id))
        rc = ps_error_set(err, PS_ERR_INVALID, -1, "messageId", "no message id");
    if (rc == PS_OK)
        rc = op_begin(&op, c, chat_id, msg_id, true, err);
    if (rc != PS_OK)
        return rc;
    const ps_message *m = ps__chat_message(op.chat, msg_id);
    json_object *msg = NULL;
    if (json_object_deep_copy(m->value, &msg, NULL) != 0 || !msg) {
        json_object_put(msg);
        return op_finish(&op, ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory"), err);
    }
    ps__json_set(&op.built, msg, "content", json_object_new_string(content));
    json_object *list = json_object_new_array_ext(1);
    ps__json_push(&op.built, list, msg);
    op_set(&op, "messages", list);
    op_field(&op, "updatedAt", json_object_new_string(op.at));
    return op_finish(&op, PS_OK, err);
}

ps_code ps_client_msg_delete(ps_client *c, const char *chat_id, const char *msg_id, ps_error *err)
{
    local_op op;
    ps_code rc = PS_OK;
    if (!msg_id || !*msg_id)
        rc = ps_error_set(err, PS_ERR_INVALID, -1, "messageId", "no message id");
    if (rc == PS_OK)
        rc = op_begin(&op, c, chat_id, msg_id, true, err);
    if (rc != PS_OK)
        return rc;
    json_object *list = json_object_new_array_ext(1);
    ps__json_push(&op.built, list, json_object_new_string(msg_id));
    op_set(&op, "deleteMessages", list);
    op_field(&op, "updatedAt", json_object_new_string(op.at));
    return op_finish(&op, PS_OK, err);
}

/* ---- reading ---- */

ps_code ps_client_chat_list(ps_client *c, ps_chat_info **list_out, size_t *count_out, ps_error *err)
{
    return ps__lstore_list(c->store, list_out, count_out, err);
}

void ps_chat_info_free(ps_chat_info *list, size_t count)
{
    for (size_t i = 0; list && i < count; i++) {
        free(list[i].id);
        free(list[i].title);
    }
    free(list);
}

/* The live chat as the Polyglot client sees it; *out a new object. */
static ps_code load_legacy(ps_client *c, const char *chat_id, json_object **out, ps_chat **chat_out,
                           ps_error *err)
{
    *out = NULL;
    ps_chat *chat = NULL;
    ps_code rc = ps__lstore_chat_load(c->store, chat_id, true, NULL, 0, &chat, err);
    if (rc != PS_OK)
        return rc;
    if (!chat || !ps__chat_is_live(chat)) {
        ps__chat_free(chat);
        return ps_error_set(err, PS_ERR_NOT_FOUND, -1, "chatId", "no chat %s", chat_id);
    }
    if (!(*out = ps__chat_to_legacy(chat)))
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (rc == PS_OK && !chat->lamport.counter) {
        /* Never counted (imported, not yet synced): [0, this device] is
         * still the [n, deviceId] the Polyglot app and the server expect. */
        json_object *t = json_object_new_array_ext(2);
        ps__json_push(&rc, t, json_object_new_int64(0));
        ps__json_push(&rc, t, json_object_new_string(c->device));
        ps__json_set(&rc, *out, "updatedAtLamport", t);
        if (rc != PS_OK) {
            json_object_put(*out);
            *out = NULL;
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        }
    }
    if (chat_out && rc == PS_OK)
        *chat_out = chat;
    else
        ps__chat_free(chat);
    return rc;
}

static char *string_or_json(json_object *v)
{
    if (!v)
        return strdup("");
    if (json_object_is_type(v, json_type_string))
        return strdup(json_object_get_string(v));
    const char *text = ps__json_text(v, NULL);
    return text ? strdup(text) : NULL; /* NULL: out of memory */
}

ps_code ps_client_chat_get(ps_client *c, const char *chat_id, ps_chat_detail **out, ps_error *err)
{
    *out = NULL;
    json_object *doc = NULL;
    ps_chat *chat = NULL;
    ps_code rc = load_legacy(c, chat_id, &doc, &chat, err);
    if (rc != PS_OK)
        return rc;
    json_object *msgs = json_object_object_get(doc, "messages");
    size_t n = json_object_array_length(msgs);
    ps_chat_detail *d = calloc(1, sizeof *d);
    if (d)
        d->messages = calloc(n + 1, sizeof *d->messages);
    if (!d || !d->messages) {
        free(d);
        d = NULL;
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        goto done;
    }
    d->info.message_count = n;
    d->info.id = strdup(chat->id);
    json_object *v;
    if (json_object_object_get_ex(doc, "title", &v) && json_object_is_type(v, json_type_string))
        d->info.title = strdup(json_object_get_string(v));
    d->info.archived = json_object_object_get_ex(doc, "isArchived", &v) &&
                       json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
    d->info.created_ms = chat->created_at.value ? chat->created_at.ms : 0;
    d->info.updated_ms = chat->updated_at.value ? chat->updated_at.ms : d->info.created_ms;
    if (chat->last_modified.value && chat->last_modified.ms > d->info.updated_ms)
        d->info.updated_ms = chat->last_modified.ms;
    bool oom = !d->info.id;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        ps_message_info *mi = &d->messages[i];
        mi->id = string_or_json(json_object_object_get(m, "id"));
        mi->role = string_or_json(json_object_object_get(m, "role"));
        mi->content = string_or_json(json_object_object_get(m, "content"));
        if (json_object_object_get_ex(m, "timestamp", &v))
            ps__time_from_json(v, &mi->timestamp_ms);
        oom |= !mi->id || !mi->role || !mi->content;
    }
    if (oom) {
        ps_chat_detail_free(d);
        d = NULL;
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    }
done:
    json_object_put(doc);
    ps__chat_free(chat);
    *out = d;
    return rc;
}

void ps_chat_detail_free(ps_chat_detail *d)
{
    if (!d)
        return;
    for (size_t i = 0; d->messages && i < d->info.message_count; i++) {
        free(d->messages[i].id);
        free(d->messages[i].role);
        free(d->messages[i].content);
    }
    free(d->messages);
    free(d->info.id);
    free(d->info.title);
    free(d);
}

ps_code ps_client_chat_json(ps_client *c, const char *chat_id, char **json_out, ps_error *err)
{
    *json_out = NULL;
    json_object *doc = NULL;
    ps_code rc = load_legacy(c, chat_id, &doc, NULL, err);
    if (rc != PS_OK)
        return rc;
    const char *text = ps__json_text(doc, NULL);
    if (!text || !(*json_out = strdup(text)))
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    json_object_put(doc);
    return rc;
}

ps_code ps_client_export(ps_client *c, char **json_out, size_t *len_out, ps_error *err)
{
    *json_out = NULL;
    *len_out = 0;
    json_object *ids = NULL;
    ps_code rc = ps__lstore_chat_ids(c->store, true, &ids, err);
    if (rc != PS_OK)
        return rc;
    ps_dynbuf out;
    ps__dynbuf_init(&out, (size_t)1 << 31);
    rc = ps__dynbuf_adds(&out, "[");
    size_t n = json_object_array_length(ids);
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        ps__work(c, "exporting", i, n, i == 0);
        json_object *doc = NULL;
        rc = load_legacy(c, json_object_get_string(json_object_array_get_idx(ids, i)), &doc, NULL,
                         err);
        if (rc == PS_OK) {
            size_t len;
            const char *text = ps__json_text(doc, &len);
            if (!text)
                rc = PS_ERR_NOMEM;
            else if ((rc = ps__dynbuf_adds(&out, i ? ",\n" : "\n")) == PS_OK)
                rc = ps__dynbuf_add(&out, text, len);
        }
        json_object_put(doc);
    }
    if (rc == PS_OK)
        rc = ps__dynbuf_adds(&out, n ? "\n]\n" : "]\n");
    json_object_put(ids);
    if (rc == PS_ERR_NOMEM || rc == PS_ERR_TOO_LARGE)
        ps_error_set(err, rc, -1, "", "the export does not fit in memory");
    if (rc != PS_OK) {
        ps__dynbuf_free(&out);
        return rc;
    }
    *json_out = ps__dynbuf_take(&out, len_out);
    return PS_OK;
}

ps_code ps_client_pending(ps_client *c, size_t *count_out, ps_error *err)
{
    return ps__lstore_changes_count(c->store, count_out, err);
}
