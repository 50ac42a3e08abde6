/*
 * Legacy chat conversions (core/chat_codec.h). ps__chat_from_legacy: keeps
 * every field and message, drops isPrivate messages, stamps every write with
 * lastModified, else updatedAt, else createdAt (else 0), turns a message
 * {id, deleted: true} into a tombstone write, clamps times past
 * now + max skew, and takes the writer from updatedAtLamport[1], else the
 * request's device. ps__chat_to_legacy: fields, live messages ordered by
 * timestamp then id, tombstoned messages left out, time fields as sent and
 * always an updatedAtLamport tuple; legacy -> chat -> legacy is the identity
 * for a chat in display order. ps__chat_differs_from_sent: what a client that
 * sent a chat lacks of the merged result, and what it does not.
 */
#include "test_util.h"
#include "core/merge.h"

#define NOW tu_t(0) /* the server's clock in these tests: 2024-01-15T10:00Z */

static ps_chat *ingest(const char *legacy_text, const char *device)
{
    return tu_from_legacy(legacy_text, device, NOW);
}

static void assert_stamp(const ps_stamp *s, int64_t ts, int64_t lamport, const char *device)
{
    assert_int_equal(s->ts, ts);
    assert_int_equal(s->lamport, lamport);
    assert_string_equal(s->device ? s->device : "", device);
}

static const char *field_str(const ps_chat *chat, const char *name)
{
    const ps_field *f = ps__chat_field(chat, name);
    assert_non_null(f);
    return json_object_get_string(f->value);
}

static const char SEED_CHAT[] =
    "{\"id\":\"uuid-string\",\"title\":\"Chat Title\",\"messages\":[{\"id\":\"msg-uuid\","
    "\"role\":\"user\",\"content\":\"message text\",\"timestamp\":\"2024-01-15T09:30:00.000Z\"}],"
    "\"createdAt\":\"2024-01-15T09:00:00.000Z\",\"updatedAt\":\"2024-01-15T09:30:00.000Z\","
    "\"lastModified\":\"2024-01-15T09:31:00.000Z\",\"model\":\"gpt-4\",\"provider\":\"openai\","
    "\"currentModel\":\"gpt-4\",\"isArchived\":false}";

static void from_legacy_keeps_everything(void **state)
{
    ps_chat *chat = ingest(SEED_CHAT, "dev");
    assert_string_equal(chat->id, "uuid-string");
    assert_int_equal(chat->nfields, 5);
    assert_string_equal(field_str(chat, "title"), "Chat Title");
    assert_string_equal(field_str(chat, "model"), "gpt-4");
    assert_string_equal(field_str(chat, "provider"), "openai");
    assert_string_equal(field_str(chat, "currentModel"), "gpt-4");
    assert_true(json_object_is_type(ps__chat_field(chat, "isArchived")->value, json_type_boolean));
    assert_null(ps__chat_field(chat, "id"));
    assert_null(ps__chat_field(chat, "messages"));
    assert_null(ps__chat_field(chat, "createdAt"));
    assert_int_equal(chat->nmessages, 1);
    const ps_message *m = ps__chat_message(chat, "msg-uuid");
    assert_non_null(m);
    assert_string_equal(tu_get_str(m->value, "content"), "message text");
    assert_int_equal(m->order_ts, tu_t(-30));
    assert_int_equal(chat->created_at.ms, tu_t(-60));
    assert_int_equal(chat->updated_at.ms, tu_t(-30));
    assert_int_equal(chat->last_modified.ms, tu_t(-29));
    assert_string_equal(json_object_get_string(chat->created_at.value), "2024-01-15T09:00:00.000Z");
    assert_true(chat->has_touched);
    assert_false(chat->has_tombstone);
    assert_true(ps__chat_is_live(chat));
    ps__chat_free(chat);
}

/* Unknown fields are kept verbatim, whatever their type. */
static void from_legacy_keeps_unknown_fields(void **state)
{
    ps_chat *chat = ingest("{\"id\":\"c\",\"folder\":{\"path\":[\"a\",\"b\"]},\"pinned\":3,"
                           "\"note\":null}",
                           "dev");
    json_object *want = tu_json("{\"path\":[\"a\",\"b\"]}");
    assert_true(json_object_equal(ps__chat_field(chat, "folder")->value, want));
    assert_int_equal(json_object_get_int(ps__chat_field(chat, "pinned")->value), 3);
    assert_non_null(ps__chat_field(chat, "note"));
    assert_null(ps__chat_field(chat, "note")->value);
    json_object_put(want);
    json_object *back = ps__chat_to_legacy(chat);
    json_object *note;
    assert_true(json_object_object_get_ex(back, "note", &note));
    assert_null(note);
    json_object_put(back);
    ps__chat_free(chat);
}

