/* The terminal status line and its formatters; see cli_term.h. */
#include "cli/cli_term.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

int64_t term_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void term_init(term_line *t, bool enabled, int64_t delay_ms)
{
    t->enabled = enabled;
    t->shown = false;
    t->start_ms = term_now_ms();
    t->delay_ms = delay_ms;
    t->drawn_ms = 0;
}

void term_draw(term_line *t, bool force, const char *fmt, ...)
{
    if (!t->enabled)
        return;
    int64_t now = term_now_ms();
    if (now - t->start_ms < t->delay_ms || (!force && t->shown && now - t->drawn_ms < 120))
        return;
    t->drawn_ms = now;
    t->shown = true;
    /* \r and erase-to-end: the line is rewritten in place */
    fputs("\r\033[K", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

void term_say(term_line *t, const char *fmt, ...)
{
    if (!t->enabled)
        return;
    term_clear(t);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

void term_clear(term_line *t)
{
    if (t->shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        t->shown = false;
    }
}

const char *term_bytes(char out[32], uint64_t n)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(out, 32, "%llu B", (unsigned long long)n);
        return out;
    }
    double v = (double)n / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 3) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, 32, "%.1f %s", v, units[u]);
    return out;
}

const char *term_duration(char out[32], double s)
{
    if (s < 0)
        s = 0;
    if (s < 10 && s != (double)(long)s)
        snprintf(out, 32, "%.1f s", s);
    else if (s < 60)
        snprintf(out, 32, "%.0f s", s);
    else if (s < 3600)
        snprintf(out, 32, "%d min %d s", (int)s / 60, (int)s % 60);
    else
        snprintf(out, 32, "%d h %d min", (int)s / 3600, (int)s % 3600 / 60);
    return out;
}

const char *term_count(char out[48], size_t n, const char *noun)
{
    snprintf(out, 48, "%zu %s%s", n, noun, n == 1 ? "" : "s");
    return out;
}
