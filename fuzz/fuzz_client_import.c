/*
 * libFuzzer driver for the client's import (src/client/import.c,
 * ps_client_import: a Polyglot export, chatStore.json or an array of
 * chats, hostile bytes here) into a fresh local store. Aborts when
 *  - a refused import left anything in the store (it runs in one
 *    transaction) or reported chats as imported;
 *  - an accepted one shows more live chats than it says it imported;
 *  - importing the same file again changes the store (docs/client.md:
 *    among imports the newer file wins, so the same file is a no-op;
 *    at a clock that stands still, client_fuzz.h).
 */
#include "client_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ps_client *c = fuzz_fresh_client();
    ps_error err;
    ps_error_clear(&err);
    ps_import_report *r = NULL;
    ps_code rc = ps_client_import(c, (const char *)data, size, &r, &err);
    json_object *once = fuzz_state(c);
    size_t n = (size_t)json_object_object_length(once);
    if (rc != PS_OK && (n != 0 || (r && r->chats_imported)))
        abort();
    if (rc == PS_OK && n > r->chats_imported)
        abort();
    ps_import_report_free(r);
    if (rc == PS_OK) {
        r = NULL;
        if (ps_client_import(c, (const char *)data, size, &r, &err) != PS_OK)
            abort(); /* accepted once, refused the second time */
        ps_import_report_free(r);
        json_object *twice = fuzz_state(c);
        if (!json_object_equal(once, twice))
            abort();
        json_object_put(twice);
    }
    json_object_put(once);
    fuzz_drop_client(c);
    return 0;
}
