"""Invalidation calls and statistics, through the C client's counters."""
import asyncio

from iam_client import AsyncIAMClient

from conftest import SECRET_A, SECRET_B, mint


async def test_invalidate_user_evicts_every_token_of_that_user(client):
    t1, t2, other = mint(sub="5"), mint(sub="5"), mint(sub="6")
    for t in (t1, t2, other):
        assert await client.get_user(t) is not None
    assert client.invalidate_user("5") == 2
    assert client.get_cached_user(t1) is None and client.get_cached_user(t2) is None
    assert client.get_cached_user(other) is not None
    assert client.invalidate_user(6) == 1  # an int id is the same id
    assert (await client.get_user(t1)).user_id == "5"  # still valid: verified again


async def test_invalidation_reaches_per_secret_clients(client):
    # Each per-secret C client is a node of its own on policy:invalidate: the invalidations
    # the others publish reach it a moment later (asynchronously) and evict again. Each step
    # lets those echoes land before re-resolving, as a node would see them.
    async def settle():
        await asyncio.sleep(0.3)
    tb = mint(sub="5", secret=SECRET_B)
    assert await client.get_user(tb, SECRET_B) is not None
    assert client.invalidate_user("5") == 1
    assert client.get_cached_user(tb, SECRET_B) is None
    await settle()
    assert await client.get_user(tb, SECRET_B) is not None
    assert client.evict_cache(tb) == 1
    await settle()
    assert await client.get_user(tb, SECRET_B) is not None
    client.revoke_jti(client.get_cached_user(tb, SECRET_B).jti)
    assert await client.get_user(tb, SECRET_B) is None


async def test_invalidate_all(client):
    for i in range(10):
        await client.get_user(mint(sub=str(i)))
    assert client.invalidate_all() == 10
    assert client.stats()["l1"]["entries"] == 0


async def test_stats_count_hits_misses_and_refusals(client):
    token = mint()
    for _ in range(5):
        assert await client.get_user(token) is not None
    await client.get_user(mint(ttl=-5))
    s = client.stats()
    assert s["l1"]["hits"] == 4 and s["l1"]["misses"] == 2
    assert s["local"]["verifications"] == 2 and s["local"]["accepted"] == 1
    assert s["rejected"]["expired"] == 1
    text = client.metrics()
    assert "iam_l1_hits_total 4\n" in text and "iam_rejected_total{reason=\"expired\"} 1" in text


async def test_stats_of_a_lazy_client_before_first_use():
    c = AsyncIAMClient("http://auth-service:8001")
    try:
        assert c.stats() == {"per_secret_clients": []}
        await c.get_user(mint(), SECRET_A)
        assert c.stats()["local"]["verifications"] == 1
    finally:
        c.close()


async def test_cache_ttl_option_and_cache_disabled():
    c = AsyncIAMClient("http://auth-service:8001", secret=SECRET_A, cache_disabled=True)
    try:
        token = mint()
        for _ in range(3):
            assert await c.get_user(token) is not None
        assert c.stats()["local"]["verifications"] == 3
        assert c.get_cached_user(token) is None
    finally:
        c.close()
