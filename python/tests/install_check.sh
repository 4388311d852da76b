#!/usr/bin/env bash
# Installs the Python package as the README says, into a fresh virtual environment, offline
# (--no-build-isolation: only Debian's setuptools and wheel), from a clean copy of the
# repository, then imports it and verifies a token.
# usage: python/tests/install_check.sh SOURCE_DIR PYTHON
set -euo pipefail
src="$(cd "$1" && pwd)"
python="${2:-/usr/bin/python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir "$work/repo"
tar -C "$src" --exclude=./.git --exclude='./build*' --exclude=./python/build \
    --exclude='./python/*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$work/repo" -xf -

"$python" -m venv --system-site-packages "$work/venv"
cd "$work/repo"
PIP_NO_INDEX=1 "$work/venv/bin/pip" install -q --no-build-isolation ./python >"$work/pip.log" 2>&1 ||
  { cat "$work/pip.log"; exit 1; }

cd "$work"  # not the source tree: the installed package must be the one imported
"$work/venv/bin/python" - <<'PY'
import asyncio, os, sys, time, jwt, iam_client
assert iam_client.__file__.startswith(sys.prefix), iam_client.__file__  # the venv's copy
from iam_client import AsyncIAMClient, IAMClientSync, UserContext
secret = "install-check-secret-0123456789abcdefgh"
token = jwt.encode({"sub": "2", "email": "e@x", "exp": int(time.time()) + 60, "type": "access",
                    "iss": "omnibioai-auth", "aud": "omnibioai-platform"}, secret, algorithm="HS256")
async def main():
    c = AsyncIAMClient("http://auth-service:8001")
    user = await c.get_user(token, secret)
    assert type(user) is UserContext and user.user_id == "2", user
    assert await c.get_user("garbage", secret) is None
    await c.aclose()
asyncio.run(main())
with IAMClientSync("http://auth-service:8001", secret=secret) as c:
    assert c.get_user(token).user_id == "2"
print("installed", iam_client.__version__, "over libiamclient", iam_client.LIBRARY_VERSION,
      "at", os.path.dirname(iam_client.__file__))
PY
