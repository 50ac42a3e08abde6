/*
 * The connection guard's address keys (server/conn_guard.c, included to
 * reach its static functions): IPv4 counted per address, IPv6 per /64 (RFC
 * 4291: a host usually owns a whole /64, so counting single IPv6 addresses
 * would let one host open 2^64 times the cap), an IPv4-mapped IPv6 address
 * counted as the IPv4 address it is, and loopback recognised in every form.
 * The live parts (cap at accept, the head deadline) are covered by
 * tests/integration/test_exhaustion.py.
 */
#include "test_util.h"
#include "server/conn_guard.c"

#include <arpa/inet.h>

static addr_key key4(const char *text, bool *loopback)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, text, &in.sin_addr), 1);
    addr_key k;
    assert_true(key_of((struct sockaddr *)&in, sizeof in, &k, loopback));
    return k;
}

static addr_key key6(const char *text, bool *loopback)
{
    struct sockaddr_in6 in = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, text, &in.sin6_addr), 1);
    addr_key k;
    assert_true(key_of((struct sockaddr *)&in, sizeof in, &k, loopback));
    return k;
}

static bool same(addr_key a, addr_key b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static void ipv6_is_grouped_by_its_64(void **state)
{
    (void)state;
    bool lo;
    assert_true(same(key6("2001:db8:1:2::1", &lo), key6("2001:db8:1:2:ffff:ffff:ffff:ffff", &lo)));
    assert_false(same(key6("2001:db8:1:2::1", &lo), key6("2001:db8:1:3::1", &lo)));
    assert_false(lo);
}

static void ipv4_is_per_address_and_mapped_is_ipv4(void **state)
{
    (void)state;
    bool lo;
    assert_false(same(key4("192.0.2.1", &lo), key4("192.0.2.2", &lo)));
    assert_true(same(key4("192.0.2.1", &lo), key6("::ffff:192.0.2.1", &lo)));
    /* mapped addresses are not grouped by /64: that would be all of IPv4 */
    assert_false(same(key6("::ffff:192.0.2.1", &lo), key6("::ffff:192.0.2.2", &lo)));
}

static void loopback_in_every_form(void **state)
{
    (void)state;
    bool lo = false;
    key4("127.0.0.1", &lo);
    assert_true(lo);
    key4("127.3.2.1", &lo);
    assert_true(lo);
    key6("::1", &lo);
    assert_true(lo);
    key6("::ffff:127.0.0.2", &lo);
    assert_true(lo);
    key4("128.0.0.1", &lo);
    assert_false(lo);
    key6("::2", &lo);
    assert_false(lo);
}

static void other_families_are_not_counted(void **state)
{
    (void)state;
    struct sockaddr unix_addr = {.sa_family = AF_UNIX};
    addr_key k;
    bool lo;
    assert_false(key_of(&unix_addr, sizeof unix_addr, &k, &lo));
    /* and admit lets them in */
    ps_conn_guard_config cfg = {.per_ip_max = 1};
    ps_conn_guard *g = ps_conn_guard_new(&cfg);
    assert_non_null(g);
    assert_true(ps_conn_guard_admit(g, &unix_addr, sizeof unix_addr));
    ps_conn_guard_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ipv6_is_grouped_by_its_64),
        cmocka_unit_test(ipv4_is_per_address_and_mapped_is_ipv4),
        cmocka_unit_test(loopback_in_every_form),
        cmocka_unit_test(other_families_are_not_counted),
    };
    return cmocka_run_group_tests_name("conn_guard", tests, NULL, NULL);
}
