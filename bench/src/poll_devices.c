/*
 * psbench_poll: N devices polling polysyncd from ONE process, through
 * libpolysync, as an app that syncs several stores would (the PouchDB
 * column's "16 devices polling", bench/pouch_column.py).
 *
 *   psbench_poll --url URL --seconds S [--retries N] STORE...
 *
 * Each STORE is an existing local store (a copy of a device that synced
 * before); each gets its own ps_client handle and its own thread, which
 * calls ps_client_sync() again and again until S seconds have passed. This
 * is the counterpart of PouchDB's `device.js poll`, where all devices share
 * one Node process: starting a `polysync` process per sync would measure
 * process starts (~14 ms of the ~20 ms a no-op sync costs), not syncs.
 *
 * Prints one JSON line: devices, syncs, failed, elapsed_s, per_s, p50, p99
 * (seconds, over the successful syncs, the same percentile rule as
 * device.js), cpu_s (this process, user + system), bytes_sent,
 * bytes_received, legacy (syncs that fell back to the legacy /sync).
 * A failed sync is counted; the first failure of each error code is
 * printed to stderr. Exit 0 when at least one sync succeeded, 1 when none
 * did, 2 for wrong arguments or a store that cannot be opened.
 *
 * Unlike psbench it links libpolysync: what it measures is the library.
 */
#include "polysync/client.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct device {
    ps_client *client;
    const char *path;
    pthread_t thread;
    double *lat; /* seconds of each successful sync; owned, grown by doubling */
    size_t n, cap;
    size_t failed, legacy;
    uint64_t bytes_sent, bytes_received;
    bool oom; /* the latency array could not grow: the run is void */
} device;

/* CLOCK_MONOTONIC seconds; set before the threads start, or to 0 to stop
 * them early when one of them could not be started */
static _Atomic double end_at;

/* One flag per ps_code seen failing, so each kind of failure is told once,
 * not once per sync of a loop that may fail thousands of times. */
#define CODES_TOLD 256
static atomic_bool told[CODES_TOLD];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void tell_failure(const device *d, ps_code rc, const ps_error *err)
{
    unsigned i = (unsigned)rc < CODES_TOLD ? (unsigned)rc : CODES_TOLD - 1;
    if (atomic_exchange(&told[i], true))
        return;
    fprintf(stderr, "psbench_poll: %s: sync failed: %s (HTTP %d): %s\n", d->path, ps_strerror(rc),
            ps_client_last_http_status(d->client), err->message[0] ? err->message : "-");
}

