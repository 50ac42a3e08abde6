"""
JWTs and keys for the security suites (Python stdlib plus the `openssl`
command, run at test time in a temporary folder).

HS256 is signed here with hmac; RS256 and ES256 with `openssl dgst -sign`
(an ES256 signature is converted from DER to the raw r||s JWS form).
Nothing is cached across processes: every KeyDir makes fresh keys.
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

OPENSSL = shutil.which("openssl")
OPENSSL_TIMEOUT = 60.0


def b64url(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    text += "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text.encode("ascii"))


def segment(obj):
    """A JWT segment: a dict as compact JSON, or bytes/str verbatim."""
    if isinstance(obj, (dict, list)):
        return b64url(json.dumps(obj, separators=(",", ":")))
    return b64url(obj)


def claims(sub="alice", ttl=3600, **extra):
    """Standard claims: sub, iat, exp = now + ttl (None: no exp); extra keys override."""
    now = int(time.time())
    c = {"iat": now}
    if sub is not None:
        c["sub"] = sub
    if ttl is not None:
        c["exp"] = now + ttl
    for k, v in extra.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def hs_token(secret, payload, alg="HS256", header=None):
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    h = {"alg": alg, "typ": "JWT"} if header is None else header
    signing_input = (segment(h) + "." + segment(payload)).encode("ascii")
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(secret, signing_input, digest).digest()
    return signing_input.decode("ascii") + "." + b64url(sig)


def unsigned_token(payload, alg="none"):
    """`alg: none` (or any spelling of it) with an empty signature."""
    return segment({"alg": alg, "typ": "JWT"}) + "." + segment(payload) + "."


def decode_unverified(token):
    h, p, _ = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p))


def _run(args, **kw):
    r = subprocess.run([OPENSSL] + args, capture_output=True, timeout=OPENSSL_TIMEOUT, **kw)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr.decode(errors="replace")))
    return r.stdout


def _der_len(buf, i):
    n = buf[i]
    i += 1
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[i:i + k], "big")
        i += k
    return n, i


def ecdsa_der_to_raw(der, size=32):
    """DER SEQUENCE{INTEGER r, INTEGER s} -> r||s, each `size` bytes (JWS form)."""
    assert der[0] == 0x30
    _, i = _der_len(der, 1)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n, i = _der_len(der, i + 1)
        v = int.from_bytes(der[i:i + n], "big")
        i += n
        out += v.to_bytes(size, "big")
    return out


class KeyDir:
    """A temporary folder of keys and certificates; close() removes it."""

    def __init__(self):
        if not OPENSSL:
            raise unittest.SkipTest("the openssl command is not installed")
        self.dir = tempfile.mkdtemp(prefix="polysync-keys-")
        self._n = 0

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, data):
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        return p

    # -- asymmetric keys --

    def rsa(self, name="rsa", bits=2048):
        """(private PEM path, public PEM path)."""
        priv, pub = self.path(name + ".key"), self.path(name + ".pub")
        _run(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % bits, "-out", priv])
        _run(["pkey", "-in", priv, "-pubout", "-out", pub])
        return priv, pub

    def ec(self, name="ec", curve="P-256"):
        priv, pub = self.path(name + ".key"), self.path(name + ".pub")
        _run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:" + curve, "-out", priv])
        _run(["pkey", "-in", priv, "-pubout", "-out", pub])
        return priv, pub

    def sign(self, priv, signing_input, alg):
        self._n += 1
        data = self.write("in.%d" % self._n, signing_input)
        if alg == "RS256":
            return _run(["dgst", "-sha256", "-sign", priv, data])
        if alg == "ES256":
            return ecdsa_der_to_raw(_run(["dgst", "-sha256", "-sign", priv, data]), 32)
        raise ValueError(alg)

    def token(self, priv, payload, alg, header=None):
        h = {"alg": alg, "typ": "JWT"} if header is None else header
        signing_input = segment(h) + "." + segment(payload)
        sig = self.sign(priv, signing_input.encode("ascii"), alg)
        return signing_input + "." + b64url(sig)

    # -- TLS --

    def tls(self):
        """A test CA and a server certificate for 127.0.0.1 and localhost.

        Returns (ca cert path, server cert path, server key path).
        """
        ca_key, ca_crt = self.path("ca.key"), self.path("ca.crt")
        _run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_crt,
              "-days", "2", "-subj", "/CN=polysync test CA",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        key, csr, crt = self.path("server.key"), self.path("server.csr"), self.path("server.crt")
        _run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
              "-subj", "/CN=localhost"])
        ext = self.write("server.ext",
                         "basicConstraints=CA:FALSE\n"
                         "keyUsage=critical,digitalSignature,keyEncipherment\n"
                         "extendedKeyUsage=serverAuth\n"
                         "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _run(["x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
              "-out", crt, "-days", "2", "-extfile", ext])
        return ca_crt, crt, key
