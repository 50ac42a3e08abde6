/* JWT checks; see auth.h. libjwt verifies the signature; everything about
 * which tokens are acceptable is decided here. */
#include "server/auth.h"
#include "core/chat.h"
#include "core/read_file.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MIN_SECRET_BYTES 32
#define MAX_KEY_BYTES (64 * 1024)
#define MAX_TOKEN_BYTES 8192

struct ps_auth {
    jwt_alg_t alg;
    unsigned char *key;
    size_t key_len;
    char *issuer, *audience;
    int64_t leeway_s;
    int64_t max_lifetime_s;
};

static ps_code read_file(const char *path, unsigned char **out, size_t *len, ps_error *err)
{
    char *text = NULL;
    ps_code rc = ps__read_file(path, MAX_KEY_BYTES, NULL, NULL, &text, len, err);
    *out = (unsigned char *)text;
    if (rc == PS_ERR_IO)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "cannot read %s: %s", path,
                            strerror(errno));
    if (rc == PS_ERR_TOO_LARGE)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "%s is too large for a key", path);
    return rc;
}

/* RS256 for an RSA key, ES256 for an EC key; anything else is refused. */
static ps_code public_key_alg(const unsigned char *pem, size_t len, jwt_alg_t *alg, ps_error *err)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    int type = key ? EVP_PKEY_base_id(key) : EVP_PKEY_NONE;
    EVP_PKEY_free(key);
    BIO_free(bio);
    if (type == EVP_PKEY_RSA)
        *alg = JWT_ALG_RS256;
    else if (type == EVP_PKEY_EC)
        *alg = JWT_ALG_ES256;
    else
        return ps_error_set(err, PS_ERR_CONFIG, -1, "",
                            "the public key must be a PEM RSA or EC (P-256) public key");
    return PS_OK;
}

ps_code ps_auth_new(const ps_auth_config *cfg, ps_auth **out, ps_error *err)
{
    *out = NULL;
    if (!!cfg->secret_file == !!cfg->public_key_file)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "",
                            "give exactly one of --jwt-secret-file and --jwt-public-key");
    ps_auth *a = calloc(1, sizeof *a);
    if (!a)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    a->leeway_s = cfg->leeway_s;
    a->max_lifetime_s = cfg->max_lifetime_s;
    ps_code rc;
    if (cfg->secret_file) {
        rc = read_file(cfg->secret_file, &a->key, &a->key_len, err);
        while (rc == PS_OK && a->key_len && isspace(a->key[a->key_len - 1]))
            a->key[--a->key_len] = '\0'; /* "echo secret > file" adds a newline */
        if (rc == PS_OK && a->key_len < MIN_SECRET_BYTES)
            rc = ps_error_set(err, PS_ERR_CONFIG, -1, "",
                              "the secret in %s is %zu bytes; use at least %d random bytes "
                              "(e.g. openssl rand -base64 48)",
                              cfg->secret_file, a->key_len, MIN_SECRET_BYTES);
        a->alg = JWT_ALG_HS256;
    } else {
        rc = read_file(cfg->public_key_file, &a->key, &a->key_len, err);
        if (rc == PS_OK)
            rc = public_key_alg(a->key, a->key_len, &a->alg, err);
    }
    if (rc == PS_OK && ((cfg->issuer && !(a->issuer = strdup(cfg->issuer))) ||
                        (cfg->audience && !(a->audience = strdup(cfg->audience)))))
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (rc != PS_OK) {
        ps_auth_free(a);
        return rc;
    }
    *out = a;
    return PS_OK;
}

void ps_auth_free(ps_auth *a)
{
    if (!a)
        return;
    if (a->key)
        memset(a->key, 0, a->key_len);
    free(a->key);
    free(a->issuer);
    free(a->audience);
    free(a);
}

const char *ps_auth_alg(const ps_auth *a)
{
    return jwt_alg_str(a->alg);
}

static ps_code invalid(ps_error *err, const char *why)
{
    return ps_error_set(err, PS_ERR_INVALID_TOKEN, -1, "", "%s", why);
}

