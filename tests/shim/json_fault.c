/*
 * json-c failure injection for tests/client/test_client_nomem.c (tests
 * only): linked with -Wl,--wrap=json_object_new_object,... so every json-c
 * constructor and container add that polysync's own code calls passes here
 * (json-c is a shared library, so tests/shim/alloc_fault.c's malloc wrap
 * never sees its allocations). Once armed with N, the Nth of these calls
 * fails as json-c does when out of memory: a constructor returns NULL, an
 * add returns -1 and keeps nothing (json-c then leaves the value the
 * caller's), a writer (json_object_to_json_string_length/_ext, whose
 * printbuf is an allocation) returns NULL with a length of 0. Single-threaded: the client library runs on the caller's
 * thread.
 */
#include "json_fault.h"

#include <json-c/json.h>

static long fail_at, calls;
static bool fired;

void ps_json_fault_arm(long n)
{
    fail_at = n;
    calls = 0;
    fired = false;
}

bool ps_json_fault_fired(void)
{
    return fired;
}

long ps_json_fault_calls(void)
{
    return calls;
}

static bool fail_now(void)
{
    if (fail_at <= 0)
        return false;
    if (++calls != fail_at)
        return false;
    fired = true;
    return true;
}

json_object *__real_json_object_new_object(void);
json_object *__real_json_object_new_array(void);
json_object *__real_json_object_new_array_ext(int initial_size);
json_object *__real_json_object_new_string(const char *s);
json_object *__real_json_object_new_string_len(const char *s, int len);
json_object *__real_json_object_new_int(int32_t i);
json_object *__real_json_object_new_int64(int64_t i);
json_object *__real_json_object_new_boolean(json_bool b);
json_object *__real_json_object_new_double(double d);
int __real_json_object_object_add(json_object *obj, const char *key, json_object *val);
int __real_json_object_array_add(json_object *arr, json_object *val);
int __real_json_object_array_put_idx(json_object *arr, size_t idx, json_object *val);
const char *__real_json_object_to_json_string_length(json_object *obj, int flags, size_t *len);
const char *__real_json_object_to_json_string_ext(json_object *obj, int flags);

json_object *__wrap_json_object_new_object(void);
json_object *__wrap_json_object_new_array(void);
json_object *__wrap_json_object_new_array_ext(int initial_size);
json_object *__wrap_json_object_new_string(const char *s);
json_object *__wrap_json_object_new_string_len(const char *s, int len);
json_object *__wrap_json_object_new_int(int32_t i);
json_object *__wrap_json_object_new_int64(int64_t i);
json_object *__wrap_json_object_new_boolean(json_bool b);
json_object *__wrap_json_object_new_double(double d);
int __wrap_json_object_object_add(json_object *obj, const char *key, json_object *val);
int __wrap_json_object_array_add(json_object *arr, json_object *val);
int __wrap_json_object_array_put_idx(json_object *arr, size_t idx, json_object *val);
const char *__wrap_json_object_to_json_string_length(json_object *obj, int flags, size_t *len);
const char *__wrap_json_object_to_json_string_ext(json_object *obj, int flags);

json_object *__wrap_json_object_new_object(void)
{
    return fail_now() ? NULL : __real_json_object_new_object();
}

json_object *__wrap_json_object_new_array(void)
{
    return fail_now() ? NULL : __real_json_object_new_array();
}

json_object *__wrap_json_object_new_array_ext(int initial_size)
{
    return fail_now() ? NULL : __real_json_object_new_array_ext(initial_size);
}

json_object *__wrap_json_object_new_string(const char *s)
{
    return fail_now() ? NULL : __real_json_object_new_string(s);
}

json_object *__wrap_json_object_new_string_len(const char *s, int len)
{
    return fail_now() ? NULL : __real_json_object_new_string_len(s, len);
}

json_object *__wrap_json_object_new_int(int32_t i)
{
    return fail_now() ? NULL : __real_json_object_new_int(i);
}

json_object *__wrap_json_object_new_int64(int64_t i)
{
    return fail_now() ? NULL : __real_json_object_new_int64(i);
}

json_object *__wrap_json_object_new_boolean(json_bool b)
{
    return fail_now() ? NULL : __real_json_object_new_boolean(b);
}

json_object *__wrap_json_object_new_double(double d)
{
    return fail_now() ? NULL : __real_json_object_new_double(d);
}

int __wrap_json_object_object_add(json_object *obj, const char *key, json_object *val)
{
    return fail_now() ? -1 : __real_json_object_object_add(obj, key, val);
}

int __wrap_json_object_array_add(json_object *arr, json_object *val)
{
    return fail_now() ? -1 : __real_json_object_array_add(arr, val);
}

int __wrap_json_object_array_put_idx(json_object *arr, size_t idx, json_object *val)
{
    return fail_now() ? -1 : __real_json_object_array_put_idx(arr, idx, val);
}

const char *__wrap_json_object_to_json_string_length(json_object *obj, int flags, size_t *len)
{
    if (!fail_now())
        return __real_json_object_to_json_string_length(obj, flags, len);
    if (len)
        *len = 0;
    return NULL;
}

const char *__wrap_json_object_to_json_string_ext(json_object *obj, int flags)
{
    return fail_now() ? NULL : __real_json_object_to_json_string_ext(obj, flags);
}
