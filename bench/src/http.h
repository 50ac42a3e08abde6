/*
 * A small HTTP/1.1 load engine: N keep-alive connections to one loopback
 * server, one thread, epoll, closed loop (each connection sends its next
 * request as soon as the previous answer is complete). Requests are POSTs
 * whose body is never copied (a shared buffer is sent from every
 * connection). Answers may have Content-Length, be chunked, or end at close.
 * Every byte each way is counted, on the wire and as body.
 */
#ifndef PSBENCH_HTTP_H
#define PSBENCH_HTTP_H

#include "buf.h"
#include "procmon.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ENGINE_KINDS 2
#define ENGINE_WHILE_PIDS 8

typedef struct lat_stats {
    double *v; /* seconds */
    size_t n, cap;
    uint64_t wire_out, wire_in, body_out, body_in;
    long ok, failed, in_window;
    long status_2xx, status_4xx, status_5xx, status_other;
} lat_stats;

typedef struct conn conn;
typedef struct engine engine;

/* Fills the next request of a connection (engine_set_request); false: no more. */
typedef bool (*engine_next_fn)(engine *e, conn *c);
/* Called when an answer is complete; body is what was kept (keep_body). */
typedef void (*engine_done_fn)(engine *e, conn *c, int status, const char *body, size_t len);

struct engine {
    /* set by the caller */
    const char *host;
    int port;
    int nconns;
    double duration_s;  /* 0: no time limit */
    long count;         /* 0: no count limit */
    double drain_s;     /* after the time limit, how long in-flight requests may finish */
    bool keep_body;     /* keep whole answer bodies (else only the first KiB) */
    bool gzip;          /* send Accept-Encoding: gzip */
    const char *method; /* NULL: POST */
    const char *header; /* NULL, or one more header line, without CRLF ("Name: value") */
    engine_next_fn next;
    engine_done_fn done;
    void *user;
    pid_t pid; /* server to watch, 0: none */
    /* the time window also ends once all of these processes have exited (e.g. the
     * writers a reader is measured against); duration_s stays the upper bound */
    pid_t while_pid[ENGINE_WHILE_PIDS];
    int nwhile;
    /* > 0: the latencies are also kept as a device polling at this interval would see
     * them: an answer late by k intervals adds the k polls that would have waited behind
     * it (HdrHistogram's expected-interval correction of a closed loop) */
    double poll_interval_s;

    /* results */
    lat_stats st[ENGINE_KINDS];
    lat_stats corrected; /* with poll_interval_s: kind 0's latencies, corrected */
    long issued, aborted, conn_errors;
    double elapsed_s;
    procmon_result server;
    double driver_cpu_s;
    char first_error[512];

    /* internal */
    int epfd;
    conn *conns;
    double t0, deadline;
    procmon mon;
};

/* Sets the request a connection sends next: POST path with body (not copied;
 * must live until the answer). kind: which lat_stats it counts in. The head
 * made for a path is reused while the same path pointer and body length
 * come again: a path's text must not change under the same pointer. */
void engine_set_request(engine *e, conn *c, const char *path, const char *body, size_t len,
                        int kind);
/* A buffer owned by the connection, for bodies built per request. */
buf *engine_conn_buf(conn *c);
int engine_conn_index(const conn *c);

/* Runs until the limits are reached; 0 on success, -1 if nothing could connect. */
int engine_run(engine *e);
void engine_free(engine *e);

double now_s(void);
/* Percentile (0..100) of sorted values. */
double percentile(const double *sorted, size_t n, double p);
void lat_sort(lat_stats *s);

#endif
