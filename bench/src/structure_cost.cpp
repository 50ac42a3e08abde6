// What checking a chat's JSON structure costs, by each way at hand
// (docs/performance.md, "tidy: the structure check against the libraries"):
// the legacy body given (psbench gen's reference history) is split chat by
// chat as the server splits it (core/chat_splitter.h), and each way is
// timed over every chat, best of --runs passes, in CPU time:
//   structure      ps__json_structure_ok (core/json_structure.c, AVX2 where
//                  the processor has it), what ps_content_hash asks first
//   structure-sse2 the same without AVX2
//   content-hash   ps_content_hash: the structure check and simdjson's
//                  On-Demand hash together, as the server runs them
//   padded-copy    the copy into a padded buffer alone (ps_content_hash
//                  makes it anyway, for simdjson)
//   simdjson-dom   simdjson's DOM parser (a full validation: structure,
//                  strings, numbers, UTF-8), the copy included
//   json-c         json_tokener_parse_ex, strict (builds the objects)
//   precheck       ps__json_precheck (what a hashed chat no longer needs)
// Usage: psbench_structure FILE [runs]. Prints one line per way.
#include <simdjson.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

extern "C" {
#include "core/chat_splitter.h"
#include "core/json_parse.h"
#include "core/json_precheck.h"
#include "core/json_structure.h"
#include "server/content_hash.h"
#include <json-c/json.h>
}

namespace {

struct chats {
    std::string current;
    std::vector<std::string> all;
};

ps_code on_envelope(void *, const char *, size_t) { return PS_OK; }
ps_code on_part(void *cls, const char *p, size_t n)
{
    static_cast<chats *>(cls)->current.append(p, n);
    return PS_OK;
}
ps_code on_end(void *cls, uint64_t)
{
    chats *c = static_cast<chats *>(cls);
    c->all.push_back(std::move(c->current));
    c->current.clear();
    return PS_OK;
}
ps_code on_start(void *cls)
{
    static_cast<chats *>(cls)->all.clear();
    return PS_OK;
}

double cpu_ms()
{
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

template <typename F> void time_way(const char *name, const chats &c, int runs, F check)
{
    double best = 1e18;
    size_t ok = 0;
    for (int r = 0; r < runs; r++) {
        size_t passed = 0;
        double t0 = cpu_ms();
        for (const std::string &s : c.all)
            passed += check(s) ? 1 : 0;
        double t = cpu_ms() - t0;
        if (t < best)
            best = t;
        ok = passed;
    }
    std::printf("%-15s %8.1f ms  (%zu of %zu chats pass)\n", name, best, ok, c.all.size());
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s FILE [runs]\n", argv[0]);
        return 2;
    }
    int runs = argc > 2 ? std::atoi(argv[2]) : 9;
    FILE *in = std::fopen(argv[1], "rb");
    if (!in) {
        std::perror(argv[1]);
        return 1;
    }
    std::string body;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, in)) > 0)
        body.append(buf, n);
    std::fclose(in);

    chats c;
    ps_chat_splitter_sink sink = {&c, on_envelope, on_part, on_end, on_start};
    ps_chat_splitter sp;
    ps__chat_splitter_init(&sp, &sink);
    ps_error err;
    if (ps__chat_splitter_feed(&sp, body.data(), body.size(), &err) != PS_OK ||
        ps__chat_splitter_finish(&sp, &err) != PS_OK) {
        std::fprintf(stderr, "not a legacy body: %s\n", err.message);
        return 1;
    }
    size_t bytes = 0;
    for (const std::string &s : c.all)
        bytes += s.size();
    std::printf("%zu chats, %.1f MB of chat text, best of %d\n", c.all.size(), bytes / 1e6, runs);

    time_way("structure", c, runs, [](const std::string &s) {
        return ps__json_structure_ok(s.data(), s.size(), PS_JSON_MAX_DEPTH);
    });
    time_way("structure-sse2", c, runs, [](const std::string &s) {
        return ps__json_structure_ok_baseline(s.data(), s.size(), PS_JSON_MAX_DEPTH);
    });
    time_way("content-hash", c, runs, [](const std::string &s) {
        uint64_t h;
        char id[257];
        return ps_content_hash(s.data(), s.size(), PS_JSON_MAX_DEPTH, &h, id, sizeof id);
    });
    size_t longest = 0;
    for (const std::string &s : c.all)
        longest = s.size() > longest ? s.size() : longest;
    simdjson::dom::parser dom;
    if (dom.allocate(longest, PS_JSON_MAX_DEPTH)) { // the server's depth limit
        std::fprintf(stderr, "out of memory\n");
        return 1;
    }
    std::string padded;
    time_way("padded-copy", c, runs, [&](const std::string &s) {
        padded.assign(s); // the copy alone, to take out of simdjson-dom's time
        padded.append(simdjson::SIMDJSON_PADDING, ' ');
        return padded.size() > s.size();
    });
    time_way("simdjson-dom", c, runs, [&](const std::string &s) {
        padded.assign(s); // as ps_content_hash copies into its padded buffer
        padded.append(simdjson::SIMDJSON_PADDING, ' ');
        simdjson::dom::element root;
        return !dom.parse(padded.data(), s.size(), false).get(root);
    });
    json_tokener *tok = json_tokener_new_ex(PS_JSON_MAX_DEPTH + 1);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    time_way("json-c", c, runs, [&](const std::string &s) {
        json_tokener_reset(tok);
        json_object *o = json_tokener_parse_ex(tok, s.data(), (int)s.size());
        bool good = o && json_tokener_get_error(tok) == json_tokener_success;
        json_object_put(o);
        return good;
    });
    json_tokener_free(tok);
    time_way("precheck", c, runs, [](const std::string &s) {
        ps_error e;
        return ps__json_precheck(s.data(), s.size(), PS_JSON_MAX_DEPTH, &e) == PS_OK;
    });
    return 0;
}
