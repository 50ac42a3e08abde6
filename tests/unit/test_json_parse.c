/*
 * ps__json_parse and ps__json_text (core/json_parse.h): the strict parser every
 * client byte goes through. Covers what RFC 8259 accepts (any value at top
 * level, whitespace around it), what it does not (trailing data, non-RFC
 * literals and numbers, single quotes, raw control characters, comments,
 * trailing commas), the nesting limit (PS_ERR_TOO_DEEP, counted in arrays and
 * objects), UTF-8 validation
 * (PS_ERR_UTF8, including overlong forms, surrogates and code points past
 * U+10FFFF), truncated input (PS_ERR_MALFORMED), the error detail, and the
 * compact serialization used for answers.
 */
#include "test_util.h"

#include "core/json_precheck.h"

typedef struct parse_case {
    const char *text;
    size_t len; /* 0: strlen(text) */
    ps_code want;
} parse_case;

/* Runs every case and fails once at the end, listing each wrong answer. */
static void run_cases(const parse_case *cases, size_t n, int depth)
{
    int wrong = 0;
    for (size_t i = 0; i < n; i++) {
        const parse_case *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->text);
        json_object *obj = (json_object *)1;
        ps_error err;
        ps_error_clear(&err);
        ps_code rc = ps__json_parse(c->text, len, depth, &obj, &err);
        if (rc != c->want) {
            print_error("case %zu: %.*s: got %d (%s), want %d\n", i, (int)len, c->text, rc,
                        err.message, c->want);
            wrong++;
        } else if (rc != PS_OK && (obj != NULL || err.code != rc || err.message[0] == '\0' ||
                                   err.chat_index != -1)) {
            print_error("case %zu: %.*s: failure without NULL out / error detail\n", i, (int)len,
                        c->text);
            wrong++;
        }
        if (rc == PS_OK)
            json_object_put(obj);
    }
    assert_int_equal(wrong, 0);
}

#define CASES(...)                                                                                 \
    do {                                                                                           \
        static const parse_case cases_[] = {__VA_ARGS__};                                          \
        run_cases(cases_, sizeof cases_ / sizeof *cases_, PS_JSON_MAX_DEPTH);                      \
    } while (0)

static void accepts_objects_and_arrays(void **state)
{
    CASES({"{}", 0, PS_OK}, {"[]", 0, PS_OK}, {"{\"a\":1,\"b\":[true,false,null]}", 0, PS_OK},
          {" \t\r\n{\"a\" : \"b\"} \t\r\n", 0, PS_OK}, {"[1.5e+3,-0.25,1E2,0]", 0, PS_OK},
          {"[\"\\u00e9\\n\\\"\\\\\\/\"]", 0, PS_OK}, {"[\"\\ud83d\\ude00\"]", 0, PS_OK});
}

static void parses_values_faithfully(void **state)
{
    json_object *obj = tu_json("{\"s\":\"h\\u00e9llo\",\"i\":-42,\"big\":9007199254740993,"
                               "\"d\":0.5,\"t\":true,\"n\":null,\"a\":[1,2]}");
    assert_string_equal(tu_get_str(obj, "s"), "h\xc3\xa9llo");
    assert_int_equal(json_object_get_int64(json_object_object_get(obj, "i")), -42);
    assert_int_equal(json_object_get_int64(json_object_object_get(obj, "big")), 9007199254740993LL);
    assert_true(json_object_get_double(json_object_object_get(obj, "d")) == 0.5);
    assert_true(json_object_get_boolean(json_object_object_get(obj, "t")));
    json_object *n;
    assert_true(json_object_object_get_ex(obj, "n", &n));
    assert_null(n);
    assert_int_equal(json_object_array_length(json_object_object_get(obj, "a")), 2);
    json_object_put(obj);
}

/* RFC 8259 section 2: a JSON text is any serialized value. */
static void accepts_top_level_scalars(void **state)
{
    CASES({"1", 0, PS_OK}, {"-0", 0, PS_OK}, {"123", 0, PS_OK}, {"true", 0, PS_OK},
          {"false", 0, PS_OK}, {"null", 0, PS_OK}, {"\"x\"", 0, PS_OK}, {" 1 ", 0, PS_OK},
          {"2.5", 0, PS_OK});
}

