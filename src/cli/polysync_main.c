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
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "  status                    server, device, cursor, changes waiting, last sync\n"
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
    "  import FILE               read a Polyglot export or chatStore.json (- stdin)\n"
    "  export [--output FILE]    write every chat as JSON the Polyglot app loads\n"
    "  help [COMMAND]            this text, or one command's\n"
    "\n"
    "Options for every command:\n"
    "  --store PATH              the local store (default\n"
    "                            $XDG_DATA_HOME/polysync/chats.db, else\n"
    "                            ~/.local/share/polysync/chats.db)\n"
    "  --server URL              the server (env POLYSYNC_SERVER, else the saved)\n"
    "  --token T                 bearer token (env POLYSYNC_TOKEN)\n"
    "  --token-file PATH         read the token from PATH (must be mode 0600)\n"
    "  --cacert FILE             verify the server with this CA bundle (PEM)\n"
    "  --allow-plain-http        allow sending a token over http:// to another host\n"
    "  --retries N               attempts per request, 1 = no retry (default 6)\n"
    "  --retry-max-delay S       longest wait between attempts (default 30)\n"
    "  --timeout S               connection and stall timeout (default 30)\n"
    "  --json                    output for scripts; errors as JSON on stderr\n"
    "  --quiet                   no progress or summary\n"
    "  -v, --verbose             watch: log every sync, even those that moved nothing\n"
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
     "Every chat is checked as the server would; those that cli_fail are skipped\n"
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
        return cli_usage_error("no command '%s%s%s' to help with", o->args[0],
                               o->nargs > 1 ? " " : "", o->nargs > 1 ? o->args[1] : "");
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
                return cli_usage_error("too many arguments");
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
                return cli_usage_error("--retries must be a number from 1 to 100");
            break;
        case O_RETRY_MAX:
            if (!parse_long(optarg, 1, 3600, &o->retry_max))
                return cli_usage_error("--retry-max-delay must be seconds from 1 to 3600");
            break;
        case O_TIMEOUT:
            if (!parse_long(optarg, 1, 3600, &o->timeout))
                return cli_usage_error("--timeout must be seconds from 1 to 3600");
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
                return cli_usage_error("--interval must be seconds from 1 to 86400");
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
            return cli_usage_error("unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    /* after "--" getopt stops: the rest are arguments too */
    for (; optind < argc; optind++) {
        if (o->nargs == (int)(sizeof o->args / sizeof *o->args))
            return cli_usage_error("too many arguments");
        o->args[o->nargs++] = argv[optind];
    }
    return -1;
}

/* The one runner: checks the arguments, opens what the command needs,
 * runs it, closes. */
static int run_command(const command *cmd, options *o)
{
    if (o->nargs < cmd->min_args || o->nargs > cmd->max_args) {
        if (cli_json_errors)
            return cli_usage_error("wrong number of arguments: %.*s", (int)strcspn(cmd->help, "\n"),
                                   cmd->help);
        fputs(cmd->help, stderr);
        return EXIT_USAGE;
    }
    unsigned misplaced = o->given & ~cmd->allowed;
    for (int k = 0; misplaced; k++, misplaced >>= 1)
        if (misplaced & 1)
            return cli_usage_error("%s does not apply to '%s%s%s'", OPT_NAMES[k],
                                   cmd->group ? cmd->group : "", cmd->group ? " " : "", cmd->name);
    if ((cmd->allowed & BIT(O_TITLE)) && !o->title)
        return cli_usage_error("chat new needs --title TITLE");
    if ((cmd->allowed & BIT(O_ROLE)) && (!o->role || !o->content))
        return cli_usage_error("msg add needs --role user|assistant and --content TEXT");
    if ((cmd->allowed & BIT(O_ROLE)) && strcmp(o->role, "user") != 0 &&
        strcmp(o->role, "assistant") != 0 && strcmp(o->role, "system") != 0)
        return cli_usage_error("--role must be user or assistant, not '%s'", o->role);
    if (cmd->needs == NEEDS_NOTHING)
        return cmd->run(NULL, o);
    ps_client *c = NULL;
    int code = cli_open_store(o, &c);
    if (code == 0 && cmd->needs == NEEDS_SERVER)
        code = cli_configure_server(c, o);
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
    /* guessed before parsing, so even a bad option comes out as JSON; then
     * exact (`--content --json` is text, not the flag) */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--json") == 0)
            cli_json_errors = true;
    int code = parse_args(argc, argv, &o);
    if (code >= 0)
        return code;
    cli_json_errors = o.json;
    if (o.version) {
        printf("polysync %s\n", ps_client_version());
        return 0;
    }
    if (o.nargs == 0) {
        if (o.help) {
            fputs(GLOBAL_HELP, stdout);
            return 0;
        }
        if (cli_json_errors)
            return cli_usage_error("no command");
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
            return cli_usage_error("'%s' needs a command: polysync help %s", group, group);
        }
        name = o.args[1];
        skip = 2;
    }
    const command *cmd = find_command(group, name);
    if (!cmd) {
        if (group)
            return cli_usage_error("unknown command '%s %s'", group, name);
        return cli_usage_error("unknown command '%s'", name);
    }
    if (o.help) {
        fputs(cmd->help, stdout);
        return 0;
    }
    memmove(o.args, o.args + skip, sizeof o.args - (size_t)skip * sizeof *o.args);
    o.nargs -= skip;
    return run_command(cmd, &o);
}
