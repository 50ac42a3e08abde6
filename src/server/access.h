/*
 * Who is refused although their token is valid: revoked tokens (by `jti`),
 * tokens issued before a user-wide cut (`token revoke --user`, `user
 * delete`) and disabled users (docs/security.md, "Revoking access").
 *
 * The lists live in the store (they must reach every server process, and
 * they are changed by `polysyncd token|user ...`, another process), and
 * are checked here without a store round trip: a snapshot in memory,
 * replaced when the store's access generation moves. A thread polls the
 * generation once a second (one tiny read), so a change takes effect
 * within about a second; when it does, the affected users' live streams
 * and sockets are closed through `cut` (those with a still-valid token
 * reconnect; the others get 401 or 403).
 */
#ifndef PS_ACCESS_H
#define PS_ACCESS_H

#include "server/auth.h"
#include "server/respond.h"
#include "store/store.h"

typedef struct ps_access ps_access;

/* Closes the live streams and sockets of `user` (any thread). */
typedef void (*ps_access_cut_fn)(void *ctx, const char *user);

/* Loads the lists once (so a server starting after a revocation refuses
 * at once) and starts the poller, every poll_ms. */
ps_code ps_access_new(ps_store *store, unsigned poll_ms, ps_access_cut_fn cut, void *cut_ctx,
                      ps_access **out, ps_error *err);
/* Stops the poller; before the store and the hubs `cut` uses are gone. */
void ps_access_free(ps_access *acc);

typedef enum {
    PS_ACCESS_OK,
    PS_ACCESS_REVOKED, /* 401 token_revoked */
    PS_ACCESS_DISABLED /* 403 user_disabled */
} ps_access_verdict;

/* The verdict for an authenticated request of `user` with `claims`. */
ps_access_verdict ps_access_check(ps_access *acc, const char *user, const ps_auth_claims *claims);

/* The answer for a refusal (401 with WWW-Authenticate, or 403). */
void ps_access_reply(ps_reply *reply, ps_access_verdict verdict);

/* Reads the store now instead of at the next poll (tests, SIGHUP). */
void ps_access_refresh(ps_access *acc);

#endif
