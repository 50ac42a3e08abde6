/*
 * ps__read_file: a whole file into memory (see read_file.h).
 */
#include "core/read_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIRST_CAPACITY ((size_t)1 << 16)

/* Closes what was opened and frees what was read, keeping errno. */
static void give_up(int fd, char *buf)
{
    int e = errno;
    if (fd > STDIN_FILENO)
        close(fd);
    free(buf);
    errno = e;
}

ps_code ps__read_file(const char *path, size_t max, ps_read_progress_fn progress, void *ud,
                     char **out, size_t *len, ps_error *err)
{
    const char *name = path ? path : "-";
    *out = NULL;
    *len = 0;
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
    if (fd < 0) {
        int e = errno;
        ps_error_set(err, PS_ERR_IO, -1, "", "cannot open %s: %s", name, strerror(e));
        errno = e;
        return PS_ERR_IO;
    }
    struct stat sb;
    uint64_t size = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
    size_t cap = FIRST_CAPACITY, n = 0;
    char *buf = malloc(cap + 1);
    ps_code rc = PS_OK;
    while (buf) {
        if (n == cap) {
            /* double, but never past max + 1: that byte shows it is too large */
            size_t want = cap <= SIZE_MAX / 4 ? cap * 2 : SIZE_MAX / 2;
            if (max < want)
                want = max + 1;
            char *grown = want > cap ? realloc(buf, want + 1) : NULL;
            if (!grown) {
                errno = ENOMEM;
                break;
            }
            buf = grown;
            cap = want;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            rc = ps_error_set(err, PS_ERR_IO, -1, "", "cannot read %s: %s", name, strerror(e));
            errno = e;
            give_up(fd, buf);
            return rc;
        }
        n += (size_t)got;
        if (n > max) {
            rc = ps_error_set(err, PS_ERR_TOO_LARGE, -1, "", "%s is larger than %zu bytes", name,
                              max);
            errno = EFBIG;
            give_up(fd, buf);
            return rc;
        }
        if (progress)
            progress(ud, n, size);
        if (got == 0) {
            if (fd > STDIN_FILENO)
                close(fd);
            buf[n] = '\0';
            *out = buf;
            *len = n;
            return PS_OK;
        }
    }
    /* out of memory */
    rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory reading %s", name);
    errno = ENOMEM;
    give_up(fd, buf);
    return rc;
}
