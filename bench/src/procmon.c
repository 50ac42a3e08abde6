#include "procmon.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double stat_cpu(const char *path)
{
    char line[4096];
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    char *p = strrchr(line, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14)
     * stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double cpu_seconds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return stat_cpu(path);
}

static double thread_cpu(pid_t pid, pid_t tid)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
    return stat_cpu(path);
}

/* The threads of pid (at most PROCMON_THREADS); returns how many. */
static int list_threads(pid_t pid, pid_t *tids)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < PROCMON_THREADS)
        if (de->d_name[0] >= '0' && de->d_name[0] <= '9')
            tids[n++] = (pid_t)atoi(de->d_name);
    closedir(d);
    return n;
}

static long status_kib(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            v = strtol(line + k + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Busy CPU seconds of the machine since boot: user+nice+system+irq+softirq+steal.
 * (Per-process times include the interrupt work done on their behalf, /proc/stat
 * splits it out: so the machine's total is what compares with server + driver.) */
static double machine_busy(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8)
        return -1;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

void procmon_start(procmon *m, pid_t pid)
{
    memset(m, 0, sizeof *m);
    m->pid = pid;
    m->busy0 = machine_busy();
    if (pid <= 0)
        return;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    if (f) {
        m->hwm_reset = fputs("5", f) >= 0;
        if (fclose(f) != 0)
            m->hwm_reset = false;
    }
    m->nthreads = list_threads(pid, m->tid);
    for (int i = 0; i < m->nthreads; i++)
        m->tcpu0[i] = thread_cpu(pid, m->tid[i]);
    m->cpu0 = cpu_seconds(pid);
    procmon_sample(m);
}

void procmon_sample(procmon *m)
{
    if (m->pid <= 0)
        return;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)m->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        long *peak = strncmp(line, "VmRSS:", 6) == 0     ? &m->rss_peak_kib
                     : strncmp(line, "RssAnon:", 8) == 0 ? &m->anon_peak_kib
                     : strncmp(line, "RssFile:", 8) == 0 ? &m->file_peak_kib
                                                         : NULL;
        if (peak) {
            long v = strtol(strchr(line, ':') + 1, NULL, 10);
            if (v > *peak)
                *peak = v;
        }
    }
    fclose(f);
}

procmon_result procmon_end(procmon *m)
{
    procmon_result r = {0};
    double busy = machine_busy();
    r.machine_busy_s = busy >= 0 && m->busy0 >= 0 ? busy - m->busy0 : -1;
    if (m->pid <= 0)
        return r;
    procmon_sample(m);
    double c = cpu_seconds(m->pid);
    r.cpu_s = c >= 0 && m->cpu0 >= 0 ? c - m->cpu0 : -1;
    r.hwm_kib = status_kib(m->pid, "VmHWM");
    r.rss_peak_kib = m->rss_peak_kib;
    r.anon_peak_kib = m->anon_peak_kib;
    r.file_peak_kib = m->file_peak_kib;
    r.rss_end_kib = status_kib(m->pid, "VmRSS");
    r.hwm_reset = m->hwm_reset;
    pid_t tids[PROCMON_THREADS];
    int n = list_threads(m->pid, tids);
    for (int i = 0; i < n; i++) {
        double c0 = 0, t = thread_cpu(m->pid, tids[i]);
        for (int k = 0; k < m->nthreads; k++)
            if (m->tid[k] == tids[i])
                c0 = m->tcpu0[k];
        if (t - c0 > 0.005) {
            int j = r.nthreads++;
            while (j > 0 && r.thread_cpu_s[j - 1] < t - c0) { /* keep busiest first */
                r.thread_cpu_s[j] = r.thread_cpu_s[j - 1];
                j--;
            }
            r.thread_cpu_s[j] = t - c0;
        }
    }
    if (!m->hwm_reset && r.rss_peak_kib > 0) /* VmHWM covers the whole life: use sampling */
        r.hwm_kib = r.rss_peak_kib;
    return r;
}
