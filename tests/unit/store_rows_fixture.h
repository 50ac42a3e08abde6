/*
 * Message rows on demand, for the SQLite suites that test row paths (value
 * forms made ahead, dictionaries trained from rows, corrupt row frames):
 * since a chat new to the store becomes a pack whether or not it is saved
 * with a rendering (docs/storage.md, "Packs (version 12)"), such a suite
 * makes the chat exist first, empty, so that the save of its messages is an
 * update of an existing chat, whose messages are rows. Header-only; the
 * includer has the store (store_sqlite.c) and cmocka.
 */
#ifndef PS_STORE_ROWS_FIXTURE_H
#define PS_STORE_ROWS_FIXTURE_H

/* Saves chat `id` with no messages, rendered, at change `seq`, in the
 * write transaction the caller holds: the chat exists from here. */
static inline void store_rows_make_existing(ps_store *s, int64_t user, const char *id, int64_t seq)
{
    ps_chat *c = ps__chat_new(id);
    assert_non_null(c);
    assert_int_equal(ps__lamport_set(&c->lamport, 1, "server"), PS_OK);
    assert_int_equal(ps__chat_mark_dirty(c, seq, "dev"), PS_OK);
    json_object *doc = ps__chat_to_legacy(c);
    size_t doc_len;
    const char *doc_text = ps__json_text(doc, &doc_len);
    ps_error err;
    assert_int_equal(s->ops->chat_save(s, user, c, doc_text, doc_len, seq, &err), PS_OK);
    json_object_put(doc);
    ps__chat_free(c);
}

#endif
