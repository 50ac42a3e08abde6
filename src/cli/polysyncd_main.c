/*
 * polysyncd: parse flags, open the store, serve until SIGTERM/SIGINT, then
 * drain in-flight requests and exit 0. Signals are blocked in every thread
 * and taken here with sigwait(), so no handler runs inside the server.
 */
#include "cli/polysyncd_admin.h"
#include "cli/polysyncd_migrate.h"
#include "cli/polysyncd_transfer.h"
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
        if (argc > 2 && (strcmp(argv[2], "token") == 0 || strcmp(argv[2], "user") == 0))
            return ps_admin_main(2, (char *[]){argv[2], "--help", NULL});
        argv[1] = "--help";
        argc = 2;
    }
    if (argc > 1 && (strcmp(argv[1], "token") == 0 || strcmp(argv[1], "user") == 0))
        return ps_admin_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "migrate") == 0)
        return ps_migrate_main(argc - 1, argv + 1);
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
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

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
        fprintf(stderr, "polysyncd: cannot open store %s: %s\n", cfg.db_url, err.message);
        return 1;
    }
    if (ps_server_start(&cfg, store, &srv, &err) != PS_OK) {
        fprintf(stderr, "polysyncd: %s\n", err.message);
        ps_store_close(store);
        return 1;
    }
    printf("polysyncd %s listening on http://%s:%u (store %s)\n", PS_VERSION, cfg.bind,
           ps_server_port(srv), cfg.db_url);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    fprintf(stderr, "polysyncd: %s received, draining requests\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    unsigned left = ps_server_stop(srv, cfg.drain_timeout_s);
    ps_store_close(store);
    if (left) {
        fprintf(stderr, "polysyncd: stopped with %u requests unfinished\n", left);
        return 1;
    }
    fprintf(stderr, "polysyncd: stopped\n");
    return 0;
}
