/*
 * The live socket hub; see ws.h. One mutex guards the list of sockets and
 * everything in them; the I/O thread holds it while it works (its socket
 * calls never block) and lets it go while it waits in epoll_wait, so a
 * request thread queuing a frame waits at most one pass over the sockets.
 */
#include "server/ws.h"
#include "core/timestamp.h"
#include "server/ws_session.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 250          /* the longest the I/O thread sleeps */
#define CLOSE_WAIT_MS 2000   /* after our close, for the peer's answer */
#define EVENTS_PER_WAIT 64
/* The kernel's send buffer of a live socket: without a cap Linux grows it
 * to 4 MiB per socket for a slow reader; with it, what waits beyond is in
 * the socket's queue, where a newer state of a chat replaces an older one
 * and the --ws-queue limit applies. */
#define SOCKET_SNDBUF (128 * 1024)

/* A frame's text, shared by every socket it is queued for. */
typedef struct blob {
    unsigned refs;
    size_t len;
    char text[];
} blob;

typedef struct frame {
    struct frame *next;
    char *key;
    blob *body;
} frame;

struct ps_ws_conn {
    struct ps_ws_conn *next;
    char *user;
    char *device; /* NULL: every change of the user reaches it */
    /* frames not yet handed to the session, oldest first */
    frame *head;
    size_t queued; /* their bytes */
    bool overflow; /* the queue passed its limit: close with 1013 */
    bool cut;      /* ps_ws_close_user: close with 1008 */
    /* set by ps_ws_attach */
    bool attached;
    MHD_socket fd;
    struct MHD_UpgradeResponseHandle *urh;
    char *extra; /* bytes the client sent with its headers */
    size_t extra_len, extra_off;
    /* the I/O thread's */
    ps_ws_session *session;
    bool registered; /* in the epoll set */
    uint32_t interest;
    bool dead;
    bool lingering;         /* closed our side; reading to the peer's end */
    int64_t linger_ms;
    uint64_t heard;         /* frames heard at the last look */
    int64_t last_heard_ms;  /* or when it opened */
    int64_t ping_sent_ms;   /* 0: no ping outstanding */
    int64_t close_sent_ms;  /* when we queued our close; 0: not closing */
    int64_t close_out_ms;   /* when it was written whole */
};

