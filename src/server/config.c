/* Flag parsing for polysyncd (getopt_long); see config.h. */
#include "server/config.h"
#include "server/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1024u * 1024u)
#define MAX_BODY_LIMIT ((size_t)1024 * MIB)

void ps_config_defaults(ps_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->bind, sizeof cfg->bind, "127.0.0.1");
    cfg->port = 4001;
    snprintf(cfg->db_url, sizeof cfg->db_url, "sqlite:./data/polysync.db");
    cfg->max_body_bytes = 256 * MIB; /* a heavy user's whole history (legacy_body.h) */
    cfg->max_response_bytes = 1024 * MIB;
    cfg->max_skew_ms = 5 * 60 * 1000;
    cfg->tombstone_retention_ms = 90LL * 86400 * 1000;
    cfg->purge_interval_s = 3600;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cpus > 0 ? (unsigned)cpus : 2;
    /* one large body per core at a time keeps every core busy and memory
     * at a few bodies, however many devices upload at once */
    cfg->max_large_requests = cfg->threads;
    cfg->connection_timeout_s = 30;
    cfg->drain_timeout_s = 30;
    cfg->limits = ps__limits_default();
    /* No rate limit by default: one user's 16 devices syncing at once is
     * normal load; internet-facing servers set one (docs/security.md). */
    cfg->rate_limit = 0;
    cfg->rate_burst = 0;
    cfg->max_user_requests = 64;
    cfg->max_connections = 1024;
    cfg->request_timeout_s = 60;
    cfg->log_format = PS_LOG_TEXT;
    cfg->log_level = PS_LOG_INFO;
    /* a household behind one NAT has a few dozen devices, each with a live
     * channel and a sync at once; far below what fills the table */
    cfg->max_connections_per_ip = 128;
    cfg->header_timeout_s = 10;
    cfg->min_upload_rate = 16 * 1024; /* a poor mobile link still does 3x this */
    cfg->max_token_lifetime_s = 366LL * 86400;
    cfg->quick_check_max_bytes = 1024 * MIB;
    /* live sockets count against --max-connections: half of them leaves
     * room for HTTP; a user's devices and tabs fit in 16 */
    cfg->ws_max_sockets = 512;
    cfg->ws_max_user_sockets = 16;
    cfg->ws_ping_interval_s = 30;
    cfg->ws_queue_bytes = 2 * MIB;
}

bool ps_config_has_auth(const ps_config *cfg)
{
    return cfg->jwt_secret_file || cfg->jwt_public_key;
}

bool ps_config_cors_any_origin(const ps_config *cfg)
{
    return cfg->n_cors_origins == 0 && !ps_config_has_auth(cfg) && ps_addr_is_loopback(cfg->bind);
}

bool ps_addr_is_loopback(const char *addr)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (strcmp(addr, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, addr, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6);
    return false;
}

