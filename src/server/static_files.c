/* Static files under /web/; see static_files.h. */
#include "server/static_files.h"
#include "server/http_response.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WEB_PREFIX "/web"

bool ps_static_is_web_path(const char *url)
{
    size_t n = strlen(WEB_PREFIX);
    return strncmp(url, WEB_PREFIX, n) == 0 && (url[n] == '\0' || url[n] == '/');
}

static bool is_dir(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *ps_static_find_root(const char *configured, const char *installed)
{
    if (configured)
        return realpath(configured, NULL);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char beside[PATH_MAX];
            if (snprintf(beside, sizeof beside, "%s/../share/polysync/web", exe) <
                    (int)sizeof beside &&
                is_dir(beside))
                return realpath(beside, NULL);
        }
    }
    return is_dir(installed) ? realpath(installed, NULL) : NULL;
}

static const struct {
    const char *ext, *type;
} TYPES[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json; charset=utf-8"},
    {".map", "application/json; charset=utf-8"},
    {".ts", "text/plain; charset=utf-8"}, /* polysync.d.ts, to read */
    {".md", "text/markdown; charset=utf-8"},
    {".txt", "text/plain; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".webp", "image/webp"},
    {".woff2", "font/woff2"},
};

static const char *content_type(const char *path)
{
    size_t len = strlen(path);
    for (size_t i = 0; i < sizeof TYPES / sizeof *TYPES; i++) {
        size_t el = strlen(TYPES[i].ext);
        if (len > el && strcmp(path + len - el, TYPES[i].ext) == 0)
            return TYPES[i].type;
    }
    return "application/octet-stream";
}

/* Every segment a plain name: no "", ".", "..", no hidden names, no
 * backslash. libmicrohttpd has already decoded %xx, so "%2e%2e" is ".." here. */
static bool safe_relative(const char *rel)
{
    if (strchr(rel, '\\'))
        return false;
    const char *seg = rel;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len == 0 && !end && seg != rel) /* "dir/": its index.html */
            return true;
        if (len == 0 || seg[0] == '.')
            return false;
        if (!end)
            return true;
        seg = end + 1;
    }
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned *answered, ps_code code,
                                  const char *message, const char *allow_origin, const char *allow)
{
    ps_reply reply;
    ps_reply_init(&reply, 4096);
    reply.allow_origin = allow_origin;
    if (allow)
        snprintf(reply.allow, sizeof reply.allow, "%s", allow);
    ps_reply_from_code(&reply, code, message);
    *answered = reply.status;
    enum MHD_Result r = ps__send_reply(conn, &reply, PS_CODING_IDENTITY);
    ps_reply_free(&reply);
    return r;
}

static enum MHD_Result not_found(struct MHD_Connection *conn, unsigned *answered,
                                 const char *allow_origin)
{
    return send_error(conn, answered, PS_ERR_NOT_FOUND, "no such file", allow_origin, NULL);
}

static void common_headers(struct MHD_Response *resp, const char *allow_origin)
{
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    if (allow_origin) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if (strcmp(allow_origin, "*") != 0)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
    }
}

static enum MHD_Result redirect(struct MHD_Connection *conn, unsigned *answered, const char *to,
                                const char *allow_origin)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, to);
    common_headers(resp, allow_origin);
    *answered = MHD_HTTP_MOVED_PERMANENTLY;
    enum MHD_Result r = MHD_queue_response(conn, MHD_HTTP_MOVED_PERMANENTLY, resp);
    MHD_destroy_response(resp);
    return r;
}

/* Whether If-None-Match lists `etag` (or is "*"). */
static bool etag_matches(const char *header, const char *etag)
{
    if (!header)
        return false;
    if (strcmp(header, "*") == 0)
        return true;
    size_t n = strlen(etag);
    for (const char *p = strstr(header, etag); p; p = strstr(p + 1, etag)) {
        char after = p[n];
        if (after == '\0' || after == ',' || after == ' ')
            return true;
    }
    return false;
}

enum MHD_Result ps_static_answer(const char *root, struct MHD_Connection *conn, const char *method,
                                 const char *url, const char *allow_origin, unsigned *answered)
{
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return send_error(conn, answered, PS_ERR_METHOD_NOT_ALLOWED,
                          "static files take GET and HEAD", allow_origin, "GET, HEAD, OPTIONS");
    if (strcmp(url, WEB_PREFIX) == 0)
        return redirect(conn, answered, WEB_PREFIX "/", allow_origin);
    if (!root)
        return not_found(conn, answered, allow_origin);
    const char *rel = url + strlen(WEB_PREFIX "/");
    char want[PATH_MAX];
    int len = *rel == '\0' || rel[strlen(rel) - 1] == '/'
                  ? snprintf(want, sizeof want, "%s/%sindex.html", root, rel)
                  : snprintf(want, sizeof want, "%s/%s", root, rel);
    if (len < 0 || (size_t)len >= sizeof want || (*rel && !safe_relative(rel)))
        return not_found(conn, answered, allow_origin);
    /* Symlinks are followed only where they stay inside the root. The file
     * is then opened by its resolved name without following links, and
     * checked to be a regular file (a directory is never listed). */
    char *real = realpath(want, NULL);
    size_t rootlen = strlen(root);
    if (!real || strncmp(real, root, rootlen) != 0 || real[rootlen] != '/') {
        free(real);
        return not_found(conn, answered, allow_origin);
    }
    int fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    const char *type = content_type(real);
    free(real);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return not_found(conn, answered, allow_origin);
    }
    char etag[64];
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st.st_mtim.tv_nsec);
    struct MHD_Response *resp;
    unsigned status = MHD_HTTP_OK;
    if (etag_matches(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match"), etag)) {
        close(fd);
        status = MHD_HTTP_NOT_MODIFIED;
        resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd); /* takes fd */
        if (!resp)
            close(fd);
    }
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    /* revalidated on every use: a new client version is seen at once */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    if (status == MHD_HTTP_OK)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    common_headers(resp, allow_origin);
    *answered = status;
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}
