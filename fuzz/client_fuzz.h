/*
 * What the client-side fuzz drivers share: a fresh client store per input
 * (in /dev/shm when there is one: no disk, no fsync cost), removed after,
 * so an input's outcome does not depend on the inputs before it; and a
 * snapshot of everything the store shows (each live chat as the Polyglot
 * client sees it, ps_client_chat_json), to compare states.
 *
 * The client's clock stands still in these drivers (__wrap_ps__time_now_ms
 * below): the client stamps some writes with its own clock (a server write that
 * carries no time; a time further ahead than PS_LOCAL_SKEW_MS, clamped to
 * now + 100 years), so with a running clock the same input applied twice
 * may store other times (docs/testing.md, the fuzzers' findings), and an
 * input would not always do the same thing.
 */
#ifndef PS_FUZZ_CLIENT_FUZZ_H
#define PS_FUZZ_CLIENT_FUZZ_H

#include "polysync/client.h"

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The client's "now" (ps__time_now_ms, redirected here by the linker:
 * -Wl,--wrap in fuzz/CMakeLists.txt): 2026-12-02T12:00:00Z, always. Only
 * polysync's own clock stands still; libFuzzer's timers keep running. */
int64_t __wrap_ps__time_now_ms(void);
int64_t __wrap_ps__time_now_ms(void)
{
    return 1796212800000LL;
}

static char fuzz_store_path[128];

static ps_client *fuzz_fresh_client(void)
{
    if (!fuzz_store_path[0])
        snprintf(fuzz_store_path, sizeof fuzz_store_path, "%s/ps-fuzz-client-%ld.db",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (long)getpid());
    ps_client *c = NULL;
    ps_error err;
    ps_error_clear(&err);
    if (ps_client_open(fuzz_store_path, &c, &err) != PS_OK) {
        fprintf(stderr, "cannot open %s: %s\n", fuzz_store_path, err.message);
        abort();
    }
    return c;
}

static void fuzz_drop_client(ps_client *c)
{
    ps_client_close(c);
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (unsigned i = 0; i < 4; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", fuzz_store_path, suffixes[i]);
        unlink(p);
    }
}

/* The live chats, each whole, as {id: chat} (parsed, so states compare
 * with json_object_equal: keys may come in another order and mean the
 * same, and chats updated at the same time may be listed either way); the
 * caller's. Aborts when the store cannot be read: a state the fuzzer must
 * report. */
static json_object *fuzz_state(ps_client *c)
{
    ps_chat_info *list = NULL;
    size_t n = 0;
    ps_error err;
    ps_error_clear(&err);
    if (ps_client_chat_list(c, &list, &n, &err) != PS_OK)
        abort();
    json_object *state = json_object_new_object();
    for (size_t i = 0; i < n; i++) {
        char *json = NULL;
        if (ps_client_chat_json(c, list[i].id, &json, &err) != PS_OK)
            abort();
        json_object *doc = json_tokener_parse(json);
        ps_free(json);
        if (!doc || !state)
            abort();
        json_object_object_add(state, list[i].id, doc);
    }
    ps_chat_info_free(list, n);
    return state;
}

/* The check of the answer targets: on a fresh client, `apply` either
 * refuses the input and leaves the store empty, or accepts it, and a
 * second apply accepts it again and changes nothing. Aborts otherwise. */
static inline int fuzz_applies_once(ps_code (*apply)(ps_client *c, const uint8_t *data,
                                                     size_t size),
                                    const uint8_t *data, size_t size)
{
    ps_client *c = fuzz_fresh_client();
    ps_code rc = apply(c, data, size);
    json_object *once = fuzz_state(c);
    size_t n = (size_t)json_object_object_length(once);
    if (rc != PS_OK && n != 0)
        abort();
    if (rc == PS_OK) {
        if (apply(c, data, size) != PS_OK)
            abort(); /* applied once, refused the second time */
        json_object *twice = fuzz_state(c);
        if (!json_object_equal(once, twice))
            abort();
        json_object_put(twice);
    }
    json_object_put(once);
    fuzz_drop_client(c);
    return 0;
}

#endif
