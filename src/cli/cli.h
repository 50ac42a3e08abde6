/*
 * What the files of the `polysync` CLI share: the parsed options, the exit
 * codes, errors as text or (under --json) one JSON object on stderr, output
 * helpers, signals, and the commands the table in polysync_main.c runs.
 * Everything goes through the public libpolysync API.
 */
#ifndef PS_CLI_H
#define PS_CLI_H

#include "polysync/polysync.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

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

/* One bit per command-specific option, in options.given. */
#define BIT(o) (1u << ((o)-O_TITLE))

/* Set before parsing when --json is anywhere on the line: errors as JSON. */
extern bool cli_json_errors;

/* Prints an error (text, or {"error","code","exit"} on stderr under --json)
 * and returns exit_code. */
int cli_error(int exit_code, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A usage error: exit 1, with a pointer to `polysync help`. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Where a failure came from decides what its code means: PS_ERR_IO is an
 * unreachable server in a sync, a file in a local command. */
typedef enum context { LOCAL, NETWORK } context;

/* Prints a library failure and returns its exit code (docs/client.md). */
int cli_fail(ps_client *c, ps_code rc, const ps_error *err, context ctx);
/* A short, stable name of a ps_code for scripts ("not_found"). */
const char *cli_code_name(ps_code rc);

/* SIGINT/SIGTERM stop `c` (ps_client_stop); off again with NULL. */
void cli_signals_on(ps_client *c);

/* Output helpers. */
void cli_iso(int64_t ms, char out[32]); /* UTC, "-" for 0 */
void cli_local_time(char out[32]);      /* now, local, "2026-12-02 14:03:11" */
/* Pretty, to stdout; releases obj. obj NULL (out of memory): says so on
 * stderr; returns 0 or that error's exit code. */
int cli_print_json(json_object *obj);
/* cli_print_json for a document built with json_build.h's calls: rc not
 * PS_OK (an allocation failed while building) is reported, not printed. */
int cli_print_built(json_object *obj, ps_code rc);
void cli_print_ok(const options *o);    /* {"ok": true} under --json */
void cli_print_id(const options *o, const char *id);
/* Progress and retry lines go to a person, never into a pipe or a script. */
bool cli_on_terminal(const options *o);

/* Opens --store, else the default store. 0 or the exit code. */
int cli_open_store(options *o, ps_client **out);
/* Applies server, token and CA from flags, environment, then `login`. */
int cli_configure_server(ps_client *c, options *o);

/* The commands (cli_chats.c, cli_sync.c, cli_login.c). */
int run_chat_new(ps_client *c, options *o);
int run_chat_rename(ps_client *c, options *o);
int run_chat_archive(ps_client *c, options *o);
int run_chat_unarchive(ps_client *c, options *o);
int run_chat_delete(ps_client *c, options *o);
int run_chat_list(ps_client *c, options *o);
int run_chat_show(ps_client *c, options *o);
int run_msg_add(ps_client *c, options *o);
int run_msg_edit(ps_client *c, options *o);
int run_msg_delete(ps_client *c, options *o);
int run_import(ps_client *c, options *o);
int run_export(ps_client *c, options *o);
int run_sync(ps_client *c, options *o);
int run_watch(ps_client *c, options *o);
int run_login(ps_client *c, options *o);
int run_logout(ps_client *c, options *o);
int run_status(ps_client *c, options *o);

#endif
