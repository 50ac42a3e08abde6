/*
 * ps_client_sync: push the change log, pull what changed elsewhere. One
 * sync per store at a time (the sync lock below); the v2 sync first
 * (v2_sync.c), the legacy one (legacy_sync.c) when the server has no
 * /v2/sync. sync_run.h lists the files of the sync; docs/client.md says
 * what it does and why.
 */
#include "client/sync_run.h"
#include "core/timestamp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the sync lock: one sync per store at a time ----
 *
 * A file STORE-sync.lock held with flock() while a sync runs, and removed
 * by its holder before it lets go, so none is left beside the store
 * afterwards. The trap of removing a lock file: a waiter that opened the
 * old file may lock it after it was unlinked while a third process creates
 * and locks a new one. So whoever gets the lock checks that the path still
 * names the file it locked, and starts over if not.
 */

typedef struct sync_lock {
    int fd;
    char *path;
} sync_lock;

static ps_code lock_store(ps_client *c, sync_lock *l, ps_error *err)
{
    l->fd = -1;
    if (asprintf(&l->path, "%s-sync.lock", c->path) < 0) {
        l->path = NULL;
        return ps__sync_nomem(err);
    }
    for (;;) {
        int fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
            return ps_error_set(err, PS_ERR_STORE, -1, "", "cannot create the sync lock %s: %s",
                                l->path, strerror(errno));
        while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            if (errno != EWOULDBLOCK && errno != EINTR) {
                close(fd);
                return ps_error_set(err, PS_ERR_STORE, -1, "", "cannot take the sync lock: %s",
                                    strerror(errno));
            }
            if (!ps__sleep(c, 100)) {
                close(fd);
                return ps_error_set(err, PS_ERR_IO, -1, "", "interrupted");
            }
        }
        struct stat held, named;
        if (fstat(fd, &held) == 0 && stat(l->path, &named) == 0 && held.st_dev == named.st_dev &&
            held.st_ino == named.st_ino) {
            l->fd = fd;
            return PS_OK;
        }
        close(fd); /* the holder before us removed it: lock the new one */
    }
}

static void unlock_store(sync_lock *l)
{
    if (l->fd >= 0) {
        unlink(l->path); /* while still held: see above */
        flock(l->fd, LOCK_UN);
        close(l->fd);
    }
    free(l->path);
}

ps_code ps_client_sync(ps_client *c, ps_sync_stats *stats, ps_error *err)
{
    ps_sync_stats local;
    ps_sync_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    st->protocol = "v2";
    c->last_status = 0;
    if (!c->server)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "server",
                            "no server: set one with --server URL or POLYSYNC_SERVER");
    sync_run r = {.c = c, .st = st};
    clock_gettime(CLOCK_MONOTONIC, &r.start);
    sync_lock lock;
    ps_code rc = lock_store(c, &lock, err);
    bool not_v2 = false;
    if (rc == PS_OK)
        rc = ps__sync_v2(&r, &not_v2, err);
    if (rc == PS_OK && not_v2)
        rc = ps__sync_legacy(&r, err);
    if (rc == PS_OK) /* for `polysync status`; a failure here fails nothing */
        ps__lstore_meta_set_int(c->store, "last_sync_ms", ps__time_now_ms(), NULL);
    if (rc == PS_OK) /* the acknowledged log's pages back to the disk; only space */
        ps__lstore_reclaim(c->store, NULL);
    unlock_store(&lock);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    st->elapsed_ms =
        (now.tv_sec - r.start.tv_sec) * 1000LL + (now.tv_nsec - r.start.tv_nsec) / 1000000;
    return rc;
}
