/*
 * A reference model of the merge rules, written from docs/merge.md and
 * independent of src/core/chat.c: the property tests judge the merge with it
 * (issue #12.1), never with the implementation's own comparisons.
 *
 * docs/merge.md, "Which write is newer":
 *   1. by Lamport counter, where a time-only write counts at the place the
 *      server gave it on arrival (0 when it was given none);
 *   2. at one counter, a time-only write placed there is newer than a write
 *      its client stamped with that counter;
 *   3. client-stamped (Lamport) writes: then by device id, then by time;
 *      time-only writes: by time, then by device id;
 *   4. equal stamps: by value, a tombstone (or a field's JSON null: no value)
 *      lowest, then the compact JSON text.
 * A register keeps the newest write it was given; a chat is live when its
 * newest write of any kind but a deletion is newer than its newest deletion.
 */
#ifndef MERGE_MODEL_H
#define MERGE_MODEL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct mm_stamp {
    int64_t ts;
    int64_t lamport;
    const char *device; /* borrowed; "" when unknown */
    bool placed;        /* a time-only write the server placed at `lamport` */
} mm_stamp;

static inline int mm_sign(long long x)
{
    return (x > 0) - (x < 0);
}

/* rules 1-3 */
static inline int mm_stamp_cmp(const mm_stamp *a, const mm_stamp *b)
{
    if (a->lamport != b->lamport)
        return a->lamport < b->lamport ? -1 : 1;
    bool a_client = a->lamport > 0 && !a->placed;
    bool b_client = b->lamport > 0 && !b->placed;
    if (a_client != b_client)
        return a_client ? -1 : 1; /* rule 2: the placed time-only write is newer */
    int dev = mm_sign(strcmp(a->device ? a->device : "", b->device ? b->device : ""));
    int time = a->ts == b->ts ? 0 : a->ts < b->ts ? -1 : 1;
    if (a_client)
        return dev ? dev : time;
    return time ? time : dev;
}

/* rule 4: value texts (NULL = tombstone) */
static inline int mm_value_cmp(const char *a, const char *b)
{
    if (!a || !b)
        return (a != NULL) - (b != NULL);
    return mm_sign(strcmp(a, b));
}

static inline int mm_write_cmp(const mm_stamp *sa, const char *va, const mm_stamp *sb,
                               const char *vb)
{
    int c = mm_stamp_cmp(sa, sb);
    return c ? c : mm_value_cmp(va, vb);
}

/* The compact JSON text a value is compared by; NULL for a tombstone. The
 * returned text is owned by the model (copied). */
static inline char *mm_text(json_object *v)
{
    return v ? strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE))
             : NULL;
}

/* One register of the model: the newest write it was given. */
typedef struct mm_register {
    char kind;  /* 'f' field, 'm' message */
    char *key;  /* field name or message id */
    char *text; /* newest value's text; NULL = tombstone */
    mm_stamp stamp;
} mm_register;

#define MM_MAX_REGISTERS 64

typedef struct mm_chat {
    mm_register regs[MM_MAX_REGISTERS];
    size_t n;
    bool has_touched, has_deletion;
    mm_stamp touched, deletion;
} mm_chat;

static inline void mm_free(mm_chat *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->regs[i].key);
        free(c->regs[i].text);
    }
    c->n = 0;
}

/* Gives register (kind, key) a write; kept if newer. `text` is copied. */
static inline void mm_write(mm_chat *c, char kind, const char *key, const char *text,
                            const mm_stamp *s)
{
    for (size_t i = 0; i < c->n; i++) {
        mm_register *r = &c->regs[i];
        if (r->kind == kind && strcmp(r->key, key) == 0) {
            if (mm_write_cmp(s, text, &r->stamp, r->text) > 0) {
                free(r->text);
                r->text = text ? strdup(text) : NULL;
                r->stamp = *s;
            }
            return;
        }
    }
    if (c->n == MM_MAX_REGISTERS)
        abort();
    c->regs[c->n++] = (mm_register){
        .kind = kind, .key = strdup(key), .text = text ? strdup(text) : NULL, .stamp = *s};
}

static inline void mm_touch(mm_chat *c, const mm_stamp *s)
{
    if (!c->has_touched || mm_stamp_cmp(s, &c->touched) > 0)
        c->touched = *s;
    c->has_touched = true;
}

static inline void mm_delete(mm_chat *c, const mm_stamp *s)
{
    if (!c->has_deletion || mm_stamp_cmp(s, &c->deletion) > 0)
        c->deletion = *s;
    c->has_deletion = true;
}

static inline const mm_register *mm_find(const mm_chat *c, char kind, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->regs[i].kind == kind && strcmp(c->regs[i].key, key) == 0)
            return &c->regs[i];
    return NULL;
}

/* "A chat is live when some write to it is newer than its newest deletion":
 * every register write is a write to the chat too. */
static inline bool mm_live(const mm_chat *c)
{
    const mm_stamp *newest = c->has_touched ? &c->touched : NULL;
    for (size_t i = 0; i < c->n; i++)
        if (!newest || mm_stamp_cmp(&c->regs[i].stamp, newest) > 0)
            newest = &c->regs[i].stamp;
    if (!newest)
        return false;
    return !c->has_deletion || mm_stamp_cmp(newest, &c->deletion) > 0;
}

#endif
