"""The old SDK's public surface, name for name, and its contract (None means unauthorized)."""
import inspect

import pytest

import iam_client
from iam_client import (AsyncIAMClient, AuthenticationError, AuthorizationError, IAMClient,
                        IAMClientSync, IAMError, TokenPayload, UserContext)
from iam_client.client import AsyncIAMClient as ClientFromModule
from iam_client.exceptions import IAMError as IAMErrorFromModule
from iam_client.models import TokenPayload as TokenPayloadFromModule
from iam_client.models import UserContext as UserContextFromModule
from iam_client.permissions import has_any_role, has_permission, has_role, require_role

from conftest import SECRET_A, SECRET_B, claims, mint


def test_names_and_modules_are_the_old_ones():
    assert IAMClient is AsyncIAMClient is ClientFromModule
    assert UserContext is UserContextFromModule and TokenPayload is TokenPayloadFromModule
    assert IAMError is IAMErrorFromModule
    for name in ("AsyncIAMClient", "IAMClient", "UserContext", "TokenPayload", "IAMError",
                 "AuthenticationError", "AuthorizationError"):
        assert hasattr(iam_client, name)


def test_constructor_takes_the_old_arguments():
    c = AsyncIAMClient(base_url="http://test-iam", redis_url="redis://localhost", secret=SECRET_A)
    c.close()
    c = AsyncIAMClient("http://auth-service:8001", "redis://localhost:6379", secret=SECRET_A)
    c.close()


def test_coroutines_and_plain_methods_as_before(client):
    for name in ("get_user", "validate_remote"):
        assert inspect.iscoroutinefunction(getattr(client, name)), name
    for name in ("decode_local", "get_cached_user", "set_cache", "evict_cache"):
        assert not inspect.iscoroutinefunction(getattr(client, name)), name


async def test_get_user_returns_a_user_context(client):
    token = mint(sub="42", org_id=7, team_id=3, team_role="admin")
    user = await client.get_user(token, SECRET_A)
    assert type(user) is UserContext
    assert user.user_id == "42" and isinstance(user.user_id, str)
    assert user.email == "user42@example.org"
    assert user.roles == ["user", "scientist"] and type(user.roles) is list
    assert user.permissions == ["dataset.read", "workflow.execute"]
    assert user.valid is True
    assert user.org_id == "7" and user.team_id == "3"  # identifiers are strings
    assert user.team_role == "admin" and user.org_role == ["member"]
    assert user.auth_method == "password" and user.schema_version == 2
    # keyword form of the old call, and the client's own secret without repeating it
    assert (await client.get_user(token=token, secret=SECRET_A)).user_id == "42"
    assert (await client.get_user(token)).user_id == "42"


async def test_get_user_returns_none_when_unauthorized(client):
    assert await client.get_user("not-a-valid-jwt", SECRET_A) is None
    assert await client.get_user(mint(ttl=-100), SECRET_A) is None          # expired
    assert await client.get_user(mint(secret=SECRET_B), SECRET_A) is None   # wrong key
    assert await client.get_user("", SECRET_A) is None
    assert await client.get_user(None, SECRET_A) is None                    # no header at all
    assert await client.get_user("x" * 10000, SECRET_A) is None             # over the limit


async def test_a_user_without_email_is_a_context_not_an_exception(client):
    # The old SDK raised a pydantic ValidationError here; an email is optional in the contract.
    user = await client.get_user(mint(drop=("email",)), SECRET_A)
    assert user is not None and user.email is None


def test_decode_local_returns_the_claims(client):
    token = mint(sub="user1")
    result = client.decode_local(token, SECRET_A)
    assert result["sub"] == "user1" and result["aud"] == "omnibioai-platform"
    assert client.decode_local(token)["sub"] == "user1"  # the client's own key


def test_decode_local_raises_on_an_invalid_token(client):
    with pytest.raises(Exception):
        client.decode_local(mint(), SECRET_B)  # wrong secret
    with pytest.raises(AuthenticationError) as e:
        client.decode_local(mint(ttl=-100), SECRET_A)
    assert e.value.reason == "expired"
    with pytest.raises(AuthenticationError) as e:
        client.decode_local(mint(secret=SECRET_B), SECRET_A)
    assert e.value.reason == "bad_signature"


def test_get_cached_user_hit_and_miss(sync_client):
    token = mint(sub="user1")
    assert sync_client.get_cached_user(token) is None  # never verifies
    assert sync_client.get_user(token) is not None
    cached = sync_client.get_cached_user(token)
    assert cached is not None and cached.user_id == "user1" and cached.roles == ["user", "scientist"]
    assert sync_client.get_cached_user("test-token") is None


def test_set_cache_stores_only_a_verified_identity(sync_client):
    token = mint(sub="u1")
    assert sync_client.set_cache(token, {"user_id": "u1", "email": "u@t.com", "roles": [],
                                         "permissions": [], "valid": True}) is True
    assert sync_client.get_cached_user(token).user_id == "u1"
    assert sync_client.set_cache(mint(sub="u2"), {"user_id": "u2"}, ttl=600) is True
    # an identity the token does not carry is refused, whatever the dict says
    with pytest.raises(ValueError):
        sync_client.set_cache(mint(sub="u3"), {"user_id": "admin"})
    # an invalid token is never cached as valid
    forged = mint(sub="u4", secret=SECRET_B)
    assert sync_client.set_cache(forged, {"user_id": "u4"}) is False
    assert sync_client.get_cached_user(forged) is None
    with pytest.raises(ValueError):
        sync_client.set_cache(token, {"user_id": "u1"}, ttl=0)


def test_evict_cache(sync_client):
    token = mint()
    sync_client.get_user(token)
    assert sync_client.evict_cache(token) == 1
    assert sync_client.get_cached_user(token) is None
    assert not sync_client.evict_cache("test-token")  # must not raise
    sync_client.evict_cache(None)


