/*
 * For the suites of a push's work made ahead of the write transaction
 * (test_store_prepack, test_store_packahead): chats as a v2 push brings
 * them, with message texts made from a seed so a test can tell which texts
 * the store read back. Include after store_sqlite.c. Header-only.
 */
#ifndef PS_PUSHED_CHAT_FIXTURE_H
#define PS_PUSHED_CHAT_FIXTURE_H

#include <stdio.h>
#include <string.h>

/* Deterministic message text from a small vocabulary (compressible, as
 * chat text is), `len` bytes at most. */
static inline void words(char *out, size_t len, unsigned seed)
{
    static const char *const w[] = {"sync ", "chat ",  "café ",   "мир ", "世界 ",
                                    "🚀 ",    "model ", "reply\n", "the ", "merge "};
    size_t n = 0;
    unsigned r = seed * 2654435761u + 7;
    while (n + 12 < len) {
        r = r * 1103515245u + 12345u;
        const char *x = w[(r >> 16) % (sizeof w / sizeof *w)];
        memcpy(out + n, x, strlen(x));
        n += strlen(x);
    }
    out[n] = '\0';
}

/* A chat of `n` messages of ~400 bytes (message m's text: words(seed + m)),
 * not saved yet, dirty and unnumbered as a push brings it. */
static inline ps_chat *new_pushed_chat(const char *id, int n, unsigned seed)
{
    ps_chat *c = ps__chat_new(id);
    ps_stamp st = {.ts = 1000, .device = (char *)"dev"};
    bool changed;
    assert_int_equal(ps__chat_put_field(c, "title", json_object_new_string(id), &st, &changed),
                     PS_OK);
    assert_int_equal(ps__lamport_set(&c->lamport, 1, "server"), PS_OK);
    char text[400], mid[48];
    for (int m = 0; m < n; m++) {
        snprintf(mid, sizeof mid, "%s-%d", id, m);
        words(text, sizeof text, seed + (unsigned)m);
        json_object *v = json_object_new_object();
        json_object_object_add(v, "id", json_object_new_string(mid));
        json_object_object_add(v, "content", json_object_new_string(text));
        assert_int_equal(ps__chat_append_message(c, mid, v, &st, 1000 + m), PS_OK);
    }
    ps__chat_normalize(c);
    return c; /* not numbered: as a push's incoming chat */
}

/* The content of message m of chat `id` as the store reads it back. */
static inline char *content_of(ps_store *s, int64_t user, const char *id, int m)
{
    ps_error err;
    ps_chat *back = NULL;
    char mid[48];
    snprintf(mid, sizeof mid, "%s-%d", id, m);
    assert_int_equal(ps_store_begin(s, false, &err), PS_OK);
    assert_int_equal(s->ops->chat_load(s, user, id, true, &back, &err), PS_OK);
    ps_store_rollback(s);
    assert_non_null(back);
    const ps_message *msg = ps__chat_message(back, mid);
    assert_non_null(msg);
    char *text = strdup(json_object_get_string(json_object_object_get(msg->value, "content")));
    ps__chat_free(back);
    return text;
}

static inline void expect_content(ps_store *s, int64_t user, const char *id, int m, unsigned seed)
{
    char want[400];
    words(want, sizeof want, seed);
    char *got = content_of(s, user, id, m);
    assert_string_equal(got, want);
    free(got);
}

#endif