static void rejects_trailing_data(void **state)
{
    CASES({"{}x", 0, PS_ERR_MALFORMED}, {"{} {}", 0, PS_ERR_MALFORMED},
          {"[1]]", 0, PS_ERR_MALFORMED}, {"{\"a\":1}}", 0, PS_ERR_MALFORMED},
          {"[1,2] 3", 0, PS_ERR_MALFORMED}, {"{}\0", 3, PS_ERR_MALFORMED},
          {"{}\0{}", 5, PS_ERR_MALFORMED}, {"\"a\"\"b\"", 0, PS_ERR_MALFORMED},
          {"{}\f", 0, PS_ERR_MALFORMED}, {"{}\v", 0, PS_ERR_MALFORMED});
}

static void rejects_truncated_input(void **state)
{
    CASES({"", 0, PS_ERR_MALFORMED}, {"   ", 0, PS_ERR_MALFORMED}, {"{", 0, PS_ERR_MALFORMED},
          {"{\"a\":", 0, PS_ERR_MALFORMED}, {"{\"a\":\"b", 0, PS_ERR_MALFORMED},
          {"[1", 0, PS_ERR_MALFORMED}, {"[1,", 0, PS_ERR_MALFORMED}, {"\"abc", 0, PS_ERR_MALFORMED},
          {"[\"\\u00", 0, PS_ERR_MALFORMED}, {"{\"chats\":[{\"id\":\"x\"", 0, PS_ERR_MALFORMED},
          {"[tr", 0, PS_ERR_MALFORMED});
}

static void rejects_syntax_errors(void **state)
{
    CASES({"[1,]", 0, PS_ERR_MALFORMED}, {"{\"a\":1,}", 0, PS_ERR_MALFORMED},
          {"{\"a\"}", 0, PS_ERR_MALFORMED}, {"{\"a\":1 \"b\":2}", 0, PS_ERR_MALFORMED},
          {"[1 2]", 0, PS_ERR_MALFORMED}, {"{1:2}", 0, PS_ERR_MALFORMED},
          {"/*c*/{}", 0, PS_ERR_MALFORMED}, {"{}//c", 0, PS_ERR_MALFORMED},
          {"[True]", 0, PS_ERR_MALFORMED}, {"[tru]", 0, PS_ERR_MALFORMED},
          {"['a']", 0, PS_ERR_MALFORMED}, {"{\"a\":'b'}", 0, PS_ERR_MALFORMED},
          {"[\"\\x41\"]", 0, PS_ERR_MALFORMED}, {"[undefined]", 0, PS_ERR_MALFORMED},
          {"[nan]", 0, PS_ERR_MALFORMED},
          {"\xef\xbb\xbf{}", 0, PS_ERR_MALFORMED} /* a BOM is UTF-8 but not JSON text */,
          {"[1]\xc2\xa0", 0, PS_ERR_MALFORMED} /* nor is a no-break space */);
}

/* Object keys are strings in double quotes, nothing else. */
static void rejects_single_quoted_keys(void **state)
{
    CASES({"{'a':1}", 0, PS_ERR_MALFORMED}, {"{'a':\"b\"}", 0, PS_ERR_MALFORMED});
}

/* Not RFC numbers: json-c's extensions must not pass, and NaN/Infinity
 * would be echoed back to clients as text JSON.parse() rejects. */
static void rejects_non_rfc_numbers(void **state)
{
    CASES({"[NaN]", 0, PS_ERR_MALFORMED}, {"[Infinity]", 0, PS_ERR_MALFORMED},
          {"[-Infinity]", 0, PS_ERR_MALFORMED}, {"[00]", 0, PS_ERR_MALFORMED},
          {"[-00]", 0, PS_ERR_MALFORMED}, {"[01]", 0, PS_ERR_MALFORMED},
          {"[1.]", 0, PS_ERR_MALFORMED}, {"[.5]", 0, PS_ERR_MALFORMED},
          {"[+1]", 0, PS_ERR_MALFORMED}, {"[1e]", 0, PS_ERR_MALFORMED},
          {"[-]", 0, PS_ERR_MALFORMED}, {"{\"x\":NaN}", 0, PS_ERR_MALFORMED});
}

