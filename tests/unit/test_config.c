/*
 * polysyncd's settings (server/config.h): the defaults, --port and the
 * CHAT_SYNC_PORT environment variable (the flag wins), --max-body with plain
 * bytes and K/M/G suffixes, the other numeric flags (including
 * --tombstone-retention in days) and their bounds, --help
 * and --version, every kind of bad value or argument answered with
 * PS_CONFIG_EXIT_USAGE and a message on the error stream, the refusal to
 * bind beyond loopback without --insecure-no-auth, and ps_addr_is_loopback.
 */
#include "test_util.h"
#include "server/config.h"

#include <getopt.h>
#include <stdlib.h>

typedef struct parsed {
    ps_config cfg;
    ps_config_action action;
    char out[4096];
    char err[4096];
} parsed;

/* Parses a NULL-terminated flag list (argv[0] added) from defaults. */
static parsed *run_args(const char *const *args)
{
    static parsed p;
    memset(&p, 0, sizeof p);
    char *argv[32];
    char storage[32][256];
    int argc = 0;
    snprintf(storage[argc], sizeof storage[argc], "polysyncd");
    argv[argc] = storage[argc];
    argc++;
    for (; args[argc - 1]; argc++) {
        assert_true(argc < 31);
        snprintf(storage[argc], sizeof storage[argc], "%s", args[argc - 1]);
        argv[argc] = storage[argc];
    }
    argv[argc] = NULL;
    FILE *out = fmemopen(p.out, sizeof p.out - 1, "w");
    FILE *err = fmemopen(p.err, sizeof p.err - 1, "w");
    assert_non_null(out);
    assert_non_null(err);
    ps_config_defaults(&p.cfg);
    p.action = ps_config_parse(&p.cfg, argc, argv, out, err);
    fclose(out);
    fclose(err);
    return &p;
}

#define PARSE(...) run_args((const char *const[]){__VA_ARGS__, NULL})

/* glibc's getopt keeps a pointer into the previous argv between calls; only
 * optind = 0 drops it. Each test starts from a clean getopt so that one
 * test's arguments cannot leak into the next (see parse_twice_*). */
static void reset_getopt(void)
{
    char arg0[] = "x";
    char *argv[] = {arg0, NULL};
    optind = 0;
    opterr = 0;
    while (getopt(1, argv, "") != -1)
        ;
}

static int setup(void **state)
{
    unsetenv("CHAT_SYNC_PORT");
    reset_getopt();
    return 0;
}

static void defaults(void **state)
{
    ps_config cfg;
    memset(&cfg, 0xab, sizeof cfg);
    ps_config_defaults(&cfg);
    assert_string_equal(cfg.bind, "127.0.0.1");
    assert_int_equal(cfg.port, 4001);
    assert_string_equal(cfg.db_url, "sqlite:./data/polysync.db");
    assert_int_equal(cfg.max_body_bytes, 256u * 1024 * 1024);
    assert_int_equal(cfg.max_skew_ms, 300000);
    assert_int_equal(cfg.tombstone_retention_ms, 90LL * 86400 * 1000);
    assert_true(cfg.threads >= 1);
    assert_false(cfg.insecure_no_auth);
    assert_int_equal(cfg.limits.max_chats, ps__limits_default().max_chats);
    assert_int_equal(cfg.limits.max_id_bytes, ps__limits_default().max_id_bytes);

    parsed *p = run_args((const char *const[]){NULL});
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_int_equal(p->cfg.port, 4001);
    assert_string_equal(p->cfg.bind, "127.0.0.1");
    assert_string_equal(p->err, "");
}

static void port_flag(void **state)
{
    parsed *p = PARSE("--port", "8080");
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_int_equal(p->cfg.port, 8080);
    p = PARSE("--port=9000");
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_int_equal(p->cfg.port, 9000);
    p = PARSE("--port", "0");
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_int_equal(p->cfg.port, 0);
    p = PARSE("--port", "65535");
    assert_int_equal(p->cfg.port, 65535);
}

