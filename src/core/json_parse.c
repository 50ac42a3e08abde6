/* Strict, bounded JSON parsing on top of json-c's tokener; see json_parse.h. */
#include "core/json_parse.h"
#include "core/json_compact.h"
#include "core/json_precheck.h"

#include <ctype.h>
#include <json-c/printbuf.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One tokener per thread, reset between parses: creating one allocates and
 * clears its stack and buffer, which loading a long chat (one parse per
 * stored message) paid once per message, and every request once more.
 * Freed when its thread ends. */
static pthread_key_t tokener_key;
static pthread_once_t tokener_once = PTHREAD_ONCE_INIT;
static bool tokener_key_ok;

static void tokener_free(void *tok)
{
    json_tokener_free(tok);
}

static void tokener_key_make(void)
{
    tokener_key_ok = pthread_key_create(&tokener_key, tokener_free) == 0;
}

/* The stored state nests a validated message two levels deeper than the
 * request did. */
#define TRUSTED_DEPTH (PS_JSON_MAX_DEPTH + 8)
static json_tokener *trusted_tokener_new(void)
{
    json_tokener *tok = json_tokener_new_ex(TRUSTED_DEPTH);
    if (tok)
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    return tok;
}

/* The calling thread's tokener (*kept) or, when it has none it can keep, a
 * new one; NULL out of memory. */
static json_tokener *tokener_take(bool *kept)
{
    pthread_once(&tokener_once, tokener_key_make);
    json_tokener *tok = tokener_key_ok ? pthread_getspecific(tokener_key) : NULL;
    *kept = tok != NULL;
    if (*kept)
        json_tokener_reset(tok);
    else if ((tok = trusted_tokener_new()) != NULL)
        *kept = tokener_key_ok && pthread_setspecific(tokener_key, tok) == 0;
    return tok;
}

/* Done with a tokener of tokener_take. json_tokener_reset leaves some state
 * of a parse that stopped midway (test_chat_splitter caught a chat parsed
 * differently after one), so a tokener that did not end cleanly is not
 * used again. */
static void tokener_give_back(json_tokener *tok, bool kept, bool clean)
{
    if (kept && !clean) {
        pthread_setspecific(tokener_key, NULL);
        kept = false;
    }
    if (!kept)
        json_tokener_free(tok);
}

ps_code ps__json_parse(const char *text, size_t len, int max_depth, json_object **out,
                       ps_error *err)
{
    *out = NULL;
    if (len > (size_t)INT32_MAX) /* json-c takes an int length */
        return ps_error_set(err, PS_ERR_TOO_LARGE, -1, "", "JSON text too large");
    ps_code rc = ps__json_precheck(text, len, max_depth, err);
    if (rc != PS_OK)
        return rc;
    /* +1: json-c counts the scalar inside the deepest container as a level;
     * the pre-check has already bounded containers to max_depth, so the
     * thread's tokener, deeper, parses the same (and is not made anew for
     * every request). */
    bool kept = false;
    json_tokener *tok =
        max_depth + 1 <= TRUSTED_DEPTH ? tokener_take(&kept) : json_tokener_new_ex(max_depth + 1);
    if (!tok)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    /* Not JSON_TOKENER_VALIDATE_UTF8: the pre-check has validated every
     * byte, more strictly (json_precheck.h), and json-c's own check took a
     * third of its parse (0.08 of 0.28 s for the 63 MB reference history). */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *obj = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (jerr == json_tokener_continue && len > 0) {
        /* A bare number at the very end may still be "continuing" (more
         * digits could follow): one space tells the tokener it is over. */
        obj = json_tokener_parse_ex(tok, " ", 1);
        jerr = json_tokener_get_error(tok);
        end = len;
    }
    tokener_give_back(tok, kept, obj && jerr == json_tokener_success && end == len);

    if (jerr == json_tokener_continue) {
        rc = ps_error_set(err, PS_ERR_MALFORMED, -1, "", "malformed JSON: unexpected end of input");
    } else if (jerr == json_tokener_error_depth) {
        rc = ps_error_set(err, PS_ERR_TOO_DEEP, -1, "", "JSON nested deeper than %d levels",
                          max_depth);
    } else if (jerr != json_tokener_success) {
        rc = ps_error_set(err, PS_ERR_MALFORMED, -1, "", "malformed JSON at byte %zu: %s", end,
                          json_tokener_error_desc(jerr));
    } else {
        for (size_t i = end; i < len; i++) {
            if (!isspace((unsigned char)text[i])) {
                rc = ps_error_set(err, PS_ERR_MALFORMED, -1, "",
                                  "malformed JSON: trailing data at byte %zu", i);
                break;
            }
        }
    }
    if (rc != PS_OK) {
        json_object_put(obj);
        return rc;
    }
    *out = obj;
    return PS_OK;
}

