/*
 * The C side of tests/unit/structure_oracle.py: reads records from stdin
 * (a 4-byte little-endian length, then that many bytes of text) and writes
 * one line per record: "S B H O" where S is ps__json_structure_ok (AVX2
 * where the processor has it), B the same without AVX2, H ps_content_hash,
 * O the On-Demand reader it replaced (content_hash_ondemand.h), each 1 or
 * 0, all with the server's depth limit (PS_JSON_MAX_DEPTH). The verdicts
 * are judged in Python, by its json module.
 */
#include "core/json_parse.h"
#include "core/json_structure.h"
#include "server/content_hash.h"
#include "content_hash_ondemand.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    unsigned char head[4];
    while (fread(head, 1, 4, stdin) == 4) {
        size_t n = (size_t)head[0] | (size_t)head[1] << 8 | (size_t)head[2] << 16 |
                   (size_t)head[3] << 24;
        char *text = malloc(n ? n : 1);
        if (!text || fread(text, 1, n, stdin) != n) {
            fprintf(stderr, "structure_oracle_helper: short record\n");
            free(text);
            return 2;
        }
        uint64_t hash;
        char id[257];
        printf("%d %d %d %d\n", ps__json_structure_ok(text, n, PS_JSON_MAX_DEPTH),
               ps__json_structure_ok_baseline(text, n, PS_JSON_MAX_DEPTH),
               ps_content_hash(text, n, PS_JSON_MAX_DEPTH, &hash, id, sizeof id),
               ps__content_hash_ondemand(text, n, PS_JSON_MAX_DEPTH, &hash, id, sizeof id));
        free(text);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