/* RFC 8259 section 7: control characters U+0000..U+001F must be escaped. */
static void rejects_raw_control_characters_in_strings(void **state)
{
    CASES({"[\"a\x01\"]", 0, PS_ERR_MALFORMED}, {"[\"a\nb\"]", 0, PS_ERR_MALFORMED},
          {"[\"\t\"]", 0, PS_ERR_MALFORMED}, {"{\"k\x1f\":1}", 0, PS_ERR_MALFORMED});
}

static void depth_limit(void **state)
{
    char buf[2 * 70 + 1];
    for (int d = 1; d <= 70; d++) {
        memset(buf, '[', (size_t)d);
        memset(buf + d, ']', (size_t)d);
        json_object *obj = NULL;
        ps_error err;
        ps_error_clear(&err);
        ps_code rc = ps__json_parse(buf, 2 * (size_t)d, PS_JSON_MAX_DEPTH, &obj, &err);
        if (d <= PS_JSON_MAX_DEPTH) {
            assert_int_equal(rc, PS_OK);
            json_object_put(obj);
        } else {
            assert_int_equal(rc, PS_ERR_TOO_DEEP);
            assert_int_equal(err.code, PS_ERR_TOO_DEEP);
            assert_null(obj);
        }
    }
}

/* Depth is the nesting of arrays and objects: a number, string, true, false
 * or null inside the innermost one adds no level. With a limit of 3,
 * {"a":[{"b":1}]} (three containers) is within it. */
static void depth_counts_containers_not_scalars(void **state)
{
    static const parse_case ok3[] = {{"[[[1]]]", 0, PS_OK},
                                     {"{\"a\":[{\"b\":1}]}", 0, PS_OK},
                                     {"[[[\"s\",true,null]]]", 0, PS_OK}};
    run_cases(ok3, 3, 3);
    char buf[2 * PS_JSON_MAX_DEPTH + 2];
    memset(buf, '[', PS_JSON_MAX_DEPTH);
    buf[PS_JSON_MAX_DEPTH] = '1';
    memset(buf + PS_JSON_MAX_DEPTH + 1, ']', PS_JSON_MAX_DEPTH);
    json_object *obj = NULL;
    ps_error err;
    ps_error_clear(&err);
    ps_code rc = ps__json_parse(buf, sizeof buf - 1, PS_JSON_MAX_DEPTH, &obj, &err);
    if (rc != PS_OK)
        fail_msg("%d arrays around a number: %s", PS_JSON_MAX_DEPTH, err.message);
    json_object_put(obj);
}

static void depth_limit_is_the_callers(void **state)
{
    static const parse_case ok3[] = {{"{\"a\":[{}]}", 0, PS_OK}, {"[[[]]]", 0, PS_OK}};
    static const parse_case deep3[] = {{"{\"a\":[{\"b\":[]}]}", 0, PS_ERR_TOO_DEEP},
                                       {"[[[[]]]]", 0, PS_ERR_TOO_DEEP},
                                       {"[[[[", 0, PS_ERR_TOO_DEEP}};
    run_cases(ok3, 2, 3);
    run_cases(deep3, 3, 3);
    /* A deep document that is also truncated is still reported as too deep. */
    char big[5000];
    memset(big, '[', sizeof big);
    json_object *obj = NULL;
    assert_int_equal(ps__json_parse(big, sizeof big, PS_JSON_MAX_DEPTH, &obj, NULL),
                     PS_ERR_TOO_DEEP);
    assert_null(obj);
}

static void rejects_invalid_utf8_bytes(void **state)
{
    CASES({"[\"\xff\"]", 0, PS_ERR_UTF8}, {"[\"\xfe\"]", 0, PS_ERR_UTF8},
          {"[\"\x80\"]", 0, PS_ERR_UTF8}, {"[\"a\xbf\"]", 0, PS_ERR_UTF8},
          {"[\"\xc3\"]", 0, PS_ERR_UTF8}, {"[\"\xe2\x82\"]", 0, PS_ERR_UTF8},
          {"[\"\xf0\x9f\x98\"]", 0, PS_ERR_UTF8}, {"{\"\xc3(\":1}", 0, PS_ERR_UTF8});
}

/* RFC 3629: overlong forms, UTF-16 surrogates and code points past U+10FFFF
 * are not UTF-8. "\xc0\x80" is the classic smuggled NUL. */
