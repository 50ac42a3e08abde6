#include "gen.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- randomness: splitmix64 streams keyed by (seed, chat, message, salt) ---- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_next(rng *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    return mix64(r->s);
}

static rng rng_for(const gen_cfg *g, long chat, long msg, uint64_t salt)
{
    uint64_t h = mix64(g->seed ^ 0x5851f42d4c957f2dull);
    h = mix64(h ^ (uint64_t)chat);
    h = mix64(h ^ ((uint64_t)msg * 0x2545f4914f6cdd1dull));
    return (rng){mix64(h ^ salt)};
}

static double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static unsigned rng_below(rng *r, unsigned n)
{
    return (unsigned)(rng_next(r) % n);
}

/* ---- ids and times ---- */

static void uuid_from(rng *r, char out[37])
{
    uint64_t a = rng_next(r), b = rng_next(r);
    unsigned char x[16];
    for (int i = 0; i < 8; i++) {
        x[i] = (unsigned char)(a >> (8 * i));
        x[8 + i] = (unsigned char)(b >> (8 * i));
    }
    x[6] = (unsigned char)((x[6] & 0x0f) | 0x40);
    x[8] = (unsigned char)((x[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[x[i] >> 4];
        out[o++] = hex[x[i] & 15];
    }
    out[o] = '\0';
}

void gen_chat_id(const gen_cfg *g, long chat, char out[37])
{
    rng r = rng_for(g, chat, -1, 1);
    uuid_from(&r, out);
}

void gen_message_id(const gen_cfg *g, long chat, long msg, char out[37])
{
    rng r = rng_for(g, chat, msg, 2);
    uuid_from(&r, out);
}

#define BASE_MS 1704067200000LL /* 2024-01-01T00:00:00Z */

static int64_t chat_created_ms(long chat)
{
    return BASE_MS + (int64_t)(chat % 100000) * 4 * 3600 * 1000LL;
}

static int64_t message_ms(long chat, long msg)
{
    return chat_created_ms(chat) + (int64_t)msg * 90 * 1000LL + 1000;
}

static void add_iso(buf *out, int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    buf_addf(out, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* ---- text ---- */

static const char *const WORDS[] = {
    "the",       "a",        "model",     "answer",  "question",  "function", "sync",
    "server",    "message",  "because",   "would",   "could",     "should",   "returns",
    "value",     "array",    "string",    "example", "context",   "token",    "prompt",
    "result",    "error",    "database",  "request", "response",  "client",   "device",
    "offline",   "conflict", "merge",     "history", "translate", "explain",  "summary",
    "paragraph", "however",  "therefore", "first",   "second",    "finally",  "note",
    "that",      "this",     "with",      "without", "between",   "about",    "into",
    "from",      "when",     "then",      "if",      "is",        "are",      "was",
    "be",        "to",       "of",        "and",     "in",        "it",       "for",
    "on",        "you",      "we",        "they",    "can",       "will",     "not",
    "all",       "one",      "two",       "three",   "more",      "less",     "time",
    "data",      "code",     "test",      "build",   "run",       "file",     "line",
    "chat",      "user",     "assistant",
};
static const char *const INTL[] = {
    "café",     "naïve",       "Müller",
    "señor",    "déjà vu",     "Straße",
    "façade",   "smörgåsbord", "crème brûlée",
    "Ελληνικά", "Привет",      "мир",
    "你好",     "世界",        "日本語",
    "テスト",   "한국어",      "😀",
    "🚀",        "👍",           "🎉",
    "—",        "…",           "€",
    "±",        "→",           "Zürich",
    "ÆØÅ",
};
static const char *const SPECIAL[] = {
    "\"quoted\"",  "'single'",
    "it's",        "C:\\Users\\bench\\notes.txt",
    "\t",          "\n",
    "\n\n",        "a\\b",
    "\"\\n\"",     "{\"key\": \"value\"}",
    "`code`",      "/* comment */",
    "\\u00e9",     "- item\n",
    "1. step\n",   "\r\n",
    "(see above)", "e.g.",
    "x = y * 2;",  "\"",
};
static const char CODE_BLOCK[] =
    "\n```c\nint main(void) {\n\tprintf(\"hello, \\\"world\\\"\\n\");\n"
    "\treturn 0;\n}\n```\n";

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static size_t cps(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* Raw UTF-8 text of exactly `target` code points. */
static void make_text(buf *raw, rng *r, size_t target, int title)
{
    size_t have = 0;
    raw->len = 0;
    while (have < target) {
        const char *tok;
        unsigned p = rng_below(r, 1000);
        if (title)
            tok = p < 900 ? WORDS[rng_below(r, COUNT(WORDS))] : INTL[rng_below(r, COUNT(INTL))];
        else if (p < 760)
            tok = WORDS[rng_below(r, COUNT(WORDS))];
        else if (p < 870)
            tok = INTL[rng_below(r, COUNT(INTL))];
        else if (p < 997)
            tok = SPECIAL[rng_below(r, COUNT(SPECIAL))];
        else
            tok = CODE_BLOCK;
        if (have) {
            buf_addc(raw, ' ');
            have++;
        }
        size_t n = strlen(tok);
        buf_add(raw, tok, n);
        have += cps(tok, n);
    }
    /* cut to exactly `target` code points, never inside a character */
    size_t c = 0, i = 0;
    for (; i < raw->len; i++)
        if (((unsigned char)raw->data[i] & 0xc0) != 0x80 && c++ == target)
            break;
    raw->len = i;
    raw->data[raw->len] = '\0';
}

static void add_json_string(buf *out, const char *s, size_t n)
{
    buf_reserve(out, n + 2);
    buf_addc(out, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        switch (ch) {
        case '"':
            buf_add(out, "\\\"", 2);
            break;
        case '\\':
            buf_add(out, "\\\\", 2);
            break;
        case '\n':
            buf_add(out, "\\n", 2);
            break;
        case '\t':
            buf_add(out, "\\t", 2);
            break;
        case '\r':
            buf_add(out, "\\r", 2);
            break;
        case '\b':
            buf_add(out, "\\b", 2);
            break;
        case '\f':
            buf_add(out, "\\f", 2);
            break;
        default:
            if (ch < 0x20)
                buf_addf(out, "\\u%04x", ch);
            else
                buf_addc(out, (char)ch);
        }
    }
    buf_addc(out, '"');
}

/* 50..2000 code points, about log-uniform (skewed a little to short, so the
 * reference set of 2,000 chats x 50 messages is ~63 MB as a /sync body). */
static size_t message_length(rng *r)
{
    return (size_t)(50.0 * exp(pow(rng_unit(r), 1.2) * log(2000.0 / 50.0)) + 0.5);
}

void gen_message(buf *out, const gen_cfg *g, long chat, long msg)
{
    char id[37];
    gen_message_id(g, chat, msg, id);
    rng r = rng_for(g, chat, msg, 3);
    buf raw = {0};
    make_text(&raw, &r, message_length(&r), 0);
    buf_addf(out, "{\"id\":\"%s\",\"role\":\"%s\",\"content\":", id,
             msg % 2 ? "assistant" : "user");
    add_json_string(out, raw.data, raw.len);
    buf_adds(out, ",\"timestamp\":");
    add_iso(out, message_ms(chat, msg));
    buf_addc(out, '}');
    buf_free(&raw);
}

static const char *const MODELS[][2] = {
    {"gpt-4o", "openai"},        {"claude-3-5-sonnet", "anthropic"}, {"gemini-1.5-pro", "google"},
    {"llama-3.1-70b", "ollama"}, {"mistral-large", "mistral"},
};

/* The scalar fields, without braces: "title":...,"createdAt":... */
static void add_fields(buf *out, const gen_cfg *g, long chat, long nmsgs)
{
    rng r = rng_for(g, chat, -1, 4);
    buf raw = {0};
    make_text(&raw, &r, 12 + rng_below(&r, 50), 1);
    unsigned m = rng_below(&r, COUNT(MODELS));
    buf_adds(out, "\"title\":");
    add_json_string(out, raw.data, raw.len);
    buf_adds(out, ",\"createdAt\":");
    add_iso(out, chat_created_ms(chat));
    buf_adds(out, ",\"updatedAt\":");
    add_iso(out, message_ms(chat, nmsgs > 0 ? nmsgs - 1 : 0));
    buf_adds(out, ",\"lastModified\":");
    add_iso(out, message_ms(chat, nmsgs > 0 ? nmsgs - 1 : 0));
    buf_addf(out, ",\"model\":\"%s\",\"provider\":\"%s\",\"currentModel\":\"%s\",\"isArchived\":%s",
             MODELS[m][0], MODELS[m][1], MODELS[m][0], rng_below(&r, 10) == 0 ? "true" : "false");
    buf_free(&raw);
}

static void add_messages(buf *out, const gen_cfg *g, long chat, long nmsgs)
{
    buf_adds(out, "\"messages\":[");
    for (long i = 0; i < nmsgs; i++) {
        if (i)
            buf_addc(out, ',');
        gen_message(out, g, chat, i);
    }
    buf_addc(out, ']');
}

void gen_chat_legacy(buf *out, const gen_cfg *g, long chat, long nmsgs)
{
    char id[37];
    gen_chat_id(g, chat, id);
    buf_addf(out, "{\"id\":\"%s\",", id);
    add_fields(out, g, chat, nmsgs);
    buf_addc(out, ',');
    add_messages(out, g, chat, nmsgs);
    buf_addf(out, ",\"updatedAtLamport\":[%ld,\"%s\"]}", (chat % 100000) + 1, g->device);
}

void gen_chat_change(buf *out, const gen_cfg *g, long chat, long nmsgs, long clock)
{
    char id[37];
    gen_chat_id(g, chat, id);
    buf_addf(out, "{\"chatId\":\"%s\",\"clock\":%ld,\"fields\":{", id, clock);
    add_fields(out, g, chat, nmsgs);
    buf_adds(out, "},");
    add_messages(out, g, chat, nmsgs);
    buf_addc(out, '}');
}

void gen_legacy_body(buf *out, const gen_cfg *g, long first, long count, long nmsgs)
{
    buf_addf(out, "{\"deviceId\":\"%s\",\"clientClock\":%ld,\"chats\":[",
             g->envelope ? g->envelope : g->device, first + count);
    for (long c = first; c < first + count; c++) {
        if (c > first)
            buf_addc(out, ',');
        gen_chat_legacy(out, g, c, nmsgs);
    }
    buf_adds(out, "],\"deletions\":[]}");
}

void gen_seed_body(buf *out, const gen_cfg *g, long first, long count, long nmsgs)
{
    buf_adds(out, "{\"chats\":[");
    for (long c = first; c < first + count; c++) {
        if (c > first)
            buf_addc(out, ',');
        gen_chat_legacy(out, g, c, nmsgs);
    }
    buf_adds(out, "]}");
}
