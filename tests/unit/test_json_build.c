/*
 * Sticky-result json-c building (core/json_build.h): a document built with
 * its calls comes out as written; a NULL value (what a json_object_new_*
 * returns when its allocation fails) or a NULL container turns the result
 * into PS_ERR_NOMEM, after which every call adds nothing; and every value
 * handed over is released exactly once whatever happened (seen through
 * json-c's userdata delete hook, so a leak or a double release fails here
 * and under ASan).
 */
#include "test_util.h"
#include "core/json_build.h"

#include <string.h>

static int released;

static void count_release(json_object *jso, void *userdata)
{
    (void)jso;
    (void)userdata;
    released++;
}

/* A string value whose release is counted. */
static json_object *watched(const char *text)
{
    json_object *v = json_object_new_string(text);
    assert_non_null(v);
    json_object_set_userdata(v, NULL, count_release);
    return v;
}

static const char *text_of(json_object *o)
{
    return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
}

static void builds_what_is_written(void **state)
{
    json_object *doc = json_object_new_object(), *arr = json_object_new_array();
    ps_code rc = PS_OK;
    ps__json_push(&rc, arr, json_object_new_int(1));
    ps__json_push(&rc, arr, json_object_new_string("two"));
    ps__json_set(&rc, doc, "list", arr);
    ps__json_set_null(&rc, doc, "none");
    ps__json_set_opt(&rc, doc, "absent", false, NULL);
    ps__json_set_opt(&rc, doc, "present", true, json_object_new_boolean(1));
    assert_int_equal(rc, PS_OK);
    assert_string_equal(text_of(doc),
                        "{\"list\":[1,\"two\"],\"none\":null,\"absent\":null,\"present\":true}");
    json_object_put(doc);
}

static void a_failed_allocation_sticks_and_leaks_nothing(void **state)
{
    released = 0;
    json_object *doc = json_object_new_object(), *arr = json_object_new_array();
    ps_code rc = PS_OK;
    ps__json_set(&rc, doc, "a", watched("kept"));
    assert_int_equal(rc, PS_OK);
    ps__json_set(&rc, doc, "b", NULL); /* json_object_new_string failed */
    assert_int_equal(rc, PS_ERR_NOMEM);
    /* from now on nothing is added, and each value handed over is released */
    ps__json_set(&rc, doc, "c", watched("dropped"));
    ps__json_push(&rc, arr, watched("dropped too"));
    ps__json_set_opt(&rc, doc, "d", true, watched("dropped three"));
    ps__json_set_null(&rc, doc, "e");
    assert_int_equal(rc, PS_ERR_NOMEM);
    assert_int_equal(released, 3);
    assert_string_equal(text_of(doc), "{\"a\":\"kept\"}");
    assert_int_equal(json_object_array_length(arr), 0);
    json_object_put(arr);
    json_object_put(doc);
    assert_int_equal(released, 4); /* "kept" went with its document, once */
}

static void a_missing_container_fails_and_releases_the_value(void **state)
{
    released = 0;
    ps_code rc = PS_OK;
    ps__json_set(&rc, NULL, "k", watched("v")); /* json_object_new_object failed */
    assert_int_equal(rc, PS_ERR_NOMEM);
    assert_int_equal(released, 1);
    rc = PS_OK;
    ps__json_push(&rc, NULL, watched("v"));
    assert_int_equal(rc, PS_ERR_NOMEM);
    assert_int_equal(released, 2);
    rc = PS_OK;
    ps__json_set_null(&rc, NULL, "k");
    assert_int_equal(rc, PS_ERR_NOMEM);
    json_object *arr = json_object_new_array();
    rc = PS_OK;
    ps__json_push(&rc, arr, NULL); /* the value's allocation failed */
    assert_int_equal(rc, PS_ERR_NOMEM);
    assert_int_equal(json_object_array_length(arr), 0);
    json_object_put(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(builds_what_is_written),
        cmocka_unit_test(a_failed_allocation_sticks_and_leaks_nothing),
        cmocka_unit_test(a_missing_container_fails_and_releases_the_value),
    };
    return cmocka_run_group_tests_name("json_build", tests, NULL, NULL);
}