static void rejects_overlong_surrogate_and_out_of_range_utf8(void **state)
{
    CASES({"[\"\xc0\x80\"]", 0, PS_ERR_UTF8}, {"[\"\xc1\xbf\"]", 0, PS_ERR_UTF8},
          {"[\"\xe0\x80\x80\"]", 0, PS_ERR_UTF8}, {"[\"\xed\xa0\x80\"]", 0, PS_ERR_UTF8},
          {"[\"\xf4\x90\x80\x80\"]", 0, PS_ERR_UTF8}, {"[\"\xf5\x80\x80\x80\"]", 0, PS_ERR_UTF8});
}

static void accepts_valid_utf8(void **state)
{
    CASES({"[\"\xc3\xa9\"]", 0, PS_OK}, {"[\"\xe2\x82\xac\"]", 0, PS_OK},
          {"[\"\xf0\x9f\x98\x80\"]", 0, PS_OK}, {"[\"\xf4\x8f\xbf\xbf\"]", 0, PS_OK},
          {"[\"\xed\x9f\xbf\"]", 0, PS_OK}, {"{\"\xe6\x97\xa5\":\"\xe6\x9c\xac\"}", 0, PS_OK});
}

static void error_detail_says_where(void **state)
{
    json_object *obj = NULL;
    ps_error err;
    ps_error_clear(&err);
    const char *text = "{\"a\":1}xyz";
    assert_int_equal(ps__json_parse(text, strlen(text), 64, &obj, &err), PS_ERR_MALFORMED);
    assert_int_equal(err.code, PS_ERR_MALFORMED);
    assert_int_equal(err.chat_index, -1);
    assert_string_equal(err.field, "");
    assert_non_null(strstr(err.message, "7"));
    /* A NULL error is allowed. */
    assert_int_equal(ps__json_parse("[", 1, 64, &obj, NULL), PS_ERR_MALFORMED);
    assert_null(obj);
}

/* Only `len` bytes are read: what follows in memory is not part of the text. */
static void reads_only_len_bytes(void **state)
{
    const char *text = "{\"a\":1}garbage";
    json_object *obj = NULL;
    assert_int_equal(ps__json_parse(text, 7, 64, &obj, NULL), PS_OK);
    assert_int_equal(json_object_get_int(json_object_object_get(obj, "a")), 1);
    json_object_put(obj);
    assert_int_equal(ps__json_parse("[1,2]", 3, 64, &obj, NULL), PS_ERR_MALFORMED);
    assert_null(obj);
}

static void text_is_compact_without_slash_escapes(void **state)
{
    json_object *obj = tu_json("{ \"url\" : \"https://x.example/a/b\", \"q\" : \"say \\\"hi\\\"\","
                               " \"n\" : [ 1 , 2 ], \"u\":\"\\u00e9\\n\" }");
    size_t len = 0;
    const char *text = ps__json_text(obj, &len);
    assert_string_equal(text, "{\"url\":\"https://x.example/a/b\",\"q\":\"say \\\"hi\\\"\","
                              "\"n\":[1,2],\"u\":\"\xc3\xa9\\n\"}");
    assert_int_equal(len, strlen(text));
    /* And the text parses back to an equal value. */
    json_object *back = tu_json(text);
    assert_true(json_object_equal(obj, back));
    json_object_put(back);
    json_object_put(obj);
}

/* Whatever the parser accepts, the text we send back must parse again. */
static void accepted_numbers_serialize_as_json(void **state)
{
    static const char *const inputs[] = {"[0.5]",      "[1E2]", "[-0]",
                                         "[1e400]",    "[1.]",  "[NaN]",
                                         "[Infinity]", "[00]",  "[123456789012345678901234]"};
    int wrong = 0;
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        json_object *obj = NULL;
        if (ps__json_parse(inputs[i], strlen(inputs[i]), 64, &obj, NULL) != PS_OK)
            continue; /* rejected: nothing to echo */
        const char *text = ps__json_text(obj, NULL);
        json_object *back = NULL;
        if (ps__json_parse(text, strlen(text), 64, &back, NULL) != PS_OK || strchr(text, 'N') ||
            strchr(text, 'I') || strstr(text, ".]")) {
            print_error("%s was accepted and serializes as %s, which is not RFC JSON\n", inputs[i],
                        text);
            wrong++;
        }
        json_object_put(back);
        json_object_put(obj);
    }
    assert_int_equal(wrong, 0);
}

