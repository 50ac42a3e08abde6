/*
 * The merge: one function that joins two states of the same chat. It is the
 * only place that decides what wins, used by every endpoint and (later) by the
 * client library, so every device resolves a conflict the same way.
 * The rules and worked examples are in docs/merge.md.
 */
#ifndef PS_MERGE_H
#define PS_MERGE_H

#include "core/chat.h"

/*
 * Joins `from` into `into` (both normalized, same id). `from` is not changed;
 * `into` takes its own references. *changed tells whether `into` changed.
 * On PS_ERR_NOMEM `into` is still a valid chat but may be partly merged.
 */
ps_code ps__chat_merge(ps_chat *into, const ps_chat *from, bool *changed);

/*
 * Records a deletion of the whole chat at `stamp`; the chat stays deleted
 * until some write newer than the newest deletion arrives. `shown` is the
 * Lamport tuple clients receive for it (lamport / deletedAtLamport).
 */
ps_code ps__chat_delete(ps_chat *chat, const ps_stamp *stamp, const ps_lamport *shown,
                       bool *changed);

#endif
