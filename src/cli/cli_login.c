/*
 * Where to sync: the settings a sync uses (flags, then the environment,
 * then what `login` saved in the store) and the commands that manage and
 * show them: login, logout, status.
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
int cli_configure_server(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    settings s;
    ps_code rc = resolve_settings(c, o, &s, &err);
    if (rc != PS_OK) {
        settings_free(&s);
        return cli_fail(c, rc, &err, LOCAL);
    }
    if (!s.server) {
        settings_free(&s);
        return cli_usage_error("no server: run `polysync login --server URL` once, or pass "
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
        return cli_fail(c, rc, &err, LOCAL);
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

int run_login(ps_client *c, options *o)
{
    const char *server = o->server ? o->server : getenv("POLYSYNC_SERVER");
    if (!server || !*server)
        return cli_usage_error("login needs --server URL");
    if ((o->token_file != NULL) + (o->token != NULL) + o->token_stdin > 1)
        return cli_usage_error("login takes one of --token-file, --token-stdin, --token");
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
            return cli_usage_error("--token-stdin: no token on standard input");
        }
    } else if (o->token) {
        token = strdup(o->token);
    } else if (o->token_file) {
        /* kept as a reference: the file stays the one place the token lives */
        if (!(token_file = realpath(o->token_file, NULL)))
            return cli_error(EXIT_USAGE, "config", "cannot read the token file %s: %s",
                             o->token_file, strerror(errno));
    }
    if (o->cacert && !(cacert = realpath(o->cacert, NULL))) {
        free(token);
        free(token_file);
        return cli_error(EXIT_USAGE, "config", "cannot read the CA file %s: %s", o->cacert,
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
        code = cli_fail(c, rc, &err, LOCAL);
    } else if (o->json) {
        json_object *j = json_object_new_object();
        ps_code jrc = PS_OK;
        ps__json_set(&jrc, j, "server", json_object_new_string(server));
        ps__json_set(&jrc, j, "token",
                     json_object_new_string(token_file                     ? "file"
                                            : (o->token || o->token_stdin) ? "saved"
                                                                           : "none"));
        if (token_file)
            ps__json_set(&jrc, j, "tokenFile", json_object_new_string(token_file));
        code = cli_print_built(j, jrc);
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

int run_logout(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    ps_code rc = PS_OK;
    static const char *const keys[] = {"server", "token", "token_file", "cacert"};
    for (size_t i = 0; i < 4 && rc == PS_OK; i++)
        rc = ps_client_setting_set(c, keys[i], NULL, &err);
    if (rc != PS_OK)
        return cli_fail(c, rc, &err, LOCAL);
    if (o->json)
        cli_print_ok(o);
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

/* Whether the server knows this device: asked once, without retries and
 * with a short timeout, so status answers offline too (a handle that cannot
 * be pointed at the server, say a token refused over plain HTTP, counts as
 * unreachable: status reports, it does not fail). */
static ps_device_known device_on_server(ps_client *c, const options *o, const settings *s)
{
    ps_device_known known = PS_DEVICE_UNREACHABLE;
    ps_error err;
    ps_error_clear(&err);
    if (!s->server)
        return known;
    ps_code rc = PS_OK;
    if (s->token_file)
        rc = ps_client_set_token_file(c, s->token_file, &err);
    else if (s->token)
        rc = ps_client_set_token(c, s->token, &err);
    ps_client_allow_plain_http(c, o->plain_http);
    if (rc == PS_OK)
        rc = ps_client_set_server(c, s->server, &err);
    if (rc == PS_OK && s->cacert)
        rc = ps_client_set_cacert(c, s->cacert, &err);
    ps_retry_policy p;
    ps_retry_policy_default(&p);
    p.timeout_s = o->timeout > 0 ? (unsigned)o->timeout : 5;
    ps_client_set_retry(c, &p);
    if (rc == PS_OK)
        ps_client_device_known(c, &known, &err);
    return known;
}

int run_status(ps_client *c, options *o)
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
        return cli_fail(c, rc, &err, LOCAL);
    }
    ps_device_known known = device_on_server(c, o, &s);
    const char *known_name = ps_client_device_known_name(known);
    char last[32], since[48], n[48];
    cli_iso(state->last_sync_ms, last);
    int json_code = 0;
    if (o->json) {
        json_object *j = json_object_new_object();
        ps_code jrc = PS_OK;
        ps__json_set(&jrc, j, "deviceId", json_object_new_string(ps_client_device_id(c)));
        ps__json_set(&jrc, j, "deviceOnServer", json_object_new_string(known_name));
        ps__json_set_opt(&jrc, j, "server", s.server,
                         s.server ? json_object_new_string(s.server) : NULL);
        ps__json_set_opt(&jrc, j, "serverFrom", s.server_from,
                         s.server_from ? json_object_new_string(s.server_from) : NULL);
        ps__json_set_opt(&jrc, j, "token", s.token_from,
                         s.token_from ? json_object_new_string(s.token_from) : NULL);
        ps__json_set(&jrc, j, "chats", json_object_new_int64((int64_t)nchats));
        ps__json_set(&jrc, j, "pendingChanges",
                     json_object_new_int64((int64_t)state->pending_changes));
        ps__json_set_opt(&jrc, j, "cursor", state->cursor,
                         state->cursor ? json_object_new_string(state->cursor) : NULL);
        ps__json_set_opt(&jrc, j, "lastSync", state->last_sync_ms,
                         state->last_sync_ms ? json_object_new_string(last) : NULL);
        ps__json_set(&jrc, j, "version", json_object_new_string(ps_client_version()));
        json_code = cli_print_built(j, jrc);
    } else {
        static const char *const said[] = {
            [PS_DEVICE_KNOWN] = "known to the server",
            [PS_DEVICE_EXPIRED] = "expired on the server: the next sync resyncs",
            [PS_DEVICE_UNKNOWN] = "not known to the server yet",
            [PS_DEVICE_UNREACHABLE] = "server unreachable: not known if it knows this device",
        };
        printf("device     %s (%s)\n", ps_client_device_id(c),
               s.server ? said[known] : "no server");
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
    return json_code;
}