static void from_legacy_drops_private_messages(void **state)
{
    ps_chat *chat =
        ingest("{\"id\":\"c\",\"messages\":["
               "{\"id\":\"m1\",\"role\":\"user\",\"content\":\"a\"},"
               "{\"id\":\"m2\",\"role\":\"user\",\"content\":\"secret\","
               "\"isPrivate\":true},"
               "{\"id\":\"m3\",\"role\":\"user\",\"content\":\"c\",\"isPrivate\":false}]}",
               "dev");
    assert_int_equal(chat->nmessages, 2);
    assert_non_null(ps__chat_message(chat, "m1"));
    assert_null(ps__chat_message(chat, "m2"));
    assert_non_null(ps__chat_message(chat, "m3"));
    json_object *legacy = ps__chat_to_legacy(chat);
    assert_null(strstr(ps__json_text(legacy, NULL), "secret"));
    json_object_put(legacy);
    ps__chat_free(chat);
}

static void from_legacy_message_tombstones(void **state)
{
    ps_chat *chat =
        ingest("{\"id\":\"c\",\"lastModified\":1000,\"messages\":["
               "{\"id\":\"m1\",\"role\":\"user\",\"content\":\"a\"},"
               "{\"id\":\"m2\",\"deleted\":true},"
               "{\"id\":\"m3\",\"role\":\"user\",\"content\":\"c\",\"deleted\":false}]}",
               "dev");
    assert_int_equal(chat->nmessages, 3);
    const ps_message *m2 = ps__chat_message(chat, "m2");
    assert_non_null(m2);
    assert_null(m2->value);
    assert_int_equal(m2->stamp.ts, 1000);
    assert_non_null(ps__chat_message(chat, "m3")->value);
    json_object *legacy = ps__chat_to_legacy(chat);
    char ids[32];
    assert_string_equal(tu_legacy_message_ids(legacy, ids, sizeof ids), "m1,m3");
    json_object_put(legacy);

    /* the tombstone deletes an older copy of the message on merge */
    ps_chat *old = ingest("{\"id\":\"c\",\"lastModified\":500,\"messages\":["
                          "{\"id\":\"m2\",\"role\":\"user\",\"content\":\"b\"}]}",
                          "other");
    bool changed;
    assert_int_equal(ps__chat_merge(old, chat, &changed), PS_OK);
    assert_true(changed);
    assert_null(ps__chat_message(old, "m2")->value);
    ps__chat_free(old);
    ps__chat_free(chat);
}

static void stamp_of(const char *legacy_text, const char *device, ps_stamp *out)
{
    json_object *legacy = tu_json(legacy_text);
    ps_ingest in = {.device = device, .now_ms = NOW, .max_skew_ms = 5 * 60 * 1000};
    assert_int_equal(ps__legacy_stamp(legacy, &in, out), PS_OK);
    json_object_put(legacy);
}

