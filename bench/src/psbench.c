/*
 * psbench: the dataset generator and load driver of polysync's benchmark.
 *
 *   psbench gen     --chats N --messages M [--first F] [--seed S] [--device D]
 *                   [--envelope-device D2] [--out FILE]
 *   psbench gen     ... [--shape seed]   (seed: the seed document's {"chats":[...]} only)
 *   psbench load    --url URL --path P (--body FILE[,FILE...] | --body-json TEXT)
 *                   [--conns C] [--duration S] [--count N] [--pid PID] [--drain S]
 *                   [--method GET] [--header "Name: value"] [--while-pids P1,P2]
 *                   [--poll-interval-ms T]  (also: latencies as a device polling every T
 *                   ms sees them, an answer late by k polls adding the k that waited)
 *                   (several bodies: request k sends body k mod n, in order)
 *   psbench seed-v2 --url URL --device D --chats N --messages M [--big-messages K]
 *                   [--batch B] [--seed S]
 *   psbench v2msg   --url URL --cursor C --device-a A --device-b B --count N
 *                   [--first-msg K] [--pid PID]
 *
 * Every command but gen prints one JSON object (see docs/performance.md).
 * bench/run.py drives them; they are usable by hand as well.
 */
#include "buf.h"
#include "gen.h"
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arguments ---- */

typedef struct args {
    int argc;
    char **argv;
} args;

static const char *opt(const args *a, const char *name, const char *dflt)
{
    for (int i = 2; i + 1 < a->argc; i++)
        if (strcmp(a->argv[i], name) == 0)
            return a->argv[i + 1];
    return dflt;
}

static long opt_long(const args *a, const char *name, long dflt)
{
    const char *v = opt(a, name, NULL);
    return v ? strtol(v, NULL, 10) : dflt;
}

static double opt_double(const args *a, const char *name, double dflt)
{
    const char *v = opt(a, name, NULL);
    return v ? strtod(v, NULL) : dflt;
}

static const char *need(const args *a, const char *name)
{
    const char *v = opt(a, name, NULL);
    if (!v) {
        fprintf(stderr, "psbench %s: %s is required\n", a->argv[1], name);
        exit(2);
    }
    return v;
}

static void parse_url(const char *url, engine *e)
{
    static char host[256];
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *colon = strrchr(p, ':');
    if (!colon) {
        fprintf(stderr, "psbench: --url needs a port: %s\n", url);
        exit(2);
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - p), p);
    e->host = host;
    e->port = atoi(colon + 1);
}

static gen_cfg gen_from(const args *a, const char *device)
{
    return (gen_cfg){.seed = (uint64_t)opt_long(a, "--seed", GEN_DEFAULT_SEED),
                     .device = opt(a, "--device", device),
                     .envelope = opt(a, "--envelope-device", NULL)};
}

/* ---- JSON output ---- */

