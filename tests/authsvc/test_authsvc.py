"""
test_authsvc.py -- the test auth service (authsvc.py) against the platform's contract
(shared/CONTRACT.md), and its test-control API, so that the C client's tests can trust it.

Expectations here are written from the contract, not from the server's code: token
headers and claims are read from the raw base64url segments, kids are recomputed from
a hand-built DER SubjectPublicKeyInfo, HS256 tokens are also minted by hand, and Redis
effects are observed in a real redis-server.

    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/authsvc
"""
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import jwt  # PyJWT (Debian python3-jwt)
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from authsvc import SCRIPT, AuthService, AuthServiceError  # noqa: E402
from redis_server import RedisServer  # noqa: E402

SECRET = "authsvc-selftest-secret-0123456789abcdefXYZ"
VALIDATE = "/auth/validate"
JWKS = "/.well-known/jwks.json"
CHANNEL = "policy:invalidate"

# The /auth/validate success body, in the contract's order.
BODY_KEYS = ["valid", "user_id", "email", "roles", "permissions", "org_id", "org_role",
             "team_id", "team_role", "auth_method", "idp_org_id", "schema_version"]
# A user access token's claims (CONTRACT.md table order); no iat, no nbf.
CLAIM_KEYS = ["sub", "email", "roles", "permissions", "org_id", "org_role", "team_id",
              "team_role", "auth_method", "idp_org_id", "token_version", "mfa_verified",
              "type", "jti", "exp", "iss", "aud"]
EXPECTED_USERS = {
    1: dict(email="researcher@example.org", roles=["researcher"],
            permissions=["dataset.read", "workflow.execute"], org_id=7, org_role=["member"],
            team_id=None, team_role=None, idp_org_id=None),
    3: dict(email="admin@example.org", roles=["admin", "user"],
            permissions=["dataset.read", "dataset.write", "manage_all_orgs", "model.use",
                         "workflow.execute"], org_id=1, org_role=["org_admin"], team_id=11,
            team_role="admin", idp_org_id=None),
    4: dict(email="new@example.org", roles=["user"], permissions=[], org_id=None, org_role=[],
            team_id=None, team_role=None, idp_org_id=None),
    5: dict(email="other-lab@example.org", roles=["user", "scientist"],
            permissions=["dataset.read"], org_id=8, org_role=["member"], team_id=21,
            team_role=None, idp_org_id=3),
}


# --------------------------------------------------------------------------- helpers

def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segments(token):
    """(raw header bytes, raw payload bytes) of a compact JWS."""
    h, p, _ = token.split(".")
    return b64url_decode(h), b64url_decode(p)


def ordered(raw):
    return json.loads(raw, object_pairs_hook=lambda pairs: pairs)


def hand_hs256(claims, secret=SECRET):
    si = b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + b64url(json.dumps(claims).encode())
    return si + "." + b64url(hmac.new(secret.encode(), si.encode(), hashlib.sha256).digest())


def der(tag, content):
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def der_int(v):
    return der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))  # leading 0 when needed


def spki_pem(n, e):
    """SubjectPublicKeyInfo PEM for an RSA key, built by hand (RFC 5280, RFC 8017, RFC 7468),
    so the kid check does not lean on the serializer the server uses."""
    rsa_encryption = der(0x06, bytes.fromhex("2a864886f70d010101"))
    algorithm = der(0x30, rsa_encryption + b"\x05\x00")
    spki = der(0x30, algorithm + der(0x03, b"\x00" + der(0x30, der_int(n) + der_int(e))))
    b64 = base64.b64encode(spki).decode("ascii")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) +
            "\n-----END PUBLIC KEY-----\n").encode("ascii")


def jwk_ints(jwk):
    return (int.from_bytes(b64url_decode(jwk["n"]), "big"),
            int.from_bytes(b64url_decode(jwk["e"]), "big"))


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def assert_contract_types(body):
    """Types of a success body exactly as the contract shows them."""
    assert body["valid"] is True
    assert is_int(body["user_id"])
    assert isinstance(body["email"], str)
    for name in ("roles", "permissions", "org_role"):
        assert isinstance(body[name], list) and all(isinstance(x, str) for x in body[name])
    for name in ("org_id", "team_id", "idp_org_id"):
        assert body[name] is None or is_int(body[name]), name
    assert body["team_role"] is None or isinstance(body["team_role"], str)
    assert isinstance(body["auth_method"], str)
    assert is_int(body["schema_version"]) and body["schema_version"] == 2


def validate_raw(svc, token):
    r = svc.request("POST", VALIDATE, {"token": token})
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/json"
    assert int(r.headers["Content-Length"]) == len(r.body)
    return r.body


