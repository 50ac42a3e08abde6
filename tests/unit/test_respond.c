/*
 * Every error leaves the server one way (server/respond.h): each ps_code,
 * answered through ps_reply_from_code, gets the status and wire code that
 * docs/protocol.md's "Errors" table gives it. Two oracles, both outside
 * respond.c: the edge refusals' status and code copied by hand from that
 * table (existing clients and tests depend on them, so they may not move),
 * and the table itself read at run time, so a code the server can answer
 * with but the documentation does not list fails too. Also: the edge's own
 * sentence reaches the client while a store's detail never does, the
 * headers that belong to a code (WWW-Authenticate, Connection: close), and
 * ps_strerror naming every code.
 */
#include "test_util.h"
#include "server/respond.h"

#include <json-c/json.h>
#include <stdlib.h>

/* The last ps_code. A new code must be added to the table below, to
 * docs/protocol.md and to ps_strerror; the last test fails until it is. */
#define LAST_CODE PS_ERR_TOO_MANY_SOCKETS

typedef struct answer {
    unsigned status;
    char code[64];
    char message[256];
} answer;

static answer reply_for(ps_code code, const char *message, ps_reply *r)
{
    ps_reply_init(r, 4096);
    ps_reply_from_code(r, code, message);
    answer a = {.status = r->status};
    json_object *doc = tu_json(r->body.data ? r->body.data : "null");
    json_object *v;
    assert_true(json_object_object_get_ex(doc, "code", &v));
    snprintf(a.code, sizeof a.code, "%s", json_object_get_string(v));
    assert_true(json_object_object_get_ex(doc, "error", &v));
    snprintf(a.message, sizeof a.message, "%s", json_object_get_string(v));
    json_object_put(doc);
    return a;
}

/* docs/protocol.md, "Errors", copied by hand: the edge's refusals. */
static const struct {
    ps_code code;
    unsigned status;
    const char *wire;
} EDGE[] = {
    {PS_ERR_METHOD_NOT_ALLOWED, 405, "method_not_allowed"},
    {PS_ERR_MEDIA_TYPE, 415, "unsupported_media_type"},
    {PS_ERR_TOO_MANY_REQUESTS, 429, "too_many_requests"},
    {PS_ERR_SHUTTING_DOWN, 503, "shutting_down"},
    {PS_ERR_BAD_FRAMING, 400, "bad_framing"},
    {PS_ERR_TOKEN_REVOKED, 401, "token_revoked"},
    {PS_ERR_USER_DISABLED, 403, "user_disabled"},
    {PS_ERR_BODY_TOO_LARGE, 413, "body_too_large"},
    {PS_ERR_INTERNAL, 500, "internal_error"},
    {PS_ERR_OVERLOADED, 503, "overloaded"},
    {PS_ERR_UPLOAD_TOO_SLOW, 408, "upload_too_slow"},
    {PS_ERR_BAD_HANDSHAKE, 400, "bad_handshake"},
    {PS_ERR_ORIGIN_NOT_ALLOWED, 403, "origin_not_allowed"},
    {PS_ERR_UPGRADE_REQUIRED, 426, "upgrade_required"},
    {PS_ERR_TOO_MANY_SOCKETS, 429, "too_many_sockets"},
    /* and the older ones the edge answers with */
    {PS_ERR_NOT_FOUND, 404, "not_found"},
    {PS_ERR_ENCODING, 415, "unsupported_encoding"},
    {PS_ERR_RATE_LIMITED, 429, "rate_limited"},
    {PS_ERR_INVALID_TOKEN, 401, "invalid_token"},
    {PS_ERR_UNAUTHORIZED, 401, "unauthorized"},
};

static void edge_refusals_keep_their_status_and_code(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof EDGE / sizeof *EDGE; i++) {
        ps_reply r;
        answer a = reply_for(EDGE[i].code, "the edge's own sentence", &r);
        if (a.status != EDGE[i].status || strcmp(a.code, EDGE[i].wire) != 0)
            print_error("ps_code %d: got %u %s, docs say %u %s\n", (int)EDGE[i].code, a.status,
                        a.code, EDGE[i].status, EDGE[i].wire);
        assert_int_equal(a.status, EDGE[i].status);
        assert_string_equal(a.code, EDGE[i].wire);
        /* the refusal is the server's own words, meant for the client */
        assert_string_equal(a.message, "the edge's own sentence");
        ps_reply_free(&r);
    }
}

static void headers_that_belong_to_a_code(void **state)
{
    (void)state;
    ps_reply r;
    reply_for(PS_ERR_TOKEN_REVOKED, "revoked", &r);
    /* RFC 6750: a 401 names the scheme; a revoked token is an invalid one */
    assert_non_null(r.www_authenticate);
    assert_non_null(strstr(r.www_authenticate, "error=\"invalid_token\""));
    ps_reply_free(&r);
    reply_for(PS_ERR_BAD_FRAMING, "two lengths", &r);
    assert_true(r.close_connection); /* what follows the head is never read */
    ps_reply_free(&r);
    reply_for(PS_ERR_UPLOAD_TOO_SLOW, "slow", &r);
    assert_true(r.close_connection);
    ps_reply_free(&r);
    reply_for(PS_ERR_USER_DISABLED, "disabled", &r);
    assert_null(r.www_authenticate); /* a 403: the credentials are fine */
    ps_reply_free(&r);
}