static void print_stats(const char *name, const lat_stats *s, double window_s, int last)
{
    long n = (long)s->n;
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i];
    double per = n ? 1.0 / (double)n : 0;
    printf("\"%s\":{\"requests\":%ld,\"ok\":%ld,\"failed\":%ld,\"in_window\":%ld,"
           "\"throughput_rps\":%.3f,"
           "\"lat_ms\":{\"min\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f,"
           "\"mean\":%.3f},"
           "\"wire_out\":%llu,\"wire_in\":%llu,\"body_out\":%llu,\"body_in\":%llu,"
           "\"per_request\":{\"wire_out\":%.1f,\"wire_in\":%.1f,\"body_out\":%.1f,"
           "\"body_in\":%.1f},"
           "\"status\":{\"2xx\":%ld,\"4xx\":%ld,\"5xx\":%ld,\"other\":%ld}}%s",
           name, n, s->ok, s->failed, s->in_window,
           window_s > 0 ? (double)s->in_window / window_s : 0, n ? s->v[0] * 1e3 : 0,
           percentile(s->v, s->n, 50) * 1e3, percentile(s->v, s->n, 90) * 1e3,
           percentile(s->v, s->n, 99) * 1e3, n ? s->v[s->n - 1] * 1e3 : 0,
           n ? sum / (double)n * 1e3 : 0, (unsigned long long)s->wire_out,
           (unsigned long long)s->wire_in, (unsigned long long)s->body_out,
           (unsigned long long)s->body_in, (double)s->wire_out * per, (double)s->wire_in * per,
           (double)s->body_out * per, (double)s->body_in * per, s->status_2xx, s->status_4xx,
           s->status_5xx, s->status_other, last ? "" : ",");
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void print_engine(const engine *e, const char *const *names, int kinds)
{
    /* throughput: answers completed inside the time window, or all of them over the
     * elapsed time when the run was bounded by count */
    double window = e->duration_s > 0 ? e->duration_s : e->elapsed_s;
    printf("{\"conns\":%d,\"duration_s\":%.3f,\"elapsed_s\":%.3f,\"issued\":%ld,"
           "\"aborted\":%ld,\"conn_errors\":%ld,",
           e->nconns, e->duration_s, e->elapsed_s, e->issued, e->aborted, e->conn_errors);
    printf(
        "\"server\":{\"pid\":%d,\"cpu_s\":%.3f,\"peak_rss_kib\":%ld,\"sampled_peak_rss_kib\":%ld,"
        "\"rss_end_kib\":%ld,\"peak_is_exact\":%s,\"sampled_peak_anon_kib\":%ld,"
        "\"sampled_peak_file_kib\":%ld,\"thread_cpu_s\":[",
        (int)e->pid, e->server.cpu_s, e->server.hwm_kib, e->server.rss_peak_kib,
        e->server.rss_end_kib, e->server.hwm_reset ? "true" : "false", e->server.anon_peak_kib,
        e->server.file_peak_kib);
    for (int i = 0; i < e->server.nthreads; i++)
        printf("%s%.3f", i ? "," : "", e->server.thread_cpu_s[i]);
    printf("]},");
    printf("\"driver_cpu_s\":%.3f,\"machine_busy_s\":%.3f,\"first_error\":", e->driver_cpu_s,
           e->server.machine_busy_s);
    print_json_string(e->first_error);
    putchar(',');
    if (e->poll_interval_s > 0) {
        const lat_stats *s = &e->corrected;
        printf("\"corrected\":{\"poll_interval_ms\":%.3f,\"samples\":%zu,\"lat_ms\":{"
               "\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f}},",
               e->poll_interval_s * 1e3, s->n, percentile(s->v, s->n, 50) * 1e3,
               percentile(s->v, s->n, 90) * 1e3, percentile(s->v, s->n, 99) * 1e3,
               s->n ? s->v[s->n - 1] * 1e3 : 0);
    }
    for (int k = 0; k < kinds; k++)
        print_stats(names[k], &e->st[k], window, 0);
}

static void extract_cursor(const char *body, char *out, size_t cap)
{
    const char *p = strstr(body, "\"cursor\":\"");
    if (!p)
        return;
    p += 10;
    const char *q = strchr(p, '"');
    if (!q || (size_t)(q - p) >= cap)
        return;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
}

/* ---- gen ---- */

static int cmd_gen(const args *a)
{
    gen_cfg g = gen_from(a, "bench-device");
    long chats = opt_long(a, "--chats", 2000), msgs = opt_long(a, "--messages", 50);
    long first = opt_long(a, "--first", 0);
    const char *out = opt(a, "--out", NULL);
    buf b = {0};
    if (strcmp(opt(a, "--shape", "polysync"), "seed") == 0)
        gen_seed_body(&b, &g, first, chats, msgs);
    else
        gen_legacy_body(&b, &g, first, chats, msgs);
    FILE *f = out ? fopen(out, "wb") : stdout;
    if (!f || fwrite(b.data, 1, b.len, f) != b.len || (out && fclose(f) != 0)) {
        perror(out ? out : "stdout");
        return 1;
    }
    fprintf(stderr, "psbench gen: %ld chats x %ld messages (from #%ld): %zu bytes\n", chats, msgs,
            first, b.len);
    buf_free(&b);
    return 0;
}

/* ---- load: one fixed body, again and again ---- */

#define LOAD_MAX_BODIES 16

typedef struct fixed_job {
    const char *path;
    buf body[LOAD_MAX_BODIES];
    int nbodies;
    long next; /* requests issued so far: which body goes next */
} fixed_job;

static bool fixed_next(engine *e, conn *c)
{
    fixed_job *j = e->user;
    const buf *b = &j->body[j->next++ % j->nbodies];
    engine_set_request(e, c, j->path, b->data, b->len, 0);
    return true;
}

/* --body A,B,C: each file read whole, sent in turn */
static int read_bodies(fixed_job *j, const char *list)
{
    char *copy = strdup(list);
    for (char *save = NULL, *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        if (j->nbodies == LOAD_MAX_BODIES) {
            fprintf(stderr, "psbench load: at most %d bodies\n", LOAD_MAX_BODIES);
            free(copy);
            return -1;
        }
        buf_read_file(&j->body[j->nbodies++], f);
    }
    free(copy);
    return j->nbodies ? 0 : -1;
}