static void port_from_env_and_flag_wins(void **state)
{
    setenv("CHAT_SYNC_PORT", "5005", 1);
    parsed *p = run_args((const char *const[]){NULL});
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_int_equal(p->cfg.port, 5005);
    p = PARSE("--port", "6006");
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_int_equal(p->cfg.port, 6006);
    /* empty means unset */
    setenv("CHAT_SYNC_PORT", "", 1);
    p = run_args((const char *const[]){NULL});
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_int_equal(p->cfg.port, 4001);
    /* a bad value is reported, naming the variable */
    setenv("CHAT_SYNC_PORT", "http", 1);
    p = run_args((const char *const[]){NULL});
    assert_int_equal(p->action, PS_CONFIG_EXIT_USAGE);
    assert_non_null(strstr(p->err, "CHAT_SYNC_PORT"));
    setenv("CHAT_SYNC_PORT", "70000", 1);
    p = run_args((const char *const[]){NULL});
    assert_int_equal(p->action, PS_CONFIG_EXIT_USAGE);
    /* with --port given, the environment is not consulted at all */
    p = PARSE("--port", "4100");
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_int_equal(p->cfg.port, 4100);
    unsetenv("CHAT_SYNC_PORT");
}

static void max_body_sizes(void **state)
{
    static const struct {
        const char *arg;
        size_t bytes;
    } cases[] = {
        {"1", 1},
        {"1000", 1000},
        {"512k", 512u * 1024},
        {"512K", 512u * 1024},
        {"16m", 16u * 1024 * 1024},
        {"64M", 64u * 1024 * 1024},
        {"1G", 1024u * 1024 * 1024},
        {"1g", 1024u * 1024 * 1024},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        parsed *p = PARSE("--max-body", cases[i].arg);
        if (p->action != PS_CONFIG_RUN || p->cfg.max_body_bytes != cases[i].bytes)
            fail_msg("--max-body %s: action %d, %zu bytes, want %zu", cases[i].arg, p->action,
                     p->cfg.max_body_bytes, cases[i].bytes);
    }
    /* json-c parses at most 2 GiB: the cap is 1 GiB */
    assert_int_equal(PARSE("--max-body", "1025m")->action, PS_CONFIG_EXIT_USAGE);
    assert_int_equal(PARSE("--max-body", "3g")->action, PS_CONFIG_EXIT_USAGE);
}

static void bad_values_are_usage_errors(void **state)
{
    static const char *const bad[][2] = {
        {"--port", "http"},
        {"--port", "-1"},
        {"--port", "65536"},
        {"--port", "80x"},
        {"--port", ""},
        {"--port", "99999999999999999999"},
        {"--max-body", "0"},
        {"--max-body", "-1"},
        {"--max-body", " -1"},
        {"--max-body", "1.5M"},
        {"--max-body", "10MB"},
        {"--max-body", "M"},
        {"--max-body", ""},
        {"--max-body", "2T"},
        {"--max-body", "17179869184G"},
        {"--max-body", "99999999999999999999"},
        {"--max-chats", "0"},
        {"--max-chats", "x"},
        {"--max-chats", "10000001"},
        {"--threads", "0"},
        {"--threads", "257"},
        {"--threads", "-2"},
        {"--connection-timeout", "0"},
        {"--connection-timeout", "86401"},
        {"--drain-timeout", "3601"},
        {"--max-clock-skew", "31536001"},
        {"--max-clock-skew", "-5"},
        {"--tombstone-retention", "0"},
        {"--tombstone-retention", "36501"},
        {"--tombstone-retention", "1d"},
        {"--bind", "0123456789012345678901234567890123456789012345678901234567890123"},
    };
    int wrong = 0;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        parsed *p = PARSE(bad[i][0], bad[i][1]);
        if (p->action != PS_CONFIG_EXIT_USAGE) {
            print_error("%s '%s' was accepted (max_body=%zu port=%u)\n", bad[i][0], bad[i][1],
                        p->cfg.max_body_bytes, p->cfg.port);
            wrong++;
        } else if (!strstr(p->err, bad[i][0])) {
            print_error("%s '%s': error does not name the flag: %s\n", bad[i][0], bad[i][1],
                        p->err);
            wrong++;
        }
    }
    assert_int_equal(wrong, 0);
}

static void other_flags(void **state)
{
    parsed *p = PARSE("--db", "sqlite:/tmp/x.db", "--max-chats", "10", "--max-clock-skew", "60",
                      "--threads", "3", "--connection-timeout", "5", "--drain-timeout", "0",
                      "--tombstone-retention", "30");
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_string_equal(p->cfg.db_url, "sqlite:/tmp/x.db");
    assert_int_equal(p->cfg.limits.max_chats, 10);
    assert_int_equal(p->cfg.max_skew_ms, 60000);
    assert_int_equal(p->cfg.threads, 3);
    assert_int_equal(p->cfg.connection_timeout_s, 5);
    assert_int_equal(p->cfg.drain_timeout_s, 0);
    assert_int_equal(p->cfg.tombstone_retention_ms, 30LL * 86400 * 1000);
    /* the last of a repeated flag wins */
    p = PARSE("--port", "1", "--port", "2");
    assert_int_equal(p->cfg.port, 2);
}

