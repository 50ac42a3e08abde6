/*
 * The stored form of a chat (ps__chat_state_to_json / ps__chat_state_from_json
 * in core/chat_codec.h): a round trip, through text as the store does it,
 * preserves every register, stamp, tombstone (with the tuple clients are
 * shown for it), message tombstone, time field and Lamport tuple,
 * so a stored chat merges exactly as it did in memory; and a corrupt state
 * (wrong shapes, wrong types, nulls where strings belong) is refused with
 * PS_ERR_STORE instead of being half-loaded or crashing.
 */
#include "test_util.h"
#include "core/merge.h"

/* state -> text -> parse -> chat -> state, and the two states compared. */
static ps_chat *round_trip(const ps_chat *chat)
{
    json_object *st = ps__chat_state_to_json(chat);
    assert_non_null(st);
    const char *text = ps__json_text(st, NULL);
    json_object *parsed = NULL;
    assert_int_equal(ps__json_parse(text, strlen(text), 10000, &parsed, NULL), PS_OK);
    ps_chat *back = NULL;
    ps_error err;
    ps_error_clear(&err);
    assert_int_equal(ps__chat_state_from_json(parsed, &back, &err), PS_OK);
    assert_non_null(back);
    json_object *st2 = ps__chat_state_to_json(back);
    if (!json_object_equal(st, st2))
        fail_msg("state changed in a round trip:\n%s\n%s", text, ps__json_text(st2, NULL));
    json_object_put(st2);
    json_object_put(parsed);
    json_object_put(st);
    return back;
}

static ps_chat *rich_chat(void)
{
    ps_chat *chat = tu_from_legacy(
        "{\"id\":\"rich\",\"title\":\"T\",\"model\":null,\"folder\":{\"a\":[1,2.5,\"x\"]},"
        "\"isArchived\":true,\"createdAt\":\"2024-01-15T09:00:00+01:00\",\"updatedAt\":"
        "1705309800000,"
        "\"lastModified\":\"2024-01-15T09:59:00.123Z\",\"updatedAtLamport\":[42,\"phone\"],"
        "\"messages\":[{\"id\":\"m1\",\"role\":\"user\",\"content\":\"hi\",\"timestamp\":"
        "\"2024-01-15T09:01:00Z\"},{\"id\":\"m2\",\"role\":\"assistant\",\"content\":[{\"type\":"
        "\"text\",\"text\":\"yo\"}],\"timestamp\":1705309300000}]}",
        "laptop", tu_t(0));
    /* a field written by another device at another time */
    bool changed;
    ps_stamp s = tu_stamp(tu_t(-10), 3, "tablet");
    assert_int_equal(
        ps__chat_put_field(chat, "provider", json_object_new_string("openai"), &s, &changed), PS_OK);
    /* a deleted message and a whole-chat deletion */
    ps_stamp del = tu_stamp(tu_t(-5), 0, "tablet");
    assert_int_equal(ps__chat_append_message(chat, "m0", NULL, &del, 7), PS_OK);
    ps__chat_normalize(chat);
    ps_stamp gone = tu_stamp(tu_t(-2), 9, "tablet");
    ps_lamport shown = {9, "tablet"};
    assert_int_equal(ps__chat_delete(chat, &gone, &shown, &changed), PS_OK);
    assert_true(changed);
    return chat;
}

static void round_trip_preserves_everything(void **state)
{
    ps_chat *chat = rich_chat();
    ps_chat *back = round_trip(chat);
    assert_string_equal(back->id, "rich");
    assert_int_equal(back->nfields, chat->nfields);
    assert_int_equal(back->nmessages, 3);
    assert_null(ps__chat_message(back, "m0")->value);
    assert_int_equal(ps__chat_message(back, "m0")->order_ts, 7);
    assert_int_equal(ps__chat_message(back, "m2")->order_ts, 1705309300000LL);
    assert_int_equal(ps__chat_message(back, "m1")->stamp.lamport, 42);
    assert_string_equal(ps__chat_message(back, "m1")->stamp.device, "phone");
    const ps_field *p = ps__chat_field(back, "provider");
    assert_non_null(p);
    assert_int_equal(p->stamp.ts, tu_t(-10));
    assert_string_equal(p->stamp.device, "tablet");
    assert_non_null(ps__chat_field(back, "model"));
    assert_null(ps__chat_field(back, "model")->value);
    assert_true(back->has_touched);
    assert_true(back->has_tombstone);
    assert_int_equal(back->tombstone.ts, tu_t(-2));
    assert_int_equal(back->tombstone.lamport, 9);
    assert_string_equal(back->tombstone.device, "tablet");
    assert_int_equal(back->deleted_lamport.counter, 9);
    assert_string_equal(back->deleted_lamport.id, "tablet");
    assert_int_equal(back->created_at.ms, tu_t(-120));
    assert_string_equal(json_object_get_string(back->created_at.value),
                        "2024-01-15T09:00:00+01:00");
    assert_int_equal(back->updated_at.ms, 1705309800000LL);
    assert_true(json_object_is_type(back->updated_at.value, json_type_int));
    assert_int_equal(back->last_modified.ms, tu_t(-1) + 123);
    assert_int_equal(back->lamport.counter, 42);
    assert_string_equal(back->lamport.id, "phone");
    assert_int_equal(ps__chat_is_live(back), ps__chat_is_live(chat));
    assert_true(tu_same_state(chat, back));

    /* the reloaded chat merges exactly as the original */
    ps_chat *other = tu_from_legacy("{\"id\":\"rich\",\"title\":\"U\",\"lastModified\":"
                                    "\"2024-01-15T09:59:30Z\",\"messages\":[{\"id\":\"m3\","
                                    "\"role\":\"user\",\"content\":\"new\"}]}",
                                    "tablet", tu_t(0));
    bool c1, c2;
    assert_int_equal(ps__chat_merge(chat, other, &c1), PS_OK);
    assert_int_equal(ps__chat_merge(back, other, &c2), PS_OK);
    assert_true(c1);
    assert_true(c2);
    assert_true(tu_same_state(chat, back));
    assert_true(ps__chat_is_live(back));
    ps__chat_free(other);
    ps__chat_free(back);
    ps__chat_free(chat);
}

