"""Shared fixtures: tokens minted with PyJWT (an outside opinion, not the library grading
itself), a clean IAM_* environment, and a real redis-server on a free loopback port."""
import gc
import os
import shutil
import socket
import subprocess
import time
import uuid

import jwt
import pytest

import iam_client
from iam_client import _iam_client

SECRET_A = "secret-A-for-the-python-tests-0123456789abcdef"  # >= 32 bytes (RFC 7518)
SECRET_B = "secret-B-for-the-python-tests-fedcba9876543210"
AUDIENCE = "omnibioai-platform"
ISSUER = "omnibioai-auth"


def claims(sub="2", ttl=900, drop=(), **overrides):
    """The platform's access-token claim set (CONTRACT.md), expiring ttl seconds from now."""
    c = {
        "sub": sub,
        "email": f"user{sub}@example.org",
        "roles": ["user", "scientist"],
        "permissions": ["dataset.read", "workflow.execute"],
        "org_id": 7,
        "org_role": ["member"],
        "team_id": None,
        "team_role": None,
        "auth_method": "password",
        "idp_org_id": None,
        "token_version": 2,
        "mfa_verified": True,
        "exp": int(time.time()) + ttl,
        "type": "access",
        "jti": str(uuid.uuid4()),
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    c.update(overrides)
    for k in drop:
        c.pop(k, None)
    return c


def mint(secret=SECRET_A, algorithm="HS256", headers=None, **claim_overrides):
    return jwt.encode(claims(**claim_overrides), secret, algorithm=algorithm, headers=headers)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, redis_server):
    """No IAM_* variable from the outside, except IAM_REDIS_URL: every client in these
    tests reaches the session's real redis-server through it (the package defaults to
    redis://localhost:6379 like the old SDK, and the C client's Redis tier fails closed
    when it cannot check a token's revocation)."""
    for name in list(os.environ):
        if name.startswith("IAM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IAM_REDIS_URL", redis_server[0])
    # A generous Redis deadline: these tests are about the binding, on a machine that may be
    # loaded; the deadline itself is tested in C (tests/test_redis.c) and in test_redis.py.
    monkeypatch.setenv("IAM_REDIS_TIMEOUT_MS", "5000")


@pytest.fixture
def client():
    c = iam_client.AsyncIAMClient("http://auth-service:8001", secret=SECRET_A)
    yield c
    c.close()


@pytest.fixture
def sync_client():
    c = iam_client.IAMClientSync("http://auth-service:8001", secret=SECRET_A)
    yield c
    c.close()


@pytest.fixture
def no_leaks():
    """Fails the test if UserContext objects holding a C reference outlive it. Answers of an
    earlier test may still be on their way (completed from the client's I/O thread after
    that test's loop moved on), so the count is taken once it has been stable a moment."""
    def settled():
        last = None
        for _ in range(50):
            gc.collect()
            n = _iam_client._live_users()
            if n == last:
                return n
            last = n
            time.sleep(0.02)
        return last
    before = settled()
    yield
    assert settled() == before


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server():
    exe = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if not exe:
        pytest.skip("redis-server is not installed (scripts/install-deps.sh installs it)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import redis
    r = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.time() + 10
    while True:
        try:
            r.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.02)
    yield f"redis://127.0.0.1:{port}", r
    r.close()
    proc.terminate()
    proc.wait(timeout=10)
