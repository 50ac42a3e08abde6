/*
 * The content hash's certificate (server/content_hash.h,
 * ps_content_hash_checked): a legacy chat it certifies valid is not parsed
 * and validated before its merge (sync_legacy.c), so it must be one that
 * ps__json_parse reads and ps__validate_chat passes. That pair is the
 * oracle, asked of every chat here:
 * - hand-written chats break each rule of validate.c in each way, or keep
 *   to it in the rare ways the certificate leaves out; each says which, so
 *   a certificate lost where it was given fails too;
 * - seeded random edits of valid chats' trees (a value replaced by one of
 *   another type, a key dropped or added, values swapped between keys or
 *   copied across, nulls put in; the result written plain, spaced or
 *   pretty, some keys spelt with escapes);
 * - and it must be given where it matters: every chat of the benchmark's
 *   generator (bench/src/gen.c, linked in) and every valid chat the
 *   Polyglot app sent (../shared/fixtures/polyglot) is certified.
 * Everywhere, the copied and in-place entries agree, and give the hash and
 * id ps_content_hash gives. PS_PROPERTY_SEED / PS_PROPERTY_CASES change
 * the random edits.
 */
#include "test_util.h"
#include "core/validate.h"
#include "gen.h"
#include "property_rng.h"
#include "server/content_hash.h"

#include <dirent.h>
#include <stdlib.h>

/* As sync_legacy.c reads a chat: two levels below the body's root. */
#define DEPTH (PS_JSON_MAX_DEPTH - 2)
/* Room for ids longer than any limit here: an id over max_id_bytes still
 * has a hash, and only the certificate refuses it. */
#define ID_ROOM 600

/* ps__json_parse and ps__validate_chat with max_id_bytes: PS_OK, or
 * *why says what is wrong. */
static bool oracle_passes(const char *text, size_t n, size_t max_id, char *why, size_t why_size)
{
    json_object *chat = NULL;
    ps_error err;
    ps_error_clear(&err);
    ps_limits lim = ps__limits_default();
    lim.max_id_bytes = max_id;
    bool ok = ps__json_parse(text, n, DEPTH, &chat, &err) == PS_OK &&
              ps__validate_chat(chat, 0, &lim, &err) == PS_OK;
    json_object_put(chat);
    snprintf(why, why_size, "%s", ok ? "" : err.message);
    return ok;
}

/* Whether `text` is certified, asked copied and in place (exactly
 * PS_CONTENT_HASH_PADDING bytes of anything after it: ASan catches a read
 * further); both agree with each other and, in verdict, hash and id, with
 * ps_content_hash. */
static bool certified(const char *text, size_t n, size_t max_id)
{
    uint64_t copied = 0, in_place = 0, plain = 0;
    char id_copied[ID_ROOM], id_in_place[ID_ROOM], id_plain[ID_ROOM];
    bool valid_copied = true, valid_in_place = true; /* each call must set it */
    bool a =
        ps_content_hash_checked(text, n, DEPTH, max_id, &copied, id_copied, ID_ROOM, &valid_copied);
    char *lying = malloc(n + PS_CONTENT_HASH_PADDING);
    assert_non_null(lying);
    memcpy(lying, text, n);
    for (size_t k = 0; k < PS_CONTENT_HASH_PADDING; k++)
        lying[n + k] = "\"\\}]1 x"[k % 7];
    bool b = ps_content_hash_in_place_checked(lying, n, DEPTH, max_id, &in_place, id_in_place,
                                              ID_ROOM, &valid_in_place);
    free(lying);
    bool c = ps_content_hash(text, n, DEPTH, &plain, id_plain, ID_ROOM);
    if (a != c || b != c)
        fail_msg("hashed %d copied, %d in place, %d by ps_content_hash: %.*s", a, b, c, (int)n,
                 text);
    if (c && (copied != plain || in_place != plain || strcmp(id_copied, id_plain) != 0 ||
              strcmp(id_in_place, id_plain) != 0))
        fail_msg("another hash or id than ps_content_hash's: %.*s", (int)n, text);
    if (valid_copied != valid_in_place)
        fail_msg("certified %d copied, %d in place: %.*s", valid_copied, valid_in_place, (int)n,
                 text);
    if (valid_copied && !c)
        fail_msg("certified without a hash: %.*s", (int)n, text);
    return valid_copied;
}

/* The certificate of `text`, failing the test when it certifies what the
 * oracle refuses; *valid: the oracle's verdict. */
static bool judge(const char *text, size_t n, size_t max_id, bool *valid)
{
    char why[256];
    bool cert = certified(text, n, max_id);
    bool ok = oracle_passes(text, n, max_id, why, sizeof why);
    if (cert && !ok)
        fail_msg("certified, but ps__validate_chat says \"%s\" (max_id_bytes %zu): %.*s", why,
                 max_id, (int)n, text);
    if (valid)
        *valid = ok;
    return cert;
}