static void stamp_time_prefers_last_modified_then_updated_then_created(void **state)
{
    static const struct {
        const char *legacy;
        int64_t ts;
    } cases[] = {
        {"{\"id\":\"c\",\"createdAt\":\"2024-01-15T09:00:00Z\",\"updatedAt\":"
         "\"2024-01-15T09:10:00Z\",\"lastModified\":\"2024-01-15T09:05:00Z\"}",
         1705309500000LL},
        {"{\"id\":\"c\",\"createdAt\":\"2024-01-15T09:00:00Z\",\"updatedAt\":"
         "\"2024-01-15T09:10:00Z\"}",
         1705309800000LL},
        {"{\"id\":\"c\",\"createdAt\":\"2024-01-15T09:00:00Z\",\"updatedAt\":"
         "\"2024-01-15T09:10:00Z\",\"lastModified\":null}",
         1705309800000LL},
        {"{\"id\":\"c\",\"createdAt\":\"2024-01-15T09:00:00Z\"}", 1705309200000LL},
        {"{\"id\":\"c\",\"createdAt\":1705309200000,\"updatedAt\":null}", 1705309200000LL},
        {"{\"id\":\"c\",\"title\":\"no times\"}", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ps_stamp s;
        stamp_of(cases[i].legacy, "dev", &s);
        if (s.ts != cases[i].ts)
            fail_msg("case %zu: stamp %lld, want %lld", i, (long long)s.ts, (long long)cases[i].ts);
        ps__stamp_clear(&s);
    }
}

/* Every register written by one upload carries the upload's stamp. */
static void every_write_carries_the_chat_stamp(void **state)
{
    ps_chat *chat = ingest("{\"id\":\"c\",\"title\":\"t\",\"updatedAt\":\"2024-01-15T09:10:00Z\","
                           "\"messages\":[{\"id\":\"m1\",\"role\":\"user\",\"content\":\"a\","
                           "\"timestamp\":\"2024-01-15T08:00:00Z\"}],"
                           "\"updatedAtLamport\":[4,\"phone\"]}",
                           "laptop");
    assert_stamp(&ps__chat_field(chat, "title")->stamp, 1705309800000LL, 4, "phone");
    assert_stamp(&ps__chat_message(chat, "m1")->stamp, 1705309800000LL, 4, "phone");
    assert_stamp(&chat->touched, 1705309800000LL, 4, "phone");
    ps__chat_free(chat);
}

static void clamps_future_times_to_now_plus_skew(void **state)
{
    /* lastModified an hour ahead of the server: believed as now + 5 min. */
    ps_chat *chat =
        ingest("{\"id\":\"c\",\"title\":\"t\",\"createdAt\":\"2024-01-15T09:00:00.000Z\","
               "\"updatedAt\":1705316400000,"
               "\"lastModified\":\"2024-01-15T11:00:00.000Z\"}",
               "dev");
    const int64_t limit = NOW + 5 * 60 * 1000;
    assert_int_equal(ps__chat_field(chat, "title")->stamp.ts, limit);
    assert_int_equal(chat->touched.ts, limit);
    assert_int_equal(chat->last_modified.ms, limit);
    assert_string_equal(json_object_get_string(chat->last_modified.value),
                        "2024-01-15T10:05:00.000Z");
    assert_int_equal(chat->updated_at.ms, limit);
    assert_string_equal(json_object_get_string(chat->updated_at.value), "2024-01-15T10:05:00.000Z");
    /* a past time is kept exactly as sent */
    assert_int_equal(chat->created_at.ms, tu_t(-60));
    assert_string_equal(json_object_get_string(chat->created_at.value), "2024-01-15T09:00:00.000Z");
    ps__chat_free(chat);

    /* within the skew: not touched */
    chat = ingest("{\"id\":\"c\",\"lastModified\":\"2024-01-15T10:04:59.999Z\"}", "dev");
    assert_int_equal(chat->touched.ts, limit - 1);
    assert_string_equal(json_object_get_string(chat->last_modified.value),
                        "2024-01-15T10:04:59.999Z");
    ps__chat_free(chat);

    ps_stamp s;
    stamp_of("{\"id\":\"c\",\"createdAt\":253402300799999}", "dev", &s);
    assert_int_equal(s.ts, limit);
    ps__stamp_clear(&s);
}

static void device_from_lamport_else_ingest(void **state)
{
    ps_stamp s;
    stamp_of("{\"id\":\"c\",\"lastModified\":1000,\"updatedAtLamport\":[7,\"phone\"]}", "laptop",
             &s);
    assert_stamp(&s, 1000, 7, "phone");
    ps__stamp_clear(&s);
    stamp_of("{\"id\":\"c\",\"lastModified\":1000}", "laptop", &s);
    assert_stamp(&s, 1000, 0, "laptop");
    ps__stamp_clear(&s);
    stamp_of("{\"id\":\"c\",\"lastModified\":1000,\"updatedAtLamport\":null}", "laptop", &s);
    assert_stamp(&s, 1000, 0, "laptop");
    ps__stamp_clear(&s);
    stamp_of("{\"id\":\"c\",\"lastModified\":1000}", NULL, &s);
    assert_stamp(&s, 1000, 0, "");
    ps__stamp_clear(&s);

    ps_chat *chat = ingest("{\"id\":\"c\",\"updatedAtLamport\":[7,\"phone\"]}", "laptop");
    assert_int_equal(chat->lamport.counter, 7);
    assert_string_equal(chat->lamport.id, "phone");
    ps__chat_free(chat);
    chat = ingest("{\"id\":\"c\"}", "laptop");
    assert_int_equal(chat->lamport.counter, 0);
    ps__chat_free(chat);
}

static void to_legacy_orders_messages_by_timestamp_then_first_received(void **state)
{
    ps_chat *chat = ingest(
        "{\"id\":\"c\",\"messages\":["
        "{\"id\":\"e\",\"role\":\"user\",\"content\":\"\",\"timestamp\":\"2024-01-15T10:00:02Z\"},"
        "{\"id\":\"b\",\"role\":\"user\",\"content\":\"\",\"timestamp\":1705312801000},"
        "{\"id\":\"a\",\"role\":\"user\",\"content\":\"\",\"timestamp\":\"2024-01-15T11:00:01+01:"
        "00\"},"
        "{\"id\":\"z\",\"role\":\"user\",\"content\":\"\"},"
        "{\"id\":\"d\",\"role\":\"user\",\"content\":\"\",\"timestamp\":\"2024-01-15T10:00:00Z\"},"
        "{\"id\":\"c\",\"role\":\"user\",\"content\":\"\",\"timestamp\":\"2024-01-15T10:00:02Z\"}]"
        "}",
        "dev");
    json_object *legacy = ps__chat_to_legacy(chat);
    char ids[128];
    /* z has no timestamp (0); b and a tie at 10:00:01, e and c at 10:00:02:
     * ties keep the order they were received in, never the ids' (#10.3) */
    assert_string_equal(tu_legacy_message_ids(legacy, ids, sizeof ids), "z,d,b,a,e,c");
    json_object_put(legacy);
    ps__chat_free(chat);
}

static void to_legacy_omits_tombstoned_messages(void **state)
{
    ps_chat *chat = ingest("{\"id\":\"c\",\"messages\":["
                           "{\"id\":\"m1\",\"role\":\"user\",\"content\":\"a\",\"timestamp\":1},"
                           "{\"id\":\"m3\",\"role\":\"user\",\"content\":\"c\",\"timestamp\":3}]}",
                           "dev");
    ps_stamp s = tu_stamp(5, 0, "dev");
    assert_int_equal(ps__chat_append_message(chat, "m2", NULL, &s, 2), PS_OK);
    ps__chat_normalize(chat);
    assert_int_equal(chat->nmessages, 3);
    json_object *legacy = ps__chat_to_legacy(chat);
    char ids[64];
    assert_string_equal(tu_legacy_message_ids(legacy, ids, sizeof ids), "m1,m3");
    json_object_put(legacy);

    /* every message deleted: an empty array, still present */
    ps_chat *gone = ps__chat_new("g");
    assert_int_equal(ps__chat_append_message(gone, "m", NULL, &s, 0), PS_OK);
    legacy = ps__chat_to_legacy(gone);
    json_object *msgs;
    assert_true(json_object_object_get_ex(legacy, "messages", &msgs));
    assert_true(json_object_is_type(msgs, json_type_array));
    assert_int_equal(json_object_array_length(msgs), 0);
    json_object_put(legacy);
    ps__chat_free(gone);
    ps__chat_free(chat);
}

static void to_legacy_always_has_updated_at_lamport(void **state)
{
    ps_chat *chat = ps__chat_new("empty");
    json_object *legacy = ps__chat_to_legacy(chat);
    json_object *lam;
    assert_true(json_object_object_get_ex(legacy, "updatedAtLamport", &lam));
    assert_true(json_object_is_type(lam, json_type_array));
    assert_int_equal(json_object_array_length(lam), 2);
    assert_true(json_object_is_type(json_object_array_get_idx(lam, 0), json_type_int));
    assert_true(json_object_is_type(json_object_array_get_idx(lam, 1), json_type_string));
    assert_string_equal(tu_get_str(legacy, "id"), "empty");
    json_object *msgs;
    assert_true(json_object_object_get_ex(legacy, "messages", &msgs));
    assert_int_equal(json_object_array_length(msgs), 0);
    assert_false(json_object_object_get_ex(legacy, "createdAt", NULL));
    json_object_put(legacy);
    ps__chat_free(chat);

    chat = ingest("{\"id\":\"c\",\"updatedAtLamport\":[12,\"phone\"]}", "laptop");
    legacy = ps__chat_to_legacy(chat);
    json_object *want = tu_json("[12,\"phone\"]");
    assert_true(json_object_equal(json_object_object_get(legacy, "updatedAtLamport"), want));
    json_object_put(want);
    json_object_put(legacy);
    ps__chat_free(chat);
}

/* A chat in display order, without private messages, comes back unchanged
 * (plus an updatedAtLamport if it had none). */
static void legacy_round_trip_is_identity(void **state)
{
    static const char *const chats[] = {
        SEED_CHAT,
        "{\"id\":\"c2\",\"title\":\"t\",\"messages\":[],\"updatedAtLamport\":[3,\"d\"],"
        "\"lastModified\":1705312800000,\"folder\":{\"a\":[1,{\"b\":null}]},\"n\":1.5}",
        "{\"id\":\"c3\",\"messages\":[{\"id\":\"m1\",\"role\":\"user\",\"content\":[{\"type\":"
        "\"text\",\"text\":\"hi\"}],\"timestamp\":1},{\"id\":\"m2\",\"role\":\"assistant\","
        "\"content\":\"yo\",\"timestamp\":2,\"model\":\"x\"}],\"updatedAtLamport\":[1,\"d\"]}",
    };
    for (size_t i = 0; i < sizeof chats / sizeof *chats; i++) {
        json_object *in = tu_json(chats[i]);
        ps_chat *chat = ingest(chats[i], "dev");
        json_object *out = ps__chat_to_legacy(chat);
        /* a chat sent without a tuple gets one (tested above); the rest is equal */
        if (!json_object_object_get_ex(in, "updatedAtLamport", NULL))
            json_object_object_del(out, "updatedAtLamport");
        if (!json_object_equal(in, out))
            fail_msg("in:  %s\nout: %s", ps__json_text(in, NULL), ps__json_text(out, NULL));
        json_object_put(out);
        json_object_put(in);
        ps__chat_free(chat);
    }
}

/* ---- ps__chat_differs_from_sent ---- */

/* differs() below, with `incoming` made from the very tree compared
 * (same_tree: its message values are the sent messages themselves, as in
 * the server's merge, where the comparison may skip looking them up) or
 * from a parse of its own (every value compared by content: the oracle of
 * the first). */
static bool differs_as(const char *stored, const char *sent, bool same_tree)
{
    ps_ingest in = {.device = "me", .now_ms = NOW, .max_skew_ms = 5 * 60 * 1000};
    json_object *sent_json = tu_json(sent);
    ps_chat *merged = stored ? ingest(stored, "other") : NULL;
    ps_chat *incoming = NULL;
    if (same_tree)
        assert_int_equal(ps__chat_from_legacy(sent_json, &in, &incoming), PS_OK);
    else
        incoming = ingest(sent, "me");
    if (merged) {
        bool changed;
        assert_int_equal(ps__chat_merge(merged, incoming, &changed), PS_OK);
    }
    ps_stamp stamp;
    assert_int_equal(ps__legacy_stamp(sent_json, &in, &stamp), PS_OK);
    bool d = ps__chat_differs_from_sent(merged ? merged : incoming, sent_json, &stamp);
    ps__stamp_clear(&stamp);
    ps__chat_free(incoming);
    ps__chat_free(merged);
    json_object_put(sent_json);
    return d;
}

/* The stored chat after `stored` then `sent` were uploaded, and whether the
 * client that sent `sent` lacks something of it; the same whether or not
 * the merge's values are the sent tree's own. */
static bool differs(const char *stored, const char *sent)
{
    bool d = differs_as(stored, sent, false);
    assert_int_equal(differs_as(stored, sent, true), d);
    return d;
}

#define M(id, content) "{\"id\":\"" id "\",\"role\":\"user\",\"content\":\"" content "\"}"

static void differs_not_when_merge_is_what_was_sent(void **state)
{
    assert_false(differs(NULL, SEED_CHAT));
    assert_false(differs(SEED_CHAT, SEED_CHAT));
    /* the stored chat is older than what is sent and has nothing else */
    assert_false(differs(
        "{\"id\":\"c\",\"title\":\"old\",\"lastModified\":1000,\"messages\":[" M("m1", "a") "]}",
        "{\"id\":\"c\",\"title\":\"new\",\"lastModified\":2000,\"messages\":[" M("m1", "a") "]}"));
}

/* createdAt, model, ... left out by the client and not newer: not a reason. */
static void differs_not_for_fields_left_out(void **state)
{
    assert_false(differs("{\"id\":\"c\",\"title\":\"t\",\"model\":\"gpt-4\",\"createdAt\":500,"
                         "\"updatedAt\":900,\"lastModified\":1000}",
                         "{\"id\":\"c\",\"title\":\"t\",\"lastModified\":2000}"));
}

static void differs_when_a_sent_field_merged_differently(void **state)
{
    /* (the stored copies carry updatedAt, which the clients below do not
     * send, so no time field differs) */
    assert_true(differs("{\"id\":\"c\",\"title\":\"theirs\",\"updatedAt\":3000}",
                        "{\"id\":\"c\",\"title\":\"mine\",\"lastModified\":2000}"));
    assert_true(differs("{\"id\":\"c\",\"isArchived\":true,\"updatedAt\":3000}",
                        "{\"id\":\"c\",\"isArchived\":false,\"lastModified\":2000}"));
    assert_false(differs("{\"id\":\"c\",\"title\":\"theirs\",\"updatedAt\":1000}",
                         "{\"id\":\"c\",\"title\":\"mine\",\"lastModified\":2000}"));
}

static void differs_when_a_field_left_out_is_newer(void **state)
{
    assert_true(differs("{\"id\":\"c\",\"model\":\"gpt-5\",\"updatedAt\":3000}",
                        "{\"id\":\"c\",\"title\":\"t\",\"lastModified\":2000}"));
    assert_false(differs("{\"id\":\"c\",\"model\":\"gpt-5\",\"updatedAt\":1000}",
                         "{\"id\":\"c\",\"title\":\"t\",\"lastModified\":2000}"));
}

static void differs_when_a_sent_time_merged_differently(void **state)
{
    /* createdAt is the earliest seen: the client's is later */
    assert_true(differs("{\"id\":\"c\",\"createdAt\":500,\"lastModified\":1000}",
                        "{\"id\":\"c\",\"createdAt\":800,\"lastModified\":2000}"));
    /* the same instant in another notation is not a difference */
    assert_false(differs("{\"id\":\"c\",\"createdAt\":\"2024-01-15T09:00:00Z\","
                         "\"lastModified\":1000}",
                         "{\"id\":\"c\",\"createdAt\":1705309200000,\"lastModified\":2000}"));
    /* a clamped future time: the client must learn the believed one */
    assert_true(differs(NULL, "{\"id\":\"c\",\"lastModified\":\"2024-01-15T12:00:00Z\"}"));
}

static void differs_when_the_merge_has_another_live_message(void **state)
{
    assert_true(differs("{\"id\":\"c\",\"lastModified\":1000,\"messages\":[" M("m0", "x") "]}",
                        "{\"id\":\"c\",\"lastModified\":2000,\"messages\":[" M("m1", "a") "]}"));
}

/* An id sent twice keeps one message: the client's list is not the
 * merge's (each sent value is still one of the merge's values, pointer
 * for pointer, or one of the sent objects). */
static void differs_when_a_message_id_is_sent_twice(void **state)
{
    assert_true(differs(NULL, "{\"id\":\"c\",\"lastModified\":2000,\"messages\":[" M(
                                  "m1", "a") "," M("m1", "b") "]}"));
    assert_true(differs(NULL, "{\"id\":\"c\",\"lastModified\":2000,\"messages\":[" M(
                                  "m1", "a") "," M("m1", "a") "]}"));
    assert_false(differs(NULL, "{\"id\":\"c\",\"lastModified\":2000,\"messages\":[" M(
                                   "m1", "a") "," M("m2", "a") "]}"));
}

static void differs_when_a_sent_message_merged_differently(void **state)
{
    assert_true(differs("{\"id\":\"c\",\"updatedAt\":3000,\"messages\":[" M("m1", "edited") "]}",
                        "{\"id\":\"c\",\"lastModified\":2000,\"messages\":[" M("m1", "a") "]}"));
}

static void differs_not_for_deleted_or_private_messages(void **state)
{
    /* a message tombstone the client does not have is nothing it lacks */
    ps_chat *merged =
        ingest("{\"id\":\"c\",\"lastModified\":2000,\"messages\":[" M("m1", "a") "]}", "me");
    ps_stamp old = tu_stamp(1000, 0, "other");
    assert_int_equal(ps__chat_append_message(merged, "m0", NULL, &old, 0), PS_OK);
    ps__chat_normalize(merged);
    json_object *sent =
        tu_json("{\"id\":\"c\",\"lastModified\":2000,\"messages\":[" M("m1", "a") "]}");
    ps_stamp s = tu_stamp(2000, 0, "me");
    assert_false(ps__chat_differs_from_sent(merged, sent, &s));
    json_object_put(sent);
    ps__chat_free(merged);

    /* a private message the client sent is not expected back */
    assert_false(differs(NULL, "{\"id\":\"c\",\"lastModified\":2000,\"messages\":[" M(
                                   "m1", "a") ",{\"id\":\"p\",\"role\":\"user\",\"content\":\"s\","
                                              "\"isPrivate\":true}]}"));
}

static void differs_for_message_tombstones(void **state)
{
    /* the client deleted m2; so did the merge: nothing to send back */
    assert_false(differs("{\"id\":\"c\",\"lastModified\":1000,\"messages\":[" M("m2", "b") "]}",
                         "{\"id\":\"c\",\"lastModified\":2000,\"messages\":[" M(
                             "m1", "a") ",{\"id\":\"m2\",\"deleted\":true}]}"));
    /* the client deleted m2, but a newer write brought it back */
    assert_true(differs("{\"id\":\"c\",\"updatedAt\":3000,\"messages\":[" M("m2", "b") "]}",
                        "{\"id\":\"c\",\"lastModified\":2000,\"messages\":[" M(
                            "m1", "a") ",{\"id\":\"m2\",\"deleted\":true}]}"));
}

static void differs_when_messages_not_sent_are_newer(void **state)
{
    /* no "messages" key: only writes newer than the client's copy count */
    assert_false(differs("{\"id\":\"c\",\"lastModified\":1000,\"messages\":[" M("m1", "a") "]}",
                         "{\"id\":\"c\",\"title\":\"t\",\"lastModified\":2000}"));
    assert_true(differs("{\"id\":\"c\",\"updatedAt\":3000,\"messages\":[" M("m1", "a") "]}",
                        "{\"id\":\"c\",\"title\":\"t\",\"lastModified\":2000}"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(from_legacy_keeps_everything),
        cmocka_unit_test(from_legacy_keeps_unknown_fields),
        cmocka_unit_test(from_legacy_drops_private_messages),
        cmocka_unit_test(from_legacy_message_tombstones),
        cmocka_unit_test(stamp_time_prefers_last_modified_then_updated_then_created),
        cmocka_unit_test(every_write_carries_the_chat_stamp),
        cmocka_unit_test(clamps_future_times_to_now_plus_skew),
        cmocka_unit_test(device_from_lamport_else_ingest),
        cmocka_unit_test(to_legacy_orders_messages_by_timestamp_then_first_received),
        cmocka_unit_test(to_legacy_omits_tombstoned_messages),
        cmocka_unit_test(to_legacy_always_has_updated_at_lamport),
        cmocka_unit_test(legacy_round_trip_is_identity),
        cmocka_unit_test(differs_not_when_merge_is_what_was_sent),
        cmocka_unit_test(differs_not_for_fields_left_out),
        cmocka_unit_test(differs_when_a_sent_field_merged_differently),
        cmocka_unit_test(differs_when_a_field_left_out_is_newer),
        cmocka_unit_test(differs_when_a_sent_time_merged_differently),
        cmocka_unit_test(differs_when_the_merge_has_another_live_message),
        cmocka_unit_test(differs_when_a_message_id_is_sent_twice),
        cmocka_unit_test(differs_when_a_sent_message_merged_differently),
        cmocka_unit_test(differs_not_for_deleted_or_private_messages),
        cmocka_unit_test(differs_for_message_tombstones),
        cmocka_unit_test(differs_when_messages_not_sent_are_newer),
    };
    return cmocka_run_group_tests_name("chat_codec", tests, NULL, NULL);
}