static void round_trip_of_minimal_chats(void **state)
{
    ps_chat *empty = ps__chat_new("e");
    ps_chat *back = round_trip(empty);
    assert_false(back->has_touched);
    assert_false(back->has_tombstone);
    assert_int_equal(back->nfields, 0);
    assert_int_equal(back->nmessages, 0);
    assert_null(back->created_at.value);
    assert_int_equal(back->lamport.counter, 0);
    assert_false(ps__chat_is_live(back));
    ps__chat_free(back);

    bool changed;
    ps_stamp s = tu_stamp(5, 0, "");
    ps_lamport shown = {77, "server"};
    assert_int_equal(ps__chat_delete(empty, &s, &shown, &changed), PS_OK);
    back = round_trip(empty);
    assert_true(back->has_tombstone);
    assert_int_equal(back->tombstone.ts, 5);
    assert_int_equal(back->deleted_lamport.counter, 77);
    assert_string_equal(back->deleted_lamport.id, "server");
    ps__chat_free(back);
    ps__chat_free(empty);

    ps_chat *odd = tu_from_legacy(
        "{\"id\":\"\xe6\x97\xa5 \\\"q\\\" \\\\\",\"t\\u00e9\":\"\\u0001\"}", NULL, tu_t(0));
    back = round_trip(odd);
    assert_string_equal(back->id, "\xe6\x97\xa5 \"q\" \\");
    ps__chat_free(back);
    ps__chat_free(odd);
}

typedef struct corrupt_case {
    const char *state;
    const char *why;
} corrupt_case;

static void check_corrupt(const corrupt_case *c)
{
    json_object *st = tu_json(c->state);
    ps_chat *chat = (ps_chat *)1;
    ps_error err;
    ps_error_clear(&err);
    ps_code rc = ps__chat_state_from_json(st, &chat, &err);
    if (rc != PS_ERR_STORE || chat != NULL || err.code != PS_ERR_STORE) {
        if (rc == PS_OK)
            ps__chat_free(chat);
        json_object_put(st);
        fail_msg("%s: %s: got %d, want PS_ERR_STORE and no chat", c->why, c->state, rc);
    }
    json_object_put(st);
}

static void refuses_corrupt_shapes(void **state)
{
    static const corrupt_case cases[] = {
        {"{}", "empty"},
        {"[]", "not an object"},
        {"{\"f\":{},\"m\":[]}", "no id"},
        {"{\"id\":7,\"f\":{},\"m\":[]}", "id not a string"},
        {"{\"id\":\"x\",\"m\":[]}", "no f"},
        {"{\"id\":\"x\",\"f\":[],\"m\":[]}", "f not an object"},
        {"{\"id\":\"x\",\"f\":{},\"m\":5}", "m not an array"},
        {"{\"id\":\"x\",\"f\":{},\"m\":{}}", "m not an array"},
        {"{\"id\":\"x\",\"f\":{\"a\":1},\"m\":[]}", "field not a pair"},
        {"{\"id\":\"x\",\"f\":{\"a\":[1]},\"m\":[]}", "field pair too short"},
        {"{\"id\":\"x\",\"f\":{\"a\":[1,[0,0]]},\"m\":[]}", "field stamp too short"},
        {"{\"id\":\"x\",\"f\":{\"a\":[1,5]},\"m\":[]}", "field stamp not an array"},
        {"{\"id\":\"x\",\"f\":{},\"m\":[1]}", "message row not an array"},
        {"{\"id\":\"x\",\"f\":{},\"m\":[[\"m\",{},[0,0,\"d\"]]]}", "message row too short"},
        {"{\"id\":\"x\",\"f\":{},\"m\":[[\"m\",{},5,0]]}", "message stamp not an array"},
        {"{\"id\":\"x\",\"f\":{},\"m\":[],\"t\":5}", "touched stamp not an array"},
        {"{\"id\":\"x\",\"f\":{},\"m\":[],\"d\":[1,2]}", "tombstone stamp too short"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_corrupt(&cases[i]);
}

/* A null or a number where the state has a string (a device, a message id)
 * is corrupt too; it must not reach strdup() as NULL. */
static void refuses_nulls_where_strings_belong(void **state)
{
    static const corrupt_case cases[] = {
        {"{\"id\":\"x\",\"f\":{\"a\":[1,[0,0,null]]},\"m\":[]}", "null field device"},
        {"{\"id\":\"x\",\"f\":{},\"m\":[[\"m\",{},[0,0,null],0]]}", "null message device"},
        {"{\"id\":\"x\",\"f\":{},\"m\":[[null,{},[0,0,\"d\"],0]]}", "null message id"},
        {"{\"id\":\"x\",\"f\":{},\"m\":[],\"d\":[0,0,null]}", "null tombstone device"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_corrupt(&cases[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_preserves_everything),
        cmocka_unit_test(round_trip_of_minimal_chats),
        cmocka_unit_test(refuses_corrupt_shapes),
        /* last: a failure here is a crash */
        cmocka_unit_test(refuses_nulls_where_strings_belong),
    };
    return cmocka_run_group_tests_name("chat_state", tests, NULL, NULL);
}