/* A claim as json-c sees it (libjwt hands claims out as JSON text). */
static json_object *claim(jwt_t *jwt, const char *name)
{
    char *text = jwt_get_grants_json(jwt, name);
    json_object *v = text ? json_tokener_parse(text) : NULL;
    free(text);
    return v;
}

/* aud may be a string or an array; only string elements count. */
static bool audience_matches(jwt_t *jwt, const char *want)
{
    json_object *aud = claim(jwt, "aud");
    bool found = false;
    if (json_object_is_type(aud, json_type_string)) {
        found = strcmp(json_object_get_string(aud), want) == 0;
    } else if (json_object_is_type(aud, json_type_array)) {
        size_t n = json_object_array_length(aud);
        for (size_t i = 0; i < n && !found; i++) {
            json_object *item = json_object_array_get_idx(aud, i);
            found = json_object_is_type(item, json_type_string) &&
                    strcmp(json_object_get_string(item), want) == 0;
        }
    }
    json_object_put(aud);
    return found;
}

typedef enum { CLAIM_ABSENT, CLAIM_OK, CLAIM_BAD } claim_state;

/* A NumericDate claim (RFC 7519: seconds, fractions allowed), as whole
 * seconds rounded towards "not valid" for the caller's comparison. */
static claim_state time_claim(jwt_t *jwt, const char *name, double *out)
{
    json_object *v = claim(jwt, name);
    claim_state st = CLAIM_ABSENT;
    if (v) {
        if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
            *out = json_object_get_double(v);
            st = CLAIM_OK;
        } else {
            st = CLAIM_BAD;
        }
    }
    json_object_put(v);
    return st;
}

ps_code ps_auth_check(const ps_auth *a, const char *authorization, int64_t now_s, char *user,
                      size_t user_size, ps_error *err)
{
    ps_auth_claims claims;
    return ps_auth_check_claims(a, authorization, now_s, user, user_size, &claims, err);
}

/* jti (a string up to 128 bytes) and iat (a NumericDate) into *claims. */
static void read_claims(jwt_t *jwt, ps_auth_claims *claims)
{
    const char *jti = jwt_get_grant(jwt, "jti");
    if (jti && strlen(jti) < sizeof claims->jti)
        memcpy(claims->jti, jti, strlen(jti) + 1);
    double iat;
    if (time_claim(jwt, "iat", &iat) == CLAIM_OK && iat > 0 && iat < 1e11)
        claims->iat_ms = (int64_t)(iat * 1000.0 + 0.5); /* 0.568 may read as 0.5679999 */
}

