/* `polysyncd token issue` and `polysyncd user list|delete`; see the header. */
#include "cli/polysyncd_admin.h"
#include "cli/polysyncd_opts.h"
#include "core/json_build.h"
#include "core/timestamp.h"
#include "server/auth.h"
#include "server/devices.h"
#include "store/store.h"

#include <json-c/json.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage_to(FILE *f)
{
    fprintf(f, "Usage:\n"
               "  polysyncd token issue --user NAME [--ttl 30d] --jwt-secret-file PATH\n"
               "                        [--jwt-issuer ISS] [--jwt-audience AUD] [--db URL]\n"
               "  polysyncd token list [--user NAME] [--db URL] [--json]\n"
               "  polysyncd token revoke ID [--db URL]\n"
               "  polysyncd token revoke --user NAME [--db URL]\n"
               "  polysyncd user list [--db URL]\n"
               "  polysyncd user delete NAME [--db URL] [--yes]\n"
               "  polysyncd user disable NAME [--db URL]\n"
               "  polysyncd user enable NAME [--db URL]\n"
               "  polysyncd user rename OLD NEW [--db URL]\n"
               "  polysyncd devices list --user NAME [--db URL] [--json]\n"
               "                         [--tombstone-retention DAYS]\n"
               "  polysyncd devices forget --user NAME ID [--db URL]\n"
               "A revocation, a disabled user or a deleted one is refused by a running\n"
               "server within a second (401 token_revoked / 403 user_disabled), and\n"
               "its live streams and sockets are closed.\n");
}

static void usage(void)
{
    usage_to(stderr);
}

/* --help, -h or help: the usage on stdout, exit 0 (asked for, not an error) */
static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            (i == 1 && strcmp(argv[i], "help") == 0))
            return true;
    return false;
}

/* "3600", "90m", "12h", "30d" -> seconds; 0 when invalid. */
static long long parse_ttl(const char *s)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return 0;
    long long v = strtoll(s, &end, 10);
    long long mult = 1;
    if (*end == 'm')
        mult = 60;
    else if (*end == 'h')
        mult = 3600;
    else if (*end == 'd')
        mult = 86400;
    else if (*end == 's' || *end == '\0')
        mult = 1;
    else
        return 0;
    if (*end && end[1])
        return 0;
    return v > 0 && v < 3650LL * 86400 / mult ? v * mult : 0;
}

typedef struct admin_opts {
    const char *user, *ttl, *secret, *issuer, *audience, *db;
    const char *retention;
    bool yes, json;
} admin_opts;

/* Fills *o; *operands = the index of the first operand (NAME, ID). */
/* A --json listing on stdout; 1 when json-c could not write it (no memory). */
static int print_json_rows(json_object *rows)
{
    const char *text =
        json_object_to_json_string_ext(rows, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!text) {
        fprintf(stderr, "polysyncd: out of memory writing the listing\n");
        return 1;
    }
    printf("%s\n", text);
    return 0;
}

static int parse(int argc, char **argv, admin_opts *o, int *operands)
{
    const ps_subopt opts[] = {
        {"user", &o->user, NULL},
        {"ttl", &o->ttl, NULL},
        {"jwt-secret-file", &o->secret, NULL},
        {"jwt-issuer", &o->issuer, NULL},
        {"jwt-audience", &o->audience, NULL},
        {"db", &o->db, NULL},
        {"yes", NULL, &o->yes},
        {"json", NULL, &o->json},
        {"tombstone-retention", &o->retention, NULL},
        {NULL, NULL, NULL},
    };
    if (ps_subopt_parse(argc, argv, opts, operands) != PS_SUBOPT_OK) {
        usage();
        return 1;
    }
    return 0;
}

#define DEFAULT_DB "sqlite:./data/polysync.db"

/* Opens the store, runs fn in one transaction (a write one when `write`),
 * commits; 1 with the reason on stderr when anything fails. */
