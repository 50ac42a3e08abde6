/*
 * A lingering close (see linger.h): one short-lived detached thread per
 * lingering socket, at most PS_LINGER_MAX at once.
 */
#include "server/linger.h"
#include "core/timestamp.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct linger_job {
    int fd;
    size_t max_bytes;
    int max_ms, idle_ms;
} linger_job;

static atomic_int lingering;

static void drain(const linger_job *job)
{
    char buf[64 * 1024];
    size_t dropped = 0;
    int64_t end = ps__time_now_ms() + job->max_ms;
    while (dropped < job->max_bytes) {
        int64_t left = end - ps__time_now_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = job->fd, .events = POLLIN};
        int wait = left < job->idle_ms ? (int)left : job->idle_ms;
        if (poll(&pfd, 1, wait) <= 0)
            break; /* idle too long (or an error): give up */
        ssize_t n = recv(job->fd, buf, sizeof buf, 0);
        if (n <= 0)
            break; /* the client closed: done */
        dropped += (size_t)n;
    }
}

static void *linger_main(void *arg)
{
    linger_job *job = arg;
    drain(job);
    close(job->fd);
    free(job);
    atomic_fetch_sub(&lingering, 1);
    return NULL;
}

void ps_linger_close(int fd, size_t max_bytes, int max_ms, int idle_ms)
{
    if (fd < 0)
        return;
    /* the answer is out: tell the client no more comes (libmicrohttpd may
     * have done it already; a second shutdown is harmless) */
    shutdown(fd, SHUT_WR);
    linger_job *job = NULL;
    pthread_attr_t attr;
    bool started = false;
    if (atomic_fetch_add(&lingering, 1) < PS_LINGER_MAX && (job = malloc(sizeof *job)) &&
        pthread_attr_init(&attr) == 0) {
        *job = (linger_job){fd, max_bytes, max_ms, idle_ms};
        pthread_t t;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&t, &attr, linger_main, job) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started) {
        free(job);
        close(fd);
        atomic_fetch_sub(&lingering, 1);
    }
}
