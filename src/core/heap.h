/*
 * Giving the allocator's free memory back to the system.
 *
 * The programs' malloc is tcmalloc (polysyncd and the polysync CLI;
 * CMakeLists.txt, docs/performance.md "alloc"): it keeps what a request
 * freed for the next one, which is what makes a first upload cheaper, but
 * gives nothing back to the system on its own while the program idles. So
 * the server calls this after an idle spell following large requests
 * (lane.c), and `polysync watch` after each sync, and their RSS falls back
 * as it did with glibc's malloc. Built without tcmalloc (the sanitizer
 * builds, an app linking libpolysync), glibc's malloc_trim does the same
 * for glibc's heap. The library itself never calls it: an app's memory is
 * the app's.
 */
#ifndef PS_CORE_HEAP_H
#define PS_CORE_HEAP_H

/* Returns the allocator's free pages to the system; thread-safe, a few
 * milliseconds per 100 MB given back. */
void ps__heap_give_back(void);

#endif
