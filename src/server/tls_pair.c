/* The TLS certificate/key pair check; see tls_pair.h. */
#include "server/tls_pair.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>

ps_code ps_tls_check_pair(const char *cert_pem, const char *key_pem, const char *cert_path,
                          const char *key_path, ps_error *err)
{
    ps_code rc = PS_OK;
    BIO *cb = BIO_new_mem_buf(cert_pem, (int)strlen(cert_pem));
    BIO *kb = BIO_new_mem_buf(key_pem, (int)strlen(key_pem));
    X509 *cert = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    if (!cb || !kb)
        rc = ps_error_set(err, PS_ERR_NOMEM, -1, "", "out of memory");
    else if (!cert)
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "", "%s holds no PEM certificate", cert_path);
    else if (!key)
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "",
                          "%s holds no PEM private key (or one protected by a passphrase)",
                          key_path);
    else if (X509_check_private_key(cert, key) != 1)
        rc = ps_error_set(err, PS_ERR_CONFIG, -1, "",
                          "the private key in %s does not belong to the certificate in %s",
                          key_path, cert_path);
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    ERR_clear_error(); /* what failed is in err; leave no stale queue behind */
    return rc;
}
