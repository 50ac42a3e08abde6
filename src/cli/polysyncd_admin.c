/* `polysyncd token issue` and `polysyncd user list|delete`; see the header. */
#include "cli/polysyncd_admin.h"
#include "core/timestamp.h"
#include "server/auth.h"
#include "store/store.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage_to(FILE *f)
{
    fprintf(f, "Usage:\n"
               "  polysyncd token issue --user NAME [--ttl 30d] --jwt-secret-file PATH\n"
               "                        [--jwt-issuer ISS] [--jwt-audience AUD]\n"
               "  polysyncd user list [--db URL]\n"
               "  polysyncd user delete NAME [--db URL] [--yes]\n");
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
    bool yes;
} admin_opts;

static int parse(int argc, char **argv, admin_opts *o)
{
    static const struct option opts[] = {
        {"user", required_argument, NULL, 'u'},
        {"ttl", required_argument, NULL, 't'},
        {"jwt-secret-file", required_argument, NULL, 's'},
        {"jwt-issuer", required_argument, NULL, 'i'},
        {"jwt-audience", required_argument, NULL, 'a'},
        {"db", required_argument, NULL, 'd'},
        {"yes", no_argument, NULL, 'y'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            o->user = optarg;
            break;
        case 't':
            o->ttl = optarg;
            break;
        case 's':
            o->secret = optarg;
            break;
        case 'i':
            o->issuer = optarg;
            break;
        case 'a':
            o->audience = optarg;
            break;
        case 'd':
            o->db = optarg;
            break;
        case 'y':
            o->yes = true;
            break;
        case 'h':
            usage();
            return 1;
        default:
            fprintf(stderr, "polysyncd: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage();
            return 1;
        }
    }
    return 0;
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
    if (ps_auth_new(&ac, &auth, &err) == PS_OK &&
        ps_auth_issue(auth, o->user, ttl, ps_time_now_ms() / 1000, &token, &err) == PS_OK) {
        printf("%s\n", token);
        code = 0;
    } else {
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

static int user_command(const char *verb, const char *name, const admin_opts *o)
{
    const char *url = o->db ? o->db : "sqlite:./data/polysync.db";
    bool del = strcmp(verb, "delete") == 0;
    if (!del && strcmp(verb, "list") != 0) {
        usage();
        return 1;
    }
    if (del && !name) {
        fprintf(stderr, "polysyncd user delete: which user?\n");
        return 1;
    }
    if (del && !o->yes) {
        if (!isatty(STDIN_FILENO)) {
            fprintf(stderr, "polysyncd user delete: pass --yes to delete without asking\n");
            return 1;
        }
        fprintf(stderr, "Delete user %s and all their chats? Type 'yes': ", name);
        char answer[8] = "";
        if (!fgets(answer, sizeof answer, stdin) || strcmp(answer, "yes\n") != 0) {
            fprintf(stderr, "not deleted\n");
            return 1;
        }
    }
    ps_error err;
    ps_error_clear(&err);
    ps_store *store = NULL;
    if (ps_store_open(url, &store, &err) != PS_OK) {
        fprintf(stderr, "polysyncd: cannot open store %s: %s\n", url, err.message);
        return 1;
    }
    ps_code rc = ps_store_begin(store, del, &err);
    if (rc == PS_OK) {
        rc = del ? store->ops->user_delete(store, name, &err)
                 : store->ops->user_list(store, print_user, NULL, &err);
        if (rc == PS_OK)
            rc = ps_store_commit(store, &err);
        else
            ps_store_rollback(store);
    }
    ps_store_close(store);
    if (rc != PS_OK) {
        fprintf(stderr, "polysyncd user %s: %s\n", verb, err.message);
        return 1;
    }
    if (del)
        printf("deleted user %s\n", name);
    return 0;
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
    /* getopt permutes: the positional NAME of `user delete` is left at the end */
    if (parse(argc - 1, argv + 1, &o) != 0)
        return 1;
    const char *name = optind < argc - 1 ? argv[1 + optind] : NULL;
    if (strcmp(argv[0], "token") == 0) {
        if (strcmp(verb, "issue") != 0) {
            usage();
            return 1;
        }
        return token_issue(&o);
    }
    return user_command(verb, name, &o);
}
