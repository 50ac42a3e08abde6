/*
 * ps__chat_merge: a join of two chat states, part by part (see chat.h).
 * Messages are merged by a linear merge-join over the id-sorted arrays, so a
 * 5,000-message chat merges in one pass without per-message searches.
 */
#include "core/merge.h"

#include <stdlib.h>
#include <string.h>

static ps_code join_stamp(bool *has, ps_stamp *into, const ps_stamp *from, bool *changed)
{
    if (*has && ps__stamp_cmp(from, into) <= 0)
        return PS_OK;
    ps_code rc = ps__stamp_copy(into, from);
    if (rc == PS_OK) {
        *has = true;
        *changed = true;
    }
    return rc;
}

/* The newest deletion wins, and the tuple clients are shown goes with it. */
static ps_code join_tombstone(ps_chat *into, const ps_stamp *stamp, const ps_lamport *shown,
                              bool *changed)
{
    bool replaced = false;
    ps_code rc = join_stamp(&into->has_tombstone, &into->tombstone, stamp, &replaced);
    /* Equal stamps (two /deleteChat in one millisecond): the larger shown
     * tuple wins, so the result does not depend on the merge order. */
    if (rc == PS_OK && !replaced && ps__stamp_cmp(stamp, &into->tombstone) == 0 &&
        ps__lamport_cmp(shown, &into->deleted_lamport) > 0)
        replaced = true;
    if (rc == PS_OK && replaced) {
        *changed = true;
        rc = ps__lamport_set(&into->deleted_lamport, shown->counter, shown->id);
    }
    return rc;
}

static ps_code copy_message(ps_message *dst, const ps_message *src)
{
    dst->id = strdup(src->id);
    dst->stamp.device = NULL;
    dst->mark = (ps_mark){.dirty = true}; /* a new value: its origin is this merge's */
    if (!dst->id || ps__stamp_copy(&dst->stamp, &src->stamp) != PS_OK) {
        free(dst->id);
        return PS_ERR_NOMEM;
    }
    dst->value = json_object_get(src->value);
    dst->form = src->form;
    dst->order_ts = src->order_ts;
    dst->received = src->received;
    return PS_OK;
}

static ps_code merge_messages(ps_chat *into, const ps_chat *from, bool *changed)
{
    if (from->nmessages == 0)
        return PS_OK;
    size_t cap = into->nmessages + from->nmessages;
    ps_message *out = calloc(cap, sizeof *out);
    if (!out)
        return PS_ERR_NOMEM;
    size_t i = 0, j = 0, n = 0;
    ps_code rc = PS_OK;
    while (i < into->nmessages || j < from->nmessages) {
        int c;
        if (i == into->nmessages)
            c = 1;
        else if (j == from->nmessages)
            c = -1;
        else
            c = strcmp(into->messages[i].id, from->messages[j].id);
        if (c < 0) {
            out[n++] = into->messages[i++];
        } else if (c > 0 || ps__write_cmp(&from->messages[j].stamp, from->messages[j].value,
                                          &into->messages[i].stamp, into->messages[i].value) > 0) {
            rc = copy_message(&out[n], &from->messages[j]);
            if (rc != PS_OK)
                break;
            *changed = true;
            if (c == 0) { /* replaced: it keeps its place, the older write goes */
                out[n].received = into->messages[i].received;
                ps__message_release(&into->messages[i++]);
            }
            n++;
            j++;
        } else {
            out[n++] = into->messages[i++];
            j++;
        }
    }
    if (rc != PS_OK) {
        /* Keep `into` whole: move what was not yet taken after what was. */
        while (i < into->nmessages)
            out[n++] = into->messages[i++];
    }
    free(into->messages);
    into->messages = out;
    into->nmessages = n;
    into->capmessages = cap;
    if (rc != PS_OK)
        ps__chat_normalize(into);
    return rc;
}

ps_code ps__chat_merge(ps_chat *into, const ps_chat *from, bool *changed)
{
    *changed = false;
    ps_code rc = PS_OK;
    for (size_t k = 0; k < from->nfields && rc == PS_OK; k++) {
        const ps_field *f = &from->fields[k];
        bool c = false;
        rc = ps__chat_put_field(into, f->name, json_object_get(f->value), &f->stamp, &c);
        *changed |= c;
    }
    if (rc == PS_OK)
        rc = merge_messages(into, from, changed);
    /* The chat-level parts share one mark (the header). */
    bool header = false;
    if (rc == PS_OK && from->has_touched)
        rc = join_stamp(&into->has_touched, &into->touched, &from->touched, &header);
    if (rc == PS_OK && from->has_tombstone)
        rc = join_tombstone(into, &from->tombstone, &from->deleted_lamport, &header);
    if (rc == PS_OK) {
        /* the time fields carry marks of their own */
        *changed |= ps__time_field_join(&into->created_at, &from->created_at, true);
        *changed |= ps__time_field_join(&into->updated_at, &from->updated_at, false);
        *changed |= ps__time_field_join(&into->last_modified, &from->last_modified, false);
        if (from->lamport.counter && ps__lamport_cmp(&from->lamport, &into->lamport) > 0) {
            rc = ps__lamport_set(&into->lamport, from->lamport.counter, from->lamport.id);
            header = true;
        }
    }
    if (header) {
        ps__mark_clear(&into->header);
        into->header.dirty = true;
        *changed = true;
    }
    return rc;
}

ps_code ps__chat_delete(ps_chat *chat, const ps_stamp *stamp, const ps_lamport *shown,
                        bool *changed)
{
    *changed = false;
    ps_code rc = join_tombstone(chat, stamp, shown, changed);
    if (*changed) {
        ps__mark_clear(&chat->header);
        chat->header.dirty = true;
    }
    return rc;
}
