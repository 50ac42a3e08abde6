/*
 * The texts made without printf (server/plain_text.h), each against the
 * libc call it stands in for (the oracle): a bounded copy against
 * snprintf("%s") at every size around the text's length, the request id
 * against "%016llx", an IPv4 address against inet_ntop for every byte value
 * in every position.
 */
#include "test_util.h"
#include "server/plain_text.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static void copies_as_snprintf_does(void **state)
{
    const char *texts[] = {"", "a", "POST", "a text of some length", "caf\xc3\xa9"};
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++) {
        for (size_t size = 1; size <= strlen(texts[t]) + 3; size++) {
            char want[64], got[64];
            memset(want, 'x', sizeof want);
            memset(got, 'x', sizeof got);
            snprintf(want, size, "%s", texts[t]);
            ps__copy_text(got, size, texts[t]);
            assert_memory_equal(got, want, sizeof got); /* nothing past the NUL either */
        }
    }
}

static void request_ids_as_printf_writes_them(void **state)
{
    uint64_t values[] = {0, 1, 15, 16, 0xabcdef, 0x1a23a8e137a00077ull, UINT64_MAX};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        char want[17], got[17];
        snprintf(want, sizeof want, "%016llx", (unsigned long long)values[i]);
        ps__hex16_text(values[i], got);
        assert_string_equal(got, want);
    }
}

static void ipv4_as_inet_ntop_writes_it(void **state)
{
    for (int pos = 0; pos < 4; pos++) {
        for (int v = 0; v < 256; v++) {
            unsigned char b[4] = {127, 0, 0, 1};
            b[pos] = (unsigned char)v;
            struct in_addr a;
            memcpy(&a.s_addr, b, 4);
            char want[INET_ADDRSTRLEN], got[INET_ADDRSTRLEN];
            assert_non_null(inet_ntop(AF_INET, &a, want, sizeof want));
            ps__ipv4_text(&a, got);
            assert_string_equal(got, want);
        }
    }
    struct in_addr widest;
    inet_pton(AF_INET, "255.255.255.255", &widest);
    char got[INET_ADDRSTRLEN];
    ps__ipv4_text(&widest, got);
    assert_string_equal(got, "255.255.255.255");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(copies_as_snprintf_does),
        cmocka_unit_test(request_ids_as_printf_writes_them),
        cmocka_unit_test(ipv4_as_inet_ntop_writes_it),
    };
    return cmocka_run_group_tests_name("plain_text", tests, NULL, NULL);
}
