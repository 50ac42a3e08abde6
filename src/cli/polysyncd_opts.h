/*
 * The options of polysyncd's subcommands (token, user, devices, import,
 * export, backup, restore, migrate), read from one table per command so
 * each command lists its flags once instead of writing a getopt loop.
 * polysyncd's own serving flags are config.c's.
 */
#ifndef PS_POLYSYNCD_OPTS_H
#define PS_POLYSYNCD_OPTS_H

#include <stdbool.h>

/* One long option: a value goes to *value, a switch sets *flag. */
typedef struct ps_subopt {
    const char *name;
    const char **value; /* --name VALUE, or NULL */
    bool *flag;         /* --name, or NULL */
} ps_subopt;

typedef enum ps_subopt_result {
    PS_SUBOPT_OK,   /* parsed; *operands is the index of the first operand */
    PS_SUBOPT_HELP, /* --help was given */
    PS_SUBOPT_BAD,  /* an unknown option or one without its value (said on stderr) */
} ps_subopt_result;

/*
 * Parses argv[1..] by `opts` (ended by a {NULL} entry); argv[0] is the
 * subcommand. Options may follow operands (getopt's permutation); `--help`
 * is always known. On PS_SUBOPT_BAD the offending word is on stderr as
 * "polysyncd: unknown or incomplete option '...'".
 */
ps_subopt_result ps_subopt_parse(int argc, char **argv, const ps_subopt *opts, int *operands);

#endif