static int in_store(const char *what, const admin_opts *o, bool write,
                    ps_code (*fn)(ps_store *st, const void *arg, ps_error *err), const void *arg)
{
    const char *url = o->db ? o->db : DEFAULT_DB;
    ps_error err;
    ps_error_clear(&err);
    ps_store *store = NULL;
    if (ps_store_open(url, &store, &err) != PS_OK) {
        fprintf(stderr, "polysyncd: cannot open store %s: %s\n", url, err.message);
        return 1;
    }
    ps_code rc = ps_store_begin(store, write, &err);
    if (rc == PS_OK) {
        rc = fn(store, arg, &err);
        if (rc == PS_OK)
            rc = ps_store_commit(store, &err);
        else
            ps_store_rollback(store);
    }
    ps_store_close(store);
    if (rc != PS_OK) {
        fprintf(stderr, "polysyncd %s: %s\n", what, err.message);
        return 1;
    }
    return 0;
}

typedef struct token_record {
    const char *jti, *user;
    int64_t issued_ms, expires_ms;
} token_record;

static ps_code add_token(ps_store *st, const void *arg, ps_error *err)
{
    const token_record *t = arg;
    return st->ops->token_add(st, t->jti, t->user, t->issued_ms, t->expires_ms, err);
}

/* Records a minted token in the store (so `token list` shows it and
 * `token revoke ID` finds it). Without --db, only into the default store
 * when it exists: issuing a token must not create a store in whatever
 * folder the command runs in. Such a token is still revoked by
 * `token revoke --user`. */
static int record_token(const admin_opts *o, const char *jti, int64_t issued_ms, int64_t expires_ms)
{
    if (!o->db && access(&DEFAULT_DB[strlen("sqlite:")], F_OK) != 0) {
        fprintf(stderr,
                "polysyncd token issue: token %s not recorded (no --db, no %s): "
                "`token revoke --user %s` still revokes it\n",
                jti, DEFAULT_DB, o->user);
        return 0;
    }
    token_record t = {jti, o->user, issued_ms, expires_ms};
    return in_store("token issue", o, true, add_token, &t);
}

static int token_issue(const admin_opts *o)
{
    if (!o->user || !o->secret) {
        fprintf(stderr, "polysyncd token issue: --user and --jwt-secret-file are required\n");
        return 1;
    }
    long long ttl = parse_ttl(o->ttl ? o->ttl : "30d");
    size_t ulen = strlen(o->user);
    if (!ttl || ulen == 0 || ulen > 256) {
        fprintf(stderr, "polysyncd token issue: bad --ttl or --user (1 to 256 bytes)\n");
        return 1;
    }
    ps_auth_config ac = {.secret_file = o->secret, .issuer = o->issuer, .audience = o->audience};
    ps_auth *auth = NULL;
    char *token = NULL;
    ps_error err;
    ps_error_clear(&err);
    int code = 1;
    int64_t now = ps__time_now_ms();
    char jti[33];
    if (ps_auth_new(&ac, &auth, &err) == PS_OK &&
        ps_auth_issue(auth, o->user, ttl, now, &token, jti, &err) == PS_OK &&
        record_token(o, jti, now, now + ttl * 1000) == 0) {
        printf("%s\n", token);
        code = 0;
    } else if (!token) {
        fprintf(stderr, "polysyncd token issue: %s\n", err.message);
    }
    free(token);
    ps_auth_free(auth);
    return code;
}

static int print_user(void *ctx, const char *name, int64_t chats)
{
    printf("%s\t%lld chat%s\n", name, (long long)chats, chats == 1 ? "" : "s");
    return 0;
}

static ps_code list_users(ps_store *st, const void *arg, ps_error *err)
{
    return st->ops->user_list(st, print_user, NULL, err);
}

/* user delete, step 1: every token issued until now is refused, so a
 * device still holding one cannot bring the account back by syncing */
