/*
 * Request validation (core/validate.h), data-driven: each case is a request
 * body and the exact answer (code, chat index, field) ps__validate_sync_request
 * must give. Covers every rejection in validate.c: chat ids (missing, not a
 * string, empty, over the byte limit, exactly at it, embedded NUL), messages
 * (not an array, not objects, missing or mistyped id/role/content/timestamp;
 * a tombstone {id, deleted: true} needs only its id),
 * the typed chat fields (title, model, provider, currentModel, isArchived,
 * createdAt/updatedAt/lastModified, updatedAtLamport with its 2^53 - 1
 * counter cap), deviceId, clientClock (every shape: counter, tuple, objects),
 * unused top-level members ignored,
 * the three deletion lists, and the chat-count limit (PS_ERR_TOO_LARGE); also
 * the accepted shapes (seed document, today's Polyglot client, nulls for
 * optional fields, unknown fields of any type), the delete-request bodies and
 * ps__valid_id / ps__valid_lamport directly.
 */
#include "test_util.h"
#include "core/validate.h"

typedef struct vcase {
    const char *body;
    ps_code code;
    long chat_index;
    const char *field;
} vcase;

static int check_case(const vcase *c, const ps_limits *lim, size_t i)
{
    json_object *root = tu_json(c->body);
    ps_error err;
    ps_error_clear(&err);
    ps_code rc = ps__validate_sync_request(root, lim, &err);
    int wrong = 0;
    if (rc != c->code) {
        print_error("case %zu: %s\n  got code %d (%s), want %d\n", i, c->body, rc, err.message,
                    c->code);
        wrong = 1;
    } else if (rc != PS_OK && (err.code != rc || err.chat_index != c->chat_index ||
                               strcmp(err.field, c->field) != 0 || err.message[0] == '\0')) {
        print_error("case %zu: %s\n  got [%ld] '%s' (%s), want [%ld] '%s'\n", i, c->body,
                    err.chat_index, err.field, err.message, c->chat_index, c->field);
        wrong = 1;
    }
    json_object_put(root);
    return wrong;
}

static void run(const vcase *cases, size_t n, const ps_limits *lim)
{
    int wrong = 0;
    for (size_t i = 0; i < n; i++)
        wrong += check_case(&cases[i], lim, i);
    assert_int_equal(wrong, 0);
}

#define RUN(lim, ...)                                                                              \
    do {                                                                                           \
        static const vcase cases_[] = {__VA_ARGS__};                                               \
        run(cases_, sizeof cases_ / sizeof *cases_, lim);                                          \
    } while (0)

#define OK(body)                                                                                   \
    {                                                                                              \
        body, PS_OK, -1, ""                                                                        \
    }
#define BAD(body, index, field)                                                                    \
    {                                                                                              \
        body, PS_ERR_INVALID, index, field                                                         \
    }
#define CHAT(inner) "{\"chats\":[" inner "]}"
#define MSG(inner) CHAT("{\"id\":\"c\",\"messages\":[" inner "]}")
#define GOOD_MSG "{\"id\":\"m\",\"role\":\"user\",\"content\":\"hi\"}"

static void defaults(void **state)
{
    ps_limits lim = ps__limits_default();
    assert_int_equal(lim.max_id_bytes, PS_ID_MAX_BYTES);
    assert_true(lim.max_chats >= 1000);
}

