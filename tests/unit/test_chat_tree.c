/*
 * ps_chat_tree_build (server/chat_tree.h): a chat's json-c tree built from
 * simdjson's stage 1 instead of json-c's tokener, which must be exactly the
 * tree ps__json_parse_trusted gives, plus the kept compact text of each root
 * message whose bytes already are that text.
 *
 * A differential test whose oracle is json-c itself, not the module: every
 * input is parsed by json-c's tokener (ps__json_parse_trusted) and by the
 * builder, and the two trees must agree more strictly than
 * json_object_equal asks:
 * - the same json-c type at every node (int vs double; null as NULL), the
 *   same keys in the same order, the same string bytes and length
 *   (embedded NULs), the same int64 and uint64 readings, for doubles the
 *   same bits and the same text (json-c writes a parsed double with its own
 *   text, "1E+5" as "1E+5"), arrays of the same length;
 * - json-c's writer (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
 *   ps__json_text's flags) and ps__json_compact_append give the tokener
 *   tree's text for the whole builder tree, its kept texts included;
 * - a kept text (ps__json_kept) anywhere is json-c's writer's text of the
 *   tokener's node; on a root message it is also the message's own bytes
 *   (found here by a scanner of the test's own), so a message whose bytes
 *   are not compact (a space, "\/", "\u0041", -0, ...) has none; and where
 *   the bytes are obviously compact it must be there (counted, so a
 *   builder that never keeps anything fails).
 * json-c is the oracle because the builder's promise is to be
 * indistinguishable from it: stored values, renderings and device bases'
 * hashes were all made from json-c's trees and text (docs/merge.md).
 *
 * The builder may refuse a text (false: the caller parses with json-c) only
 * for the reasons its header lists: a root that is not an object, a key
 * twice, a key with an escaped NUL, a surrogate \u escape, an integer of
 * over 18 digits, out of memory. Inputs with such a thing are "rare": either
 * refused, or built exactly. Any other input refused fails the test.
 *
 * Each text is read where it lies with exactly PS_CONTENT_HASH_PADDING bytes
 * of garbage ('"', '\\', '}', ...) after it (ASan catches a read further),
 * and the buffer is scribbled over and freed right after the build, so the
 * tree may not point into it.
 *
 * Inputs: hand-written edge cases (every escape, number form, literal,
 * empty and 60-deep containers, root "messages" in every shape, compact and
 * non-compact messages side by side), the same respaced with all four
 * whitespace bytes between tokens, escapes across simdjson's 64-byte
 * blocks, seeded random chats (PS_PROPERTY_SEED / PS_PROPERTY_CASES), the
 * Polyglot app's captured chats (../shared/fixtures/polyglot) written
 * plain, with slashes escaped, spaced and pretty, and the benchmark's
 * generated chats (bench/src/gen.c, linked in).
 */
#include "test_util.h"

#include "core/dynbuf.h"
#include "core/json_compact.h"
#include "gen.h"
#include "property_rng.h"
#include "server/chat_tree.h"
#include "server/content_hash.h"

#include <dirent.h>
#include <stdlib.h>

#define FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define SHOWN 700 /* bytes of an input shown when it fails */

/* ---- tallies ---- */

typedef struct tally {
    size_t inputs, built, refused; /* refused: rare inputs the builder left to json-c */
    size_t messages;               /* root messages that are objects, in built trees */
    size_t compact;                /* of which the bytes are json-c's compact text */
    size_t kept;                   /* of which the builder kept the text */
} tally;

static void tally_print(const char *name, const tally *t)
{
    print_message("%s: %zu inputs, %zu built, %zu rare refused; %zu messages, %zu compact, %zu "
                  "kept (%zu compact left without, allowed for rare spellings)\n",
                  name, t->inputs, t->built, t->refused, t->messages, t->compact, t->kept,
                  t->compact - t->kept);
}

/* ---- small helpers ---- */

/* json-c's compact text of v (ps__json_text's flags); belongs to v. */
static const char *writer(json_object *v, size_t *len)
{
    const char *s = json_object_to_json_string_length(v, FLAGS, len);
    assert_non_null(s);
    return s;
}

static bool same_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && memcmp(a, b, an) == 0;
}

/* `text` copied into a new buffer with PS_CONTENT_HASH_PADDING bytes of
 * garbage after it: quotes, backslashes and closers, which a read past the
 * end would take for JSON. */
static char *padded_copy(const char *text, size_t n)
{
    static const char garbage[] = "\"\\}]\"\\\\\"},1 x\"";
    char *p = malloc(n + PS_CONTENT_HASH_PADDING);
    assert_non_null(p);
    memcpy(p, text, n);
    for (size_t k = 0; k < PS_CONTENT_HASH_PADDING; k++)
        p[n + k] = garbage[k % (sizeof garbage - 1)];
    return p;
}

/* What a failure names: the input (cut at SHOWN bytes) and where it came from. */
typedef struct where {
    const char *what;
    const char *text;
    size_t n;
} where;

