/*
 * `polysyncd migrate --from URL --to URL [--force]`: copies a whole store
 * between backends and verifies the copy (docs/storage.md, "Moving a store").
 */
#ifndef PS_POLYSYNCD_MIGRATE_H
#define PS_POLYSYNCD_MIGRATE_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

/* argv[0] is "migrate". Returns the process exit code. */
int ps_migrate_main(int argc, char **argv);

typedef struct ps_migrate_access_counts {
    int64_t tokens, accounts, devices;
} ps_migrate_access_counts;

/* Copies tokens (and revocations), account refusals and the device
 * registry of `users` (polysyncd_migrate_access.c); one transaction each
 * side. */
ps_code ps__migrate_access(ps_store *from, ps_store *to, char *const *users, size_t nusers,
                           ps_migrate_access_counts *counts, ps_error *err);

#endif
