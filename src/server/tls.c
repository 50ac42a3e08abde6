/* Reloadable TLS credentials; see tls.h. */
#include "server/tls.h"
#include "core/dynbuf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAIN_MAX 16
#define PEM_MAX (1024 * 1024)

typedef struct creds {
    gnutls_pcert_st chain[CHAIN_MAX];
    unsigned n;
    gnutls_privkey_t key;
    struct creds *older; /* replaced sets, freed by ps_tls_free() */
} creds;

static _Atomic(creds *) g_current;
static pthread_mutex_t g_load_lock = PTHREAD_MUTEX_INITIALIZER;

static ps_code read_file(const char *path, ps_dynbuf *out, ps_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "cannot read %s", path);
    char chunk[4096];
    size_t n;
    ps_code rc = PS_OK;
    while (rc == PS_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = ps__dynbuf_add(out, chunk, n);
    fclose(f);
    if (rc != PS_OK || out->len == 0)
        return ps_error_set(err, PS_ERR_CONFIG, -1, "", "%s is empty or too large", path);
    return PS_OK;
}

static void creds_free(creds *c)
{
    for (unsigned i = 0; i < c->n; i++)
        gnutls_pcert_deinit(&c->chain[i]);
    if (c->key)
        gnutls_privkey_deinit(c->key);
    free(c);
}

/* Whether the key belongs to the certificate: GnuTLS's own check, done
 * by building (and dropping) a credentials set from the two. */
static int key_matches(const gnutls_datum_t *cert, const gnutls_datum_t *key)
{
    gnutls_certificate_credentials_t probe;
    if (gnutls_certificate_allocate_credentials(&probe) < 0)
        return GNUTLS_E_MEMORY_ERROR;
    int r = gnutls_certificate_set_x509_key_mem(probe, cert, key, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(probe);
    return r < 0 ? r : 0;
}

ps_code ps_tls_load(const char *cert_path, const char *key_path, ps_error *err)
{
    ps_dynbuf cert_pem, key_pem;
    ps__dynbuf_init(&cert_pem, PEM_MAX);
    ps__dynbuf_init(&key_pem, PEM_MAX);
    creds *c = NULL;
    ps_code rc = read_file(cert_path, &cert_pem, err);
    if (rc == PS_OK)
        rc = read_file(key_path, &key_pem, err);
    if (rc != PS_OK)
        goto done;
    gnutls_datum_t cert = {(unsigned char *)cert_pem.data, (unsigned)cert_pem.len};
    gnutls_datum_t key = {(unsigned char *)key_pem.data, (unsigned)key_pem.len};
    int r = key_matches(&cert, &key);
    if (r < 0) {
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "", "%s and %s: %s", cert_path, key_path,
                          gnutls_strerror(r));
        goto done;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
        goto done;
    }
    c->n = CHAIN_MAX;
    r = gnutls_pcert_list_import_x509_raw(c->chain, &c->n, &cert, GNUTLS_X509_FMT_PEM, 0);
    if (r < 0) {
        c->n = 0;
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "", "%s: %s", cert_path, gnutls_strerror(r));
        goto done;
    }
    if ((r = gnutls_privkey_init(&c->key)) < 0 ||
        (r = gnutls_privkey_import_x509_raw(c->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "", "%s: %s", key_path, gnutls_strerror(r));
        goto done;
    }
    pthread_mutex_lock(&g_load_lock);
    c->older = atomic_load(&g_current);
    atomic_store(&g_current, c);
    pthread_mutex_unlock(&g_load_lock);
    c = NULL;
done:
    if (c)
        creds_free(c);
    ps__dynbuf_free(&cert_pem);
    ps__dynbuf_free(&key_pem);
    return rc;
}

int ps_tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                    gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
    (void)session, (void)req_ca_dn, (void)nreqs, (void)pk_algos, (void)pk_algos_length;
    creds *c = atomic_load(&g_current);
    if (!c)
        return -1;
    *pcert = c->chain;
    *pcert_length = c->n;
    *pkey = c->key;
    return 0;
}

void ps_tls_free(void)
{
    pthread_mutex_lock(&g_load_lock);
    creds *c = atomic_exchange(&g_current, NULL);
    pthread_mutex_unlock(&g_load_lock);
    while (c) {
        creds *older = c->older;
        creds_free(c);
        c = older;
    }
}
