/*
 * What a person sees on a terminal while `polysync` works: one status line
 * on stderr redrawn in place (progress), lines printed above it (retries),
 * and the small formatters they share (sizes, rates, durations, plurals).
 * Nothing here is drawn unless the line was enabled, which the CLI does
 * only when stderr is a terminal and neither --quiet nor --json was given.
 */
#ifndef PS_CLI_TERM_H
#define PS_CLI_TERM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct term_line {
    bool enabled;
    bool shown;       /* something is drawn on the line now */
    int64_t start_ms; /* when the work began */
    int64_t delay_ms; /* draw nothing before start + delay: quick work stays silent */
    int64_t drawn_ms; /* the last redraw, to draw at most ~8 times a second */
} term_line;

/* Monotonic milliseconds. */
int64_t term_now_ms(void);

void term_init(term_line *t, bool enabled, int64_t delay_ms);

/* Redraws the status line with the formatted text, unless too early or
 * too soon after the last redraw (`force` skips the latter). */
void term_draw(term_line *t, bool force, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prints a whole line above the status line (which is redrawn next time). */
void term_say(term_line *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Erases the status line, if drawn. */
void term_clear(term_line *t);

/* "512 B", "12.3 KiB", "40.0 MiB", "1.2 GiB" */
const char *term_bytes(char out[32], uint64_t n);
/* "4 s", "0.5 s", "2 min 5 s", "1 h 3 min" */
const char *term_duration(char out[32], double seconds);
/* "1 chat", "2 chats" */
const char *term_count(char out[48], size_t n, const char *noun);

#endif