/* ---- hand-written chats ---- */

/* What a hand-written chat is: certified; invalid (so never certified);
 * or valid in a rare way the certificate leaves out (content_hash.h). */
typedef enum verdict { YES, INVALID, RARE } verdict;

typedef struct hand_case {
    verdict expect;
    const char *chat; /* ' stands for " */
} hand_case;

/* `q` with ' for " (the cases read better so). */
static void unquote(const char *q, char *out, size_t size)
{
    size_t n = strlen(q);
    assert_true(n < size);
    for (size_t k = 0; k <= n; k++)
        out[k] = q[k] == '\'' ? '"' : q[k];
}

static void expect_verdict(verdict expect, const char *text, size_t max_id)
{
    bool valid;
    bool cert = judge(text, strlen(text), max_id, &valid);
    verdict got = cert ? YES : valid ? RARE : INVALID;
    static const char *const names[] = {"certified", "invalid", "valid, not certified"};
    if (got != expect)
        fail_msg("%s, expected %s (max_id_bytes %zu): %s", names[got], names[expect], max_id, text);
}

static void run_cases(const hand_case *cases, size_t n, size_t max_id)
{
    char text[2048];
    for (size_t k = 0; k < n; k++) {
        unquote(cases[k].chat, text, sizeof text);
        expect_verdict(cases[k].expect, text, max_id);
    }
}

#define RUN(cases, max_id) run_cases(cases, sizeof cases / sizeof *cases, max_id)

/* `value` as each of `fields`, in {"id":"c1", ...} (root) or in a message
 * {"id":"m1","role":"user","content":"x", ...} (message). */
static void run_field_values(const char *const *fields, size_t nfields, const hand_case *values,
                             size_t nvalues, bool in_message)
{
    char text[2048], value[1024];
    for (size_t f = 0; f < nfields; f++)
        for (size_t v = 0; v < nvalues; v++) {
            unquote(values[v].chat, value, sizeof value);
            if (in_message)
                snprintf(text, sizeof text,
                         "{\"id\":\"c1\",\"messages\":[{\"id\":\"m1\",\"role\":\"user\","
                         "\"content\":\"x\",\"%s\":%s}]}",
                         fields[f], value);
            else
                snprintf(text, sizeof text, "{\"id\":\"c1\",\"%s\":%s}", fields[f], value);
            expect_verdict(values[v].expect, text, PS_ID_MAX_BYTES);
        }
}

#define RUN_FIELDS(fields, values, in_message)                                                     \
    run_field_values(fields, sizeof fields / sizeof *fields, values,                               \
                     sizeof values / sizeof *values, in_message)

static void the_root_and_its_id(void **state)
{
    (void)state;
    static const hand_case cases[] = {
        {YES, "{'id':'c1'}"},
        {YES, "{'id':'c1','messages':[]}"},
        {YES, "{'\\u0069d':'c1'}"}, /* the key "id", escaped */
        {YES, "{'id':'\\u00631'}"}, /* the id "c1", escaped */
        {YES, "{'id':'caf\\u00e9 \\ud83d\\ude00'}"},
        {YES, "{'title':'t','id':'c1','other':{'id':7}}"},
        {INVALID, "{'id':''}"},
        {INVALID, "{'id':'a\\u0000b'}"},
        {INVALID, "{'id':'\\u0000'}"},
        {INVALID, "{'id':1}"},
        {INVALID, "{'id':null}"},
        {INVALID, "{'id':true}"},
        {INVALID, "{'id':['c1']}"},
        {INVALID, "{'id':{'id':'c1'}}"},
        {INVALID, "{'title':'t'}"},
        {INVALID, "{'x':{'id':'c1'}}"},
        {INVALID, "{}"},
        {INVALID, "[{'id':'c1'}]"},
        {INVALID, "'c1'"},
        {INVALID, "null"},
        /* a key twice: json-c keeps the last value, the walk gives no hash */
        {INVALID, "{'id':'c1','title':'a','title':1}"},
        {RARE, "{'id':'c1','title':1,'title':'a'}"},
        {RARE, "{'id':1,'id':'c1'}"},
        {INVALID, "{'id':'c1','id':''}"},
        /* keys that are validate.c's once unescaped */
        {INVALID, "{'id':'c1','t\\u0069tle':1}"},
        {INVALID, "{'id':'c1','m\\u0065ssages':null}"},
        {INVALID, "{'id':'c1','upd\\u0061tedAtLamport':[-1,'d']}"},
        {YES, "{'id':'c1','t\\u0069tle':'t','m\\u0065ssages':[]}"},
        /* a key cut at an escaped NUL is another key to json-c: no hash */
        {INVALID, "{'id':'c1','title\\u0000x':1}"},
        {RARE, "{'id':'c1','x\\u0000y':1}"},
    };
    RUN(cases, PS_ID_MAX_BYTES);
}