static void accepts_valid_requests(void **state)
{
    ps_limits lim = ps__limits_default();
    RUN(&lim, OK("{\"chats\":[]}"),
        /* the seed document's example */
        OK(CHAT(
            "{\"id\":\"uuid-string\",\"title\":\"Chat Title\",\"messages\":[{\"id\":\"msg-uuid\","
            "\"role\":\"user\",\"content\":\"message text\",\"timestamp\":"
            "\"2024-01-15T10:30:00.000Z\"}],\"createdAt\":\"2024-01-15T10:00:00.000Z\","
            "\"updatedAt\":\"2024-01-15T10:30:00.000Z\",\"lastModified\":"
            "\"2024-01-15T10:30:00.000Z\",\"model\":\"gpt-4\",\"provider\":\"openai\","
            "\"currentModel\":\"gpt-4\",\"isArchived\":false}")),
        /* today's Polyglot client */
        OK("{\"deviceId\":\"dev-1\",\"clientClock\":17,\"chats\":[{\"id\":\"c1\",\"title\":\"t\","
           "\"messages\":[{\"id\":\"m1\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\","
           "\"text\":\"hi\"}],\"timestamp\":1705314600000,\"isPrivate\":false}],"
           "\"updatedAtLamport\":[17,\"dev-1\"]}],\"deletions\":[{\"id\":\"c2\",\"lamport\":[16,"
           "\"dev-1\"]}]}"),
        OK("{\"chats\":[],\"deleted\":[\"a\",\"b\"],\"deletionRecords\":[{\"id\":\"c\","
           "\"deletedAtLamport\":[3,\"d\"],\"deletedAt\":\"2024-01-15T10:30:00Z\"}]}"),
        /* optional fields may be null */
        OK(CHAT("{\"id\":\"c\",\"title\":null,\"model\":null,\"provider\":null,"
                "\"currentModel\":null,\"isArchived\":null,\"createdAt\":null,\"updatedAt\":null,"
                "\"lastModified\":null,\"updatedAtLamport\":null,\"messages\":[{\"id\":\"m\","
                "\"role\":\"user\",\"content\":\"x\",\"timestamp\":null}]}")),
        OK("{\"chats\":[],\"deviceId\":null,\"clientClock\":null,\"deleted\":null,"
           "\"deletions\":null,\"deletionRecords\":null}"),
        /* unknown fields are kept whatever their type */
        OK(CHAT("{\"id\":\"c\",\"folder\":{\"a\":[1,2]},\"pinned\":7,\"tags\":[\"x\"]}")),
        OK(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[0,\"d\"],\"createdAt\":1705314600000,"
                "\"lastModified\":1705314600000.5}")),
        OK(MSG("{\"id\":\"m\",\"role\":\"tool\",\"content\":[],\"extra\":{\"any\":true}}")),
        /* a message tombstone needs only its id */
        OK(MSG("{\"id\":\"m\",\"deleted\":true}")));
}

static void rejects_non_object_bodies(void **state)
{
    ps_limits lim = ps__limits_default();
    RUN(&lim, BAD("[]", -1, ""), BAD("\"chats\"", -1, ""), BAD("null", -1, ""),
        BAD("{}", -1, "chats"), BAD("{\"chats\":{}}", -1, "chats"),
        BAD("{\"chats\":null}", -1, "chats"), BAD("{\"chats\":\"x\"}", -1, "chats"),
        BAD("{\"Chats\":[]}", -1, "chats"));
}

static void rejects_bad_chat_ids(void **state)
{
    ps_limits lim = ps__limits_default();
    RUN(&lim, BAD(CHAT("{}"), 0, "id"), BAD(CHAT("{\"title\":\"no id\"}"), 0, "id"),
        BAD(CHAT("{\"id\":42}"), 0, "id"), BAD(CHAT("{\"id\":null}"), 0, "id"),
        BAD(CHAT("{\"id\":[\"x\"]}"), 0, "id"), BAD(CHAT("{\"id\":\"\"}"), 0, "id"),
        BAD(CHAT("{\"id\":\"a\\u0000b\"}"), 0, "id"), BAD(CHAT("{\"id\":\"\\u0000\"}"), 0, "id"),
        BAD(CHAT("1"), 0, ""), BAD(CHAT("\"c\""), 0, ""), BAD(CHAT("[]"), 0, ""),
        BAD(CHAT("null"), 0, ""));
}

/* Builds {"chats":[{"id":"<n bytes>"}]}, the id made of `unit` repeated. */
static json_object *chat_with_id_bytes(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    assert_int_equal(n % u, 0);
    char id[1024];
    assert_true(n < sizeof id);
    for (size_t i = 0; i < n; i += u)
        memcpy(id + i, unit, u);
    id[n] = '\0';
    json_object *chat = json_object_new_object();
    json_object_object_add(chat, "id", json_object_new_string(id));
    json_object *chats = json_object_new_array();
    json_object_array_add(chats, chat);
    json_object *root = json_object_new_object();
    json_object_object_add(root, "chats", chats);
    return root;
}