static ps_code refuse_user_tokens(ps_store *st, const void *arg, ps_error *err)
{
    const char *name = arg;
    int64_t revoked = 0;
    ps_code rc = st->ops->token_revoke(st, NULL, name, ps__time_now_ms(), &revoked, err);
    if (rc == PS_OK)
        rc = st->ops->account_set(st, name, -1, ps__time_now_ms(), err);
    return rc;
}

/* step 2, once running servers refuse the tokens: the rows go */
static ps_code delete_user(ps_store *st, const void *arg, ps_error *err)
{
    return st->ops->user_delete(st, arg, err);
}

/* Running servers read the refusals within a poll (server/access.h: one
 * second); two, so that a device syncing meanwhile cannot re-create the
 * rows after they are deleted. */
#define SERVER_POLL_WAIT_US 2000000

static ps_code disable_user(ps_store *st, const void *arg, ps_error *err)
{
    return st->ops->account_set(st, arg, 1, -1, err);
}

static ps_code enable_user(ps_store *st, const void *arg, ps_error *err)
{
    return st->ops->account_set(st, arg, 0, -1, err);
}

typedef struct rename_args {
    const char *from, *to;
} rename_args;

static ps_code rename_user(ps_store *st, const void *arg, ps_error *err)
{
    const rename_args *r = arg;
    return st->ops->user_rename(st, r->from, r->to, err);
}

static bool valid_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n >= 1 && n <= 256;
}

static bool confirm_delete(const char *name, const admin_opts *o)
{
    if (o->yes)
        return true;
    if (!isatty(STDIN_FILENO)) {
        fprintf(stderr, "polysyncd user delete: pass --yes to delete without asking\n");
        return false;
    }
    fprintf(stderr, "Delete user %s and all their chats? Type 'yes': ", name);
    char answer[8] = "";
    if (!fgets(answer, sizeof answer, stdin) || strcmp(answer, "yes\n") != 0) {
        fprintf(stderr, "not deleted\n");
        return false;
    }
    return true;
}

/* `user VERB NAME [NAME2]` */
static int user_command(const char *verb, const char *name, const char *name2, const admin_opts *o)
{
    if (strcmp(verb, "list") == 0)
        return in_store("user list", o, false, list_users, NULL);
    bool known = strcmp(verb, "delete") == 0 || strcmp(verb, "disable") == 0 ||
                 strcmp(verb, "enable") == 0 || strcmp(verb, "rename") == 0;
    if (!known) {
        usage();
        return 1;
    }
    if (!valid_name(name) || (strcmp(verb, "rename") == 0 && !valid_name(name2))) {
        fprintf(stderr, "polysyncd user %s: which user? (names are 1 to 256 bytes)\n", verb);
        return 1;
    }
    int code;
    if (strcmp(verb, "delete") == 0) {
        if (!confirm_delete(name, o))
            return 1;
        if ((code = in_store("user delete", o, true, refuse_user_tokens, name)) != 0)
            return code;
        usleep(SERVER_POLL_WAIT_US);
        if ((code = in_store("user delete", o, true, delete_user, name)) == 0)
            printf("deleted user %s; tokens issued until now are refused\n", name);
    } else if (strcmp(verb, "disable") == 0) {
        if ((code = in_store("user disable", o, true, disable_user, name)) == 0)
            printf("disabled user %s\n", name);
    } else if (strcmp(verb, "enable") == 0) {
        if ((code = in_store("user enable", o, true, enable_user, name)) == 0)
            printf("enabled user %s\n", name);
    } else {
        rename_args r = {name, name2};
        if ((code = in_store("user rename", o, true, rename_user, &r)) == 0)
            printf("renamed user %s to %s\n", name, name2);
    }
    return code;
}

/* ---- token list / revoke ---- */

typedef struct token_listing {
    bool json;
    json_object *rows;
    int64_t now_ms;
    ps_code rc; /* PS_ERR_NOMEM: a row could not be built (the listing stopped) */
} token_listing;