struct ps_ws {
    ps_ws_config cfg;
    pthread_mutex_t lock;
    pthread_t thread;
    int epfd, wakefd;
    ps_ws_conn *conns;
    unsigned count;    /* reserved or attached */
    unsigned attached; /* of which attached */
    bool closing;      /* no new sockets; open ones get 1001 */
    bool stop;         /* the I/O thread ends */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake(ps_ws *ws)
{
    uint64_t one = 1;
    ssize_t n = write(ws->wakefd, &one, sizeof one);
    (void)n; /* a full counter is awake already */
}

static void blob_put(blob *b)
{
    if (b && --b->refs == 0)
        free(b);
}

static void frames_free(ps_ws_conn *c)
{
    while (c->head) {
        frame *f = c->head;
        c->head = f->next;
        blob_put(f->body);
        free(f->key);
        free(f);
    }
    c->queued = 0;
}

static void conn_free(ps_ws_conn *c)
{
    frames_free(c);
    ps_ws_session_free(c->session);
    free(c->extra);
    free(c->user);
    free(c->device);
    free(c);
}

static void unlink_conn(ps_ws *ws, ps_ws_conn *c)
{
    for (ps_ws_conn **p = &ws->conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    ws->count--;
    if (c->attached)
        ws->attached--;
}

/* Gives the connection back to libmicrohttpd, which closes it. */
static void destroy(ps_ws *ws, ps_ws_conn *c)
{
    if (c->registered)
        epoll_ctl(ws->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    unlink_conn(ws, c);
    MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
    conn_free(c);
}

/* ---- socket I/O for the session ---- */

static ssize_t conn_recv(void *ctx, uint8_t *buf, size_t len)
{
    ps_ws_conn *c = ctx;
    if (c->extra_off < c->extra_len) {
        size_t n = c->extra_len - c->extra_off;
        if (n > len)
            n = len;
        memcpy(buf, c->extra + c->extra_off, n);
        c->extra_off += n;
        return (ssize_t)n;
    }
    return recv(c->fd, buf, len, 0);
}

static ssize_t conn_send(void *ctx, const uint8_t *buf, size_t len)
{
    ps_ws_conn *c = ctx;
    return send(c->fd, buf, len, MSG_NOSIGNAL);
}

/* ---- the I/O thread ---- */

static void close_with(ps_ws_conn *c, uint16_t code, const char *reason, int64_t now)
{
    if (!ps_ws_session_closing(c->session)) {
        ps_ws_session_close(c->session, code, reason);
        c->close_sent_ms = now;
    }
}

/* Hands queued frames to the session, one at a time: wslay holds at most
 * one frame per socket beyond the kernel's buffer, the rest stays here,
 * where a newer state of a chat can still replace an older one. */
static void feed(ps_ws *ws, ps_ws_conn *c, int64_t now)
{
    if (ws->closing)
        close_with(c, 1001, "server shutting down", now);
    if (c->cut) {
        frames_free(c);
        close_with(c, 1008, "access revoked", now);
    }
    if (c->overflow) {
        frames_free(c);
        close_with(c, 1013, "too far behind; sync to catch up", now);
    }
    while (c->head && !ps_ws_session_closing(c->session) &&
           ps_ws_session_queued_bytes(c->session) == 0) {
        frame *f = c->head;
        c->head = f->next;
        c->queued -= f->body->len;
        if (!ps_ws_session_send_text(c->session, f->body->text, f->body->len))
            c->dead = true;
        blob_put(f->body);
        free(f->key);
        free(f);
    }
}

/* Pings a socket silent for an interval; drops one silent since its ping
 * for another interval, or one that never answered our close. */
static void check_alive(ps_ws *ws, ps_ws_conn *c, int64_t now)
{
    int64_t interval = (int64_t)ws->cfg.ping_interval_s * 1000;
    uint64_t heard = ps_ws_session_frames_heard(c->session);
    if (heard != c->heard) {
        c->heard = heard;
        c->last_heard_ms = now;
        c->ping_sent_ms = 0;
    }
    if (!c->close_sent_ms && ps_ws_session_closing(c->session))
        c->close_sent_ms = now; /* wslay closed (peer's close, protocol error) */
    if (c->close_sent_ms) {
        /* once our close is out, the peer has CLOSE_WAIT_MS to answer; a
         * peer that reads nothing (our close stuck behind frames) has an
         * interval, like one that does not answer a ping */
        if (!c->close_out_ms && ps_ws_session_close_sent(c->session))
            c->close_out_ms = now;
        if (c->close_out_ms ? now - c->close_out_ms > CLOSE_WAIT_MS
                            : now - c->close_sent_ms > (interval > CLOSE_WAIT_MS ? interval
                                                                                 : CLOSE_WAIT_MS))
            c->dead = true;
    } else if (c->ping_sent_ms) {
        if (now - c->ping_sent_ms >= interval)
            c->dead = true;
    } else if (now - c->last_heard_ms >= interval && !ps_ws_session_closing(c->session)) {
        if (ps_ws_session_ping(c->session))
            c->ping_sent_ms = now;
    }
}

static void start_io(ps_ws *ws, ps_ws_conn *c, int64_t now)
{
    c->registered = true;
    c->last_heard_ms = now;
    c->interest = EPOLLIN;
    struct epoll_event ev = {.events = c->interest, .data.ptr = c};
    if (epoll_ctl(ws->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        c->registered = false;
        c->dead = true;
    }
    /* bytes that came with the headers are read before the socket's */
    if (c->extra_len && !ps_ws_session_read(c->session))
        c->dead = true;
}

/*
 * The session is over. Closing the socket with bytes from the peer still
 * unread would reset the connection, and a reset can destroy our close
 * frame in flight (RFC 6455 7.1.1 wants the peer to see it): so our side
 * is shut first and what comes is read and dropped until the peer closes,
 * or CLOSE_WAIT_MS.
 */
static void linger(ps_ws_conn *c, int64_t now)
{
    c->lingering = true;
    c->linger_ms = now;
    shutdown(c->fd, SHUT_WR);
}

static void drain(ps_ws_conn *c)
{
    char scratch[4096];
    for (;;) {
        ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
        if (n > 0)
            continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            c->dead = true;
        return;
    }
}

/* One pass over every socket, after epoll said which are ready. */
static void sweep(ps_ws *ws, int64_t now)
{
    ps_ws_conn *next;
    for (ps_ws_conn *c = ws->conns; c; c = next) {
        next = c->next;
        if (!c->attached)
            continue;
        if (!c->registered && !c->dead)
            start_io(ws, c, now);
        if (ws->stop)
            c->dead = true;
        if (c->lingering) {
            if (now - c->linger_ms > CLOSE_WAIT_MS)
                c->dead = true;
            if (c->dead)
                destroy(ws, c);
            continue;
        }
        if (!c->dead) {
            feed(ws, c, now);
            check_alive(ws, c, now);
            if (!ps_ws_session_write(c->session))
                c->dead = true;
        }
        if (c->dead) {
            destroy(ws, c);
            continue;
        }
        if (ps_ws_session_finished(c->session)) {
            linger(c, now);
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            c->interest = EPOLLIN;
            epoll_ctl(ws->epfd, EPOLL_CTL_MOD, c->fd, &ev);
            continue;
        }
        uint32_t want = (ps_ws_session_wants_read(c->session) ? EPOLLIN : 0) |
                        (ps_ws_session_wants_write(c->session) ? EPOLLOUT : 0);
        if (want != c->interest) {
            struct epoll_event ev = {.events = want, .data.ptr = c};
            c->interest = want;
            epoll_ctl(ws->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
}

static void *io_main(void *arg)
{
    ps_ws *ws = arg;
    struct epoll_event evs[EVENTS_PER_WAIT];
    pthread_mutex_lock(&ws->lock);
    while (!ws->stop || ws->attached) {
        pthread_mutex_unlock(&ws->lock);
        int n = epoll_wait(ws->epfd, evs, EVENTS_PER_WAIT, TICK_MS);
        pthread_mutex_lock(&ws->lock);
        for (int i = 0; i < n; i++) {
            ps_ws_conn *c = evs[i].data.ptr;
            if (!c) { /* the wake-up descriptor */
                uint64_t v;
                ssize_t r = read(ws->wakefd, &v, sizeof v);
                (void)r;
                continue;
            }
            if (c->dead)
                continue;
            if (c->lingering) {
                drain(c);
                continue;
            }
            if ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) &&
                !ps_ws_session_read(c->session))
                c->dead = true;
            if (!c->dead && (evs[i].events & EPOLLOUT) && !ps_ws_session_write(c->session))
                c->dead = true;
        }
        sweep(ws, mono_ms());
    }
    pthread_mutex_unlock(&ws->lock);
    return NULL;
}

ps_ws *ps_ws_new(const ps_ws_config *cfg)
{
    ps_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    ws->cfg = *cfg;
    if (!ws->cfg.ping_interval_s)
        ws->cfg.ping_interval_s = 30;
    pthread_mutex_init(&ws->lock, NULL);
    ws->epfd = epoll_create1(EPOLL_CLOEXEC);
    ws->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (ws->epfd < 0 || ws->wakefd < 0 ||
        epoll_ctl(ws->epfd, EPOLL_CTL_ADD, ws->wakefd, &ev) != 0 ||
        pthread_create(&ws->thread, NULL, io_main, ws) != 0) {
        if (ws->epfd >= 0)
            close(ws->epfd);
        if (ws->wakefd >= 0)
            close(ws->wakefd);
        pthread_mutex_destroy(&ws->lock);
        free(ws);
        return NULL;
    }
    return ws;
}

void ps_ws_close_all(ps_ws *ws, unsigned wait_ms)
{
    if (!ws)
        return;
    pthread_mutex_lock(&ws->lock);
    bool first = !ws->stop;
    ws->closing = true;
    pthread_mutex_unlock(&ws->lock);
    if (!first)
        return;
    wake(ws);
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
    for (unsigned waited = 0; waited < wait_ms; waited += 10) {
        /* also those answered 101 and not yet handed over: they get their
         * 1001 too once libmicrohttpd passes them on */
        pthread_mutex_lock(&ws->lock);
        unsigned left = ws->count;
        pthread_mutex_unlock(&ws->lock);
        if (!left)
            break;
        nanosleep(&tick, NULL);
    }
    pthread_mutex_lock(&ws->lock);
    ws->stop = true; /* what is left is dropped without waiting */
    pthread_mutex_unlock(&ws->lock);
    wake(ws);
    pthread_join(ws->thread, NULL);
}

void ps_ws_free(ps_ws *ws)
{
    if (!ws)
        return;
    ps_ws_close_all(ws, 0);
    /* reserved places whose upgrade never came (the daemon has stopped) */
    while (ws->conns) {
        ps_ws_conn *c = ws->conns;
        ws->conns = c->next;
        conn_free(c);
    }
    close(ws->epfd);
    close(ws->wakefd);
    pthread_mutex_destroy(&ws->lock);
    free(ws);
}

ps_ws_admit ps_ws_reserve(ps_ws *ws, const char *user, const char *device, ps_ws_conn **out)
{
    *out = NULL;
    ps_ws_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->user = strdup(user)) || (device && !(c->device = strdup(device)))) {
        if (c)
            conn_free(c);
        return PS_WS_NOMEM;
    }
    c->fd = MHD_INVALID_SOCKET;
    ps_ws_admit r = PS_WS_OK;
    pthread_mutex_lock(&ws->lock);
    unsigned mine = 0;
    for (ps_ws_conn *o = ws->conns; o; o = o->next)
        mine += strcmp(o->user, user) == 0;
    if (ws->closing)
        r = PS_WS_CLOSING;
    else if (ws->count >= ws->cfg.max_sockets)
        r = PS_WS_FULL;
    else if (mine >= ws->cfg.max_user_sockets)
        r = PS_WS_USER_FULL;
    if (r == PS_WS_OK) {
        c->next = ws->conns;
        ws->conns = c;
        ws->count++;
    }
    pthread_mutex_unlock(&ws->lock);
    if (r != PS_WS_OK)
        conn_free(c);
    else
        *out = c;
    return r;
}

void ps_ws_unreserve(ps_ws *ws, ps_ws_conn *c)
{
    pthread_mutex_lock(&ws->lock);
    unlink_conn(ws, c);
    pthread_mutex_unlock(&ws->lock);
    conn_free(c);
}

void ps_ws_attach(ps_ws *ws, ps_ws_conn *c, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh,
                  const char *extra, size_t extra_len)
{
    c->fd = sock;
    c->urh = urh;
    ps_ws_io io = {.recv = conn_recv, .send = conn_send, .ctx = c};
    int sndbuf = SOCKET_SNDBUF;
    setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    int flags = fcntl(sock, F_GETFL);
    bool ok = flags >= 0 && fcntl(sock, F_SETFL, flags | O_NONBLOCK) == 0;
    if (ok && extra_len) {
        ok = (c->extra = malloc(extra_len)) != NULL;
        if (ok) {
            memcpy(c->extra, extra, extra_len);
            c->extra_len = extra_len;
        }
    }
    if (ok)
        ok = (c->session = ps_ws_session_new(&io)) != NULL;
    pthread_mutex_lock(&ws->lock);
    if (!ok || ws->stop) { /* too late, or no memory: close at once */
        unlink_conn(ws, c);
        pthread_mutex_unlock(&ws->lock);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        conn_free(c);
        return;
    }
    c->attached = true;
    ws->attached++;
    pthread_mutex_unlock(&ws->lock);
    wake(ws);
}

static bool is_listener(const ps_ws_conn *c, const char *user, const char *device)
{
    return strcmp(c->user, user) == 0 && !(device && c->device && strcmp(c->device, device) == 0);
}

bool ps_ws_has_listeners(ps_ws *ws, const char *user, const char *device)
{
    if (!ws)
        return false;
    bool any = false;
    pthread_mutex_lock(&ws->lock);
    for (ps_ws_conn *c = ws->conns; c && !any; c = c->next)
        any = !c->overflow && is_listener(c, user, device);
    pthread_mutex_unlock(&ws->lock);
    return any;
}

/* Queues b for c (replacing a queued frame of the same key); false when
 * out of memory. Past the limit the socket is marked to be closed. */
static bool enqueue(ps_ws *ws, ps_ws_conn *c, const char *key, blob *b)
{
    /* A chat larger than the whole queue never goes over the socket (the
     * app gets it at its next sync); closing for it would only repeat. */
    if (b->len > ws->cfg.queue_bytes)
        return true;
    frame **p = &c->head;
    for (; *p; p = &(*p)->next) {
        if (strcmp((*p)->key, key) == 0) {
            c->queued = c->queued - (*p)->body->len + b->len;
            blob_put((*p)->body);
            b->refs++;
            (*p)->body = b;
            break;
        }
    }
    if (!*p) {
        frame *f = calloc(1, sizeof *f);
        if (!f || !(f->key = strdup(key))) {
            free(f);
            return false;
        }
        b->refs++;
        f->body = b;
        *p = f;
        c->queued += b->len;
    }
    if (c->queued > ws->cfg.queue_bytes) {
        c->overflow = true;
        frames_free(c);
    }
    return true;
}

unsigned ps_ws_publish(ps_ws *ws, const char *user, const char *device, const char *key,
                       const char *text, size_t len)
{
    if (!ws)
        return 0;
    blob *b = malloc(sizeof *b + len);
    if (!b)
        return 0;
    b->refs = 1; /* ours, until the loop is done */
    b->len = len;
    memcpy(b->text, text, len);
    unsigned open = 0;
    pthread_mutex_lock(&ws->lock);
    for (ps_ws_conn *c = ws->conns; c; c = c->next) {
        if (c->overflow || c->cut || !is_listener(c, user, device))
            continue;
        if (!enqueue(ws, c, key, b))
            c->overflow = true; /* out of memory: it will have to catch up */
        open += !c->overflow;
    }
    pthread_mutex_unlock(&ws->lock);
    blob_put(b);
    wake(ws);
    return open;
}

void ps_ws_close_user(ps_ws *ws, const char *user)
{
    if (!ws)
        return;
    pthread_mutex_lock(&ws->lock);
    for (ps_ws_conn *c = ws->conns; c; c = c->next)
        if (strcmp(c->user, user) == 0)
            c->cut = true;
    pthread_mutex_unlock(&ws->lock);
    wake(ws);
}

unsigned ps_ws_count(ps_ws *ws)
{
    if (!ws)
        return 0;
    pthread_mutex_lock(&ws->lock);
    unsigned n = ws->attached;
    pthread_mutex_unlock(&ws->lock);
    return n;
}