/* "64M", "512k", "1G" or plain bytes. */
static bool parse_size(const char *s, size_t *out)
{
    char *end;
    if (!isdigit((unsigned char)s[0])) /* strtoull would skip blanks and take "-1" */
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return false;
    unsigned long long mult = 1;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mult = 1024ull;
        end++;
        break;
    case 'm':
    case 'M':
        mult = 1024ull * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        mult = 1024ull * 1024 * 1024;
        end++;
        break;
    default:
        return false;
    }
    if (*end != '\0' || v > SIZE_MAX / mult)
        return false;
    *out = (size_t)(v * mult);
    return true;
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end != '\0' || v > max)
        return false;
    *out = v;
    return true;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: polysyncd [OPTIONS]\n"
        "The polysync chat-history sync server.\n\n"
        "  --bind ADDR              address to listen on (default 127.0.0.1)\n"
        "  --port N                 port (default 4001, or env CHAT_SYNC_PORT; 0 = any)\n"
        "  --db URL                 store: sqlite:PATH (default sqlite:./data/polysync.db)\n"
        "                           or postgres://user@host/db (several instances may share it)\n"
        "  --max-body SIZE          largest legacy /sync or /pushChats body, taken chat by\n"
        "                           chat (default 256M, max 1G); other bodies, parsed\n"
        "                           whole, at most the smaller of this and 64M\n"
        "  --max-chats N            most chats or deletions in one request (default 50000)\n"
        "  --max-clock-skew SECONDS clamp client times later than now + this (default 300)\n"
        "  --tombstone-retention D  keep deleted chats' tombstones D days (default 90)\n"
        "  --purge-interval S       forget expired tombstones every S seconds (default 3600)\n"
        "  --threads N              HTTP worker threads (default: number of CPUs)\n"
        "  --max-large-requests N   requests with bodies over 1 MiB read and handled at\n"
        "                           once; more wait their turn (default: number of CPUs)\n"
        "  --connection-timeout S   close idle or stalled connections after S (default 30)\n"
        "  --drain-timeout S        on SIGTERM, wait this long for requests (default 30)\n"
        "  --insecure-no-auth       allow a non-loopback --bind without authentication\n"
        "\nAuthentication and TLS (docs/security.md):\n"
        "  --jwt-secret-file PATH   accept HS256 tokens signed with this secret\n"
        "  --jwt-public-key PATH    accept RS256/ES256 tokens for this PEM public key\n"
        "  --jwt-issuer ISS         require this iss claim\n"
        "  --jwt-audience AUD       require this aud claim\n"
        "  --tls-cert PATH          serve HTTPS with this certificate (PEM)...\n"
        "  --tls-key PATH           ...and this private key (PEM)\n"
        "  --cors-origin ORIGIN     allow this browser origin (repeatable)\n"
        "  --web-root DIR           serve the web client under /web/ from DIR\n"
        "                           (default: the built or installed copy)\n"
        "\nLimits:\n"
        "  --rate-limit R           requests per second per user (default 0: no limit)\n"
        "  --rate-burst B           requests a user may burst (default 2 x R)\n"
        "  --max-user-requests N    concurrent requests per user (default 64)\n"
        "  --quota SIZE             stored bytes per user, e.g. 1G (default: no limit)\n"
        "  --max-connections N      open connections (default 1024)\n"
        "  --request-timeout S      a request body must arrive within S seconds (default 60)\n"
        "  --db-pool N              PostgreSQL connections (default: threads + 2)\n"
        "  --db-wait S              at start, wait up to S seconds for the database (default 0)\n"
        "  --max-connections-per-ip N  open connections per address, IPv6 per /64\n"
        "                           (default 128; 0 = no cap)\n"
        "  --exempt-loopback        do not cap connections from loopback addresses\n"
        "  --header-timeout S       the first request head, TLS handshake included,\n"
        "                           must arrive within S seconds (default 10)\n"
        "  --min-upload-rate SIZE   bytes per second a body over 1 MiB must keep up\n"
        "                           after 5 s, else 408 (default 16K; 0 = none)\n"
        "  --max-token-lifetime D   refuse tokens expiring more than D days ahead\n"
        "                           (default 366)\n"
        "  --quick-check-max SIZE   check stores up to SIZE for corrupt pages at start\n"
        "                           (default 1G; 0 = never)\n"
        "\nOperations (docs/operations.md):\n"
        "  --config FILE            read 'key = value' lines (long flag names) first;\n"
        "                           flags given here win\n"
        "  --log-format text|json   stderr log lines as text (default) or JSON\n"
        "  --log-level LEVEL        debug, info (default: with access lines), warn, error\n"
        "  --metrics-bind ADDR:PORT serve GET /metrics on this separate listener\n"
        "\nLive socket (WebSocket on /, docs/protocol.md):\n"
        "  --ws-max-sockets N       open live sockets, all users (default 512)\n"
        "  --ws-max-user-sockets N  open live sockets of one user (default 16)\n"
        "  --ws-ping-interval S     ping a socket silent for S seconds; drop it if\n"
        "                           the pong takes another S (default 30)\n"
        "  --ws-queue SIZE          frames waiting for one slow socket before it is\n"
        "                           closed with 1013 (default 2M)\n"
        "\nAdministration:\n"
        "  polysyncd token issue --user NAME [--ttl 30d] --jwt-secret-file PATH\n"
        "  polysyncd user list [--db URL]\n"
        "  polysyncd user delete NAME [--db URL] [--yes]\n"
        "  polysyncd token list|revoke ..., user disable|enable|rename ...\n"
        "  polysyncd devices list --user NAME [--json], devices forget --user NAME ID\n"
        "  (polysyncd token --help for all)\n"
        "  polysyncd import --user NAME FILE [--dry-run] [--db URL]\n"
        "  polysyncd export --user NAME [--output FILE] [--tombstones] [--db URL]\n"
        "  --help                   this text\n"
        "  --version                the version\n\n"
        "Docs: docs/operations.md\n");
}

