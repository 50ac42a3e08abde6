#!/bin/sh
# `make install` into a temporary prefix, then a program built against the
# installed headers with pkg-config, linked once to the shared and once to
# the static library, must run. Usage: install_test.sh BUILD_DIR SOURCE_DIR
# ($PS_CONSUMER_CFLAGS: extra flags, e.g. the sanitizers of the build).
set -eu
build=$1
src=$2
cc=${CC:-cc}
extra=${PS_CONSUMER_CFLAGS:-}
tmp=$(mktemp -d /tmp/polysync-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM

prefix="$tmp/prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
for f in bin/polysync bin/polysyncd include/polysync/polysync.h include/polysync/client.h \
         include/polysync/error.h; do
    test -e "$prefix/$f" || { echo "install_test: $f not installed" >&2; exit 1; }
done
pc=$(find "$prefix" -name polysync.pc)
test -n "$pc" || { echo "install_test: polysync.pc not installed" >&2; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
for f in libpolysync.so libpolysync.a; do
    test -e "$libdir/$f" || { echo "install_test: $f not in $libdir" >&2; exit 1; }
done
export PKG_CONFIG_PATH="$(dirname "$pc")"
test "$(pkg-config --variable=prefix polysync)" = "$prefix" ||
    { echo "install_test: polysync.pc names the wrong prefix" >&2; exit 1; }

# shared
$cc $extra -o "$tmp/consumer" "$src/tests/client/consumer.c" \
    $(pkg-config --cflags --libs polysync)
LD_LIBRARY_PATH="$libdir" "$tmp/consumer" "$tmp/shared.db"
LD_LIBRARY_PATH="$libdir" ldd "$tmp/consumer" | grep -q "libpolysync.so.0 => $libdir" ||
    { echo "install_test: the consumer does not use the installed libpolysync.so" >&2; exit 1; }

# static: libpolysync.a, its dependencies shared
$cc $extra -o "$tmp/consumer-static" "$src/tests/client/consumer.c" \
    $(pkg-config --cflags polysync) "$libdir/libpolysync.a" \
    $(pkg-config --libs json-c libcurl sqlite3 zlib libdeflate libzstd) -lpthread
"$tmp/consumer-static" "$tmp/static.db"
if ldd "$tmp/consumer-static" | grep -q libpolysync; then
    echo "install_test: the static consumer loads libpolysync.so" >&2
    exit 1
fi

"$prefix/bin/polysync" --version
echo "install_test: ok"
