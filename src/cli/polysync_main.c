/*
 * polysync: the command-line client. It parses flags, calls the public
 * libpolysync API (include/polysync/client.h) and prints; it knows nothing
 * of the store or the protocol. Exit codes (docs/client.md): 0 ok, 1 usage
 * or local error, 2 server unreachable after retries, 3 credentials refused
 * (401/403), 4 rejected as invalid (400/413/415, or refused by the same
 * checks before sending), 130 interrupted.
 */
#include "polysync/polysync.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    EXIT_USAGE = 1,
    EXIT_UNREACHABLE = 2,
    EXIT_AUTH = 3,
    EXIT_REJECTED = 4,
    EXIT_INTERRUPTED = 130
};

/* ---- options ---- */

enum opt {
    O_STORE = 256,
    O_SERVER,
    O_TOKEN,
    O_TOKEN_FILE,
    O_CACERT,
    O_PLAIN_HTTP,
    O_RETRIES,
    O_RETRY_MAX,
    O_TIMEOUT,
    O_JSON,
    O_QUIET,
    O_HELP,
    O_VERSION,
    O_TITLE,
    O_ROLE,
    O_CONTENT,
    O_INTERVAL,
    O_OUTPUT,
};

typedef struct options {
    const char *store, *server, *token, *token_file, *cacert;
    bool plain_http, json, quiet, help, version;
    long retries, retry_max, timeout, interval;
    const char *title, *role, *content, *output;
    unsigned given; /* bit per command-specific option, to refuse misplaced ones */
    const char *args[8];
    int nargs;
} options;

#define BIT(o) (1u << ((o)-O_TITLE))

static const struct option LONG_OPTS[] = {
    {"store", required_argument, NULL, O_STORE},
    {"server", required_argument, NULL, O_SERVER},
    {"token", required_argument, NULL, O_TOKEN},
    {"token-file", required_argument, NULL, O_TOKEN_FILE},
    {"cacert", required_argument, NULL, O_CACERT},
    {"allow-plain-http", no_argument, NULL, O_PLAIN_HTTP},
    {"retries", required_argument, NULL, O_RETRIES},
    {"retry-max-delay", required_argument, NULL, O_RETRY_MAX},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"json", no_argument, NULL, O_JSON},
    {"quiet", no_argument, NULL, O_QUIET},
    {"help", no_argument, NULL, O_HELP},
    {"version", no_argument, NULL, O_VERSION},
    {"title", required_argument, NULL, O_TITLE},
    {"role", required_argument, NULL, O_ROLE},
    {"content", required_argument, NULL, O_CONTENT},
    {"interval", required_argument, NULL, O_INTERVAL},
    {"output", required_argument, NULL, O_OUTPUT},
    {NULL, 0, NULL, 0},
};

/* ---- help ---- */

static const char GLOBAL_HELP[] =
    "Usage: polysync [OPTIONS] COMMAND [ARGS]\n"
    "Keeps chats in a local store and syncs them with a polysyncd server.\n"
    "\n"
    "Commands:\n"
    "  chat new --title T        create a chat; prints its id\n"
    "  chat rename ID TITLE      retitle a chat\n"
    "  chat archive ID           archive a chat (chat unarchive ID undoes it)\n"
    "  chat delete ID            delete a chat, on every device\n"
    "  chat list [--json]        the chats, most recently updated first\n"
    "  chat show ID [--json]     one chat and its messages\n"
    "  msg add CHAT --role user|assistant --content TEXT\n"
    "                            add a message; prints its id\n"
    "  msg edit CHAT MSG TEXT    replace a message's text\n"
    "  msg delete CHAT MSG       delete a message, on every device\n"
    "  sync                      send local changes, receive the others'\n"
    "  watch [--interval S]      sync now, on every change, and every S seconds\n"
    "  import FILE               read a Polyglot export or chatStore.json (- = stdin)\n"
    "  export [--output FILE]    write every chat as JSON the Polyglot app loads\n"
    "  status                    device id, server, changes waiting to be sent\n"
    "\n"
    "Options for every command:\n"
    "  --store PATH              the local store (default\n"
    "                            ~/.local/share/polysync/chats.db)\n"
    "  --server URL              the server (env POLYSYNC_SERVER)\n"
    "  --token T                 bearer token (env POLYSYNC_TOKEN)\n"
    "  --token-file PATH         read the token from PATH (must be mode 0600)\n"
    "  --cacert FILE             verify the server with this CA bundle (PEM)\n"
    "  --allow-plain-http        allow sending a token over http:// to another host\n"
    "  --retries N               attempts per request, 1 = no retry (default 6)\n"
    "  --retry-max-delay S       longest wait between attempts (default 30)\n"
    "  --timeout S               connection and stall timeout (default 30)\n"
    "  --json                    output for scripts\n"
    "  --quiet                   no progress or summary\n"
    "  --help                    help; `polysync COMMAND --help` for one command\n"
    "  --version                 the version\n"
    "\n"
    "Exit codes: 0 ok, 1 usage or local error, 2 server unreachable after\n"
    "retries, 3 credentials refused (401/403), 4 rejected as invalid\n"
    "(400/413/415), 130 interrupted.\n"
    "Docs: docs/client.md\n";