def _auth_service():
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "tests", "authsvc"))
    from authsvc import AuthService
    return AuthService()


async def test_validate_remote_asks_the_auth_service(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with _auth_service() as svc:
        c = AsyncIAMClient(svc.url, secret=SECRET_A)
        try:
            token = svc.mint(user_id=3)
            user = await c.validate_remote(token)
            assert user is not None and user.user_id == "3" and user.org_id == "1"
            assert svc.stats()["validate"] == 1
            assert await c.validate_remote(svc.mint(type="refresh")) is None   # not access
            assert await c.validate_remote(mint()) is None   # signed with another secret: denied
            assert await c.validate_remote("not-a-token") is None
            assert await c.validate_remote(None) is None
        finally:
            c.close()
        with IAMClientSync(svc.url, secret=SECRET_A) as sc:
            assert sc.validate_remote(svc.mint(user_id=1)).user_id == "1"
        # the old SDK's shape: no secret at construction (it came with each get_user), Redis
        # configured (here by IAM_REDIS_URL): the service alone decides, no IAMError
        c = AsyncIAMClient(svc.url)
        try:
            assert (await c.validate_remote(svc.mint(user_id=4))).user_id == "4"
            assert await c.validate_remote(mint()) is None
        finally:
            c.close()
    c = AsyncIAMClient(None, secret=SECRET_A)
    try:
        with pytest.raises(IAMError, match="auth service"):
            await c.validate_remote(mint())
    finally:
        c.close()


def test_user_context_keyword_construction():
    uc = UserContext(user_id="u1", email="u1@test.com", roles=["admin"], permissions=["read"],
                     valid=True)
    assert uc.user_id == "u1" and uc.email == "u1@test.com" and uc.valid is True
    assert uc.roles == ["admin"] and uc.permissions == ["read"]
    assert UserContext(user_id="u2", email="e", roles=[], permissions=[], valid=False).valid is False
    data = UserContext(user_id="u4", email="u4@test.com", roles=["researcher"],
                       permissions=["submit"], valid=True).dict()
    assert data["user_id"] == "u4" and data["roles"] == ["researcher"]
    assert UserContext(user_id=5, org_id=7).org_id == "7"  # identifiers become strings
    with pytest.raises(TypeError):
        UserContext(user_id="u1", bogus=1)
    with pytest.raises(TypeError):
        UserContext(roles="admin")  # a string is not a list of roles
    assert UserContext(**data) == UserContext(**data)


async def test_user_context_is_immutable_and_exports(client):
    user = await client.get_user(mint(sub="9"))
    with pytest.raises(AttributeError):
        user.user_id = "0"
    user.roles.append("admin")  # a copy: the context itself does not change
    assert "admin" not in user.roles and not user.has_role("admin")
    d = user.dict()
    assert d == user.model_dump()
    for key in ("user_id", "email", "roles", "permissions", "valid", "org_id", "org_role",
                "team_id", "team_role", "auth_method", "schema_version"):
        assert key in d
    assert UserContext(**d) == user
    assert user.claims["sub"] == "9" and user.claim("org_id") == 7 and user.claim("nope") is None
    assert "UserContext(user_id='9'" in repr(user)
    assert user.has_role("scientist") and user.has_permission("dataset.read")
    assert user.has_any_role(["x", "user"]) and not user.has_any_role([])
    assert user.in_org("7") and user.in_org(7) and not user.in_org("8")


def test_token_payload():
    tp = TokenPayload(sub="user1", email="u@t.com")
    assert (tp.sub, tp.email, tp.roles, tp.permissions, tp.exp) == ("user1", "u@t.com", [], [], None)
    tp = TokenPayload(sub="user1", email="u@t.com", roles=["admin", "researcher"],
                      permissions=["read", "write"], exp=9999999999)
    assert tp.roles == ["admin", "researcher"] and tp.exp == 9999999999
    with pytest.raises(Exception):
        TokenPayload()
    assert TokenPayload.from_claims(claims(sub="3")).sub == "3"


def test_permission_helpers_as_before():
    assert has_role(["admin", "researcher"], "admin") is True
    assert has_role(["researcher"], "admin") is False
    assert has_role([], "admin") is False
    assert has_any_role(["admin", "researcher"], ["admin", "superuser"]) is True
    assert has_any_role(["researcher"], ["admin", "researcher"]) is True
    assert has_any_role(["viewer"], ["admin", "researcher"]) is False
    assert has_any_role([], ["admin"]) is False and has_any_role(["admin"], []) is False
    assert has_permission(["read", "write"], "read") is True
    assert has_permission(["read"], "delete") is False and has_permission([], "read") is False
    require_role(["admin", "researcher"], "admin")
    with pytest.raises(PermissionError) as e:
        require_role(["researcher"], "admin")
    assert "Missing role: admin" in str(e.value) and str(e.value) == "Missing role: admin"
    assert isinstance(e.value, AuthorizationError)
    with pytest.raises(PermissionError):
        require_role([], "admin")


def test_permission_helpers_take_a_user_context():
    u = UserContext(user_id="1", roles=["admin"], permissions=["read"], valid=True)
    assert has_role(u, "admin") and has_permission(u, "read") and has_any_role(u, ["admin"])
    with pytest.raises(PermissionError, match="Missing role: owner"):
        require_role(u, "owner")


def test_exceptions_as_before():
    assert str(IAMError("base error")) == "base error"
    assert issubclass(AuthenticationError, IAMError) and issubclass(AuthorizationError, IAMError)
    with pytest.raises(IAMError):
        raise AuthenticationError("bad")
    with pytest.raises(IAMError):
        raise AuthorizationError("denied")