/* An id of exactly max_id_bytes bytes, and one more, in each place. */
static void ids_up_to_the_limit(void **state)
{
    (void)state;
    static const hand_case four[] = {
        {YES, "{'id':'abcd','updatedAtLamport':[1,'abcd'],'messages':[{'id':'abcd','role':'u',"
              "'content':'x'}]}"},
        {YES, "{'id':'ab\\u0063d'}"},
        {INVALID, "{'id':'abcde'}"},
        {INVALID, "{'id':'ab\\u0063de'}"},
        {INVALID, "{'id':'c1','updatedAtLamport':[1,'abcde']}"},
        {INVALID, "{'id':'c1','messages':[{'id':'abcde','role':'u','content':'x'}]}"},
        {INVALID, "{'id':'c1','messages':[{'id':'abcde','deleted':true}]}"},
        /* é is two bytes: 5 in all */
        {INVALID, "{'id':'abc\\u00e9'}"},
        {YES, "{'id':'ab\\u00e9'}"},
    };
    RUN(four, 4);
    char text[1200], id[600];
    for (size_t len = PS_ID_MAX_BYTES - 1; len <= PS_ID_MAX_BYTES + 1; len++) {
        memset(id, 'i', len);
        id[len] = '\0';
        verdict expect = len <= PS_ID_MAX_BYTES ? YES : INVALID;
        snprintf(text, sizeof text, "{\"id\":\"%s\"}", id);
        expect_verdict(expect, text, PS_ID_MAX_BYTES);
        snprintf(text, sizeof text, "{\"id\":\"c1\",\"updatedAtLamport\":[1,\"%s\"]}", id);
        expect_verdict(expect, text, PS_ID_MAX_BYTES);
        snprintf(text, sizeof text,
                 "{\"id\":\"c1\",\"messages\":[{\"id\":\"%s\",\"role\":\"u\",\"content\":\"x\"}]}",
                 id);
        expect_verdict(expect, text, PS_ID_MAX_BYTES);
    }
}

static void string_fields_and_is_archived(void **state)
{
    (void)state;
    static const char *const strings[] = {"title", "model", "provider", "currentModel"};
    static const hand_case string_values[] = {
        {YES, "'x'"},        {YES, "''"},          {YES, "null"},   {YES, "'\\u0000'"},
        {YES, "'a\\/b\\n'"}, {INVALID, "1"},       {INVALID, "0"},  {INVALID, "1.5"},
        {INVALID, "true"},   {INVALID, "false"},   {INVALID, "[]"}, {INVALID, "['x']"},
        {INVALID, "{}"},     {INVALID, "{'x':1}"},
    };
    RUN_FIELDS(strings, string_values, false);
    static const char *const archived[] = {"isArchived"};
    static const hand_case bool_values[] = {
        {YES, "true"},       {YES, "false"},  {YES, "null"},   {INVALID, "0"},      {INVALID, "1"},
        {INVALID, "'true'"}, {INVALID, "''"}, {INVALID, "[]"}, {INVALID, "[true]"}, {INVALID, "{}"},
    };
    RUN_FIELDS(archived, bool_values, false);
}

/* The values a time takes (createdAt, updatedAt, lastModified, a
 * message's timestamp): ps__time_from_json's. */
