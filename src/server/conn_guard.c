/* The connection guard; see conn_guard.h. One mutex guards the address
 * counts and the list of open connections; both are touched once per
 * connection (open, first head, close) and by the sweeper every 250 ms. */
#include "server/conn_guard.h"
#include "core/timestamp.h"

#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define BUCKETS 1024
#define SWEEP_MS 250

/* An address as counted: IPv4 (also IPv4-mapped IPv6) whole, IPv6 by /64. */
typedef struct addr_key {
    unsigned char bytes[16];
} addr_key;

typedef struct addr_count {
    addr_key key;
    unsigned open;
    struct addr_count *next;
} addr_count;

typedef struct conn_rec {
    struct conn_rec *prev, *next;
    int fd;
    addr_key key;
    bool counted; /* against its address's cap */
    bool head_seen;
    bool cut;
    int64_t opened_ms;
} conn_rec;

struct ps_conn_guard {
    ps_conn_guard_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    addr_count *buckets[BUCKETS];
    conn_rec *conns; /* open connections, newest first */
    atomic_uint_fast64_t cuts;
    pthread_t sweeper;
};

/* The key of an address, and whether it is loopback. False for a family
 * that is neither IPv4 nor IPv6 (then it is not counted). */
static bool key_of(const struct sockaddr *addr, socklen_t len, addr_key *key, bool *loopback)
{
    memset(key, 0, sizeof *key);
    if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        key->bytes[10] = key->bytes[11] = 0xff;
        memcpy(key->bytes + 12, &in->sin_addr, 4);
        *loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        return true;
    }
    if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(key->bytes, a->s6_addr, 16);
            *loopback = a->s6_addr[12] == 127;
        } else {
            memcpy(key->bytes, a->s6_addr, 8); /* the /64 */
            *loopback = IN6_IS_ADDR_LOOPBACK(a);
        }
        return true;
    }
    return false;
}

static addr_count **slot_of(ps_conn_guard *g, const addr_key *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof key->bytes; i++)
        h = (h ^ key->bytes[i]) * 1099511628211ull;
    addr_count **p = &g->buckets[h % BUCKETS];
    while (*p && memcmp(&(*p)->key, key, sizeof *key) != 0)
        p = &(*p)->next;
    return p; /* the entry, or where it would go */
}

