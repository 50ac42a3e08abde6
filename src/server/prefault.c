/* A fresh buffer's pages populated ahead of its filler; see prefault.h. */
#include "server/prefault.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* One madvise call's share: small enough that a stop is heard soon, large
 * enough that a huge page is populated whole. */
#define STEP ((size_t)2 << 20)

struct ps_prefault {
    char *from, *to; /* page-aligned */
    atomic_bool stop;
    pthread_t thread;
};

static void *populate(void *arg)
{
    ps_prefault *pf = arg;
    for (char *p = pf->from; p < pf->to && !atomic_load(&pf->stop); p += STEP) {
        size_t n = (size_t)(pf->to - p) < STEP ? (size_t)(pf->to - p) : STEP;
#ifdef MADV_POPULATE_WRITE
        if (madvise(p, n, MADV_POPULATE_WRITE) != 0)
            break; /* an older kernel, or no memory: the filler faults its own */
#else
        (void)n;
        break;
#endif
    }
    return NULL;
}

ps_prefault *ps_prefault_start(char *start, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = ((uintptr_t)start + page - 1) / page * page;
    uintptr_t to = ((uintptr_t)start + len) / page * page;
    if (to <= from || to - from < STEP)
        return NULL; /* not worth a thread */
    ps_prefault *pf = malloc(sizeof *pf);
    if (!pf)
        return NULL;
    pf->from = (char *)from;
    pf->to = (char *)to;
    atomic_init(&pf->stop, false);
    if (pthread_create(&pf->thread, NULL, populate, pf) != 0) {
        free(pf);
        return NULL;
    }
    return pf;
}

void ps_prefault_finish(ps_prefault *pf)
{
    if (!pf)
        return;
    atomic_store(&pf->stop, true);
    pthread_join(pf->thread, NULL);
    free(pf);
}