static const hand_case time_values[] = {
    {YES, "'2026-01-01T00:00:00.000Z'"},
    {YES, "'2026-01-01'"},
    {YES, "'2026-01-01T10:00Z'"},
    {YES, "'2024-02-29T23:59:60+05:30'"},
    {YES, "'2026-01-01t00:00:00z'"},
    {YES, "'2026-01-01 00:00:00'"},
    {YES, "'2026-01-01T00:00:00,5-0130'"},
    {YES, "'2026-01-01T00:00:00.123456789Z'"},
    {YES, "'0000-01-01T00:00:00Z'"},
    {YES, "null"},
    {YES, "0"},
    {YES, "-0"},
    {YES, "1700000000000"},
    {YES, "-1"},
    {YES, "123456789012345678"},
    {YES, "-123456789012345678"},
    {INVALID, "'2026-02-30T00:00:00Z'"},
    {INVALID, "'2023-02-29'"},
    {INVALID, "'2026-13-01'"},
    {INVALID, "'2026-1-01'"},
    {INVALID, "'yesterday'"},
    {INVALID, "''"},
    {INVALID, "'2026-01-01T24:00:00Z'"},
    {INVALID, "'2026-01-01T00:00:00+24:00'"},
    {INVALID, "'2026-01-01T00:00:00Zjunk'"},
    {INVALID, "'2026-01-01T00:00:00.Z'"},
    {INVALID, "' 2026-01-01'"},
    {INVALID, "'2026-01-01T00:00:00.000Z                                                    x'"},
    {INVALID, "'2026\\u0000-01-01'"},
    {INVALID, "true"},
    {INVALID, "false"},
    {INVALID, "[]"},
    {INVALID, "['2026-01-01']"},
    {INVALID, "{}"},
    {INVALID, "1e400"},
    {INVALID, "9007199254740994.0"},
    {INVALID, "-1e300"},
    /* valid, but json-c's reading is subtle: left to the parse */
    {RARE, "1.5"},
    {RARE, "1.0"},
    {RARE, "1e3"},
    {RARE, "-2.5E+2"},
    {RARE, "9007199254740992.0"},
    {RARE, "9007199254740993.0"}, /* a double: 2^53 exactly */
    {RARE, "1234567890123456789"},
    {RARE, "-1234567890123456789"},
    {RARE, "99999999999999999999"},
    {RARE, "'2026-01-01T00:00:00\\u005a'"},
    {RARE, "'2026-01-01T00:00:00Z\\u0000junk'"}, /* a C string cut at the NUL */
    {RARE, "'2026-01-01T00:00:00.000000000000000000000000000000000000000000000000000Z'"},
};

static void times(void **state)
{
    (void)state;
    static const char *const root[] = {"createdAt", "updatedAt", "lastModified"};
    RUN_FIELDS(root, time_values, false);
    static const char *const message[] = {"timestamp"};
    RUN_FIELDS(message, time_values, true);
}

static void the_lamport_clock(void **state)
{
    (void)state;
    static const char *const lamport[] = {"updatedAtLamport"};
    static const hand_case values[] = {
        {YES, "[1,'d']"},
        {YES, "[0,'d']"},
        {YES, "[9007199254740991,'d']"},
        {YES, "[ 42 , 'd' ]"},
        {YES, "null"},
        {YES, "[1,'\\u0064']"},
        {INVALID, "[9007199254740992,'d']"},
        {INVALID, "[9999999999999999,'d']"},
        {INVALID, "[12345678901234567,'d']"},
        {INVALID, "[99999999999999999999,'d']"},
        {INVALID, "[-1,'d']"},
        {INVALID, "[1.5,'d']"},
        {INVALID, "[1.0,'d']"},
        {INVALID, "[1e3,'d']"},
        {INVALID, "[1E0,'d']"},
        {INVALID, "[1,'']"},
        {INVALID, "[1,'a\\u0000b']"},
        {INVALID, "[1,'d','x']"},
        {INVALID, "[1,'d',null]"},
        {INVALID, "[1]"},
        {INVALID, "[]"},
        {INVALID, "['1','d']"},
        {INVALID, "['d',1]"},
        {INVALID, "[1,2]"},
        {INVALID, "[1,null]"},
        {INVALID, "[null,'d']"},
        {INVALID, "[true,'d']"},
        {INVALID, "[[1],'d']"},
        {INVALID, "[1,['d']]"},
        {INVALID, "[{},'d']"},
        {INVALID, "[1,{}]"},
        {INVALID, "{}"},
        {INVALID, "{'0':1,'1':'d'}"},
        {INVALID, "'x'"},
        {INVALID, "5"},
        {INVALID, "true"},
        {RARE, "[-0,'d']"}, /* json-c's int 0 */
    };
    RUN_FIELDS(lamport, values, false);
}

static void the_messages_list(void **state)
{
    (void)state;
    static const char *const messages[] = {"messages"};
    static const hand_case values[] = {
        {YES, "[]"},
        {YES, "[{'id':'m1','role':'user','content':'x'}]"},
        {YES, "[{'id':'m1','role':'user','content':'x'},{'id':'m2','deleted':true}]"},
        {INVALID, "null"}, /* validate.c: present, so an array */
        {INVALID, "{}"},
        {INVALID, "{'id':'m1','role':'user','content':'x'}"},
        {INVALID, "'x'"},
        {INVALID, "1"},
        {INVALID, "true"},
        {INVALID, "[1]"},
        {INVALID, "[null]"},
        {INVALID, "['m1']"},
        {INVALID, "[[]]"},
        {INVALID, "[[{'id':'m1','role':'user','content':'x'}]]"},
        {INVALID, "[{'id':'m1','role':'user','content':'x'},null]"},
        {INVALID, "[{'id':'m1','role':'user','content':'x'},{'id':'m2'}]"},
        {INVALID, "[{}]"},
    };
    RUN_FIELDS(messages, values, false);
}

