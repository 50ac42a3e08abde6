/*
 * The seeded generator shared by the property suites (test_merge_properties,
 * test_merge_model): xorshift64, a seed and a case count that
 * PS_PROPERTY_SEED / PS_PROPERTY_CASES override from the environment, and
 * the case being run (printed with the seed when a case fails). Header-only
 * state: each suite is its own executable.
 */
#ifndef PS_PROPERTY_RNG_H
#define PS_PROPERTY_RNG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

static uint64_t seed0;       /* the run's seed, as set by load_settings */
static unsigned long ncases; /* cases in the run */
static uint64_t rng;         /* the generator's state */
static unsigned long current_case;

/* Sets seed0 and ncases: the environment's, else the suite's defaults. */
static inline void load_settings(uint64_t default_seed, unsigned long default_cases)
{
    const char *s = getenv("PS_PROPERTY_SEED");
    seed0 = s && *s ? strtoull(s, NULL, 0) : default_seed;
    if (seed0 == 0)
        seed0 = 1; /* xorshift's one fixed point */
    const char *c = getenv("PS_PROPERTY_CASES");
    ncases = c && *c ? strtoul(c, NULL, 0) : default_cases;
}

static inline uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static inline unsigned pick(unsigned n)
{
    return (unsigned)(next() % n);
}

static inline bool chance(unsigned percent)
{
    return pick(100) < percent;
}

#endif
