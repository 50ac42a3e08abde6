/*
 * polysync: the command-line client. It parses flags, finds the command in
 * one table, opens the store as the command needs (with the server settings
 * from flags, the environment or `polysync login`), runs it and prints; it
 * calls only the public libpolysync API (include/polysync/client.h) and
 * knows nothing of the store or the protocol.
 *
 * Exit codes (docs/client.md): 0 ok, 1 usage or local error, 2 server
 * unreachable after retries, 3 credentials refused (401/403), 4 rejected as
 * invalid (by the server, or by the same checks before sending), 130
 * interrupted. Under --json an error is one JSON object on stderr.
 */
#include "cli/cli_term.h"
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
    EXIT_USAGE = 1, /* also every local error */
    EXIT_UNREACHABLE = 2,
    EXIT_AUTH = 3,
    EXIT_REJECTED = 4,
    EXIT_INTERRUPTED = 130
};

/* Quiet work stays silent: progress appears only after this long. */
#define PROGRESS_DELAY_MS 1000

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
    /* command-specific, one bit each in options.given */
    O_TITLE,
    O_ROLE,
    O_CONTENT,
    O_INTERVAL,
    O_OUTPUT,
    O_TOKEN_STDIN,
};

typedef struct options {
    const char *store, *server, *token, *token_file, *cacert;
    bool plain_http, json, quiet, verbose, help, version, token_stdin;
    long retries, retry_max, timeout, interval;
    const char *title, *role, *content, *output;
    unsigned given; /* bit per command-specific option, to refuse misplaced ones */
    const char *args[8];
    int nargs;
} options;

#define BIT(o) (1u << ((o)-O_TITLE))
static const char *const OPT_NAMES[] = {"--title",    "--role",   "--content",
                                        "--interval", "--output", "--token-stdin"};

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
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, O_HELP},
    {"version", no_argument, NULL, O_VERSION},
    {"title", required_argument, NULL, O_TITLE},
    {"role", required_argument, NULL, O_ROLE},
    {"content", required_argument, NULL, O_CONTENT},
    {"interval", required_argument, NULL, O_INTERVAL},
    {"output", required_argument, NULL, O_OUTPUT},
    {"token-stdin", no_argument, NULL, O_TOKEN_STDIN},
    {NULL, 0, NULL, 0},
};

/* ---- help ---- */

static const char GLOBAL_HELP[] =
    "Usage: polysync [OPTIONS] COMMAND [ARGS]\n"
    "Keeps chats in a local store and syncs them with a polysyncd server.\n"
    "\n"
    "Start with: polysync login --server URL [--token-file F | --token-stdin]\n"
    "\n"
    "Commands:\n"
    "  login --server URL        remember the server (and token) in the store\n"
    "  logout                    forget them\n"
    "  status                    server, device id, cursor, changes waiting, last sync\n"
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
    "  help [COMMAND]            this text, or one command's\n"
    "\n"
    "Options for every command:\n"
    "  --store PATH              the local store (default\n"
    "                            $XDG_DATA_HOME/polysync/chats.db, else\n"
    "                            ~/.local/share/polysync/chats.db)\n"
    "  --server URL              the server (env POLYSYNC_SERVER, else the saved one)\n"
    "  --token T                 bearer token (env POLYSYNC_TOKEN)\n"
    "  --token-file PATH         read the token from PATH (must be mode 0600)\n"
    "  --cacert FILE             verify the server with this CA bundle (PEM)\n"
    "  --allow-plain-http        allow sending a token over http:// to another host\n"
    "  --retries N               attempts per request, 1 = no retry (default 6)\n"
    "  --retry-max-delay S       longest wait between attempts (default 30)\n"
    "  --timeout S               connection and stall timeout (default 30)\n"
    "  --json                    output for scripts; errors as JSON on stderr\n"
    "  --quiet                   no progress or summary\n"
    "  -v, --verbose             watch: log every sync, also those that moved nothing\n"
    "  --help                    help; `polysync help COMMAND` for one command\n"
    "  --version                 the version\n"
    "\n"
    "Exit codes: 0 ok, 1 usage or local error, 2 server unreachable after\n"
    "retries, 3 credentials refused (401/403), 4 rejected as invalid\n"
    "(400/413/415/507, or the same checks before sending), 130 interrupted.\n"
    "Docs: docs/client.md\n";

/* What a command needs opened before it runs. */
typedef enum needs { NEEDS_NOTHING, NEEDS_STORE, NEEDS_SERVER } needs;

typedef struct command {
    const char *group, *name; /* "chat","new"; or NULL,"sync" */
    int min_args, max_args;
    unsigned allowed; /* command-specific options */
    needs needs;
    const char *help;
    int (*run)(ps_client *c, options *o); /* c is NULL for NEEDS_NOTHING */
} command;

/* ---- errors: text, or one JSON object on stderr under --json ---- */

static bool g_json_errors;

/* A short, stable name for scripts. */
static const char *code_name(ps_code rc)
{
    static const char *const names[] = {
        "ok",       "nomem",     "malformed",    "invalid_utf8",  "too_deep",
        "invalid",  "too_large", "not_found",    "store",         "io",
        "config",   "schema",    "busy",         "bad_cursor",    "cursor_expired",
        "bad_gzip", "encoding",  "unauthorized", "invalid_token", "rate_limited",
        "quota",
    };
    return (unsigned)rc < sizeof names / sizeof *names ? names[rc] : "error";
}

static int report_error(int exit_code, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int report_error(int exit_code, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_json_errors) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "error", json_object_new_string(msg));
        json_object_object_add(j, "code", json_object_new_string(code));
        json_object_object_add(j, "exit", json_object_new_int(exit_code));
        fprintf(stderr, "%s\n",
                json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(j);
    } else {
        fprintf(stderr, "polysync: %s\n", msg);
    }
    return exit_code;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report_error(EXIT_USAGE, "usage", "%s", msg);
    if (!g_json_errors)
        fputs("Try 'polysync help'.\n", stderr);
    return EXIT_USAGE;
}

/* ---- the handle, signals, exit codes ---- */

static ps_client *g_client;
static volatile sig_atomic_t g_signalled;

