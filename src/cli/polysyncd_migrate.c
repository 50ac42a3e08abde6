/*
 * `polysyncd migrate --from URL --to URL [--force]`: copies a whole store
 * from one backend to another (SQLite <-> PostgreSQL, or the same kind)
 * through the store interface: every user with its clock, change sequence
 * and purge point, every chat (tombstones included) with its change number,
 * merge state and rendering, every message with its stamp, change number
 * and origin. Then it reads both stores back and compares counts and a
 * SHA-256 over all of that in a fixed order; exit 0 only when they match.
 *
 * Tokens, account refusals and the device registry are copied too
 * (polysyncd_migrate_access.c). Not copied: the "chat as last sent" hashes (an optimisation; the
 * next legacy sync of each chat re-merges it once) and no-op sync times newer than the users' rows
 * (at most a second old, see store.h).
 *
 * Run it with the servers stopped (or at least not writing): it reads the
 * source in one transaction per user.
 */
#include "cli/polysyncd_migrate.h"
#include "cli/polysyncd_opts.h"
#include "core/chat_codec.h"
#include "core/json_parse.h"
#include "store/store.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct name_list {
    char **names;
    size_t n, cap;
} name_list;

static int add_name(void *ctx, const char *name, int64_t chats)
{
    name_list *l = ctx;
    (void)chats;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **grown = realloc(l->names, cap * sizeof *grown);
        if (!grown)
            return 1;
        l->names = grown;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name)))
        return 1;
    l->n++;
    return 0;
}

static void free_names(name_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

/* Every user's name (PS_ERR_NOMEM if the list could not be made whole). */
static ps_code list_users(ps_store *s, name_list *out, ps_error *err)
{
    ps_code rc = ps_store_begin(s, false, err);
    if (rc != PS_OK)
        return rc;
    rc = s->ops->user_list(s, add_name, out, err);
    if (rc == PS_OK)
        rc = ps_store_commit(s, err);
    else
        ps_store_rollback(s);
    return rc;
}

/* One chat id with its change number. */
typedef struct chat_ref {
    char *id;
    int64_t seq;
} chat_ref;

typedef struct chat_refs {
    chat_ref *v;
    size_t n, cap;
} chat_refs;

static int add_chat(void *ctx, const ps_chat_row *row)
{
    chat_refs *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        chat_ref *grown = realloc(l->v, cap * sizeof *grown);
        if (!grown)
            return 1;
        l->v = grown;
        l->cap = cap;
    }
    if (!(l->v[l->n].id = strdup(row->id)))
        return 1;
    l->v[l->n++].seq = 0;
    return 0;
}

static void free_refs(chat_refs *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].id);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* The user's chats (listing order: by id) with their change numbers. */
static ps_code user_chats(ps_store *s, int64_t user, chat_refs *out, ps_error *err)
{
    ps_code rc = s->ops->chat_each(s, user, add_chat, out, err);
    if (rc != PS_OK)
        return rc;
    int64_t pos = 0;
    for (;;) {
        ps_chat *c = NULL;
        int64_t seq = 0;
        if ((rc = s->ops->chat_next_changed(s, user, pos, &c, &seq, err)) != PS_OK || !c)
            return rc;
        for (size_t i = 0; i < out->n; i++)
            if (strcmp(out->v[i].id, c->id) == 0)
                out->v[i].seq = seq;
        ps__chat_free(c);
        pos = seq;
    }
}

/* ---- the checksum ---------------------------------------------------- */

typedef struct tally {
    EVP_MD_CTX *md;
    int64_t users, chats, messages;
} tally;

static void put_text(tally *t, const char *s)
{
    size_t len = s ? strlen(s) + 1 : 0; /* the NUL separates; NULL hashes as nothing */
    EVP_DigestUpdate(t->md, &len, sizeof len);
    if (s)
        EVP_DigestUpdate(t->md, s, len);
}

static void put_int(tally *t, int64_t v)
{
    EVP_DigestUpdate(t->md, &v, sizeof v);
}

static ps_code put_message(void *ctx, const ps_message *m)
{
    tally *t = ctx;
    t->messages++;
    put_text(t, m->id);
    put_text(t, m->value ? ps__json_text(m->value, NULL) : NULL);
    put_int(t, m->stamp.ts);
    put_int(t, m->stamp.lamport);
    put_text(t, m->stamp.device);
    put_int(t, m->order_ts);
    put_int(t, m->mark.seq);
    put_text(t, m->mark.origin);
    put_int(t, m->stamp.timed);
    put_int(t, m->received);
    return PS_OK;
}

