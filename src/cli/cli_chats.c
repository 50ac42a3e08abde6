/*
 * The commands on the local store: chat and msg changes and reading,
 * import and export (with their progress on a terminal).
 */
#include "cli/cli.h"
#include "cli/cli_term.h"
#include "core/json_build.h"
#include "core/read_file.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- chat and message commands ---- */

int run_chat_new(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    char *id = NULL;
    ps_code rc = ps_client_chat_create(c, o->title, &id, &err);
    if (rc == PS_OK)
        cli_print_id(o, id);
    ps_free(id);
    return rc == PS_OK ? 0 : cli_fail(c, rc, &err, LOCAL);
}

static int finish_change(ps_client *c, const options *o, ps_code rc, const ps_error *err)
{
    if (rc == PS_OK)
        cli_print_ok(o);
    return rc == PS_OK ? 0 : cli_fail(c, rc, err, LOCAL);
}

#define CHANGE_COMMAND(name, call)                                                                 \
    int name(ps_client *c, options *o)                                                             \
    {                                                                                              \
        ps_error err;                                                                              \
        ps_error_clear(&err);                                                                      \
        const char **a = o->args;                                                                  \
        (void)a;                                                                                   \
        return finish_change(c, o, call, &err);                                                    \
    }

CHANGE_COMMAND(run_chat_rename, ps_client_chat_rename(c, a[0], a[1], &err))
CHANGE_COMMAND(run_chat_archive, ps_client_chat_archive(c, a[0], true, &err))
CHANGE_COMMAND(run_chat_unarchive, ps_client_chat_archive(c, a[0], false, &err))
CHANGE_COMMAND(run_chat_delete, ps_client_chat_delete(c, a[0], &err))
CHANGE_COMMAND(run_msg_edit, ps_client_msg_edit(c, a[0], a[1], a[2], &err))
CHANGE_COMMAND(run_msg_delete, ps_client_msg_delete(c, a[0], a[1], &err))

static void add_time(ps_code *rc, json_object *obj, const char *key, int64_t ms)
{
    char t[32];
    cli_iso(ms, t);
    ps__json_set_opt(rc, obj, key, ms > 0, ms > 0 ? json_object_new_string(t) : NULL);
}

int run_chat_list(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    ps_chat_info *list = NULL;
    size_t n = 0;
    ps_code rc = ps_client_chat_list(c, &list, &n, &err);
    if (rc != PS_OK)
        return cli_fail(c, rc, &err, LOCAL);
    int code = 0;
    if (o->json) {
        json_object *arr = json_object_new_array();
        ps_code jrc = PS_OK;
        for (size_t i = 0; i < n && jrc == PS_OK; i++) {
            json_object *it = json_object_new_object();
            ps_code irc = PS_OK;
            ps__json_set(&irc, it, "id", json_object_new_string(list[i].id));
            ps__json_set_opt(&irc, it, "title", list[i].title,
                             list[i].title ? json_object_new_string(list[i].title) : NULL);
            ps__json_set(&irc, it, "isArchived", json_object_new_boolean(list[i].archived));
            ps__json_set(&irc, it, "messageCount",
                         json_object_new_int64((int64_t)list[i].message_count));
            add_time(&irc, it, "createdAt", list[i].created_ms);
            add_time(&irc, it, "updatedAt", list[i].updated_ms);
            if (irc != PS_OK) {
                json_object_put(it);
                it = NULL;
            }
            ps__json_push(&jrc, arr, it);
        }
        code = cli_print_built(arr, jrc);
    } else if (n == 0) {
        if (!o->quiet && isatty(STDOUT_FILENO))
            puts("no chats (create one with: polysync chat new --title T)");
    } else {
        printf("%-36s  %-20s  %5s  %s\n", "ID", "UPDATED", "MSGS", "TITLE");
        for (size_t i = 0; i < n; i++) {
            char t[32];
            cli_iso(list[i].updated_ms, t);
            printf("%-36s  %-20s  %5zu  %s%s\n", list[i].id, t, list[i].message_count,
                   list[i].title ? list[i].title : "(untitled)",
                   list[i].archived ? "  [archived]" : "");
        }
    }
    ps_chat_info_free(list, n);
    return code;
}

