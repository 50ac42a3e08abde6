/* The main port's accept thread; see acceptor.h. */
#include "server/acceptor.h"
#include "server/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct ps_acceptor {
    int fd;
    unsigned port;
    struct MHD_Daemon *daemon;
    const atomic_uint *open;
    unsigned limit;
    atomic_uint handing; /* handed to the daemon, not yet started */
    pthread_t thread;
    bool running;
    atomic_bool stopping;
};

ps_code ps_acceptor_listen(const struct addrinfo *ai, ps_acceptor **out, ps_error *err)
{
    *out = NULL;
    ps_acceptor *a = calloc(1, sizeof *a);
    if (!a)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    atomic_init(&a->stopping, false);
    atomic_init(&a->handing, 0);
    a->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    if (a->fd < 0 || setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
        (ai->ai_family == AF_INET6 &&
         setsockopt(a->fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0) ||
        bind(a->fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(a->fd, SOMAXCONN) < 0) {
        int e = errno;
        if (a->fd >= 0)
            close(a->fd);
        free(a);
        return ps_error_set(err, PS_ERR_IO, e, "", "%s", strerror(e));
    }
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (getsockname(a->fd, (struct sockaddr *)&addr, &len) == 0)
        a->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                   : ((struct sockaddr_in *)&addr)->sin_port);
    *out = a;
    return PS_OK;
}

unsigned ps_acceptor_port(const ps_acceptor *a)
{
    return a->port;
}

static void *accept_loop(void *arg)
{
    ps_acceptor *a = arg;
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
    while (!atomic_load(&a->stopping)) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        int fd = accept4(a->fd, (struct sockaddr *)&addr, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (atomic_load(&a->stopping))
                break;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* out of descriptors or memory: the connection waits in the
             * backlog; try again shortly rather than spin */
            ps_log_event(PS_LOG_WARN, "accept_failed", "accept: %s", strerror(errno));
            nanosleep(&pause, NULL);
            continue;
        }
        /* full: closed here, never at libmicrohttpd's limit (acceptor.h) */
        if (atomic_load(a->open) + atomic_load(&a->handing) >= a->limit) {
            close(fd);
            continue;
        }
        atomic_fetch_add(&a->handing, 1);
        /* refused (the accept policy) or failed: libmicrohttpd closes the
         * socket itself and never starts it */
        if (MHD_add_connection(a->daemon, fd, (struct sockaddr *)&addr, len) != MHD_YES)
            atomic_fetch_sub(&a->handing, 1);
    }
    return NULL;
}

ps_code ps_acceptor_start(ps_acceptor *a, struct MHD_Daemon *daemon, const atomic_uint *open,
                          unsigned limit, ps_error *err)
{
    a->daemon = daemon;
    a->open = open;
    a->limit = limit;
    int rc = pthread_create(&a->thread, NULL, accept_loop, a);
    if (rc != 0)
        return ps_error_set(err, PS_ERR_IO, rc, "", "cannot start the accept thread: %s",
                            strerror(rc));
    a->running = true;
    return PS_OK;
}

void ps_acceptor_connection_started(ps_acceptor *a)
{
    /* never below zero: a connection of another origin would not count */
    unsigned n = atomic_load(&a->handing);
    while (n > 0 && !atomic_compare_exchange_weak(&a->handing, &n, n - 1))
        ;
}

void ps_acceptor_stop(ps_acceptor *a)
{
    if (!a || a->fd < 0)
        return;
    atomic_store(&a->stopping, true);
    /* wakes a blocked accept4 (it returns EINVAL) */
    shutdown(a->fd, SHUT_RDWR);
    if (a->running)
        pthread_join(a->thread, NULL);
    a->running = false;
    close(a->fd);
    a->fd = -1;
}

void ps_acceptor_free(ps_acceptor *a)
{
    if (!a)
        return;
    ps_acceptor_stop(a);
    free(a);
}