static const char *token_status(const ps_token_row *t, int64_t now_ms)
{
    return t->revoked_ms ? "revoked" : t->expires_ms < now_ms ? "expired" : "active";
}

static int print_token(void *ctx, const ps_token_row *t)
{
    token_listing *l = ctx;
    char issued[32], expires[32];
    ps__time_format_iso(t->issued_ms, issued);
    ps__time_format_iso(t->expires_ms, expires);
    if (!l->json) {
        printf("%s\t%s\t%s\t%s\t%s\n", t->jti, t->user, issued, expires,
               token_status(t, l->now_ms));
        return 0;
    }
    json_object *row = json_object_new_object();
    ps_code rc = PS_OK;
    ps__json_set(&rc, row, "id", json_object_new_string(t->jti));
    ps__json_set(&rc, row, "user", json_object_new_string(t->user));
    ps__json_set(&rc, row, "issuedAt", json_object_new_string(issued));
    ps__json_set(&rc, row, "expiresAt", json_object_new_string(expires));
    ps__json_set(&rc, row, "status", json_object_new_string(token_status(t, l->now_ms)));
    if (t->revoked_ms) {
        char revoked[32];
        ps__time_format_iso(t->revoked_ms, revoked);
        ps__json_set(&rc, row, "revokedAt", json_object_new_string(revoked));
    }
    if (rc != PS_OK) {
        json_object_put(row);
        row = NULL;
    }
    ps__json_push(&l->rc, l->rows, row);
    return l->rc != PS_OK;
}

typedef struct list_args {
    const char *user;
    token_listing *listing;
} list_args;

static ps_code list_tokens(ps_store *st, const void *arg, ps_error *err)
{
    const list_args *a = arg;
    ps_code rc = st->ops->token_list(st, a->user, print_token, a->listing, err);
    if (rc == PS_OK && a->listing->rc != PS_OK)
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory listing the tokens");
    return rc;
}

typedef struct revoke_args {
    const char *jti, *user;
    int64_t *count;
} revoke_args;

/* One token; or every token of a user, recorded or not (a cut by issue time
 * also catches tokens minted elsewhere with the same secret). */
static ps_code revoke_tokens(ps_store *st, const void *arg, ps_error *err)
{
    const revoke_args *a = arg;
    int64_t now = ps__time_now_ms();
    ps_code rc = st->ops->token_revoke(st, a->jti, a->user, now, a->count, err);
    if (rc == PS_OK && a->jti && *a->count == 0)
        rc = ps_error_set(err, PS_ERR_NOT_FOUND, -1, "",
                          "no token %s that is not revoked already (see token list)", a->jti);
    if (rc == PS_OK && !a->jti)
        rc = st->ops->account_set(st, a->user, -1, now, err);
    return rc;
}

static int token_command(const char *verb, const char *id, const admin_opts *o)
{
    if (strcmp(verb, "issue") == 0)
        return token_issue(o);
    if (strcmp(verb, "list") == 0) {
        token_listing l = {.json = o->json, .now_ms = ps__time_now_ms()};
        if (o->json && !(l.rows = json_object_new_array()))
            return 1;
        list_args a = {o->user, &l};
        int code = in_store("token list", o, false, list_tokens, &a);
        if (code == 0 && o->json)
            code = print_json_rows(l.rows);
        json_object_put(l.rows);
        return code;
    }
    if (strcmp(verb, "revoke") != 0) {
        usage();
        return 1;
    }
    if (!!id == !!o->user) {
        fprintf(stderr, "polysyncd token revoke: give a token ID or --user NAME\n");
        return 1;
    }
    int64_t count = 0;
    revoke_args a = {id, o->user, &count};
    int code = in_store("token revoke", o, true, revoke_tokens, &a);
    if (code == 0 && id)
        printf("revoked token %s\n", id);
    else if (code == 0)
        printf("revoked %lld recorded token%s of %s; every token of %s issued until now is "
               "refused\n",
               (long long)count, count == 1 ? "" : "s", o->user, o->user);
    return code;
}

