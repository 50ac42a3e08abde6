/*
 * polysyncd's log: one line per event on stderr, as text (logfmt-like
 * `key=value`, for people and fail2ban) or JSON (one object per line, for
 * log shippers). Each line is built in a stack buffer; access lines are
 * then written in batches of whole lines (at most PIPE_BUF bytes a write,
 * within 20 ms: log.c), every other line at once after them, so lines from
 * worker threads never interleave and keep their order. The level and
 * format are set once at start.
 */
#ifndef PS_LOG_H
#define PS_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { PS_LOG_DEBUG, PS_LOG_INFO, PS_LOG_WARN, PS_LOG_ERROR } ps_log_level;
typedef enum { PS_LOG_TEXT, PS_LOG_JSON } ps_log_format;

/* Sets the format and the lowest level written (before threads start). */
void ps_log_setup(ps_log_format format, ps_log_level min_level);

/* "text"/"json" and "debug"/"info"/"warn"/"error"; false if unknown. */
bool ps_log_parse_format(const char *name, ps_log_format *out);
bool ps_log_parse_level(const char *name, ps_log_level *out);

bool ps_log_enabled(ps_log_level level);

/* An event (startup, shutdown, purge, store error...): a short name and a
 * message for people. */
void ps_log_event(ps_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One served request (level info). Strings may be NULL (written as "-"). */
typedef struct ps_access_entry {
    const char *request_id;
    const char *method;
    const char *route; /* the matched route's path, or "-" */
    unsigned status;   /* 0: the client went away before the answer */
    uint64_t bytes_in, bytes_out;
    int64_t duration_us;
    const char *user;
    const char *device;
    const char *client; /* the peer's address */
} ps_access_entry;

void ps_log_access(const ps_access_entry *e);

/* A refused credential (level warn): the reason and the client's address,
 * never the token itself. */
void ps_log_auth_failure(const char *request_id, const char *client, const char *reason);

#endif