enum {
    O_BIND = 256,
    O_PORT,
    O_DB,
    O_MAX_BODY,
    O_MAX_CHATS,
    O_SKEW,
    O_THREADS,
    O_CONN_TIMEOUT,
    O_RETENTION,
    O_PURGE_INTERVAL,
    O_DRAIN,
    O_INSECURE,
    O_HELP,
    O_VERSION,
    O_JWT_SECRET,
    O_JWT_KEY,
    O_JWT_ISS,
    O_JWT_AUD,
    O_TLS_CERT,
    O_TLS_KEY,
    O_CORS,
    O_RATE,
    O_BURST,
    O_USER_REQS,
    O_LARGE_REQS,
    O_QUOTA,
    O_MAX_CONN,
    O_REQ_TIMEOUT,
    O_DB_POOL,
    O_DB_WAIT,
    O_MAX_CONN_IP,
    O_EXEMPT_LOOPBACK,
    O_HEADER_TIMEOUT,
    O_MIN_UPLOAD_RATE,
    O_MAX_TOKEN_LIFETIME,
    O_QUICK_CHECK_MAX,
    O_WEB_ROOT,
    O_WS_MAX,
    O_WS_USER_MAX,
    O_WS_PING,
    O_WS_QUEUE,
    O_CONFIG,
    O_LOG_FORMAT,
    O_LOG_LEVEL,
    O_METRICS_BIND
};
static const struct option opts[] = {
    {"bind", required_argument, NULL, O_BIND},
    {"port", required_argument, NULL, O_PORT},
    {"db", required_argument, NULL, O_DB},
    {"max-body", required_argument, NULL, O_MAX_BODY},
    {"max-chats", required_argument, NULL, O_MAX_CHATS},
    {"max-clock-skew", required_argument, NULL, O_SKEW},
    {"threads", required_argument, NULL, O_THREADS},
    {"tombstone-retention", required_argument, NULL, O_RETENTION},
    {"purge-interval", required_argument, NULL, O_PURGE_INTERVAL},
    {"connection-timeout", required_argument, NULL, O_CONN_TIMEOUT},
    {"drain-timeout", required_argument, NULL, O_DRAIN},
    {"insecure-no-auth", no_argument, NULL, O_INSECURE},
    {"jwt-secret-file", required_argument, NULL, O_JWT_SECRET},
    {"jwt-public-key", required_argument, NULL, O_JWT_KEY},
    {"jwt-issuer", required_argument, NULL, O_JWT_ISS},
    {"jwt-audience", required_argument, NULL, O_JWT_AUD},
    {"tls-cert", required_argument, NULL, O_TLS_CERT},
    {"tls-key", required_argument, NULL, O_TLS_KEY},
    {"cors-origin", required_argument, NULL, O_CORS},
    {"rate-limit", required_argument, NULL, O_RATE},
    {"rate-burst", required_argument, NULL, O_BURST},
    {"max-user-requests", required_argument, NULL, O_USER_REQS},
    {"max-large-requests", required_argument, NULL, O_LARGE_REQS},
    {"quota", required_argument, NULL, O_QUOTA},
    {"max-connections", required_argument, NULL, O_MAX_CONN},
    {"request-timeout", required_argument, NULL, O_REQ_TIMEOUT},
    {"web-root", required_argument, NULL, O_WEB_ROOT},
    {"db-pool", required_argument, NULL, O_DB_POOL},
    {"db-wait", required_argument, NULL, O_DB_WAIT},
    {"max-connections-per-ip", required_argument, NULL, O_MAX_CONN_IP},
    {"exempt-loopback", no_argument, NULL, O_EXEMPT_LOOPBACK},
    {"header-timeout", required_argument, NULL, O_HEADER_TIMEOUT},
    {"min-upload-rate", required_argument, NULL, O_MIN_UPLOAD_RATE},
    {"max-token-lifetime", required_argument, NULL, O_MAX_TOKEN_LIFETIME},
    {"quick-check-max", required_argument, NULL, O_QUICK_CHECK_MAX},
    {"ws-max-sockets", required_argument, NULL, O_WS_MAX},
    {"ws-max-user-sockets", required_argument, NULL, O_WS_USER_MAX},
    {"ws-ping-interval", required_argument, NULL, O_WS_PING},
    {"ws-queue", required_argument, NULL, O_WS_QUEUE},
    {"config", required_argument, NULL, O_CONFIG},
    {"log-format", required_argument, NULL, O_LOG_FORMAT},
    {"log-level", required_argument, NULL, O_LOG_LEVEL},
    {"metrics-bind", required_argument, NULL, O_METRICS_BIND},
    {"help", no_argument, NULL, O_HELP},
    {"version", no_argument, NULL, O_VERSION},
    {NULL, 0, NULL, 0},
};

