#!/usr/bin/env bash
# Installs a build tree into a scratch prefix and builds two consumers against it, as a
# user would: one through pkg-config, one through CMake's find_package(iamclient).
# usage: tests/install/check.sh BUILD_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
pc="$(dirname "$(find "$work/prefix" -name iamclient.pc | head -n 1)")"
libdir="$(dirname "$(find "$work/prefix" -name 'libiamclient.so' | head -n 1)")"

# pkg-config, dynamic linking
cc -Wall -Wextra -Werror -o "$work/pc_consumer" "$here/consumer.c" \
  $(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs iamclient)
LD_LIBRARY_PATH="$libdir" "$work/pc_consumer" | grep -q "^malformed$"

# CMake package
cmake -S "$here" -B "$work/cm" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cm" >/dev/null
"$work/cm/consumer" | grep -q "^malformed$"

# the installed iamctl runs
"$work/prefix/bin/iamctl" version | grep -q "^iamctl "
echo "install check: pkg-config consumer, CMake consumer and installed iamctl all work"
