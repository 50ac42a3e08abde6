/*
 * Device bases (see base.h). A hash is over the register's key and the
 * value's compact JSON text, so an equal value re-sent with its keys in
 * another order counts as a write of that value: harmless, it changes
 * nothing but the register's stamp.
 */
#include "core/base.h"
#include "core/hash.h"
#include "core/json_parse.h"

#include <stdlib.h>
#include <string.h>

void ps__base_free(ps_base *b)
{
    free(b->hashes);
    *b = (ps_base){0};
}

static ps_code push(ps_base *b, uint64_t h)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        uint64_t *p = realloc(b->hashes, cap * sizeof *p);
        if (!p)
            return PS_ERR_NOMEM;
        b->hashes = p;
        b->cap = cap;
    }
    b->hashes[b->n++] = h;
    return PS_OK;
}

/* kind, key, NUL, value text: a field and a message never share a hash
 * input, nor do a deleted and a live message. */
static uint64_t hash3_text(char kind, const char *key, const char *vtext, size_t vlen)
{
    size_t klen = strlen(key);
    char stack[1024];
    size_t len = 2 + klen + vlen;
    char *buf = len <= sizeof stack ? stack : malloc(len);
    if (!buf) /* still a stable hash, of less: at worst a write is taken as carried */
        return ps__hash64(key, klen) ^ ps__hash64(vtext, vlen);
    buf[0] = kind;
    memcpy(buf + 1, key, klen);
    buf[1 + klen] = '\0';
    memcpy(buf + 2 + klen, vtext, vlen);
    uint64_t h = ps__hash64(buf, len);
    if (buf != stack)
        free(buf);
    return h;
}

static uint64_t hash3(char kind, const char *key, json_object *value)
{
    size_t vlen = 0;
    const char *vtext = value ? ps__json_text_kept(value, &vlen) : "";
    if (!vtext) /* out of memory: as hash3_text's own, a hash of less */
        return ps__hash64(key, strlen(key));
    return hash3_text(kind, key, vtext, vlen);
}

uint64_t ps__base_message_hash_text(const char *id, const char *text, size_t len)
{
    return hash3_text(text ? 'm' : 'd', id, text ? text : "", text ? len : 0);
}

uint64_t ps__base_field_hash(const char *name, json_object *value)
{
    return hash3('f', name, value);
}

uint64_t ps__base_message_hash(const char *id, json_object *value)
{
    return hash3(value ? 'm' : 'd', id, value);
}

ps_code ps__base_add(ps_base *b, uint64_t hash)
{
    return push(b, hash);
}

ps_code ps__base_add_chat(ps_base *b, const ps_chat *chat)
{
    ps_code rc = PS_OK;
    for (size_t i = 0; i < chat->nfields && rc == PS_OK; i++)
        rc = push(b, ps__base_field_hash(chat->fields[i].name, chat->fields[i].value));
    for (size_t i = 0; i < chat->nmessages && rc == PS_OK; i++)
        rc = push(b, ps__base_message_hash(chat->messages[i].id, chat->messages[i].value));
    return rc;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void ps__base_seal(ps_base *b)
{
    if (b->n < 2)
        return;
    qsort(b->hashes, b->n, sizeof *b->hashes, u64_cmp);
    size_t out = 1;
    for (size_t i = 1; i < b->n; i++)
        if (b->hashes[i] != b->hashes[out - 1])
            b->hashes[out++] = b->hashes[i];
    b->n = out;
}

bool ps__base_has(const ps_base *b, uint64_t hash)
{
    return b->n && bsearch(&hash, b->hashes, b->n, sizeof hash, u64_cmp) != NULL;
}

void ps__chat_drop_carried(ps_chat *incoming, const ps_base *base, size_t *writes)
{
    size_t out = 0;
    for (size_t i = 0; i < incoming->nfields; i++) {
        ps_field *f = &incoming->fields[i];
        if (ps__base_has(base, ps__base_field_hash(f->name, f->value))) {
            free(f->name);
            json_object_put(f->value);
            ps__stamp_clear(&f->stamp);
            ps__mark_clear(&f->mark);
        } else {
            incoming->fields[out++] = *f;
        }
    }
    incoming->nfields = out;
    out = 0;
    for (size_t i = 0; i < incoming->nmessages; i++) {
        ps_message *m = &incoming->messages[i];
        if (ps__base_has(base, ps__base_message_hash(m->id, m->value)))
            ps__message_release(m);
        else
            incoming->messages[out++] = *m;
    }
    incoming->nmessages = out;
    *writes = incoming->nfields + incoming->nmessages;
    if (*writes == 0 && incoming->has_touched) {
        ps__stamp_clear(&incoming->touched);
        incoming->has_touched = false;
    }
}
