#include "buf.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void buf_reserve(buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        fprintf(stderr, "psbench: out of memory (%zu bytes)\n", cap);
        exit(2);
    }
    b->data = p;
    b->cap = cap;
}

void buf_add(buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_adds(buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

void buf_addc(buf *b, char c)
{
    buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void buf_addf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void buf_free(buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/*
 * read() straight into the buffer, not through stdio and a copy: the timed
 * send of a body is the kernel's first access to its pages, and on the VMs
 * this bench runs on (paravirtualized paging) the kernel's first access to a
 * page the process has only written from user space costs ~5 us. A 63 MB
 * body copied in from user space added ~75 ms to the first request of every
 * psbench process (psbench against a server that only reads and discards:
 * 95 ms for the first request, 17 ms for the next, 28 ms with this read);
 * pages the kernel filled itself do not pay it. docs/performance.md,
 * "the driver's own 75 ms".
 */
void buf_read_file(buf *b, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(path);
        exit(2);
    }
    buf_reserve(b, (size_t)st.st_size);
    for (;;) {
        buf_reserve(b, 1 << 16);
        ssize_t n = read(fd, b->data + b->len, b->cap - b->len - 1);
        if (n == 0)
            break;
        if (n < 0) {
            perror(path);
            exit(2);
        }
        b->len += (size_t)n;
    }
    b->data[b->len] = '\0';
    close(fd);
}
