/*
 * The server's TLS certificate and key, swappable while it serves: GnuTLS
 * asks for them at each handshake (MHD_OPTION_HTTPS_CERT_CALLBACK), so a
 * SIGHUP that loads new files changes what new connections get, and open
 * connections keep theirs. A set that fails to load (unreadable, not PEM,
 * key not matching the certificate) leaves the current one in place.
 * Replaced sets are kept until ps_tls_free(): a handshake may still be
 * using one, and reloads are rare.
 */
#ifndef PS_TLS_H
#define PS_TLS_H

#include "polysync/error.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

/* Loads the PEM certificate chain and key and makes them current. */
ps_code ps_tls_load(const char *cert_path, const char *key_path, ps_error *err);

/* For MHD_OPTION_HTTPS_CERT_CALLBACK: the current set. */
int ps_tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                    gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *pkey);

/* Frees every set loaded (the server has stopped). */
void ps_tls_free(void);

#endif
