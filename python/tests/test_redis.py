"""With a real Redis configured, the package keeps no bearer token in Redis (the first
SDK's `iam:<token>` keys could be replayed by anyone reading Redis).

libiamclient's Redis tier (MAC'd shared cache records, blacklist:jti, pub/sub
invalidation) is being added to the C library; when it lands these tests grow to cover it
through the same calls."""
from iam_client import AsyncIAMClient, IAMClientSync

from conftest import SECRET_A, mint


async def test_no_token_is_ever_written_to_redis(redis_server):
    url, r = redis_server
    c = AsyncIAMClient("http://auth-service:8001", url, secret=SECRET_A)
    try:
        token = mint()
        assert (await c.get_user(token, SECRET_A)).user_id == "2"
        c.set_cache(token, {"user_id": "2"})
        c.get_cached_user(token)
        assert await c.get_user(mint(secret="x" * 40), SECRET_A) is None
        for key in r.scan_iter():
            assert token.encode() not in key
            assert token.encode() not in (r.dump(key) or b"")
        assert not any(k.startswith(b"iam:") for k in r.scan_iter())
    finally:
        c.close()


def test_the_sync_client_accepts_a_redis_url(redis_server):
    url, _ = redis_server
    with IAMClientSync("http://auth-service:8001", redis_url=url, secret=SECRET_A) as c:
        assert c.get_user(mint()).user_id == "2"


def test_a_malformed_redis_url_fails_at_creation():
    import pytest
    from iam_client import IAMError
    with pytest.raises(IAMError, match="redis_url"):
        AsyncIAMClient("http://auth", "http://not-redis", secret=SECRET_A)
    with pytest.raises(IAMError, match="auth_url"):
        AsyncIAMClient("ftp://auth", secret=SECRET_A)
