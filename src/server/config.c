/* Flag parsing for polysyncd (getopt_long); see config.h. */
#include "server/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
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
    cfg->max_body_bytes = 64 * MIB;
    cfg->max_response_bytes = 1024 * MIB;
    cfg->max_skew_ms = 5 * 60 * 1000;
    cfg->tombstone_retention_ms = 90LL * 86400 * 1000;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cpus > 0 ? (unsigned)cpus : 2;
    cfg->connection_timeout_s = 30;
    cfg->drain_timeout_s = 30;
    cfg->limits = ps_limits_default();
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
    case '\0': break;
    case 'k': case 'K': mult = 1024ull; end++; break;
    case 'm': case 'M': mult = 1024ull * 1024; end++; break;
    case 'g': case 'G': mult = 1024ull * 1024 * 1024; end++; break;
    default: return false;
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
    fprintf(f,
            "Usage: polysyncd [OPTIONS]\n"
            "The polysync chat-history sync server.\n\n"
            "  --bind ADDR              address to listen on (default 127.0.0.1)\n"
            "  --port N                 port (default 4001, or env CHAT_SYNC_PORT; 0 = any)\n"
            "  --db URL                 store: sqlite:PATH (default sqlite:./data/polysync.db)\n"
            "  --max-body SIZE          largest request body, e.g. 64M (default 64M, max 1G)\n"
            "  --max-chats N            most chats or deletions in one request (default 50000)\n"
            "  --max-clock-skew SECONDS clamp client times later than now + this (default 300)\n"
            "  --tombstone-retention D  keep deleted chats' tombstones D days (default 90)\n"
            "  --threads N              HTTP worker threads (default: number of CPUs)\n"
            "  --connection-timeout S   close idle or stalled connections after S (default 30)\n"
            "  --drain-timeout S        on SIGTERM, wait this long for requests (default 30)\n"
            "  --insecure-no-auth       allow a non-loopback --bind without authentication\n"
            "  --help                   this text\n"
            "  --version                the version\n\n"
            "Docs: docs/operations.md\n");
}

ps_config_action ps_config_parse(ps_config *cfg, int argc, char **argv, FILE *out,
                                 FILE *err_out)
{
    enum { O_BIND = 256, O_PORT, O_DB, O_MAX_BODY, O_MAX_CHATS, O_SKEW, O_THREADS, O_CONN_TIMEOUT, O_RETENTION,
           O_DRAIN, O_INSECURE, O_HELP, O_VERSION };
    static const struct option opts[] = {
        {"bind", required_argument, NULL, O_BIND},
        {"port", required_argument, NULL, O_PORT},
        {"db", required_argument, NULL, O_DB},
        {"max-body", required_argument, NULL, O_MAX_BODY},
        {"max-chats", required_argument, NULL, O_MAX_CHATS},
        {"max-clock-skew", required_argument, NULL, O_SKEW},
        {"threads", required_argument, NULL, O_THREADS},
        {"tombstone-retention", required_argument, NULL, O_RETENTION},
        {"connection-timeout", required_argument, NULL, O_CONN_TIMEOUT},
        {"drain-timeout", required_argument, NULL, O_DRAIN},
        {"insecure-no-auth", no_argument, NULL, O_INSECURE},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    unsigned long v;
    bool port_given = false;
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
            port_given = true;
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
        case O_HELP:
            usage(out);
            return PS_CONFIG_EXIT_OK;
        case O_VERSION:
            fprintf(out, "polysyncd %s\n", PS_VERSION);
            return PS_CONFIG_EXIT_OK;
        default:
            fprintf(err_out, "polysyncd: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            fprintf(err_out, "Try 'polysyncd --help'.\n");
            return PS_CONFIG_EXIT_USAGE;
        }
        if (bad) {
            fprintf(err_out, "polysyncd: invalid value '%s' for %s\n", optarg, bad);
            return PS_CONFIG_EXIT_USAGE;
        }
    }
    const char *env_port = getenv("CHAT_SYNC_PORT");
    if (!port_given && env_port && *env_port) {
        if (!parse_uint(env_port, 65535, &v)) {
            fprintf(err_out, "polysyncd: CHAT_SYNC_PORT must be a port number, not '%s'\n",
                    env_port);
            return PS_CONFIG_EXIT_USAGE;
        }
        cfg->port = (unsigned)v;
    }
    if (optind < argc) {
        fprintf(err_out, "polysyncd: unexpected argument '%s'\nTry 'polysyncd --help'.\n",
                argv[optind]);
        return PS_CONFIG_EXIT_USAGE;
    }
    if (!cfg->insecure_no_auth && !ps_addr_is_loopback(cfg->bind)) {
        fprintf(err_out,
                "polysyncd: refusing to listen on %s without authentication: anyone who can "
                "reach it could read and change every chat.\n"
                "Bind to 127.0.0.1, or pass --insecure-no-auth if a proxy in front of it "
                "authenticates.\n",
                cfg->bind);
        return PS_CONFIG_EXIT_USAGE;
    }
    return PS_CONFIG_RUN;
}
