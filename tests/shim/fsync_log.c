/*
 * LD_PRELOAD shim for the durability test (tests/integration/test_fsync.py):
 * every fsync/fdatasync the process makes is passed on to libc and then
 * logged as one line "<call> <path of the fd>\n" to the file named by
 * PS_FSYNC_LOG. The line is written after the real call returned, so a
 * line present when the test reads the server's answer proves the sync
 * happened before the answer was sent. Tests only; never installed.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*sync_fn)(int);

static void log_sync(const char *call, int fd)
{
    const char *path = getenv("PS_FSYNC_LOG");
    if (!path || !*path)
        return;
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0)
        n = 0;
    target[n] = '\0';
    char line[PATH_MAX + 32];
    int len = snprintf(line, sizeof line, "%s %s\n", call, target);
    if (len < 0 || (size_t)len >= sizeof line)
        return;
    /* One write(2) of a short line to an O_APPEND file: lines from
     * several threads never interleave. */
    int out = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (out < 0)
        return;
    if (write(out, line, (size_t)len) != len) {
        /* nothing to do: a short log fails the test, which is what we want */
    }
    close(out);
}

static int call_real(const char *name, int fd)
{
    sync_fn real = (sync_fn)dlsym(RTLD_NEXT, name);
    int rc = real ? real(fd) : -1;
    log_sync(name, fd);
    return rc;
}

int fsync(int fd)
{
    return call_real("fsync", fd);
}

int fdatasync(int fd)
{
    return call_real("fdatasync", fd);
}
