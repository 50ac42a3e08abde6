/* A growable byte buffer for the benchmark tools (they do not link the
 * server's libraries, so a change under src/ never breaks the bench). */
#ifndef PSBENCH_BUF_H
#define PSBENCH_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
    char *data;
    size_t len, cap;
} buf;

void buf_reserve(buf *b, size_t extra);
void buf_add(buf *b, const void *p, size_t n);
void buf_adds(buf *b, const char *s);
void buf_addc(buf *b, char c);
void buf_addf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(buf *b);
/* Reads a whole file; exits on failure. */
void buf_read_file(buf *b, const char *path);

#endif
