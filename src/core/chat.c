/*
 * Chat registers and their joins; see chat.h. The one rule everything here
 * follows: a write replaces what is stored only when it is strictly newer by
 * (stamp, then value text), so applying writes in any order, any number of
 * times, ends in the same chat.
 */
#include "core/chat.h"
#include "core/json_parse.h"

#include <stdlib.h>
#include <string.h>

ps_chat *ps__chat_new(const char *id)
{
    ps_chat *chat = calloc(1, sizeof *chat);
    if (!chat)
        return NULL;
    chat->id = strdup(id);
    if (!chat->id) {
        free(chat);
        return NULL;
    }
    return chat;
}

void ps__stamp_clear(ps_stamp *s)
{
    free(s->device);
    s->device = NULL;
    s->ts = 0;
    s->lamport = 0;
    s->timed = false;
}

ps_code ps__stamp_copy(ps_stamp *dst, const ps_stamp *src)
{
    char *dev = strdup(src->device ? src->device : "");
    if (!dev)
        return PS_ERR_NOMEM;
    free(dst->device);
    dst->device = dev;
    dst->ts = src->ts;
    dst->lamport = src->lamport;
    dst->timed = src->timed;
    return PS_OK;
}

void ps__mark_clear(ps_mark *m)
{
    free(m->origin);
    m->origin = NULL;
    m->seq = 0;
    m->dirty = false;
}

/* A register that took a new value: where it came from is not known yet. */
static void mark_changed(ps_mark *m)
{
    ps__mark_clear(m);
    m->dirty = true;
}

void ps__chat_free(ps_chat *chat)
{
    if (!chat)
        return;
    for (size_t i = 0; i < chat->nfields; i++) {
        free(chat->fields[i].name);
        json_object_put(chat->fields[i].value);
        ps__stamp_clear(&chat->fields[i].stamp);
        ps__mark_clear(&chat->fields[i].mark);
    }
    for (size_t i = 0; i < chat->nmessages; i++) {
        free(chat->messages[i].id);
        json_object_put(chat->messages[i].value);
        ps__stamp_clear(&chat->messages[i].stamp);
        ps__mark_clear(&chat->messages[i].mark);
    }
    ps__mark_clear(&chat->header);
    ps_time_field *times[3] = {&chat->created_at, &chat->updated_at, &chat->last_modified};
    for (int k = 0; k < 3; k++) {
        json_object_put(times[k]->value);
        ps__mark_clear(&times[k]->mark);
    }
    ps__stamp_clear(&chat->tombstone);
    ps__stamp_clear(&chat->touched);
    free(chat->lamport.id);
    free(chat->deleted_lamport.id);
    free(chat->fields);
    free(chat->messages);
    free(chat->id);
    free(chat);
}