static void differ(const where *at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void differ(const where *at, const char *path, const char *fmt, ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fail_msg("%s, at %s: %s\n  input (%zu bytes): %.*s%s", at->what, path[0] ? path : "the root",
             why, at->n, (int)(at->n < SHOWN ? at->n : SHOWN), at->text,
             at->n < SHOWN ? "" : "...");
}

/* Appends a path segment (".key" or "[i]") to path[0..len), cut to fit. */
static size_t path_push(char *path, size_t size, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t path_push(char *path, size_t size, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(path + len, size - len, fmt, ap);
    va_end(ap);
    size_t end = n < 0 ? len : len + (size_t)n;
    return end < size ? end : size - 1;
}

/* ---- the deep comparison ---- */

#define PATH_SIZE 512

/* t (the tokener's) and b (the builder's) agree node by node, as the file's
 * comment says; a kept text on a container of b is json-c's text of t. */
static void same_tree(const where *at, json_object *t, json_object *b, char *path, size_t plen)
{
    enum json_type tt = json_object_get_type(t), bt = json_object_get_type(b);
    if (tt != bt)
        differ(at, path, "json-c's tree has a %s, the builder's a %s", json_type_to_name(tt),
               json_type_to_name(bt));
    if ((t == NULL) != (b == NULL))
        differ(at, path, "null is NULL in json-c's tree: %p in the builder's", (void *)b);
    size_t tn = 0, bn = 0;
    switch (tt) {
    case json_type_null:
        return;
    case json_type_boolean:
        if (json_object_get_boolean(t) != json_object_get_boolean(b))
            differ(at, path, "another boolean");
        return;
    case json_type_int:
        if (json_object_get_int64(t) != json_object_get_int64(b) ||
            json_object_get_uint64(t) != json_object_get_uint64(b))
            differ(
                at, path, "int64 %lld / uint64 %llu in json-c's tree, %lld / %llu in the builder's",
                (long long)json_object_get_int64(t), (unsigned long long)json_object_get_uint64(t),
                (long long)json_object_get_int64(b), (unsigned long long)json_object_get_uint64(b));
        break; /* and its text, below */
    case json_type_double: {
        double dt = json_object_get_double(t), db = json_object_get_double(b);
        uint64_t ut, ub;
        memcpy(&ut, &dt, sizeof ut);
        memcpy(&ub, &db, sizeof ub);
        if (ut != ub)
            differ(at, path, "double %.17g in json-c's tree, %.17g in the builder's", dt, db);
        break; /* and its text, below */
    }
    case json_type_string: {
        const char *st = json_object_get_string(t), *sb = json_object_get_string(b);
        tn = (size_t)json_object_get_string_len(t);
        bn = (size_t)json_object_get_string_len(b);
        if (!same_bytes(st, tn, sb, bn))
            differ(at, path,
                   "string \"%.*s\" (%zu bytes) in json-c's tree, \"%.*s\" (%zu) in the "
                   "builder's",
                   (int)tn, st, tn, (int)bn, sb, bn);
        return;
    }
    case json_type_array:
        tn = json_object_array_length(t);
        bn = json_object_array_length(b);
        if (tn != bn)
            differ(at, path, "%zu elements in json-c's tree, %zu in the builder's", tn, bn);
        for (size_t i = 0; i < tn; i++) {
            size_t len = path_push(path, PATH_SIZE, plen, "[%zu]", i);
            same_tree(at, json_object_array_get_idx(t, i), json_object_array_get_idx(b, i), path,
                      len);
            path[plen] = '\0';
        }
        break; /* and a kept text, below */
    case json_type_object: {
        if (json_object_object_length(t) != json_object_object_length(b))
            differ(at, path, "%d keys in json-c's tree, %d in the builder's",
                   json_object_object_length(t), json_object_object_length(b));
        /* both in their order (json-c's objects iterate in insertion order) */
        struct json_object_iterator it = json_object_iter_begin(t), end = json_object_iter_end(t);
        struct json_object_iterator ib = json_object_iter_begin(b), endb = json_object_iter_end(b);
        for (; !json_object_iter_equal(&it, &end);
             json_object_iter_next(&it), json_object_iter_next(&ib)) {
            if (json_object_iter_equal(&ib, &endb))
                differ(at, path, "fewer keys in the builder's tree");
            const char *kt = json_object_iter_peek_name(&it), *kb = json_object_iter_peek_name(&ib);
            if (strcmp(kt, kb) != 0)
                differ(at, path, "key \"%s\" in json-c's tree, \"%s\" in the builder's", kt, kb);
            size_t len = path_push(path, PATH_SIZE, plen, ".%s", kt);
            same_tree(at, json_object_iter_peek_value(&it), json_object_iter_peek_value(&ib), path,
                      len);
            path[plen] = '\0';
        }
        break; /* and a kept text, below */
    }
    }
    if (tt == json_type_int || tt == json_type_double) {
        /* the node's own text: an int reprinted, a double's kept as parsed */
        const char *st = writer(t, &tn), *sb = writer(b, &bn);
        if (!same_bytes(st, tn, sb, bn))
            differ(at, path, "json-c writes %.*s for its node, %.*s for the builder's", (int)tn, st,
                   (int)bn, sb);
        return;
    }
    const char *kept = ps__json_kept(b, &bn);
    if (kept) {
        const char *st = writer(t, &tn);
        if (!same_bytes(st, tn, kept, bn))
            differ(at, path, "kept text %.*s, json-c writes %.*s", (int)bn, kept, (int)tn, st);
    }
}

/* ---- the root messages' bytes, found by a scanner of the test's own ---- */

typedef struct span {
    size_t at, len;
} span;

static size_t skip_ws(const char *t, size_t n, size_t i)
{
    while (i < n && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
        i++;
    return i;
}

/* t[i] is '"': the index after the closing quote. */
static size_t skip_string(const char *t, size_t n, size_t i)
{
    for (i++; i < n && t[i] != '"'; i++)
        if (t[i] == '\\')
            i++;
    return i + 1;
}

/* The index after the value starting at t[i] (valid JSON). */
static size_t skip_value(const char *t, size_t n, size_t i)
{
    if (t[i] == '"')
        return skip_string(t, n, i);
    if (t[i] == '{' || t[i] == '[') {
        int depth = 0;
        while (i < n) {
            if (t[i] == '"') {
                i = skip_string(t, n, i);
                continue;
            }
            if (t[i] == '{' || t[i] == '[')
                depth++;
            else if ((t[i] == '}' || t[i] == ']') && --depth == 0)
                return i + 1;
            i++;
        }
        return n;
    }
    while (i < n && t[i] != ',' && t[i] != ']' && t[i] != '}' && t[i] != ' ' && t[i] != '\t' &&
           t[i] != '\n' && t[i] != '\r')
        i++;
    return i;
}

/* Whether the key literal t[at..at+len) (quotes included) reads "messages"
 * (json-c decodes one with escapes). */
static bool key_is_messages(const char *t, size_t at, size_t len)
{
    if (!memchr(t + at, '\\', len))
        return same_bytes(t + at, len, "\"messages\"", 10);
    char *lit = strndup(t + at, len);
    assert_non_null(lit);
    json_object *s = json_tokener_parse(lit);
    bool yes =
        json_object_is_type(s, json_type_string) &&
        same_bytes(json_object_get_string(s), (size_t)json_object_get_string_len(s), "messages", 8);
    json_object_put(s);
    free(lit);
    return yes;
}

/* The byte spans of the elements of the root object's "messages" array
 * (the last such key, as json-c keeps the last), into *spans (malloc'ed);
 * false when the root is not an object or has no "messages" array. */
static bool root_message_spans(const char *t, size_t n, span **spans, size_t *count)
{
    *spans = NULL;
    *count = 0;
    size_t i = skip_ws(t, n, 0);
    if (i >= n || t[i] != '{')
        return false;
    bool found = false;
    i = skip_ws(t, n, i + 1);
    while (i < n && t[i] == '"') {
        size_t key = i;
        i = skip_string(t, n, i);
        bool messages = key_is_messages(t, key, i - key);
        i = skip_ws(t, n, skip_ws(t, n, i) + 1); /* the ':' */
        if (messages && t[i] == '[') {
            found = true;
            free(*spans);
            *spans = NULL;
            *count = 0;
            size_t cap = 0;
            i = skip_ws(t, n, i + 1);
            while (i < n && t[i] != ']') {
                size_t start = i;
                i = skip_value(t, n, i);
                if (*count == cap) {
                    cap = cap ? 2 * cap : 8;
                    *spans = realloc(*spans, cap * sizeof **spans);
                    assert_non_null(*spans);
                }
                (*spans)[(*count)++] = (span){start, i - start};
                i = skip_ws(t, n, i);
                if (t[i] == ',')
                    i = skip_ws(t, n, i + 1);
            }
            i++; /* the ']' */
        } else {
            if (messages)
                found = false; /* a later "messages" that is no array wins */
            i = skip_value(t, n, i);
        }
        i = skip_ws(t, n, i);
        if (i < n && t[i] == ',')
            i = skip_ws(t, n, i + 1);
    }
    return found;
}

/* ---- one input ---- */

/* What is asked of an input beyond the trees' agreement. */
typedef struct expect {
    /* the builder may refuse it (a reason of its header's) */
    bool rare;
    /* one letter per element of the root "messages" array, or NULL:
     *   K  its bytes are its compact text (checked) and it is kept
     *   -  its bytes are not (checked), so nothing is kept
     *   ~  either way (compact by a rare spelling: kept or not)
     *   .  not an object (checked) */
    const char *messages;
    /* with messages NULL: every message whose bytes are its compact text
     * is kept (a compact chat written by a writer) */
    bool all_compact_kept;
} expect;

/* The root messages of a built tree against their bytes and kept texts. */
static void check_messages(const where *at, const expect *ex, json_object *t, json_object *b,
                           tally *ty)
{
    json_object *tm, *bm;
    span *spans;
    size_t count;
    bool scanned = root_message_spans(at->text, at->n, &spans, &count);
    bool has = json_object_is_type(t, json_type_object) &&
               json_object_object_get_ex(t, "messages", &tm) &&
               json_object_is_type(tm, json_type_array);
    if (scanned != has || (has && count != json_object_array_length(tm)))
        differ(at, "", "test bug: the scanner finds %zu root messages (%d), json-c %zu (%d)", count,
               scanned, has ? json_object_array_length(tm) : 0, has);
    if (ex->messages && strlen(ex->messages) != count)
        differ(at, "", "test bug: a pattern of %zu letters for %zu messages", strlen(ex->messages),
               count);
    if (!has) {
        free(spans);
        return;
    }
    assert_true(json_object_object_get_ex(b, "messages", &bm));
    for (size_t i = 0; i < count; i++) {
        char path[64];
        snprintf(path, sizeof path, ".messages[%zu]", i);
        char letter = ex->messages ? ex->messages[i] : ex->all_compact_kept ? 'S' : '~';
        json_object *te = json_object_array_get_idx(tm, i), *be = json_object_array_get_idx(bm, i);
        if (!json_object_is_type(te, json_type_object)) {
            if (letter != '.' && ex->messages)
                differ(at, path, "test bug: not an object, the pattern says %c", letter);
            continue;
        }
        if (letter == '.')
            differ(at, path, "test bug: an object, the pattern says .");
        size_t wn, kn;
        const char *w = writer(te, &wn);
        bool compact = same_bytes(at->text + spans[i].at, spans[i].len, w, wn);
        const char *kept = ps__json_kept(be, &kn);
        ty->messages++;
        ty->compact += compact;
        ty->kept += kept != NULL;
        if (kept && !compact) /* same_tree saw that it is json-c's text */
            differ(at, path, "a text kept for a message whose bytes are not compact: %.*s",
                   (int)spans[i].len, at->text + spans[i].at);
        if (letter == 'K' && !compact)
            differ(at, path, "test bug: not compact (json-c writes %.*s)", (int)wn, w);
        if (letter == '-' && compact)
            differ(at, path, "test bug: compact after all");
        if ((letter == 'K' && !ex->rare) || (letter == 'S' && compact))
            if (!kept)
                differ(at, path, "no kept text for a compact message: %.*s", (int)wn, w);
    }
    free(spans);
}

/* Both parses of text[0..n) and everything the file's comment asks. */
static void check_input(const char *what, const char *text, size_t n, const expect *ex, tally *ty)
{
    where at = {what, text, n};
    char *padded = padded_copy(text, n);
    json_object *t = NULL;
    ps_error err;
    ps_error_clear(&err);
    if (ps__json_parse_trusted(padded, n, &t, &err) != PS_OK)
        differ(&at, "", "test bug: json-c does not read it");
    static int untouched;
    json_object *b = (json_object *)&untouched;
    bool built = ps_chat_tree_build(padded, n, &b);
    /* the tree may not point into the text: gone now */
    memset(padded, '"', n + PS_CONTENT_HASH_PADDING);
    free(padded);
    ty->inputs++;
    if (!built) {
        if (b != (json_object *)&untouched && b != NULL)
            differ(&at, "", "refused, but *out was set");
        if (!ex->rare)
            differ(&at, "", "refused, and it has nothing the builder may refuse a text for");
        ty->refused++;
        json_object_put(t);
        return;
    }
    if (b == (json_object *)&untouched)
        differ(&at, "", "built, but *out not set");
    ty->built++;
    char path[PATH_SIZE] = "";
    same_tree(&at, t, b, path, 0);
    /* the whole text, by json-c's writer (kept texts copied) and by ours */
    size_t tn, bn;
    const char *tt = writer(t, &tn), *bt = writer(b, &bn);
    if (!same_bytes(tt, tn, bt, bn))
        differ(&at, "", "json-c writes the builder's tree as %.*s", (int)bn, bt);
    ps_dynbuf ours;
    ps__dynbuf_init(&ours, SIZE_MAX - 1);
    assert_int_equal(ps__json_compact_append(&ours, b), PS_OK);
    if (!same_bytes(tt, tn, ours.data, ours.len))
        differ(&at, "", "ps__json_compact_append writes the builder's tree as %.*s", (int)ours.len,
               ours.data);
    ps__dynbuf_free(&ours);
    check_messages(&at, ex, t, b, ty);
    json_object_put(b);
    json_object_put(t);
}

/* ---- hand-written inputs ---- */

typedef struct hand_case {
    bool rare;
    const char *messages; /* the pattern of struct expect */
    const char *text;     /* ' stands for " */
} hand_case;

#define ORD false
#define RARE true

/* `q` with ' for " (the cases read better so); malloc'ed. */
static char *unquote(const char *q)
{
    char *s = strdup(q);
    assert_non_null(s);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    return s;
}

static void run_hand_cases(const char *name, const hand_case *cases, size_t count, tally *ty)
{
    for (size_t k = 0; k < count; k++) {
        char *text = unquote(cases[k].text);
        char what[96];
        snprintf(what, sizeof what, "%s case %zu", name, k);
        expect ex = {.rare = cases[k].rare, .messages = cases[k].messages};
        check_input(what, text, strlen(text), &ex, ty);
        free(text);
    }
}

#define RUN(name, cases, ty) run_hand_cases(name, cases, sizeof cases / sizeof *cases, ty)

static const hand_case shapes[] = {
    {ORD, NULL, "{}"},
    {ORD, "", "{'messages':[]}"},
    {ORD, "KKK", "{'a':[],'b':{},'c':[[],[{}],{'d':[]}],'messages':[{},{'e':{}},{'f':[[]]}]}"},
    {ORD, "K", "{'id':'c','messages':[{'id':'m1','role':'user','content':'hi'}]}"},
    {ORD, "KK", "{'messages':[{'id':'m1'},{'id':'m2'}],'id':'c','title':'t'}"},
    {ORD, "K", "{'id':'c','messages':[{'id':'m1'}],'title':'t'}"},
    {ORD, NULL, "{'':''}"},
    {ORD, "K", "{'messages':[{'':'','e':''}]}"},
    /* literals as values and in arrays; elements that are not objects */
    {ORD, "K.......",
     "{'t':true,'f':false,'z':null,'a':[true,false,null,[null]],'messages':[{'t':true,'f':"
     "false,'z':null,'a':[null,true,false]},null,true,false,1,'x',[{}],[]]}"},
    {ORD, "..", "{'messages':[[{'a':1}],'{}']}"},
    /* "messages" not at the root: only the root's are promised kept texts */
    {ORD, "K", "{'x':{'messages':[{'a':1}]},'messages':[{'b':2}]}"},
    {ORD, NULL, "{'x':{'messages':[{'a':1}]}}"},
    {ORD, NULL, "{'x':[{'messages':[{'a':1},{'b':[{'messages':[{}]}]}]}]}"},
    {ORD, "K", "{'messages':[{'messages':[{'a':1}]}]}"},
    /* a root "messages" that is not an array */
    {ORD, NULL, "{'messages':{'a':{'b':1}}}"},
    {ORD, NULL, "{'messages':'x'}"},
    {ORD, NULL, "{'messages':null}"},
    {ORD, NULL, "{'messages':1.5}"},
    {ORD, NULL, "{'messages':{}}"},
    /* "messages" spelt with an escape: the same key to json-c */
    {ORD, "~", "{'m\\u0065ssages':[{'a':1}]}"},
    {ORD, NULL, "{'messages ':[{'a':1}],'Messages':[{'b':1}]}"},
    /* around the root */
    {ORD, "K", " \t\n\r{'messages':[{'a':1}]} \r\n\t "},
};

static const hand_case escapes[] = {
    /* the escapes json-c writes as they are */
    {ORD, "K", "{'messages':[{'s':'\\' \\\\ \\b\\f\\n\\r\\t'}]}"},
    {ORD, "K", "{'messages':[{'s':'a\\'b','\\'':'\\\\','\\\\':'\\n'}]}"},
    /* and those it writes otherwise */
    {ORD, "-", "{'messages':[{'s':'a\\/b'}]}"},
    {ORD, "-", "{'messages':[{'s':'caf\\u00e9'}]}"},
    {ORD, "-", "{'messages':[{'s':'\\u20ac'}]}"},
    {ORD, "K", "{'messages':[{'s':'a/b </script>'}]}"},
    /* \u escapes of control bytes: json-c writes \u00xx, lowercase */
    {ORD, "~~-~-~---",
     "{'messages':[{'s':'\\u0001'},{'s':'\\u001f'},{'s':'\\u001F'},{'s':'\\u000b'},{'s':"
     "'\\u000B'},{'s':'\\u0000'},{'s':'\\u0041'},{'s':'\\u000a'},{'s':'\\u007f'}]}"},
    {ORD, "---", "{'messages':[{'s':'\\u0022'},{'s':'\\u005c'},{'s':'\\u002f'}]}"},
    {ORD, "K", "{'messages':[{'s':'\x7f'}]}"},
    /* embedded NULs in values */
    {ORD, "~", "{'s':'a\\u0000b','messages':[{'s':'\\u0000\\u0000x'}]}"},
    /* raw UTF-8 of every length */
    {ORD, "K",
     "{'messages':[{'s':'caf\xc3\xa9 \xc2\x80 \xdf\xbf \xe4\xb8\xad \xef\xbf\xbf \xf0\x9f\x98\x80 "
     "\xf4\x8f\xbf\xbf'}]}"},
    {ORD, "K", "{'\xc3\xa9':'\xe2\x82\xac','messages':[{'\xf0\x9f\x98\x80':'\xe4\xb8\xad'}]}"},
    /* keys with escapes */
    {ORD, "K--",
     "{'k\\n':1,'k\\u00e9':2,'\\\\':3,'\\'':4,'':5,'messages':[{'k\\t':1},{'k\\u0041':1},{'a\\/"
     "b':1}]}"},
    /* surrogate escapes: a pair (json-c writes its UTF-8), each half alone, upper case */
    {RARE, "-", "{'messages':[{'s':'\\ud83d\\ude00'}]}"},
    {RARE, "-", "{'messages':[{'s':'\\uD83D\\uDE00'}]}"},
    {RARE, NULL, "{'s':'\\ud800'}"},
    {RARE, NULL, "{'s':'\\udfff x'}"},
    {RARE, "-", "{'messages':[{'\\ud83d\\ude00':1}]}"},
    {ORD, NULL, "{'s':'\\ud7ff\\ue000'}"}, /* just outside the surrogates */
    /* a key with an escaped NUL */
    {RARE, NULL, "{'a\\u0000b':1}"},
    {RARE, "-", "{'messages':[{'k\\u0000':1}]}"}, /* json-c: {"k":1} */
};

static const hand_case numbers[] = {
    {ORD, "K-KKKKKK~K~K~~K~K~~~~",
     "{'messages':[{'n':0},{'n':-0},{'n':1},{'n':-1},{'n':123456789012345678},{'n':-"
     "123456789012345678},{'n':1.0},{'n':1.5},{'n':-0.0},{'n':1e5},{'n':1E+5},{'n':1.5e-7},{'n':"
     "1e999},{'n':-1e999},{'n':0.1},{'n':3.141592653589793238},{'n':2.50},{'n':1e-400},{'n':-"
     "0e0},{'n':1E5},{'n':0e0}]}"},
    {ORD, NULL,
     "{'a':[0,-0,1,-1,123456789012345678,-123456789012345678,1.0,-0.0,1e5,1E+5,1.5e-7,1e999,-"
     "1e999,0.1,3.141592653589793238],'b':999999999999999999,'c':-999999999999999999}"},
    {ORD, "K", "{'messages':[{'n':[1,-2,3.5,[4e0,{'x':-5.25E-3}]]}]}"},
    /* integers of over 18 digits */
    {RARE, "K", "{'messages':[{'n':1234567890123456789}]}"},
    {RARE, "K", "{'messages':[{'n':-1234567890123456789}]}"},
    {RARE, "K", "{'messages':[{'n':9223372036854775807}]}"},
    {RARE, "K", "{'messages':[{'n':-9223372036854775808}]}"},
    {RARE, "K", "{'messages':[{'n':18446744073709551615}]}"},
    {RARE, "-", "{'messages':[{'n':18446744073709551616}]}"},
    {RARE, NULL, "{'n':99999999999999999999}"},
    {RARE, NULL, "{'n':[-99999999999999999999]}"},
    /* but not a double of as many */
    {ORD, "~", "{'messages':[{'n':1234567890123456789.0}]}"},
    {ORD, "~", "{'messages':[{'n':12345678901234567890e-5}]}"},
};

static const hand_case rare_shapes[] = {
    /* a key twice: json-c keeps the first place and the last value */
    {RARE, NULL, "{'a':1,'a':2}"},
    {RARE, NULL, "{'a':1,'b':2,'a':{'c':3}}"},
    {RARE, "-", "{'messages':[{'id':'m','id':'n'}]}"}, /* json-c: {"id":"n"} */
    {RARE, "K", "{'messages':[],'messages':[{'a':1}]}"},
    {RARE, NULL, "{'x':{'y':[{'k':1,'k':1}]}}"},
    /* roots that are not objects */
    {RARE, NULL, "[]"},
    {RARE, NULL, "[{'messages':[{'a':1}]}]"},
    {RARE, NULL, "'messages'"},
    {RARE, NULL, "1"},
    {RARE, NULL, "-2.5e3"},
    {RARE, NULL, "true"},
};

/* Messages compact and not, side by side: whitespace of every kind inside
 * (not around: the bytes between the elements are not a message's). */
static const hand_case spacing[] = {
    {ORD, "---KK-", "{'messages':[{'a': 1},{'a':1 },{ 'a':1},{'a':1}, {'a':1} ,{'a' :1}]}"},
    {ORD, "-K-K-K", "{'messages':[{'a':\t1},{'a':1}\n,{'a':\n1},\r{'a':1},{'a':1\r},{'b':[]}]}"},
    {ORD, "-K", "{'messages':[{'a':[1, 2]},{'a':[1,2]}]}"},
    {ORD, "-K", "{'messages':[{'a':{ }},{'a':{}}]}"},
    {ORD, "--", "{'messages':[{'a':[ ]},{'a':{'b':[{'c':null }]}}]}"},
    {ORD, "K-KK",
     "{ 'messages' : [ {'id':'m1'} , {'id':'m2','s':'\\/'} , {'id':'m3','n':1.50} , "
     "{'id':'m4'} ] }"},
    {ORD, "-~K", "{'messages':[{'n':-0},{'n':-0.0},{'n':0}]}"},
};

static void hand_written_cases(void **state)
{
    (void)state;
    tally ty = {0};
    RUN("shapes", shapes, &ty);
    RUN("escapes", escapes, &ty);
    RUN("numbers", numbers, &ty);
    RUN("rare", rare_shapes, &ty);
    RUN("spacing", spacing, &ty);
    tally_print("hand-written", &ty);
    assert_true(ty.kept > 40);
}

/* ---- whitespace everywhere ---- */

/* text with whitespace (of the four kinds, at random) before and after
 * every structural byte outside strings; into out (malloc'ed). */
static char *respaced(const char *text, unsigned percent, size_t *len)
{
    static const char *const spaces[] = {" ", "\t", "\n", "\r", "\r\n", " \t\n\r", "  "};
    size_t n = strlen(text), cap = 8 * n + 16, o = 0;
    char *out = malloc(cap);
    assert_non_null(out);
#define SPACE()                                                                                    \
    do {                                                                                           \
        if (chance(percent)) {                                                                     \
            const char *s = spaces[pick(sizeof spaces / sizeof *spaces)];                          \
            memcpy(out + o, s, strlen(s));                                                         \
            o += strlen(s);                                                                        \
        }                                                                                          \
    } while (0)
    for (size_t i = 0; i < n;) {
        if (text[i] == '"') {
            size_t end = skip_string(text, n, i);
            memcpy(out + o, text + i, end - i);
            o += end - i;
            i = end;
            continue;
        }
        bool structural = strchr("{}[],:", text[i]) != NULL;
        if (structural)
            SPACE();
        out[o++] = text[i++];
        if (structural)
            SPACE();
    }
#undef SPACE
    assert_true(o <= cap);
    *len = o;
    return out;
}

static void respace_cases(const hand_case *cases, size_t count, tally *ty)
{
    for (size_t k = 0; k < count; k++)
        for (unsigned round = 0; round < 6; round++) {
            char *text = unquote(cases[k].text);
            size_t n;
            char *spaced = respaced(text, round == 0 ? 100 : 20 * round, &n);
            char what[96];
            snprintf(what, sizeof what, "respaced case %zu, round %u", k, round);
            expect ex = {.rare = cases[k].rare}; /* the general rules only */
            check_input(what, spaced, n, &ex, ty);
            free(spaced);
            free(text);
        }
}

static void whitespace_everywhere(void **state)
{
    (void)state;
    tally ty = {0};
    rng = 0x5DEECE66DULL;
    respace_cases(shapes, sizeof shapes / sizeof *shapes, &ty);
    respace_cases(escapes, sizeof escapes / sizeof *escapes, &ty);
    respace_cases(numbers, sizeof numbers / sizeof *numbers, &ty);
    respace_cases(spacing, sizeof spacing / sizeof *spacing, &ty);
    tally_print("respaced", &ty);
    assert_true(ty.built > 100);
}

/* ---- deep nesting, long strings ---- */

static void deep_nesting(void **state)
{
    (void)state;
    tally ty = {0};
    char text[1024];
    /* 60 levels: the root, "messages", a message and 57 arrays */
    size_t n = (size_t)snprintf(text, sizeof text, "{'messages':[{'d':");
    for (int k = 0; k < 57; k++)
        text[n++] = '[';
    text[n++] = '1';
    for (int k = 0; k < 57; k++)
        text[n++] = ']';
    n += (size_t)snprintf(text + n, sizeof text - n, "}]}");
    char *q = unquote(text);
    expect ex = {.messages = "K"};
    check_input("60 levels of arrays in a message", q, n, &ex, &ty);
    free(q);
    /* 60 levels of objects (and arrays of objects) under the root */
    static const char *const opens[] = {"{'a':", "[{'b':", "{'messages':[{'c':"};
    for (size_t kind = 0; kind < 3; kind++) {
        ps_dynbuf b;
        ps__dynbuf_init(&b, SIZE_MAX - 1);
        int levels = kind == 0 ? 59 : kind == 1 ? 29 : 19; /* + the root: 60 */
        assert_int_equal(ps__dynbuf_adds(&b, "{'x':"), PS_OK);
        for (int k = 0; k < levels; k++)
            assert_int_equal(ps__dynbuf_adds(&b, opens[kind]), PS_OK);
        assert_int_equal(ps__dynbuf_adds(&b, "'deep'"), PS_OK);
        for (int k = 0; k < levels; k++)
            assert_int_equal(ps__dynbuf_adds(&b, kind == 0   ? "}"
                                                 : kind == 1 ? "}]"
                                                             : "}]}"),
                             PS_OK);
        assert_int_equal(ps__dynbuf_adds(&b, "}"), PS_OK);
        q = unquote(b.data);
        expect plain = {0};
        check_input("60 levels of objects", q, strlen(q), &plain, &ty);
        free(q);
        ps__dynbuf_free(&b);
    }
    tally_print("deep", &ty);
}

/* Escapes, quotes and multi-byte characters at every offset across
 * simdjson's 64-byte blocks, and right at the end of the text (before the
 * padding's garbage). */
static void escapes_across_blocks(void **state)
{
    (void)state;
    tally ty = {0};
    static const struct {
        const char *piece;
        char letter; /* what it makes of the message */
    } pieces[] = {
        {"\\\"", 'K'},     {"\\\\", 'K'},    {"\\n", 'K'},      {"\\/", '-'},
        {"\\u00e9", '-'},  {"\\u0001", '~'}, {"\xc3\xa9", 'K'}, {"\xf0\x9f\x98\x80", 'K'},
        {"\\\\\\\"", 'K'},
    };
    char text[512], what[64];
    for (size_t p = 0; p < sizeof pieces / sizeof *pieces; p++)
        for (size_t at = 0; at < 140; at++) {
            size_t n = (size_t)snprintf(text, sizeof text,
                                        "{\"messages\":[{\"c\":\"%.*s%s%.*s\"}]}", (int)at,
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                                        pieces[p].piece, (int)(at % 7), "yyyyyyy");
            char letter[2] = {pieces[p].letter, '\0'};
            expect ex = {.messages = letter};
            snprintf(what, sizeof what, "piece %zu at %zu", p, at);
            check_input(what, text, n, &ex, &ty);
        }
    /* texts of every length 2..200 ending in a string's closing quote and
     * a brace right before the garbage */
    for (size_t len = 0; len < 180; len++) {
        size_t n =
            (size_t)snprintf(text, sizeof text, "{\"messages\":[{\"c\":\"%.*s\\\\\"}]}", (int)len,
                             "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
                             "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
                             "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
                             "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
        expect ex = {.messages = "K"};
        snprintf(what, sizeof what, "length %zu", len);
        check_input(what, text, n, &ex, &ty);
    }
    tally_print("across blocks", &ty);
    assert_true(ty.kept > 1000);
}

/* ---- seeded random chats ---- */

/* What the generator emits: a chat, and what it knows of each message. */
typedef struct gen {
    ps_dynbuf out;
    bool spaced;  /* this chat: whitespace between tokens at random */
    bool in_msg;  /* inside a root message */
    bool dirty;   /* the message: something json-c writes otherwise */
    bool exotic;  /* the message: compact, perhaps, by a rare spelling */
    bool rare;    /* the chat: something the builder may refuse */
    bool escaped; /* the chat's "messages" key spelt with an escape */
    char pattern[32];
    size_t nmessages;
} gen;

static void emit_n(gen *g, const char *s, size_t n)
{
    assert_int_equal(ps__dynbuf_add(&g->out, s, n), PS_OK);
}

static void emit(gen *g, const char *s)
{
    emit_n(g, s, strlen(s));
}

/* Whitespace, in a spaced chat now and then; it makes a message not compact. */
static void ws(gen *g)
{
    static const char *const spaces[] = {" ", "\t", "\n", "\r", "  ", "\n\t"};
    if (g->spaced && chance(25)) {
        emit(g, spaces[pick(sizeof spaces / sizeof *spaces)]);
        if (g->in_msg)
            g->dirty = true;
    }
}

/* A class of pieces and what it does to the message it is in. */
typedef enum piece_class { PLAIN, EXOTIC, DIRTY, RARE_PIECE } piece_class;

static void mark(gen *g, piece_class c)
{
    if (c == RARE_PIECE)
        g->rare = true;
    if (c == DIRTY)
        g->dirty = g->dirty || g->in_msg;
    if (c == EXOTIC)
        g->exotic = g->exotic || g->in_msg;
}

/* per mille of each class, PLAIN the rest */
static piece_class pick_class(unsigned exotic, unsigned dirty, unsigned rare)
{
    unsigned r = pick(1000);
    return r < rare                    ? RARE_PIECE
           : r < rare + dirty          ? DIRTY
           : r < rare + dirty + exotic ? EXOTIC
                                       : PLAIN;
}

static const char *const STRING_PIECES[][16] = {
    /* json-c writes them as they are */
    [PLAIN] = {"hello", " ", "a b", "/", "caf\xc3\xa9", "\xe4\xb8\xad\xe6\x96\x87",
               "\xf0\x9f\x98\x80", "\\n", "\\\"", "\\\\", "\\t", "\\r", "\\b", "\\f",
               "{}[],:'<>&\x7f", "0123456789"},
    /* so too, but as \u escapes (of control bytes without a short escape) */
    [EXOTIC] = {"\\u0000", "\\u0001", "\\u001f", "\\u000b", "\\u0010", "\\u001e", "\\u0002",
                "\\u000e"},
    /* json-c writes them otherwise */
    [DIRTY] = {"\\/", "\\u0041", "\\u00e9", "\\u20ac", "\\u001F", "\\u000a", "\\u007f", "\\u0022",
               "\\u005c", "\\u002f", "\\u00E9", "\\u0009", "\\u0008", "\\u000C", "\\u000d",
               "\\u007F"},
    /* surrogate escapes (pairs): the builder may refuse them */
    [RARE_PIECE] = {"\\ud83d\\ude00", "\\uD83D\\uDE00", "\\udbff\\udfff", "\\ud800\\udc00"},
};
/* how many of each row are in use */
static const unsigned STRING_PIECE_COUNT[] = {16, 8, 16, 4};

static void emit_string(gen *g, unsigned max_pieces)
{
    emit(g, "\"");
    for (unsigned k = pick(max_pieces + 1); k > 0; k--) {
        piece_class c = pick_class(12, 8, 1);
        mark(g, c);
        if (c == RARE_PIECE) /* json-c writes the character's UTF-8 */
            mark(g, DIRTY);
        emit(g, STRING_PIECES[c][pick(STRING_PIECE_COUNT[c])]);
    }
    emit(g, "\"");
}

static const char *const NUMBERS[][10] = {
    [PLAIN] = {"0", "1", "-1", "42", "-7", "123456789012345678", "-123456789012345678", "1.0",
               "0.1", "-2.5"},
    [EXOTIC] = {"-0.0", "1E+5", "1e999", "-1e999", "3.141592653589793238", "1e-400", "-0e0", "1E5",
                "0e0", "2.50"},
    [DIRTY] = {"-0"},
    [RARE_PIECE] = {"1234567890123456789", "18446744073709551615", "-1234567890123456789",
                    "99999999999999999999", "9223372036854775807", "-9223372036854775808"},
};
static const unsigned NUMBER_COUNT[] = {10, 10, 1, 6};
static const char *const MORE_PLAIN_NUMBERS[] = {
    "1.5e-7", "1e5", "6.02e23", "-0.25", "100", "999999999999999999", "12.75", "3"};

static void emit_number(gen *g)
{
    piece_class c = pick_class(60, 25, 2);
    mark(g, c);
    if (c == RARE_PIECE) /* json-c writes most as they are, past 2^64 - 1 its maximum */
        mark(g, EXOTIC);
    if (c == PLAIN && chance(40))
        emit(g, MORE_PLAIN_NUMBERS[pick(sizeof MORE_PLAIN_NUMBERS / sizeof *MORE_PLAIN_NUMBERS)]);
    else
        emit(g, NUMBERS[c][pick(NUMBER_COUNT[c])]);
}

/* A key unique in its object: a piece, '#' and the key's place in it
 * (pieces have no '#'); the piece may be spelt with an escape. */
static void emit_extra_key(gen *g, unsigned place)
{
    static const char *const plain[] = {"k", "x y",   "caf\xc3\xa9", "\\n", "\xf0\x9f\x98\x80",
                                        "",  "\\\"q", "messages"};
    static const char *const dirty[] = {"\\u00e9", "\\/", "k\\u0041"};
    char key[64];
    if (chance(5)) {
        mark(g, DIRTY);
        snprintf(key, sizeof key, "\"%s#%u\"", dirty[pick(3)], place);
    } else {
        snprintf(key, sizeof key, "\"%s#%u\"", plain[pick(sizeof plain / sizeof *plain)], place);
    }
    emit(g, key);
}

static void emit_value(gen *g, int depth);
static void emit_array(gen *g, int depth);

/* A value that is not an object: a root "messages" element that is no message. */
static void emit_non_object(gen *g)
{
    switch (pick(4)) {
    case 0:
        emit(g, ((const char *const[]){"true", "false", "null"})[pick(3)]);
        break;
    case 1:
        emit_number(g);
        break;
    case 2:
        emit_string(g, 8);
        break;
    default:
        emit_array(g, 1);
    }
}

static void emit_object(gen *g, int depth)
{
    emit(g, "{");
    for (unsigned k = 0, n = pick(5); k < n; k++) {
        if (k)
            emit(g, ",");
        ws(g);
        emit_extra_key(g, k);
        ws(g);
        emit(g, ":");
        ws(g);
        emit_value(g, depth + 1);
        ws(g);
    }
    emit(g, "}");
}

static void emit_array(gen *g, int depth)
{
    emit(g, "[");
    for (unsigned k = 0, n = pick(5); k < n; k++) {
        if (k)
            emit(g, ",");
        ws(g);
        emit_value(g, depth + 1);
        ws(g);
    }
    emit(g, "]");
}

/* Any value; containers while depth < 6 (a message's depth counts from 0). */
static void emit_value(gen *g, int depth)
{
    switch (pick(depth < 6 ? 7 : 4)) {
    case 0:
        emit(g, ((const char *const[]){"true", "false", "null"})[pick(3)]);
        break;
    case 1:
        emit_number(g);
        break;
    case 2:
    case 3:
        emit_string(g, 8);
        break;
    case 4:
    case 5:
        emit_array(g, depth);
        break;
    default:
        emit_object(g, depth);
    }
}

/* One message: its usual keys (each at most once, in any order) and extras. */
static void emit_message(gen *g)
{
    static const char *const usual[] = {"\"id\"", "\"role\"", "\"content\"", "\"timestamp\""};
    const char *keys[8];
    unsigned n = 0;
    for (unsigned k = 0; k < 4; k++)
        if (chance(85))
            keys[n++] = usual[k];
    for (unsigned k = pick(4); k > 0; k--)
        keys[n++] = NULL;              /* an extra */
    for (unsigned k = n; k > 1; k--) { /* shuffled */
        unsigned j = pick(k);
        const char *s = keys[k - 1];
        keys[k - 1] = keys[j];
        keys[j] = s;
    }
    g->in_msg = true;
    g->dirty = g->exotic = false;
    emit(g, "{");
    for (unsigned k = 0; k < n; k++) {
        if (k)
            emit(g, ",");
        ws(g);
        if (keys[k])
            emit(g, keys[k]);
        else
            emit_extra_key(g, k);
        ws(g);
        emit(g, ":");
        ws(g);
        if (keys[k] == usual[1])
            emit(g, chance(50) ? "\"user\"" : "\"assistant\"");
        else if (keys[k] == usual[2])
            emit_string(g, 30);
        else if (keys[k] == usual[3] && chance(50))
            emit(g, "\"2026-12-02T12:14:57.410Z\"");
        else
            emit_value(g, 0);
        ws(g);
    }
    emit(g, "}");
    g->in_msg = false;
    if (g->nmessages < sizeof g->pattern - 1)
        g->pattern[g->nmessages++] = g->dirty ? '-' : g->exotic ? '~' : 'K';
}

/* A chat: "id", "title", "messages" and extras, in any order. */
static void emit_chat(gen *g)
{
    g->spaced = chance(25);
    g->rare = false;
    g->nmessages = 0;
    int slots[8];
    unsigned n = 0;
    if (chance(90))
        slots[n++] = 0; /* id */
    if (chance(50))
        slots[n++] = 1; /* title */
    if (chance(92))
        slots[n++] = 2; /* messages */
    for (unsigned k = pick(4); k > 0; k--)
        slots[n++] = 3; /* an extra */
    for (unsigned k = n; k > 1; k--) {
        unsigned j = pick(k);
        int s = slots[k - 1];
        slots[k - 1] = slots[j];
        slots[j] = s;
    }
    ws(g);
    emit(g, "{");
    for (unsigned k = 0; k < n; k++) {
        if (k)
            emit(g, ",");
        ws(g);
        switch (slots[k]) {
        case 0:
            emit(g, "\"id\"");
            break;
        case 1:
            emit(g, "\"title\"");
            break;
        case 2:
            g->escaped = chance(3);
            emit(g, g->escaped ? "\"m\\u0065ssages\"" : "\"messages\"");
            break;
        default:
            emit_extra_key(g, k);
        }
        ws(g);
        emit(g, ":");
        ws(g);
        if (slots[k] == 0)
            emit(g, "\"chat-7\"");
        else if (slots[k] == 2 && chance(97)) {
            emit(g, "[");
            for (unsigned m = 0, count = pick(9); m < count; m++) {
                if (m)
                    emit(g, ",");
                ws(g);
                if (chance(94)) {
                    emit_message(g);
                } else {
                    emit_non_object(g);
                    g->pattern[g->nmessages++] = '.';
                }
                ws(g);
            }
            emit(g, "]");
        } else if (slots[k] == 2) {
            emit_value(g, 0); /* a "messages" that is no array (or is one, of anything) */
            g->nmessages = 0;
            g->pattern[0] = '\0';
        } else {
            emit_value(g, 1);
        }
        ws(g);
    }
    emit(g, "}");
    ws(g);
    g->pattern[g->nmessages] = '\0';
    /* the key is the same to json-c, but only the plain one is promised */
    for (size_t m = 0; g->escaped && m < g->nmessages; m++)
        if (g->pattern[m] == 'K')
            g->pattern[m] = '~';
}

static void random_chats(void **state)
{
    (void)state;
    load_settings(0x243F6A8885A308D3ULL, 4000);
    rng = seed0;
    tally ty = {0};
    size_t rare = 0, patterned = 0;
    for (current_case = 0; current_case < ncases; current_case++) {
        gen g = {0};
        ps__dynbuf_init(&g.out, SIZE_MAX - 1);
        emit_chat(&g);
        char what[96];
        snprintf(what, sizeof what, "random chat %lu of seed %llu", current_case,
                 (unsigned long long)seed0);
        /* the pattern is only known when the root "messages" is an array
         * of the generator's: a value emitted for it otherwise says nothing */
        span *spans;
        size_t count;
        bool listed = root_message_spans(g.out.data, g.out.len, &spans, &count);
        free(spans);
        bool use_pattern = listed && count == g.nmessages;
        expect ex = {.rare = g.rare, .messages = use_pattern ? g.pattern : NULL};
        rare += g.rare;
        patterned += use_pattern;
        check_input(what, g.out.data, g.out.len, &ex, &ty);
        ps__dynbuf_free(&g.out);
    }
    print_message("seed %llu: %lu chats, %zu rare, %zu with known messages\n",
                  (unsigned long long)seed0, ncases, rare, patterned);
    tally_print("random", &ty);
    if (ncases >= 1000) {
        assert_true(ty.kept > ty.messages / 4); /* most messages are compact */
        assert_true(ty.compact < ty.messages);  /* and some are not */
        assert_true(ty.built > ncases / 2);     /* rare chats are few */
    }
}

/* ---- the Polyglot app's chats ---- */

/* One chat written by json-c's writer with `flags`; every message whose
 * bytes come out compact must be kept. */
static void check_written(const char *what, json_object *chat, int flags, tally *ty)
{
    size_t n;
    const char *text = json_object_to_json_string_length(chat, flags, &n);
    assert_non_null(text);
    char *copy = malloc(n + 1);
    assert_non_null(copy);
    memcpy(copy, text, n + 1); /* the writer's string belongs to chat */
    expect ex = {.all_compact_kept = true};
    check_input(what, copy, n, &ex, ty);
    free(copy);
}

static void polyglot_fixtures(void **state)
{
    (void)state;
    static const struct {
        int flags;
        const char *name;
    } forms[] = {
        {FLAGS, "plain"},
        {JSON_C_TO_STRING_PLAIN, "plain, slashes escaped"},
        {JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE, "spaced"},
        {JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE, "pretty"},
        {JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_PRETTY_TAB, "pretty with tabs"},
    };
    tally by_form[sizeof forms / sizeof *forms] = {{0}};
    tally bodies = {0};
    DIR *dir = opendir(PS_POLYGLOT_FIXTURES);
    if (!dir)
        fail_msg("no fixtures folder: %s", PS_POLYGLOT_FIXTURES);
    size_t chats = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        char path[512], what[640];
        snprintf(path, sizeof path, "%s/%s", PS_POLYGLOT_FIXTURES, e->d_name);
        json_object *fixture = json_object_from_file(path), *request, *body, *list, *frame, *ftext;
        assert_non_null(fixture);
        if (json_object_object_get_ex(fixture, "request", &request) &&
            json_object_object_get_ex(request, "body", &body)) {
            snprintf(what, sizeof what, "%s: the body", e->d_name);
            check_written(what, body, FLAGS, &bodies);
            if (json_object_object_get_ex(body, "chats", &list))
                for (size_t i = 0; i < json_object_array_length(list); i++, chats++)
                    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++) {
                        snprintf(what, sizeof what, "%s: chats[%zu], %s", e->d_name, i,
                                 forms[f].name);
                        check_written(what, json_object_array_get_idx(list, i), forms[f].flags,
                                      &by_form[f]);
                    }
        }
        /* the WebSocket frame: a chat as the server wrote it, its bytes */
        if (json_object_object_get_ex(fixture, "frame", &frame) &&
            json_object_object_get_ex(frame, "text", &ftext)) {
            snprintf(what, sizeof what, "%s: the frame's text", e->d_name);
            expect ex = {.all_compact_kept = true};
            check_input(what, json_object_get_string(ftext),
                        (size_t)json_object_get_string_len(ftext), &ex, &bodies);
            chats++;
        }
        json_object_put(fixture);
    }
    closedir(dir);
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++)
        tally_print(forms[f].name, &by_form[f]);
    tally_print("bodies and frame", &bodies);
    assert_true(chats >= 30); /* 30 chats in 12 captures (README) */
    /* written plain, every message is compact and kept; spaced, none */
    assert_true(by_form[0].messages >= 200);
    assert_true(by_form[0].kept == by_form[0].messages);
    assert_true(by_form[0].refused == 0 && by_form[1].refused == 0);
    assert_true(by_form[2].kept == 0 && by_form[3].kept == 0 && by_form[4].kept == 0);
}

/* ---- the benchmark's chats ---- */

/* Chats as the Polyglot client sends them (bench/src/gen.c), 0 to 12
 * messages, long texts with every escape: each compact message kept. */
static void generated_chats(void **state)
{
    (void)state;
    gen_cfg g = {.seed = GEN_DEFAULT_SEED, .device = "bench-device"};
    tally ty = {0};
    for (long c = 0; c < 300; c++) {
        buf out = {0};
        gen_chat_legacy(&out, &g, c * 7919, c % 13);
        char what[64];
        snprintf(what, sizeof what, "generated chat %ld", c);
        expect ex = {.all_compact_kept = true};
        check_input(what, out.data, out.len, &ex, &ty);
        buf_free(&out);
    }
    tally_print("generated", &ty);
    assert_true(ty.refused == 0);
    assert_true(ty.messages > 1000 && ty.kept == ty.compact && ty.compact > 0);
}

/* Chats of over 4 MiB (stage1.hpp: a thread's buffers go after one)
 * between small ones: each built exactly as json-c reads it, so the
 * buffers made anew are whole (ASan: nothing read from a freed one). */
static void big_chats_between_small_ones(void **state)
{
    (void)state;
    gen_cfg g = {.seed = GEN_DEFAULT_SEED, .device = "bench-device"};
    tally ty = {0};
    expect ex = {.all_compact_kept = true};
    for (int round = 0; round < 2; round++) {
        buf small = {0};
        gen_chat_legacy(&small, &g, 17 + round, 3);
        check_input("a small chat", small.data, small.len, &ex, &ty);
        buf_free(&small);
        buf big = {0}; /* one chat of 10,000 messages, ~6 MB */
        gen_chat_legacy(&big, &g, 5 + round, 10000);
        assert_true(big.len > ((size_t)4 << 20));
        check_input("a chat of over 4 MiB", big.data, big.len, &ex, &ty);
        buf_free(&big);
    }
    tally_print("big and small", &ty);
    assert_true(ty.refused == 0 && ty.built == 4 && ty.kept == ty.compact && ty.compact > 20000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hand_written_cases), cmocka_unit_test(whitespace_everywhere),
        cmocka_unit_test(deep_nesting),       cmocka_unit_test(escapes_across_blocks),
        cmocka_unit_test(random_chats),       cmocka_unit_test(polyglot_fixtures),
        cmocka_unit_test(generated_chats),    cmocka_unit_test(big_chats_between_small_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