/* Issue 16's flags: documented defaults (docs/operations.md), values, and
 * what each refuses. */
static void edge_flags(void **state)
{
    ps_config cfg;
    ps_config_defaults(&cfg);
    assert_int_equal(cfg.max_connections_per_ip, 128);
    assert_false(cfg.exempt_loopback);
    assert_int_equal(cfg.header_timeout_s, 10);
    assert_int_equal(cfg.min_upload_rate, 16 * 1024);
    assert_int_equal(cfg.max_token_lifetime_s, 366LL * 86400);
    assert_int_equal(cfg.quick_check_max_bytes, 1024u * 1024 * 1024);
    parsed *p =
        PARSE("--max-connections-per-ip", "0", "--exempt-loopback", "--header-timeout", "3",
              "--min-upload-rate", "64K", "--max-token-lifetime", "30", "--quick-check-max", "0");
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_int_equal(p->cfg.max_connections_per_ip, 0);
    assert_true(p->cfg.exempt_loopback);
    assert_int_equal(p->cfg.header_timeout_s, 3);
    assert_int_equal(p->cfg.min_upload_rate, 64 * 1024);
    assert_int_equal(p->cfg.max_token_lifetime_s, 30LL * 86400);
    assert_int_equal(p->cfg.quick_check_max_bytes, 0);
    static const char *const bad[][2] = {
        {"--max-connections-per-ip", "-1"}, {"--max-connections-per-ip", "x"},
        {"--header-timeout", "0"},          {"--header-timeout", "3601"},
        {"--min-upload-rate", "fast"},      {"--max-token-lifetime", "0"},
        {"--max-token-lifetime", "1y"},     {"--quick-check-max", "-1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p = PARSE(bad[i][0], bad[i][1]);
        assert_int_equal(p->action, PS_CONFIG_EXIT_USAGE);
        assert_non_null(strstr(p->err, bad[i][0]));
    }
}

/* The live socket's flags (docs/operations.md): defaults and values. */
static void websocket_flags(void **state)
{
    parsed *p = PARSE("--port", "4001");
    assert_int_equal(p->cfg.ws_max_sockets, 512);
    assert_int_equal(p->cfg.ws_max_user_sockets, 16);
    assert_int_equal(p->cfg.ws_ping_interval_s, 30);
    assert_int_equal(p->cfg.ws_queue_bytes, 2 * 1024 * 1024);
    p = PARSE("--ws-max-sockets", "7", "--ws-max-user-sockets", "0", "--ws-ping-interval", "1",
              "--ws-queue", "64k");
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_int_equal(p->cfg.ws_max_sockets, 7);
    assert_int_equal(p->cfg.ws_max_user_sockets, 0);
    assert_int_equal(p->cfg.ws_ping_interval_s, 1);
    assert_int_equal(p->cfg.ws_queue_bytes, 64 * 1024);
    static const char *const bad[][2] = {
        {"--ws-max-sockets", "-1"}, {"--ws-max-user-sockets", "x"}, {"--ws-ping-interval", "0"},
        {"--ws-ping-interval", "86401"}, {"--ws-queue", "1000"},    {"--ws-queue", "2X"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = PARSE(bad[i][0], bad[i][1]);
        assert_int_equal(p->action, PS_CONFIG_EXIT_USAGE);
        assert_non_null(strstr(p->err, bad[i][0]));
    }
}

static void bad_arguments_are_usage_errors(void **state)
{
    parsed *p = PARSE("--no-such-flag");
    assert_int_equal(p->action, PS_CONFIG_EXIT_USAGE);
    assert_non_null(strstr(p->err, "--no-such-flag"));
    p = PARSE("--port");
    assert_int_equal(p->action, PS_CONFIG_EXIT_USAGE);
    p = PARSE("stray");
    assert_int_equal(p->action, PS_CONFIG_EXIT_USAGE);
    assert_non_null(strstr(p->err, "stray"));
    p = PARSE("-p", "80");
    assert_int_equal(p->action, PS_CONFIG_EXIT_USAGE);
    p = PARSE("--insecure-no-auth=yes");
    assert_int_equal(p->action, PS_CONFIG_EXIT_USAGE);
}

/* ps_config_parse resets getopt itself (it sets optind), so a second parse
 * in one process must not depend on what the first one saw. After an unknown
 * short option glibc still points into the old argv, and optind = 1 does not
 * clear that: the next parse reads the new argv through the stale pointer. */
static void parse_twice_after_unknown_short_option(void **state)
{
    parsed *p = PARSE("-p", "80");
    assert_int_equal(p->action, PS_CONFIG_EXIT_USAGE);
    p = PARSE("--help");
    if (p->action != PS_CONFIG_EXIT_OK)
        fail_msg("second parse: action %d, error: %s", p->action, p->err);
    p = PARSE("--port", "8080");
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_int_equal(p->cfg.port, 8080);
}

static void help_and_version(void **state)
{
    parsed *p = PARSE("--help");
    assert_int_equal(p->action, PS_CONFIG_EXIT_OK);
    assert_non_null(strstr(p->out, "Usage: polysyncd"));
    assert_non_null(strstr(p->out, "--insecure-no-auth"));
    assert_string_equal(p->err, "");
    p = PARSE("--version");
    assert_int_equal(p->action, PS_CONFIG_EXIT_OK);
    assert_string_equal(p->out, "polysyncd " PS_VERSION "\n");
}

static void non_loopback_bind_needs_insecure_no_auth(void **state)
{
    static const char *const refused[] = {
        "0.0.0.0", "192.168.1.10", "::", "10.0.0.1", "example.com", "128.0.0.1"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        parsed *p = PARSE("--bind", refused[i]);
        if (p->action != PS_CONFIG_EXIT_USAGE)
            fail_msg("--bind %s without auth was accepted", refused[i]);
        assert_non_null(strstr(p->err, refused[i]));
        assert_non_null(strstr(p->err, "--insecure-no-auth"));
        p = PARSE("--bind", refused[i], "--insecure-no-auth");
        assert_int_equal(p->action, PS_CONFIG_RUN);
        assert_true(p->cfg.insecure_no_auth);
        assert_string_equal(p->cfg.bind, refused[i]);
    }
    static const char *const loopback[] = {"127.0.0.1", "127.1.2.3", "::1", "localhost"};
    for (size_t i = 0; i < sizeof loopback / sizeof *loopback; i++) {
        parsed *p = PARSE("--bind", loopback[i]);
        if (p->action != PS_CONFIG_RUN)
            fail_msg("--bind %s refused: %s", loopback[i], p->err);
    }
}

/* CORS "*" without being told only in the open local mode. */
static void any_origin_only_open_and_local(void **state)
{
    parsed *p = PARSE("--port", "0");
    assert_true(ps_config_cors_any_origin(&p->cfg));
    p = PARSE("--bind", "0.0.0.0", "--insecure-no-auth");
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_false(ps_config_cors_any_origin(&p->cfg));
    p = PARSE("--jwt-secret-file", "/nonexistent/secret");
    assert_int_equal(p->action, PS_CONFIG_RUN);
    assert_false(ps_config_cors_any_origin(&p->cfg));
    p = PARSE("--cors-origin", "https://app.example");
    assert_false(ps_config_cors_any_origin(&p->cfg));
}

static void loopback_addresses(void **state)
{
    assert_true(ps_addr_is_loopback("127.0.0.1"));
    assert_true(ps_addr_is_loopback("127.255.255.254"));
    assert_true(ps_addr_is_loopback("::1"));
    assert_true(ps_addr_is_loopback("0:0:0:0:0:0:0:1"));
    assert_true(ps_addr_is_loopback("localhost"));
    assert_false(ps_addr_is_loopback("0.0.0.0"));
    assert_false(ps_addr_is_loopback("126.0.0.1"));
    assert_false(ps_addr_is_loopback("::"));
    assert_false(ps_addr_is_loopback("::2"));
    assert_false(ps_addr_is_loopback(""));
    assert_false(ps_addr_is_loopback("localhost.evil.com"));
    assert_false(ps_addr_is_loopback("127.0.0.1.nip.io"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(defaults, setup),
        cmocka_unit_test_setup(port_flag, setup),
        cmocka_unit_test_setup(port_from_env_and_flag_wins, setup),
        cmocka_unit_test_setup(max_body_sizes, setup),
        cmocka_unit_test_setup(bad_values_are_usage_errors, setup),
        cmocka_unit_test_setup(other_flags, setup),
        cmocka_unit_test_setup(edge_flags, setup),
        cmocka_unit_test_setup(websocket_flags, setup),
        cmocka_unit_test_setup(bad_arguments_are_usage_errors, setup),
        cmocka_unit_test_setup(help_and_version, setup),
        cmocka_unit_test_setup(non_loopback_bind_needs_insecure_no_auth, setup),
        cmocka_unit_test_setup(loopback_addresses, setup),
        cmocka_unit_test_setup(any_origin_only_open_and_local, setup),
        cmocka_unit_test_setup(parse_twice_after_unknown_short_option, setup),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
