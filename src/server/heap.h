/*
 * Giving the allocator's free memory back to the system.
 *
 * polysyncd's malloc is tcmalloc (CMakeLists.txt; docs/performance.md,
 * "alloc"): it keeps what a request freed for the next one, which is what
 * makes a first upload cheaper, but it gives nothing back to the system on
 * its own while the server is idle. After a burst of large requests the
 * server calls this once, so an idle server's RSS falls back as it did with
 * glibc's malloc. Built without tcmalloc (the sanitizer builds, the tests'
 * libraries), glibc's malloc_trim does the same for glibc's heap.
 */
#ifndef PS_SERVER_HEAP_H
#define PS_SERVER_HEAP_H

/* Returns the allocator's free pages to the system; thread-safe, a few
 * milliseconds per 100 MB given back. */
void ps_heap_give_back(void);

#endif