typedef struct command {
    const char *group, *name; /* "chat","new"; or NULL,"sync" */
    int min_args, max_args;
    unsigned allowed; /* command-specific options */
    bool needs_server;
    const char *help;
    int (*run)(struct command const *cmd, options *o);
} command;

/* ---- output helpers ---- */

static void iso(int64_t ms, char out[32])
{
    if (ms <= 0) {
        snprintf(out, 32, "-");
        return;
    }
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    if (!strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "-");
}

static void print_json(json_object *obj)
{
    puts(json_object_to_json_string_ext(obj,
                                        JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(obj);
}

static void print_ok(const options *o)
{
    if (o->json) {
        json_object *r = json_object_new_object();
        json_object_object_add(r, "ok", json_object_new_boolean(1));
        print_json(r);
    }
}

static void print_id(const options *o, const char *id)
{
    if (o->json) {
        json_object *r = json_object_new_object();
        json_object_object_add(r, "id", json_object_new_string(id));
        print_json(r);
    } else {
        puts(id);
    }
}

/* ---- the handle, signals, errors ---- */

static ps_client *g_client;
static volatile sig_atomic_t g_signalled;

static void on_signal(int sig)
{
    g_signalled = sig;
    if (g_client)
        ps_client_stop(g_client);
}

static int exit_code(ps_client *c, ps_code rc)
{
    if (rc == PS_OK)
        return 0;
    if (g_signalled)
        return EXIT_INTERRUPTED;
    int st = c ? ps_client_last_http_status(c) : 0;
    if (st == 401 || st == 403 || rc == PS_ERR_UNAUTHORIZED || rc == PS_ERR_INVALID_TOKEN)
        return EXIT_AUTH;
    if (st == 400 || st == 413 || st == 415 || st == 507)
        return EXIT_REJECTED;
    switch (rc) {
    case PS_ERR_IO:
    case PS_ERR_RATE_LIMITED:
        return EXIT_UNREACHABLE;
    case PS_ERR_QUOTA:
    case PS_ERR_MALFORMED:
    case PS_ERR_UTF8:
    case PS_ERR_TOO_DEEP:
    case PS_ERR_INVALID:
    case PS_ERR_TOO_LARGE:
        return EXIT_REJECTED;
    default:
        return EXIT_USAGE;
    }
}

static int fail(ps_client *c, ps_code rc, const ps_error *err)
{
    int code = exit_code(c, rc);
    if (code == EXIT_INTERRUPTED)
        fprintf(stderr, "polysync: interrupted\n");
    else
        fprintf(stderr, "polysync: %s\n", err->message[0] ? err->message : ps_strerror(rc));
    return code;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("polysync: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'polysync --help'.\n", stderr);
    return EXIT_USAGE;
}

/* The default store: $XDG_DATA_HOME/polysync/chats.db, else
 * ~/.local/share/polysync/chats.db; folders made 0700. */
static char *default_store(void)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    char base[PATH_MAX];
    if (xdg && *xdg == '/')
        snprintf(base, sizeof base, "%s", xdg);
    else if (home && *home)
        snprintf(base, sizeof base, "%s/.local/share", home);
    else
        return NULL;
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/polysync", base);
    for (char *p = dir + 1; *p; p++) { /* mkdir -p */
        if (*p == '/') {
            *p = '\0';
            mkdir(dir, 0700);
            *p = '/';
        }
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return NULL;
    char *path = NULL;
    if (asprintf(&path, "%s/chats.db", dir) < 0)
        return NULL;
    return path;
}

static int open_client(const command *cmd, options *o, ps_client **out)
{
    *out = NULL;
    ps_error err;
    ps_error_clear(&err);
    char *dflt = NULL;
    const char *path = o->store;
    if (!path && !(path = dflt = default_store()))
        return usage_error("no store: pass --store PATH (HOME is not set)");
    ps_client *c = NULL;
    ps_code rc = ps_client_open(path, &c, &err);
    free(dflt);
    if (rc != PS_OK)
        return fail(NULL, rc, &err);
    if (cmd->needs_server) {
        const char *server = o->server ? o->server : getenv("POLYSYNC_SERVER");
        const char *token = o->token ? o->token : getenv("POLYSYNC_TOKEN");
        if (!server || !*server) {
            ps_client_close(c);
            return usage_error("no server: pass --server URL or set POLYSYNC_SERVER");
        }
        rc = ps_client_set_server(c, server, &err);
        if (rc == PS_OK && o->token_file)
            rc = ps_client_set_token_file(c, o->token_file, &err);
        else if (rc == PS_OK && token && *token)
            rc = ps_client_set_token(c, token, &err);
        if (rc == PS_OK && o->cacert)
            rc = ps_client_set_cacert(c, o->cacert, &err);
        if (rc != PS_OK) {
            int code = fail(c, rc, &err);
            ps_client_close(c);
            return code;
        }
        ps_client_allow_plain_http(c, o->plain_http);
        ps_retry_policy p;
        ps_retry_policy_default(&p);
        if (o->retries > 0)
            p.max_attempts = (unsigned)o->retries;
        if (o->retry_max > 0) {
            p.max_delay_ms = (unsigned)o->retry_max * 1000;
            if (p.base_delay_ms > p.max_delay_ms)
                p.base_delay_ms = p.max_delay_ms;
            p.max_retry_after_s = (unsigned)o->retry_max;
        }
        if (o->timeout > 0)
            p.timeout_s = (unsigned)o->timeout;
        ps_client_set_retry(c, &p);
    }
    *out = c;
    return 0;
}

/* ---- chat commands ---- */

static int run_chat_new(const command *cmd, options *o)
{
    ps_client *c;
    int code = open_client(cmd, o, &c);
    if (!c)
        return code;
    ps_error err;
    ps_error_clear(&err);
    char *id = NULL;
    ps_code rc = ps_client_chat_create(c, o->title, &id, &err);
    if (rc == PS_OK)
        print_id(o, id);
    else
        code = fail(c, rc, &err);
    ps_free(id);
    ps_client_close(c);
    return code;
}

static int simple(const command *cmd, options *o, int which)
{
    ps_client *c;
    int code = open_client(cmd, o, &c);
    if (!c)
        return code;
    ps_error err;
    ps_error_clear(&err);
    ps_code rc = PS_OK;
    const char **a = o->args;
    switch (which) {
    case 0:
        rc = ps_client_chat_rename(c, a[0], a[1], &err);
        break;
    case 1:
        rc = ps_client_chat_archive(c, a[0], true, &err);
        break;
    case 2:
        rc = ps_client_chat_archive(c, a[0], false, &err);
        break;
    case 3:
        rc = ps_client_chat_delete(c, a[0], &err);
        break;
    case 4:
        rc = ps_client_msg_edit(c, a[0], a[1], a[2], &err);
        break;
    case 5:
        rc = ps_client_msg_delete(c, a[0], a[1], &err);
        break;
    }
    if (rc == PS_OK)
        print_ok(o);
    else
        code = fail(c, rc, &err);
    ps_client_close(c);
    return code;
}

static int run_chat_rename(const command *cmd, options *o)
{
    return simple(cmd, o, 0);
}
static int run_chat_archive(const command *cmd, options *o)
{
    return simple(cmd, o, 1);
}
static int run_chat_unarchive(const command *cmd, options *o)
{
    return simple(cmd, o, 2);
}
static int run_chat_delete(const command *cmd, options *o)
{
    return simple(cmd, o, 3);
}
static int run_msg_edit(const command *cmd, options *o)
{
    return simple(cmd, o, 4);
}
static int run_msg_delete(const command *cmd, options *o)
{
    return simple(cmd, o, 5);
}

static void add_time(json_object *obj, const char *key, int64_t ms)
{
    char t[32];
    iso(ms, t);
    json_object_object_add(obj, key, ms > 0 ? json_object_new_string(t) : NULL);
}

static int run_chat_list(const command *cmd, options *o)
{
    ps_client *c;
    int code = open_client(cmd, o, &c);
    if (!c)
        return code;
    ps_error err;
    ps_error_clear(&err);
    ps_chat_info *list = NULL;
    size_t n = 0;
    ps_code rc = ps_client_chat_list(c, &list, &n, &err);
    if (rc != PS_OK) {
        code = fail(c, rc, &err);
    } else if (o->json) {
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < n; i++) {
            json_object *it = json_object_new_object();
            json_object_object_add(it, "id", json_object_new_string(list[i].id));
            json_object_object_add(it, "title",
                                   list[i].title ? json_object_new_string(list[i].title) : NULL);
            json_object_object_add(it, "isArchived", json_object_new_boolean(list[i].archived));
            json_object_object_add(it, "messageCount",
                                   json_object_new_int64((int64_t)list[i].message_count));
            add_time(it, "createdAt", list[i].created_ms);
            add_time(it, "updatedAt", list[i].updated_ms);
            json_object_array_add(arr, it);
        }
        print_json(arr);
    } else if (n == 0) {
        if (!o->quiet && isatty(STDOUT_FILENO))
            puts("no chats (create one with: polysync chat new --title T)");
    } else {
        printf("%-36s  %-20s  %5s  %s\n", "ID", "UPDATED", "MSGS", "TITLE");
        for (size_t i = 0; i < n; i++) {
            char t[32];
            iso(list[i].updated_ms, t);
            printf("%-36s  %-20s  %5zu  %s%s\n", list[i].id, t, list[i].message_count,
                   list[i].title ? list[i].title : "(untitled)",
                   list[i].archived ? "  [archived]" : "");
        }
    }
    ps_chat_info_free(list, n);
    ps_client_close(c);
    return code;
}

static int run_chat_show(const command *cmd, options *o)
{
    ps_client *c;
    int code = open_client(cmd, o, &c);
    if (!c)
        return code;
    ps_error err;
    ps_error_clear(&err);
    ps_code rc;
    if (o->json) {
        char *text = NULL;
        rc = ps_client_chat_json(c, o->args[0], &text, &err);
        json_object *obj = rc == PS_OK ? json_tokener_parse(text) : NULL;
        if (obj)
            print_json(obj);
        else if (rc == PS_OK)
            puts(text);
        ps_free(text);
    } else {
        ps_chat_detail *d = NULL;
        rc = ps_client_chat_get(c, o->args[0], &d, &err);
        if (rc == PS_OK) {
            char created[32], updated[32];
            iso(d->info.created_ms, created);
            iso(d->info.updated_ms, updated);
            printf("%s\n", d->info.title ? d->info.title : "(untitled)");
            printf("  id        %s\n  created   %s\n  updated   %s\n  archived  %s\n"
                   "  messages  %zu\n",
                   d->info.id, created, updated, d->info.archived ? "yes" : "no",
                   d->info.message_count);
            for (size_t i = 0; i < d->info.message_count; i++) {
                const ps_message_info *m = &d->messages[i];
                char t[32];
                iso(m->timestamp_ms, t);
                printf("\n[%s] %s  (%s)\n%s\n", t, m->role, m->id, m->content);
            }
        }
        ps_chat_detail_free(d);
    }
    if (rc != PS_OK)
        code = fail(c, rc, &err);
    ps_client_close(c);
    return code;
}

/* ---- msg add ---- */

static int run_msg_add(const command *cmd, options *o)
{
    if (strcmp(o->role, "user") != 0 && strcmp(o->role, "assistant") != 0 &&
        strcmp(o->role, "system") != 0)
        return usage_error("--role must be user or assistant, not '%s'", o->role);
    ps_client *c;
    int code = open_client(cmd, o, &c);
    if (!c)
        return code;
    ps_error err;
    ps_error_clear(&err);
    char *id = NULL;
    ps_code rc = ps_client_msg_add(c, o->args[0], o->role, o->content, &id, &err);
    if (rc == PS_OK)
        print_id(o, id);
    else
        code = fail(c, rc, &err);
    ps_free(id);
    ps_client_close(c);
    return code;
}

/* ---- sync and watch ---- */

typedef struct progress_line {
    bool enabled, shown;
} progress_line;

static void on_progress(const ps_sync_stats *s, void *ud)
{
    progress_line *p = ud;
    if (!p->enabled || s->elapsed_ms < 1000)
        return;
    p->shown = true;
    char pct[32] = "";
    if (s->changes_total)
        snprintf(pct, sizeof pct, " (%d%%)",
                 (int)(100.0 * (double)s->changes_sent / (double)s->changes_total));
    char up[48] = "";
    if (s->upload_total > 4096)
        snprintf(up, sizeof up, ", uploading %d%%",
                 (int)(100.0 * (double)s->upload_now / (double)s->upload_total));
    fprintf(stderr,
            "\r\033[Ksync: sent %zu/%zu changes%s (%zu chats, %zu messages), received %zu chats, "
            "%zu messages%s",
            s->changes_sent, s->changes_total, pct, s->chats_sent, s->messages_sent,
            s->chats_received, s->messages_received, up);
    fflush(stderr);
}

static json_object *stats_json(const ps_sync_stats *s)
{
    json_object *o = json_object_new_object();
    json_object *sent = json_object_new_object(), *recv = json_object_new_object();
    json_object_object_add(o, "protocol", json_object_new_string(s->protocol ? s->protocol : ""));
    json_object_object_add(sent, "changes", json_object_new_int64((int64_t)s->changes_sent));
    json_object_object_add(sent, "chats", json_object_new_int64((int64_t)s->chats_sent));
    json_object_object_add(sent, "messages", json_object_new_int64((int64_t)s->messages_sent));
    json_object_object_add(recv, "chats", json_object_new_int64((int64_t)s->chats_received));
    json_object_object_add(recv, "messages", json_object_new_int64((int64_t)s->messages_received));
    json_object_object_add(recv, "deletions",
                           json_object_new_int64((int64_t)s->deletions_received));
    json_object_object_add(o, "sent", sent);
    json_object_object_add(o, "received", recv);
    json_object_object_add(o, "requests", json_object_new_int64((int64_t)s->requests));
    json_object_object_add(o, "retries", json_object_new_int64((int64_t)s->retries));
    json_object_object_add(o, "pages", json_object_new_int64((int64_t)s->pages));
    json_object_object_add(o, "fullResync", json_object_new_boolean(s->full_resync));
    json_object_object_add(o, "bytesSent", json_object_new_int64((int64_t)s->bytes_sent));
    json_object_object_add(o, "bytesReceived", json_object_new_int64((int64_t)s->bytes_received));
    json_object_object_add(o, "elapsedMs", json_object_new_int64(s->elapsed_ms));
    return o;
}

/* "1 chat", "2 chats" */
static const char *count(char *buf, size_t n, const char *noun)
{
    snprintf(buf, 48, "%zu %s%s", n, noun, n == 1 ? "" : "s");
    return buf;
}

static void summary_line(FILE *f, const char *prefix, const ps_sync_stats *s)
{
    char a[48], b[48], c[48], d[48], e[48], g[48];
    fprintf(f, "%ssent %s (%s, %s), received %s, %s, %s%s [%s, %.1f s]\n", prefix,
            count(a, s->changes_sent, "change"), count(b, s->chats_sent, "chat"),
            count(c, s->messages_sent, "message"), count(d, s->chats_received, "chat"),
            count(e, s->messages_received, "message"), count(g, s->deletions_received, "deletion"),
            s->full_resync ? "; full resync" : "", s->protocol, (double)s->elapsed_ms / 1000.0);
}

static void install_signals(ps_client *c)
{
    g_client = c;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int run_sync(const command *cmd, options *o)
{
    ps_client *c;
    int code = open_client(cmd, o, &c);
    if (!c)
        return code;
    install_signals(c);
    progress_line p = {.enabled =
                           !o->quiet && !o->json && isatty(STDOUT_FILENO) && isatty(STDERR_FILENO)};
    ps_client_set_progress(c, on_progress, &p);
    ps_error err;
    ps_error_clear(&err);
    ps_sync_stats st;
    ps_code rc = ps_client_sync(c, &st, &err);
    if (p.shown)
        fputs("\r\033[K", stderr);
    if (rc != PS_OK) {
        code = fail(c, rc, &err);
    } else if (o->json) {
        print_json(stats_json(&st));
    } else if (!o->quiet && isatty(STDOUT_FILENO)) {
        summary_line(stdout, "synced: ", &st);
    }
    g_client = NULL;
    ps_client_close(c);
    return code;
}

static void on_watch(const ps_watch_event *ev, void *ud)
{
    const options *o = ud;
    if (o->json) {
        json_object *j = json_object_new_object();
        static const char *const kinds[] = {"synced", "sync_failed", "live_on", "live_off",
                                            "live_none"};
        json_object_object_add(j, "event", json_object_new_string(kinds[ev->kind]));
        if (ev->reason)
            json_object_object_add(j, "reason", json_object_new_string(ev->reason));
        if (ev->stats)
            json_object_object_add(j, "stats", stats_json(ev->stats));
        if (ev->kind == PS_WATCH_SYNC_FAILED && ev->err)
            json_object_object_add(j, "error", json_object_new_string(ev->err->message));
        puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
        fflush(stdout);
        json_object_put(j);
        return;
    }
    if (o->quiet && ev->kind != PS_WATCH_SYNC_FAILED)
        return;
    switch (ev->kind) {
    case PS_WATCH_SYNCED: {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "polysync: synced (%s): ", ev->reason);
        summary_line(stderr, prefix, ev->stats);
        break;
    }
    case PS_WATCH_SYNC_FAILED:
        fprintf(stderr, "polysync: sync (%s) failed: %s\n", ev->reason, ev->err->message);
        break;
    case PS_WATCH_LIVE_ON:
        fprintf(stderr, "polysync: live channel connected\n");
        break;
    case PS_WATCH_LIVE_OFF:
        fprintf(stderr, "polysync: live channel lost; reconnecting\n");
        break;
    case PS_WATCH_LIVE_NONE:
        fprintf(stderr, "polysync: the server has no live channel; syncing every interval\n");
        break;
    }
}

static int run_watch(const command *cmd, options *o)
{
    ps_client *c;
    int code = open_client(cmd, o, &c);
    if (!c)
        return code;
    install_signals(c);
    ps_error err;
    ps_error_clear(&err);
    ps_code rc =
        ps_client_watch(c, (unsigned)(o->interval > 0 ? o->interval : 60), on_watch, o, &err);
    if (rc != PS_OK)
        code = fail(c, rc, &err);
    else if (!o->quiet && !o->json)
        fprintf(stderr, "polysync: stopped\n");
    g_client = NULL;
    ps_client_close(c);
    return code;
}

/* ---- import / export / status ---- */

static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *grown = cap < ((size_t)1 << 31) ? realloc(buf, cap * 2) : NULL;
            if (!grown) {
                free(buf);
                buf = NULL;
                errno = EFBIG;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    if (f != stdin)
        fclose(f);
    *len = n;
    return buf;
}

static int run_import(const command *cmd, options *o)
{
    size_t len = 0;
    char *data = read_all(o->args[0], &len);
    if (!data) {
        fprintf(stderr, "polysync: cannot read %s: %s\n", o->args[0], strerror(errno));
        return EXIT_USAGE;
    }
    ps_client *c;
    int code = open_client(cmd, o, &c);
    if (!c) {
        free(data);
        return code;
    }
    ps_error err;
    ps_error_clear(&err);
    ps_import_report *r = NULL;
    ps_code rc = ps_client_import(c, data, len, &r, &err);
    free(data);
    if (rc != PS_OK) {
        code = fail(c, rc, &err);
        if (code == EXIT_USAGE && (rc == PS_ERR_INVALID || rc == PS_ERR_MALFORMED))
            code = EXIT_REJECTED;
    } else if (o->json) {
        json_object *j = json_object_new_object();
        json_object *sk = json_object_new_array();
        for (size_t i = 0; i < r->reason_count; i++)
            json_object_array_add(sk, json_object_new_string(r->reasons[i]));
        json_object_object_add(j, "imported", json_object_new_int64((int64_t)r->chats_imported));
        json_object_object_add(j, "messages", json_object_new_int64((int64_t)r->messages_imported));
        json_object_object_add(j, "privateDropped",
                               json_object_new_int64((int64_t)r->private_dropped));
        json_object_object_add(j, "skippedCount", json_object_new_int64((int64_t)r->skipped_count));
        json_object_object_add(j, "skipped", sk);
        print_json(j);
    } else {
        char a[48], b[48];
        printf("imported %s (%s)", count(a, r->chats_imported, "chat"),
               count(b, r->messages_imported, "message"));
        if (r->private_dropped)
            printf("; left out %zu private messages (never stored nor synced)", r->private_dropped);
        if (r->skipped_count) {
            printf("; skipped %zu:\n", r->skipped_count);
            for (size_t i = 0; i < r->reason_count; i++)
                printf("  %s\n", r->reasons[i]);
        } else {
            putchar('\n');
        }
    }
    ps_import_report_free(r);
    ps_client_close(c);
    return code;
}

static int write_file_atomically(const char *path, const char *data, size_t len)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = fd < 0 ? -1 : 0;
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = -1;
        else
            off += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -1;
    if (fd >= 0 && close(fd) != 0)
        rc = -1;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1;
    if (rc != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
    }
    free(tmp);
    return rc;
}

