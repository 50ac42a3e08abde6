/*
 * The chats' waiting room; see body_spool.h. The first buffer holds the
 * chats that arrive first, up to memory_max bytes; once it is full it is
 * kept as it is ("frozen") and a smaller one (the tail, a sixteenth of
 * memory_max) takes the next chats, in order, the sealed ones not yet
 * written to the file and the chat being received; the file holds the
 * sealed chats before them. A chat is never split between two places:
 * only whole sealed chats are written out. So a body a little over
 * memory_max writes a little to the file, not memory_max: when the whole
 * buffer went to the file each time it was full, the 67 MB of a
 * re-serialized reference history wrote 64 MiB through the page cache on
 * every sync.
 */
/* O_TMPFILE, mkostemp: _GNU_SOURCE (set for the whole build) */
#include "server/body_spool.h"
#include "server/prefault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct span {
    uint64_t at; /* in the frozen buffer for the chats kept there; else in
                  * the rest of the spool: file bytes first, then the buffer's */
    size_t len;
} span;

struct ps_body_spool {
    char *dir;
    size_t memory_max;
    int fd;            /* -1 until memory_max is passed */
    uint64_t file_len; /* bytes in the file; the buffer follows them */
    char *buf;         /* each buffer is PS_SPOOL_PADDING bytes more than its cap */
    size_t len, cap;
    size_t current; /* where in buf the chat being received starts */
    char *frozen;   /* the first buffer once full: chats [0, frozen_count) */
    size_t frozen_cap, frozen_count;
    span *spans;
    size_t count, spans_cap;
    size_t expected;       /* the body's announced size, or 0 (ps_body_spool_expect) */
    ps_prefault *prefault; /* populating the first big buffer ahead of the chats */
    /* chats read back from the file, one buffer per reader (two threads
     * may read at once, each with its own: ps_body_spool_read_as) */
    struct spool_reader {
        char *buf;
        size_t cap;
        size_t index; /* which chat it holds, plus one (0: none) */
    } readers[PS_SPOOL_READERS];
};

ps_body_spool *ps_body_spool_new(const char *dir, size_t memory_max)
{
    ps_body_spool *sp = calloc(1, sizeof *sp);
    if (!sp || !(sp->dir = strdup(dir ? dir : "."))) {
        free(sp);
        return NULL;
    }
    sp->memory_max = memory_max;
    sp->fd = -1;
    return sp;
}

/* Before the buffer being prefaulted is freed, moved or given away. */
static void stop_prefault(ps_body_spool *sp)
{
    ps_prefault_finish(sp->prefault);
    sp->prefault = NULL;
}

void ps_body_spool_expect(ps_body_spool *sp, size_t bytes)
{
    sp->expected = bytes;
}

void ps_body_spool_free(ps_body_spool *sp)
{
    if (!sp)
        return;
    stop_prefault(sp);
    if (sp->fd >= 0)
        close(sp->fd);
    free(sp->dir);
    free(sp->buf);
    free(sp->frozen);
    free(sp->spans);
    for (unsigned r = 0; r < PS_SPOOL_READERS; r++)
        free(sp->readers[r].buf);
    free(sp);
}

static ps_code io_error(ps_error *err, const char *what, const char *dir)
{
    return ps_error_set(err, PS_ERR_IO, -1, "", "cannot %s a spool file in %s: %s", what, dir,
                        strerror(errno));
}

/* A file without a name in dir: O_TMPFILE, or mkstemp and unlink at once. */
static int open_nameless(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/.polysyncd-body-XXXXXX", dir) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
        unlink(path);
    return fd;
}

static ps_code write_all(ps_body_spool *sp, const char *p, size_t n, ps_error *err)
{
    while (n > 0) {
        ssize_t w = pwrite(sp->fd, p, n, (off_t)sp->file_len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = ENOSPC;
            return io_error(err, "write", sp->dir);
        }
        p += w;
        n -= (size_t)w;
        sp->file_len += (uint64_t)w;
    }
    return PS_OK;
}