ps_code ps_auth_check_claims(const ps_auth *a, const char *authorization, int64_t now_s,
                             char *user, size_t user_size, ps_auth_claims *claims, ps_error *err)
{
    claims->jti[0] = '\0';
    claims->iat_ms = 0;
    if (!authorization || !*authorization)
        return ps_error_set(err, PS_ERR_UNAUTHORIZED, -1, "",
                            "this server needs a bearer token (Authorization: Bearer ...)");
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return invalid(err, "the Authorization header must be 'Bearer <token>'");
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    size_t len = strlen(token);
    if (len == 0 || len > MAX_TOKEN_BYTES)
        return invalid(err, "the token is empty or too long");
    for (size_t i = 0; i < len; i++)
        if (!(isalnum((unsigned char)token[i]) || strchr("-_.=", token[i])))
            return invalid(err, "the token is not a JWT");
    jwt_t *jwt = NULL;
    ps_code rc = PS_OK;
    /* libjwt checks the signature with our key; the algorithm is checked
     * below, so "none" or HS256-with-the-public-key cannot get through. */
    if (jwt_decode(&jwt, token, a->key, (int)a->key_len) != 0 || !jwt) {
        rc = invalid(err, "the token is malformed or its signature is wrong");
        goto out;
    }
    /* libjwt reads "alg" without regard to case ("hs256" passes as HS256);
     * RFC 7515 names are case-sensitive, so the header is compared here. */
    const char *alg = jwt_get_header(jwt, "alg");
    if (jwt_get_alg(jwt) != a->alg || !alg || strcmp(alg, jwt_alg_str(a->alg)) != 0) {
        rc = invalid(err, "the token is not signed with the algorithm this server accepts");
        goto out;
    }
    /* RFC 7515 §4.1.11: extensions named in "crit" must be understood; we
     * understand none. */
    char *crit = jwt_get_headers_json(jwt, "crit");
    free(crit);
    if (crit) {
        rc = invalid(err, "the token has a crit header; no extensions are supported");
        goto out;
    }
    /* Compared as doubles: no overflow for any claim a token can carry. */
    double exp, nbf, now = (double)now_s, leeway = (double)a->leeway_s;
    if (time_claim(jwt, "exp", &exp) != CLAIM_OK) {
        rc = invalid(err, "the token has no numeric exp (expiry) claim");
        goto out;
    }
    if (exp < now - leeway) {
        rc = invalid(err, "the token has expired");
        goto out;
    }
    /* A token valid for decades is a stolen credential that never ends. */
    if (a->max_lifetime_s && exp > now + (double)a->max_lifetime_s + leeway) {
        rc = invalid(err, "the token expires further ahead than this server accepts "
                          "(--max-token-lifetime)");
        goto out;
    }
    claim_state nbf_state = time_claim(jwt, "nbf", &nbf);
    if (nbf_state == CLAIM_BAD || (nbf_state == CLAIM_OK && nbf > now + leeway)) {
        rc = invalid(err, "the token is not valid yet (nbf)");
        goto out;
    }
    if (a->issuer) {
        const char *iss = jwt_get_grant(jwt, "iss");
        if (!iss || strcmp(iss, a->issuer) != 0) {
            rc = invalid(err, "the token is from another issuer");
            goto out;
        }
    }
    if (a->audience && !audience_matches(jwt, a->audience)) {
        rc = invalid(err, "the token is for another audience");
        goto out;
    }
    const char *sub = jwt_get_grant(jwt, "sub");
    size_t sub_len = sub ? strlen(sub) : 0;
    if (!sub || sub_len == 0 || sub_len > PS_ID_MAX_BYTES || sub_len >= user_size) {
        rc = invalid(err, "the token's sub (user) claim is missing or invalid");
        goto out;
    }
    memcpy(user, sub, sub_len + 1);
    read_claims(jwt, claims);
out:
    jwt_free(jwt);
    return rc;
}

ps_code ps_auth_issue(const ps_auth *a, const char *user, int64_t ttl_s, int64_t now_ms,
                      char **token, char jti_out[33], ps_error *err)
{
    *token = NULL;
    if (a->alg != JWT_ALG_HS256)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "",
                            "tokens can be issued only with --jwt-secret-file (HS256)");
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return ps_error_set(err, PS_ERR_IO, -1, "", "no random bytes for the token id");
    char jti[33];
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(jti + 2 * i, 3, "%02x", raw[i]);
    /* iat to the millisecond (NumericDate allows fractions): a revocation
     * of "every token issued until now" then spares a token minted a
     * moment later, in the same second */
    char iat[64];
    snprintf(iat, sizeof iat, "{\"iat\": %lld.%03lld}", (long long)(now_ms / 1000),
             (long long)(now_ms % 1000));
    jwt_t *jwt = NULL;
    ps_code rc = PS_OK;
    if (jwt_new(&jwt) != 0 || jwt_add_grant(jwt, "sub", user) != 0 ||
        jwt_add_grant(jwt, "jti", jti) != 0 || jwt_add_grants_json(jwt, iat) != 0 ||
        jwt_add_grant_int(jwt, "exp", (long)(now_ms / 1000 + ttl_s)) != 0 ||
        (a->issuer && jwt_add_grant(jwt, "iss", a->issuer) != 0) ||
        (a->audience && jwt_add_grant(jwt, "aud", a->audience) != 0) ||
        jwt_set_alg(jwt, JWT_ALG_HS256, a->key, (int)a->key_len) != 0 ||
        !(*token = jwt_encode_str(jwt)))
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "could not make the token");
    jwt_free(jwt);
    if (rc == PS_OK && jti_out)
        memcpy(jti_out, jti, sizeof jti);
    return rc;
}
