/*
 * A claim on a TCP port among polysyncd processes: an abstract Unix socket
 * bound under the port's name (port_claim.h says why).
 */
#include "server/port_claim.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ps_port_claim(unsigned port)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    /* abstract: the name starts with a NUL byte and is no file */
    int n = snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "polysyncd/tcp-port/%u", port);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    if (bind(fd, (const struct sockaddr *)&addr, len) != 0) {
        int bind_errno = errno; /* EADDRINUSE: another polysyncd has it */
        close(fd);
        errno = bind_errno;
        return -1;
    }
    return fd;
}

void ps_port_release(int fd)
{
    if (fd >= 0)
        close(fd);
}
