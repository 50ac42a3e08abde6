/* Subcommand options from a table; see polysyncd_opts.h. */
#include "cli/polysyncd_opts.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_OPTS 32

ps_subopt_result ps_subopt_parse(int argc, char **argv, const ps_subopt *opts, int *operands)
{
    /* getopt_long's table, built from ours: val = index into opts, and
     * MAX_OPTS for --help. */
    struct option long_opts[MAX_OPTS + 2];
    int n = 0;
    for (; opts[n].name; n++) {
        if (n == MAX_OPTS)
            abort(); /* a programming error: a command with too many flags */
        long_opts[n] =
            (struct option){opts[n].name, opts[n].value ? required_argument : no_argument, NULL, n};
    }
    long_opts[n] = (struct option){"help", no_argument, NULL, MAX_OPTS};
    long_opts[n + 1] = (struct option){NULL, 0, NULL, 0};
    optind = 0; /* 0, not 1: getopt re-initialises (a subcommand parses anew) */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (c == MAX_OPTS)
            return PS_SUBOPT_HELP;
        if (c < 0 || c >= n) {
            fprintf(stderr, "polysyncd: unknown or incomplete option '%s'\n", argv[optind - 1]);
            return PS_SUBOPT_BAD;
        }
        if (opts[c].value)
            *opts[c].value = optarg;
        else
            *opts[c].flag = true;
    }
    *operands = optind;
    return PS_SUBOPT_OK;
}