static void one_message(void **state)
{
    (void)state;
    static const hand_case cases[] = {
        {YES, "{'id':'m1','role':'user','content':'hi'}"},
        {YES, "{'content':'hi','role':'user','id':'m1'}"},
        {YES, "{'timestamp':1,'content':'hi','id':'m1','role':'user'}"},
        {YES, "{'id':'m1','role':'','content':''}"},
        {YES, "{'id':'m1','role':'user','content':[]}"},
        {YES, "{'id':'m1','role':'user','content':[{'type':'text','text':'x'}]}"},
        {YES, "{'id':'m1','role':'user','content':[1,'d',null]}"},
        {YES, "{'\\u0069d':'m1','r\\u006fle':'user','c\\u006Fntent':'x'}"},
        {YES, "{'id':'m\\u0031','role':'\\u0000','content':'x'}"},
        {YES, "{'id':'m1','role':'user','content':'x','extra':{'id':null,'role':null}}"},
        {YES, "{'id':'m1','x':{'id':'m1'},'role':'user','content':'x'}"},
        {YES, "{'id':'m1','role':'user','content':[{'id':1,'role':null,'deleted':false}]}"},
        /* a tombstone: nothing else asked */
        {YES, "{'id':'m1','deleted':true}"},
        {YES, "{'id':'m1','deleted':true,'role':null,'content':1,'timestamp':'bad'}"},
        {YES, "{'deleted':true,'role':[],'id':'m1','content':{}}"},
        {YES, "{'id':'m1','deleted':false,'role':'user','content':'x'}"},
        {YES, "{'id':'m1','deleted':null,'role':'user','content':'x'}"},
        {YES, "{'id':'m1','deleted':'yes','role':'user','content':'x'}"},
        {INVALID, "{'role':'user','content':'hi'}"},
        {INVALID, "{'x':{'id':'m1'},'role':'user','content':'x'}"},
        {INVALID, "{'id':'','role':'user','content':'x'}"},
        {INVALID, "{'id':1,'role':'user','content':'x'}"},
        {INVALID, "{'id':null,'role':'user','content':'x'}"},
        {INVALID, "{'id':['m1'],'role':'user','content':'x'}"},
        {INVALID, "{'id':{},'role':'user','content':'x'}"},
        {INVALID, "{'id':'a\\u0000b','role':'user','content':'x'}"},
        {INVALID, "{'id':'m1','content':'x'}"},
        {INVALID, "{'id':'m1','role':null,'content':'x'}"},
        {INVALID, "{'id':'m1','role':1,'content':'x'}"},
        {INVALID, "{'id':'m1','role':true,'content':'x'}"},
        {INVALID, "{'id':'m1','role':['user'],'content':'x'}"},
        {INVALID, "{'id':'m1','role':{},'content':'x'}"},
        {INVALID, "{'id':'m1','r\\u006fle':null,'content':'x'}"},
        {INVALID, "{'id':'m1','role':'user'}"},
        {INVALID, "{'id':'m1','role':'user','content':null}"},
        {INVALID, "{'id':'m1','role':'user','content':1}"},
        {INVALID, "{'id':'m1','role':'user','content':true}"},
        {INVALID, "{'id':'m1','role':'user','content':{}}"},
        {INVALID, "{'id':'m1','role':'user','content':{'text':'x'}}"},
        {INVALID, "{'id':'m1','role':'user','c\\u006fntent':null}"},
        {INVALID, "{'id':'m1'}"},
        {INVALID, "{'id':'m1','deleted':false}"},
        {INVALID, "{'id':'m1','deleted':'true'}"},
        {INVALID, "{'id':'m1','deleted':1}"},
        {INVALID, "{'id':'m1','deleted':null}"},
        {INVALID, "{'id':'m1','deleted':[true]}"},
        {INVALID, "{'id':'m1','deleted':{'deleted':true}}"},
        {INVALID, "{'id':'m1','meta':{'deleted':true}}"},
        {INVALID, "{'deleted':true}"},
        {INVALID, "{'id':'','deleted':true}"},
        {INVALID, "{'id':null,'deleted':true}"},
        {INVALID, "{'id':'m1','role':'user','content':'x','role':null}"},
        {RARE, "{'id':'m1','role':null,'content':'x','role':'user'}"},
        {RARE, "{'id':'m1','deleted':true,'deleted':true}"},
    };
    char text[2048], message[1024];
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        unquote(cases[k].chat, message, sizeof message);
        /* alone, after a good message, and before one */
        snprintf(text, sizeof text, "{\"id\":\"c1\",\"messages\":[%s]}", message);
        expect_verdict(cases[k].expect, text, PS_ID_MAX_BYTES);
        snprintf(text, sizeof text,
                 "{\"messages\":[{\"id\":\"m0\",\"role\":\"user\",\"content\":\"x\"},%s],"
                 "\"id\":\"c1\"}",
                 message);
        expect_verdict(cases[k].expect, text, PS_ID_MAX_BYTES);
        snprintf(text, sizeof text,
                 "{\"id\":\"c1\",\"updatedAtLamport\":[3,\"d\"],\"messages\":[%s,{\"id\":\"m9\","
                 "\"deleted\":true}],\"title\":null}",
                 message);
        expect_verdict(cases[k].expect, text, PS_ID_MAX_BYTES);
    }
}