static int run_export(const command *cmd, options *o)
{
    ps_client *c;
    int code = open_client(cmd, o, &c);
    if (!c)
        return code;
    ps_error err;
    ps_error_clear(&err);
    char *json = NULL;
    size_t len = 0;
    ps_code rc = ps_client_export(c, &json, &len, &err);
    if (rc != PS_OK) {
        code = fail(c, rc, &err);
    } else if (o->output && strcmp(o->output, "-") != 0) {
        if (write_file_atomically(o->output, json, len) != 0) {
            fprintf(stderr, "polysync: cannot write %s: %s\n", o->output, strerror(errno));
            code = EXIT_USAGE;
        }
    } else if (fwrite(json, 1, len, stdout) != len || fflush(stdout) != 0) {
        fprintf(stderr, "polysync: cannot write the export: %s\n", strerror(errno));
        code = EXIT_USAGE;
    }
    ps_free(json);
    ps_client_close(c);
    return code;
}

static int run_status(const command *cmd, options *o)
{
    ps_client *c;
    int code = open_client(cmd, o, &c);
    if (!c)
        return code;
    ps_error err;
    ps_error_clear(&err);
    size_t pending = 0, nchats = 0;
    ps_chat_info *list = NULL;
    ps_code rc = ps_client_pending(c, &pending, &err);
    if (rc == PS_OK)
        rc = ps_client_chat_list(c, &list, &nchats, &err);
    ps_chat_info_free(list, nchats);
    const char *server = o->server ? o->server : getenv("POLYSYNC_SERVER");
    if (rc != PS_OK) {
        code = fail(c, rc, &err);
    } else if (o->json) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "deviceId", json_object_new_string(ps_client_device_id(c)));
        json_object_object_add(j, "server", server ? json_object_new_string(server) : NULL);
        json_object_object_add(j, "chats", json_object_new_int64((int64_t)nchats));
        json_object_object_add(j, "pendingChanges", json_object_new_int64((int64_t)pending));
        json_object_object_add(j, "version", json_object_new_string(ps_client_version()));
        print_json(j);
    } else {
        printf("device   %s\nserver   %s\nchats    %zu\npending  %zu changes not yet sent\n",
               ps_client_device_id(c), server ? server : "(none)", nchats, pending);
    }
    ps_client_close(c);
    return code;
}

