/*
 * GET /web/...: the browser client (clients/web/) and its demo page, served
 * from a web root directory (--web-root; default: the copy beside the
 * binary, build/share/polysync/web or PREFIX/share/polysync/web, then the
 * installed one). No token needed (they are public files), no directory
 * listing (/web/ is index.html), and nothing outside the root: dot segments
 * and hidden names are refused, and the resolved path (symlinks followed)
 * must stay under the root's real path. Content-Type by extension, ETag and
 * 304 on If-None-Match. docs/web.md describes it for users.
 */
#ifndef PS_STATIC_FILES_H
#define PS_STATIC_FILES_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

/* Whether `url` is "/web" or under "/web/". */
bool ps_static_is_web_path(const char *url);

/*
 * The web root to serve: `configured` if set, else the first of
 * <dir of the running binary>/../share/polysync/web and `installed` that is
 * a directory. Its real path (malloc'd) or NULL when there is none.
 */
char *ps_static_find_root(const char *configured, const char *installed);

/* Answers a /web request from `root` (NULL: every path is 404); *answered
 * is the status queued (for the access log and metrics). */
enum MHD_Result ps_static_answer(const char *root, struct MHD_Connection *conn, const char *method,
                                 const char *url, const char *allow_origin, unsigned *answered);

#endif
