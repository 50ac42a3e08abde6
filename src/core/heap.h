/*
 * Giving the allocator's free memory back to the system.
 *
 * polysyncd's malloc is tcmalloc (CMakeLists.txt, docs/performance.md
 * "alloc"): it keeps what a request freed for the next one, which is what
 * makes a first upload cheaper, but gives nothing back to the system on
 * its own while the server idles. So the server calls this after an idle
 * spell following large requests (lane.c), and its RSS falls back as it
 * did with glibc's malloc. Built without tcmalloc (the sanitizer builds,
 * the polysync CLI, an app linking libpolysync), glibc's malloc_trim does
 * the same for glibc's heap: `polysync watch` calls it after each sync, as
 * a first pull leaves tens of MB free that a long watch would keep. The
 * library itself never calls it: an app's memory is the app's.
 */
#ifndef PS_CORE_HEAP_H
#define PS_CORE_HEAP_H

/* Returns the allocator's free pages to the system; thread-safe, a few
 * milliseconds per 100 MB given back. */
void ps__heap_give_back(void);

#endif