/* Applies flags; `where` ("FILE:LINE") names a config file's line in
 * errors, NULL for the command line. */
static ps_config_action parse_flags(ps_config *cfg, int argc, char **argv, FILE *out, FILE *err_out,
                                    bool *port_given, const char *where)
{
    unsigned long v;
    optind = 0; /* 0, not 1: glibc then resets all of getopt's state */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *bad = NULL;
        switch (c) {
        case O_BIND:
            if (strlen(optarg) >= sizeof cfg->bind)
                bad = "--bind";
            else
                snprintf(cfg->bind, sizeof cfg->bind, "%s", optarg);
            break;
        case O_PORT:
            if (!parse_uint(optarg, 65535, &v))
                bad = "--port";
            else
                cfg->port = (unsigned)v;
            *port_given = true;
            break;
        case O_DB:
            if (strlen(optarg) >= sizeof cfg->db_url)
                bad = "--db";
            else
                snprintf(cfg->db_url, sizeof cfg->db_url, "%s", optarg);
            break;
        case O_MAX_BODY:
            /* json-c takes int lengths: a body must stay under 2 GiB */
            if (!parse_size(optarg, &cfg->max_body_bytes) || cfg->max_body_bytes == 0 ||
                cfg->max_body_bytes > MAX_BODY_LIMIT)
                bad = "--max-body";
            break;
        case O_MAX_CHATS:
            if (!parse_uint(optarg, 10000000, &v) || v == 0)
                bad = "--max-chats";
            else
                cfg->limits.max_chats = v;
            break;
        case O_SKEW:
            if (!parse_uint(optarg, 365ul * 86400, &v))
                bad = "--max-clock-skew";
            else
                cfg->max_skew_ms = (int64_t)v * 1000;
            break;
        case O_RETENTION:
            if (!parse_uint(optarg, 36500, &v) || v == 0)
                bad = "--tombstone-retention";
            else
                cfg->tombstone_retention_ms = (int64_t)v * 86400 * 1000;
            break;
        case O_PURGE_INTERVAL:
            if (!parse_uint(optarg, 7ul * 86400, &v) || v == 0)
                bad = "--purge-interval";
            else
                cfg->purge_interval_s = (unsigned)v;
            break;
        case O_THREADS:
            if (!parse_uint(optarg, 256, &v) || v == 0)
                bad = "--threads";
            else
                cfg->threads = (unsigned)v;
            break;
        case O_CONN_TIMEOUT:
            if (!parse_uint(optarg, 86400, &v) || v == 0)
                bad = "--connection-timeout";
            else
                cfg->connection_timeout_s = (unsigned)v;
            break;
        case O_DRAIN:
            if (!parse_uint(optarg, 3600, &v))
                bad = "--drain-timeout";
            else
                cfg->drain_timeout_s = (unsigned)v;
            break;
        case O_INSECURE:
            cfg->insecure_no_auth = true;
            break;
        case O_JWT_SECRET:
            cfg->jwt_secret_file = optarg;
            break;
        case O_JWT_KEY:
            cfg->jwt_public_key = optarg;
            break;
        case O_JWT_ISS:
            cfg->jwt_issuer = optarg;
            break;
        case O_JWT_AUD:
            cfg->jwt_audience = optarg;
            break;
        case O_TLS_CERT:
            cfg->tls_cert = optarg;
            break;
        case O_TLS_KEY:
            cfg->tls_key = optarg;
            break;
        case O_CORS:
            if (cfg->n_cors_origins == PS_MAX_CORS_ORIGINS || !*optarg)
                bad = "--cors-origin";
            else
                cfg->cors_origins[cfg->n_cors_origins++] = optarg;
            break;
        case O_WEB_ROOT:
            cfg->web_root = optarg;
            break;
        case O_RATE:
        case O_BURST:
            if (!parse_uint(optarg, 1000000, &v))
                bad = c == O_RATE ? "--rate-limit" : "--rate-burst";
            else if (c == O_RATE)
                cfg->rate_limit = (double)v;
            else
                cfg->rate_burst = (double)v;
            break;
        case O_USER_REQS:
            if (!parse_uint(optarg, 100000, &v) || v == 0)
                bad = "--max-user-requests";
            else
                cfg->max_user_requests = (unsigned)v;
            break;
        case O_LARGE_REQS:
            if (!parse_uint(optarg, 1024, &v) || v == 0)
                bad = "--max-large-requests";
            else
                cfg->max_large_requests = (unsigned)v;
            break;
        case O_QUOTA:
            if (!parse_size(optarg, &cfg->quota_bytes) || cfg->quota_bytes == 0)
                bad = "--quota";
            break;
        case O_MAX_CONN:
            if (!parse_uint(optarg, 1000000, &v) || v == 0)
                bad = "--max-connections";
            else
                cfg->max_connections = (unsigned)v;
            break;
        case O_REQ_TIMEOUT:
            if (!parse_uint(optarg, 86400, &v) || v == 0)
                bad = "--request-timeout";
            else
                cfg->request_timeout_s = (unsigned)v;
            break;
        case O_DB_POOL:
            if (!parse_uint(optarg, 1000, &v) || v == 0)
                bad = "--db-pool";
            else
                cfg->db_pool = (unsigned)v;
            break;
        case O_DB_WAIT:
            if (!parse_uint(optarg, 86400, &v))
                bad = "--db-wait";
            else
                cfg->db_wait_s = (unsigned)v;
            break;
        case O_CONFIG:
            if (where)
                bad = "--config (a config file cannot name another)";
            else
                cfg->config_file = optarg;
            break;
        case O_LOG_FORMAT: {
            ps_log_format f;
            if (!ps_log_parse_format(optarg, &f))
                bad = "--log-format (text or json)";
            else
                cfg->log_format = f;
            break;
        }
        case O_LOG_LEVEL: {
            ps_log_level l;
            if (!ps_log_parse_level(optarg, &l))
                bad = "--log-level (debug, info, warn or error)";
            else
                cfg->log_level = l;
            break;
        }
        case O_METRICS_BIND:
            if (!*optarg || strlen(optarg) >= sizeof cfg->metrics_bind || !strrchr(optarg, ':'))
                bad = "--metrics-bind (ADDR:PORT)";
            else
                snprintf(cfg->metrics_bind, sizeof cfg->metrics_bind, "%s", optarg);
            break;
        case O_MAX_CONN_IP:
            if (!parse_uint(optarg, 1000000, &v))
                bad = "--max-connections-per-ip";
            else
                cfg->max_connections_per_ip = (unsigned)v;
            break;
        case O_EXEMPT_LOOPBACK:
            cfg->exempt_loopback = true;
            break;
        case O_HEADER_TIMEOUT:
            if (!parse_uint(optarg, 3600, &v) || v == 0)
                bad = "--header-timeout";
            else
                cfg->header_timeout_s = (unsigned)v;
            break;
        case O_MIN_UPLOAD_RATE:
            if (!parse_size(optarg, &cfg->min_upload_rate))
                bad = "--min-upload-rate";
            break;
        case O_MAX_TOKEN_LIFETIME:
            if (!parse_uint(optarg, 36500, &v) || v == 0)
                bad = "--max-token-lifetime";
            else
                cfg->max_token_lifetime_s = (int64_t)v * 86400;
            break;
        case O_QUICK_CHECK_MAX:
            if (!parse_size(optarg, &cfg->quick_check_max_bytes))
                bad = "--quick-check-max";
            break;
        case O_WS_MAX:
        case O_WS_USER_MAX:
            /* 0 turns the live socket off (every upgrade refused) */
            if (!parse_uint(optarg, 1000000, &v))
                bad = c == O_WS_MAX ? "--ws-max-sockets" : "--ws-max-user-sockets";
            else if (c == O_WS_MAX)
                cfg->ws_max_sockets = (unsigned)v;
            else
                cfg->ws_max_user_sockets = (unsigned)v;
            break;
        case O_WS_PING:
            if (!parse_uint(optarg, 86400, &v) || v == 0)
                bad = "--ws-ping-interval";
            else
                cfg->ws_ping_interval_s = (unsigned)v;
            break;
        case O_WS_QUEUE:
            if (!parse_size(optarg, &cfg->ws_queue_bytes) || cfg->ws_queue_bytes < 1024)
                bad = "--ws-queue";
            break;
        case O_HELP:
            usage(out);
            return PS_CONFIG_EXIT_OK;
        case O_VERSION:
            fprintf(out, "polysyncd %s\n", PS_VERSION);
            return PS_CONFIG_EXIT_OK;
        default:
            if (where) {
                fprintf(err_out, "polysyncd: %s: unknown key '%s'\n", where, argv[1] + 2);
                return PS_CONFIG_EXIT_USAGE;
            }
            fprintf(err_out, "polysyncd: unknown or incomplete option '%s'\n", argv[optind - 1]);
            fprintf(err_out, "Try 'polysyncd --help'.\n");
            return PS_CONFIG_EXIT_USAGE;
        }
        if (bad) {
            fprintf(err_out, "polysyncd: %s%sinvalid value '%s' for %s\n", where ? where : "",
                    where ? ": " : "", optarg, bad);
            return PS_CONFIG_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(err_out, "polysyncd: unexpected argument '%s'\nTry 'polysyncd --help'.\n",
                argv[optind]);
        return PS_CONFIG_EXIT_USAGE;
    }
    return PS_CONFIG_RUN;
}

