#!/usr/bin/env bash
# Installs the Debian 12 packages this project builds, tests and benchmarks with.
# Idempotent: installs only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

packages=(
  build-essential cmake pkg-config            # toolchain
  clang libclang-rt-14-dev                    # libFuzzer, sanitizers runtime for clang
  libssl-dev                                  # OpenSSL 3: JWS algorithms, HMAC, constant-time compare
  libcjson-dev                                # cJSON: header and claim parsing
  libhiredis-dev                              # Redis tier (async API)
  libuv1-dev                                  # the I/O thread's event loop
  libcurl4-openssl-dev                        # auth-service tier (multi API)
  libcmocka-dev                               # C unit tests
  redis-server                                # real Redis for integration tests
  python3 python3-dev python3-pytest python3-pytest-asyncio
  python3-jwt python3-cryptography python3-redis  # the independent test auth service, Python bench peer
  python3-venv python3-pip python3-setuptools python3-wheel  # `pip install ./python` into a venv, offline
  python3-dbg                                 # the Python package's reference-leak test (debug CPython)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
