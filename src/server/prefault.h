/*
 * A fresh buffer's pages made ready on another core, ahead of the thread
 * that fills it.
 *
 * The first touch of each page of a new anonymous mapping makes the kernel
 * find and zero a page; on this project's VMs that is ~0.1 s for the 64 MiB
 * a large legacy body's chats land in (body_spool.c), all of it on the
 * thread receiving the body, while the other core waits for the body to
 * end (docs/performance.md, "prefault"). A prefault thread asks the kernel
 * to populate the pages (madvise MADV_POPULATE_WRITE: never reads or
 * writes their contents, so it cannot disturb bytes the filler already
 * wrote), front to back, so the filler mostly finds them mapped.
 *
 * Best effort: a kernel without MADV_POPULATE_WRITE (before Linux 5.14), or
 * no thread to be had, and the filler faults its pages itself as before.
 */
#ifndef PS_SERVER_PREFAULT_H
#define PS_SERVER_PREFAULT_H

#include <stddef.h>

typedef struct ps_prefault ps_prefault;

/* Starts populating [start, start + len), rounded inward to pages. NULL
 * when nothing was started (too small, out of memory, no thread). */
ps_prefault *ps_prefault_start(char *start, size_t len);
/* Stops it (a populate under way ends first, at most one 2 MiB step) and
 * frees it; the range may then be freed. NULL is a no-op. */
void ps_prefault_finish(ps_prefault *pf);

#endif
