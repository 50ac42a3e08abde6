/*
 * polysyncd's administration commands: `token issue` and `user list|delete`.
 * They work on the configuration and store files directly, with the server
 * running or not (SQLite serialises the writes).
 */
#ifndef PS_POLYSYNCD_ADMIN_H
#define PS_POLYSYNCD_ADMIN_H

/* argv[0] is "token" or "user". Returns the process exit code. */
int ps_admin_main(int argc, char **argv);

#endif