static void a_store_failure_tells_no_detail(void **state)
{
    (void)state;
    const ps_code internal[] = {PS_ERR_STORE, PS_ERR_IO, PS_ERR_BUSY, PS_ERR_UNAVAILABLE,
                                PS_ERR_NOMEM, PS_ERR_SCHEMA};
    for (size_t i = 0; i < sizeof internal / sizeof *internal; i++) {
        ps_reply r;
        answer a = reply_for(internal[i], "SECRET /var/lib/polysync/store.db", &r);
        assert_null(strstr(a.message, "SECRET"));
        assert_true(a.status >= 500);
        ps_reply_free(&r);
    }
}

static void health_says_why(void **state)
{
    (void)state;
    ps_reply r;
    ps_reply_init(&r, 4096);
    ps_reply_store_unhealthy(&r, "the store is corrupt");
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body.data,
                        "{\"error\":\"the store is corrupt\",\"code\":\"store_unavailable\"}");
    ps_reply_free(&r);
}

/* docs/protocol.md's error table as (status, code) pairs. */
typedef struct documented {
    unsigned status[64];
    char code[64][48];
    size_t n;
} documented;

static void read_error_table(documented *d)
{
    FILE *f = fopen(PS_PROTOCOL_MD, "r");
    assert_non_null(f);
    char line[2048];
    bool in_errors = false;
    d->n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "## ", 3) == 0)
            in_errors = strncmp(line, "## Errors", 9) == 0;
        unsigned status;
        if (!in_errors || sscanf(line, "| %u |", &status) != 1)
            continue;
        /* the second column: one or more `code`s */
        char *col = strchr(line + 1, '|');
        char *end = col ? strchr(col + 1, '|') : NULL;
        assert_non_null(end);
        for (char *p = col; (p = strchr(p, '`')) && p < end;) {
            char *q = strchr(p + 1, '`');
            assert_non_null(q);
            assert_true(d->n < 64);
            d->status[d->n] = status;
            snprintf(d->code[d->n], sizeof d->code[d->n], "%.*s", (int)(q - p - 1), p + 1);
            d->n++;
            p = q + 1;
        }
    }
    fclose(f);
    assert_true(d->n >= 20);
}

static void every_code_answers_as_documented(void **state)
{
    (void)state;
    documented d;
    read_error_table(&d);
    for (int c = 1; c <= (int)LAST_CODE; c++) {
        ps_reply r;
        answer a = reply_for((ps_code)c, "detail", &r);
        bool found = false;
        for (size_t i = 0; i < d.n && !found; i++)
            found = d.status[i] == a.status && strcmp(d.code[i], a.code) == 0;
        if (!found)
            print_error("ps_code %d (%s) answers %u %s, not in docs/protocol.md\n", c,
                        ps_strerror((ps_code)c), a.status, a.code);
        assert_true(found);
        ps_reply_free(&r);
    }
}

/* docs/openapi.yaml's Error schema: its `code` enum, one string. */
static void read_openapi_codes(char *out, size_t cap)
{
    FILE *f = fopen(PS_OPENAPI_YAML, "r");
    assert_non_null(f);
    char line[1024];
    bool in_enum = false;
    out[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        if (!in_enum && strstr(line, "enum: [malformed_json"))
            in_enum = true;
        if (!in_enum)
            continue;
        strncat(out, line, cap - strlen(out) - 1);
        if (strchr(line, ']'))
            break;
    }
    fclose(f);
    assert_true(in_enum);
}

static void every_code_is_in_the_openapi_schema(void **state)
{
    (void)state;
    char codes[4096];
    read_openapi_codes(codes, sizeof codes);
    for (int c = 1; c <= (int)LAST_CODE; c++) {
        ps_reply r;
        answer a = reply_for((ps_code)c, "detail", &r);
        bool found = false; /* the code as a whole word of the list */
        for (const char *p = codes; (p = strstr(p, a.code)) && !found; p++) {
            size_t n = strlen(a.code);
            found = (p[-1] == ' ' || p[-1] == '[') && (p[n] == ',' || p[n] == ']');
        }
        if (!found)
            print_error("%s is not in docs/openapi.yaml's Error code enum\n", a.code);
        assert_true(found);
        ps_reply_free(&r);
    }
}

static void every_code_has_its_own_text(void **state)
{
    (void)state;
    for (int c = 0; c <= (int)LAST_CODE; c++) {
        assert_string_not_equal(ps_strerror((ps_code)c), "unknown error");
        for (int o = 0; o < c; o++)
            assert_string_not_equal(ps_strerror((ps_code)c), ps_strerror((ps_code)o));
    }
    /* LAST_CODE is the last: a code added after it must be added here */
    assert_string_equal(ps_strerror((ps_code)(LAST_CODE + 1)), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(edge_refusals_keep_their_status_and_code),
        cmocka_unit_test(headers_that_belong_to_a_code),
        cmocka_unit_test(a_store_failure_tells_no_detail),
        cmocka_unit_test(health_says_why),
        cmocka_unit_test(every_code_answers_as_documented),
        cmocka_unit_test(every_code_is_in_the_openapi_schema),
        cmocka_unit_test(every_code_has_its_own_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