/* Values where a rule's key is, but deeper or elsewhere: no rule. */
static void rules_only_where_validate_looks(void **state)
{
    (void)state;
    static const hand_case cases[] = {
        {YES, "{'id':'c1','x':{'messages':null,'title':1,'updatedAtLamport':5,'createdAt':'x'}}"},
        {YES, "{'id':'c1','x':[{'id':1}],'y':[[1,'d','z']],'z':[{'role':null}]}"},
        {YES, "{'id':'c1','x':[1,2,3],'updatedAtLamport':[1,'d']}"},
        {YES, "{'id':'c1','updatedAtLamport':null,'x':[5,'d','e'],'y':[]}"},
        {YES, "{'id':'c1','updatedAtLamport':[1,'d'],'messages':[{'id':'m','role':'u','content':"
              "'x'}],'x':[[],{}]}"},
        {YES, "{'id':'c1','messages':[{'id':'m','role':'u','content':'x'}],'updatedAtLamport':[1,"
              "'d'],'x':[{'deleted':1}]}"},
        {YES, "{'id':'c1','messages':[],'x':[{'id':'m1'}],'y':[1]}"},
        {YES, "{'id':'c1','lastModified':null,'title':'t','messages':[{'id':'m1','role':'u',"
              "'content':[[{'id':null}]],'timestamp':null}],'isArchived':null}"},
        {YES, "{'id':'c1','Title':1,'messages ':null,'ID':null,'updatedatlamport':7}"},
        {YES, "{'id':'c1','messages':[{'id':'m1','role':'u','content':'x','Role':null,'ID':1}]}"},
        {INVALID, "{'id':'c1','updatedAtLamport':[1,'d'],'x':{'updatedAtLamport':5},'messages':["
                  "{'id':'m','content':'x'}]}"},
    };
    RUN(cases, PS_ID_MAX_BYTES);
}

/* ---- random edits of valid chats ---- */

/* Valid chats, each certified, to edit. */
static const char *const base_chats[] = {
    "{'id':'c1','title':'Trip','model':'gpt-4o','provider':'openai','currentModel':'gpt-4o',"
    "'isArchived':false,'createdAt':'2026-01-01T10:00:00.000Z','updatedAt':1767261600000,"
    "'lastModified':'2026-01-01T10:05:00Z','updatedAtLamport':[12,'dev-a'],'messages':[{'id':"
    "'m1','role':'user','content':'Hi','timestamp':'2026-01-01T10:00:00.000Z'},{'id':'m2','role':"
    "'assistant','content':[{'type':'text','text':'Hello'}],'timestamp':1767261601000,"
    "'provider':'openai'},{'id':'m3','deleted':true}]}",
    "{'messages':[{'timestamp':null,'content':'','role':'user','id':'m1'}],'id':'c2',"
    "'title':null,'isArchived':null,'createdAt':null,'updatedAtLamport':null,'x':{'y':[1,2]}}",
    "{'id':'c3','updatedAtLamport':[0,'d'],'lastMutationLamport':{'lamport':3,'deviceId':'d'}}",
};

/* What an edit may put in: every kind of value, and the shapes of the
 * ones validate.c asks for, right and wrong. */
static const char *const pool[] = {
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1",
    "-1",
    "1.0",
    "1.5",
    "1e3",
    "-1e300",
    "9007199254740991",
    "9007199254740992",
    "12345678901234567890",
    "''",
    "'x'",
    "'m1'",
    "'2026-01-01T00:00:00Z'",
    "'2026-02-30'",
    "'a\\u0000b'",
    "[]",
    "{}",
    "[1,'d']",
    "[9007199254740992,'d']",
    "[0,'']",
    "[1,'d',3]",
    "['x']",
    "{'id':'m9','role':'user','content':'x'}",
    "{'id':'m9','deleted':true}",
    "{'id':'m9','deleted':false}",
    "{'id':'m9','role':null,'content':'x'}",
    "[{'id':'m9','role':'user','content':'x'}]",
    "[{'id':'m9'}]",
};