def raw_exchange(port, data, timeout=10.0):
    """Sends bytes on a fresh socket and reads until the server closes (or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def post_bytes(path, body):
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), len(body), body))


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@contextlib.contextmanager
def subscriber(redis_srv):
    client = redis_srv.client()
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL)
    confirm = pubsub.get_message(timeout=10)   # subscribed before anything is published
    assert confirm and confirm["type"] == "subscribe"
    try:
        yield pubsub
    finally:
        pubsub.close()
        client.close()


def next_message(pubsub, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=max(0.01, deadline - time.monotonic()))
        if msg and msg["type"] == "message":
            return msg
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def redis_srv():
    rs = RedisServer()
    yield rs
    rs.stop()


@pytest.fixture(scope="session")
def _main(redis_srv):
    svc = AuthService(secret=SECRET, redis_url=redis_srv.url)
    yield svc
    svc.stop()


@pytest.fixture
def svc(_main):
    """The HS256 service with Redis, in normal mode with zeroed counters."""
    _main.mode("normal")
    _main.reset_stats()
    yield _main
    _main.mode("normal")


@pytest.fixture(scope="session")
def rs_svc():
    """An RS256 service with its own issuer, audience and max-age, and no Redis."""
    svc = AuthService(secret=SECRET, alg="RS256", jwks_max_age=7, issuer="test-issuer",
                      audience="test-audience")
    yield svc
    svc.stop()


# --------------------------------------------------------------------------- process

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_script_prints_one_port_line_and_exits_cleanly_on_signal(sig):
    proc = subprocess.Popen([sys.executable, SCRIPT, "--port", "0", "--secret", SECRET],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert re.fullmatch(rb"PORT [1-9][0-9]*\n", line), line
        port = int(line.split()[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/health")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b'{"status":"ok"}')
        conn.close()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert out == b""                  # exactly one line in all
    assert err == b""                  # quiet request log by default


def test_helper_reports_startup_failure_with_stderr():
    with pytest.raises(AuthServiceError) as info:
        AuthService(extra_args=["--alg", "ES999"])
    assert "invalid choice" in str(info.value)


def test_verbose_log_names_paths_but_never_tokens_or_secrets():
    with AuthService(secret=SECRET, verbose=True) as svc:
        tok = svc.mint()
        assert svc.validate(tok)["valid"] is True
        svc.login("user@example.org", "hunter2-password")
        svc.stop()
        log = svc.stderr_text()
    assert "/auth/validate" in log and "/auth/login" in log
    for secret in (tok, tok.split(".")[2], SECRET, "hunter2-password"):
        assert secret not in log


# --------------------------------------------------------------------------- validate

def test_health(svc):
    r = svc.request("GET", "/health")
    assert r.status == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize("user_id", sorted(EXPECTED_USERS))
def test_validate_success_body_is_the_contracts(svc, user_id):
    raw = validate_raw(svc, svc.mint(user_id=user_id))
    pairs = ordered(raw)
    assert [k for k, _ in pairs] == BODY_KEYS
    body = dict(pairs)
    assert_contract_types(body)
    expected = dict(EXPECTED_USERS[user_id], valid=True, user_id=user_id,
                    auth_method="password", schema_version=2)
    assert body == expected


def test_validate_accepts_tokens_minted_outside_the_service(svc):
    claims = {"sub": "42", "email": "outside@example.org", "roles": ["user"],
              "permissions": ["model.use"], "org_id": 9, "org_role": ["member"],
              "team_id": None, "team_role": None, "auth_method": "sso", "idp_org_id": 4,
              "token_version": 2, "mfa_verified": False, "type": "access",
              "jti": str(uuid.uuid4()), "exp": int(time.time()) + 600,
              "iss": "omnibioai-auth", "aud": "omnibioai-platform"}
    for token in (hand_hs256(claims), jwt.encode(claims, SECRET, algorithm="HS256")):
        body = json.loads(validate_raw(svc, token))
        assert_contract_types(body)
        assert (body["user_id"], body["org_id"], body["idp_org_id"], body["auth_method"]) == \
            (42, 9, 4, "sso")
    # string ids in a token still come back as JSON integers
    claims.update(org_id="9", jti=str(uuid.uuid4()))
    assert json.loads(validate_raw(svc, hand_hs256(claims)))["org_id"] == 9


def test_refresh_token_validates_like_the_real_service(svc):
    access = json.loads(validate_raw(svc, svc.mint(type="access")))
    refresh = json.loads(validate_raw(svc, svc.mint(type="refresh")))
    assert refresh["valid"] is True and refresh == access


def test_service_identity_tokens(svc):
    tok = svc.mint(service=True)
    header, payload = segments(tok)
    claims = json.loads(payload)
    assert "sub" not in claims and "email" not in claims
    assert claims["client_id"] == "svc-pipeline"
    assert claims["scopes"] == ["workflow.execute", "dataset.read"]
    assert claims["org_id"] == 7 and claims["auth_method"] == "client_credentials"
    assert claims["type"] == "access" and uuid.UUID(claims["jti"]).version == 4
    body = json.loads(validate_raw(svc, tok))
    assert body["valid"] is True and body["user_id"] is None and body["email"] is None
    assert body["client_id"] == "svc-pipeline" and body["org_id"] == 7


def invalid_cases(svc):
    """(name, token) pairs that must all validate to exactly {"valid": false}."""
    good = svc.mint()
    other = svc.mint(user_id=3)
    rsa = svc.mint(alg="RS256")
    published_kid = svc.jwks()["keys"][0]["kid"]
    pem = spki_pem(*jwk_ints(svc.jwks()["keys"][0]))
    h, p, s = good.split(".")
    confusion_si = b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + p
    rs_header = b64url(b'{"alg":"RS256","kid":"%s","typ":"JWT"}' % published_kid.encode())
    return [
        ("empty", ""),
        ("garbage", "not-a-token"),
        ("three junk segments", "a.b.c"),
        ("header only", h),
        ("bad signature (other secret)", svc.mint(secret="a-different-secret-0123456789abcdef")),
        ("signature of another token", h + "." + p + "." + other.split(".")[2]),
        ("payload swapped", h + "." + other.split(".")[1] + "." + s),
        ("expired", svc.mint(ttl=-5)),
        ("no exp", svc.mint(claims={"exp": None})),
        ("alg none", svc.mint(alg="none")),
        ("HS384 (service verifies HS256/RS256 only)", svc.mint(alg="HS384")),
        ("wrong audience", svc.mint(claims={"aud": "someone-else"})),
        ("wrong issuer", svc.mint(claims={"iss": "evil-auth"})),
        ("RS256 unknown kid", svc.mint(alg="RS256", kid="0123456789abcdef")),
        ("RS256 unpublished key, published kid",
         svc.mint(alg="RS256", unpublished_key=True, kid=published_kid)),
        ("RS256 unpublished key, own kid", svc.mint(alg="RS256", unpublished_key=True)),
        ("RS256 header on an HS256 signature", rs_header + "." + p + "." + s),
        ("HS256 keyed with the RSA public key PEM (alg confusion)", confusion_si + "." +
         b64url(hmac.new(pem, confusion_si.encode(), hashlib.sha256).digest())),
        ("RS256 signature truncated", rsa[:-10]),
        ("sub not decimal", svc.mint(user_id="not-a-number")),
    ]


def test_validate_invalid_tokens_answer_exactly_valid_false(svc):
    cases = invalid_cases(svc)
    for name, token in cases:
        raw = validate_raw(svc, token)
        assert json.loads(raw) == {"valid": False} and ordered(raw) == [("valid", False)], name
    stats = svc.stats()
    assert stats["validate_invalid"] == len(cases) and stats["validate_valid"] == 0


def test_validate_revoked_jti(svc, redis_srv):
    full = svc.mint_full(user_id=1)
    assert json.loads(validate_raw(svc, full["token"]))["valid"] is True
    svc.revoke(full["jti"], exp=full["exp"])
    assert json.loads(validate_raw(svc, full["token"])) == {"valid": False}
    r = redis_srv.client()
    assert r.get("blacklist:jti:" + full["jti"]) == b"1"
    assert 800 < r.ttl("blacklist:jti:" + full["jti"]) <= 900
    # another token of the same user is not affected
    assert json.loads(validate_raw(svc, svc.mint(user_id=1)))["valid"] is True


def test_validate_request_errors(svc):
    assert svc.request("POST", VALIDATE, b"{not json").status == 422
    assert svc.request("POST", VALIDATE, {"token": 5}).status == 422
    assert svc.request("POST", VALIDATE, {}).status == 422
    assert svc.request("GET", VALIDATE).status == 405
    r = svc.request("GET", "/no/such/path")
    assert r.status == 404 and r.json() == {"detail": "Not Found"}


def test_request_body_chunked_and_expect_100_continue(svc):
    tok = svc.mint()
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    body = json.dumps({"token": tok}).encode()
    conn.request("POST", VALIDATE, body=iter([body[:20], body[20:]]),
                 headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read())["valid"] is True
    conn.close()
    # libcurl may send Expect: 100-continue before a POST body
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as s:
        s.sendall(b"POST /auth/validate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                  b"Expect: 100-continue\r\nConnection: close\r\n\r\n" % len(body))
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n")
        s.sendall(body)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"schema_version\":2}")


# --------------------------------------------------------------------------- tokens

def test_minted_hs256_token_has_the_contracts_header_and_claims(svc):
    before = time.time()
    tok = svc.mint(user_id=2)
    header, payload = segments(tok)
    assert header == b'{"alg":"HS256","typ":"JWT"}'
    pairs = ordered(payload)
    assert [k for k, _ in pairs] == CLAIM_KEYS
    c = dict(pairs)
    assert c["sub"] == "2" and c["email"] == "user@example.org"
    assert c["roles"] == ["user", "scientist"]
    assert c["permissions"] == ["dataset.read", "model.use", "workflow.execute"]
    assert is_int(c["org_id"]) and c["org_id"] == 7 and c["org_role"] == ["member"]
    assert c["team_id"] is None and c["team_role"] is None and c["idp_org_id"] is None
    assert c["auth_method"] == "password" and c["token_version"] == 2
    assert c["mfa_verified"] is True and c["type"] == "access"
    assert uuid.UUID(c["jti"]).version == 4 and str(uuid.UUID(c["jti"])) == c["jti"]
    assert is_int(c["exp"]) and before + 900 - 60 <= c["exp"] <= time.time() + 900 + 1
    assert (c["iss"], c["aud"]) == ("omnibioai-auth", "omnibioai-platform")
    # and PyJWT agrees it is a well-formed HS256 token with the shared secret
    assert jwt.decode(tok, SECRET, algorithms=["HS256"], audience="omnibioai-platform",
                      issuer="omnibioai-auth")["sub"] == "2"
    assert len({json.loads(segments(svc.mint())[1])["jti"] for _ in range(5)}) == 5


def test_minted_rs256_token_header_and_signature(svc):
    tok = svc.mint(alg="RS256", user_id=1)
    header, _ = segments(tok)
    kid = svc.jwks()["keys"][0]["kid"]
    assert header == b'{"alg":"RS256","kid":"%s","typ":"JWT"}' % kid.encode()
    key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(svc.jwks()["keys"][0]))
    claims = jwt.decode(tok, key, algorithms=["RS256"], audience="omnibioai-platform")
    assert claims["sub"] == "1"
    assert json.loads(validate_raw(svc, tok))["user_id"] == 1


def test_mint_overrides(svc):
    full = svc.mint_full(claims={"email": None, "roles": ["custom"], "extra": {"a": 1}},
                         null_claims=["team_role"], ttl=60, type="refresh",
                         header={"typ": "at+jwt"}, kid="my-kid")
    header, payload = segments(full["token"])
    assert json.loads(header) == {"alg": "HS256", "kid": "my-kid", "typ": "at+jwt"}
    c = json.loads(payload)
    assert "email" not in c and c["roles"] == ["custom"] and c["extra"] == {"a": 1}
    assert "team_role" in c and c["team_role"] is None and c["type"] == "refresh"
    assert c["exp"] == full["exp"] and c["jti"] == full["jti"]
    assert time.time() + 60 - 30 <= c["exp"] <= time.time() + 61
    no_kid = svc.mint(alg="RS256", kid=None)
    assert json.loads(segments(no_kid)[0]) == {"alg": "RS256", "typ": "JWT"}
    # without a kid the service tries every key it has published
    assert json.loads(validate_raw(svc, no_kid))["valid"] is True
    assert svc.request("POST", "/_test/mint", {"alg": "XX999"}).status == 400


def test_custom_issuer_audience_and_rs256_default(rs_svc):
    tok = rs_svc.mint()
    header, payload = segments(tok)
    assert json.loads(header)["alg"] == "RS256"
    c = json.loads(payload)
    assert (c["iss"], c["aud"]) == ("test-issuer", "test-audience")
    assert rs_svc.validate(tok)["valid"] is True
    other = rs_svc.mint(claims={"iss": "omnibioai-auth", "aud": "omnibioai-platform"})
    assert rs_svc.validate(other) == {"valid": False}
    # HS256 stays live next to RS256 (a migration)
    assert rs_svc.validate(rs_svc.mint(alg="HS256"))["valid"] is True


# --------------------------------------------------------------------------- JWKS

def test_jwks_shape_and_kid_derivation(svc):
    r = svc.request("GET", JWKS)
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    doc = ordered(r.body)
    assert [k for k, _ in doc] == ["keys"]
    keys = r.json()["keys"]
    assert isinstance(keys, list) and len(keys) >= 1
    from cryptography.hazmat.primitives import serialization
    for jwk in keys:
        assert set(jwk) == {"kty", "n", "e", "alg", "use", "kid"}
        assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")
        for name in ("n", "e"):
            assert re.fullmatch(r"[A-Za-z0-9_-]+", jwk[name]), "base64url without padding"
        n, e = jwk_ints(jwk)
        assert n.bit_length() == 2048 and e == 65537
        assert b64url_decode(jwk["n"])[0] != 0, "no leading zero octet (RFC 7518 6.3.1.1)"
        assert re.fullmatch(r"[0-9a-f]{16}", jwk["kid"])
        pem = spki_pem(n, e)
        assert jwk["kid"] == hashlib.sha256(pem).hexdigest()[:16]
        # the hand-built PEM is byte for byte what a standard serializer writes
        key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
        assert key.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo) == pem


def test_jwks_etag_and_304(svc):
    r1 = svc.request("GET", JWKS)
    etag = r1.headers["ETag"]
    assert re.fullmatch(r'"[^"]+"', etag)
    for inm, status in ((etag, 304), ('"something-else"', 200), ("W/" + etag, 304),
                        ('"x", ' + etag, 304), ("*", 304)):
        r = svc.request("GET", JWKS, headers={"If-None-Match": inm})
        assert r.status == status, inm
        assert r.headers["ETag"] == etag
        assert r.headers["Cache-Control"] == "max-age=300"
        assert r.body == (b"" if status == 304 else r1.body)
    s = svc.stats()
    assert (s["jwks"], s["jwks_200"], s["jwks_304"]) == (6, 2, 4)


def test_jwks_max_age_configurable(svc, rs_svc):
    assert svc.request("GET", JWKS).headers["Cache-Control"] == "max-age=300"
    assert rs_svc.request("GET", JWKS).headers["Cache-Control"] == "max-age=7"
    try:
        svc.config(jwks_max_age=2)
        assert svc.request("GET", JWKS).headers["Cache-Control"] == "max-age=2"
        svc.config(jwks_max_age=None)
        assert svc.request("GET", JWKS).headers["Cache-Control"] is None
    finally:
        svc.config(jwks_max_age=300)


def test_key_rotation():
    with AuthService(secret=SECRET, alg="RS256") as svc:
        def kids():
            return [k["kid"] for k in svc.jwks()["keys"]]
        (k0,) = kids()
        etag0 = svc.request("GET", JWKS).headers["ETag"]
        t0 = svc.mint()
        assert json.loads(segments(t0)[0])["kid"] == k0

        rot = svc.rotate()
        k1 = rot["kid"]
        assert k1 != k0 and kids() == [k1, k0] == rot["published"]
        r = svc.request("GET", JWKS, headers={"If-None-Match": etag0})
        assert r.status == 200 and r.headers["ETag"] != etag0
        t1 = svc.mint()
        assert json.loads(segments(t1)[0])["kid"] == k1
        assert svc.validate(t0)["valid"] and svc.validate(t1)["valid"]

        k2 = svc.rotate(drop_old=True)["kid"]
        assert kids() == [k2]
        t2 = svc.mint()
        assert json.loads(segments(t2)[0])["kid"] == k2
        # keys published earlier still verify, as on a service that keeps them
        assert all(svc.validate(t)["valid"] for t in (t0, t1, t2))
        for jwk in svc.jwks()["keys"]:
            assert jwk["kid"] == hashlib.sha256(spki_pem(*jwk_ints(jwk))).hexdigest()[:16]


# --------------------------------------------------------------------------- login/logout

@pytest.mark.parametrize("user_id", sorted(EXPECTED_USERS))
def test_login(svc, user_id):
    email = EXPECTED_USERS[user_id]["email"]
    r = svc.login(email, "any password at all")
    assert r.status == 200
    body = r.json()
    assert set(body) == {"access_token", "refresh_token", "token_type"}
    assert body["token_type"] == "bearer"
    access = json.loads(segments(body["access_token"])[1])
    refresh = json.loads(segments(body["refresh_token"])[1])
    assert (access["sub"], access["type"], access["email"]) == (str(user_id), "access", email)
    assert (refresh["sub"], refresh["type"]) == (str(user_id), "refresh")
    assert access["jti"] != refresh["jti"]
    assert svc.validate(body["access_token"])["user_id"] == user_id


def test_login_refusals(svc):
    assert svc.login("nobody@example.org").status == 401
    assert svc.request("POST", "/auth/login", {"email": "user@example.org"}).status == 422
    assert svc.request("POST", "/auth/login", b"nope").status == 422


def test_logout_blacklists_access_jti_and_publishes_exact_message(svc, redis_srv):
    tokens = svc.login("user@example.org").json()
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    jti = json.loads(segments(access)[1])["jti"]
    exp = json.loads(segments(access)[1])["exp"]
    r = redis_srv.client()
    with subscriber(redis_srv) as sub:
        assert svc.logout(refresh, access).status == 200
        msg = next_message(sub)
    assert msg is not None and msg["channel"] == CHANNEL.encode()
    assert msg["data"] == b'{"user_id": "2", "token": "' + refresh.encode() + b'"}'
    assert r.get("blacklist:jti:" + jti) == b"1"
    ttl = r.ttl("blacklist:jti:" + jti)
    assert exp - time.time() - 30 <= ttl <= exp - time.time() + 1 and ttl <= 900
    assert svc.validate(access) == {"valid": False}
    # the refresh token's own jti is not blacklisted, so it still validates (contract)
    assert svc.validate(refresh)["valid"] is True
    assert r.exists("blacklist:jti:" + json.loads(segments(refresh)[1])["jti"]) == 0


def test_logout_without_access_token_publishes_only(svc, redis_srv):
    tokens = svc.login("researcher@example.org").json()
    jti = json.loads(segments(tokens["access_token"])[1])["jti"]
    with subscriber(redis_srv) as sub:
        assert svc.logout(tokens["refresh_token"]).status == 200
        msg = next_message(sub)
    assert msg["data"] == json.dumps({"user_id": "1", "token": tokens["refresh_token"]}).encode()
    assert redis_srv.client().exists("blacklist:jti:" + jti) == 0
    assert svc.validate(tokens["access_token"])["valid"] is True


def test_logout_ttl_is_seconds_until_exp_with_a_minimum_of_one(svc, redis_srv):
    r = redis_srv.client()
    refresh = svc.mint(type="refresh")
    soon = svc.mint_full(ttl=100)
    assert svc.logout(refresh, soon["token"]).status == 200
    assert 60 <= r.ttl("blacklist:jti:" + soon["jti"]) <= 100
    expired = svc.mint_full(ttl=-30)
    t = time.monotonic()
    assert svc.logout(refresh, expired["token"]).status == 200
    pttl = r.pttl("blacklist:jti:" + expired["jti"])
    if time.monotonic() - t < 0.9:         # otherwise the 1 s key may already be gone
        assert 0 < pttl <= 1000


def test_logout_refusals_publish_nothing(svc, redis_srv):
    access = svc.mint()
    with subscriber(redis_srv) as sub:
        assert svc.logout("garbage").status == 401
        assert svc.logout(access).status == 401          # an access token is no refresh token
        assert svc.logout(svc.mint(type="refresh", secret="x" * 40)).status == 401
        assert svc.request("POST", "/auth/logout", {"access_token": access}).status == 422
        assert next_message(sub, timeout=0.5) is None
    assert svc.validate(access)["valid"] is True


def test_publish_control_endpoint(svc, redis_srv):
    with subscriber(redis_srv) as sub:
        assert svc.publish("5", "tok.en.x")["receivers"] >= 1
        assert next_message(sub)["data"] == b'{"user_id": "5", "token": "tok.en.x"}'


def test_redis_unreachable_fails_open():
    with AuthService(secret=SECRET, redis_url="redis://127.0.0.1:%d" % free_port()) as svc:
        tok = svc.mint()
        assert svc.validate(tok)["valid"] is True
        tokens = svc.login("user@example.org").json()
        assert svc.logout(tokens["refresh_token"], tokens["access_token"]).status == 200
        assert svc.request("POST", "/_test/revoke", {"jti": "x"}).status == 503


def test_revoke_without_redis_is_refused(rs_svc):
    r = rs_svc.request("POST", "/_test/revoke", {"jti": "x", "exp": int(time.time()) + 60})
    assert r.status == 409


# --------------------------------------------------------------------------- keep-alive, stats

def test_keep_alive_one_connection_serves_everything(svc):
    tok = svc.mint()
    svc.mode("error500", count=1)
    svc.reset_stats()                        # after the mint: it used a connection too
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)

    def call(method, path, body=None, headers=None):
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers=headers or {})
        resp = conn.getresponse()
        call.headers = resp.headers
        return resp.status, resp.read()

    assert call("POST", VALIDATE, {"token": tok})[0] == 500      # the one error
    for _ in range(5):
        status, body = call("POST", VALIDATE, {"token": tok})
        assert status == 200 and json.loads(body)["valid"] is True
    assert call("POST", VALIDATE, {"token": "bad"}) == (200, b'{"valid":false}')
    assert call("GET", JWKS)[0] == 200
    etag = call.headers["ETag"]
    assert call("GET", JWKS, headers={"If-None-Match": etag}) == (304, b"")
    assert call("GET", "/health")[0] == 200
    assert call("POST", "/auth/login", {"email": "user@example.org", "password": "p"})[0] == 200
    assert call("GET", "/nowhere")[0] == 404
    assert call("POST", VALIDATE, {"token": 1})[0] == 422
    status, body = call("GET", "/_test/stats")
    conn.close()
    stats = json.loads(body)
    assert stats["connections"] == 1
    assert stats["validate"] == 8 and stats["validate_valid"] == 5
    assert stats["validate_invalid"] == 1 and stats["misbehaved"] == 1
    assert (stats["jwks"], stats["jwks_200"], stats["jwks_304"]) == (2, 1, 1)
    assert stats["requests"] == {VALIDATE: 8, JWKS: 2, "/health": 1, "/auth/login": 1,
                                 "/nowhere": 1}
    assert stats["in_flight"] == 0


def test_stats_reset(svc):
    svc.validate(svc.mint())
    assert svc.stats()["validate"] == 1
    reset = svc.reset_stats()
    assert reset["validate"] == 0 and reset["requests"] == {}
    assert svc.stats()["validate"] == 0


def test_concurrent_clients(svc):
    tokens = [svc.mint(user_id=u) for u in (1, 2, 3, 4, 5)]
    svc.reset_stats()
    errors = []

    def worker(n):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=20)
            for i in range(15):
                tok = tokens[(n + i) % len(tokens)]
                conn.request("POST", VALIDATE, body=json.dumps({"token": tok}))
                resp = conn.getresponse()
                body = json.loads(resp.read())
                if resp.status != 200 or body["user_id"] != int(json.loads(
                        segments(tok)[1])["sub"]):
                    errors.append((resp.status, body))
            conn.close()
        except Exception as e:  # reported below, with the test's thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    s = svc.stats()
    # four keep-alive connections, and the one svc.stats() just opened
    assert s["validate"] == 60 and s["validate_valid"] == 60 and s["connections"] == 5


# --------------------------------------------------------------------------- modes

def test_mode_slow_respects_delay_and_only_its_paths(svc):
    tok = svc.mint()
    svc.mode("slow", delay_ms=600)
    t = time.monotonic()
    assert svc.validate(tok)["valid"] is True
    assert time.monotonic() - t >= 0.57
    assert svc.request("GET", "/health").status == 200     # not in the default paths
    s = svc.stats()
    assert s["misbehaved"] == 1 and s["validate_valid"] == 1


def test_mode_delay_combines_with_other_modes(svc):
    svc.mode("error500", delay_ms=400, status=503)
    t = time.monotonic()
    r = svc.request("POST", VALIDATE, {"token": svc.mint()})
    assert r.status == 503 and time.monotonic() - t >= 0.37
    assert r.json() == {"detail": "Internal Server Error"}


def test_mode_error500_and_count_reverts(svc):
    tok = svc.mint()
    described = svc.mode("error500", count=2)
    assert (described["mode"], described["count"]) == ("error500", 2)
    for _ in range(2):
        r = svc.request("POST", VALIDATE, {"token": tok})
        assert r.status == 500 and int(r.headers["Content-Length"]) == len(r.body)
    assert svc.validate(tok)["valid"] is True
    assert svc.current_mode()["mode"] == "normal"
    assert svc.request("GET", JWKS).status == 200


def test_mode_garbage(svc):
    svc.mode("garbage")
    for path, method, body in ((VALIDATE, "POST", {"token": svc.mint()}), (JWKS, "GET", None)):
        r = svc.request(method, path, body)
        assert r.status == 200 and len(r.body) == int(r.headers["Content-Length"]) > 0
        with pytest.raises(ValueError):
            json.loads(r.body)


def test_mode_drop_closes_without_answer(svc):
    svc.mode("drop")
    body = json.dumps({"token": svc.mint()}).encode()
    assert raw_exchange(svc.port, post_bytes(VALIDATE, body)) == b""
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        svc.request("GET", JWKS)
    svc.mode("normal")
    assert raw_exchange(svc.port, post_bytes(VALIDATE, body)).startswith(b"HTTP/1.1 200 ")


def test_mode_hang_until_mode_changes(svc):
    tok = svc.mint()
    svc.mode("hang", count=1)
    with socket.create_connection(("127.0.0.1", svc.port), timeout=1.0) as s:
        s.sendall(post_bytes(VALIDATE, json.dumps({"token": tok}).encode()))
        with pytest.raises(socket.timeout):
            s.recv(1)
        assert svc.stats()["in_flight"] == 1
        # count=1: the next request is served while the first still hangs
        assert svc.validate(tok)["valid"] is True
        assert svc.current_mode()["mode"] == "normal"
        s.settimeout(10)
        svc.mode("normal")                 # setting a mode releases hung requests...
        assert s.recv(1) == b""            # ...which are closed without an answer
    wait_for(lambda: svc.stats()["in_flight"] == 0, what="in_flight 0")


def test_hang_does_not_block_shutdown():
    svc = AuthService(secret=SECRET)
    socks = []
    try:
        svc.mode("hang", paths=["*"])
        for path in (VALIDATE, "/health"):
            s = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
            s.sendall(post_bytes(path, b'{"token": "x"}'))
            socks.append(s)
        wait_for(lambda: svc.stats()["in_flight"] == 2, what="two hung requests")
        t = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(timeout=10) == 0
        assert time.monotonic() - t < 10
        for s in socks:
            assert s.recv(1) == b""
    finally:
        for s in socks:
            s.close()
        svc.stop()


def test_mode_wrong_shape(svc):
    tok = svc.mint()
    svc.mode("wrong_shape")
    body = svc.validate(tok)
    assert body["valid"] == "yes"
    checks = {
        "valid_string": lambda b: b["valid"] == "yes",
        "missing_user_id": lambda b: b["valid"] is True and "user_id" not in b,
        "missing_valid": lambda b: "valid" not in b and "user_id" in b,
        "roles_not_list": lambda b: b["valid"] is True and b["roles"] == "admin",
        "user_id_bool": lambda b: b["user_id"] is True,
    }
    for variant, check in checks.items():
        svc.mode("wrong_shape", variant=variant)
        r = svc.request("POST", VALIDATE, {"token": tok})
        assert r.status == 200 and isinstance(r.json(), dict) and check(r.json()), variant
    for variant, expected in (("keys_not_list", {"keys": "none"}), ("no_keys", {"jwks": []}),
                              ("key_not_object", {"keys": ["RSA"]})):
        svc.mode("wrong_shape", variant=variant)
        r = svc.request("GET", JWKS)
        assert r.status == 200 and r.json() == expected
    svc.mode("wrong_shape", paths=["/health"])
    assert svc.request("GET", "/health").json() == {"unexpected": True}


def test_mode_invalid_json_type(svc):
    for variant, expected in (("array", [{"valid": True}]), ("string", "valid"),
                              ("null", None), ("number", 1), ("true", True)):
        svc.mode("invalid_json_type", variant=variant)
        for method, path, body in (("POST", VALIDATE, {"token": "x"}), ("GET", JWKS, None)):
            r = svc.request(method, path, body)
            assert r.status == 200 and r.json() == expected and not isinstance(r.json(), dict)
    svc.mode("invalid_json_type")
    assert svc.request("POST", VALIDATE, {"token": "x"}).json() == [{"valid": True}]


def test_mode_lie_valid_and_deny_all(svc):
    refresh = svc.mint(type="refresh")
    good = svc.mint()
    svc.mode("lie_valid")
    for token in ("garbage", refresh, svc.mint(ttl=-100)):
        body = svc.validate(token)
        assert body["valid"] is True and body["user_id"] == 99
        assert body["email"] == "liar@example.org"
        assert_contract_types(body)
    assert isinstance(svc.jwks()["keys"], list)      # JWKS answers normally
    svc.mode("deny_all")
    assert svc.validate(good) == {"valid": False}
    svc.mode("normal")
    assert svc.validate(good)["valid"] is True


def test_mode_close_answers_then_closes(svc):
    svc.mode("close")
    out = raw_exchange(svc.port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % JWKS.encode())
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head
    assert json.loads(body)["keys"]          # a complete answer, then EOF (keep-alive refused)


def test_mode_chunked(svc):
    svc.mode("chunked")
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    conn.request("POST", VALIDATE, body=json.dumps({"token": svc.mint()}))
    resp = conn.getresponse()
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Content-Length") is None
    assert json.loads(resp.read())["valid"] is True
    conn.request("GET", "/health")           # the connection stays usable
    assert conn.getresponse().read() == b'{"status":"ok"}'
    conn.close()


def test_mode_truncated(svc):
    svc.mode("truncated")
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    conn.request("POST", VALIDATE, body=json.dumps({"token": svc.mint()}))
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    conn.close()


def test_mode_huge(svc):
    svc.mode("huge", size=3_000_000)
    r = svc.request("POST", VALIDATE, {"token": "x"})
    assert r.status == 200 and len(r.body) == 3_000_000
    assert r.json()["valid"] is False


def test_mode_paths(svc):
    tok = svc.mint()
    svc.mode("error500")                     # default: validate and JWKS
    assert svc.request("GET", "/health").status == 200
    assert svc.login("user@example.org").status == 200
    assert svc.request("GET", JWKS).status == 500
    svc.mode("error500", paths=["/health"])
    assert svc.request("GET", "/health").status == 500
    assert svc.validate(tok)["valid"] is True
    svc.mode("error500", paths=["*"])
    assert svc.login("user@example.org").status == 500
    # the control API is never affected, or a test could not undo a mode
    assert svc.stats()["misbehaved"] == 3 and svc.mint()


def test_mode_requests_are_checked(svc):
    for bad in ({"mode": "explode"}, {"mode": "error500", "count": 0},
                {"mode": "slow", "delay_ms": -1}, {"mode": "hang", "paths": ["/_test/stats"]},
                {"mode": "garbage", "variant": "array"}, {"mode": "error500", "status": 99},
                {"mode": "drop", "paths": "/health"}):
        r = svc.request("POST", "/_test/mode", bad)
        assert r.status == 400 and "detail" in r.json(), bad
    assert svc.current_mode()["mode"] == "normal"