static void on_signal(int sig)
{
    g_signalled = sig;
    if (g_client)
        ps_client_stop(g_client);
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

/* Where a failure came from decides what its code means: PS_ERR_IO is an
 * unreachable server in a sync, a file in a local command. */
typedef enum context { LOCAL, NETWORK } context;

static int exit_code(ps_client *c, ps_code rc, context ctx)
{
    if (rc == PS_OK)
        return 0;
    if (g_signalled)
        return EXIT_INTERRUPTED;
    switch (rc) {
    case PS_ERR_MALFORMED:
    case PS_ERR_UTF8:
    case PS_ERR_TOO_DEEP:
    case PS_ERR_INVALID:
    case PS_ERR_TOO_LARGE:
    case PS_ERR_ENCODING:
    case PS_ERR_BAD_GZIP:
    case PS_ERR_QUOTA:
        return EXIT_REJECTED; /* the server's refusal, or the same check made here */
    default:
        break;
    }
    if (ctx == LOCAL)
        return EXIT_USAGE;
    int st = c ? ps_client_last_http_status(c) : 0;
    if (st == 401 || st == 403 || rc == PS_ERR_UNAUTHORIZED || rc == PS_ERR_INVALID_TOKEN)
        return EXIT_AUTH;
    if (st == 400 || st == 413 || st == 415 || st == 507)
        return EXIT_REJECTED;
    if (rc == PS_ERR_IO || rc == PS_ERR_RATE_LIMITED)
        return EXIT_UNREACHABLE;
    return EXIT_USAGE;
}

static int fail(ps_client *c, ps_code rc, const ps_error *err, context ctx)
{
    int code = exit_code(c, rc, ctx);
    if (code == EXIT_INTERRUPTED)
        return report_error(code, "interrupted", "interrupted");
    return report_error(code,
                        code == EXIT_UNREACHABLE && rc == PS_ERR_IO ? "unreachable" : code_name(rc),
                        "%s", err->message[0] ? err->message : ps_strerror(rc));
}

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

/* Progress and retry lines go to a person, never into a pipe or a script. */
static bool on_terminal(const options *o)
{
    return !o->quiet && !o->json && isatty(STDERR_FILENO);
}

/* ---- the store and the server settings ---- */

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

/* The settings a sync uses and where each came from. Flags win, then the
 * environment, then what `login` saved. The saved token and CA go only to
 * the saved server: a --server given for once must not receive them. */
typedef struct settings {
    char *server, *token, *token_file, *cacert; /* owned */
    const char *server_from, *token_from;       /* static */
} settings;

static void settings_free(settings *s)
{
    free(s->server);
    free(s->token);
    free(s->token_file);
    free(s->cacert);
    memset(s, 0, sizeof *s);
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

static ps_code resolve_settings(ps_client *c, const options *o, settings *s, ps_error *err)
{
    memset(s, 0, sizeof *s);
    char *saved_server = NULL, *saved_token = NULL, *saved_file = NULL, *saved_ca = NULL;
    ps_code rc = ps_client_setting_get(c, "server", &saved_server, err);
    if (rc == PS_OK)
        rc = ps_client_setting_get(c, "token", &saved_token, err);
    if (rc == PS_OK)
        rc = ps_client_setting_get(c, "token_file", &saved_file, err);
    if (rc == PS_OK)
        rc = ps_client_setting_get(c, "cacert", &saved_ca, err);
    const char *env_server = getenv("POLYSYNC_SERVER");
    const char *env_token = getenv("POLYSYNC_TOKEN");
    if (o->server) {
        s->server = strdup(o->server);
        s->server_from = "--server";
    } else if (env_server && *env_server) {
        s->server = strdup(env_server);
        s->server_from = "POLYSYNC_SERVER";
    } else if (saved_server) {
        s->server = strdup(saved_server);
        s->server_from = "saved by login";
    }
    bool saved_applies = saved_server && s->server && strcmp(saved_server, s->server) == 0;
    if (o->token_file) {
        s->token_file = strdup(o->token_file);
        s->token_from = "--token-file";
    } else if (o->token) {
        s->token = strdup(o->token);
        s->token_from = "--token";
    } else if (env_token && *env_token) {
        s->token = strdup(env_token);
        s->token_from = "POLYSYNC_TOKEN";
    } else if (saved_applies && saved_file) {
        s->token_file = dup_or_null(saved_file);
        s->token_from = "saved by login (file)";
    } else if (saved_applies && saved_token) {
        s->token = dup_or_null(saved_token);
        s->token_from = "saved by login";
    }
    s->cacert = o->cacert ? strdup(o->cacert) : saved_applies ? dup_or_null(saved_ca) : NULL;
    ps_free(saved_server);
    ps_free(saved_token);
    ps_free(saved_file);
    ps_free(saved_ca);
    return rc;
}

/* Applies the settings to the handle for a command that talks to the server. */
static int configure_server(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    settings s;
    ps_code rc = resolve_settings(c, o, &s, &err);
    if (rc != PS_OK) {
        settings_free(&s);
        return fail(c, rc, &err, LOCAL);
    }
    if (!s.server) {
        settings_free(&s);
        return usage_error("no server: run `polysync login --server URL` once, or pass "
                           "--server URL, or set POLYSYNC_SERVER");
    }
    /* the token first: setting the server checks where a token may go */
    if (s.token_file)
        rc = ps_client_set_token_file(c, s.token_file, &err);
    else if (s.token)
        rc = ps_client_set_token(c, s.token, &err);
    if (rc == PS_OK)
        rc = ps_client_set_server(c, s.server, &err);
    if (rc == PS_OK && s.cacert)
        rc = ps_client_set_cacert(c, s.cacert, &err);
    settings_free(&s);
    if (rc != PS_OK)
        return fail(c, rc, &err, LOCAL);
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
    return 0;
}

static int open_store(options *o, ps_client **out)
{
    *out = NULL;
    ps_error err;
    ps_error_clear(&err);
    char *dflt = NULL;
    const char *path = o->store;
    if (!path && !(path = dflt = default_store()))
        return usage_error("no store: pass --store PATH (HOME is not set)");
    ps_code rc = ps_client_open(path, out, &err);
    free(dflt);
    return rc == PS_OK ? 0 : fail(NULL, rc, &err, LOCAL);
}

/* ---- chat and message commands ---- */

static int run_chat_new(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    char *id = NULL;
    ps_code rc = ps_client_chat_create(c, o->title, &id, &err);
    if (rc == PS_OK)
        print_id(o, id);
    ps_free(id);
    return rc == PS_OK ? 0 : fail(c, rc, &err, LOCAL);
}

static int finish_change(ps_client *c, const options *o, ps_code rc, const ps_error *err)
{
    if (rc == PS_OK)
        print_ok(o);
    return rc == PS_OK ? 0 : fail(c, rc, err, LOCAL);
}

#define CHANGE_COMMAND(name, call)                                                                 \
    static int name(ps_client *c, options *o)                                                      \
    {                                                                                              \
        ps_error err;                                                                              \
        ps_error_clear(&err);                                                                      \
        const char **a = o->args;                                                                  \
        (void)a;                                                                                   \
        return finish_change(c, o, call, &err);                                                    \
    }

CHANGE_COMMAND(run_chat_rename, ps_client_chat_rename(c, a[0], a[1], &err))
CHANGE_COMMAND(run_chat_archive, ps_client_chat_archive(c, a[0], true, &err))
CHANGE_COMMAND(run_chat_unarchive, ps_client_chat_archive(c, a[0], false, &err))
CHANGE_COMMAND(run_chat_delete, ps_client_chat_delete(c, a[0], &err))
CHANGE_COMMAND(run_msg_edit, ps_client_msg_edit(c, a[0], a[1], a[2], &err))
CHANGE_COMMAND(run_msg_delete, ps_client_msg_delete(c, a[0], a[1], &err))

static void add_time(json_object *obj, const char *key, int64_t ms)
{
    char t[32];
    iso(ms, t);
    json_object_object_add(obj, key, ms > 0 ? json_object_new_string(t) : NULL);
}

static int run_chat_list(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    ps_chat_info *list = NULL;
    size_t n = 0;
    ps_code rc = ps_client_chat_list(c, &list, &n, &err);
    if (rc != PS_OK)
        return fail(c, rc, &err, LOCAL);
    if (o->json) {
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
    return 0;
}

static int run_chat_show(ps_client *c, options *o)
{
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
    return rc == PS_OK ? 0 : fail(c, rc, &err, LOCAL);
}

static int run_msg_add(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    char *id = NULL;
    ps_code rc = ps_client_msg_add(c, o->args[0], o->role, o->content, &id, &err);
    if (rc == PS_OK)
        print_id(o, id);
    ps_free(id);
    return rc == PS_OK ? 0 : fail(c, rc, &err, LOCAL);
}

/* ---- sync: retries, progress, summary ---- */

typedef struct sync_view {
    term_line line;
    const char *prefix;        /* "sync" */
    bool timestamps;           /* watch: retry lines carry the time */
    int64_t waiting_from_ms;   /* the request's time when all was sent, or -1 */
} sync_view;

static void local_time(char out[32])
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    if (!strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(out, 32, "-");
}

static void on_retry(const ps_retry_info *info, void *ud)
{
    sync_view *v = ud;
    char wait[32], when[32] = "";
    if (v->timestamps) {
        local_time(when);
        strcat(when, " ");
    }
    term_say(&v->line, "%s%s: retrying in %s (attempt %u/%u): %s", when, v->prefix,
             term_duration(wait, info->delay_ms / 1000.0), info->attempt + 1, info->max_attempts,
             info->reason);
}

/* "sent 1,000/2,400 changes, received 3 chats, 40 messages" */
static void counts_text(char *out, size_t size, const ps_sync_stats *s)
{
    char a[48], b[48], d[48];
    int n = 0;
    if (s->changes_total)
        n = snprintf(out, size, "sent %zu/%s", s->changes_sent,
                     term_count(a, s->changes_total, "change"));
    if (s->chats_received || s->messages_received || s->deletions_received)
        n += snprintf(out + n, size - (size_t)n, "%sreceived %s, %s", n ? ", " : "",
                      term_count(b, s->chats_received, "chat"),
                      term_count(d, s->messages_received, "message"));
    if (s->deletions_received)
        snprintf(out + n, size - (size_t)n, ", %s",
                 term_count(a, s->deletions_received, "deletion"));
}

/* After each request (the transfer callback covers the requests
 * themselves): the counts so far, while the answer is applied here. */
static void on_sync_progress(const ps_sync_stats *s, void *ud)
{
    sync_view *v = ud;
    char counts[256] = "";
    counts_text(counts, sizeof counts, s);
    term_draw(&v->line, true, "%s: %s", v->prefix, counts[0] ? counts : "working…");
}

/* One request moving: bytes, rate and time left while sending; the
 * server's work; bytes while receiving. Drawn unthrottled: the library
 * calls it at most 10 times a second. */
static void on_transfer(const ps_transfer_info *t, void *ud)
{
    sync_view *v = ud;
    char counts[256] = "", a[32], b[32], r[32], left[32], took[32];
    counts_text(counts, sizeof counts, t->stats);
    const char *sep = counts[0] ? " · " : "";
    double secs = t->elapsed_ms > 0 ? (double)t->elapsed_ms / 1000.0 : 0.001;
    if (t->phase != PS_TRANSFER_WAITING)
        v->waiting_from_ms = -1;
    else if (v->waiting_from_ms < 0)
        v->waiting_from_ms = t->elapsed_ms;
    switch (t->phase) {
    case PS_TRANSFER_SENDING: {
        double rate = (double)t->sent / secs;
        int pct = t->send_total ? (int)(100.0 * (double)t->sent / (double)t->send_total) : 0;
        if (rate >= 1 && t->send_total > t->sent)
            term_duration(left, (double)(t->send_total - t->sent) / rate);
        else
            snprintf(left, sizeof left, "?");
        term_draw(&v->line, true, "%s: sending %s of %s (%d%%), %s/s, %s left%s%s", v->prefix,
                  term_bytes(a, t->sent), term_bytes(b, t->send_total), pct,
                  term_bytes(r, (uint64_t)rate), left, sep, counts);
        break;
    }
    case PS_TRANSFER_WAITING:
        term_draw(&v->line, true, "%s: merging… (sent %s, server working for %s)%s%s", v->prefix,
                  term_bytes(a, t->sent),
                  term_duration(took, (double)((t->elapsed_ms - v->waiting_from_ms) / 1000)), sep,
                  counts);
        break;
    case PS_TRANSFER_RECEIVING:
        if (t->receive_total)
            term_draw(&v->line, true, "%s: receiving %s of %s (%d%%)%s%s", v->prefix,
                      term_bytes(a, t->received), term_bytes(b, t->receive_total),
                      (int)(100.0 * (double)t->received / (double)t->receive_total), sep, counts);
        else
            term_draw(&v->line, true, "%s: receiving %s%s%s", v->prefix, term_bytes(a, t->received),
                      sep, counts);
        break;
    }
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

static bool moved(const ps_sync_stats *s)
{
    return s->changes_sent || s->chats_received || s->messages_received || s->deletions_received ||
           s->full_resync;
}

/* "sent 3 changes (2 chats, 1 message); received 1 chat, 2 messages, 1
 * deletion [v2, 0.4 s]", or "nothing new [v2, 0.1 s]". */
static void summary_text(char *out, size_t size, const ps_sync_stats *s)
{
    char a[48], b[48], c[48], d[48], e[48], g[48], t[32];
    int n = 0;
    if (s->changes_sent)
        n += snprintf(
            out + n, size - (size_t)n, "sent %s (%s, %s)", term_count(a, s->changes_sent, "change"),
            term_count(b, s->chats_sent, "chat"), term_count(c, s->messages_sent, "message"));
    if (s->chats_received || s->messages_received || s->deletions_received) {
        n += snprintf(out + n, size - (size_t)n, "%sreceived %s, %s", n ? "; " : "",
                      term_count(d, s->chats_received, "chat"),
                      term_count(e, s->messages_received, "message"));
        if (s->deletions_received)
            n += snprintf(out + n, size - (size_t)n, ", %s",
                          term_count(g, s->deletions_received, "deletion"));
    }
    if (!n)
        n += snprintf(out + n, size - (size_t)n, "nothing new");
    if (s->full_resync)
        n += snprintf(out + n, size - (size_t)n, "; full resync");
    snprintf(out + n, size - (size_t)n, " [%s, %s]", s->protocol ? s->protocol : "",
             term_duration(t, (double)s->elapsed_ms / 1000.0));
}

static void watch_view(ps_client *c, sync_view *v, const options *o, const char *prefix)
{
    memset(v, 0, sizeof *v);
    v->prefix = prefix;
    v->waiting_from_ms = -1;
    term_init(&v->line, on_terminal(o), PROGRESS_DELAY_MS);
    if (v->line.enabled) {
        ps_client_set_retry_notify(c, on_retry, v);
        ps_client_set_progress(c, on_sync_progress, v);
        ps_client_set_transfer_progress(c, on_transfer, v);
    }
}

static int run_sync(ps_client *c, options *o)
{
    install_signals(c);
    sync_view v;
    watch_view(c, &v, o, "sync");
    ps_error err;
    ps_error_clear(&err);
    ps_sync_stats st;
    ps_code rc = ps_client_sync(c, &st, &err);
    term_clear(&v.line);
    g_client = NULL;
    if (rc != PS_OK)
        return fail(c, rc, &err, NETWORK);
    if (o->json) {
        print_json(stats_json(&st));
    } else if (!o->quiet && isatty(STDOUT_FILENO)) {
        char line[512];
        summary_text(line, sizeof line, &st);
        printf("synced: %s\n", line);
    }
    return 0;
}

/* ---- watch ---- */

typedef struct watch_ctx {
    const options *o;
    sync_view view;
} watch_ctx;

static void iso_now_ms(char out[64])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 64, "%s.%03dZ", base, (int)(ts.tv_nsec / 1000000) % 1000);
}

static void on_watch(const ps_watch_event *ev, void *ud)
{
    watch_ctx *w = ud;
    const options *o = w->o;
    static const char *const kinds[] = {"synced", "sync_failed", "live_on", "live_off",
                                        "live_none"};
    term_clear(&w->view.line);
    if (o->json) {
        char at[64];
        iso_now_ms(at);
        json_object *j = json_object_new_object();
        json_object_object_add(j, "event", json_object_new_string(kinds[ev->kind]));
        json_object_object_add(j, "at", json_object_new_string(at));
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
    /* a sync that moved nothing is logged only with -v: one line per sync
     * that did something, so a quiet hour is a quiet log */
    if (ev->kind == PS_WATCH_SYNCED && !o->verbose && !moved(ev->stats))
        return;
    char when[32], line[512];
    local_time(when);
    switch (ev->kind) {
    case PS_WATCH_SYNCED:
        summary_text(line, sizeof line, ev->stats);
        fprintf(stderr, "%s synced (%s): %s\n", when, ev->reason, line);
        break;
    case PS_WATCH_SYNC_FAILED:
        fprintf(stderr, "%s sync (%s) failed: %s\n", when, ev->reason, ev->err->message);
        break;
    case PS_WATCH_LIVE_ON:
        fprintf(stderr, "%s live channel connected\n", when);
        break;
    case PS_WATCH_LIVE_OFF:
        fprintf(stderr, "%s live channel lost; reconnecting\n", when);
        break;
    case PS_WATCH_LIVE_NONE:
        fprintf(stderr, "%s the server has no live channel; syncing every interval\n", when);
        break;
    }
    fflush(stderr);
}

static int run_watch(ps_client *c, options *o)
{
    install_signals(c);
    watch_ctx w = {.o = o};
    watch_view(c, &w.view, o, "watch");
    w.view.timestamps = true;
    ps_error err;
    ps_error_clear(&err);
    ps_code rc =
        ps_client_watch(c, (unsigned)(o->interval > 0 ? o->interval : 60), on_watch, &w, &err);
    term_clear(&w.view.line);
    g_client = NULL;
    if (rc != PS_OK)
        return fail(c, rc, &err, NETWORK);
    if (!o->quiet && !o->json) {
        char when[32];
        local_time(when);
        fprintf(stderr, "%s stopped\n", when);
    }
    return 0;
}

/* ---- import / export ---- */

typedef struct work_view {
    term_line line;
    const char *command; /* "import", "export" */
} work_view;

static void on_work(const char *phase, size_t done, size_t total, void *ud)
{
    work_view *w = ud;
    if (strcmp(phase, "importing") == 0 || strcmp(phase, "exporting") == 0)
        term_draw(&w->line, done == 0, "%s: %s %zu/%zu chats (%d%%)", w->command, phase, done,
                  total, total ? (int)(100.0 * (double)done / (double)total) : 100);
    else
        term_draw(&w->line, true, "%s: %s…", w->command, phase);
}

/* Reads a whole file (or stdin for "-"), showing bytes read on a terminal. */
static char *read_all(const char *path, size_t *len, work_view *w)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return NULL;
    struct stat sb;
    uint64_t size = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
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
        /* read(), not fread(): a pipe's data is shown as it arrives */
        ssize_t got = read(fileno(f), buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            free(buf);
            buf = NULL;
            errno = e;
            break;
        }
        n += (size_t)got;
        char a[32], b[32];
        if (size)
            term_draw(&w->line, false, "import: reading %s of %s (%d%%)", term_bytes(a, n),
                      term_bytes(b, size), (int)(100.0 * (double)n / (double)size));
        else
            term_draw(&w->line, false, "import: reading %s", term_bytes(a, n));
        if (got == 0)
            break;
    }
    if (f != stdin)
        fclose(f);
    *len = n;
    return buf;
}

static int run_import(ps_client *c, options *o)
{
    work_view w = {.command = "import"};
    term_init(&w.line, on_terminal(o), PROGRESS_DELAY_MS / 2);
    size_t len = 0;
    char *data = read_all(o->args[0], &len, &w);
    if (!data) {
        term_clear(&w.line);
        return report_error(EXIT_USAGE, "io", "cannot read %s: %s", o->args[0], strerror(errno));
    }
    ps_client_set_work_progress(c, on_work, &w);
    ps_error err;
    ps_error_clear(&err);
    ps_import_report *r = NULL;
    ps_code rc = ps_client_import(c, data, len, &r, &err);
    free(data);
    term_clear(&w.line);
    if (rc == PS_ERR_MALFORMED || rc == PS_ERR_INVALID || rc == PS_ERR_UTF8 ||
        rc == PS_ERR_TOO_DEEP) {
        /* the file as a whole is not chats: a local input error, not a refusal */
        ps_import_report_free(r);
        return report_error(EXIT_USAGE, code_name(rc), "%s is not a chat export: %s", o->args[0],
                            err.message);
    }
    if (rc != PS_OK) {
        ps_import_report_free(r);
        return fail(c, rc, &err, LOCAL);
    }
    if (o->json) {
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
        char a[48], b[48], p[48];
        printf("imported %s (%s)", term_count(a, r->chats_imported, "chat"),
               term_count(b, r->messages_imported, "message"));
        if (r->private_dropped)
            printf("; left out %s (never stored nor synced)",
                   term_count(p, r->private_dropped, "private message"));
        if (r->skipped_count) {
            printf("; skipped %zu:\n", r->skipped_count);
            for (size_t i = 0; i < r->reason_count; i++)
                printf("  %s\n", r->reasons[i]);
        } else {
            putchar('\n');
        }
    }
    ps_import_report_free(r);
    return 0;
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

static int run_export(ps_client *c, options *o)
{
    work_view w = {.command = "export"};
    term_init(&w.line, on_terminal(o), PROGRESS_DELAY_MS / 2);
    ps_client_set_work_progress(c, on_work, &w);
    ps_error err;
    ps_error_clear(&err);
    char *json = NULL;
    size_t len = 0;
    int code = 0;
    ps_code rc = ps_client_export(c, &json, &len, &err);
    if (rc == PS_OK && w.line.shown)
        term_draw(&w.line, true, "export: writing %s…", o->output ? o->output : "stdout");
    if (rc != PS_OK) {
        term_clear(&w.line);
        code = fail(c, rc, &err, LOCAL);
    } else if (o->output && strcmp(o->output, "-") != 0) {
        int wr = write_file_atomically(o->output, json, len);
        term_clear(&w.line);
        if (wr != 0)
            code =
                report_error(EXIT_USAGE, "io", "cannot write %s: %s", o->output, strerror(errno));
    } else {
        term_clear(&w.line);
        if (fwrite(json, 1, len, stdout) != len || fflush(stdout) != 0)
            code = report_error(EXIT_USAGE, "io", "cannot write the export: %s", strerror(errno));
    }
    ps_free(json);
    return code;
}

/* ---- login / logout / status ---- */

/* The first line of stdin, without its newline. */
static char *read_token_line(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

static int run_login(ps_client *c, options *o)
{
    const char *server = o->server ? o->server : getenv("POLYSYNC_SERVER");
    if (!server || !*server)
        return usage_error("login needs --server URL");
    if ((o->token_file != NULL) + (o->token != NULL) + o->token_stdin > 1)
        return usage_error("login takes one of --token-file, --token-stdin, --token");
    ps_error err;
    ps_error_clear(&err);
    ps_code rc = PS_OK;
    char *token = NULL, *token_file = NULL, *cacert = NULL;
    if (o->token_stdin) {
        if (isatty(STDIN_FILENO))
            fputs("token: ", stderr);
        token = read_token_line();
        if (!token || !*token) {
            free(token);
            return usage_error("--token-stdin: no token on standard input");
        }
    } else if (o->token) {
        token = strdup(o->token);
    } else if (o->token_file) {
        /* kept as a reference: the file stays the one place the token lives */
        if (!(token_file = realpath(o->token_file, NULL)))
            return report_error(EXIT_USAGE, "config", "cannot read the token file %s: %s",
                                o->token_file, strerror(errno));
    }
    if (o->cacert && !(cacert = realpath(o->cacert, NULL))) {
        free(token);
        free(token_file);
        return report_error(EXIT_USAGE, "config", "cannot read the CA file %s: %s", o->cacert,
                            strerror(errno));
    }
    /* the same checks a sync makes: the file's mode, the URL, where a token may go */
    if (token_file)
        rc = ps_client_set_token_file(c, token_file, &err);
    else if (token)
        rc = ps_client_set_token(c, token, &err);
    if (rc == PS_OK)
        rc = ps_client_set_server(c, server, &err);
    if (rc == PS_OK && cacert)
        rc = ps_client_set_cacert(c, cacert, &err);
    if (rc == PS_OK)
        rc = ps_client_setting_set(c, "server", server, &err);
    if (rc == PS_OK)
        rc = ps_client_setting_set(c, "token", token, &err);
    if (rc == PS_OK)
        rc = ps_client_setting_set(c, "token_file", token_file, &err);
    if (rc == PS_OK)
        rc = ps_client_setting_set(c, "cacert", cacert, &err);
    if (token)
        memset(token, 0, strlen(token));
    free(token);
    int code = 0;
    if (rc != PS_OK) {
        code = fail(c, rc, &err, LOCAL);
    } else if (o->json) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "server", json_object_new_string(server));
        json_object_object_add(j, "token",
                               json_object_new_string(token_file                     ? "file"
                                                      : (o->token || o->token_stdin) ? "saved"
                                                                                     : "none"));
        if (token_file)
            json_object_object_add(j, "tokenFile", json_object_new_string(token_file));
        print_json(j);
    } else if (!o->quiet) {
        printf("saved: server %s", server);
        if (token_file)
            printf(", token read from %s at each sync", token_file);
        else if (o->token || o->token_stdin)
            printf(", token (kept in the store, mode 0600)");
        printf("\nnow `polysync sync` needs no flags (flags and environment still win)\n");
    }
    free(token_file);
    free(cacert);
    return code;
}

static int run_logout(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    ps_code rc = PS_OK;
    static const char *const keys[] = {"server", "token", "token_file", "cacert"};
    for (size_t i = 0; i < 4 && rc == PS_OK; i++)
        rc = ps_client_setting_set(c, keys[i], NULL, &err);
    if (rc != PS_OK)
        return fail(c, rc, &err, LOCAL);
    if (o->json)
        print_ok(o);
    else if (!o->quiet)
        puts("forgot the server and the token (the chats stay in the store)");
    return 0;
}

/* "5 min ago" */
static void ago(char out[48], int64_t then_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    char d[32];
    double s = (double)(now - then_ms) / 1000.0;
    snprintf(out, 48, "%s ago", term_duration(d, s < 0 ? 0 : (double)(int64_t)s));
}

static int run_status(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    ps_client_state *state = NULL;
    size_t nchats = 0;
    ps_chat_info *list = NULL;
    settings s = {0};
    ps_code rc = ps_client_state_get(c, &state, &err);
    if (rc == PS_OK)
        rc = ps_client_chat_list(c, &list, &nchats, &err);
    ps_chat_info_free(list, nchats);
    if (rc == PS_OK)
        rc = resolve_settings(c, o, &s, &err);
    if (rc != PS_OK) {
        ps_client_state_free(state);
        settings_free(&s);
        return fail(c, rc, &err, LOCAL);
    }
    char last[32], since[48], n[48];
    iso(state->last_sync_ms, last);
    if (o->json) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "deviceId", json_object_new_string(ps_client_device_id(c)));
        json_object_object_add(j, "server", s.server ? json_object_new_string(s.server) : NULL);
        json_object_object_add(j, "serverFrom",
                               s.server_from ? json_object_new_string(s.server_from) : NULL);
        json_object_object_add(j, "token",
                               s.token_from ? json_object_new_string(s.token_from) : NULL);
        json_object_object_add(j, "chats", json_object_new_int64((int64_t)nchats));
        json_object_object_add(j, "pendingChanges",
                               json_object_new_int64((int64_t)state->pending_changes));
        json_object_object_add(j, "cursor",
                               state->cursor ? json_object_new_string(state->cursor) : NULL);
        json_object_object_add(j, "lastSync",
                               state->last_sync_ms ? json_object_new_string(last) : NULL);
        json_object_object_add(j, "version", json_object_new_string(ps_client_version()));
        print_json(j);
    } else {
        printf("device     %s\n", ps_client_device_id(c));
        if (s.server)
            printf("server     %s (%s)\n", s.server, s.server_from);
        else
            printf("server     none: run `polysync login --server URL`\n");
        printf("token      %s\n", s.token_from ? s.token_from : "none");
        printf("chats      %zu\n", nchats);
        printf("pending    %s not yet sent\n", term_count(n, state->pending_changes, "change"));
        if (state->cursor)
            printf("cursor     %s\n", state->cursor);
        else
            printf("cursor     none: the next sync fetches everything\n");
        if (state->last_sync_ms) {
            ago(since, state->last_sync_ms);
            printf("last sync  %s (%s)\n", last, since);
        } else {
            printf("last sync  never\n");
        }
    }
    ps_client_state_free(state);
    settings_free(&s);
    return 0;
}

