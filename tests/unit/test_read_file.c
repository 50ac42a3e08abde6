/*
 * ps__read_file (core/read_file.h), the one function that reads a file
 * whole: every byte in order across the buffer's growth, the NUL after
 * them, the size cap at exactly max bytes, a missing file and a directory
 * as errors with errno kept, standard input (a pipe) for a NULL path, and
 * the progress callback's running count. The oracle is the bytes the test
 * itself wrote.
 */
#include "test_util.h"
#include "core/read_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A temporary file of `len` bytes (a pattern), its path into `path`. */
static void write_temp(char path[64], size_t len)
{
    strcpy(path, "/tmp/ps_read_file_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unsigned char *b = malloc(len + 1);
    assert_non_null(b);
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)(i * 131 + i / 251);
    assert_int_equal(write(fd, b, len), (ssize_t)len);
    free(b);
    close(fd);
}

static void check_pattern(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] != (unsigned char)(i * 131 + i / 251))
            fail_msg("byte %zu differs", i);
    assert_int_equal(data[len], '\0');
}

static void reads_every_byte_across_growth(void **state)
{
    (void)state;
    /* empty, one byte, around the first capacity (64 KiB), several doublings */
    static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 300000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        char path[64];
        write_temp(path, sizes[k]);
        char *data = NULL;
        size_t len = 12345;
        ps_error err;
        assert_int_equal(ps__read_file(path, SIZE_MAX, NULL, NULL, &data, &len, &err), PS_OK);
        assert_int_equal(len, sizes[k]);
        check_pattern(data, len);
        free(data);
        unlink(path);
    }
}

static void max_bytes_is_the_limit(void **state)
{
    (void)state;
    char path[64];
    write_temp(path, 70000);
    char *data = NULL;
    size_t len = 0;
    ps_error err;
    assert_int_equal(ps__read_file(path, 70000, NULL, NULL, &data, &len, &err), PS_OK);
    assert_int_equal(len, 70000);
    free(data);
    assert_int_equal(ps__read_file(path, 69999, NULL, NULL, &data, &len, &err), PS_ERR_TOO_LARGE);
    assert_int_equal(errno, EFBIG);
    assert_null(data);
    assert_non_null(strstr(err.message, path));
    unlink(path);
}

static void missing_file_and_directory_fail(void **state)
{
    (void)state;
    char *data = (char *)"untouched";
    size_t len = 0;
    ps_error err;
    assert_int_equal(ps__read_file("/nonexistent/ps__read_file", 100, NULL, NULL, &data, &len, &err),
                     PS_ERR_IO);
    assert_int_equal(errno, ENOENT);
    assert_null(data);
    assert_non_null(strstr(err.message, "cannot open /nonexistent/ps__read_file"));
    assert_int_equal(ps__read_file("/tmp", 100, NULL, NULL, &data, &len, &err), PS_ERR_IO);
    assert_int_equal(errno, EISDIR);
    assert_null(data);
}

typedef struct seen {
    size_t calls, last;
    uint64_t size;
} seen;

static void on_progress(void *ud, size_t done, uint64_t size)
{
    seen *s = ud;
    assert_true(done >= s->last); /* a running count */
    s->calls++;
    s->last = done;
    s->size = size;
}

static void null_path_is_stdin_with_progress(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    static const char text[] = "{\"chats\": []}\n";
    assert_int_equal(write(p[1], text, strlen(text)), (ssize_t)strlen(text));
    close(p[1]);
    int saved = dup(STDIN_FILENO);
    assert_int_equal(dup2(p[0], STDIN_FILENO), STDIN_FILENO);
    close(p[0]);
    char *data = NULL;
    size_t len = 0;
    ps_error err;
    seen s = {0};
    ps_code rc = ps__read_file(NULL, 1000, on_progress, &s, &data, &len, &err);
    dup2(saved, STDIN_FILENO); /* standard input stays open for the rest */
    close(saved);
    assert_int_equal(rc, PS_OK);
    assert_int_equal(len, strlen(text));
    assert_string_equal(data, text);
    free(data);
    assert_true(s.calls >= 1);
    assert_int_equal(s.last, strlen(text));
    assert_int_equal(s.size, 0); /* a pipe has no size */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_every_byte_across_growth),
        cmocka_unit_test(max_bytes_is_the_limit),
        cmocka_unit_test(missing_file_and_directory_fail),
        cmocka_unit_test(null_path_is_stdin_with_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
