/*
 * libFuzzer driver for ps_auth_check: arbitrary bytes as the Authorization
 * header value, against an HS256 auth with a fixed secret, issuer and
 * audience, at a fixed "now".
 *
 * The first byte picks a mode:
 *   0  the rest, verbatim, is the header value (NULL when there is no rest);
 *   1  "Bearer " + the rest;
 *   2  the rest is "HEADER-JSON\nPAYLOAD-JSON", which this driver encodes and
 *      signs with the fixed secret — a random token never gets past the
 *      signature, so this is what reaches the claim checks.
 * Aborts when the answer is not one of OK / unauthorized / invalid token,
 * when an error has no message, when an accepted user is not a proper sub,
 * and (mode 2) when a token is accepted that the rules refuse: alg other
 * than HS256, no numeric exp, exp or nbf outside the 60 s leeway, wrong iss,
 * aud that is neither AUD nor an array holding the string AUD, sub missing,
 * empty, over 256 bytes or not the user returned. The oracle parses with
 * json-c, independently of libjwt's jansson.
 */
#include "server/auth.h"

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "polysync-fuzz-secret-0123456789abcdef" /* 37 bytes */
#define ISSUER "https://issuer.example"
#define AUDIENCE "polysync"
#define NOW 1800000000LL
#define LEEWAY 60
#define USER_SIZE 512

static ps_auth *auth;

static ps_auth *the_auth(void)
{
    if (auth)
        return auth;
    char path[] = "/tmp/polysync-fuzz-auth-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, SECRET "\n", sizeof SECRET) != (ssize_t)sizeof SECRET)
        abort();
    close(fd);
    ps_auth_config cfg = {
        .secret_file = path, .issuer = ISSUER, .audience = AUDIENCE, .leeway_s = LEEWAY};
    ps_error err;
    ps_code rc = ps_auth_new(&cfg, &auth, &err);
    unlink(path);
    if (rc != PS_OK)
        abort();
    return auth;
}

static size_t b64url(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = tab[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = tab[v & 63];
    }
    out[o] = '\0';
    return o;
}

/* "Bearer " + b64(header) "." b64(payload) "." b64(HMAC-SHA256); malloc'd. */
static char *signed_token(const uint8_t *h, size_t hn, const uint8_t *p, size_t pn)
{
    char *out = malloc(64 + 2 * (hn + pn));
    if (!out)
        abort();
    memcpy(out, "Bearer ", 7);
    size_t o = 7;
    o += b64url(h, hn, out + o);
    out[o++] = '.';
    o += b64url(p, pn, out + o);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)out + 7, o - 7, mac,
              &mac_len))
        abort();
    out[o++] = '.';
    b64url(mac, mac_len, out + o);
    return out;
}

/* The JSON text as libjwt sees it: a C string (up to a NUL), whitespace
 * allowed after the value. */
static json_object *parse(const uint8_t *text, size_t n)
{
    const uint8_t *nul = memchr(text, '\0', n);
    if (nul)
        n = (size_t)(nul - text);
    json_tokener *tok = json_tokener_new();
    json_object *obj = json_tokener_parse_ex(tok, (const char *)text, (int)n);
    size_t end = json_tokener_get_parse_end(tok);
    while (end < n && strchr(" \t\r\n", text[end]))
        end++;
    bool whole = obj && json_tokener_get_error(tok) == json_tokener_success && end == n;
    json_tokener_free(tok);
    if (!whole) {
        json_object_put(obj);
        return NULL;
    }
    return obj;
}

static bool string_is(json_object *v, const char *want)
{
    return v && json_object_is_type(v, json_type_string) &&
           (size_t)json_object_get_string_len(v) == strlen(want) &&
           strcmp(json_object_get_string(v), want) == 0;
}

/* Whether the rules allow accepting this signed token for `user`. */
static bool acceptable(json_object *header, json_object *payload, const char *user)
{
    json_object *v;
    if (!header || !payload || !json_object_is_type(header, json_type_object) ||
        !json_object_is_type(payload, json_type_object))
        return false;
    if (!json_object_object_get_ex(header, "alg", &v) ||
        !json_object_is_type(v, json_type_string) ||
        strcasecmp(json_object_get_string(v), "HS256") != 0)
        return false;
    /* exp: a NumericDate (RFC 7519: fractions allowed), not past the leeway */
    if (!json_object_object_get_ex(payload, "exp", &v) ||
        !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) ||
        json_object_get_double(v) < (double)(NOW - LEEWAY))
        return false;
    if (json_object_object_get_ex(payload, "nbf", &v) &&
        (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) &&
        json_object_get_double(v) > (double)(NOW + LEEWAY))
        return false;
    if (!json_object_object_get_ex(payload, "iss", &v) || !string_is(v, ISSUER))
        return false;
    if (!json_object_object_get_ex(payload, "aud", &v))
        return false;
    if (!string_is(v, AUDIENCE)) {
        bool found = false;
        if (json_object_is_type(v, json_type_array))
            for (size_t i = 0; i < json_object_array_length(v) && !found; i++)
                found = string_is(json_object_array_get_idx(v, i), AUDIENCE);
        if (!found)
            return false;
    }
    if (!json_object_object_get_ex(payload, "sub", &v) || !json_object_is_type(v, json_type_string))
        return false;
    size_t len = (size_t)json_object_get_string_len(v);
    return len >= 1 && len <= 256 && strlen(json_object_get_string(v)) == len &&
           strcmp(json_object_get_string(v), user) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    ps_auth *a = the_auth();
    unsigned mode = data[0] % 3;
    data++;
    size--;

    char *value = NULL;
    const uint8_t *h = NULL, *p = NULL;
    size_t hn = 0, pn = 0;
    if (mode == 0 || mode == 1) {
        if (mode == 0 && size == 0) {
            value = NULL; /* no Authorization header at all */
        } else {
            value = malloc(size + 8);
            if (!value)
                abort();
            size_t off = mode == 1 ? 7 : 0;
            memcpy(value, "Bearer ", off);
            memcpy(value + off, data, size);
            value[off + size] = '\0'; /* a header value ends at a NUL */
        }
    } else {
        const uint8_t *nl = memchr(data, '\n', size);
        if (!nl)
            return 0;
        h = data;
        hn = (size_t)(nl - data);
        p = nl + 1;
        pn = size - hn - 1;
        value = signed_token(h, hn, p, pn);
    }

    char user[USER_SIZE];
    memset(user, 'X', sizeof user);
    ps_error err;
    memset(&err, 0, sizeof err);
    ps_code rc = ps_auth_check(a, value, NOW, user, sizeof user, &err);

    if (rc != PS_OK && rc != PS_ERR_UNAUTHORIZED && rc != PS_ERR_INVALID_TOKEN)
        abort();
    if (rc != PS_OK && err.message[0] == '\0')
        abort(); /* the 401 body needs a reason */
    if (rc == PS_OK) {
        size_t len = strnlen(user, sizeof user);
        if (len == 0 || len > 256 || len == sizeof user)
            abort();
        if (mode == 2) {
            json_object *hj = parse(h, hn), *pj = parse(p, pn);
            bool ok = acceptable(hj, pj, user);
            json_object_put(hj);
            json_object_put(pj);
            if (!ok)
                abort(); /* accepted a token the rules refuse */
        }
    }
    free(value);
    return 0;
}
