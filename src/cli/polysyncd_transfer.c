/*
 * `polysyncd import` and `polysyncd export`: one user's chats in and out of
 * the store, offline or while polysyncd serves it (SQLite WAL: the import is
 * one write transaction like a sync's, the export one read transaction).
 * The work is in src/server/transfer.c; this file is flags, files, output.
 */
#include "cli/polysyncd_transfer.h"
#include "cli/polysyncd_opts.h"
#include "core/json_parse.h"
#include "core/read_file.h"
#include "core/timestamp.h"
#include "server/transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_DB "sqlite:./data/polysync.db"
#define DEFAULT_SKEW_MS (5 * 60 * 1000) /* as polysyncd's --max-clock-skew */

static void usage(void)
{
    fprintf(stderr, "Usage:\n"
                    "  polysyncd import --user NAME FILE [--dry-run] [--db URL]\n"
                    "      FILE (- for stdin): Polyglot's chatStore.json, the app's export,\n"
                    "      or the seed's chat JSON (a JSON array of chats, as export writes)\n"
                    "  polysyncd export --user NAME [--output FILE] [--tombstones] [--db URL]\n");
}

typedef struct transfer_opts {
    const char *user, *db, *output, *file;
    bool dry_run, tombstones;
} transfer_opts;

static int parse(int argc, char **argv, transfer_opts *o)
{
    const ps_subopt opts[] = {
        {"user", &o->user, NULL},
        {"db", &o->db, NULL},
        {"output", &o->output, NULL},
        {"dry-run", NULL, &o->dry_run},
        {"tombstones", NULL, &o->tombstones},
        {NULL, NULL, NULL},
    };
    int next;
    if (ps_subopt_parse(argc, argv, opts, &next) != PS_SUBOPT_OK) {
        usage();
        return 1;
    }
    if (next < argc)
        o->file = argv[next++];
    if (next < argc) {
        fprintf(stderr, "polysyncd: unexpected argument '%s'\n", argv[next]);
        return 1;
    }
    size_t ulen = o->user ? strlen(o->user) : 0;
    if (ulen == 0 || ulen > PS_ID_MAX_BYTES) {
        fprintf(stderr, "polysyncd %s: --user NAME is required (1 to %d bytes)\n", argv[0],
                PS_ID_MAX_BYTES);
        return 1;
    }
    return 0;
}

/* The whole file (or stdin for "-"), parsed strictly. */
static ps_code read_json_file(const char *path, json_object **out, ps_error *err)
{
    char *text = NULL;
    size_t len = 0;
    ps_code rc =
        ps__read_file(strcmp(path, "-") == 0 ? NULL : path, SIZE_MAX, NULL, NULL, &text, &len, err);
    if (rc == PS_OK)
        rc = ps__json_parse(text, len, PS_JSON_MAX_DEPTH, out, err);
    free(text);
    return rc;
}

static int import_command(const transfer_opts *o, ps_sync_ctx *ctx)
{
    if (!o->file) {
        fprintf(stderr, "polysyncd import: which FILE?\n");
        usage();
        return 1;
    }
    ps_error err;
    ps_error_clear(&err);
    json_object *doc = NULL;
    ps_import_report r;
    ps_code rc = read_json_file(o->file, &doc, &err);
    if (rc == PS_OK)
        rc = ps_import_doc(ctx, doc, o->dry_run, &r, &err);
    json_object_put(doc);
    if (rc != PS_OK) {
        fprintf(stderr, "polysyncd import: %s: %s (nothing was imported)\n", o->file, err.message);
        return 1;
    }
    const char *verb = o->dry_run ? "would be " : "";
    printf("%s%s for user %s: %s\n", o->dry_run ? "dry run, nothing changed: " : "", o->file,
           o->user, r.format);
    printf("chats: %zu read, %zu %snew, %zu %supdated, %zu unchanged\n", r.chats, r.created, verb,
           r.updated, verb, r.unchanged);
    printf("deleted chats: %zu read, %zu %sdeleted, %zu %srecorded, %zu already so\n", r.tombstones,
           r.deleted, verb, r.tombstones_kept, verb, r.tombstones - r.deleted - r.tombstones_kept);
    return 0;
}

static int export_command(const transfer_opts *o, ps_sync_ctx *ctx)
{
    if (o->file) {
        fprintf(stderr, "polysyncd export: unexpected argument '%s' (use --output)\n", o->file);
        return 1;
    }
    FILE *out = stdout;
    if (o->output) { /* chats are private: the file is the owner's only */
        int fd = open(o->output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || !(out = fdopen(fd, "w"))) {
            fprintf(stderr, "polysyncd export: cannot write %s: %s\n", o->output, strerror(errno));
            if (fd >= 0)
                close(fd);
            return 1;
        }
    }
    ps_error err;
    ps_error_clear(&err);
    size_t chats = 0, deleted = 0;
    ps_code rc = ps_export_user(ctx, o->tombstones, out, &chats, &deleted, &err);
    bool to_file = out != stdout;
    if ((to_file ? fclose(out) : fflush(stdout)) != 0 && rc == PS_OK)
        rc = ps_error_set(&err, PS_ERR_IO, -1, "", "cannot write %s",
                          to_file ? o->output : "the export");
    if (rc != PS_OK) {
        fprintf(stderr, "polysyncd export: %s\n", err.message);
        return 1;
    }
    fprintf(stderr, "exported %zu chats%s of user %s\n", chats,
            o->tombstones ? (deleted ? " and their deleted ones" : "; none deleted") : "", o->user);
    if (o->tombstones && deleted)
        fprintf(stderr, "deleted chats: %zu\n", deleted);
    return 0;
}

int ps_transfer_main(int argc, char **argv)
{
    transfer_opts o = {0};
    if (parse(argc, argv, &o) != 0)
        return 1;
    const char *url = o.db ? o.db : DEFAULT_DB;
    ps_error err;
    ps_error_clear(&err);
    ps_store *store = NULL;
    if (ps_store_open(url, &store, &err) != PS_OK) {
        fprintf(stderr, "polysyncd: cannot open store %s: %s\n", url, err.message);
        return 1;
    }
    ps_limits limits = ps__limits_default();
    ps_sync_ctx ctx = {
        .store = store,
        .user = o.user,
        .now_ms = ps__time_now_ms(),
        .max_skew_ms = DEFAULT_SKEW_MS,
        .max_response_bytes = SIZE_MAX,
        .limits = &limits,
        .device = PS_IMPORT_DEVICE,
    };
    int code = strcmp(argv[0], "import") == 0 ? import_command(&o, &ctx) : export_command(&o, &ctx);
    ps_store_close(store);
    return code;
}