static void setup_engine(engine *e, const args *a)
{
    memset(e, 0, sizeof *e);
    e->epfd = -1;
    parse_url(need(a, "--url"), e);
    e->nconns = (int)opt_long(a, "--conns", 1);
    e->duration_s = opt_double(a, "--duration", 0);
    e->count = opt_long(a, "--count", 0);
    e->drain_s = opt_double(a, "--drain", 120);
    e->pid = (pid_t)opt_long(a, "--pid", 0);
    e->gzip = opt_long(a, "--gzip", 0) != 0;
    e->header = opt(a, "--header", NULL);
    e->poll_interval_s = opt_double(a, "--poll-interval-ms", 0) / 1e3;
    const char *w = opt(a, "--while-pids", NULL); /* comma-separated */
    for (char *end = NULL; w && *w && e->nwhile < ENGINE_WHILE_PIDS; w = end + (*end == ',')) {
        long pid = strtol(w, &end, 10);
        if (end == w)
            break;
        e->while_pid[e->nwhile++] = (pid_t)pid;
    }
    if (e->duration_s <= 0 && e->count <= 0)
        e->count = 1;
}

static int cmd_load(const args *a)
{
    engine e;
    setup_engine(&e, a);
    fixed_job j = {.path = opt(a, "--path", "/sync")};
    const char *file = opt(a, "--body", NULL), *text = opt(a, "--body-json", NULL);
    e.method = opt(a, "--method", NULL);
    if (file) {
        if (read_bodies(&j, file) < 0)
            return 2;
    } else if (text) {
        buf_adds(&j.body[j.nbodies++], text);
    } else if (e.method && strcmp(e.method, "GET") == 0) {
        j.nbodies = 1; /* no body */
    } else {
        fputs("psbench load: --body FILE or --body-json TEXT\n", stderr);
        return 2;
    }
    e.next = fixed_next;
    e.user = &j;
    if (engine_run(&e) < 0)
        return 1;
    const char *names[] = {"sync"};
    print_engine(&e, names, 1);
    printf("\"path\":\"%s\"}\n", j.path);
    engine_free(&e);
    for (int i = 0; i < j.nbodies; i++)
        buf_free(&j.body[i]);
    return 0;
}

/* ---- seed-v2: create a store through /v2/sync, batch by batch ---- */

typedef struct seed_job {
    gen_cfg g;
    long chats, msgs, big_msgs, batch;
    long next_chat; /* next chat index to send; chats == all sent */
    bool big_sent, hello_sent;
    long accepted_expected, accepted;
    char cursor[128];
} seed_job;

static bool seed_next(engine *e, conn *c)
{
    seed_job *j = e->user;
    buf *b = engine_conn_buf(c);
    b->len = 0;
    if (!j->hello_sent) { /* first: an empty pull, for the cursor */
        j->hello_sent = true;
        buf_addf(b, "{\"deviceId\":\"%s\",\"cursor\":null}", j->g.device);
        engine_set_request(e, c, "/v2/sync", b->data, b->len, 0);
        return true;
    }
    if (!j->cursor[0])
        return false;
    long n = 0;
    buf_addf(b, "{\"deviceId\":\"%s\",\"cursor\":\"%s\",\"changes\":[", j->g.device, j->cursor);
    if (j->next_chat < j->chats) {
        for (; j->next_chat < j->chats && n < j->batch; j->next_chat++, n++) {
            if (n)
                buf_addc(b, ',');
            gen_chat_change(b, &j->g, j->next_chat, j->msgs, j->next_chat + 1);
        }
    } else if (j->big_msgs > 0 && !j->big_sent) {
        j->big_sent = true;
        gen_chat_change(b, &j->g, GEN_BIG_CHAT, j->big_msgs, j->chats + 1);
        n = 1;
    } else {
        return false;
    }
    buf_adds(b, "]}");
    j->accepted_expected += n;
    engine_set_request(e, c, "/v2/sync", b->data, b->len, 0);
    return true;
}

static void seed_done(engine *e, conn *c, int status, const char *body, size_t len)
{
    seed_job *j = e->user;
    (void)c;
    (void)len;
    if (status != 200) {
        j->cursor[0] = '\0'; /* stop */
        return;
    }
    extract_cursor(body, j->cursor, sizeof j->cursor);
    const char *acc = strstr(body, "\"accepted\":");
    if (acc)
        j->accepted += strtol(acc + 11, NULL, 10);
}

static int cmd_seed_v2(const args *a)
{
    engine e;
    setup_engine(&e, a);
    e.count = 0;
    e.duration_s = 0;
    seed_job j = {
        .g = gen_from(a, NULL),
        .chats = opt_long(a, "--chats", 10),
        .msgs = opt_long(a, "--messages", 50),
        .big_msgs = opt_long(a, "--big-messages", 5000),
        .batch = opt_long(a, "--batch", 200),
    };
    if (!j.g.device)
        j.g.device = need(a, "--device");
    e.next = seed_next;
    e.done = seed_done;
    e.user = &j;
    e.keep_body = true;
    if (engine_run(&e) < 0)
        return 1;
    const char *names[] = {"requests"};
    print_engine(&e, names, 1);
    printf("\"chats\":%ld,\"messages\":%ld,\"big_messages\":%ld,\"accepted\":%ld,"
           "\"accepted_expected\":%ld,\"cursor\":\"%s\"}\n",
           j.chats, j.msgs, j.big_msgs, j.accepted, j.accepted_expected, j.cursor);
    engine_free(&e);
    return j.accepted == j.accepted_expected && j.cursor[0] ? 0 : 1;
}