static void id_length_limit_is_in_bytes(void **state)
{
    ps_limits lim = ps__limits_default();
    static const struct {
        const char *unit;
        size_t bytes;
        ps_code want;
    } cases[] = {{"a", 1, PS_OK},
                 {"a", 255, PS_OK},
                 {"a", 256, PS_OK},
                 {"a", 257, PS_ERR_INVALID},
                 {"a", 600, PS_ERR_INVALID},
                 {"\xc3\xa9", 256, PS_OK} /* 128 characters */,
                 {"\xc3\xa9", 258, PS_ERR_INVALID} /* 129 characters, 258 bytes */};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_object *root = chat_with_id_bytes(cases[i].unit, cases[i].bytes);
        ps_error err;
        ps_error_clear(&err);
        ps_code rc = ps__validate_sync_request(root, &lim, &err);
        if (rc != cases[i].want)
            fail_msg("id of %zu bytes: got %d, want %d", cases[i].bytes, rc, cases[i].want);
        if (rc != PS_OK) {
            assert_int_equal(err.chat_index, 0);
            assert_string_equal(err.field, "id");
        }
        json_object_put(root);
    }
    /* The limit is the caller's. */
    lim.max_id_bytes = 4;
    RUN(&lim, OK(CHAT("{\"id\":\"abcd\"}")), BAD(CHAT("{\"id\":\"abcde\"}"), 0, "id"),
        BAD(MSG("{\"id\":\"12345\",\"role\":\"user\",\"content\":\"\"}"), 0, "messages[0].id"),
        BAD("{\"chats\":[],\"deviceId\":\"devic\"}", -1, "deviceId"),
        BAD("{\"chats\":[],\"deleted\":[\"12345\"]}", -1, "deleted"));
}

static void rejects_bad_typed_fields(void **state)
{
    ps_limits lim = ps__limits_default();
    RUN(&lim, BAD(CHAT("{\"id\":\"c\",\"title\":42}"), 0, "title"),
        BAD(CHAT("{\"id\":\"c\",\"title\":[\"t\"]}"), 0, "title"),
        BAD(CHAT("{\"id\":\"c\",\"title\":false}"), 0, "title"),
        BAD(CHAT("{\"id\":\"c\",\"model\":1}"), 0, "model"),
        BAD(CHAT("{\"id\":\"c\",\"provider\":{}}"), 0, "provider"),
        BAD(CHAT("{\"id\":\"c\",\"currentModel\":true}"), 0, "currentModel"),
        BAD(CHAT("{\"id\":\"c\",\"isArchived\":\"yes\"}"), 0, "isArchived"),
        BAD(CHAT("{\"id\":\"c\",\"isArchived\":0}"), 0, "isArchived"),
        BAD(CHAT("{\"id\":\"c\",\"isArchived\":[]}"), 0, "isArchived"),
        BAD(CHAT("{\"id\":\"c\",\"createdAt\":\"yesterday\"}"), 0, "createdAt"),
        BAD(CHAT("{\"id\":\"c\",\"createdAt\":true}"), 0, "createdAt"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAt\":{}}"), 0, "updatedAt"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAt\":\"2024-13-01T00:00:00Z\"}"), 0, "updatedAt"),
        BAD(CHAT("{\"id\":\"c\",\"lastModified\":[1705314600000]}"), 0, "lastModified"),
        BAD(CHAT("{\"id\":\"c\",\"lastModified\":1e300}"), 0, "lastModified"),
        BAD(CHAT("{\"id\":\"c\",\"lastModified\":\"\"}"), 0, "lastModified"));
}

static void rejects_bad_lamport_tuples(void **state)
{
    ps_limits lim = ps__limits_default();
    RUN(&lim, BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":\"3\"}"), 0, "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":3}"), 0, "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[]}"), 0, "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[3]}"), 0, "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[3,\"d\",1]}"), 0, "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[-1,\"d\"]}"), 0, "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[1.5,\"d\"]}"), 0, "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[\"3\",\"d\"]}"), 0, "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[3,4]}"), 0, "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[3,\"\"]}"), 0, "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[3,null]}"), 0, "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":{\"0\":3,\"1\":\"d\"}}"), 0,
            "updatedAtLamport"),
        /* counters are JavaScript safe integers: at most 2^53 - 1 */
        OK(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[9007199254740991,\"d\"]}")),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[9007199254740992,\"d\"]}"), 0,
            "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[9223372036854775807,\"d\"]}"), 0,
            "updatedAtLamport"),
        BAD(CHAT("{\"id\":\"c\",\"updatedAtLamport\":[18446744073709551615,\"d\"]}"), 0,
            "updatedAtLamport"));
}

