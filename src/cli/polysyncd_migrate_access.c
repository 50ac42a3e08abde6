/*
 * The part of `polysyncd migrate` that is not chats: minted tokens (with
 * their revocations), what is refused of each user (disabled, tokens before
 * a time) and the device registry. Without it a migrated store would accept
 * tokens revoked on the old one again, and every device would look new, so
 * tombstones would wait for devices that are gone (docs/merge.md).
 *
 * Copied through the store interface in one transaction on each side. A
 * device's first sighting becomes its last one (device_seen records one
 * time); a token the target already has (a --force run over an earlier
 * copy) is left as it is there.
 */
#include "cli/polysyncd_migrate.h"
#include "store/store.h"

#include <string.h>

typedef struct copy_ctx {
    ps_store *to;
    const char *user; /* for devices */
    ps_code rc;
    ps_error *err;
    int64_t copied;
} copy_ctx;

typedef struct jti_probe {
    const char *jti;
    bool found;
} jti_probe;

static int find_jti(void *ctx, const ps_token_row *row)
{
    jti_probe *p = ctx;
    if (strcmp(p->jti, row->jti) == 0) {
        p->found = true;
        return 1;
    }
    return 0;
}

static int copy_token(void *ctx, const ps_token_row *row)
{
    copy_ctx *c = ctx;
    jti_probe probe = {.jti = row->jti};
    c->rc = c->to->ops->token_list(c->to, row->user, find_jti, &probe, c->err);
    if (c->rc != PS_OK)
        return 1;
    if (probe.found)
        return 0;
    c->rc =
        c->to->ops->token_add(c->to, row->jti, row->user, row->issued_ms, row->expires_ms, c->err);
    int64_t revoked = 0;
    if (c->rc == PS_OK && row->revoked_ms)
        c->rc = c->to->ops->token_revoke(c->to, row->jti, NULL, row->revoked_ms, &revoked, c->err);
    c->copied++;
    return c->rc != PS_OK;
}

static int copy_account(void *ctx, const ps_account_row *row)
{
    copy_ctx *c = ctx;
    c->rc = c->to->ops->account_set(c->to, row->name, row->disabled ? 1 : 0, row->tokens_before_ms,
                                    c->err);
    c->copied++;
    return c->rc != PS_OK;
}

static int copy_device(void *ctx, const ps_device_row *row)
{
    copy_ctx *c = ctx;
    c->rc = c->to->ops->device_seen(c->to, c->user, row->id, row->client, row->protocol,
                                    row->acked_seq, row->last_seen_ms, c->err);
    c->copied++;
    return c->rc != PS_OK;
}

ps_code ps__migrate_access(ps_store *from, ps_store *to, char *const *users, size_t nusers,
                           ps_migrate_access_counts *counts, ps_error *err)
{
    memset(counts, 0, sizeof *counts);
    ps_code rc = ps_store_begin(from, false, err);
    if (rc != PS_OK)
        return rc;
    if ((rc = ps_store_begin(to, true, err)) != PS_OK) {
        ps_store_rollback(from);
        return rc;
    }
    copy_ctx c = {.to = to, .rc = PS_OK, .err = err};
    if ((rc = from->ops->token_list(from, NULL, copy_token, &c, err)) == PS_OK)
        rc = c.rc;
    counts->tokens = c.copied;
    c.copied = 0;
    if (rc == PS_OK && (rc = from->ops->account_each(from, copy_account, &c, err)) == PS_OK)
        rc = c.rc;
    counts->accounts = c.copied;
    c.copied = 0;
    for (size_t i = 0; i < nusers && rc == PS_OK; i++) {
        c.user = users[i];
        if ((rc = from->ops->device_list(from, users[i], copy_device, &c, err)) == PS_OK)
            rc = c.rc;
    }
    counts->devices = c.copied;
    ps_store_rollback(from);
    if (rc == PS_OK)
        return ps_store_commit(to, err);
    ps_store_rollback(to);
    return rc;
}