/* The keys an edit may add: validate.c's, and one it ignores. */
static const char *const key_names[] = {
    "id",         "title",     "model",     "provider",     "currentModel",
    "isArchived", "createdAt", "updatedAt", "lastModified", "updatedAtLamport",
    "messages",   "deleted",   "role",      "content",      "timestamp",
    "other",
};

/* A place in a tree: member `key` of an object or element `index` of an
 * array. */
typedef struct slot {
    json_object *parent;
    const char *key;
    size_t index;
} slot;

enum { SLOTS_MAX = 4096 };

static void collect(json_object *v, slot *slots, size_t *n)
{
    if (json_object_is_type(v, json_type_object)) {
        json_object_object_foreach(v, k, child)
        {
            if (*n < SLOTS_MAX)
                slots[(*n)++] = (slot){v, k, 0};
            collect(child, slots, n);
        }
    } else if (json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            if (*n < SLOTS_MAX)
                slots[(*n)++] = (slot){v, NULL, i};
            collect(json_object_array_get_idx(v, i), slots, n);
        }
    }
}

static json_object *slot_get(const slot *s)
{
    return s->key ? json_object_object_get(s->parent, s->key)
                  : json_object_array_get_idx(s->parent, s->index);
}

/* Puts `v` (taken) in the slot, in place of what was there. */
static void slot_set(const slot *s, json_object *v)
{
    if (s->key)
        json_object_object_add(s->parent, s->key, v);
    else
        json_object_array_put_idx(s->parent, s->index, v);
}

static json_object *pool_value(void)
{
    char text[256];
    unquote(pool[pick(sizeof pool / sizeof *pool)], text, sizeof text);
    return tu_json(text);
}

static json_object *copy_of(json_object *v)
{
    json_object *copy = NULL;
    assert_int_equal(json_object_deep_copy(v, &copy, NULL), 0);
    return copy;
}

/* One random edit of `root`. */
static void edit(json_object *root)
{
    static slot slots[SLOTS_MAX];
    size_t n = 0;
    collect(root, slots, &n);
    /* a new member of the root or of any object in it */
    if (n == 0 || chance(12)) {
        json_object *where = root;
        if (n && chance(60)) {
            json_object *v = slot_get(&slots[pick((unsigned)n)]);
            if (json_object_is_type(v, json_type_object))
                where = v;
        }
        const char *k = key_names[pick(sizeof key_names / sizeof *key_names)];
        json_object_object_add(where, k, chance(30) ? NULL : pool_value());
        return;
    }
    const slot *s = &slots[pick((unsigned)n)];
    switch (pick(6)) {
    case 0: /* another value, of any kind */
        slot_set(s, pool_value());
        break;
    case 1: /* null */
        slot_set(s, NULL);
        break;
    case 2: /* gone */
        if (s->key)
            json_object_object_del(s->parent, s->key);
        else
            json_object_array_del_idx(s->parent, s->index, 1);
        break;
    case 3: { /* a value copied from elsewhere in the chat */
        json_object *from = slot_get(&slots[pick((unsigned)n)]);
        slot_set(s, from ? copy_of(from) : NULL);
        break;
    }
    case 4: { /* two values of one container swapped */
        const slot *t = NULL;
        for (int tries = 0; tries < 8 && !t; tries++) {
            const slot *u = &slots[pick((unsigned)n)];
            if (u->parent == s->parent && u != s)
                t = u;
        }
        if (!t)
            break;
        json_object *a = json_object_get(slot_get(s)), *b = json_object_get(slot_get(t));
        slot_set(s, b);
        slot_set(t, a);
        break;
    }
    default: /* an element more */
        if (!s->key && json_object_is_type(s->parent, json_type_array))
            json_object_array_add(s->parent, pool_value());
        else
            slot_set(s, pool_value());
    }
}

/* `text` with some of validate.c's keys spelt with an escape ("\u0072ole"):
 * the same chat to json-c. */
static char *respell_keys(const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(n * 6 + 1);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = 0;
        if (text[i] == '"')
            for (size_t k = 0; k < sizeof key_names / sizeof *key_names && !len; k++) {
                size_t kl = strlen(key_names[k]);
                if (strncmp(text + i + 1, key_names[k], kl) == 0 && text[i + 1 + kl] == '"' &&
                    text[i + 2 + kl] == ':')
                    len = kl;
            }
        if (len && chance(40)) {
            o += (size_t)sprintf(out + o, "\"\\u%04x", (unsigned)(unsigned char)text[i + 1]);
            memcpy(out + o, text + i + 2, len); /* the key's rest and its quote */
            o += len;
            i += len + 2;
        } else {
            out[o++] = text[i++];
        }
    }
    out[o] = '\0';
    return out;
}

