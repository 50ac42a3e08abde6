#!/usr/bin/env bash
# Installs the Debian packages polysync needs to build and test, and only the
# missing ones: `make run` and `make check` call this on every run, so on a
# machine that has everything it must finish in well under a second.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libmicrohttpd-dev libjson-c-dev libsqlite3-dev sqlite3 zlib1g-dev
  libcurl4-openssl-dev libjwt-dev libssl-dev libpq-dev
  # the client: libdeflate gzips request bodies, zstd compresses the local
  # store's rows (src/client/http.c, lstore.c; docs/client.md)
  libdeflate-dev libzstd-dev
  libwslay-dev  # WebSocket framing for the live socket (src/server/ws_session.c)
  libxxhash-dev  # XXH3, the hash of a chat's bytes (src/core/hash.c, hash_avx2.c: header-only; test_hash also links the shared library as its oracle)
  libsimdjson-dev  # a re-sent chat's content hash (src/server/content_hash.cpp)
  libzstd-dev  # stored message values compressed (src/store/value_codec.c)
  liblz4-dev  # stored legacy renderings compressed (src/store/doc_codec.c)
  libgoogle-perftools-dev  # tcmalloc, polysyncd's malloc (CMakeLists.txt; docs/performance.md "alloc")
  libcmocka-dev python3 openssl
  curl  # a real HTTP client in the 413 tests (tests/integration/test_bad_input.py)
  zstd  # the tool the integration tests decode zstd answers with (tests/integration/harness.py)
  # ops (docs/operations.md): GnuTLS for the TLS certificate reload, the
  # Prometheus parser test_ops checks /metrics with, and the packaging tools
  # test_package runs (dpkg-shlibdeps, systemd-analyze)
  libgnutls28-dev python3-prometheus-client dpkg-dev systemd
  # clang only recommends its sanitizer runtimes; libFuzzer needs them
  clang libclang-rt-14-dev
  # the web client's browser tests (tests/browser, driven by puppeteer-core)
  chromium
)
# Node runs the web client's tests (and tsc, the OpenAPI linter, the
# benchmark's baseline). Debian's nodejs/npm conflict with a node installed
# otherwise (nodesource, nvm): only ask for them when there is no node.
node_packages=()
command -v node >/dev/null && command -v npm >/dev/null || node_packages=(nodejs npm)
packages+=("${node_packages[@]}")
# Extra groups a caller can ask for: `install-deps.sh postgres`.
for group in "$@"; do
  case "$group" in
    # python3-psycopg2: the test harness reads PostgreSQL stores through it
    postgres) packages+=(postgresql python3-psycopg2) ;;
    nodejs) ;; # always in the list above when node is missing
    *) echo "install-deps: unknown group '$group'" >&2; exit 1 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
