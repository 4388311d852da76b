#!/usr/bin/env bash
# Builds iamctl and runs its demo: no servers, no configuration needed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; then
  ./scripts/install-deps.sh
fi
cmake -S . -B build/normal -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/normal -j "$(nproc)" --target iamctl >/dev/null
exec ./build/normal/iamctl demo "$@"