static void rejects_bad_messages(void **state)
{
    ps_limits lim = ps__limits_default();
    RUN(&lim, BAD(CHAT("{\"id\":\"c\",\"messages\":{}}"), 0, "messages"),
        BAD(CHAT("{\"id\":\"c\",\"messages\":null}"), 0, "messages"),
        BAD(CHAT("{\"id\":\"c\",\"messages\":\"m\"}"), 0, "messages"),
        BAD(MSG("1"), 0, "messages[0]"), BAD(MSG("[]"), 0, "messages[0]"),
        BAD(MSG("null"), 0, "messages[0]"),
        BAD(MSG(GOOD_MSG "," GOOD_MSG ",\"x\""), 0, "messages[2]"),
        BAD(MSG("{\"role\":\"user\",\"content\":\"hi\"}"), 0, "messages[0].id"),
        BAD(MSG(GOOD_MSG ",{\"id\":7,\"role\":\"user\",\"content\":\"hi\"}"), 0, "messages[1].id"),
        BAD(MSG("{\"id\":\"\",\"role\":\"user\",\"content\":\"hi\"}"), 0, "messages[0].id"),
        BAD(MSG("{\"id\":\"a\\u0000\",\"role\":\"user\",\"content\":\"hi\"}"), 0, "messages[0].id"),
        BAD(MSG("{\"id\":\"m\",\"content\":\"hi\"}"), 0, "messages[0].role"),
        BAD(MSG("{\"id\":\"m\",\"role\":1,\"content\":\"hi\"}"), 0, "messages[0].role"),
        BAD(MSG("{\"id\":\"m\",\"role\":null,\"content\":\"hi\"}"), 0, "messages[0].role"),
        BAD(MSG("{\"id\":\"m\",\"role\":\"user\"}"), 0, "messages[0].content"),
        BAD(MSG("{\"id\":\"m\",\"role\":\"user\",\"content\":null}"), 0, "messages[0].content"),
        BAD(MSG("{\"id\":\"m\",\"role\":\"user\",\"content\":5}"), 0, "messages[0].content"),
        BAD(MSG("{\"id\":\"m\",\"role\":\"user\",\"content\":{}}"), 0, "messages[0].content"),
        BAD(MSG("{\"id\":\"m\",\"role\":\"user\",\"content\":\"\",\"timestamp\":\"noon\"}"), 0,
            "messages[0].timestamp"),
        BAD(MSG("{\"id\":\"m\",\"role\":\"user\",\"content\":\"\",\"timestamp\":true}"), 0,
            "messages[0].timestamp"),
        /* only a real tombstone is exempt from role and content */
        BAD(MSG("{\"deleted\":true}"), 0, "messages[0].id"),
        BAD(MSG("{\"id\":\"m\",\"deleted\":false}"), 0, "messages[0].role"),
        BAD(MSG("{\"id\":\"m\",\"deleted\":\"yes\"}"), 0, "messages[0].role"));
}

/* The index names the chat at fault, not the first one. */
static void names_the_failing_chat(void **state)
{
    ps_limits lim = ps__limits_default();
    RUN(&lim, BAD(CHAT("{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\",\"title\":1}"), 2, "title"),
        BAD(CHAT("{\"id\":\"a\"},{}"), 1, "id"),
        BAD(CHAT("{\"id\":\"a\"},{\"id\":\"b\",\"messages\":[" GOOD_MSG "," GOOD_MSG
                 ",{\"id\":\"x\",\"content\":\"\"}]}"),
            1, "messages[2].role"),
        /* the first fault is reported */
        BAD(CHAT("{\"id\":\"a\",\"title\":1},{}"), 0, "title"));
}

static void message_text_names_chat_and_field(void **state)
{
    ps_limits lim = ps__limits_default();
    json_object *root =
        tu_json(CHAT("{\"id\":\"0\"},{\"id\":\"1\"},{\"id\":\"2\"},{\"id\":\"3\","
                     "\"messages\":[" GOOD_MSG "," GOOD_MSG ",{\"id\":\"x\",\"content\":\"\"}]}"));
    ps_error err;
    ps_error_clear(&err);
    assert_int_equal(ps__validate_sync_request(root, &lim, &err), PS_ERR_INVALID);
    assert_int_equal(err.chat_index, 3);
    assert_string_equal(err.field, "messages[2].role");
    assert_non_null(strstr(err.message, "chats[3].messages[2].role"));
    json_object_put(root);
}

