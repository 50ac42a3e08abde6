#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define KEEP_PREFIX 1024 /* answer bytes kept when keep_body is off */

enum cstate { C_IDLE, C_CONNECTING, C_SENDING, C_RECEIVING, C_DONE };
enum pstate { P_HEAD, P_CL, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_END, P_TRAILER, P_CLOSE, P_END };

struct conn {
    int fd, idx;
    enum cstate state;
    int kind;
    /* request */
    buf head;
    /* what `head` was made for: a request like the last one reuses it */
    const char *head_path;
    size_t head_body_len;
    const char *body;
    size_t body_len, head_sent, body_sent;
    buf own; /* per-request bodies */
    double t_start;
    /* answer */
    enum pstate ps;
    buf rhead, line, rbody;
    uint64_t remaining, wire_in, body_in;
    int status;
    bool close_after;
};

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void lat_sort(lat_stats *s)
{
    if (s->n)
        qsort(s->v, s->n, sizeof *s->v, cmp_double);
}

double percentile(const double *sorted, size_t n, double p)
{
    if (!n)
        return 0;
    /* nearest rank */
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static void lat_add(lat_stats *s, double v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        double *p = realloc(s->v, s->cap * sizeof *p);
        if (!p) {
            fputs("psbench: out of memory\n", stderr);
            exit(2);
        }
        s->v = p;
    }
    s->v[s->n++] = v;
}

buf *engine_conn_buf(conn *c)
{
    return &c->own;
}

int engine_conn_index(const conn *c)
{
    return c->idx;
}

void engine_set_request(engine *e, conn *c, const char *path, const char *body, size_t len,
                        int kind)
{
    /* the same path and length (load's fixed body, again and again): the same
     * head, not formatted anew (the driver's CPU is part of what the bench's
     * 2 cores share with the server) */
    bool same = c->head.len && c->head_path == path && c->head_body_len == len;
    c->head_path = path;
    c->head_body_len = len;
    c->body = body;
    c->body_len = len;
    c->kind = kind < 0 || kind >= ENGINE_KINDS ? 0 : kind;
    if (same)
        return;
    c->head.len = 0;
    buf_addf(&c->head,
             "%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
             "%s%s%sContent-Length: %zu\r\n\r\n",
             e->method ? e->method : "POST", path, e->host, e->port,
             e->gzip ? "Accept-Encoding: gzip\r\n" : "", e->header ? e->header : "",
             e->header ? "\r\n" : "", len);
}

static void close_conn(engine *e, conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

static int open_conn(engine *e, conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)e->port)};
    inet_pton(AF_INET, strcmp(e->host, "localhost") == 0 ? "127.0.0.1" : e->host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    /* Edge-triggered, for both directions, once: a request is written as soon
     * as it is made (start_next) and epoll only reports a socket that became
     * readable or writable again, so a request costs no epoll_ctl (two per
     * request before: about a fifth of the driver's CPU on no-op syncs). */
    struct epoll_event ee = {.events = EPOLLOUT | EPOLLIN | EPOLLET, .data.ptr = c};
    epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ee);
    return 0;
}

static void note_error(engine *e, const char *fmt, const char *detail)
{
    if (!e->first_error[0])
        snprintf(e->first_error, sizeof e->first_error, fmt, detail);
}

