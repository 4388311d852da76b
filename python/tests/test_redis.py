"""The package over libiamclient's Redis tier, with a real redis-server: no bearer token
in Redis (the first SDK's `iam:<token>` keys could be replayed by anyone reading Redis),
MAC'd shared records with string identifiers, the platform's blacklist keys, invalidation
heard across clients, and the fail-closed outage policy."""
import asyncio
import json
import time

import pytest

from iam_client import AsyncIAMClient, AuthenticationError, IAMClientSync, UnavailableError

from conftest import SECRET_A, SECRET_B, mint

CACHE_SECRET = "python-tests-shared-cache-secret-0123456789"


async def test_no_token_is_ever_written_to_redis(redis_server):
    url, r = redis_server
    c = AsyncIAMClient("http://auth-service:8001", url, secret=SECRET_A)
    try:
        token = mint(sub="31")
        assert (await c.get_user(token, SECRET_A)).user_id == "31"
        c.set_cache(token, {"user_id": "31"})
        c.get_cached_user(token)
        assert await c.get_user(mint(secret="x" * 40), SECRET_A) is None
        await asyncio.sleep(0.2)  # the record is written by the I/O thread, nobody waits
        records = [k for k in r.scan_iter(match="iam:v1:cache:*")]
        assert records, "the verified answer was not shared"
        for key in r.scan_iter():
            assert token.encode() not in key and token.split(".")[2].encode() not in key
            if r.type(key) == b"string":
                value = r.get(key)
                assert token.encode() not in value and token.split(".")[2].encode() not in value
        for key in records:
            assert len(key) == len("iam:v1:cache:") + 64
            body = json.loads(r.get(key).split(b".", 2)[2])
            if body["claims"].get("sub") == "31":
                assert body["claims"]["org_id"] == "7"   # identifiers as strings
    finally:
        c.close()


async def test_a_record_is_read_by_another_node_with_the_cache_secret(redis_server):
    url, r = redis_server
    a = AsyncIAMClient("http://auth-service:8001", url, secret=SECRET_A, cache_secret=CACHE_SECRET)
    b = AsyncIAMClient("http://auth-service:8001", url, secret=SECRET_B, cache_secret=CACHE_SECRET)
    try:
        token = mint(sub="32")
        assert b.get_cached_user(token) is None
        assert (await a.get_user(token)).user_id == "32"
        for _ in range(100):
            user = b.get_cached_user(token)
            if user is not None:
                break
            await asyncio.sleep(0.02)
        assert user is not None and user.user_id == "32" and user.org_id == "7"
    finally:
        a.close()
        b.close()


async def test_a_blacklisted_jti_is_refused(redis_server):
    url, r = redis_server
    c = AsyncIAMClient("http://auth-service:8001", url, secret=SECRET_A)
    try:
        token = mint(sub="33", jti="py-revoked-1")
        r.set("blacklist:jti:py-revoked-1", "1", ex=60)
        assert await c.get_user(token) is None
        with pytest.raises(AuthenticationError) as e:
            await c.authenticate(token)
        assert e.value.reason == "revoked"
    finally:
        c.close()


async def test_invalidation_is_heard_by_another_client(redis_server):
    url, r = redis_server
    a = AsyncIAMClient("http://auth-service:8001", url, secret=SECRET_A)
    b = AsyncIAMClient("http://auth-service:8001", url, secret=SECRET_A)
    try:
        token = mint(sub="34")
        assert (await b.get_user(token)).user_id == "34"
        assert b.stats()["l1"]["entries"] >= 1
        await asyncio.sleep(0.3)  # both subscriptions confirmed
        a.invalidate_user("34")
        for _ in range(100):
            if b.get_cached_user(token) is None:
                break
            await asyncio.sleep(0.02)
        assert b.get_cached_user(token) is None   # evicted here, and its shared record deleted
    finally:
        a.close()
        b.close()


async def test_redis_unreachable_fails_closed_unless_told_otherwise():
    token = mint(sub="35")
    c = AsyncIAMClient("http://auth-service:8001", "redis://127.0.0.1:1", secret=SECRET_A, timeout=0.2)
    try:
        t0 = time.monotonic()
        assert await c.get_user(token) is None
        with pytest.raises(UnavailableError):
            await c.authenticate(token)
        assert time.monotonic() - t0 < 5
    finally:
        c.close()
    c = AsyncIAMClient("http://auth-service:8001", "redis://127.0.0.1:1", secret=SECRET_A,
                       revocation_fail_open=True)
    try:
        assert (await c.get_user(token)).user_id == "35"
    finally:
        c.close()


def test_the_sync_client_accepts_a_redis_url(redis_server):
    url, _ = redis_server
    with IAMClientSync("http://auth-service:8001", redis_url=url, secret=SECRET_A) as c:
        assert c.get_user(mint()).user_id == "2"


def _direct_after_first_sights(c, n=50):
    """Resolves n fresh tokens (each a first sight: verification + its EXISTS round trip)
    and returns the Redis stats."""
    for i in range(n):
        assert c.get_user(mint(sub=str(100 + i), jti=f"lane-{i}-{time.time_ns()}")) is not None
    return c.stats()["redis"]


def test_the_sync_client_makes_its_round_trips_on_the_direct_lane(redis_server):
    url, _ = redis_server
    with IAMClientSync("http://auth-service:8001", redis_url=url, secret=SECRET_A) as c:
        deadline = time.monotonic() + 10
        while not c.stats()["redis"]["connected"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _direct_after_first_sights(c)["direct"] > 0
    with IAMClientSync("http://auth-service:8001", redis_url=url, secret=SECRET_A,
                       redis_direct_max=-1) as c:
        redis = _direct_after_first_sights(c)
        assert redis["direct"] == 0 and redis["errors"] == 0


def test_an_empty_redis_url_turns_the_tier_off(redis_server):
    # IAM_REDIS_URL is set (conftest): "" overrides it
    with IAMClientSync("http://auth-service:8001", redis_url="", secret=SECRET_A) as c:
        assert c.get_user(mint()).user_id == "2"
        assert "redis" not in c.stats()


def test_redis_direct_max_is_checked():
    from iam_client import IAMError
    for bad in (65, -2):
        with pytest.raises(IAMError, match="redis_direct_max"):
            IAMClientSync("http://auth", secret=SECRET_A, redis_direct_max=bad)


def test_a_malformed_redis_url_fails_at_creation():
    import pytest
    from iam_client import IAMError
    with pytest.raises(IAMError, match="redis_url"):
        AsyncIAMClient("http://auth", "http://not-redis", secret=SECRET_A)
    with pytest.raises(IAMError, match="auth_url"):
        AsyncIAMClient("ftp://auth", secret=SECRET_A)