static void *poll_loop(void *arg)
{
    device *d = arg;
    while (now_s() < atomic_load(&end_at)) {
        ps_sync_stats st;
        ps_error err;
        memset(&st, 0, sizeof st);
        ps_error_clear(&err);
        double t = now_s();
        ps_code rc = ps_client_sync(d->client, &st, &err);
        double dt = now_s() - t;
        d->bytes_sent += st.bytes_sent;
        d->bytes_received += st.bytes_received;
        if (rc != PS_OK) {
            d->failed++;
            tell_failure(d, rc, &err);
            continue;
        }
        if (st.protocol && strcmp(st.protocol, "legacy") == 0)
            d->legacy++;
        if (d->n == d->cap) {
            size_t cap = d->cap ? d->cap * 2 : 1024;
            double *p = realloc(d->lat, cap * sizeof *p);
            if (!p) {
                d->oom = true;
                break;
            }
            d->lat = p;
            d->cap = cap;
        }
        d->lat[d->n++] = dt;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* device.js's rule: the value at floor(p% of n), the last for p = 100 */
static double pct(const double *v, size_t n, double p)
{
    size_t i = (size_t)(p / 100 * (double)n);
    return v[i < n ? i : n - 1];
}

static int usage(void)
{
    fprintf(stderr, "usage: psbench_poll --url URL --seconds S [--retries N] STORE...\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *url = NULL;
    double seconds = 0;
    long retries = 1; /* as the CLI's polling devices: `polysync --retries 1 sync` */
    int first = 1;
    while (first + 1 < argc && strncmp(argv[first], "--", 2) == 0) {
        const char *k = argv[first], *v = argv[first + 1];
        char *e = NULL;
        if (strcmp(k, "--url") == 0)
            url = v;
        else if (strcmp(k, "--seconds") == 0)
            seconds = strtod(v, &e);
        else if (strcmp(k, "--retries") == 0)
            retries = strtol(v, &e, 10);
        else
            return usage();
        if (e && (*e || e == v)) {
            fprintf(stderr, "psbench_poll: %s: not a number: %s\n", k, v);
            return 2;
        }
        first += 2;
    }
    size_t n = argc > first ? (size_t)(argc - first) : 0;
    if (!url || !(seconds > 0) || retries < 1 || n == 0)
        return usage();

    int status = 2;
    size_t started = 0;
    double *all = NULL;
    device *devs = calloc(n, sizeof *devs);
    if (!devs) {
        fprintf(stderr, "psbench_poll: out of memory\n");
        return 2;
    }
    ps_retry_policy pol;
    ps_retry_policy_default(&pol);
    pol.max_attempts = (unsigned)retries;
    for (size_t i = 0; i < n; i++) {
        device *d = &devs[i];
        ps_error err;
        ps_error_clear(&err);
        d->path = argv[first + (int)i];
        /* ps_client_open creates a missing store: a mistyped path would poll
         * as a new, empty device and measure something else */
        if (access(d->path, R_OK | W_OK) != 0) {
            fprintf(stderr, "psbench_poll: %s: %s\n", d->path, strerror(errno));
            goto out;
        }
        ps_code rc = ps_client_open(d->path, &d->client, &err);
        if (rc == PS_OK)
            rc = ps_client_set_server(d->client, url, &err);
        if (rc != PS_OK) {
            fprintf(stderr, "psbench_poll: %s: %s: %s\n", d->path, ps_strerror(rc), err.message);
            goto out;
        }
        ps_client_set_retry(d->client, &pol);
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s();
    atomic_store(&end_at, t0 + seconds);
    for (; started < n; started++) {
        int e = pthread_create(&devs[started].thread, NULL, poll_loop, &devs[started]);
        if (e) {
            fprintf(stderr, "psbench_poll: pthread_create: %s\n", strerror(e));
            atomic_store(&end_at, 0.0); /* those started stop after their sync */
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(devs[i].thread, NULL);
    started = 0;
    double elapsed = now_s() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;

    size_t syncs = 0, failed = 0, legacy = 0;
    uint64_t sent = 0, received = 0;
    for (size_t i = 0; i < n; i++) {
        if (devs[i].oom) {
            fprintf(stderr, "psbench_poll: out of memory for the latencies\n");
            goto out;
        }
        syncs += devs[i].n;
        failed += devs[i].failed;
        legacy += devs[i].legacy;
        sent += devs[i].bytes_sent;
        received += devs[i].bytes_received;
    }
    all = malloc((syncs ? syncs : 1) * sizeof *all);
    if (!all) {
        fprintf(stderr, "psbench_poll: out of memory\n");
        goto out;
    }
    for (size_t i = 0, k = 0; i < n; i++) {
        if (devs[i].n) /* lat is NULL for a device with no success: no memcpy from NULL */
            memcpy(all + k, devs[i].lat, devs[i].n * sizeof *all);
        k += devs[i].n;
    }
    qsort(all, syncs, sizeof *all, cmp_double);
    char p50[32] = "null", p99[32] = "null";
    if (syncs) {
        snprintf(p50, sizeof p50, "%.6f", pct(all, syncs, 50));
        snprintf(p99, sizeof p99, "%.6f", pct(all, syncs, 99));
    }
    printf("{\"devices\":%zu,\"syncs\":%zu,\"failed\":%zu,\"elapsed_s\":%.3f,\"per_s\":%.2f,"
           "\"p50\":%s,\"p99\":%s,\"cpu_s\":%.3f,\"bytes_sent\":%llu,\"bytes_received\":%llu,"
           "\"legacy\":%zu}\n",
           n, syncs, failed, elapsed, (double)syncs / elapsed, p50, p99, cpu,
           (unsigned long long)sent, (unsigned long long)received, legacy);
    fflush(stdout);
    status = syncs ? 0 : 1;
out:
    for (size_t i = 0; i < started; i++)
        pthread_join(devs[i].thread, NULL);
    for (size_t i = 0; i < n; i++) {
        ps_client_close(devs[i].client);
        free(devs[i].lat);
    }
    free(devs);
    free(all);
    return status;
}
