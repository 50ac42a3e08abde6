/*
 * libFuzzer driver for the client's reading of a /v2/sync answer
 * (src/client/v2_answer.c: ps__parse_v2_answer, then ps__apply_v2_answer
 * with its per-chat merge, ps__apply_remote_chat), the bytes standing for
 * a 200 answer from a hostile or broken server, applied to a fresh local
 * store. Aborts when
 *  - an answer the parser refused, or one whose apply failed, left
 *    anything in the store (the apply is one transaction);
 *  - applying the same accepted answer twice gives another store than
 *    applying it once (the server's writes merge idempotently,
 *    docs/merge.md; at a clock that stands still,
 *    client_fuzz.h).
 */
#include "client/sync_run.h"
#include "client_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ps_code apply(ps_client *c, const uint8_t *data, size_t size)
{
    ps_http_answer a;
    ps__http_answer_init(&a);
    a.status = 200;
    ps_error err;
    ps_error_clear(&err);
    ps_code rc = ps__dynbuf_add(&a.body, (const char *)data, size);
    v2_answer ans = {0};
    if (rc == PS_OK)
        rc = ps__parse_v2_answer(c, &a, &ans, &err);
    if (rc == PS_OK) {
        ps_sync_stats st = {0};
        sync_run r = {.c = c, .st = &st};
        /* a request that carried no changes, from a stored cursor */
        rc = ps__apply_v2_answer(&r, &ans, NULL, 0, "cursor", false, &err);
    }
    json_object_put(ans.root);
    ps__http_answer_free(&a);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_applies_once(apply, data, size);
}
