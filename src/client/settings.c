/*
 * What the store remembers for a person and what a person sees while the
 * library works: saved settings (`polysync login`), the sync state
 * (`polysync status`), and the retry, transfer and work callbacks.
 *
 * Settings live in the store's meta table under "setting.<key>": the store
 * is created mode 0600, which is what a token file needs too.
 */
#include "client/client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const SETTING_KEYS[] = {"server", "token", "token_file", "cacert"};

static ps_code setting_meta_key(const char *key, char out[64], ps_error *err)
{
    for (size_t i = 0; i < sizeof SETTING_KEYS / sizeof *SETTING_KEYS; i++)
        if (key && strcmp(key, SETTING_KEYS[i]) == 0) {
            snprintf(out, 64, "setting.%s", key);
            return PS_OK;
        }
    return ps_error_set(err, PS_ERR_INVALID, -1, "key",
                        "unknown setting '%s' (server, token, token_file or cacert)",
                        key ? key : "(null)");
}

ps_code ps_client_setting_get(ps_client *c, const char *key, char **value_out, ps_error *err)
{
    *value_out = NULL;
    char meta[64];
    ps_code rc = setting_meta_key(key, meta, err);
    return rc == PS_OK ? ps__lstore_meta_get(c->store, meta, value_out, err) : rc;
}

ps_code ps_client_setting_set(ps_client *c, const char *key, const char *value, ps_error *err)
{
    char meta[64];
    ps_code rc = setting_meta_key(key, meta, err);
    return rc == PS_OK ? ps__lstore_meta_set(c->store, meta, value, err) : rc;
}

ps_code ps_client_state_get(ps_client *c, ps_client_state **out, ps_error *err)
{
    *out = NULL;
    ps_client_state *s = calloc(1, sizeof *s);
    if (!s)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    ps_code rc = ps__lstore_meta_get(c->store, "cursor", &s->cursor, err);
    if (rc == PS_OK)
        rc = ps__lstore_meta_get(c->store, "cursor_server", &s->cursor_server, err);
    if (rc == PS_OK)
        rc = ps__lstore_meta_int(c->store, "last_sync_ms", 0, &s->last_sync_ms, err);
    if (rc == PS_OK)
        rc = ps__lstore_meta_int(c->store, "clock", 0, &s->clock, err);
    if (rc == PS_OK)
        rc = ps__lstore_changes_count(c->store, &s->pending_changes, err);
    if (rc != PS_OK) {
        ps_client_state_free(s);
        return rc;
    }
    *out = s;
    return PS_OK;
}

void ps_client_state_free(ps_client_state *s)
{
    if (!s)
        return;
    free(s->cursor);
    free(s->cursor_server);
    free(s);
}

void ps_client_set_retry_notify(ps_client *c, ps_retry_fn fn, void *userdata)
{
    c->on_retry = fn;
    c->on_retry_ud = userdata;
}

void ps_client_set_transfer_progress(ps_client *c, ps_transfer_fn fn, void *userdata)
{
    c->on_transfer = fn;
    c->on_transfer_ud = userdata;
}

void ps_client_set_work_progress(ps_client *c, ps_work_fn fn, void *userdata)
{
    c->on_work = fn;
    c->on_work_ud = userdata;
    c->work_last_ms = 0;
}

void ps__work(ps_client *c, const char *phase, size_t done, size_t total, bool force)
{
    if (!c->on_work)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (!force && ms - c->work_last_ms < 100)
        return;
    c->work_last_ms = ms;
    c->on_work(phase, done, total, c->on_work_ud);
}