/* ---- v2msg: device A adds one message to the long chat, device B pulls it ---- */

typedef struct msg_job {
    gen_cfg g;
    const char *dev_a, *dev_b;
    char cursor_a[128], cursor_before[128];
    char chat_id[37], msg_id[37];
    long next_msg, sent, count;
    bool pull_next;
    long delivered, accepted;
    buf msg;
    double msg_bytes;
} msg_job;

static bool msg_next(engine *e, conn *c)
{
    msg_job *j = e->user;
    buf *b = engine_conn_buf(c);
    b->len = 0;
    if (j->pull_next) {
        buf_addf(b, "{\"deviceId\":\"%s\",\"cursor\":\"%s\"}", j->dev_b, j->cursor_before);
        engine_set_request(e, c, "/v2/sync", b->data, b->len, 1);
        return true;
    }
    if (j->sent >= j->count)
        return false;
    j->msg.len = 0;
    gen_message(&j->msg, &j->g, GEN_BIG_CHAT, j->next_msg);
    gen_message_id(&j->g, GEN_BIG_CHAT, j->next_msg, j->msg_id);
    j->msg_bytes += (double)j->msg.len;
    snprintf(j->cursor_before, sizeof j->cursor_before, "%s", j->cursor_a);
    buf_addf(b,
             "{\"deviceId\":\"%s\",\"cursor\":\"%s\",\"changes\":[{\"chatId\":\"%s\","
             "\"clock\":%ld,\"messages\":[",
             j->dev_a, j->cursor_a, j->chat_id, 10000000 + j->next_msg);
    buf_add(b, j->msg.data, j->msg.len);
    buf_adds(b, "]}]}");
    j->next_msg++;
    j->sent++;
    engine_set_request(e, c, "/v2/sync", b->data, b->len, 0);
    return true;
}

static void msg_done(engine *e, conn *c, int status, const char *body, size_t len)
{
    msg_job *j = e->user;
    (void)c;
    (void)len;
    if (j->pull_next) {
        j->pull_next = false;
        if (status == 200 && strstr(body, j->msg_id))
            j->delivered++;
        return;
    }
    if (status != 200) {
        j->count = j->sent; /* stop */
        return;
    }
    const char *acc = strstr(body, "\"accepted\":");
    if (acc)
        j->accepted += strtol(acc + 11, NULL, 10);
    extract_cursor(body, j->cursor_a, sizeof j->cursor_a);
    j->pull_next = true;
}

static int cmd_v2msg(const args *a)
{
    engine e;
    setup_engine(&e, a);
    msg_job j = {
        .g = gen_from(a, "bench-a"),
        .dev_a = opt(a, "--device-a", "bench-a"),
        .dev_b = opt(a, "--device-b", "bench-b"),
        .next_msg = opt_long(a, "--first-msg", 100000),
        .count = opt_long(a, "--count", 20),
    };
    snprintf(j.cursor_a, sizeof j.cursor_a, "%s", need(a, "--cursor"));
    gen_chat_id(&j.g, GEN_BIG_CHAT, j.chat_id);
    e.count = 0;
    e.duration_s = 0;
    e.nconns = 1;
    e.keep_body = true;
    e.next = msg_next;
    e.done = msg_done;
    e.user = &j;
    if (engine_run(&e) < 0)
        return 1;
    const char *names[] = {"push", "pull"};
    print_engine(&e, names, 2);
    printf("\"messages\":%ld,\"accepted\":%ld,\"delivered\":%ld,\"message_bytes\":%.1f,"
           "\"cursor\":\"%s\"}\n",
           j.sent, j.accepted, j.delivered, j.sent ? j.msg_bytes / (double)j.sent : 0, j.cursor_a);
    engine_free(&e);
    buf_free(&j.msg);
    return j.delivered == j.sent && j.accepted == j.sent ? 0 : 1;
}

int main(int argc, char **argv)
{
    args a = {argc, argv};
    const char *cmd = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    if (strcmp(cmd, "gen") == 0)
        return cmd_gen(&a);
    if (strcmp(cmd, "load") == 0)
        return cmd_load(&a);
    if (strcmp(cmd, "seed-v2") == 0)
        return cmd_seed_v2(&a);
    if (strcmp(cmd, "v2msg") == 0)
        return cmd_v2msg(&a);
    fputs("usage: psbench gen|load|seed-v2|v2msg [options]  (see bench/src/psbench.c)\n", stderr);
    return 2;
}
