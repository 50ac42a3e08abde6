/* A program built against an installed libpolysync (pkg-config polysync):
 * the install test compiles it against the shared and the static library
 * and runs it. Only the public headers are used. */
#include <polysync/polysync.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: consumer STORE\n");
        return 2;
    }
    ps_error err;
    ps_error_clear(&err);
    ps_client *c = NULL;
    char *chat = NULL, *msg = NULL, *json = NULL;
    ps_chat_info *list = NULL;
    size_t n = 0, len = 0;
    int status = 1;
    if (ps_client_open(argv[1], &c, &err) != PS_OK ||
        ps_client_chat_create(c, "from the consumer", &chat, &err) != PS_OK ||
        ps_client_msg_add(c, chat, "user", "hello, library", &msg, &err) != PS_OK ||
        ps_client_chat_list(c, &list, &n, &err) != PS_OK ||
        ps_client_export(c, &json, &len, &err) != PS_OK) {
        fprintf(stderr, "consumer: %s (%s)\n", err.message, ps_strerror(err.code));
        goto done;
    }
    if (n != 1 || list[0].message_count != 1 || !strstr(json, "hello, library")) {
        fprintf(stderr, "consumer: unexpected store contents\n");
        goto done;
    }
    printf("ok libpolysync %s, device %s, chat %s\n", ps_client_version(), ps_client_device_id(c),
           chat);
    status = 0;
done:
    ps_chat_info_free(list, n);
    ps_free(chat);
    ps_free(msg);
    ps_free(json);
    ps_client_close(c);
    return status;
}