int run_chat_show(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    ps_code rc;
    if (o->json) {
        char *text = NULL;
        rc = ps_client_chat_json(c, o->args[0], &text, &err);
        json_object *obj = rc == PS_OK ? json_tokener_parse(text) : NULL;
        if (obj)
            cli_print_json(obj);
        else if (rc == PS_OK)
            puts(text);
        ps_free(text);
    } else {
        ps_chat_detail *d = NULL;
        rc = ps_client_chat_get(c, o->args[0], &d, &err);
        if (rc == PS_OK) {
            char created[32], updated[32];
            cli_iso(d->info.created_ms, created);
            cli_iso(d->info.updated_ms, updated);
            printf("%s\n", d->info.title ? d->info.title : "(untitled)");
            printf("  id        %s\n  created   %s\n  updated   %s\n  archived  %s\n"
                   "  messages  %zu\n",
                   d->info.id, created, updated, d->info.archived ? "yes" : "no",
                   d->info.message_count);
            for (size_t i = 0; i < d->info.message_count; i++) {
                const ps_message_info *m = &d->messages[i];
                char t[32];
                cli_iso(m->timestamp_ms, t);
                printf("\n[%s] %s  (%s)\n%s\n", t, m->role, m->id, m->content);
            }
        }
        ps_chat_detail_free(d);
    }
    return rc == PS_OK ? 0 : cli_fail(c, rc, &err, LOCAL);
}

int run_msg_add(ps_client *c, options *o)
{
    ps_error err;
    ps_error_clear(&err);
    char *id = NULL;
    ps_code rc = ps_client_msg_add(c, o->args[0], o->role, o->content, &id, &err);
    if (rc == PS_OK)
        cli_print_id(o, id);
    ps_free(id);
    return rc == PS_OK ? 0 : cli_fail(c, rc, &err, LOCAL);
}

/* ---- import / export ---- */

typedef struct work_view {
    term_line line;
    const char *command; /* "import", "export" */
} work_view;

static void on_work(const char *phase, size_t done, size_t total, void *ud)
{
    work_view *w = ud;
    if (strcmp(phase, "importing") == 0 || strcmp(phase, "exporting") == 0)
        term_draw(&w->line, done == 0, "%s: %s %zu/%zu chats (%d%%)", w->command, phase, done,
                  total, total ? (int)(100.0 * (double)done / (double)total) : 100);
    else
        term_draw(&w->line, true, "%s: %s…", w->command, phase);
}

/* The bytes of the file read so far, on a terminal. */
static void on_read(void *ud, size_t n, uint64_t size)
{
    work_view *w = ud;
    char a[32], b[32];
    if (size)
        term_draw(&w->line, false, "import: reading %s of %s (%d%%)", term_bytes(a, n),
                  term_bytes(b, size), (int)(100.0 * (double)n / (double)size));
    else
        term_draw(&w->line, false, "import: reading %s", term_bytes(a, n));
}

/* Reads a whole file (or stdin for "-"), showing bytes read on a terminal;
 * NULL with errno set if it cannot. */
static char *read_all(const char *path, size_t *len, work_view *w)
{
    char *data = NULL;
    ps_error err;
    /* at most 2 GiB, as the import takes */
    if (ps__read_file(strcmp(path, "-") == 0 ? NULL : path, (size_t)1 << 31, on_read, w, &data, len,
                     &err) != PS_OK)
        return NULL;
    return data;
}

