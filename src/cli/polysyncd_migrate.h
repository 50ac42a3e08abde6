/*
 * `polysyncd migrate --from URL --to URL [--force]`: copies a whole store
 * between backends and verifies the copy (docs/storage.md, "Moving a store").
 */
#ifndef PS_POLYSYNCD_MIGRATE_H
#define PS_POLYSYNCD_MIGRATE_H

/* argv[0] is "migrate". Returns the process exit code. */
int ps_migrate_main(int argc, char **argv);

#endif
