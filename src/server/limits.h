/*
 * Per-user request limits: a token bucket for the request rate and a count
 * of requests in flight. One small hash table under one mutex; users appear
 * only after their token was verified, so its size is bounded by real users.
 */
#ifndef PS_LIMITS_H
#define PS_LIMITS_H

#include "polysync/error.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct ps_limiter ps_limiter;

ps_limiter *ps_limiter_new(double rate_per_s, double burst, unsigned max_in_flight);
void ps_limiter_free(ps_limiter *l);

/*
 * Admits one request of `user` at `now_ms`. PS_OK: admitted; call
 * ps_limiter_release() when it completes. PS_ERR_RATE_LIMITED: *retry_s is
 * the wait; *too_many tells a concurrency refusal from a rate refusal.
 */
ps_code ps_limiter_acquire(ps_limiter *l, const char *user, int64_t now_ms, unsigned *retry_s,
                           bool *too_many);
void ps_limiter_release(ps_limiter *l, const char *user);

#endif