int run_import(ps_client *c, options *o)
{
    work_view w = {.command = "import"};
    term_init(&w.line, cli_on_terminal(o), PROGRESS_DELAY_MS / 2);
    size_t len = 0;
    char *data = read_all(o->args[0], &len, &w);
    if (!data) {
        term_clear(&w.line);
        return cli_error(EXIT_USAGE, "io", "cannot read %s: %s", o->args[0], strerror(errno));
    }
    /* parsing a large file takes seconds with no news in between: say so
     * at once rather than after the delay */
    if (len > ((size_t)4 << 20))
        w.line.delay_ms = 0;
    ps_client_set_work_progress(c, on_work, &w);
    ps_error err;
    ps_error_clear(&err);
    ps_import_report *r = NULL;
    ps_code rc = ps_client_import(c, data, len, &r, &err);
    free(data);
    term_clear(&w.line);
    if (rc == PS_ERR_MALFORMED || rc == PS_ERR_INVALID || rc == PS_ERR_UTF8 ||
        rc == PS_ERR_TOO_DEEP) {
        /* the file as a whole is not chats: a local input error, not a refusal */
        ps_import_report_free(r);
        return cli_error(EXIT_USAGE, cli_code_name(rc), "%s is not a chat export: %s", o->args[0],
                         err.message);
    }
    if (rc != PS_OK) {
        ps_import_report_free(r);
        return cli_fail(c, rc, &err, LOCAL);
    }
    if (o->json) {
        json_object *j = json_object_new_object();
        json_object *sk = json_object_new_array();
        ps_code jrc = PS_OK;
        for (size_t i = 0; i < r->reason_count; i++)
            ps__json_push(&jrc, sk, json_object_new_string(r->reasons[i]));
        ps__json_set(&jrc, j, "imported", json_object_new_int64((int64_t)r->chats_imported));
        ps__json_set(&jrc, j, "messages", json_object_new_int64((int64_t)r->messages_imported));
        ps__json_set(&jrc, j, "privateDropped", json_object_new_int64((int64_t)r->private_dropped));
        ps__json_set(&jrc, j, "skippedCount", json_object_new_int64((int64_t)r->skipped_count));
        ps__json_set(&jrc, j, "skipped", sk);
        if (cli_print_built(j, jrc) != 0) {
            ps_import_report_free(r);
            return EXIT_USAGE;
        }
    } else {
        char a[48], b[48], p[48];
        printf("imported %s (%s)", term_count(a, r->chats_imported, "chat"),
               term_count(b, r->messages_imported, "message"));
        if (r->private_dropped)
            printf("; left out %s (never stored nor synced)",
                   term_count(p, r->private_dropped, "private message"));
        if (r->skipped_count) {
            printf("; skipped %zu:\n", r->skipped_count);
            for (size_t i = 0; i < r->reason_count; i++)
                printf("  %s\n", r->reasons[i]);
        } else {
            putchar('\n');
        }
    }
    ps_import_report_free(r);
    return 0;
}

static int write_file_atomically(const char *path, const char *data, size_t len)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = fd < 0 ? -1 : 0;
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = -1;
        else
            off += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -1;
    if (fd >= 0 && close(fd) != 0)
        rc = -1;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1;
    if (rc != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
    }
    free(tmp);
    return rc;
}

int run_export(ps_client *c, options *o)
{
    work_view w = {.command = "export"};
    term_init(&w.line, cli_on_terminal(o), PROGRESS_DELAY_MS / 2);
    ps_client_set_work_progress(c, on_work, &w);
    ps_error err;
    ps_error_clear(&err);
    char *json = NULL;
    size_t len = 0;
    int code = 0;
    ps_code rc = ps_client_export(c, &json, &len, &err);
    if (rc == PS_OK && w.line.shown)
        term_draw(&w.line, true, "export: writing %s…", o->output ? o->output : "stdout");
    if (rc != PS_OK) {
        term_clear(&w.line);
        code = cli_fail(c, rc, &err, LOCAL);
    } else if (o->output && strcmp(o->output, "-") != 0) {
        int wr = write_file_atomically(o->output, json, len);
        term_clear(&w.line);
        if (wr != 0)
            code = cli_error(EXIT_USAGE, "io", "cannot write %s: %s", o->output, strerror(errno));
    } else {
        term_clear(&w.line);
        if (fwrite(json, 1, len, stdout) != len || fflush(stdout) != 0)
            code = cli_error(EXIT_USAGE, "io", "cannot write the export: %s", strerror(errno));
    }
    ps_free(json);
    return code;
}
