"""Per-call secrets: one secret's cache entries never answer for another's."""
import asyncio

import pytest

import iam_client
from iam_client import AsyncIAMClient, AuthenticationError, IAMClientSync, IAMError

from conftest import SECRET_A, SECRET_B, mint

SECRET_C = "secret-C-for-the-python-tests-0000000000000000"


async def test_token_of_b_is_not_answered_from_entries_made_under_a(client):
    token_b = mint(sub="b", secret=SECRET_B)
    token_a = mint(sub="a", secret=SECRET_A)
    # cache answers under A: token_a accepted, token_b refused (and the refusal remembered)
    assert (await client.get_user(token_a, SECRET_A)).user_id == "a"
    assert await client.get_user(token_b, SECRET_A) is None
    # under B the same tokens get B's answers, not A's cached ones
    assert (await client.get_user(token_b, SECRET_B)).user_id == "b"
    assert await client.get_user(token_a, SECRET_B) is None
    # and back: A's entries were not touched by B's
    assert (await client.get_user(token_a, SECRET_A)).user_id == "a"
    assert await client.get_user(token_b, SECRET_A) is None
    with pytest.raises(AuthenticationError) as e:
        await client.authenticate(token_b, SECRET_A)
    assert e.value.reason == "bad_signature"
    # both orders of first sight
    token_b2 = mint(sub="b2", secret=SECRET_B)
    assert (await client.get_user(token_b2, SECRET_B)).user_id == "b2"
    assert await client.get_user(token_b2, SECRET_A) is None
    assert await client.get_user(token_b2) is None  # the client's own key is A
    assert client.get_cached_user(token_b2) is None
    assert client.get_cached_user(token_b2, SECRET_B).user_id == "b2"


def test_the_same_in_the_sync_client(sync_client):
    token_b = mint(sub="b", secret=SECRET_B)
    assert sync_client.get_user(token_b, SECRET_B).user_id == "b"
    assert sync_client.get_user(token_b, SECRET_A) is None
    assert sync_client.get_user(token_b) is None
    assert sync_client.set_cache(token_b, {"user_id": "b"}) is False  # A's view: not valid


async def test_a_client_without_secret_adopts_the_first_per_call_secret():
    c = AsyncIAMClient("http://auth-service:8001")  # no secret anywhere: created lazily
    try:
        with pytest.raises(IAMError, match="no verification key"):
            await c.get_user(mint())
        assert (await c.get_user(mint(sub="1"), SECRET_A)).user_id == "1"
        assert (await c.get_user(mint(sub="2"))).user_id == "2"  # A is now the client's key
        assert c.stats()["per_secret_clients"] == []
        assert (await c.get_user(mint(sub="3", secret=SECRET_B), SECRET_B)).user_id == "3"
        assert len(c.stats()["per_secret_clients"]) == 1
        assert await c.get_user(mint(secret=SECRET_B)) is None
    finally:
        c.close()


def test_a_keyless_client_still_checks_its_other_settings_at_construction(monkeypatch):
    with pytest.raises(IAMError, match="auth_url"):
        AsyncIAMClient("ftp://auth-service")
    with pytest.raises(IAMError, match="auth_url"):
        IAMClientSync(None, mode="central")   # central mode needs the auth service
    monkeypatch.setenv("IAM_CACHE_TTL_S", "0")
    with pytest.raises(IAMError, match="IAM_CACHE_TTL_S"):
        AsyncIAMClient("http://auth-service:8001")


async def test_a_refused_first_secret_is_not_adopted():
    c = AsyncIAMClient("http://auth-service:8001")
    try:
        with pytest.raises(IAMError):
            await c.get_user(mint(), "too-short")
        assert (await c.get_user(mint(sub="7"), SECRET_A)).user_id == "7"
        assert (await c.get_user(mint(sub="8"))).user_id == "8"  # A became the key
        with pytest.raises(IAMError, match="UTF-8") as e:
            await c.get_user(mint(), b"\xff" * 40)
        assert e.value.__context__ is None
    finally:
        c.close()


async def test_the_secret_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("IAM_JWT_SECRET", SECRET_B)
    c = AsyncIAMClient("http://auth-service:8001")
    try:
        assert (await c.get_user(mint(secret=SECRET_B))).user_id == "2"
        assert (await c.get_user(mint(secret=SECRET_B), SECRET_B)).user_id == "2"
        assert c.stats()["per_secret_clients"] == []  # same secret: the main client
    finally:
        c.close()


async def test_per_call_secret_clients_are_bounded():
    c = AsyncIAMClient("http://auth-service:8001", secret=SECRET_A, max_secret_clients=2)
    try:
        for i in range(2):
            s = f"per-call-secret-number-{i}-padding-to-32-bytes!!"
            assert (await c.get_user(mint(secret=s), s)) is not None
        third = "per-call-secret-number-2-padding-to-32-bytes!!"
        with pytest.raises(IAMError, match="more than 2 distinct per-call secrets") as e:
            await c.get_user(mint(secret=third), third)
        assert third not in str(e.value)
        assert (await c.get_user(mint())) is not None  # the main key still works
    finally:
        c.close()


def test_default_bound_is_eight():
    assert iam_client.client.MAX_SECRET_CLIENTS == 8


async def test_secrets_never_appear_in_errors(client):
    short = "short-secret"
    with pytest.raises(IAMError) as e:
        await client.get_user(mint(), short)
    assert short not in str(e.value) and "32" in str(e.value)
    with pytest.raises(IAMError) as e:
        AsyncIAMClient("http://auth", secret=short)
    assert short not in str(e.value)
    with pytest.raises(IAMError) as e:
        client.decode_local(mint(), short)
    assert short not in str(e.value)


async def test_identity_fast_path_follows_the_secret_object(client):
    # equal secrets in different str objects land on the same C client
    s1 = "".join([SECRET_C[:10], SECRET_C[10:]])
    s2 = "".join([SECRET_C[:20], SECRET_C[20:]])
    assert s1 == s2 and s1 is not s2
    t = mint(secret=SECRET_C)
    assert (await client.get_user(t, s1)) is not None
    assert (await client.get_user(t, s2)) is not None
    assert len(client.stats()["per_secret_clients"]) == 1
    assert client.stats()["per_secret_clients"][0]["l1"]["hits"] == 1
    # bytes secrets are the same secret
    assert (await client.get_user(t, SECRET_C.encode())) is not None
    assert len(client.stats()["per_secret_clients"]) == 1


def test_sync_clients_share_nothing_between_threads_and_secrets():
    c = IAMClientSync("http://auth-service:8001")
    try:
        tokens = {s: mint(secret=s) for s in (SECRET_A, SECRET_B, SECRET_C)}

        def work(secret):
            for s, t in tokens.items():
                u = c.get_user(t, secret)
                assert (u is not None) == (s == secret)

        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(6) as ex:
            list(ex.map(work, [SECRET_A, SECRET_B, SECRET_C] * 20))
    finally:
        c.close()


def test_closed_client_refuses_clearly(sync_client):
    sync_client.close()
    with pytest.raises(IAMError, match="closed"):
        sync_client.get_user(mint())
    sync_client.close()  # idempotent
    assert asyncio  # (imported for the async tests)
