/* Request framing checks; see framing.h. */
#include "server/framing.h"

#include <microhttpd.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Spaces and tabs a header line may carry between the colon and the value. */
#define MAX_OWS 256

typedef struct framing_scan {
    unsigned content_lengths;
    unsigned transfer_encodings;
    bool chunked_only; /* every Transfer-Encoding is exactly "chunked" */
    const char *why;
} framing_scan;

/* RFC 9110 §5.6.2: a field name is a token. */
static bool is_token(const char *s, size_t n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr(extra, c))))
            return false;
    }
    return true;
}

/*
 * Whether the name lies where libmicrohttpd parsed it: in its read buffer
 * just before the value, with only the colon (now a NUL) and blanks between.
 * A folded line breaks that: libmicrohttpd copies the name, with the
 * continuation appended, to new memory. Only when the distance is plausible
 * are the bytes between read, and then they lie within the one buffer.
 */
static bool name_in_place(const char *key, size_t key_size, const char *value)
{
    uintptr_t k = (uintptr_t)key, v = (uintptr_t)value;
    if (v <= k + key_size || v - (k + key_size) > 1 + MAX_OWS)
        return false;
    if (key[key_size] != '\0')
        return false;
    for (const char *p = key + key_size + 1; p < value; p++)
        if (*p != ' ' && *p != '\t')
            return false;
    return true;
}

static bool is_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* A name that begins as a framing header's but goes on (a fold glued onto
 * it: "Transfer-Encoding:\r\n chunked" becomes "Transfer-Encodingchunked"). */
static bool framing_name_with_tail(const char *key, size_t n)
{
    static const char *const names[] = {"Content-Length", "Transfer-Encoding"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        size_t len = strlen(names[i]);
        if (n > len && strncasecmp(key, names[i], len) == 0)
            return true;
    }
    return false;
}

static enum MHD_Result visit(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                             const char *value, size_t value_size)
{
    (void)kind;
    framing_scan *scan = cls;
    if (!is_token(key, key_size)) {
        scan->why = "a header name has whitespace or other characters a name cannot have "
                    "(whitespace before the colon, or a folded line)";
        return MHD_NO;
    }
    if (framing_name_with_tail(key, key_size) || (value && !name_in_place(key, key_size, value))) {
        scan->why = "obsolete line folding is not accepted";
        return MHD_NO;
    }
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (++scan->content_lengths > 1) {
            scan->why = "more than one Content-Length";
            return MHD_NO;
        }
        if (!value || !is_digits(value, value_size)) {
            scan->why = "Content-Length is not a number";
            return MHD_NO;
        }
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        scan->transfer_encodings++;
        if (!value || strcasecmp(value, "chunked") != 0)
            scan->chunked_only = false;
    }
    return MHD_YES;
}

bool ps_framing_ok(struct MHD_Connection *conn, const char **why)
{
    framing_scan scan = {.chunked_only = true};
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, visit, &scan);
    if (!scan.why && scan.transfer_encodings && scan.content_lengths)
        scan.why = "Content-Length together with Transfer-Encoding";
    if (!scan.why && (scan.transfer_encodings > 1 || !scan.chunked_only))
        scan.why = "the only transfer coding accepted is a single 'chunked'";
    *why = scan.why;
    return scan.why == NULL;
}