/* ---- devices list / forget ---- */

typedef struct device_listing {
    bool json;
    json_object *rows;
    int64_t now_ms, retention_ms;
    ps_code rc; /* PS_ERR_NOMEM: a row could not be built (the listing stopped) */
} device_listing;

static int print_device(void *ctx, const ps_device_row *d)
{
    device_listing *l = ctx;
    char first[32], last[32];
    ps__time_format_iso(d->first_seen_ms, first);
    ps__time_format_iso(d->last_seen_ms, last);
    /* silent past the retention: its next sync gets 410 and resyncs */
    bool expired = l->now_ms - d->last_seen_ms > l->retention_ms;
    if (!l->json) {
        printf("%s\t%s\t%s\t%s\t%s\t%lld\t%s\n", d->id[0] ? d->id : "(no deviceId)", d->protocol,
               first, last, d->client[0] ? d->client : "-", (long long)d->acked_seq,
               expired ? "expired" : "active");
        return 0;
    }
    ps__json_push(&l->rc, l->rows, ps_device_row_json(d, l->now_ms, l->retention_ms));
    return l->rc != PS_OK;
}

typedef struct device_args {
    const char *user, *id;
    device_listing *listing;
} device_args;

static ps_code list_devices(ps_store *st, const void *arg, ps_error *err)
{
    const device_args *a = arg;
    ps_code rc = st->ops->device_list(st, a->user, print_device, a->listing, err);
    if (rc == PS_OK && a->listing->rc != PS_OK)
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory listing the devices");
    return rc;
}

static ps_code forget_device(ps_store *st, const void *arg, ps_error *err)
{
    const device_args *a = arg;
    return st->ops->device_forget(st, a->user, a->id, err);
}

static int devices_command(const char *verb, const char *id, const admin_opts *o)
{
    if (!valid_name(o->user)) {
        fprintf(stderr, "polysyncd devices %s: --user NAME is required\n", verb);
        return 1;
    }
    if (strcmp(verb, "list") == 0) {
        char *end = NULL;
        long days = o->retention ? strtol(o->retention, &end, 10) : 90;
        if (o->retention && (*end || days < 1 || days > 36500)) {
            fprintf(stderr, "polysyncd devices list: --tombstone-retention takes days\n");
            return 1;
        }
        device_listing l = {
            .json = o->json, .now_ms = ps__time_now_ms(), .retention_ms = days * 86400000LL};
        if (o->json && !(l.rows = json_object_new_array()))
            return 1;
        device_args a = {o->user, NULL, &l};
        int code = in_store("devices list", o, false, list_devices, &a);
        if (code == 0 && o->json)
            code = print_json_rows(l.rows);
        json_object_put(l.rows);
        return code;
    }
    if (strcmp(verb, "forget") != 0 || !id) {
        usage();
        return 1;
    }
    device_args a = {o->user, id, NULL};
    int code = in_store("devices forget", o, true, forget_device, &a);
    if (code == 0)
        printf("forgot device %s of %s\n", id, o->user);
    return code;
}

int ps_admin_main(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        usage_to(stdout);
        return 0;
    }
    if (argc < 2) {
        usage();
        return 1;
    }
    admin_opts o = {0};
    const char *verb = argv[1];
    /* getopt permutes: positional NAMEs and IDs are left at the end */
    int first;
    if (parse(argc - 1, argv + 1, &o, &first) != 0)
        return 1;
    const char *name = first < argc - 1 ? argv[1 + first] : NULL;
    const char *name2 = first + 1 < argc - 1 ? argv[2 + first] : NULL;
    if (strcmp(argv[0], "token") == 0)
        return token_command(verb, name, &o);
    if (strcmp(argv[0], "devices") == 0)
        return devices_command(verb, name, &o);
    return user_command(verb, name, name2, &o);
}