static void rejects_bad_request_members(void **state)
{
    ps_limits lim = ps__limits_default();
    RUN(&lim, BAD("{\"chats\":[],\"deviceId\":3}", -1, "deviceId"),
        BAD("{\"chats\":[],\"deviceId\":\"\"}", -1, "deviceId"),
        BAD("{\"chats\":[],\"deviceId\":[\"d\"]}", -1, "deviceId"),
        BAD("{\"chats\":[],\"clientClock\":-1}", -1, "clientClock"),
        BAD("{\"chats\":[],\"clientClock\":\"3\"}", -1, "clientClock"),
        BAD("{\"chats\":[],\"clientClock\":1.5}", -1, "clientClock"),
        BAD("{\"chats\":[],\"clientClock\":9007199254740992}", -1, "clientClock"),
        OK("{\"chats\":[],\"clientClock\":9007199254740991}"));
}

/* #10.1: every clientClock shape clients send is accepted; what the server
 * observes of it (the counters) must be valid counters, so a clock that says
 * nothing usable is refused, naming clientClock. */
static void client_clock_shapes(void **state)
{
    ps_limits lim = ps__limits_default();
#define CC(json) "{\"chats\":[],\"clientClock\":" json "}"
    RUN(&lim, OK(CC("0")), OK(CC("[3,\"d\"]")), OK(CC("[9007199254740991,\"d\"]")),
        OK(CC("{\"lamport\":4,\"deviceId\":\"d\"}")),
        OK(CC("{\"deviceId\":\"d\",\"localCounter\":0,\"observedCounter\":0}")),
        OK(CC("{\"deviceId\":\"d\",\"localCounter\":6,\"observedCounter\":8,\"extra\":[1]}")),
        OK(CC("{\"observedCounter\":8}")),
        /* the tuple must be a tuple: counter then device id */
        BAD(CC("[3]"), -1, "clientClock"), BAD(CC("[\"d\",3]"), -1, "clientClock"),
        BAD(CC("[-1,\"d\"]"), -1, "clientClock"), BAD(CC("[3,\"\"]"), -1, "clientClock"),
        BAD(CC("[9007199254740992,\"d\"]"), -1, "clientClock"),
        /* an object: at least one counter, each valid; deviceId an id */
        BAD(CC("{}"), -1, "clientClock"), BAD(CC("{\"deviceId\":\"d\"}"), -1, "clientClock"),
        BAD(CC("{\"lamport\":\"4\",\"deviceId\":\"d\"}"), -1, "clientClock"),
        BAD(CC("{\"deviceId\":\"d\",\"localCounter\":-1,\"observedCounter\":0}"), -1,
            "clientClock"),
        BAD(CC("{\"deviceId\":\"d\",\"localCounter\":1,\"observedCounter\":1.5}"), -1,
            "clientClock"),
        BAD(CC("{\"deviceId\":\"d\",\"localCounter\":1,\"observedCounter\":9007199254740992}"), -1,
            "clientClock"),
        BAD(CC("{\"deviceId\":7,\"localCounter\":1}"), -1, "clientClock"),
        BAD(CC("true"), -1, "clientClock"), BAD(CC("\"5\""), -1, "clientClock"));
#undef CC
}

/* #10.1: a top-level member the server does not use is ignored, whatever its
 * type; Polyglot's page-load body {chats} with lastMutationLamport records. */
static void unused_top_level_members_ignored(void **state)
{
    ps_limits lim = ps__limits_default();
    RUN(&lim, OK("{\"chats\":[],\"since\":\"x\",\"version\":{\"a\":[1,null]},\"n\":-1.5}"),
        OK("{\"chats\":[{\"id\":\"c\",\"title\":\"t\",\"createdAt\":\"2026-12-02T12:14:57.397Z\","
           "\"modelHistory\":[],\"isArchived\":false,\"lastMutationLamport\":{\"lamport\":5,"
           "\"deviceId\":\"A\"},\"messages\":[]}]}"),
        /* chats and deletions stay strict */
        BAD("{\"since\":1}", -1, "chats"),
        BAD("{\"chats\":[],\"junk\":1,\"deletions\":[{\"lamport\":[1,\"d\"]}]}", -1, "deletions"));
}

