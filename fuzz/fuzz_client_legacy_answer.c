/*
 * libFuzzer driver for the client's reading of a legacy /sync answer
 * (src/client/legacy_sync.c: JSON parse, then ps__apply_legacy_answer:
 * `missing` chats merged as the server's writes, `deletions`,
 * serverClock), the bytes standing for a 200 answer from a hostile or
 * broken server, applied to a fresh local store. Aborts when
 *  - an answer that is refused, or whose apply failed, left anything in
 *    the store (the apply is one transaction);
 *  - applying the same accepted answer twice gives another store than
 *    applying it once (the server's writes merge idempotently; at a clock that
 *    stands still, client_fuzz.h).
 */
#include "client/sync_run.h"
#include "client_fuzz.h"
#include "core/json_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ps_code apply(ps_client *c, const uint8_t *data, size_t size)
{
    ps_error err;
    ps_error_clear(&err);
    json_object *ans = NULL;
    /* the depth the sync itself allows its answers (legacy_sync.c) */
    ps_code rc = ps__json_parse((const char *)data, size, PS_JSON_MAX_DEPTH + 4, &ans, &err);
    if (rc == PS_OK) {
        ps_sync_stats st = {0};
        sync_run r = {.c = c, .st = &st};
        rc = ps__apply_legacy_answer(&r, ans, 0, &err);
    }
    json_object_put(ans);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_applies_once(apply, data, size);
}
