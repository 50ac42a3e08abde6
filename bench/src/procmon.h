/* What the server process costs, read from /proc: CPU seconds (all
 * threads), resident memory now, and its peak (VmHWM, reset at the start of
 * a measurement through /proc/PID/clear_refs, plus our own sampling). */
#ifndef PSBENCH_PROCMON_H
#define PSBENCH_PROCMON_H

#include <stdbool.h>
#include <sys/types.h>

#define PROCMON_THREADS 64

typedef struct procmon {
    pid_t pid;
    double cpu0;                       /* utime+stime at start, seconds */
    bool hwm_reset;                    /* clear_refs worked: VmHWM is the peak of this run */
    long rss_peak_kib;                 /* highest VmRSS seen by sampling */
    long anon_peak_kib, file_peak_kib; /* highest RssAnon, RssFile (mapped files) seen */
    double busy0;                      /* CPU seconds the whole machine was busy, at start */
    int nthreads;
    pid_t tid[PROCMON_THREADS];
    double tcpu0[PROCMON_THREADS];
} procmon;

typedef struct procmon_result {
    double cpu_s;
    long hwm_kib, rss_peak_kib, rss_end_kib;
    long anon_peak_kib, file_peak_kib;
    bool hwm_reset;
    double machine_busy_s; /* all CPUs, all processes, during the run (/proc/stat) */
    int nthreads;          /* server threads that used CPU during the run, busiest first */
    double thread_cpu_s[PROCMON_THREADS];
} procmon_result;

void procmon_start(procmon *m, pid_t pid);
void procmon_sample(procmon *m);
procmon_result procmon_end(procmon *m);

#endif