/* ---- the command table ---- */

static const command COMMANDS[] = {
    {"chat", "new", 0, 0, BIT(O_TITLE), false,
     "Usage: polysync chat new --title TITLE [--json]\n"
     "Creates a chat and prints its id ({\"id\": ...} with --json).\n",
     run_chat_new},
    {"chat", "rename", 2, 2, 0, false,
     "Usage: polysync chat rename ID TITLE\nSets the title of chat ID.\n", run_chat_rename},
    {"chat", "archive", 1, 1, 0, false,
     "Usage: polysync chat archive ID\nArchives chat ID (it stays listed, marked archived).\n",
     run_chat_archive},
    {"chat", "unarchive", 1, 1, 0, false,
     "Usage: polysync chat unarchive ID\nUndoes chat archive.\n", run_chat_unarchive},
    {"chat", "delete", 1, 1, 0, false,
     "Usage: polysync chat delete ID\n"
     "Deletes chat ID here and, after a sync, on every device.\n",
     run_chat_delete},
    {"chat", "list", 0, 0, 0, false,
     "Usage: polysync chat list [--json]\n"
     "Lists the chats, most recently updated first: id, update time, number of\n"
     "messages, title. --json: an array of {id, title, isArchived, messageCount,\n"
     "createdAt, updatedAt}.\n",
     run_chat_list},
    {"chat", "show", 1, 1, 0, false,
     "Usage: polysync chat show ID [--json]\n"
     "Shows chat ID and its messages in order. --json: the chat as the Polyglot\n"
     "app stores it.\n",
     run_chat_show},
    {"msg", "add", 1, 1, BIT(O_ROLE) | BIT(O_CONTENT), false,
     "Usage: polysync msg add CHAT --role user|assistant --content TEXT [--json]\n"
     "Adds a message to chat CHAT and prints its id.\n",
     run_msg_add},
    {"msg", "edit", 3, 3, 0, false,
     "Usage: polysync msg edit CHAT MSG TEXT\nReplaces the text of message MSG in chat CHAT.\n",
     run_msg_edit},
    {"msg", "delete", 2, 2, 0, false,
     "Usage: polysync msg delete CHAT MSG\n"
     "Deletes message MSG of chat CHAT here and, after a sync, on every device.\n",
     run_msg_delete},
    {NULL, "sync", 0, 0, 0, true,
     "Usage: polysync sync [--server URL] [--token T | --token-file PATH] [--json]\n"
     "Sends the changes made here since the last sync and receives the others'.\n"
     "Shows progress on a terminal when it takes over a second. Retries an\n"
     "unreachable or overloaded server (--retries, --retry-max-delay); a sync\n"
     "cut short is safe to run again. --json: what moved, as an object.\n",
     run_sync},
    {NULL, "watch", 0, 0, BIT(O_INTERVAL), true,
     "Usage: polysync watch [--interval SECONDS] [--server URL] [--json]\n"
     "Syncs now, then whenever the server says something changed (its live\n"
     "channel), within a second of a change made here, and every SECONDS\n"
     "(default 60) in any case. Logs each sync on stderr (--json: one JSON\n"
     "object per line on stdout). Stops cleanly on Ctrl-C or SIGTERM.\n",
     run_watch},
    {NULL, "import", 1, 1, 0, false,
     "Usage: polysync import FILE [--json]\n"
     "Reads chats from FILE (- for stdin): a Polyglot export (a JSON array of\n"
     "chats) or a chatStore.json ({\"chats\": {...}} or {\"chats\": [...]}).\n"
     "Every chat is checked as the server would; those that fail are skipped\n"
     "and listed with the reason. Imported content never overrides edits made\n"
     "since on any device. Private messages are left out.\n",
     run_import},
    {NULL, "export", 0, 0, BIT(O_OUTPUT), false,
     "Usage: polysync export [--output FILE]\n"
     "Writes every chat as a JSON array the Polyglot app can load, to FILE\n"
     "(written atomically, mode 0600) or stdout.\n",
     run_export},
    {NULL, "status", 0, 0, 0, false,
     "Usage: polysync status [--json]\n"
     "Shows this store's device id, the server, the number of chats and of\n"
     "changes not yet sent.\n",
     run_status},
};
#define NCOMMANDS (sizeof COMMANDS / sizeof *COMMANDS)

