/*
 * A check of the TLS material before libmicrohttpd gets it: libmicrohttpd
 * only says it cannot start, which polysyncd used to report as "cannot
 * listen ... (in use, or not allowed)" for a key that does not belong to
 * the certificate. OpenSSL (already linked for JWT keys) tells why.
 */
#ifndef PS_SERVER_TLS_PAIR_H
#define PS_SERVER_TLS_PAIR_H

#include "polysync/error.h"

/* PS_OK when cert_pem holds a certificate and key_pem the private key that
 * belongs to it; else PS_ERR_CONFIG naming the files and the reason. */
ps_code ps_tls_check_pair(const char *cert_pem, const char *key_pem, const char *cert_path,
                          const char *key_path, ps_error *err);

#endif
