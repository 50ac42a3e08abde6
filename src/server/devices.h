/*
 * The device registry's v2 side (docs/protocol.md, "Devices"): each
 * /v2/sync names its device, and acknowledges the cursor it has applied
 * with `ack` (or, without it, the `cursor` it sends). Legacy /sync records
 * its device inside its own transaction (sync_legacy.c).
 */
#ifndef PS_DEVICES_H
#define PS_DEVICES_H

#include "store/store.h"

#include <json-c/json.h>

/* The change sequence a v2 request acknowledges: `ack` when present,
 * else `cursor` (null: 0, a device starting over). PS_ERR_INVALID (400, field
 * "ack") when `ack` is not a cursor this server issues. Checked before the sync runs. */
ps_code ps_devices_v2_ack(json_object *req, int64_t *acked_seq, ps_error *err);

/* Records the v2 device after its sync succeeded, in a write transaction
 * of its own — skipped while the device's acknowledgement is unchanged and
 * it was written less than a minute ago, and while it moves but the user
 * has no tombstone for it to free (a device polling costs no write).
 * With it, the user's tombstones every device seen within retention_ms
 * has acknowledged are collected (store.h, purge_acknowledged).
 * A store failure here fails the request like any other store failure
 * (docs/protocol.md): the push, committed before, stays, and the device's
 * retry of the same sync is harmless. */
ps_code ps_devices_note_v2(ps_store *store, const char *user, json_object *req,
                           const char *user_agent, int64_t acked_seq, int64_t now_ms,
                           int64_t retention_ms, ps_error *err);

/* One registry row as the JSON both `GET /v2/devices` and `polysyncd devices
 * list --json` show; `expired` = silent longer than retention_ms (its next
 * sync gets 410). NULL on allocation failure. */
json_object *ps_device_row_json(const ps_device_row *d, int64_t now_ms, int64_t retention_ms);

#endif
