/*
 * The prefault thread (server/prefault.h), judged by the kernel: mincore(2)
 * says which pages of a fresh mapping are resident. A started prefault must
 * make every page of its range resident without the test touching one;
 * bytes a writer puts in the range while the prefault runs must all stay
 * as written (a prefault that wrote to the pages, instead of asking the
 * kernel to populate them, would clobber some); ranges too small for a
 * thread start none; finishing stops it early and frees it (ASan: no leak,
 * no thread left touching freed memory).
 */
#include "test_util.h"
#include "server/prefault.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RANGE ((size_t)32 << 20)

static char *fresh_mapping(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

/* Pages of [p, p + len) the kernel has resident. */
static size_t resident_pages(char *p, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = len / page, count = 0;
    unsigned char *vec = malloc(n);
    assert_non_null(vec);
    assert_int_equal(mincore(p, len, vec), 0);
    for (size_t i = 0; i < n; i++)
        count += vec[i] & 1;
    free(vec);
    return count;
}

static void sleep_ms(long ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void every_page_of_the_range_becomes_resident(void **state)
{
    char *p = fresh_mapping(RANGE);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), want = RANGE / page;
    assert_int_equal(resident_pages(p, RANGE), 0);
    ps_prefault *pf = ps_prefault_start(p, RANGE);
    assert_non_null(pf);
    /* no deadline on the thread's speed: wait until it is done, or 60 s */
    for (int i = 0; i < 6000 && resident_pages(p, RANGE) < want; i++)
        sleep_ms(10);
    assert_int_equal(resident_pages(p, RANGE), want);
    ps_prefault_finish(pf);
    munmap(p, RANGE);
}

static void bytes_written_meanwhile_are_kept(void **state)
{
    char *p = fresh_mapping(RANGE);
    ps_prefault *pf = ps_prefault_start(p, RANGE);
    assert_non_null(pf);
    /* the writer goes front to back too, as the spool's chats do, so it
     * meets pages the prefault has done, is doing, and has not reached */
    for (size_t i = 0; i < RANGE; i += 4096)
        for (size_t k = 0; k < 4096; k += 512)
            p[i + k] = (char)(1 + (i / 4096 + k) % 251);
    ps_prefault_finish(pf);
    for (size_t i = 0; i < RANGE; i += 4096)
        for (size_t k = 0; k < 4096; k += 512)
            if (p[i + k] != (char)(1 + (i / 4096 + k) % 251))
                fail_msg("byte %zu changed", i + k);
    munmap(p, RANGE);
}

static void a_small_range_starts_no_thread(void **state)
{
    char *p = fresh_mapping(RANGE);
    assert_null(ps_prefault_start(p, (size_t)1 << 20)); /* under one step */
    assert_null(ps_prefault_start(p + 1, 4096));        /* no whole page */
    ps_prefault_finish(NULL);                           /* a no-op */
    assert_int_equal(resident_pages(p, RANGE), 0);
    munmap(p, RANGE);
}

static void finishing_at_once_stops_it(void **state)
{
    char *p = fresh_mapping(RANGE);
    ps_prefault *pf = ps_prefault_start(p, RANGE);
    assert_non_null(pf);
    ps_prefault_finish(pf); /* joined: nothing touches p after this */
    size_t after = resident_pages(p, RANGE);
    sleep_ms(50);
    assert_int_equal(resident_pages(p, RANGE), after);
    munmap(p, RANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_page_of_the_range_becomes_resident),
        cmocka_unit_test(bytes_written_meanwhile_are_kept),
        cmocka_unit_test(a_small_range_starts_no_thread),
        cmocka_unit_test(finishing_at_once_stops_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