static const char *const OPT_NAMES[] = {"--title", "--role", "--content", "--interval", "--output"};

static void group_help(const char *group)
{
    printf("Usage: polysync %s COMMAND ...\n\nCommands:\n", group);
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (COMMANDS[i].group && strcmp(COMMANDS[i].group, group) == 0) {
            const char *line = COMMANDS[i].help + strlen("Usage: polysync ");
            printf("  %.*s\n", (int)strcspn(line, "\n"), line);
        }
    printf("\n`polysync %s COMMAND --help` for one of them.\n", group);
}

static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    options o;
    memset(&o, 0, sizeof o);
    signal(SIGPIPE, SIG_IGN);
    opterr = 0;
    int ch;
    /* "-": positionals come back as 1, in place, so options may go anywhere. */
    while ((ch = getopt_long(argc, argv, "-h", LONG_OPTS, NULL)) != -1) {
        switch (ch) {
        case 1:
            if (o.nargs == (int)(sizeof o.args / sizeof *o.args))
                return usage_error("too many arguments");
            o.args[o.nargs++] = optarg;
            break;
        case O_STORE:
            o.store = optarg;
            break;
        case O_SERVER:
            o.server = optarg;
            break;
        case O_TOKEN:
            o.token = optarg;
            break;
        case O_TOKEN_FILE:
            o.token_file = optarg;
            break;
        case O_CACERT:
            o.cacert = optarg;
            break;
        case O_PLAIN_HTTP:
            o.plain_http = true;
            break;
        case O_RETRIES:
            if (!parse_long(optarg, 1, 100, &o.retries))
                return usage_error("--retries must be a number from 1 to 100");
            break;
        case O_RETRY_MAX:
            if (!parse_long(optarg, 1, 3600, &o.retry_max))
                return usage_error("--retry-max-delay must be seconds from 1 to 3600");
            break;
        case O_TIMEOUT:
            if (!parse_long(optarg, 1, 3600, &o.timeout))
                return usage_error("--timeout must be seconds from 1 to 3600");
            break;
        case O_JSON:
            o.json = true;
            break;
        case O_QUIET:
            o.quiet = true;
            break;
        case 'h':
        case O_HELP:
            o.help = true;
            break;
        case O_VERSION:
            o.version = true;
            break;
        case O_TITLE:
            o.title = optarg;
            o.given |= BIT(O_TITLE);
            break;
        case O_ROLE:
            o.role = optarg;
            o.given |= BIT(O_ROLE);
            break;
        case O_CONTENT:
            o.content = optarg;
            o.given |= BIT(O_CONTENT);
            break;
        case O_INTERVAL:
            if (!parse_long(optarg, 1, 86400, &o.interval))
                return usage_error("--interval must be seconds from 1 to 86400");
            o.given |= BIT(O_INTERVAL);
            break;
        case O_OUTPUT:
            o.output = optarg;
            o.given |= BIT(O_OUTPUT);
            break;
        default:
            return usage_error("unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    /* after "--" getopt stops: the rest are arguments too */
    for (; optind < argc; optind++) {
        if (o.nargs == (int)(sizeof o.args / sizeof *o.args))
            return usage_error("too many arguments");
        o.args[o.nargs++] = argv[optind];
    }
    if (o.version) {
        printf("polysync %s\n", ps_client_version());
        return 0;
    }
    if (o.nargs == 0) {
        if (o.help) {
            fputs(GLOBAL_HELP, stdout);
            return 0;
        }
        fputs(GLOBAL_HELP, stderr);
        return EXIT_USAGE;
    }
    const char *group = NULL, *name = o.args[0];
    int skip = 1;
    if (strcmp(name, "chat") == 0 || strcmp(name, "msg") == 0) {
        group = name;
        if (o.nargs < 2) {
            if (o.help) {
                group_help(group);
                return 0;
            }
            return usage_error("'%s' needs a command: polysync %s --help", group, group);
        }
        name = o.args[1];
        skip = 2;
    }
    const command *cmd = NULL;
    for (size_t i = 0; i < NCOMMANDS && !cmd; i++)
        if (strcmp(COMMANDS[i].name, name) == 0 &&
            ((!group && !COMMANDS[i].group) ||
             (group && COMMANDS[i].group && strcmp(group, COMMANDS[i].group) == 0)))
            cmd = &COMMANDS[i];
    if (!cmd) {
        if (group)
            return usage_error("unknown command '%s %s'", group, name);
        return usage_error("unknown command '%s'", name);
    }
    if (o.help) {
        fputs(cmd->help, stdout);
        return 0;
    }
    memmove(o.args, o.args + skip, sizeof o.args - (size_t)skip * sizeof *o.args);
    o.nargs -= skip;
    if (o.nargs < cmd->min_args || o.nargs > cmd->max_args) {
        fputs(cmd->help, stderr);
        return EXIT_USAGE;
    }
    unsigned misplaced = o.given & ~cmd->allowed;
    for (int k = 0; misplaced; k++, misplaced >>= 1)
        if (misplaced & 1)
            return usage_error("%s does not apply to '%s%s%s'", OPT_NAMES[k],
                               cmd->group ? cmd->group : "", cmd->group ? " " : "", cmd->name);
    if ((cmd->allowed & BIT(O_TITLE)) && !o.title)
        return usage_error("chat new needs --title TITLE");
    if ((cmd->allowed & BIT(O_ROLE)) && (!o.role || !o.content))
        return usage_error("msg add needs --role user|assistant and --content TEXT");
    return cmd->run(cmd, &o);
}
