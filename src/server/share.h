/*
 * The second core for a request's CPU-bound preparation: one helper thread
 * per process, started on first use, that runs part of a job beside the
 * thread that asked (as value_codec.c's helper does for zstd batches).
 *
 * The job splits itself: both threads call the same function, which takes
 * the next items from a counter the two share (an atomic), so the caller
 * never waits for work the helper has not begun. When the helper is busy
 * with another request's job (or could not be started), the caller does
 * it all: sharing is a speed-up, never a condition.
 */
#ifndef PS_SERVER_SHARE_H
#define PS_SERVER_SHARE_H

#include <stdbool.h>

/* Runs work(cls, 0) on this thread and, when the helper is free,
 * work(cls, 1) on it at the same time; returns once both returned.
 * Whatever work(cls, 1) wrote is then visible here. An offer the helper
 * has not taken by the time work(cls, 0) returns is withdrawn: work(cls,
 * 1) is then never called, so work(cls, 0) must leave no item untaken.
 * True when the helper took part. */
bool ps__share_run(void (*work)(void *cls, unsigned lane), void *cls);

#endif
