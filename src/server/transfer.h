/*
 * One user's chats in and out of a store, with no HTTP in sight: what
 * `polysyncd import` and `polysyncd export` run (src/cli/polysyncd_transfer.c;
 * docs/operations.md, docs/polyglot.md).
 *
 * Import reads, whatever the file is:
 *   - a JSON array of chats: the seed's chat JSON (what /fetchChats and
 *     `polysyncd export` give), the app's old conversations.json export, or
 *     Polyglot's chatStore.json in its first (array) form;
 *   - Polyglot's server data file chatStore.json, {chats: {id: chat},
 *     lamportClock};
 *   - one chat object (the app's exportConversation).
 * An entry with is_deleted: true is a tombstone at its deletedAtLamport
 * tuple. Every other entry is a chat, merged like a legacy upload whose
 * writes carry no Lamport counter: such writes are older than any write a
 * device made with one (docs/merge.md), so an import fills in what the
 * store lacks and never overrides a device's edit; the bookkeeping keys of
 * Polyglot's stores (updatedAtLamport, serverMergedAtLamport,
 * lastMutationLamport, is_deleted, deletedAtLamport) are not chat content
 * and are dropped. The whole import is one store transaction: it all lands
 * or none of it; a dry run does the same work and rolls it back. Running it
 * again changes nothing (the merge is idempotent), except that times beyond
 * now + the clock skew are clamped to each run's now.
 */
#ifndef PS_TRANSFER_H
#define PS_TRANSFER_H

#include "server/sync_common.h"

#include <json-c/json.h>
#include <stdio.h>

/* The device id an import's writes carry, and the origin of what it changes
 * (v2 devices are sent it, as they are every other device's change). */
#define PS_IMPORT_DEVICE "polysyncd-import"

typedef struct ps_import_report {
    const char *format;     /* which of the shapes above the file is */
    size_t chats;           /* chat entries read */
    size_t created;         /* chats the store did not hold live before */
    size_t updated;         /* live chats the import added something to */
    size_t unchanged;       /* chats (live or deleted) it left as they were */
    size_t tombstones;      /* is_deleted entries read */
    size_t deleted;         /* live chats they deleted */
    size_t tombstones_kept; /* deletions the store did not have, on chats not live */
} ps_import_report;

/*
 * Imports `doc` (a parsed file) for ctx->user. Every entry is checked before
 * the store is touched; an invalid one fails the import naming it, with
 * nothing changed. With `dry_run` the report says what would happen and the
 * transaction is rolled back.
 */
ps_code ps_import_doc(const ps_sync_ctx *ctx, json_object *doc, bool dry_run,
                      ps_import_report *report, ps_error *err);

/*
 * Writes ctx->user's live chats to `out` as the seed's chat JSON (a JSON
 * array, each chat as /fetchChats gives it); with `tombstones`, each deleted
 * chat too, as {id, is_deleted: true, deletedAtLamport: [n, device]} (the
 * form chatStore.json uses, which import reads back). One read transaction:
 * a consistent copy while the server runs. A user the store does not know
 * exports as []. *chats and *deleted count what was written.
 */
ps_code ps_export_user(const ps_sync_ctx *ctx, bool tombstones, FILE *out, size_t *chats,
                       size_t *deleted, ps_error *err);

#endif
