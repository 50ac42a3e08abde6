/*
 * A whole file into memory: the one function polysync reads files whole
 * with (the server's TLS certificates and JWT keys, the files polysyncd
 * and polysync import). The only I/O in src/core, kept here because the
 * server, the client CLI and polysyncd's commands all need it.
 */
#ifndef PS_READ_FILE_H
#define PS_READ_FILE_H

#include "polysync/error.h"

#include <stddef.h>
#include <stdint.h>

/* Called after each chunk: bytes read so far, and the file's size (0 when it
 * is not a regular file, e.g. a pipe). */
typedef void (*ps_read_progress_fn)(void *ud, size_t done, uint64_t size);

/*
 * Reads all of `path` (NULL: standard input, named "-" in messages) into
 * *out, NUL-terminated (the NUL not counted in *len), at most `max` bytes.
 * It reads with read(2), so a pipe's data is counted as it arrives;
 * `progress` (may be NULL) is called after every chunk. On failure *out is
 * NULL, errno says why, and the code is PS_ERR_IO (cannot open or read),
 * PS_ERR_TOO_LARGE (more than `max` bytes; errno EFBIG) or PS_ERR_NOMEM.
 */
ps_code ps__read_file(const char *path, size_t max, ps_read_progress_fn progress, void *ud,
                     char **out, size_t *len, ps_error *err);

#endif