/* ---- the command table ---- */

static int run_help(ps_client *c, options *o);

static const command COMMANDS[] = {
    {NULL, "login", 0, 0, BIT(O_TOKEN_STDIN), NEEDS_STORE,
     "Usage: polysync login --server URL [--token-file PATH | --token-stdin] [--cacert FILE]\n"
     "Remembers the server (and how to authenticate) in the store, so sync,\n"
     "watch and status need no flags afterwards. --token-file saves a\n"
     "reference: the file (mode 0600) is read at each sync. --token-stdin\n"
     "reads the token from standard input and keeps it in the store (mode\n"
     "0600). Flags and the environment (POLYSYNC_SERVER, POLYSYNC_TOKEN) still\n"
     "win; the saved token and CA are sent only to the saved server.\n",
     run_login},
    {NULL, "logout", 0, 0, 0, NEEDS_STORE,
     "Usage: polysync logout\n"
     "Forgets the saved server, token and CA. The chats stay.\n",
     run_logout},
    {NULL, "status", 0, 0, 0, NEEDS_STORE,
     "Usage: polysync status [--json]\n"
     "Shows this store's device id, the server and where that setting comes\n"
     "from, the token's source, the number of chats, the changes not yet sent,\n"
     "the sync cursor and when the last sync completed.\n",
     run_status},
    {"chat", "new", 0, 0, BIT(O_TITLE), NEEDS_STORE,
     "Usage: polysync chat new --title TITLE [--json]\n"
     "Creates a chat and prints its id ({\"id\": ...} with --json).\n",
     run_chat_new},
    {"chat", "rename", 2, 2, 0, NEEDS_STORE,
     "Usage: polysync chat rename ID TITLE\nSets the title of chat ID.\n", run_chat_rename},
    {"chat", "archive", 1, 1, 0, NEEDS_STORE,
     "Usage: polysync chat archive ID\nArchives chat ID (it stays listed, marked archived).\n",
     run_chat_archive},
    {"chat", "unarchive", 1, 1, 0, NEEDS_STORE,
     "Usage: polysync chat unarchive ID\nUndoes chat archive.\n", run_chat_unarchive},
    {"chat", "delete", 1, 1, 0, NEEDS_STORE,
     "Usage: polysync chat delete ID\n"
     "Deletes chat ID here and, after a sync, on every device.\n",
     run_chat_delete},
    {"chat", "list", 0, 0, 0, NEEDS_STORE,
     "Usage: polysync chat list [--json]\n"
     "Lists the chats, most recently updated first: id, update time, number of\n"
     "messages, title. --json: an array of {id, title, isArchived, messageCount,\n"
     "createdAt, updatedAt}.\n",
     run_chat_list},
    {"chat", "show", 1, 1, 0, NEEDS_STORE,
     "Usage: polysync chat show ID [--json]\n"
     "Shows chat ID and its messages in order. --json: the chat as the Polyglot\n"
     "app stores it.\n",
     run_chat_show},
    {"msg", "add", 1, 1, BIT(O_ROLE) | BIT(O_CONTENT), NEEDS_STORE,
     "Usage: polysync msg add CHAT --role user|assistant --content TEXT [--json]\n"
     "Adds a message to chat CHAT and prints its id.\n",
     run_msg_add},
    {"msg", "edit", 3, 3, 0, NEEDS_STORE,
     "Usage: polysync msg edit CHAT MSG TEXT\nReplaces the text of message MSG in chat CHAT.\n",
     run_msg_edit},
    {"msg", "delete", 2, 2, 0, NEEDS_STORE,
     "Usage: polysync msg delete CHAT MSG\n"
     "Deletes message MSG of chat CHAT here and, after a sync, on every device.\n",
     run_msg_delete},
    {NULL, "sync", 0, 0, 0, NEEDS_SERVER,
     "Usage: polysync sync [--server URL] [--token-file PATH] [--retries N] [--timeout S] "
     "[--json]\n"
     "Sends the changes made here since the last sync and receives the others'.\n"
     "The server is the saved one (polysync login) unless --server or\n"
     "POLYSYNC_SERVER says otherwise. On a terminal, after a second: progress\n"
     "(bytes, rate and time left while sending, \"merging…\" while the server\n"
     "works, then receiving) and each retry with its reason. An unreachable or\n"
     "overloaded server is retried (--retries, --retry-max-delay, --timeout); a\n"
     "sync cut short is safe to run again. Counts show only what changed here.\n"
     "--json: what moved, as an object.\n",
     run_sync},
    {NULL, "watch", 0, 0, BIT(O_INTERVAL), NEEDS_SERVER,
     "Usage: polysync watch [--interval SECONDS] [-v] [--json]\n"
     "Syncs now, then whenever the server says something changed (its live\n"
     "channel), within a second of a change made here, and every SECONDS\n"
     "(default 60) in any case. Logs on stderr, with the time, each sync that\n"
     "moved something (-v: every sync) and each failure; --json: one JSON\n"
     "object per event on stdout, with \"at\". Stops cleanly on Ctrl-C or SIGTERM.\n",
     run_watch},
    {NULL, "import", 1, 1, 0, NEEDS_STORE,
     "Usage: polysync import FILE [--json]\n"
     "Reads chats from FILE (- for stdin): a Polyglot export (a JSON array of\n"
     "chats) or a chatStore.json ({\"chats\": {...}} or {\"chats\": [...]}).\n"
     "Every chat is checked as the server would; those that fail are skipped\n"
     "and listed with the reason. Imported content never overrides edits made\n"
     "since on any device. Private messages are left out. Shows progress on a\n"
     "terminal.\n",
     run_import},
    {NULL, "export", 0, 0, BIT(O_OUTPUT), NEEDS_STORE,
     "Usage: polysync export [--output FILE]\n"
     "Writes every chat as a JSON array the Polyglot app can load, to FILE\n"
     "(written atomically, mode 0600) or stdout. Shows progress on a terminal.\n",
     run_export},
    {NULL, "help", 0, 2, 0, NEEDS_NOTHING,
     "Usage: polysync help [COMMAND]\n"
     "Shows the list of commands, or one command's help (polysync help chat new).\n",
     run_help},
};
#define NCOMMANDS (sizeof COMMANDS / sizeof *COMMANDS)

