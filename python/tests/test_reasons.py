"""Why a token is refused: authenticate() raises AuthenticationError with .reason."""
import base64
import json

import pytest

from iam_client import AuthenticationError, IAMError, UnavailableError

from conftest import SECRET_A, SECRET_B, mint


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


CASES = {
    "expired": lambda: mint(ttl=-120),
    "bad_signature": lambda: mint(secret=SECRET_B),
    "malformed": lambda: "not-a-valid-jwt",
    "wrong_audience": lambda: mint(aud="someone-else"),
    "wrong_issuer": lambda: mint(iss="evil-issuer"),
    "wrong_type": lambda: mint(type="refresh"),
    "missing_claim": lambda: mint(drop=("sub",)),
    "unsupported_alg": lambda: b64({"alg": "none", "typ": "JWT"}) + "." + b64({"sub": "1"}) + ".",
    "too_large": lambda: mint(padding="x" * 9000),
}


@pytest.mark.parametrize("reason", sorted(CASES))
async def test_reason_codes(client, reason):
    token = CASES[reason]()
    with pytest.raises(AuthenticationError) as e:
        await client.authenticate(token)
    assert e.value.reason == reason
    assert isinstance(e.value.status, int) and e.value.status < 0
    assert all(part not in str(e.value) for part in token.split(".") if len(part) > 8)
    assert await client.get_user(token) is None
    # a remembered refusal gives the same reason
    with pytest.raises(AuthenticationError) as e2:
        await client.authenticate(token)
    assert e2.value.reason == reason


@pytest.mark.parametrize("reason", ["expired", "bad_signature", "wrong_type"])
def test_reason_codes_sync(sync_client, reason):
    with pytest.raises(AuthenticationError) as e:
        sync_client.authenticate(CASES[reason]())
    assert e.value.reason == reason


async def test_revoked(client):
    token = mint(jti="jti-to-revoke")
    assert (await client.authenticate(token)).jti == "jti-to-revoke"
    assert client.revoke_jti("jti-to-revoke") == 1
    with pytest.raises(AuthenticationError) as e:
        await client.authenticate(token)
    assert e.value.reason == "revoked"
    assert await client.get_user(token) is None


async def test_wrong_tenant(client):
    token = mint(org_id=7)
    assert (await client.authenticate(token, required_org="7")).org_id == "7"
    with pytest.raises(AuthenticationError) as e:
        await client.authenticate(token, required_org="8")
    assert e.value.reason == "wrong_tenant"
    assert await client.get_user(token, required_org="8") is None
    assert (await client.get_user(token)).org_id == "7"  # contexts do not share answers


async def test_audience_override(client):
    token = mint(aud="lab-service")
    assert await client.get_user(token) is None
    assert (await client.get_user(token, audience="lab-service")).user_id == "2"


async def test_not_yet_valid(client):
    import time
    with pytest.raises(AuthenticationError) as e:
        await client.authenticate(mint(nbf=int(time.time()) + 600))
    assert e.value.reason == "not_yet_valid"


async def test_no_token(client):
    with pytest.raises(AuthenticationError):
        await client.authenticate(None)


async def test_token_type_errors_are_type_errors(client):
    with pytest.raises(TypeError):
        await client.get_user(12345)


async def test_non_utf8_token_is_malformed_not_an_exception_holding_it(client):
    token = "abc\udc80def"
    with pytest.raises(AuthenticationError) as e:
        await client.authenticate(token)
    assert e.value.reason == "malformed"
    assert e.value.__context__ is None and e.value.__cause__ is None


def test_error_classes():
    assert issubclass(UnavailableError, IAMError) and not issubclass(UnavailableError, AuthenticationError)
    assert UnavailableError("x").reason == "unavailable"
    assert SECRET_A  # (fixture module imported)
