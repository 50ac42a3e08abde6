/*
 * polysyncd: parse flags, open the store, serve until SIGTERM/SIGINT, then
 * drain in-flight requests and exit 0; SIGHUP re-reads the TLS certificate
 * and key. Signals are blocked in every thread and taken here with
 * sigwait(), so no handler runs inside the server.
 */
#include "cli/polysyncd_admin.h"
#include "cli/polysyncd_migrate.h"
#include "cli/polysyncd_backup.h"
#include "cli/polysyncd_transfer.h"
#include "server/log.h"
#include "server/server.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    /* `polysyncd help [token|user]`: the same text as --help */
    if (argc > 1 && strcmp(argv[1], "help") == 0) {
        if (argc > 2 && (strcmp(argv[2], "token") == 0 || strcmp(argv[2], "user") == 0 ||
                         strcmp(argv[2], "devices") == 0))
            return ps_admin_main(2, (char *[]){argv[2], "--help", NULL});
        argv[1] = "--help";
        argc = 2;
    }
    if (argc > 1 && (strcmp(argv[1], "token") == 0 || strcmp(argv[1], "user") == 0 ||
                     strcmp(argv[1], "devices") == 0))
        return ps_admin_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "migrate") == 0)
        return ps_migrate_main(argc - 1, argv + 1);
    if (argc > 1 && (strcmp(argv[1], "backup") == 0 || strcmp(argv[1], "restore") == 0))
        return ps_backup_main(argc - 1, argv + 1);
    if (argc > 1 && (strcmp(argv[1], "import") == 0 || strcmp(argv[1], "export") == 0))
        return ps_transfer_main(argc - 1, argv + 1);
    ps_config cfg;
    ps_config_defaults(&cfg);
    switch (ps_config_parse(&cfg, argc, argv, stdout, stderr)) {
    case PS_CONFIG_EXIT_OK:
        return 0;
    case PS_CONFIG_EXIT_USAGE:
        return 1;
    case PS_CONFIG_RUN:
        break;
    }

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    ps_log_setup((ps_log_format)cfg.log_format, (ps_log_level)cfg.log_level);
    ps_error err;
    ps_error_clear(&err);
    ps_store *store = NULL;
    ps_server *srv = NULL;
    ps_store_options store_opt = {
        .pool = cfg.db_pool ? cfg.db_pool : cfg.threads + 2,
        .wait_s = cfg.db_wait_s,
        /* a statement or a lock wait never outlives a request */
        .statement_timeout_ms = cfg.request_timeout_s * 1000,
    };
    if (ps_store_open_opts(cfg.db_url, &store_opt, &store, &err) != PS_OK) {
        ps_log_event(PS_LOG_ERROR, "store_error", "cannot open store %s: %s", cfg.db_url,
                     err.message);
        return 1;
    }
    if (!ps_store_claim(cfg.db_url)) {
        ps_store_close(store);
        return 1;
    }
    if (ps_server_start(&cfg, store, &srv, &err) != PS_OK) {
        ps_log_event(PS_LOG_ERROR, "start_failed", "%s", err.message);
        ps_store_close(store);
        return 1;
    }
    /* an IPv6 address is bracketed, so the URL can be pasted as it is */
    bool v6 = strchr(cfg.bind, ':') != NULL;
    /* logged before the banner: whoever waits for the banner and then
     * sends requests finds these lines first */
    ps_log_event(PS_LOG_INFO, "start", "polysyncd %s serving %s://%s%s%s:%u, store %s", PS_VERSION,
                 cfg.tls_cert ? "https" : "http", v6 ? "[" : "", cfg.bind, v6 ? "]" : "",
                 ps_server_port(srv), cfg.db_url);
    if (ps_server_metrics_port(srv))
        ps_log_event(PS_LOG_INFO, "metrics_listening", "serving /metrics on port %u (%s)",
                     ps_server_metrics_port(srv), cfg.metrics_bind);
    printf("polysyncd %s listening on %s://%s%s%s:%u (store %s)\n", PS_VERSION,
           cfg.tls_cert ? "https" : "http", v6 ? "[" : "", cfg.bind, v6 ? "]" : "",
           ps_server_port(srv), cfg.db_url);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop_signals, &sig) == 0 && sig == SIGHUP) {
        if (!cfg.tls_cert) {
            ps_log_event(PS_LOG_INFO, "reload", "SIGHUP: no TLS certificate to re-read");
            continue;
        }
        ps_error_clear(&err);
        if (ps_server_reload_tls(srv, &err) == PS_OK)
            ps_log_event(PS_LOG_INFO, "tls_reloaded",
                         "SIGHUP: new connections use the certificate in %s", cfg.tls_cert);
        else
            ps_log_event(PS_LOG_ERROR, "tls_reload_failed",
                         "SIGHUP: keeping the current certificate: %s", err.message);
    }
    ps_log_event(PS_LOG_INFO, "shutdown", "%s received, draining requests",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
    unsigned left = ps_server_stop(srv, cfg.drain_timeout_s);
    ps_store_close(store);
    if (left) {
        ps_log_event(PS_LOG_WARN, "stopped", "stopped with %u requests unfinished", left);
        return 1;
    }
    ps_log_event(PS_LOG_INFO, "stopped", "stopped");
    return 0;
}
