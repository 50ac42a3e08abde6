/*
 * A legacy body taken chat by chat; see legacy_body.h. The splitter's sink
 * lands here: envelope bytes in a capped buffer, chat bytes in the spool,
 * each complete chat hashed at once (its bytes are still in the cache) and
 * pre-checked only when someone uses it (ps_chat_source_check): a chat the
 * device re-sends as it last synced it is never looked at again (issue
 * #15). Offsets in the pre-check's errors are the body's, so a message
 * says where in the body the problem is.
 */
#include "server/legacy_body.h"
#include "core/chat_splitter.h"
#include "core/dynbuf.h"
#include "core/hash.h"
#include "core/json_parse.h"
#include "core/json_precheck.h"
#include "server/body_spool.h"

#include <stdlib.h>
#include <string.h>

/* What is known of a sealed chat besides its bytes (the spool's). */
typedef struct chat_info {
    uint64_t offset; /* of its first byte in the body */
    uint64_t hash;   /* ps__hash_bytes of its bytes */
    bool checked;    /* pre-checked already */
} chat_info;

struct ps_legacy_body {
    ps_legacy_body_config cfg;
    ps_chat_splitter splitter;
    ps_dynbuf envelope;
    ps_body_spool *spool;
    uint64_t received;
    size_t chats;      /* in the current "chats" array, kept or only counted */
    size_t chat_bytes; /* of the chat being received */
    chat_info *info;   /* one per chat in the spool */
    size_t info_cap;
    ps_code problem; /* the first one; then nothing more is kept */
    ps_error problem_err;
};

static ps_code keep_problem(ps_legacy_body *lb, ps_code rc, const ps_error *err)
{
    if (lb->problem == PS_OK) {
        lb->problem = rc;
        lb->problem_err = *err;
    }
    return rc;
}

static ps_code on_envelope(void *cls, const char *p, size_t n)
{
    ps_legacy_body *lb = cls;
    ps_code rc = ps__dynbuf_add(&lb->envelope, p, n);
    if (rc == PS_OK)
        return PS_OK;
    ps_error err;
    if (rc == PS_ERR_TOO_LARGE)
        ps_error_set(&err, rc, -1, "", "the body without its chats is larger than %zu bytes",
                     lb->cfg.envelope_max);
    else
        ps_error_set(&err, rc, -1, "", "out of memory");
    return keep_problem(lb, rc, &err);
}

static bool over_chat_limit(const ps_legacy_body *lb)
{
    return lb->chats >= lb->cfg.max_chats;
}

static ps_code on_chat_part(void *cls, const char *p, size_t n)
{
    ps_legacy_body *lb = cls;
    if (over_chat_limit(lb))
        return PS_OK; /* counted only: the answer is 413 anyway */
    ps_error err;
    lb->chat_bytes += n;
    if (lb->chat_bytes > lb->cfg.chat_max) {
        ps_error_set(&err, PS_ERR_TOO_LARGE, (long)lb->chats, "",
                     "chats[%zu] is larger than %zu bytes", lb->chats, lb->cfg.chat_max);
        return keep_problem(lb, PS_ERR_TOO_LARGE, &err);
    }
    ps_code rc = ps_body_spool_add(lb->spool, p, n, &err);
    return rc == PS_OK ? PS_OK : keep_problem(lb, rc, &err);
}

static ps_code on_chat_end(void *cls, uint64_t offset)
{
    ps_legacy_body *lb = cls;
    lb->chat_bytes = 0;
    if (over_chat_limit(lb)) {
        lb->chats++;
        return PS_OK;
    }
    lb->chats++;
    const char *text;
    size_t len;
    ps_error err;
    size_t i = ps_body_spool_count(lb->spool);
    if (i == lb->info_cap) {
        size_t cap = lb->info_cap ? lb->info_cap * 2 : 256;
        chat_info *grown = realloc(lb->info, cap * sizeof *grown);
        if (!grown) {
            ps_error_set(&err, PS_ERR_NOMEM, -1, "", "out of memory");
            return keep_problem(lb, PS_ERR_NOMEM, &err);
        }
        lb->info = grown;
        lb->info_cap = cap;
    }
    ps_code rc = ps_body_spool_seal(lb->spool, &text, &len, &err);
    if (rc != PS_OK)
        return keep_problem(lb, rc, &err);
    lb->info[i] = (chat_info){.offset = offset, .hash = ps__hash_bytes(text, len)};
    return PS_OK;
}