const char *ps__json_text(json_object *obj, size_t *len)
{
    return json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
}

/* A container's kept text with its length, so that every later use (its
 * base hash, its row or pack, the pack-ahead check, a parent's rendering)
 * does not pay a strlen of it: a first upload asked for each message's
 * text five times, and strlen was 5 % of its request threads' CPU. The
 * text follows the length in the same allocation. */
typedef struct kept_text {
    size_t len;
    char text[];
} kept_text;

/* json-c's serializer for a container with a kept text (a parent
 * rendered by json-c's own writer copies it). */
static int kept_serialize(json_object *obj, struct printbuf *pb, int level, int flags)
{
    (void)level;
    (void)flags;
    const kept_text *k = json_object_get_userdata(obj);
    if (k->len > (size_t)INT32_MAX || printbuf_memappend(pb, k->text, (int)k->len) < 0)
        return -1;
    return (int)k->len;
}

static void kept_free(json_object *obj, void *userdata)
{
    (void)obj;
    free(userdata);
}

const char *ps__json_kept(json_object *obj, size_t *len)
{
    /* only this module (ps__json_text_kept, ps__json_keep_text) sets a
     * container's userdata */
    if (!json_object_is_type(obj, json_type_object) && !json_object_is_type(obj, json_type_array))
        return NULL;
    const kept_text *k = json_object_get_userdata(obj);
    if (!k)
        return NULL;
    if (len)
        *len = k->len;
    return k->text;
}

/* Each thread's buffer the kept texts are written in before they are
 * copied out at their size: a buffer per text, grown as it is written,
 * cost a malloc of 1 KiB and reallocs per message, and more memory than
 * the texts (~10 % of a first upload's request threads went to malloc).
 * Freed when its thread ends; one that grew past SCRATCH_KEEP is freed
 * after its use. */
#define SCRATCH_KEEP (1u << 20)
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static bool scratch_key_ok;

static void scratch_free(void *b)
{
    ps__dynbuf_free(b);
    free(b);
}

static void scratch_key_make(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

/* The calling thread's buffer, emptied; NULL when it has none and cannot
 * have one. */
static ps_dynbuf *scratch_take(void)
{
    pthread_once(&scratch_once, scratch_key_make);
    if (!scratch_key_ok)
        return NULL;
    ps_dynbuf *b = pthread_getspecific(scratch_key);
    if (!b) {
        if (!(b = malloc(sizeof *b)))
            return NULL;
        ps__dynbuf_init(b, SIZE_MAX - 1);
        if (pthread_setspecific(scratch_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    ps__dynbuf_reset(b);
    return b;
}

const char *ps__json_text_kept(json_object *obj, size_t *len)
{
    /* containers only: json-c keeps a parsed number's own text as its
     * userdata already, and only this module sets a container's */
    if (!json_object_is_type(obj, json_type_object) && !json_object_is_type(obj, json_type_array))
        return ps__json_text(obj, len);
    const char *kept = ps__json_kept(obj, len);
    if (kept)
        return kept;
    /* json-c's text, by the faster writer (json_compact.h), then copied
     * after its length */
    ps_dynbuf *scratch = scratch_take();
    bool done = scratch && ps__json_compact_append(scratch, obj) == PS_OK &&
                ps__json_keep_text(obj, scratch->data, scratch->len);
    if (scratch && scratch->cap > SCRATCH_KEEP)
        ps__dynbuf_free(scratch);
    if (!done) /* not kept: still the text */
        return ps__json_text(obj, len);
    return ps__json_kept(obj, len);
}

bool ps__json_keep_text(json_object *obj, const char *text, size_t len)
{
    kept_text *k = malloc(sizeof *k + len + 1);
    if (!k)
        return false;
    k->len = len;
    memcpy(k->text, text, len);
    k->text[len] = '\0';
    json_object_set_serializer(obj, kept_serialize, k, kept_free);
    return true;
}

ps_code ps__json_parse_trusted(const char *text, size_t len, json_object **out, ps_error *err)
{
    *out = NULL;
    bool kept;
    json_tokener *tok = tokener_take(&kept);
    if (!tok)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    /* the request parse leaves its own flags: the stored state is strict too */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *obj = json_tokener_parse_ex(tok, text, (int)len);
    if (!obj && json_tokener_get_error(tok) == json_tokener_continue)
        obj = json_tokener_parse_ex(tok, " ", 1);
    tokener_give_back(tok, kept, obj && json_tokener_get_error(tok) == json_tokener_success);
    if (!obj)
        return ps_error_set(err, PS_ERR_STORE, -1, "", "stored JSON does not parse");
    *out = obj;
    return PS_OK;
}