static void *sweep_main(void *arg)
{
    ps_conn_guard *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->stopping) {
        int64_t now = ps__time_monotonic_ms();
        unsigned cut_now = 0;
        for (conn_rec *c = g->conns; c; c = c->next) {
            if (c->head_seen || c->cut ||
                now - c->opened_ms < (int64_t)g->cfg.head_timeout_s * 1000)
                continue;
            /* under the lock: the descriptor is still libmicrohttpd's */
            shutdown(c->fd, SHUT_RDWR);
            c->cut = true;
            cut_now++;
        }
        if (cut_now) {
            atomic_fetch_add(&g->cuts, cut_now);
            fprintf(stderr,
                    "polysyncd: closed %u connection(s) that sent no request head within %u s\n",
                    cut_now, g->cfg.head_timeout_s);
        }
        int64_t due = now + SWEEP_MS;
        struct timespec until = {.tv_sec = due / 1000, .tv_nsec = (due % 1000) * 1000000};
        pthread_cond_timedwait(&g->wake, &g->lock, &until);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

ps_conn_guard *ps_conn_guard_new(const ps_conn_guard_config *cfg)
{
    ps_conn_guard *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->cfg = *cfg;
    atomic_init(&g->cuts, 0);
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (cfg->head_timeout_s && pthread_create(&g->sweeper, NULL, sweep_main, g) != 0) {
        pthread_cond_destroy(&g->wake);
        pthread_mutex_destroy(&g->lock);
        free(g);
        return NULL;
    }
    return g;
}

void ps_conn_guard_free(ps_conn_guard *g)
{
    if (!g)
        return;
    if (g->cfg.head_timeout_s) {
        pthread_mutex_lock(&g->lock);
        g->stopping = true;
        pthread_cond_signal(&g->wake);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->sweeper, NULL);
    }
    for (size_t i = 0; i < BUCKETS; i++) {
        while (g->buckets[i]) {
            addr_count *next = g->buckets[i]->next;
            free(g->buckets[i]);
            g->buckets[i] = next;
        }
    }
    while (g->conns) { /* none once the daemon has stopped; freed anyway */
        conn_rec *next = g->conns->next;
        free(g->conns);
        g->conns = next;
    }
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

bool ps_conn_guard_admit(ps_conn_guard *g, const struct sockaddr *addr, socklen_t len)
{
    addr_key key;
    bool loopback;
    if (!g->cfg.per_ip_max || !key_of(addr, len, &key, &loopback) ||
        (loopback && g->cfg.exempt_loopback))
        return true;
    pthread_mutex_lock(&g->lock);
    addr_count *entry = *slot_of(g, &key);
    bool ok = !entry || entry->open < g->cfg.per_ip_max;
    pthread_mutex_unlock(&g->lock);
    return ok;
}

void ps_conn_guard_opened(ps_conn_guard *g, struct MHD_Connection *conn, void **socket_ctx)
{
    *socket_ctx = NULL;
    conn_rec *c = calloc(1, sizeof *c);
    if (!c)
        return; /* untracked: no cap, no deadline for this one */
    const union MHD_ConnectionInfo *fd =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *addr =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    c->fd = fd ? fd->connect_fd : -1;
    c->opened_ms = ps__time_monotonic_ms();
    c->head_seen = c->fd < 0 || !g->cfg.head_timeout_s;
    bool loopback = false;
    if (addr && addr->client_addr && g->cfg.per_ip_max) {
        socklen_t len = addr->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                 : sizeof(struct sockaddr_in);
        c->counted = key_of(addr->client_addr, len, &c->key, &loopback) &&
                     !(loopback && g->cfg.exempt_loopback);
    }
    bool over = false;
    pthread_mutex_lock(&g->lock);
    if (c->counted) {
        addr_count **slot = slot_of(g, &c->key);
        if (!*slot && (*slot = calloc(1, sizeof **slot)) != NULL)
            (*slot)->key = c->key;
        if (*slot)
            over = ++(*slot)->open > g->cfg.per_ip_max;
        else
            c->counted = false;
    }
    c->next = g->conns;
    if (g->conns)
        g->conns->prev = c;
    g->conns = c;
    pthread_mutex_unlock(&g->lock);
    *socket_ctx = c;
    /* ps_conn_guard_admit ran at accept, before this count: connections
     * accepted at once on several threads can all pass it. The count taken
     * here is the one that holds; one past the cap is closed now (as the
     * sweeper closes a late head), and ps_conn_guard_closed gives its place
     * back. */
    if (over && c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
}

void ps_conn_guard_head_seen(ps_conn_guard *g, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_rec *c = info ? info->socket_context : NULL;
    if (!c || c->head_seen) /* head_seen is written only on this connection's thread... */
        return;
    pthread_mutex_lock(&g->lock); /* ...and read by the sweeper under the lock */
    c->head_seen = true;
    pthread_mutex_unlock(&g->lock);
}

void ps_conn_guard_closed(ps_conn_guard *g, void **socket_ctx)
{
    conn_rec *c = *socket_ctx;
    if (!c)
        return;
    pthread_mutex_lock(&g->lock);
    if (c->counted) {
        addr_count **slot = slot_of(g, &c->key);
        if (*slot && --(*slot)->open == 0) {
            addr_count *gone = *slot;
            *slot = gone->next;
            free(gone);
        }
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        g->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&g->lock);
    free(c);
    *socket_ctx = NULL;
}

uint64_t ps_conn_guard_cut_count(ps_conn_guard *g)
{
    return atomic_load(&g->cuts);
}

void ps_conn_guard_raise_fd_limit(unsigned need)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= need)
        return;
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY || lim.rlim_max > need ? need : lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
}