/* Adds one user and all their rows to the tally. */
static ps_code tally_user(ps_store *s, const char *name, tally *t, ps_error *err)
{
    ps_user u;
    bool found = false;
    ps_code rc = ps_store_begin(s, false, err);
    if (rc != PS_OK)
        return rc;
    chat_refs refs = {0};
    if ((rc = s->ops->user_find(s, name, &u, &found, err)) != PS_OK || !found)
        goto done;
    t->users++;
    put_text(t, name);
    put_int(t, u.clock);
    put_int(t, u.seq);
    put_int(t, u.purged_seq);
    if ((rc = user_chats(s, u.id, &refs, err)) != PS_OK)
        goto done;
    for (size_t i = 0; i < refs.n && rc == PS_OK; i++) {
        ps_chat *c = NULL;
        if ((rc = s->ops->chat_load(s, u.id, refs.v[i].id, false, &c, err)) != PS_OK || !c)
            break;
        json_object *state = ps__chat_header_to_json(c);
        const char *state_text = state ? ps__json_text(state, NULL) : NULL;
        if (!state_text) { /* never an empty state in the copy */
            json_object_put(state);
            ps__chat_free(c);
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
            break;
        }
        t->chats++;
        put_text(t, refs.v[i].id);
        put_int(t, refs.v[i].seq);
        put_text(t, state_text);
        json_object_put(state);
        ps__chat_free(c);
        /* every message, with its change number and origin */
        rc = s->ops->messages_since(s, u.id, refs.v[i].id, -1, NULL, -1, put_message, t, err);
    }
done:
    free_refs(&refs);
    if (rc == PS_OK)
        return ps_store_commit(s, err);
    ps_store_rollback(s);
    return rc;
}

/* Counts and SHA-256 (hex) of the whole store. */
static ps_code tally_store(ps_store *s, tally *t, char hex[65], ps_error *err)
{
    name_list names = {0};
    ps_code rc = list_users(s, &names, err);
    memset(t, 0, sizeof *t);
    if (rc == PS_OK && !(t->md = EVP_MD_CTX_new()))
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    if (rc == PS_OK)
        EVP_DigestInit_ex(t->md, EVP_sha256(), NULL);
    for (size_t i = 0; i < names.n && rc == PS_OK; i++)
        rc = tally_user(s, names.names[i], t, err);
    if (rc == PS_OK) {
        unsigned char sum[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        EVP_DigestFinal_ex(t->md, sum, &len);
        for (unsigned i = 0; i < 32 && i < len; i++)
            snprintf(hex + 2 * i, 3, "%02x", sum[i]);
    }
    EVP_MD_CTX_free(t->md);
    t->md = NULL;
    free_names(&names);
    return rc;
}

/* ---- the copy -------------------------------------------------------- */

/* Marks every part of a loaded chat to be written, keeping its marks. */
static void all_dirty(ps_chat *c)
{
    for (size_t i = 0; i < c->nmessages; i++)
        c->messages[i].mark.dirty = true;
}

static ps_code copy_user(ps_store *from, ps_store *to, const char *name, ps_error *err)
{
    ps_user u, nu;
    bool found = false;
    chat_refs refs = {0};
    ps_code rc = ps_store_begin(from, false, err);
    if (rc != PS_OK)
        return rc;
    if ((rc = ps_store_begin(to, true, err)) != PS_OK) {
        ps_store_rollback(from);
        return rc;
    }
    if ((rc = from->ops->user_find(from, name, &u, &found, err)) != PS_OK || !found ||
        (rc = to->ops->user_load(to, name, &nu, err)) != PS_OK)
        goto done;
    nu.clock = u.clock;
    nu.last_sync_ms = u.last_sync_ms;
    nu.seq = u.seq;
    nu.purged_seq = u.purged_seq;
    if ((rc = to->ops->user_restore(to, &nu, err)) != PS_OK ||
        (rc = user_chats(from, u.id, &refs, err)) != PS_OK)
        goto done;
    for (size_t i = 0; i < refs.n && rc == PS_OK; i++) {
        ps_chat *c = NULL;
        if ((rc = from->ops->chat_load(from, u.id, refs.v[i].id, true, &c, err)) != PS_OK)
            break;
        if (!c) {
            rc = ps_error_set(err, PS_ERR_STORE, -1, "", "chat %s vanished", refs.v[i].id);
            break;
        }
        all_dirty(c);
        /* the rendering for legacy clients is made again from the state */
        json_object *doc = ps__chat_to_legacy(c);
        size_t len = 0;
        const char *text = doc ? ps__json_text(doc, &len) : NULL;
        if (!doc)
            rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        else
            rc = to->ops->chat_save(to, nu.id, c, text, len, refs.v[i].seq, err);
        json_object_put(doc);
        ps__chat_free(c);
    }
done:
    free_refs(&refs);
    ps_store_rollback(from);
    if (rc == PS_OK)
        return ps_store_commit(to, err);
    ps_store_rollback(to);
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "Usage: polysyncd migrate --from URL --to URL [--force]\n"
                    "  Copies every user, chat, tombstone and message from one store to\n"
                    "  another (sqlite:PATH, postgres://...), then checks counts and a\n"
                    "  checksum. The target must be empty unless --force, which first\n"
                    "  deletes every user the target has.\n");
}