/* Writes the sealed chats in the buffer to the file (making it first). */
static ps_code flush_sealed(ps_body_spool *sp, ps_error *err)
{
    if (sp->fd < 0 && (sp->fd = open_nameless(sp->dir)) < 0)
        return io_error(err, "make", sp->dir);
    ps_code rc = write_all(sp, sp->buf, sp->current, err);
    if (rc != PS_OK)
        return rc;
    memmove(sp->buf, sp->buf + sp->current, sp->len - sp->current);
    sp->len -= sp->current;
    sp->current = 0;
    return PS_OK;
}

/* What the buffer being filled may hold: memory_max for the first, a
 * sixteenth of it for the tail. */
static size_t buffer_limit(const ps_body_spool *sp)
{
    if (!sp->frozen)
        return sp->memory_max;
    size_t tail = sp->memory_max / 16;
    return tail ? tail : 1;
}

/* The first buffer is full: it keeps its sealed chats, and a new tail
 * takes the chat being received. */
static ps_code freeze(ps_body_spool *sp, ps_error *err)
{
    stop_prefault(sp);
    size_t partial = sp->len - sp->current;
    size_t cap = partial > 4096 ? partial : 4096;
    char *tail = malloc(cap + PS_SPOOL_PADDING);
    if (!tail)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    memcpy(tail, sp->buf + sp->current, partial);
    sp->frozen = sp->buf;
    sp->frozen_cap = sp->cap;
    sp->frozen_count = sp->count;
    sp->buf = tail;
    sp->cap = cap;
    sp->len = partial;
    sp->current = 0;
    return PS_OK;
}

/* Past this a buffer grows straight to its largest size (memory_max, or
 * the one chat that needs more), in huge pages where the kernel has them:
 * filling 64 MiB of fresh 4 KiB pages cost a fifth of a byte-identical
 * re-sync of the reference history (page faults, perf), and growing it by
 * doubling copies what was received. */
#define BIG_BUFFER_FROM ((size_t)1 << 20)
#define HUGE_PAGE ((size_t)2 << 20)

