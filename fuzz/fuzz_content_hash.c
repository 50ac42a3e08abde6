/*
 * libFuzzer driver for the content hash (src/server/content_hash.cpp), the
 * one-pass reader over simdjson's stage-1 tokens. Aborts when it disagrees
 * with the reader it replaced (tests/unit/content_hash_ondemand.cpp: the
 * structure check, then simdjson's On-Demand parser), copied or read in
 * place (exactly PS_CONTENT_HASH_PADDING bytes of anything after the text:
 * ASan catches a read past them), in verdict, hash or id; or when it hashes
 * a text the pre-check or json-c (a strict parse) refuses; or when it
 * certifies a chat valid (ps_content_hash_checked, copied and in place)
 * that ps__validate_chat refuses.
 */
#include "content_hash_ondemand.h"
#include "core/json_parse.h"
#include "core/json_precheck.h"
#include "core/validate.h"
#include "server/content_hash.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int max_depth = data[0] % 8 == 0 ? 1 + data[0] / 8 % 6 : PS_JSON_MAX_DEPTH;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char *lying = malloc(len + PS_CONTENT_HASH_PADDING);
    if (!lying)
        return 0;
    memcpy(lying, text, len);
    memset(lying + len, '\\', PS_CONTENT_HASH_PADDING);
    uint64_t now = 0, before = 0, in_place = 0, checked = 0, checked_in_place = 0;
    char id_now[40] = "", id_before[40] = "", id_in_place[40] = "", id_checked[40] = "",
         id_checked_in_place[40] = "";
    /* ids of up to 8 bytes, or the default limit */
    size_t max_id = data[0] & 0x40 ? 8 : ps__limits_default().max_id_bytes;
    bool valid = false, valid_in_place = false;
    bool a = ps_content_hash(text, len, max_depth, &now, id_now, sizeof id_now);
    bool b = ps__content_hash_ondemand(text, len, max_depth, &before, id_before, sizeof id_before);
    bool c =
        ps_content_hash_in_place(lying, len, max_depth, &in_place, id_in_place, sizeof id_in_place);
    bool d = ps_content_hash_checked(text, len, max_depth, max_id, &checked, id_checked,
                                     sizeof id_checked, &valid);
    bool e = ps_content_hash_in_place_checked(lying, len, max_depth, max_id, &checked_in_place,
                                              id_checked_in_place, sizeof id_checked_in_place,
                                              &valid_in_place);
    free(lying);
    if (a != b || a != c || a != d || a != e || valid != valid_in_place || (valid && !a))
        abort();
    if (a && (now != before || now != in_place || now != checked || now != checked_in_place ||
              strcmp(id_now, id_before) != 0 || strcmp(id_now, id_in_place) != 0 ||
              strcmp(id_now, id_checked) != 0 || strcmp(id_now, id_checked_in_place) != 0))
        abort();
    if (valid) {
        ps_error err;
        json_object *chat = NULL;
        ps_limits lim = ps__limits_default();
        lim.max_id_bytes = max_id;
        if (ps__json_parse(text, len, max_depth, &chat, &err) != PS_OK ||
            ps__validate_chat(chat, 0, &lim, &err) != PS_OK)
            abort();
        json_object_put(chat);
    }
    if (a) {
        ps_error err;
        json_object *parsed = NULL;
        if (ps__json_precheck(text, len, max_depth, &err) != PS_OK ||
            ps__json_parse(text, len, PS_JSON_MAX_DEPTH, &parsed, &err) != PS_OK)
            abort();
        json_object_put(parsed);
    }
    return 0;
}