/* Pre-checks chat i unless done already, reading it as `reader`. Two
 * readers at once (ps_chat_source) write only their own chats' `checked`,
 * and the pre-check keeps no state between calls. */
static ps_code check_chat(ps_legacy_body *lb, unsigned reader, size_t i, ps_error *err)
{
    if (lb->info[i].checked)
        return PS_OK;
    const char *text;
    size_t len;
    ps_code rc = ps_body_spool_read_as(lb->spool, reader, i, &text, &len, err);
    /* an element sits two containers deep: the root object and "chats" */
    if (rc == PS_OK)
        rc =
            ps__json_precheck_at(text, len, lb->cfg.max_depth - 2, (size_t)lb->info[i].offset, err);
    lb->info[i].checked = rc == PS_OK;
    return rc;
}

/* A later "chats" array replaces the earlier one, as json-c keeps the last
 * of a repeated key; the earlier one's chats must still be JSON, as they
 * would be for a whole parse. */
static ps_code on_chats_start(void *cls)
{
    ps_legacy_body *lb = cls;
    ps_error err;
    ps_code rc = PS_OK;
    size_t n = ps_body_spool_count(lb->spool);
    for (size_t i = 0; i < n && rc == PS_OK; i++) {
        const char *text;
        size_t len;
        json_object *chat = NULL;
        rc = check_chat(lb, 0, i, &err);
        if (rc != PS_OK)
            break;
        rc = ps_body_spool_read(lb->spool, i, &text, &len, &err);
        /* json-c's NULL; text and len are only set by a read that worked */
        bool null = rc == PS_OK && len == 4 && memcmp(text, "null", 4) == 0;
        if (rc == PS_OK && !null && ps__json_parse_trusted(text, len, &chat, &err) != PS_OK)
            rc = ps_error_set(&err, PS_ERR_MALFORMED, -1, "",
                              "malformed JSON in an earlier \"chats\" array");
        json_object_put(chat);
    }
    ps_body_spool_clear(lb->spool);
    lb->chats = 0;
    return rc == PS_OK ? PS_OK : keep_problem(lb, rc, &err);
}

ps_legacy_body *ps_legacy_body_new(const ps_legacy_body_config *cfg)
{
    ps_legacy_body *lb = calloc(1, sizeof *lb);
    if (!lb)
        return NULL;
    lb->cfg = *cfg;
    lb->cfg.spool_dir = NULL; /* the spool keeps its copy */
    if (!(lb->spool = ps_body_spool_new(cfg->spool_dir, cfg->memory_max))) {
        free(lb);
        return NULL;
    }
    ps_body_spool_expect(lb->spool, cfg->expected_bytes);
    ps__dynbuf_init(&lb->envelope, cfg->envelope_max);
    ps_chat_splitter_sink sink = {
        .cls = lb,
        .envelope = on_envelope,
        .chat_part = on_chat_part,
        .chat_end = on_chat_end,
        .chats_start = on_chats_start,
    };
    ps__chat_splitter_init(&lb->splitter, &sink);
    return lb;
}

void ps_legacy_body_free(ps_legacy_body *lb)
{
    if (!lb)
        return;
    ps_body_spool_free(lb->spool);
    ps__dynbuf_free(&lb->envelope);
    free(lb->info);
    free(lb);
}

ps_code ps_legacy_body_feed(ps_legacy_body *lb, const char *p, size_t n)
{
    lb->received += n;
    if (lb->received > lb->cfg.max_bytes)
        return PS_ERR_TOO_LARGE;
    if (lb->problem != PS_OK)
        return PS_OK; /* only counted from the first problem on */
    ps_error err;
    ps_code rc = ps__chat_splitter_feed(&lb->splitter, p, n, &err);
    if (rc != PS_OK && lb->problem == PS_OK) /* the splitter's own, not a sink's */
        keep_problem(lb, rc, &err);
    return PS_OK;
}

ps_code ps_legacy_body_check_chats(ps_legacy_body *lb, ps_error *err)
{
    ps_code rc = PS_OK;
    size_t n = ps_body_spool_count(lb->spool);
    for (size_t i = 0; i < n && rc == PS_OK; i++)
        rc = check_chat(lb, 0, i, err);
    return rc;
}