/* The config file's text: values point into it, so it lives as long as the
 * process (reachable from here, so not a leak). */
static char *g_config_text;

static const struct option *find_option(const char *name)
{
    for (const struct option *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

/* Reads `path`: one `key = value` per line, keys the long flag names
 * without "--", `#` starts a comment line, a flag without a value takes
 * true or false. */
static ps_config_action parse_file(ps_config *cfg, const char *path, FILE *out, FILE *err_out,
                                   bool *port_given)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(err_out, "polysyncd: cannot read config file %s: %s\n", path, strerror(errno));
        return PS_CONFIG_EXIT_USAGE;
    }
    size_t cap = 0;
    ssize_t n = getdelim(&g_config_text, &cap, '\0', f);
    fclose(f);
    if (n < 0) {
        fprintf(err_out, "polysyncd: cannot read config file %s\n", path);
        return PS_CONFIG_EXIT_USAGE;
    }
    unsigned lineno = 0;
    char *next = g_config_text;
    while (next) {
        char *line = next;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        char where[PATH_MAX + 16];
        snprintf(where, sizeof where, "%s:%u", path, lineno);
        line = trim(line);
        if (*line == '\0' || *line == '#')
            continue;
        char *eq = strchr(line, '=');
        if (!eq) {
            fprintf(err_out, "polysyncd: %s: expected 'key = value'\n", where);
            return PS_CONFIG_EXIT_USAGE;
        }
        *eq = '\0';
        char *key = trim(line), *value = trim(eq + 1);
        const struct option *o = find_option(key);
        if (!o || o->val == O_HELP || o->val == O_VERSION) {
            fprintf(err_out, "polysyncd: %s: unknown key '%s'\n", where, key);
            return PS_CONFIG_EXIT_USAGE;
        }
        char flag[128];
        snprintf(flag, sizeof flag, "--%s", key);
        char *args[] = {"polysyncd", flag, value, NULL};
        int argc = 3;
        if (o->has_arg == no_argument) {
            if (strcmp(value, "false") == 0)
                continue;
            if (strcmp(value, "true") != 0) {
                fprintf(err_out, "polysyncd: %s: %s takes true or false\n", where, key);
                return PS_CONFIG_EXIT_USAGE;
            }
            argc = 2;
            args[2] = NULL;
        }
        ps_config_action a = parse_flags(cfg, argc, args, out, err_out, port_given, where);
        if (a != PS_CONFIG_RUN)
            return a;
    }
    return PS_CONFIG_RUN;
}

