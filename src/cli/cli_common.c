/*
 * What every polysync command shares: errors as text or JSON and their exit
 * codes, signals, output helpers, opening the store. See cli.h.
 */
#include "cli/cli.h"
#include "cli/cli_term.h"
#include "core/json_build.h"

#include <errno.h>
#include <fcntl.h>
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

/* ---- errors: text, or one JSON object on stderr under --json ---- */

bool cli_json_errors;

/* A short, stable name for scripts. */
const char *cli_code_name(ps_code rc)
{
    static const char *const names[] = {
        "ok",       "nomem",     "malformed",    "invalid_utf8",  "too_deep",
        "invalid",  "too_large", "not_found",    "store",         "io",
        "config",   "schema",    "busy",         "bad_cursor",    "cursor_expired",
        "bad_gzip", "encoding",  "unauthorized", "invalid_token", "rate_limited",
        "quota",
        "error", /* PS_ERR_UNAVAILABLE: named "error" since it was added, kept */
        /* the server's edge refusals (error.h), named as the server names them */
        "method_not_allowed", "unsupported_media_type", "too_many_requests", "shutting_down",
        "bad_framing", "token_revoked", "user_disabled", "body_too_large", "internal_error",
        "overloaded", "upload_too_slow", "bad_handshake", "origin_not_allowed", "upgrade_required",
        "too_many_sockets",
    };
    return (unsigned)rc < sizeof names / sizeof *names ? names[rc] : "error";
}

int cli_error(int exit_code, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cli_error(int exit_code, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_object *j = cli_json_errors ? json_object_new_object() : NULL;
    ps_code jrc = PS_OK;
    ps__json_set(&jrc, j, "error", json_object_new_string(msg));
    ps__json_set(&jrc, j, "code", json_object_new_string(code));
    ps__json_set(&jrc, j, "exit", json_object_new_int(exit_code));
    const char *text = jrc == PS_OK
                           ? json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE)
                           : NULL;
    if (text) /* --json-errors; else, or out of memory for the JSON, the plain line */
        fprintf(stderr, "%s\n", text);
    else
        fprintf(stderr, "polysync: %s\n", msg);
    json_object_put(j);
    return exit_code;
}

int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_usage_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_error(EXIT_USAGE, "usage", "%s", msg);
    if (!cli_json_errors)
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

void cli_signals_on(ps_client *c)
{
    g_client = c;
    if (!c)
        return; /* a stop that comes now finds no handle */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

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
    case PS_ERR_BODY_TOO_LARGE:
    case PS_ERR_MEDIA_TYPE:
    case PS_ERR_BAD_FRAMING:
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
    if (rc == PS_ERR_IO || rc == PS_ERR_RATE_LIMITED || rc == PS_ERR_TOO_MANY_REQUESTS)
        return EXIT_UNREACHABLE;
    return EXIT_USAGE;
}

int cli_fail(ps_client *c, ps_code rc, const ps_error *err, context ctx)
{
    int code = exit_code(c, rc, ctx);
    if (code == EXIT_INTERRUPTED)
        return cli_error(code, "interrupted", "interrupted");
    return cli_error(
        code, code == EXIT_UNREACHABLE && rc == PS_ERR_IO ? "unreachable" : cli_code_name(rc), "%s",
        err->message[0] ? err->message : ps_strerror(rc));
}

/* ---- output helpers ---- */

void cli_iso(int64_t ms, char out[32])
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

int cli_print_json(json_object *obj)
{
    const char *text = obj ? json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
                                                                     JSON_C_TO_STRING_NOSLASHESCAPE)
                           : NULL;
    if (text)
        puts(text);
    json_object_put(obj);
    return text ? 0 : cli_error(EXIT_USAGE, "out_of_memory", "out of memory printing the answer");
}

int cli_print_built(json_object *obj, ps_code rc)
{
    if (rc != PS_OK) {
        json_object_put(obj);
        obj = NULL;
    }
    return cli_print_json(obj);
}

void cli_print_ok(const options *o)
{
    if (o->json) {
        json_object *r = json_object_new_object();
        ps_code jrc = PS_OK;
        ps__json_set(&jrc, r, "ok", json_object_new_boolean(1));
        cli_print_built(r, jrc);
    }
}

void cli_print_id(const options *o, const char *id)
{
    if (o->json) {
        json_object *r = json_object_new_object();
        ps_code jrc = PS_OK;
        ps__json_set(&jrc, r, "id", json_object_new_string(id));
        cli_print_built(r, jrc);
    } else {
        puts(id);
    }
}

/* Progress and retry lines go to a person, never into a pipe or a script. */
bool cli_on_terminal(const options *o)
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
int cli_open_store(options *o, ps_client **out)
{
    *out = NULL;
    ps_error err;
    ps_error_clear(&err);
    char *dflt = NULL;
    const char *path = o->store;
    if (!path && !(path = dflt = default_store()))
        return cli_usage_error("no store: pass --store PATH (HOME is not set)");
    ps_code rc = ps_client_open(path, out, &err);
    free(dflt);
    return rc == PS_OK ? 0 : cli_fail(NULL, rc, &err, LOCAL);
}

void cli_local_time(char out[32])
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    if (!strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(out, 32, "-");
}