int ps_migrate_main(int argc, char **argv)
{
    const char *from_url = NULL, *to_url = NULL;
    bool force = false;
    const ps_subopt opts[] = {{"from", &from_url, NULL},
                              {"to", &to_url, NULL},
                              {"force", NULL, &force},
                              {NULL, NULL, NULL}};
    int first;
    switch (ps_subopt_parse(argc, argv, opts, &first)) {
    case PS_SUBOPT_OK:
        break;
    case PS_SUBOPT_HELP:
        usage();
        return 0;
    case PS_SUBOPT_BAD:
        usage();
        return 1;
    }
    if (!from_url || !to_url || first != argc) {
        usage();
        return 1;
    }
    if (strcmp(from_url, to_url) == 0) {
        fprintf(stderr, "polysyncd migrate: --from and --to name the same store\n");
        return 1;
    }
    ps_error err;
    ps_error_clear(&err);
    ps_store *from = NULL, *to = NULL;
    name_list names = {0}, existing = {0};
    int code = 1;
    if (ps_store_open(from_url, &from, &err) != PS_OK) {
        fprintf(stderr, "polysyncd migrate: cannot open %s: %s\n", from_url, err.message);
        goto out;
    }
    if (ps_store_open(to_url, &to, &err) != PS_OK) {
        fprintf(stderr, "polysyncd migrate: cannot open %s: %s\n", to_url, err.message);
        goto out;
    }
    if (list_users(to, &existing, &err) != PS_OK || list_users(from, &names, &err) != PS_OK) {
        fprintf(stderr, "polysyncd migrate: %s\n", err.message);
        goto out;
    }
    if (existing.n && !force) {
        fprintf(stderr,
                "polysyncd migrate: %s is not empty (%zu users); --force deletes them first\n",
                to_url, existing.n);
        goto out;
    }
    for (size_t i = 0; i < existing.n; i++) {
        ps_code rc = ps_store_begin(to, true, &err);
        if (rc == PS_OK && (rc = to->ops->user_delete(to, existing.names[i], &err)) == PS_OK)
            rc = ps_store_commit(to, &err);
        else if (rc == PS_OK)
            ps_store_rollback(to);
        if (rc != PS_OK) {
            fprintf(stderr, "polysyncd migrate: emptying the target: %s\n", err.message);
            goto out;
        }
    }
    for (size_t i = 0; i < names.n; i++) {
        if (copy_user(from, to, names.names[i], &err) != PS_OK) {
            fprintf(stderr, "polysyncd migrate: user %s: %s\n", names.names[i], err.message);
            goto out;
        }
    }
    ps_migrate_access_counts access;
    if (ps__migrate_access(from, to, names.names, names.n, &access, &err) != PS_OK) {
        fprintf(stderr, "polysyncd migrate: tokens, accounts and devices: %s\n", err.message);
        goto out;
    }
    printf("copied %lld tokens, %lld account settings, %lld devices\n", (long long)access.tokens,
           (long long)access.accounts, (long long)access.devices);
    tally a, b;
    char sum_a[65] = "", sum_b[65] = "";
    if (tally_store(from, &a, sum_a, &err) != PS_OK || tally_store(to, &b, sum_b, &err) != PS_OK) {
        fprintf(stderr, "polysyncd migrate: verifying: %s\n", err.message);
        goto out;
    }
    printf("source: %lld users, %lld chats, %lld messages, sha256 %s\n", (long long)a.users,
           (long long)a.chats, (long long)a.messages, sum_a);
    printf("target: %lld users, %lld chats, %lld messages, sha256 %s\n", (long long)b.users,
           (long long)b.chats, (long long)b.messages, sum_b);
    if (a.users != b.users || a.chats != b.chats || a.messages != b.messages ||
        strcmp(sum_a, sum_b) != 0) {
        fprintf(stderr, "polysyncd migrate: the copy differs from the source\n");
        goto out;
    }
    printf("migrated and verified\n");
    code = 0;
out:
    free_names(&names);
    free_names(&existing);
    ps_store_close(from);
    ps_store_close(to);
    return code;
}