ps_code ps_legacy_body_finish(ps_legacy_body *lb, ps_error *err)
{
    ps_error mine;
    if (lb->problem == PS_OK) {
        ps_code rc = ps__chat_splitter_finish(&lb->splitter, &mine);
        if (rc != PS_OK)
            keep_problem(lb, rc, &mine);
    }
    if (lb->problem == PS_OK && lb->chats > lb->cfg.max_chats) {
        ps_error_set(&mine, PS_ERR_TOO_LARGE, -1, "chats",
                     "%zu chats in one request; the limit is %zu", lb->chats, lb->cfg.max_chats);
        keep_problem(lb, PS_ERR_TOO_LARGE, &mine);
    }
    /* The body is refused: its first problem is the answer, and a bad chat
     * kept before the problem met came first. (A chat read back from a
     * spool file that fails is not the body's problem: the one met stands.) */
    if (lb->problem != PS_OK) {
        ps_code rc = ps_legacy_body_check_chats(lb, &mine);
        if (rc != PS_OK && rc != PS_ERR_IO && rc != PS_ERR_NOMEM) {
            lb->problem = rc;
            lb->problem_err = mine;
        }
    }
    if (lb->problem != PS_OK && err)
        *err = lb->problem_err;
    return lb->problem;
}

const char *ps_legacy_body_envelope(const ps_legacy_body *lb, size_t *len)
{
    *len = lb->envelope.len;
    return lb->envelope.data ? lb->envelope.data : "";
}

_Static_assert(PS_SPOOL_READERS >= PS_CHAT_SOURCE_READERS, "a spool reader per source reader");

/* The source's functions are safe on two threads at once
 * (PS_CHAT_SOURCE_READERS, one spool reader each): by the time the chats
 * are handed out the spool is complete, so reading it writes only the
 * reader's own buffer (ps_body_spool_read_as), `check` writes only its
 * chat's `checked`, and `hash` and `length` read what on_chat_end and the
 * spool wrote before. */
static ps_code chat_bytes(void *cls, unsigned reader, size_t i, const char **text, size_t *len,
                          ps_error *err)
{
    ps_legacy_body *lb = cls;
    return ps_body_spool_read_as(lb->spool, reader, i, text, len, err);
}

static ps_code chat_check(void *cls, unsigned reader, size_t i, ps_error *err)
{
    return check_chat(cls, reader, i, err);
}

static uint64_t chat_hash(void *cls, size_t i)
{
    const ps_legacy_body *lb = cls;
    return lb->info[i].hash;
}

static size_t chat_length(void *cls, size_t i)
{
    const ps_legacy_body *lb = cls;
    return ps_body_spool_length(lb->spool, i);
}

void ps_legacy_body_chats(ps_legacy_body *lb, ps_chat_source *src)
{
    *src = (ps_chat_source){.count = ps_body_spool_count(lb->spool),
                            .bytes = chat_bytes,
                            .check = chat_check,
                            .hash = chat_hash,
                            .length = chat_length,
                            .cls = lb,
                            .padding = PS_SPOOL_PADDING,
                            .readers = PS_SPOOL_READERS};
}

void ps_legacy_body_adopt_buffer(ps_legacy_body *lb, char *buf, size_t cap)
{
    ps_body_spool_adopt_buffer(lb->spool, buf, cap);
}

char *ps_legacy_body_take_buffer(ps_legacy_body *lb, size_t *cap)
{
    return ps_body_spool_take_buffer(lb->spool, cap);
}

uint64_t ps_legacy_body_spooled_bytes(const ps_legacy_body *lb)
{
    return ps_body_spool_file_bytes(lb->spool);
}

char *ps_legacy_spool_dir(const char *db_url)
{
    if (strncmp(db_url, "sqlite:", 7) == 0) {
        const char *path = db_url + 7;
        const char *slash = strrchr(path, '/');
        if (!slash)
            return strdup(".");
        if (slash == path)
            return strdup("/");
        return strndup(path, (size_t)(slash - path));
    }
    const char *tmp = getenv("TMPDIR");
    return strdup(tmp && *tmp ? tmp : "/var/tmp");
}