/* A process that has not exited (a zombie has: its parent just has not reaped it yet). */
static bool process_running(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static bool watched_running(const engine *e)
{
    for (int i = 0; i < e->nwhile; i++)
        if (process_running(e->while_pid[i]))
            return true;
    return false;
}

static bool limits_reached(engine *e, double t)
{
    return (e->count && e->issued >= e->count) || (e->duration_s > 0 && t >= e->deadline);
}

static void on_writable(engine *e, conn *c);

/* Starts the next request on an idle connection, or retires it. */
static void start_next(engine *e, conn *c)
{
    double t = now_s();
    bool hopeless = e->conn_errors > 1000 && e->conn_errors > 10 * (e->st[0].ok + e->st[1].ok);
    if (hopeless || limits_reached(e, t) || !e->next(e, c)) {
        close_conn(e, c);
        c->state = C_DONE;
        return;
    }
    e->issued++;
    c->head_sent = c->body_sent = 0;
    c->ps = P_HEAD;
    c->rhead.len = c->line.len = c->rbody.len = 0;
    c->wire_in = c->body_in = 0;
    c->status = 0;
    c->close_after = false;
    c->t_start = t;
    if (c->fd < 0) {
        if (open_conn(e, c) < 0) {
            e->conn_errors++;
            e->st[c->kind].failed++;
            note_error(e, "connect failed: %s", strerror(errno));
            c->state = C_DONE;
            return;
        }
        c->state = C_CONNECTING;
    } else {
        c->state = C_SENDING;
        on_writable(e, c); /* at once; what does not fit waits for EPOLLOUT */
    }
}

static void request_failed(engine *e, conn *c, const char *why)
{
    e->st[c->kind].failed++;
    e->conn_errors++;
    note_error(e, "%s", why);
    close_conn(e, c);
    c->state = C_IDLE;
}

static void finish(engine *e, conn *c)
{
    double t = now_s();
    lat_stats *s = &e->st[c->kind];
    lat_add(s, t - c->t_start);
    if (e->poll_interval_s > 0 && c->kind == 0) {
        lat_add(&e->corrected, t - c->t_start);
        for (double late = t - c->t_start - e->poll_interval_s; late >= e->poll_interval_s;
             late -= e->poll_interval_s)
            lat_add(&e->corrected, late);
    }
    s->wire_out += c->head.len + c->body_len;
    s->body_out += c->body_len;
    s->wire_in += c->wire_in;
    s->body_in += c->body_in;
    if (c->status >= 200 && c->status < 300) {
        s->ok++;
        s->status_2xx++;
    } else {
        s->failed++;
        if (c->status >= 400 && c->status < 500)
            s->status_4xx++;
        else if (c->status >= 500)
            s->status_5xx++;
        else
            s->status_other++;
        if (!e->first_error[0]) {
            snprintf(e->first_error, sizeof e->first_error, "HTTP %d: %.*s", c->status,
                     (int)(c->rbody.len < 300 ? c->rbody.len : 300),
                     c->rbody.data ? c->rbody.data : "");
        }
    }
    if (e->duration_s <= 0 || t <= e->deadline)
        s->in_window++;
    if (e->done)
        e->done(e, c, c->status, c->rbody.data ? c->rbody.data : "", c->rbody.len);
    if (c->close_after || c->state == C_SENDING) /* answered before the body was sent */
        close_conn(e, c);
    c->state = C_IDLE;
    start_next(e, c);
}

static void keep(engine *e, conn *c, const char *p, size_t n)
{
    c->body_in += n;
    if (e->keep_body)
        buf_add(&c->rbody, p, n);
    else if (c->rbody.len < KEEP_PREFIX)
        buf_add(&c->rbody, p, n < KEEP_PREFIX - c->rbody.len ? n : KEEP_PREFIX - c->rbody.len);
}

static int parse_head(conn *c)
{
    char *h = c->rhead.data;
    /* "HTTP/1.x NNN", read by hand: sscanf was a tenth of the driver's own CPU */
    if (strncmp(h, "HTTP/1.", 7) != 0 || h[7] < '0' || h[7] > '9' || h[8] != ' ' || h[9] < '0' ||
        h[9] > '9' || h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9')
        return -1;
    c->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
    c->close_after = h[7] == '0';
    bool has_len = false, chunked = false;
    for (char *line = strstr(h, "\r\n"); line && line[2] != '\r'; line = strstr(line + 2, "\r\n")) {
        char *name = line + 2, *colon = strchr(name, ':');
        char *eol = strstr(name, "\r\n");
        if (!colon || (eol && colon > eol))
            continue;
        char *val = colon + 1;
        while (*val == ' ')
            val++;
        size_t nlen = (size_t)(colon - name);
        if (nlen == 14 && strncasecmp(name, "content-length", 14) == 0) {
            c->remaining = strtoull(val, NULL, 10);
            has_len = true;
        } else if (nlen == 17 && strncasecmp(name, "transfer-encoding", 17) == 0) {
            chunked = strncasecmp(val, "chunked", 7) == 0;
        } else if (nlen == 10 && strncasecmp(name, "connection", 10) == 0) {
            if (strncasecmp(val, "close", 5) == 0)
                c->close_after = true;
            else if (strncasecmp(val, "keep-alive", 10) == 0)
                c->close_after = false;
        }
    }
    if (c->status == 204 || c->status == 304 || (c->status >= 100 && c->status < 200))
        c->ps = P_END;
    else if (chunked)
        c->ps = P_CHUNK_SIZE;
    else if (has_len)
        c->ps = c->remaining ? P_CL : P_END;
    else {
        c->ps = P_CLOSE;
        c->close_after = true;
    }
    return 0;
}

/* Feeds answer bytes; 1: answer complete, 0: more needed, -1: bad answer. */
static int feed(engine *e, conn *c, const char *p, size_t n)
{
    c->wire_in += n;
    while (n > 0 || c->ps == P_END) {
        switch (c->ps) {
        case P_HEAD: {
            size_t old = c->rhead.len;
            buf_add(&c->rhead, p, n);
            size_t from = old > 3 ? old - 3 : 0;
            char *end = memmem(c->rhead.data + from, c->rhead.len - from, "\r\n\r\n", 4);
            if (!end) {
                if (c->rhead.len > 65536)
                    return -1;
                return 0;
            }
            size_t head_len = (size_t)(end - c->rhead.data) + 4;
            size_t used = head_len - old;
            p += used;
            n -= used;
            c->rhead.len = head_len; /* what followed is still in p */
            c->rhead.data[head_len] = '\0';
            if (parse_head(c) < 0)
                return -1;
            break;
        }
        case P_CL:
        case P_CHUNK_DATA: { /* counted bytes: the body, or one chunk of it */
            size_t k = n < c->remaining ? n : (size_t)c->remaining;
            keep(e, c, p, k);
            p += k;
            n -= k;
            c->remaining -= k;
            if (!c->remaining)
                c->ps = c->ps == P_CL ? P_END : P_CHUNK_END;
            break;
        }
        case P_CHUNK_SIZE:
        case P_CHUNK_END:
        case P_TRAILER: {
            const char *nl = memchr(p, '\n', n);
            size_t k = nl ? (size_t)(nl - p) + 1 : n;
            buf_add(&c->line, p, k);
            p += k;
            n -= k;
            if (!nl)
                break;
            if (c->ps == P_CHUNK_SIZE) {
                c->remaining = strtoull(c->line.data, NULL, 16);
                c->ps = c->remaining ? P_CHUNK_DATA : P_TRAILER;
            } else if (c->ps == P_CHUNK_END) {
                c->ps = P_CHUNK_SIZE;
            } else if (c->line.len <= 2) { /* blank line ends the trailers */
                c->ps = P_END;
            }
            c->line.len = 0;
            break;
        }
        case P_CLOSE:
            keep(e, c, p, n);
            n = 0;
            break;
        case P_END:
            return n ? -1 : 1; /* nothing is pipelined: extra bytes are an error */
        }
    }
    return c->ps == P_END ? 1 : 0;
}

static void on_writable(engine *e, conn *c)
{
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            errno = err;
            request_failed(e, c, "connect failed");
            return;
        }
        c->state = C_SENDING;
    }
    if (c->state != C_SENDING)
        return;
    for (;;) {
        struct iovec iov[2];
        int k = 0;
        if (c->head_sent < c->head.len)
            iov[k++] = (struct iovec){c->head.data + c->head_sent, c->head.len - c->head_sent};
        if (c->body_sent < c->body_len)
            iov[k++] = (struct iovec){(void *)(c->body + c->body_sent), c->body_len - c->body_sent};
        if (!k) {
            c->state = C_RECEIVING;
            return;
        }
        ssize_t w = writev(c->fd, iov, k);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            request_failed(e, c, "write failed");
            return;
        }
        size_t left = (size_t)w;
        size_t h = c->head.len - c->head_sent;
        if (left >= h) {
            c->head_sent = c->head.len;
            left -= h;
            c->body_sent += left;
        } else {
            c->head_sent += left;
        }
    }
}