/* The pre-check takes long strings in 64-byte blocks and hands anything odd
 * back to a byte-at-a-time pass: an error anywhere in a long string, on
 * either side of a block boundary, is still found and reported at its
 * first byte. */
static void precheck_long_strings_report_the_first_bad_byte(void **state)
{
    static const struct {
        const char *bytes;
        size_t at; /* the reported byte, from the start of `bytes` */
        ps_code want;
    } bad[] = {
        {"\x01", 0, PS_ERR_MALFORMED},
        {"\x80", 0, PS_ERR_UTF8},
        {"\xc3", 0, PS_ERR_UTF8},
        {"\xc0\x80", 0, PS_ERR_UTF8},
        {"\xe0\x80\x80", 0, PS_ERR_UTF8},
        {"\xed\xa0\x80", 0, PS_ERR_UTF8},
        {"\xf4\x90\x80\x80", 0, PS_ERR_UTF8},
        {"\xf5\x80\x80\x80", 0, PS_ERR_UTF8},
        {"\xe6\x97\"", 0, PS_ERR_UTF8},
        {"\\\xc3\xa9", 2, PS_ERR_UTF8},
        {"\xc3\xa9\xe6\x97\xa5\x1f", 5, PS_ERR_MALFORMED},
    };
    static const char filler[] =
        "ab \\\"\\\\ \xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\\n "; /* 25 bytes */
    char text[512];
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        for (size_t pos = 0; pos < 140; pos++) {
            size_t n = 0;
            text[n++] = '[';
            text[n++] = '"';
            for (size_t j = 0; j < pos; j++)
                text[n++] = 'x';
            size_t at = n + bad[k].at;
            memcpy(text + n, bad[k].bytes, strlen(bad[k].bytes));
            n += strlen(bad[k].bytes);
            for (int r = 0; r < 8; r++) {
                memcpy(text + n, filler, sizeof filler - 1);
                n += sizeof filler - 1;
            }
            memcpy(text + n, "\"]", 2);
            n += 2;
            ps_error err;
            ps_error_clear(&err);
            ps_code rc = ps__json_precheck(text, n, PS_JSON_MAX_DEPTH, &err);
            char where[32];
            snprintf(where, sizeof where, "at byte %zu", at);
            if (rc != bad[k].want || !strstr(err.message, where))
                fail_msg("case %zu at %zu: got %d (%s), want %d %s", k, pos, rc, err.message,
                         bad[k].want, where);
        }
    }
    /* and without the bad bytes the same text passes */
    size_t n = 0;
    text[n++] = '"';
    for (int r = 0; r < 16; r++) {
        memcpy(text + n, filler, sizeof filler - 1);
        n += sizeof filler - 1;
    }
    text[n++] = '"';
    assert_int_equal(ps__json_precheck(text, n, PS_JSON_MAX_DEPTH, NULL), PS_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_objects_and_arrays),
        cmocka_unit_test(parses_values_faithfully),
        cmocka_unit_test(accepts_top_level_scalars),
        cmocka_unit_test(rejects_trailing_data),
        cmocka_unit_test(rejects_truncated_input),
        cmocka_unit_test(rejects_syntax_errors),
        cmocka_unit_test(rejects_single_quoted_keys),
        cmocka_unit_test(rejects_non_rfc_numbers),
        cmocka_unit_test(rejects_raw_control_characters_in_strings),
        cmocka_unit_test(depth_limit),
        cmocka_unit_test(depth_limit_is_the_callers),
        cmocka_unit_test(depth_counts_containers_not_scalars),
        cmocka_unit_test(rejects_invalid_utf8_bytes),
        cmocka_unit_test(rejects_overlong_surrogate_and_out_of_range_utf8),
        cmocka_unit_test(accepts_valid_utf8),
        cmocka_unit_test(error_detail_says_where),
        cmocka_unit_test(reads_only_len_bytes),
        cmocka_unit_test(text_is_compact_without_slash_escapes),
        cmocka_unit_test(accepted_numbers_serialize_as_json),
        cmocka_unit_test(precheck_long_strings_report_the_first_bad_byte),
    };
    return cmocka_run_group_tests_name("json_parse", tests, NULL, NULL);
}