static int cmp_i64(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

/* A write its client stamped with a Lamport counter (not a time-only one
 * the server placed). */
static bool lamport_class(const ps_stamp *s)
{
    return s->lamport > 0 && !s->timed;
}

int ps__stamp_cmp(const ps_stamp *a, const ps_stamp *b)
{
    /* One total order (docs/merge.md, "Which write is newer"): by counter,
     * where a time-only write's counter is the place the server gave it on
     * arrival; at one counter a time-only write placed there is newer than
     * the Lamport writes it was placed after; Lamport writes are then
     * ordered as the Polyglot client orders them, by device, time-only ones
     * by time. */
    int c = cmp_i64(a->lamport, b->lamport);
    if (c)
        return c;
    bool ka = lamport_class(a), kb = lamport_class(b);
    if (ka != kb)
        return ka ? -1 : 1;
    int by_device = strcmp(a->device ? a->device : "", b->device ? b->device : "");
    by_device = (by_device > 0) - (by_device < 0);
    int by_time = cmp_i64(a->ts, b->ts);
    if (ka)
        return by_device ? by_device : by_time;
    return by_time ? by_time : by_device;
}

int ps__lamport_cmp(const ps_lamport *a, const ps_lamport *b)
{
    int c = cmp_i64(a->counter, b->counter);
    if (c)
        return c;
    c = strcmp(a->id ? a->id : "", b->id ? b->id : "");
    return (c > 0) - (c < 0);
}

ps_code ps__lamport_set(ps_lamport *l, int64_t counter, const char *id)
{
    char *copy = strdup(id ? id : "");
    if (!copy)
        return PS_ERR_NOMEM;
    free(l->id);
    l->id = copy;
    l->counter = counter;
    return PS_OK;
}

/* Total order on values for equal stamps: JSON null (tombstone) is oldest,
 * then by compact text. Only matters when one writer sent two values with
 * one stamp, but it must still be the same answer everywhere. */
static int value_cmp(json_object *a, json_object *b)
{
    if (!a || !b)
        return (a != NULL) - (b != NULL);
    if (json_object_equal(a, b))
        return 0;
    int c = strcmp(ps__json_text(a, NULL), ps__json_text(b, NULL));
    return (c > 0) - (c < 0);
}

/* Newer write wins; see the file comment. */
int ps__write_cmp(const ps_stamp *sa, json_object *va, const ps_stamp *sb, json_object *vb)
{
    int c = ps__stamp_cmp(sa, sb);
    return c ? c : value_cmp(va, vb);
}

static size_t field_slot(const ps_chat *chat, const char *name, bool *found)
{
    size_t lo = 0, hi = chat->nfields;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(chat->fields[mid].name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

const ps_field *ps__chat_field(const ps_chat *chat, const char *name)
{
    bool found;
    size_t i = field_slot(chat, name, &found);
    return found ? &chat->fields[i] : NULL;
}

ps_code ps__chat_put_field(ps_chat *chat, const char *name, json_object *value,
                          const ps_stamp *stamp, bool *changed)
{
    *changed = false;
    bool found;
    size_t i = field_slot(chat, name, &found);
    if (found) {
        ps_field *f = &chat->fields[i];
        if (ps__write_cmp(stamp, value, &f->stamp, f->value) <= 0) {
            json_object_put(value);
            return PS_OK;
        }
        if (ps__stamp_copy(&f->stamp, stamp) != PS_OK) {
            json_object_put(value);
            return PS_ERR_NOMEM;
        }
        json_object_put(f->value);
        f->value = value;
        mark_changed(&f->mark);
        /* A newer stamp on an equal value is still a change of state. */
        *changed = true;
        return PS_OK;
    }
    if (chat->nfields == chat->capfields) {
        size_t cap = chat->capfields ? chat->capfields * 2 : 8;
        ps_field *p = realloc(chat->fields, cap * sizeof *p);
        if (!p) {
            json_object_put(value);
            return PS_ERR_NOMEM;
        }
        chat->fields = p;
        chat->capfields = cap;
    }
    ps_field nf = {.name = strdup(name), .value = value, .mark = {.dirty = true}};
    if (!nf.name || ps__stamp_copy(&nf.stamp, stamp) != PS_OK) {
        free(nf.name);
        json_object_put(value);
        return PS_ERR_NOMEM;
    }
    memmove(&chat->fields[i + 1], &chat->fields[i], (chat->nfields - i) * sizeof nf);
    chat->fields[i] = nf;
    chat->nfields++;
    *changed = true;
    return PS_OK;
}

ps_code ps__chat_append_message(ps_chat *chat, const char *id, json_object *value,
                               const ps_stamp *stamp, int64_t order_ts)
{
    if (chat->nmessages == chat->capmessages) {
        size_t cap = chat->capmessages ? chat->capmessages * 2 : 16;
        ps_message *p = realloc(chat->messages, cap * sizeof *p);
        if (!p) {
            json_object_put(value);
            return PS_ERR_NOMEM;
        }
        chat->messages = p;
        chat->capmessages = cap;
    }
    ps_message m = {.id = strdup(id),
                    .value = value,
                    .order_ts = order_ts,
                    .received = -(int64_t)chat->nmessages - 1,
                    .mark = {.dirty = true}};
    if (!m.id || ps__stamp_copy(&m.stamp, stamp) != PS_OK) {
        free(m.id);
        json_object_put(value);
        return PS_ERR_NOMEM;
    }
    chat->messages[chat->nmessages++] = m;
    return PS_OK;
}

/* Numbered messages first, by number; then unnumbered ones as they arrived. */
static int64_t recv_key(const ps_message *m)
{
    return m->received >= 0 ? m->received : INT64_MAX / 2 - m->received;
}

int ps__message_order_cmp(const ps_message *a, const ps_message *b)
{
    int c = cmp_i64(a->order_ts, b->order_ts);
    if (!c)
        c = cmp_i64(recv_key(a), recv_key(b));
    if (!c)
        c = strcmp(a->id, b->id);
    return (c > 0) - (c < 0);
}

static int recv_ptr_cmp(const void *a, const void *b)
{
    int64_t x = recv_key(*(const ps_message *const *)a),
            y = recv_key(*(const ps_message *const *)b);
    return (x > y) - (x < y);
}

void ps__chat_number_received(ps_chat *chat)
{
    size_t n = 0;
    for (size_t i = 0; i < chat->nmessages; i++)
        n += chat->messages[i].received < 0;
    if (n == 0)
        return;
    ps_message **fresh = malloc(n * sizeof *fresh);
    if (!fresh) { /* numbering by id order is still a valid, stable order */
        for (size_t i = 0; i < chat->nmessages; i++)
            if (chat->messages[i].received < 0)
                chat->messages[i].received = chat->next_received++;
        return;
    }
    n = 0;
    for (size_t i = 0; i < chat->nmessages; i++)
        if (chat->messages[i].received < 0)
            fresh[n++] = &chat->messages[i];
    qsort(fresh, n, sizeof *fresh, recv_ptr_cmp); /* as they arrived */
    for (size_t i = 0; i < n; i++)
        fresh[i]->received = chat->next_received++;
    free(fresh);
}

static int message_id_cmp(const void *a, const void *b)
{
    return strcmp(((const ps_message *)a)->id, ((const ps_message *)b)->id);
}

void ps__message_release(ps_message *m)
{
    free(m->id);
    json_object_put(m->value);
    ps__stamp_clear(&m->stamp);
    ps__mark_clear(&m->mark);
}

void ps__chat_normalize(ps_chat *chat)
{
    if (chat->nmessages < 2)
        return;
    qsort(chat->messages, chat->nmessages, sizeof *chat->messages, message_id_cmp);
    size_t out = 0;
    for (size_t i = 1; i < chat->nmessages; i++) {
        ps_message *keep = &chat->messages[out];
        ps_message *cur = &chat->messages[i];
        if (strcmp(keep->id, cur->id) != 0) {
            chat->messages[++out] = *cur;
            continue;
        }
        /* Same id twice: keep the newer write, as a merge would, and the
         * place of the first received. */
        int64_t first = recv_key(keep) <= recv_key(cur) ? keep->received : cur->received;
        if (ps__write_cmp(&cur->stamp, cur->value, &keep->stamp, keep->value) > 0) {
            ps_message old = *keep;
            *keep = *cur;
            ps__message_release(&old);
        } else {
            ps__message_release(cur);
        }
        keep->received = first;
    }
    chat->nmessages = out + 1;
}

const ps_message *ps__chat_message(const ps_chat *chat, const char *id)
{
    if (chat->nmessages == 0) /* bsearch on a NULL array is undefined */
        return NULL;
    ps_message key = {.id = (char *)id};
    return bsearch(&key, chat->messages, chat->nmessages, sizeof key, message_id_cmp);
}

bool ps__time_field_join(ps_time_field *into, const ps_time_field *from, bool want_min)
{
    if (!from->value)
        return false;
    bool take;
    if (!into->value)
        take = true;
    else if (from->ms != into->ms)
        take = want_min ? from->ms < into->ms : from->ms > into->ms;
    else
        take = value_cmp(from->value, into->value) > 0;
    if (!take)
        return false;
    json_object_put(into->value);
    into->value = json_object_get(from->value);
    into->ms = from->ms;
    mark_changed(&into->mark);
    return true;
}

void ps__chat_clear_dirty(ps_chat *chat)
{
    for (size_t i = 0; i < chat->nfields; i++)
        chat->fields[i].mark.dirty = false;
    for (size_t i = 0; i < chat->nmessages; i++)
        chat->messages[i].mark.dirty = false;
    chat->header.dirty = false;
    chat->created_at.mark.dirty = chat->updated_at.mark.dirty = false;
    chat->last_modified.mark.dirty = false;
}

static void place_after(int64_t *best, const ps_stamp *s, int64_t ts)
{
    if (s->lamport > *best && s->ts < ts)
        *best = s->lamport;
}

int64_t ps__chat_time_place(const ps_chat *stored, int64_t ts)
{
    int64_t best = 0;
    for (size_t i = 0; i < stored->nfields; i++)
        place_after(&best, &stored->fields[i].stamp, ts);
    for (size_t i = 0; i < stored->nmessages; i++)
        place_after(&best, &stored->messages[i].stamp, ts);
    if (stored->has_touched)
        place_after(&best, &stored->touched, ts);
    if (stored->has_tombstone)
        place_after(&best, &stored->tombstone, ts);
    return best;
}

static void place_one(ps_stamp *s, int64_t place)
{
    if (s->lamport == 0) {
        s->lamport = place;
        s->timed = true;
    }
}

void ps__chat_place_time_only(ps_chat *incoming, int64_t place)
{
    if (place <= 0)
        return;
    for (size_t i = 0; i < incoming->nfields; i++)
        place_one(&incoming->fields[i].stamp, place);
    for (size_t i = 0; i < incoming->nmessages; i++)
        place_one(&incoming->messages[i].stamp, place);
    if (incoming->has_touched)
        place_one(&incoming->touched, place);
    if (incoming->has_tombstone)
        place_one(&incoming->tombstone, place);
}

static ps_code stamp_mark(ps_mark *m, int64_t seq, const char *origin)
{
    if (!m->dirty)
        return PS_OK;
    if (m->lost) {
        m->lost = false;
        m->seq = seq;
        /* the device whose write lost must be sent the winner: never keep
         * it as the winner's origin (its pulls would skip the part) */
        if (m->origin && origin && strcmp(m->origin, origin) == 0) {
            free(m->origin);
            m->origin = NULL;
        }
        return m->origin || (m->origin = strdup("")) ? PS_OK : PS_ERR_NOMEM;
    }
    char *copy = strdup(origin ? origin : "");
    if (!copy)
        return PS_ERR_NOMEM;
    free(m->origin);
    m->origin = copy;
    m->seq = seq;
    return PS_OK;
}

ps_code ps__chat_mark_dirty(ps_chat *chat, int64_t seq, const char *origin)
{
    ps_code rc = stamp_mark(&chat->header, seq, origin);
    ps_time_field *times[3] = {&chat->created_at, &chat->updated_at, &chat->last_modified};
    for (int k = 0; k < 3 && rc == PS_OK; k++)
        rc = stamp_mark(&times[k]->mark, seq, origin);
    for (size_t i = 0; i < chat->nfields && rc == PS_OK; i++)
        rc = stamp_mark(&chat->fields[i].mark, seq, origin);
    for (size_t i = 0; i < chat->nmessages && rc == PS_OK; i++)
        rc = stamp_mark(&chat->messages[i].mark, seq, origin);
    return rc;
}

bool ps__chat_is_dirty(const ps_chat *chat)
{
    if (chat->header.dirty || chat->created_at.mark.dirty || chat->updated_at.mark.dirty ||
        chat->last_modified.mark.dirty)
        return true;
    for (size_t i = 0; i < chat->nfields; i++)
        if (chat->fields[i].mark.dirty)
            return true;
    for (size_t i = 0; i < chat->nmessages; i++)
        if (chat->messages[i].mark.dirty)
            return true;
    return false;
}

const ps_stamp *ps__chat_newest_change(const ps_chat *chat)
{
    const ps_stamp *best = chat->has_touched ? &chat->touched : NULL;
    for (size_t i = 0; i < chat->nfields; i++)
        if (!best || ps__stamp_cmp(&chat->fields[i].stamp, best) > 0)
            best = &chat->fields[i].stamp;
    for (size_t i = 0; i < chat->nmessages; i++)
        if (!best || ps__stamp_cmp(&chat->messages[i].stamp, best) > 0)
            best = &chat->messages[i].stamp;
    return best;
}

bool ps__chat_is_live(const ps_chat *chat)
{
    const ps_stamp *newest = ps__chat_newest_change(chat);
    if (!chat->has_tombstone)
        return newest != NULL;
    return newest && ps__stamp_cmp(newest, &chat->tombstone) > 0;
}