static void rejects_deletion_lists_of_wrong_shape(void **state)
{
    ps_limits lim = ps__limits_default();
    RUN(&lim, BAD("{\"chats\":[],\"deleted\":\"a\"}", -1, "deleted"),
        BAD("{\"chats\":[],\"deleted\":{\"a\":1}}", -1, "deleted"),
        BAD("{\"chats\":[],\"deleted\":[\"a\",1]}", -1, "deleted"),
        BAD("{\"chats\":[],\"deleted\":[\"\"]}", -1, "deleted"),
        BAD("{\"chats\":[],\"deleted\":[{\"id\":\"a\"}]}", -1, "deleted"),
        BAD("{\"chats\":[],\"deletions\":{}}", -1, "deletions"),
        BAD("{\"chats\":[],\"deletions\":[\"a\"]}", -1, "deletions"),
        BAD("{\"chats\":[],\"deletions\":[{}]}", -1, "deletions"),
        BAD("{\"chats\":[],\"deletions\":[{\"lamport\":[1,\"d\"]}]}", -1, "deletions"),
        BAD("{\"chats\":[],\"deletions\":[{\"id\":5}]}", -1, "deletions"),
        BAD("{\"chats\":[],\"deletions\":[{\"id\":\"a\",\"lamport\":5}]}", -1, "deletions"),
        BAD("{\"chats\":[],\"deletions\":[{\"id\":\"a\",\"lamport\":[-1,\"d\"]}]}", -1,
            "deletions"),
        BAD("{\"chats\":[],\"deletions\":[{\"id\":\"a\",\"deletedAt\":\"noon\"}]}", -1,
            "deletions"),
        BAD("{\"chats\":[],\"deletionRecords\":[{\"id\":\"a\",\"deletedAtLamport\":[1]}]}", -1,
            "deletionRecords"),
        BAD("{\"chats\":[],\"deletionRecords\":[{\"deletedAtLamport\":[1,\"d\"]}]}", -1,
            "deletionRecords"),
        BAD("{\"chats\":[],\"deletionRecords\":\"a\"}", -1, "deletionRecords"),
        BAD("{\"chats\":[],\"deletions\":[{\"id\":\"a\",\"lamport\":[9007199254740992,"
            "\"d\"]}]}",
            -1, "deletions"),
        OK("{\"chats\":[],\"deletions\":[{\"id\":\"a\"},{\"id\":\"b\",\"lamport\":null}]}"));
}

static void chat_count_limit(void **state)
{
    ps_limits lim = ps__limits_default();
    lim.max_chats = 2;
    static const vcase cases[] = {
        OK(CHAT("{\"id\":\"a\"},{\"id\":\"b\"}")),
        {CHAT("{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\"}"), PS_ERR_TOO_LARGE, -1, "chats"},
        /* checked before the chats themselves */
        {CHAT("{},{},{}"), PS_ERR_TOO_LARGE, -1, "chats"},
        {"{\"chats\":[],\"deleted\":[\"a\",\"b\",\"c\"]}", PS_ERR_TOO_LARGE, -1, "deleted"},
        {"{\"chats\":[],\"deletions\":[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\"}]}",
         PS_ERR_TOO_LARGE, -1, "deletions"},
        {"{\"chats\":[],\"deletionRecords\":[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\"}]}",
         PS_ERR_TOO_LARGE, -1, "deletionRecords"},
    };
    run(cases, sizeof cases / sizeof *cases, &lim);
}

