/*
 * Bearer-token authentication (JWT through libjwt): HS256 with a shared
 * secret, or RS256/ES256 with a public key. One algorithm is configured and
 * only that one is accepted — never "none", and never HS256 signed with a
 * public key as its secret (the key-confusion attack). The `sub` claim is
 * the user. docs/security.md has the threat model.
 */
#ifndef PS_AUTH_H
#define PS_AUTH_H

#include "polysync/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ps_auth_config {
    const char *secret_file;     /* HS256; or NULL */
    const char *public_key_file; /* RS256 / ES256 by key type; or NULL */
    const char *issuer;          /* checked when not NULL */
    const char *audience;        /* checked when not NULL */
    int64_t leeway_s;            /* for exp and nbf */
    int64_t max_lifetime_s;      /* exp later than now + this is refused; 0 = no bound */
} ps_auth_config;

typedef struct ps_auth ps_auth;

/* Loads the key; *out is the caller's (ps_auth_free). PS_ERR_CONFIG with the
 * reason when the key cannot be used. */
ps_code ps_auth_new(const ps_auth_config *cfg, ps_auth **out, ps_error *err);
void ps_auth_free(ps_auth *auth);

/* "HS256", "RS256" or "ES256". */
const char *ps_auth_alg(const ps_auth *auth);

/*
 * Checks an Authorization header value ("Bearer <jwt>"; NULL when absent)
 * at time `now_s`. PS_OK: the user (sub) is copied into `user`.
 * PS_ERR_UNAUTHORIZED: no token; PS_ERR_INVALID_TOKEN: a token that is not
 * acceptable, err->message says why (safe to show the client).
 */
ps_code ps_auth_check(const ps_auth *auth, const char *authorization, int64_t now_s, char *user,
                      size_t user_size, ps_error *err);

/* What revocation looks at in an accepted token (docs/security.md,
 * "Revoking access"). */
typedef struct ps_auth_claims {
    char jti[129];  /* the token's id; "" when it has none (or a longer one) */
    int64_t iat_ms; /* when it was issued (fractions of seconds kept); 0 unknown */
} ps_auth_claims;

/* ps_auth_check, also filling *claims. */
ps_code ps_auth_check_claims(const ps_auth *auth, const char *authorization, int64_t now_s,
                             char *user, size_t user_size, ps_auth_claims *claims, ps_error *err);

/* Mints an HS256 token for `user` valid `ttl_s` seconds from `now_ms`,
 * with a random `jti` (32 hex digits, copied to jti when not NULL) and an
 * `iat` to the millisecond; *token is the caller's (free()). Only with a
 * secret. */
ps_code ps_auth_issue(const ps_auth *auth, const char *user, int64_t ttl_s, int64_t now_ms,
                      char **token, char jti[33], ps_error *err);

#endif