static void group_help(FILE *f, const char *group)
{
    fprintf(f, "Usage: polysync %s COMMAND ...\n\nCommands:\n", group);
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (COMMANDS[i].group && strcmp(COMMANDS[i].group, group) == 0) {
            const char *line = COMMANDS[i].help + strlen("Usage: polysync ");
            fprintf(f, "  %.*s\n", (int)strcspn(line, "\n"), line);
        }
    fprintf(f, "\n`polysync help %s COMMAND` for one of them.\n", group);
}

static bool is_group(const char *name)
{
    return strcmp(name, "chat") == 0 || strcmp(name, "msg") == 0;
}

static const command *find_command(const char *group, const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(COMMANDS[i].name, name) == 0 &&
            ((!group && !COMMANDS[i].group) ||
             (group && COMMANDS[i].group && strcmp(group, COMMANDS[i].group) == 0)))
            return &COMMANDS[i];
    return NULL;
}

static int run_help(ps_client *c, options *o)
{
    (void)c;
    if (o->nargs == 0) {
        fputs(GLOBAL_HELP, stdout);
        return 0;
    }
    const char *group = is_group(o->args[0]) ? o->args[0] : NULL;
    if (group && o->nargs == 1) {
        group_help(stdout, group);
        return 0;
    }
    const command *cmd = find_command(group, o->args[group ? 1 : 0]);
    if (!cmd || (!group && o->nargs > 1))
        return usage_error("no command '%s%s%s' to help with", o->args[0], o->nargs > 1 ? " " : "",
                           o->nargs > 1 ? o->args[1] : "");
    fputs(cmd->help, stdout);
    return 0;
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

/* Parses argv into *o; returns -1 when parsed, else the exit code. */
static int parse_args(int argc, char **argv, options *o)
{
    opterr = 0;
    int ch;
    /* "-": positionals come back as 1, in place, so options may go anywhere. */
    while ((ch = getopt_long(argc, argv, "-hv", LONG_OPTS, NULL)) != -1) {
        switch (ch) {
        case 1:
            if (o->nargs == (int)(sizeof o->args / sizeof *o->args))
                return usage_error("too many arguments");
            o->args[o->nargs++] = optarg;
            break;
        case O_STORE:
            o->store = optarg;
            break;
        case O_SERVER:
            o->server = optarg;
            break;
        case O_TOKEN:
            o->token = optarg;
            break;
        case O_TOKEN_FILE:
            o->token_file = optarg;
            break;
        case O_CACERT:
            o->cacert = optarg;
            break;
        case O_PLAIN_HTTP:
            o->plain_http = true;
            break;
        case O_RETRIES:
            if (!parse_long(optarg, 1, 100, &o->retries))
                return usage_error("--retries must be a number from 1 to 100");
            break;
        case O_RETRY_MAX:
            if (!parse_long(optarg, 1, 3600, &o->retry_max))
                return usage_error("--retry-max-delay must be seconds from 1 to 3600");
            break;
        case O_TIMEOUT:
            if (!parse_long(optarg, 1, 3600, &o->timeout))
                return usage_error("--timeout must be seconds from 1 to 3600");
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_QUIET:
            o->quiet = true;
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'h':
        case O_HELP:
            o->help = true;
            break;
        case O_VERSION:
            o->version = true;
            break;
        case O_TITLE:
            o->title = optarg;
            o->given |= BIT(O_TITLE);
            break;
        case O_ROLE:
            o->role = optarg;
            o->given |= BIT(O_ROLE);
            break;
        case O_CONTENT:
            o->content = optarg;
            o->given |= BIT(O_CONTENT);
            break;
        case O_INTERVAL:
            if (!parse_long(optarg, 1, 86400, &o->interval))
                return usage_error("--interval must be seconds from 1 to 86400");
            o->given |= BIT(O_INTERVAL);
            break;
        case O_OUTPUT:
            o->output = optarg;
            o->given |= BIT(O_OUTPUT);
            break;
        case O_TOKEN_STDIN:
            o->token_stdin = true;
            o->given |= BIT(O_TOKEN_STDIN);
            break;
        default:
            return usage_error("unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    /* after "--" getopt stops: the rest are arguments too */
    for (; optind < argc; optind++) {
        if (o->nargs == (int)(sizeof o->args / sizeof *o->args))
            return usage_error("too many arguments");
        o->args[o->nargs++] = argv[optind];
    }
    return -1;
}

/* The one runner: checks the arguments, opens what the command needs,
 * runs it, closes. */
static int run_command(const command *cmd, options *o)
{
    if (o->nargs < cmd->min_args || o->nargs > cmd->max_args) {
        if (g_json_errors)
            return usage_error("wrong number of arguments: %.*s", (int)strcspn(cmd->help, "\n"),
                               cmd->help);
        fputs(cmd->help, stderr);
        return EXIT_USAGE;
    }
    unsigned misplaced = o->given & ~cmd->allowed;
    for (int k = 0; misplaced; k++, misplaced >>= 1)
        if (misplaced & 1)
            return usage_error("%s does not apply to '%s%s%s'", OPT_NAMES[k],
                               cmd->group ? cmd->group : "", cmd->group ? " " : "", cmd->name);
    if ((cmd->allowed & BIT(O_TITLE)) && !o->title)
        return usage_error("chat new needs --title TITLE");
    if ((cmd->allowed & BIT(O_ROLE)) && (!o->role || !o->content))
        return usage_error("msg add needs --role user|assistant and --content TEXT");
    if ((cmd->allowed & BIT(O_ROLE)) && strcmp(o->role, "user") != 0 &&
        strcmp(o->role, "assistant") != 0 && strcmp(o->role, "system") != 0)
        return usage_error("--role must be user or assistant, not '%s'", o->role);
    if (cmd->needs == NEEDS_NOTHING)
        return cmd->run(NULL, o);
    ps_client *c = NULL;
    int code = open_store(o, &c);
    if (code == 0 && cmd->needs == NEEDS_SERVER)
        code = configure_server(c, o);
    if (code == 0)
        code = cmd->run(c, o);
    ps_client_close(c);
    return code;
}

int main(int argc, char **argv)
{
    options o;
    memset(&o, 0, sizeof o);
    signal(SIGPIPE, SIG_IGN);
    /* known before parsing, so even a usage error comes out as JSON */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--json") == 0)
            g_json_errors = true;
    int code = parse_args(argc, argv, &o);
    if (code >= 0)
        return code;
    if (o.version) {
        printf("polysync %s\n", ps_client_version());
        return 0;
    }
    if (o.nargs == 0) {
        if (o.help) {
            fputs(GLOBAL_HELP, stdout);
            return 0;
        }
        if (g_json_errors)
            return usage_error("no command");
        fputs(GLOBAL_HELP, stderr);
        return EXIT_USAGE;
    }
    const char *group = NULL, *name = o.args[0];
    int skip = 1;
    if (is_group(name)) {
        group = name;
        if (o.nargs < 2) {
            if (o.help) {
                group_help(stdout, group);
                return 0;
            }
            return usage_error("'%s' needs a command: polysync help %s", group, group);
        }
        name = o.args[1];
        skip = 2;
    }
    const command *cmd = find_command(group, name);
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
    return run_command(cmd, &o);
}