static void delete_requests(void **state)
{
    ps_limits lim = ps__limits_default();
    static const struct {
        const char *body;
        bool many;
        ps_code code;
        const char *field;
    } cases[] = {
        {"{\"chatId\":\"a\"}", false, PS_OK, ""},
        {"{}", false, PS_ERR_INVALID, "chatId"},
        {"{\"chatId\":1}", false, PS_ERR_INVALID, "chatId"},
        {"{\"chatId\":\"\"}", false, PS_ERR_INVALID, "chatId"},
        {"[\"a\"]", false, PS_ERR_INVALID, ""},
        {"{\"chatIds\":[\"a\",\"b\"]}", true, PS_OK, ""},
        {"{\"chatIds\":[]}", true, PS_OK, ""},
        {"{}", true, PS_ERR_INVALID, "chatIds"},
        {"{\"chatIds\":null}", true, PS_ERR_INVALID, "chatIds"},
        {"{\"chatIds\":\"a\"}", true, PS_ERR_INVALID, "chatIds"},
        {"{\"chatIds\":[\"a\",2]}", true, PS_ERR_INVALID, "chatIds"},
        {"{\"chatId\":\"a\"}", true, PS_ERR_INVALID, "chatIds"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_object *root = tu_json(cases[i].body);
        ps_error err;
        ps_error_clear(&err);
        ps_code rc = ps__validate_delete_request(root, cases[i].many, &lim, &err);
        if (rc != cases[i].code)
            fail_msg("%s (many=%d): got %d, want %d", cases[i].body, cases[i].many, rc,
                     cases[i].code);
        if (rc != PS_OK)
            assert_string_equal(err.field, cases[i].field);
        json_object_put(root);
    }
    lim.max_chats = 1;
    json_object *root = tu_json("{\"chatIds\":[\"a\",\"b\"]}");
    assert_int_equal(ps__validate_delete_request(root, true, &lim, NULL), PS_ERR_TOO_LARGE);
    json_object_put(root);
}

static void valid_id_and_lamport(void **state)
{
    ps_limits lim = ps__limits_default();
    json_object *v = tu_json("[\"a\",\"\",1,null,\"a\\u0000\",[3,\"d\"],[0,\"d\"],[-3,\"d\"],"
                             "[3,\"\"],[3],[\"3\",\"d\"],[3,\"d\",\"e\"]]");
    assert_true(ps__valid_id(json_object_array_get_idx(v, 0), &lim));
    assert_false(ps__valid_id(json_object_array_get_idx(v, 1), &lim));
    assert_false(ps__valid_id(json_object_array_get_idx(v, 2), &lim));
    assert_false(ps__valid_id(json_object_array_get_idx(v, 3), &lim));
    assert_false(ps__valid_id(json_object_array_get_idx(v, 4), &lim));
    assert_true(ps__valid_lamport(json_object_array_get_idx(v, 5), &lim));
    assert_true(ps__valid_lamport(json_object_array_get_idx(v, 6), &lim));
    for (size_t i = 7; i < 12; i++)
        if (ps__valid_lamport(json_object_array_get_idx(v, i), &lim))
            fail_msg("accepted lamport %s", ps__json_text(json_object_array_get_idx(v, i), NULL));
    assert_false(ps__valid_lamport(json_object_array_get_idx(v, 0), &lim));
    json_object_put(v);
}

/* ps__validate_chat on its own reports the index it is given. */
static void validate_chat_uses_given_index(void **state)
{
    ps_limits lim = ps__limits_default();
    json_object *chat = tu_json("{\"id\":\"c\",\"isArchived\":\"no\"}");
    ps_error err;
    ps_error_clear(&err);
    assert_int_equal(ps__validate_chat(chat, 41, &lim, &err), PS_ERR_INVALID);
    assert_int_equal(err.chat_index, 41);
    assert_string_equal(err.field, "isArchived");
    assert_non_null(strstr(err.message, "chats[41]"));
    json_object_put(chat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(accepts_valid_requests),
        cmocka_unit_test(rejects_non_object_bodies),
        cmocka_unit_test(rejects_bad_chat_ids),
        cmocka_unit_test(id_length_limit_is_in_bytes),
        cmocka_unit_test(rejects_bad_typed_fields),
        cmocka_unit_test(rejects_bad_lamport_tuples),
        cmocka_unit_test(rejects_bad_messages),
        cmocka_unit_test(names_the_failing_chat),
        cmocka_unit_test(message_text_names_chat_and_field),
        cmocka_unit_test(rejects_bad_request_members),
        cmocka_unit_test(client_clock_shapes),
        cmocka_unit_test(unused_top_level_members_ignored),
        cmocka_unit_test(rejects_deletion_lists_of_wrong_shape),
        cmocka_unit_test(chat_count_limit),
        cmocka_unit_test(delete_requests),
        cmocka_unit_test(valid_id_and_lamport),
        cmocka_unit_test(validate_chat_uses_given_index),
    };
    return cmocka_run_group_tests_name("validate", tests, NULL, NULL);
}