ps_config_action ps_config_parse(ps_config *cfg, int argc, char **argv, FILE *out, FILE *err_out)
{
    bool port_given = false;
    /* The file first, so the flags given override it: find --config alone
     * (a first pass that changes nothing else), then read the file, then
     * apply the flags. */
    ps_config scratch = *cfg;
    FILE *quiet = fopen("/dev/null", "w");
    ps_config_action a = parse_flags(&scratch, argc, argv, quiet ? quiet : err_out,
                                     quiet ? quiet : err_out, &port_given, NULL);
    if (quiet)
        fclose(quiet);
    port_given = false;
    if (a == PS_CONFIG_RUN && scratch.config_file) {
        a = parse_file(cfg, scratch.config_file, out, err_out, &port_given);
        if (a != PS_CONFIG_RUN)
            return a;
    }
    a = parse_flags(cfg, argc, argv, out, err_out, &port_given, NULL);
    if (a != PS_CONFIG_RUN)
        return a;
    unsigned long v;
    const char *env_port = getenv("CHAT_SYNC_PORT");
    if (!port_given && env_port && *env_port) {
        if (!parse_uint(env_port, 65535, &v)) {
            fprintf(err_out, "polysyncd: CHAT_SYNC_PORT must be a port number, not '%s'\n",
                    env_port);
            return PS_CONFIG_EXIT_USAGE;
        }
        cfg->port = (unsigned)v;
    }
    return ps_config_check(cfg, err_out);
}

