/*
 * The second core for a request's CPU-bound work: one helper thread per
 * process, started on first use, that runs part of a job beside the thread
 * that asked. Used by a legacy sync's preparation (sync_legacy.c:
 * prep_run) and by the zstd batches of the store's values
 * (value_codec.c: ps_value_pack_many); one helper for both, so a job
 * offered while another has it is done by its caller alone.
 *
 * The job splits itself: both threads call the same function, which takes
 * the next items from a counter the two share (an atomic), so the caller
 * never waits for work the helper has not begun. When the helper is busy
 * with another request's job (or could not be started), the caller does
 * it all: sharing is a speed-up, never a condition.
 */
#ifndef PS_CORE_SHARE_H
#define PS_CORE_SHARE_H

#include <stdbool.h>

/* Runs work(cls, 0) on this thread and, when the helper is free,
 * work(cls, 1) on it at the same time; returns once both returned.
 * Whatever work(cls, 1) wrote is then visible here. An offer the helper
 * has not taken by the time work(cls, 0) returns is withdrawn: work(cls,
 * 1) is then never called, so work(cls, 0) must leave no item untaken.
 * True when the helper took part. */
bool ps__share_run(void (*work)(void *cls, unsigned lane), void *cls);

#endif