static void on_readable(engine *e, conn *c)
{
    static char chunk[1 << 18];
    for (;;) {
        ssize_t r = read(c->fd, chunk, sizeof chunk);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            request_failed(e, c, "read failed");
            return;
        }
        if (r == 0) {
            if (c->state == C_RECEIVING && c->ps == P_CLOSE) {
                c->ps = P_END;
                c->close_after = true;
                finish(e, c);
            } else if (c->state == C_SENDING || c->state == C_RECEIVING) {
                request_failed(e, c, "server closed the connection mid-request");
                if (c->state == C_IDLE)
                    start_next(e, c);
            } else {
                close_conn(e, c);
            }
            return;
        }
        if (c->state != C_RECEIVING && c->state != C_SENDING)
            continue; /* unsolicited bytes on an idle connection: ignore */
        int f = feed(e, c, chunk, (size_t)r);
        if (f < 0) {
            request_failed(e, c, "malformed answer");
            start_next(e, c);
            return;
        }
        if (f == 1) {
            finish(e, c);
            return;
        }
    }
}

static double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

int engine_run(engine *e)
{
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->conns = calloc((size_t)e->nconns, sizeof *e->conns);
    if (e->epfd < 0 || !e->conns)
        return -1;
    if (e->drain_s <= 0)
        e->drain_s = 120;
    double cpu0 = cpu_self();
    procmon_start(&e->mon, e->pid);
    e->t0 = now_s();
    e->deadline = e->t0 + e->duration_s;
    for (int i = 0; i < e->nconns; i++) {
        e->conns[i].fd = -1;
        e->conns[i].idx = i;
        e->conns[i].state = C_IDLE;
    }
    for (int i = 0; i < e->nconns; i++)
        start_next(e, &e->conns[i]);
    struct epoll_event evs[64];
    double next_sample = e->t0;
    for (;;) {
        int active = 0;
        for (int i = 0; i < e->nconns; i++) {
            conn *c = &e->conns[i];
            if (c->state == C_IDLE)
                start_next(e, c);
            active += c->state != C_DONE;
        }
        if (!active)
            break;
        double t = now_s();
        if (e->duration_s > 0 && t > e->deadline + e->drain_s) {
            for (int i = 0; i < e->nconns; i++) /* bounded: cut what is still running */
                if (e->conns[i].state != C_DONE) {
                    e->aborted++;
                    close_conn(e, &e->conns[i]);
                    e->conns[i].state = C_DONE;
                }
            note_error(e, "%s", "requests still running at the drain deadline were cut");
            break;
        }
        if (t >= next_sample) {
            procmon_sample(&e->mon);
            next_sample = t + 0.05;
            if (e->nwhile && t < e->deadline && !watched_running(e)) {
                e->deadline = t; /* the window ends with the processes watched */
                e->duration_s = t - e->t0;
            }
        }
        int n = epoll_wait(e->epfd, evs, 64, 50);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            if (evs[i].events & (EPOLLOUT | EPOLLERR))
                on_writable(e, c);
            if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_readable(e, c);
        }
    }
    e->elapsed_s = now_s() - e->t0;
    e->server = procmon_end(&e->mon);
    e->driver_cpu_s = cpu_self() - cpu0;
    for (int k = 0; k < ENGINE_KINDS; k++)
        lat_sort(&e->st[k]);
    lat_sort(&e->corrected);
    return 0;
}

void engine_free(engine *e)
{
    for (int i = 0; e->conns && i < e->nconns; i++) {
        conn *c = &e->conns[i];
        close_conn(e, c);
        buf_free(&c->head);
        buf_free(&c->own);
        buf_free(&c->rhead);
        buf_free(&c->line);
        buf_free(&c->rbody);
    }
    free(e->conns);
    e->conns = NULL;
    if (e->epfd >= 0)
        close(e->epfd);
    for (int k = 0; k < ENGINE_KINDS; k++)
        free(e->st[k].v);
    free(e->corrected.v);
}