ps_config_action ps_config_check(const ps_config *cfg, FILE *err_out)
{
    bool auth = ps_config_has_auth(cfg);
    if (cfg->jwt_secret_file && cfg->jwt_public_key) {
        fprintf(err_out, "polysyncd: give --jwt-secret-file or --jwt-public-key, not both\n");
        return PS_CONFIG_EXIT_USAGE;
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        fprintf(err_out, "polysyncd: --tls-cert and --tls-key go together\n");
        return PS_CONFIG_EXIT_USAGE;
    }
    for (unsigned i = 0; i < cfg->n_cors_origins; i++) {
        if (strcmp(cfg->cors_origins[i], "*") == 0 && (auth || !ps_addr_is_loopback(cfg->bind))) {
            fprintf(err_out, "polysyncd: --cors-origin '*' would let any web page use this "
                             "server; it is allowed only without auth on loopback. Name the "
                             "origins of your web apps instead.\n");
            return PS_CONFIG_EXIT_USAGE;
        }
    }
    if (!auth && !cfg->insecure_no_auth && !ps_addr_is_loopback(cfg->bind)) {
        fprintf(err_out,
                "polysyncd: refusing to listen on %s without authentication: anyone who can "
                "reach it could read and change every chat.\n"
                "Bind to 127.0.0.1, configure --jwt-secret-file (docs/security.md), or pass "
                "--insecure-no-auth if a proxy in front of it authenticates.\n",
                cfg->bind);
        return PS_CONFIG_EXIT_USAGE;
    }
    return PS_CONFIG_RUN;
}
