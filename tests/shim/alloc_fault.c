/*
 * Allocation-failure injection for polysyncd_faults (tests only): linked
 * with -Wl,--wrap=malloc,... so every allocation polysync's own code makes
 * (not libc's, SQLite's, json-c's or libmicrohttpd's, which are shared
 * libraries) passes here, and so does each call of json-c's writers
 * (json_object_to_json_string_length/_ext, whose printbuf is an allocation
 * json-c makes for us: NULL when out of memory). The file named by
 * PS_FAULT_ALLOC_FILE says
 * "GEN N": each new GEN restarts the count, and the Nth allocation after it
 * returns NULL (logged to stderr as "ps-fault: allocation N failed").
 * No file: no fault. test_faults.py sweeps N over every endpoint.
 */
#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long current_gen = -1, count;

static bool fail_now(void)
{
    const char *path = getenv("PS_FAULT_ALLOC_FILE");
    if (!path || !*path)
        return false;
    FILE *in = fopen(path, "r"); /* libc's own allocation, not wrapped */
    if (!in)
        return false;
    long gen = 0, n = 0;
    int got = fscanf(in, "%ld %ld", &gen, &n);
    fclose(in);
    if (got != 2)
        return false;
    pthread_mutex_lock(&lock);
    if (gen != current_gen) {
        current_gen = gen;
        count = 0;
    }
    bool fire = ++count == n;
    long at = count;
    pthread_mutex_unlock(&lock);
    if (fire) {
        char line[64];
        int len = snprintf(line, sizeof line, "ps-fault: allocation %ld failed\n", at);
        if (write(2, line, (size_t)len) != len) {
            /* the log is best effort; the NULL is what matters */
        }
    }
    return fire;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return fail_now() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return fail_now() ? NULL : __real_strndup(s, n);
}

const char *__real_json_object_to_json_string_length(json_object *obj, int flags, size_t *len);
const char *__real_json_object_to_json_string_ext(json_object *obj, int flags);
const char *__wrap_json_object_to_json_string_length(json_object *obj, int flags, size_t *len);
const char *__wrap_json_object_to_json_string_ext(json_object *obj, int flags);

const char *__wrap_json_object_to_json_string_length(json_object *obj, int flags, size_t *len)
{
    if (!fail_now())
        return __real_json_object_to_json_string_length(obj, flags, len);
    if (len)
        *len = 0; /* as json-c leaves it */
    return NULL;
}

const char *__wrap_json_object_to_json_string_ext(json_object *obj, int flags)
{
    return fail_now() ? NULL : __real_json_object_to_json_string_ext(obj, flags);
}
