/*
 * The deterministic dataset: chat number c of dataset seed S is always the
 * same chat (same id, title, messages, sizes), whatever else is generated,
 * so a subset (a fresh device's 20 chats) matches the full set byte for byte.
 *
 * Message text: 50-2,000 characters (code points, about log-uniform, so most
 * messages are short and a few are long), English prose mixed with accented
 * Latin, Greek, Cyrillic, CJK and emoji, quotes, apostrophes, backslashes,
 * tabs, newlines and code blocks: everything JSON has to escape.
 *
 * tests/unit/test_content_certificate.c links it too: every chat it makes
 * must be certified valid by the content hash (a first upload's fast path).
 */
#ifndef PSBENCH_GEN_H
#define PSBENCH_GEN_H

#include "buf.h"

#include <stdint.h>

#define GEN_DEFAULT_SEED 20261124u
#define GEN_BIG_CHAT 1000000L /* index of the "long chat" of the v2 stores */

typedef struct gen_cfg {
    uint64_t seed;
    const char *device;   /* the id in updatedAtLamport (the device that wrote the chats) */
    const char *envelope; /* deviceId of a legacy body; NULL: device */
} gen_cfg;

void gen_chat_id(const gen_cfg *g, long chat, char out[37]);
void gen_message_id(const gen_cfg *g, long chat, long msg, char out[37]);
/* One message object: {"id","role","content","timestamp"}. */
void gen_message(buf *out, const gen_cfg *g, long chat, long msg);
/* One chat as the Polyglot client sends it to /sync. */
void gen_chat_legacy(buf *out, const gen_cfg *g, long chat, long nmsgs);
/* One chat as a v2 change that creates it whole. */
void gen_chat_change(buf *out, const gen_cfg *g, long chat, long nmsgs, long clock);
/* A whole legacy /sync body with chats first..first+count-1. */
void gen_legacy_body(buf *out, const gen_cfg *g, long first, long count, long nmsgs);
/* The same chats in the seed document's own shape: {"chats":[...]}, nothing else. */
void gen_seed_body(buf *out, const gen_cfg *g, long first, long count, long nmsgs);

#endif
