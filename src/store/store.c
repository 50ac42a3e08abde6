/* Picks the backend from the store URL; see store.h. */
#include "store/store.h"

#include <string.h>

_Atomic uint64_t ps__store_begin_count, ps__store_begin_wait_us;

const char ps_doc_from_pack[] = "";

ps_code ps_store_open(const char *url, ps_store **out, ps_error *err)
{
    return ps_store_open_opts(url, NULL, out, err);
}

ps_code ps_store_open_opts(const char *url, const ps_store_options *opt, ps_store **out,
                           ps_error *err)
{
    static const ps_store_options defaults = {0};
    *out = NULL;
    if (strncmp(url, "sqlite:", 7) == 0) {
        if (url[7] == '\0')
            return ps_error_set(err, PS_ERR_CONFIG, -1, "", "sqlite: URL needs a path");
        ps_code rc = ps__store_sqlite_open(url + 7, out, err);
#ifdef PS_FAULT_INJECTION
        /* test builds only: the wrapper of store_fault.c, when asked for */
        if (rc == PS_OK && (rc = ps__store_fault_wrap(out, err)) != PS_OK) {
            ps_store_close(*out);
            *out = NULL;
        }
#endif
        return rc;
    }
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        ps_code rc = ps__store_pg_open(url, opt ? opt : &defaults, out, err);
#ifdef PS_FAULT_INJECTION
        if (rc == PS_OK && (rc = ps__store_fault_wrap(out, err)) != PS_OK) {
            ps_store_close(*out);
            *out = NULL;
        }
#endif
        return rc;
    }
    return ps_error_set(err, PS_ERR_CONFIG, -1, "",
                        "unknown store URL '%s' (expected sqlite:PATH or postgres://...)", url);
}

void ps_store_close(ps_store *s)
{
    if (s)
        s->ops->close(s);
}