static void random_edits_of_valid_chats(void **state)
{
    (void)state;
    load_settings(0x5EEDCE27ULL, 4000);
    rng = seed0;
    static const int flags[] = {JSON_C_TO_STRING_PLAIN,
                                JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                JSON_C_TO_STRING_SPACED, JSON_C_TO_STRING_PRETTY};
    size_t certified_n = 0, valid_n = 0, invalid_n = 0;
    for (current_case = 0; current_case < ncases; current_case++) {
        char base[2048];
        unquote(base_chats[pick(sizeof base_chats / sizeof *base_chats)], base, sizeof base);
        json_object *chat = tu_json(base);
        int edits = 1 + (int)pick(3);
        for (int e = 0; e < edits; e++)
            edit(chat);
        const char *plain = json_object_to_json_string_ext(chat, flags[pick(4)]);
        char *text = chance(30) ? respell_keys(plain) : strdup(plain);
        bool valid;
        size_t max_id = chance(20) ? 2 : PS_ID_MAX_BYTES;
        bool cert = judge(text, strlen(text), max_id, &valid);
        certified_n += cert;
        valid_n += valid;
        invalid_n += !valid;
        free(text);
        json_object_put(chat);
    }
    print_message("seed %llu: %lu edited chats, %zu valid (%zu certified), %zu invalid\n",
                  (unsigned long long)seed0, ncases, valid_n, certified_n, invalid_n);
    /* both sides well exercised, and the certificate given to most valid
     * chats (the rare spellings of a valid one are a few of the pool) */
    assert_true(invalid_n * 4 > ncases);
    assert_true(valid_n * 4 > ncases);
    assert_true(certified_n * 10 > valid_n * 6);
}

/* ---- where the certificate must be given ---- */

/* Every chat of the benchmark's generator (the shape of a Polyglot first
 * upload: bench/src/gen.c), with 0 to 12 messages. */
static void every_generated_chat_is_certified(void **state)
{
    (void)state;
    gen_cfg g = {.seed = GEN_DEFAULT_SEED, .device = "bench-device"};
    for (long c = 0; c < 300; c++) {
        buf out = {0};
        gen_chat_legacy(&out, &g, c * 7919, c % 13);
        bool valid;
        if (!judge(out.data, out.len, PS_ID_MAX_BYTES, &valid))
            fail_msg("generated chat %ld not certified (valid: %d): %.*s", c, valid, (int)out.len,
                     out.data);
        buf_free(&out);
    }
}

/* Every chat in the Polyglot app's captured /sync bodies that validates
 * (written as JSON.stringify writes it, as the app sent it). */
static void every_valid_polyglot_chat_is_certified(void **state)
{
    (void)state;
    DIR *dir = opendir(PS_POLYGLOT_FIXTURES);
    if (!dir)
        fail_msg("no fixtures folder: %s", PS_POLYGLOT_FIXTURES);
    size_t chats = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0 || e->d_name[0] < '0' ||
            e->d_name[0] > '9')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", PS_POLYGLOT_FIXTURES, e->d_name);
        json_object *fixture = json_object_from_file(path), *request, *body, *list;
        assert_non_null(fixture);
        if (json_object_object_get_ex(fixture, "request", &request) &&
            json_object_object_get_ex(request, "body", &body) &&
            json_object_object_get_ex(body, "chats", &list)) {
            for (size_t i = 0; i < json_object_array_length(list); i++) {
                size_t n;
                const char *text = json_object_to_json_string_length(
                    json_object_array_get_idx(list, i),
                    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
                bool valid;
                bool cert = judge(text, n, PS_ID_MAX_BYTES, &valid);
                if (valid && !cert)
                    fail_msg("%s: chats[%zu] valid but not certified: %s", e->d_name, i, text);
                chats += valid;
            }
        }
        json_object_put(fixture);
    }
    closedir(dir);
    assert_true(chats >= 30); /* 30 chats in 12 captures (README) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_root_and_its_id),
        cmocka_unit_test(ids_up_to_the_limit),
        cmocka_unit_test(string_fields_and_is_archived),
        cmocka_unit_test(times),
        cmocka_unit_test(the_lamport_clock),
        cmocka_unit_test(the_messages_list),
        cmocka_unit_test(one_message),
        cmocka_unit_test(rules_only_where_validate_looks),
        cmocka_unit_test(random_edits_of_valid_chats),
        cmocka_unit_test(every_generated_chat_is_certified),
        cmocka_unit_test(every_valid_polyglot_chat_is_certified),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
