"""Reference leaks, counted by a debug interpreter (python3-dbg: sys.gettotalrefcount).

Each workload runs a few times to warm caches, then several more times; the total number
of references must not grow run after run (the method of CPython's own `regrtest -R`).
Skipped on a release interpreter; CTest runs this suite under python3-dbg too."""
import asyncio
import gc
import sys

import pytest

from iam_client import (AsyncIAMClient, AuthenticationError, IAMClientSync, IAMError,
                        UserContext)

from conftest import SECRET_A, SECRET_B, mint

pytestmark = pytest.mark.skipif(not hasattr(sys, "gettotalrefcount"),
                                reason="needs a debug interpreter (python3-dbg)")

TOKENS = [mint(sub=str(i)) for i in range(20)]
BAD = [mint(secret=SECRET_B), mint(ttl=-10), "garbage", "x\udc80y"]


def growth(workload, warmups=3, runs=6):
    for _ in range(warmups):
        workload()
    deltas = []
    for _ in range(runs):
        gc.collect()
        before = sys.gettotalrefcount()
        workload()
        gc.collect()
        deltas.append(sys.gettotalrefcount() - before)
    return deltas


def leaks(deltas):
    # A leak grows every run (interpreter caches settle within the warm-up). The measuring
    # itself costs a few references per run (the list of deltas): subtract that.
    overhead = max(growth(lambda: None))
    return all(d > overhead for d in deltas[1:])


def test_sync_surface_does_not_leak():
    c = IAMClientSync("http://auth-service:8001", secret=SECRET_A)

    def work():
        for t in TOKENS:
            u = c.get_user(t)
            u.dict(), u.claims, u.claim("roles"), repr(u), u.roles, u.has_role("user")
            u.has_any_role(["a", "user"]), u.in_org(7), u == u
            c.get_user(t, SECRET_B)
            c.get_cached_user(t)
            c.set_cache(t, {"user_id": u.user_id})
            c.decode_local(t, SECRET_A)
        for t in BAD:
            c.get_user(t)
            with pytest.raises(AuthenticationError):
                c.authenticate(t)
        with pytest.raises(ValueError):
            c.set_cache(TOKENS[0], {"user_id": "other"})
        with pytest.raises(IAMError):
            c.get_user(TOKENS[0], "short")
        c.evict_cache(TOKENS[0]), c.invalidate_user("1"), c.revoke_jti("nope")
        c.stats(), c.metrics()
        UserContext(user_id=3, roles=["a"], email="e").dict()

    deltas = growth(work)
    c.close()
    assert not leaks(deltas), deltas


def test_async_surface_does_not_leak():
    c = AsyncIAMClient("http://auth-service:8001", secret=SECRET_A)
    native = c._pick(None)
    loop = asyncio.new_event_loop()

    async def body():
        await asyncio.gather(*[c.get_user(t) for t in TOKENS * 3])
        await asyncio.gather(*[c.get_user(t) for t in BAD])
        for t in BAD[:2]:
            with pytest.raises(AuthenticationError):
                await c.authenticate(t)
        # completions from another thread, one of them cancelled
        futs = [native.begin(t, None, None, 5) for t in TOKENS[:5]]
        futs = [f for f in futs if isinstance(f, asyncio.Future)]  # (a late caller: the answer)
        if futs:
            futs[0].cancel()
        await asyncio.gather(*futs, return_exceptions=True)
        while native.inflight:
            await asyncio.sleep(0.005)
        assert await c.validate_remote(None) is None

    def work():
        loop.run_until_complete(body())

    deltas = growth(work)
    loop.close()
    c.close()
    assert not leaks(deltas), deltas
