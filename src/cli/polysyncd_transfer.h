/*
 * polysyncd's `import` and `export` commands: one user's chats in and out of
 * the store, with the server running or not (src/server/transfer.h).
 */
#ifndef PS_POLYSYNCD_TRANSFER_H
#define PS_POLYSYNCD_TRANSFER_H

/* argv[0] is "import" or "export". Returns the process exit code. */
int ps_transfer_main(int argc, char **argv);

#endif