static ps_code grow(ps_body_spool *sp, size_t need, ps_error *err)
{
    size_t cap = sp->cap ? sp->cap : 64 * 1024;
    while (cap < need)
        cap *= 2;
    char *grown;
    if (cap <= BIG_BUFFER_FROM) {
        grown = realloc(sp->buf, cap + PS_SPOOL_PADDING);
    } else {
        stop_prefault(sp); /* sp->buf is about to be freed */
        size_t limit = buffer_limit(sp);
        cap = need > limit ? need : limit;
        cap = (cap + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
        void *big = NULL;
        if (posix_memalign(&big, HUGE_PAGE, cap + PS_SPOOL_PADDING) != 0)
            big = NULL;
        grown = big;
        if (grown) {
#ifdef MADV_HUGEPAGE
            (void)madvise(grown, cap, MADV_HUGEPAGE); /* a hint: fine if refused */
#endif
            memcpy(grown, sp->buf, sp->len);
            free(sp->buf);
            /* the pages the rest of the body will fill, made ready on
             * another core while it arrives (prefault.h); only as far as
             * the body is announced to go, so a small body costs no more
             * memory than before */
            size_t ahead = sp->expected < cap ? sp->expected : cap;
            if (!sp->frozen && ahead > sp->len)
                sp->prefault = ps_prefault_start(grown + sp->len, ahead - sp->len);
        }
    }
    if (!grown)
        return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    sp->buf = grown;
    sp->cap = cap;
    return PS_OK;
}

ps_code ps_body_spool_add(ps_body_spool *sp, const char *p, size_t n, ps_error *err)
{
    /* the sealed chats stay (the first buffer) or go to the file (the
     * tail's) rather than make a buffer hold more than its limit; only a
     * single larger chat grows one further */
    if (sp->current > 0 && sp->len + n > buffer_limit(sp)) {
        ps_code rc = sp->frozen ? flush_sealed(sp, err) : freeze(sp, err);
        if (rc != PS_OK)
            return rc;
    }
    if (sp->len + n > sp->cap) {
        ps_code rc = grow(sp, sp->len + n, err);
        if (rc != PS_OK)
            return rc;
    }
    memcpy(sp->buf + sp->len, p, n);
    sp->len += n;
    return PS_OK;
}

void ps_body_spool_adopt_buffer(ps_body_spool *sp, char *buf, size_t cap)
{
    if (sp->buf || sp->len || sp->frozen || cap <= PS_SPOOL_PADDING) { /* only a new spool's */
        free(buf);
        return;
    }
    sp->buf = buf;
    sp->cap = cap - PS_SPOOL_PADDING; /* the padding after the chats */
}

char *ps_body_spool_take_buffer(ps_body_spool *sp, size_t *cap)
{
    ps_body_spool_clear(sp); /* the first buffer is the one in sp->buf */
    char *buf = sp->buf;
    *cap = buf ? sp->cap + PS_SPOOL_PADDING : 0;
    sp->buf = NULL;
    sp->cap = 0;
    return buf;
}

ps_code ps_body_spool_seal(ps_body_spool *sp, const char **text, size_t *len, ps_error *err)
{
    if (sp->count == sp->spans_cap) {
        size_t cap = sp->spans_cap ? sp->spans_cap * 2 : 256;
        span *grown = realloc(sp->spans, cap * sizeof *grown);
        if (!grown)
            return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        sp->spans = grown;
        sp->spans_cap = cap;
    }
    size_t n = sp->len - sp->current;
    sp->spans[sp->count++] = (span){.at = sp->file_len + sp->current, .len = n};
    *text = sp->buf + sp->current;
    *len = n;
    sp->current = sp->len;
    /* written to the file with the others once the buffer is full: the
     * caller's view of it stays valid until then */
    return PS_OK;
}

void ps_body_spool_clear(ps_body_spool *sp)
{
    stop_prefault(sp);
    if (sp->fd >= 0 && ftruncate(sp->fd, 0) == 0)
        sp->file_len = 0;
    else if (sp->fd >= 0) { /* cannot shrink it: a fresh one next time */
        close(sp->fd);
        sp->fd = -1;
        sp->file_len = 0;
    }
    if (sp->frozen) { /* the first buffer is the one to fill again */
        free(sp->buf);
        sp->buf = sp->frozen;
        sp->cap = sp->frozen_cap;
        sp->frozen = NULL;
        sp->frozen_cap = sp->frozen_count = 0;
    }
    sp->len = sp->current = 0;
    sp->count = 0;
    for (unsigned r = 0; r < PS_SPOOL_READERS; r++)
        sp->readers[r].index = 0;
}

size_t ps_body_spool_count(const ps_body_spool *sp)
{
    return sp->count;
}

size_t ps_body_spool_length(const ps_body_spool *sp, size_t i)
{
    return sp->spans[i].len;
}

uint64_t ps_body_spool_file_bytes(const ps_body_spool *sp)
{
    return sp->file_len;
}

ps_code ps_body_spool_read(ps_body_spool *sp, size_t i, const char **text, size_t *len,
                           ps_error *err)
{
    return ps_body_spool_read_as(sp, 0, i, text, len, err);
}

/* Only `sp->readers[reader]` is written: the spans, buffers and file are
 * read (pread, at an offset: no shared file position), so two readers may
 * read at once once the spool is complete. */
ps_code ps_body_spool_read_as(ps_body_spool *sp, unsigned reader, size_t i, const char **text,
                              size_t *len, ps_error *err)
{
    const span *s = &sp->spans[i];
    struct spool_reader *r = &sp->readers[reader];
    *len = s->len;
    if (i < sp->frozen_count) {
        *text = sp->frozen + s->at;
        return PS_OK;
    }
    if (s->at >= sp->file_len) {
        *text = sp->buf + (s->at - sp->file_len);
        return PS_OK;
    }
    if (r->index == i + 1) { /* asked again (a check, then a hash) */
        *text = r->buf;
        return PS_OK;
    }
    r->index = 0;
    if (!r->buf || s->len > r->cap) {
        char *grown = realloc(r->buf, s->len + PS_SPOOL_PADDING);
        if (!grown)
            return ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        r->buf = grown;
        r->cap = s->len;
    }
    size_t got = 0;
    while (got < s->len) {
        ssize_t n = pread(sp->fd, r->buf + got, s->len - got, (off_t)(s->at + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return io_error(err, "read", sp->dir);
        }
        got += (size_t)n;
    }
    r->buf[s->len] = '\0';
    r->index = i + 1;
    *text = r->buf;
    return PS_OK;
}
