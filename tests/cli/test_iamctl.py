#!/usr/bin/env python3
"""
test_iamctl.py -- the iamctl command line, driven exactly as other teams' scripts drive it.

    python3 tests/cli/test_iamctl.py <path-to-iamctl>

Plain Python 3, no test framework. Prints one line per test and, last, "N passed, M failed";
exits nonzero when anything failed.

Tokens are minted here, independently of the library: with PyJWT when it can be imported
(Debian's python3-jwt; RS256 through python3-cryptography), otherwise with hmac/base64 for
HS256 and the `openssl` command for RSA keys and RS256 signatures.

Exit codes under test (tools/iamctl.c): 0 accepted, 1 token rejected with
"error: <code>: <message>" on stderr, 2 usage or configuration error.
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

try:
    import jwt  # PyJWT
except ImportError:  # pragma: no cover - depends on the interpreter
    jwt = None

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
except ImportError:  # pragma: no cover
    rsa = None
    serialization = None

NOW = 1900000000
EXP = NOW + 900
SECRET = "iamctl-cli-secret-7Qx2Lm9Vb4Ns8Kd1Hf6Rt3"  # 42 bytes, >= 32
OTHER_SECRET = "another-secret-of-enough-length-0123456789"
SHORT_SECRET = "tooShort10"  # 10 bytes
SECRETS = [SECRET, OTHER_SECRET, SHORT_SECRET]

IAMCTL = None
TMP = None


# --------------------------------------------------------------------------- minting

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact_json(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def platform_claims(sub="2", exp=EXP, **overrides):
    """The platform's access-token claim set (CONTRACT.md)."""
    claims = {
        "sub": sub,
        "email": "user@example.org",
        "roles": ["user", "scientist"],
        "permissions": ["dataset.read", "model.use", "workflow.execute"],
        "org_id": 7,
        "org_role": ["member"],
        "team_id": None,
        "team_role": None,
        "auth_method": "password",
        "idp_org_id": None,
        "token_version": 2,
        "mfa_verified": True,
        "exp": exp,
        "type": "access",
        "jti": "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f",
        "iss": "omnibioai-auth",
        "aud": "omnibioai-platform",
    }
    if sub is DROP:
        del claims["sub"]
    for k, v in overrides.items():
        if v is DROP:
            claims.pop(k, None)
        else:
            claims[k] = v
    return claims


DROP = object()


def _manual_hs256(header, payload_bytes, secret):
    signing_input = b64url(compact_json(header)) + "." + b64url(payload_bytes)
    mac = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def mint_hs256(claims, secret=SECRET, kid=None):
    header = {"alg": "HS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    if jwt is not None:
        tok = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid} if kid else None)
        return tok.decode() if isinstance(tok, bytes) else tok
    return _manual_hs256(header, compact_json(claims), secret)


def mint_jws_hs256(payload_bytes, secret=SECRET):
    """A bare JWS over arbitrary bytes (not a claim set)."""
    return _manual_hs256({"alg": "HS256"}, payload_bytes, secret)


class RsaKey:
    """An RSA-2048 private key, its public SPKI PEM and JWK members."""

    def __init__(self, directory, name):
        self.private_path = os.path.join(directory, name + ".key.pem")
        self.public_path = os.path.join(directory, name + ".pub.pem")
        if rsa is not None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.private_pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
            self.public_pem = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            numbers = key.public_key().public_numbers()
            self.n, self.e = numbers.n, numbers.e
            with open(self.private_path, "wb") as f:
                f.write(self.private_pem)
            with open(self.public_path, "wb") as f:
                f.write(self.public_pem)
        else:
            openssl = shutil.which("openssl")
            if not openssl:
                raise RuntimeError("neither python3-cryptography nor openssl is available")
            subprocess.run([openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt",
                            "rsa_keygen_bits:2048", "-out", self.private_path],
                           check=True, capture_output=True)
            subprocess.run([openssl, "pkey", "-in", self.private_path, "-pubout", "-out",
                            self.public_path], check=True, capture_output=True)
            with open(self.private_path, "rb") as f:
                self.private_pem = f.read()
            with open(self.public_path, "rb") as f:
                self.public_pem = f.read()
            text = subprocess.run([openssl, "rsa", "-pubin", "-in", self.public_path, "-noout",
                                   "-modulus"], check=True, capture_output=True).stdout
            self.n = int(text.decode().strip().split("=", 1)[1], 16)
            self.e = 65537
        # The platform's kid: first 16 hex digits of SHA-256 over the PEM text.
        self.kid = hashlib.sha256(self.public_pem).hexdigest()[:16]

    def jwk(self, kid=None):
        def to_b64(i):
            return b64url(i.to_bytes((i.bit_length() + 7) // 8, "big"))
        return {"kty": "RSA", "n": to_b64(self.n), "e": to_b64(self.e), "alg": "RS256",
                "use": "sig", "kid": kid if kid is not None else self.kid}

    def sign_rs256(self, claims, kid=None):
        header = {"alg": "RS256", "typ": "JWT"}
        if kid:
            header["kid"] = kid
        if jwt is not None and rsa is not None:
            tok = jwt.encode(claims, self.private_pem, algorithm="RS256",
                             headers={"kid": kid} if kid else None)
            return tok.decode() if isinstance(tok, bytes) else tok
        signing_input = b64url(compact_json(header)) + "." + b64url(compact_json(claims))
        sig = subprocess.run([shutil.which("openssl"), "dgst", "-sha256", "-sign",
                              self.private_path], input=signing_input.encode("ascii"),
                             check=True, capture_output=True).stdout
        return signing_input + "." + b64url(sig)


def flip_last(tok):
    """Changes the last character of an HS256 signature (43 characters: the last one
    carries 4 bits and 2 discarded zero bits) to another canonical character."""
    return tok[:-1] + ("A" if tok[-1] != "A" else "E")


# --------------------------------------------------------------------------- running

ALL_STDERR = []  # every stderr seen, checked for secrets at the end


def base_env(**extra):
    env = dict(os.environ)
    env.pop("IAM_JWT_SECRET", None)
    env.update(extra)
    return env


class Result:
    def __init__(self, args, proc):
        self.args = args
        self.code = proc.returncode
        self.out = proc.stdout.decode("utf-8", "replace")
        self.err = proc.stderr.decode("utf-8", "replace")

    def __repr__(self):
        return "iamctl %s -> exit %d\n  stdout: %r\n  stderr: %r" % (
            " ".join(a if len(a) < 60 else a[:57] + "..." for a in self.args), self.code,
            self.out[:300], self.err[:300])


def run(*args, stdin=None, env=None):
    proc = subprocess.run([IAMCTL] + list(args), input=stdin, capture_output=True,
                          env=env if env is not None else base_env(), timeout=60)
    r = Result(list(args), proc)
    ALL_STDERR.append((r, r.err))
    return r


class Failure(Exception):
    pass


def check(cond, what, result=None):
    if not cond:
        raise Failure(what + ("\n  " + repr(result) if result is not None else ""))


def expect_accepted(r, user_id="2", org_id="7"):
    check(r.code == 0, "expected exit 0", r)
    try:
        doc = json.loads(r.out)
    except ValueError:
        raise Failure("stdout is not JSON\n  " + repr(r))
    check(isinstance(doc, dict), "stdout JSON is not an object", r)
    check(doc.get("user_id") == user_id, "user_id %r != %r" % (doc.get("user_id"), user_id), r)
    check(doc.get("org_id") == org_id, "org_id %r != %r" % (doc.get("org_id"), org_id), r)
    return doc


def expect_rejected(r, code):
    check(r.code == 1, "expected exit 1 (rejected: %s)" % code, r)
    check(r.err.startswith("error: %s: " % code), "stderr does not start with 'error: %s: '" % code, r)
    check(len(r.err.strip()) > len("error: %s:" % code), "no message after the code", r)
    check(r.out == "", "stdout not empty on rejection", r)


def expect_usage(r):
    check(r.code == 2, "expected exit 2 (usage)", r)
    check(r.err.strip() != "", "no explanation on stderr", r)
    check(r.out == "", "stdout not empty on usage error", r)


def verify(token, *opts, now=NOW, env=None, stdin=None):
    args = ["verify"] + list(opts)
    if now is not None:
        args += ["--now", str(now)]
    args.append(token)
    return run(*args, env=env, stdin=stdin)


# --------------------------------------------------------------------------- tests

def t_accepted():
    tok = mint_hs256(platform_claims())
    r = verify(tok, "--secret", SECRET)
    doc = expect_accepted(r)
    check(doc.get("email") == "user@example.org", "email", r)
    check(tok not in r.out, "token echoed on stdout", r)
    check(SECRET not in r.out, "secret on stdout", r)
    check(r.err == "", "stderr not empty on success", r)


def t_rejected_codes():
    cases = [
        ("expired", mint_hs256(platform_claims(exp=NOW - 1))),
        ("expired", mint_hs256(platform_claims(exp=NOW))),
        ("bad_signature", mint_hs256(platform_claims(), secret=OTHER_SECRET)),
        ("wrong_audience", mint_hs256(platform_claims(aud="someone-else"))),
        ("wrong_type", mint_hs256(platform_claims(type="refresh"))),
        ("wrong_issuer", mint_hs256(platform_claims(iss="evil"))),
        ("missing_claim", mint_hs256(platform_claims(sub=DROP))),
        ("malformed", "not-a-token"),
        ("malformed", "a.b.c"),
        ("malformed", mint_hs256(platform_claims()) + ".x"),
        ("unsupported_alg",
         b64url(b'{"alg":"none","typ":"JWT"}') + "." + b64url(compact_json(platform_claims())) + "."),
    ]
    for code, tok in cases:
        expect_rejected(verify(tok, "--secret", SECRET), code)


def t_usage_errors():
    tok = mint_hs256(platform_claims())
    expect_usage(run("verify", "--now", str(NOW), tok))                      # no key
    expect_usage(run("verify", "--jwks", os.path.join(TMP, "does-not-exist.json"), tok))
    unreadable = os.path.join(TMP, "a-directory.json")
    os.makedirs(unreadable, exist_ok=True)
    expect_usage(run("verify", "--jwks", unreadable, tok))                   # a directory
    expect_usage(run("verify", "--secret", SECRET, "--leeway", "abc", tok))
    expect_usage(run("verify", "--secret", SECRET, "--leeway", "-1", tok))
    expect_usage(run("verify", "--secret", SECRET, "--leeway", "86401", tok))
    expect_usage(run("verify", "--secret", SECRET, "--now", "yesterday", tok))
    expect_usage(run("verify", "--secret", SECRET, "--bogus", "x", tok))     # unknown option
    expect_usage(run("verify", "--secret", SECRET, tok, "--bogus"))
    expect_usage(run("verify", "--secret", SECRET))                          # no token
    expect_usage(run("verify", "--secret", SECRET, tok, tok))                # two tokens
    expect_usage(run("verify", "--secret", SHORT_SECRET, "--now", str(NOW), tok))
    expect_usage(run("verify", "--secret"))                                  # option without value
    expect_usage(run("jws-verify", tok))                                     # no key
    expect_usage(run("jws-verify", "--secret", SECRET))                      # no JWS
    expect_usage(run("no-such-command"))


def t_stdin():
    tok = mint_hs256(platform_claims())
    r = run("verify", "--secret", SECRET, "--now", str(NOW), "-", stdin=(tok + "\n").encode())
    expect_accepted(r)
    r = run("verify", "--secret", SECRET, "--now", str(NOW), "-", stdin=(tok + "\r\n").encode())
    expect_accepted(r)
    r = run("verify", "--secret", SECRET, "--now", str(NOW), "-", stdin=tok.encode())
    expect_accepted(r)
    # Tampered on stdin is still a rejection, not a usage error.
    r = run("verify", "--secret", SECRET, "--now", str(NOW), "-",
            stdin=(flip_last(tok) + "\n").encode())
    expect_rejected(r, "bad_signature")
    # Oversized on stdin.
    r = run("verify", "--secret", SECRET, "--now", str(NOW), "-", stdin=b"a" * 10000)
    expect_rejected(r, "too_large")


def t_secret_file():
    tok = mint_hs256(platform_claims())
    path = os.path.join(TMP, "secret.txt")
    with open(path, "w") as f:
        f.write(SECRET + "\n")
    expect_accepted(verify(tok, "--secret-file", path))
    with open(path, "w") as f:
        f.write(SECRET)
    expect_accepted(verify(tok, "--secret-file", path))
    with open(path, "w") as f:
        f.write(SECRET + "\r\n")
    expect_accepted(verify(tok, "--secret-file", path))
    # A different secret in the file: bad signature, not a usage error.
    with open(path, "w") as f:
        f.write(OTHER_SECRET + "\n")
    expect_rejected(verify(tok, "--secret-file", path), "bad_signature")
    # Too short in the file, or no file.
    with open(path, "w") as f:
        f.write(SHORT_SECRET + "\n")
    expect_usage(verify(tok, "--secret-file", path))
    expect_usage(verify(tok, "--secret-file", os.path.join(TMP, "missing-secret")))


def t_env_secret():
    tok = mint_hs256(platform_claims())
    expect_accepted(verify(tok, env=base_env(IAM_JWT_SECRET=SECRET)))
    expect_rejected(verify(tok, env=base_env(IAM_JWT_SECRET=OTHER_SECRET)), "bad_signature")
    expect_usage(verify(tok, env=base_env(IAM_JWT_SECRET="")))
    expect_usage(verify(tok, env=base_env(IAM_JWT_SECRET=SHORT_SECRET)))
    # An explicit key option wins over the environment.
    expect_accepted(verify(tok, "--secret", SECRET, env=base_env(IAM_JWT_SECRET=OTHER_SECRET)))


def t_now():
    tok = mint_hs256(platform_claims(exp=EXP))
    expect_accepted(verify(tok, "--secret", SECRET, now=NOW))
    expect_accepted(verify(tok, "--secret", SECRET, now=EXP - 1))
    expect_rejected(verify(tok, "--secret", SECRET, now=EXP), "expired")
    # A token that expired in 2001 by the real clock, valid at a fixed earlier time.
    old = mint_hs256(platform_claims(exp=1000000000))
    expect_rejected(verify(old, "--secret", SECRET, now=None), "expired")
    expect_accepted(verify(old, "--secret", SECRET, now=999999000))
    # Without --now the real clock is used.
    fresh = mint_hs256(platform_claims(exp=int(time.time()) + 900))
    expect_accepted(verify(fresh, "--secret", SECRET, now=None))
    # Leeway.
    late = mint_hs256(platform_claims(exp=NOW - 5))
    expect_rejected(verify(late, "--secret", SECRET), "expired")
    expect_accepted(verify(late, "--secret", SECRET, "--leeway", "10"))
    expect_rejected(verify(late, "--secret", SECRET, "--leeway", "5"), "expired")


def t_overrides():
    tok = mint_hs256(platform_claims(aud="lab-portal", iss="https://auth.lab.example"))
    r = verify(tok, "--secret", SECRET)
    check(r.code == 1 and (r.err.startswith("error: wrong_issuer: ")
                           or r.err.startswith("error: wrong_audience: ")),
          "defaults must refuse a foreign iss/aud", r)
    expect_rejected(verify(tok, "--secret", SECRET, "--audience", "lab-portal"), "wrong_issuer")
    expect_rejected(verify(tok, "--secret", SECRET, "--issuer", "https://auth.lab.example"),
                    "wrong_audience")
    expect_accepted(verify(tok, "--secret", SECRET, "--audience", "lab-portal",
                           "--issuer", "https://auth.lab.example"))
    # The override replaces the default: the platform's own token is now foreign.
    plain = mint_hs256(platform_claims())
    expect_rejected(verify(plain, "--secret", SECRET, "--audience", "lab-portal"), "wrong_audience")
    expect_rejected(verify(plain, "--secret", SECRET, "--issuer", "https://auth.lab.example"),
                    "wrong_issuer")
    # Audience arrays.
    arr = mint_hs256(platform_claims(aud=["x", "omnibioai-platform"]))
    expect_accepted(verify(arr, "--secret", SECRET))


def t_pem(keys):
    key = keys["a"]
    tok = key.sign_rs256(platform_claims())
    expect_accepted(verify(tok, "--pem", key.public_path))
    # With the platform's kid in the header: the kid-less PEM key is still tried.
    tok_kid = key.sign_rs256(platform_claims(), kid=key.kid)
    expect_accepted(verify(tok_kid, "--pem", key.public_path))
    # Signed by another RSA key.
    other = keys["b"].sign_rs256(platform_claims())
    expect_rejected(verify(other, "--pem", key.public_path), "bad_signature")
    # An HS256 token against an RSA-only key set.
    expect_rejected(verify(mint_hs256(platform_claims()), "--pem", key.public_path), "unknown_key")
    # A private key is refused as configuration.
    expect_usage(verify(tok, "--pem", key.private_path))
    expect_usage(verify(tok, "--pem", os.path.join(TMP, "missing.pem")))


def t_jwks(keys):
    a, b = keys["a"], keys["b"]
    path = os.path.join(TMP, "jwks.json")
    with open(path, "w") as f:
        json.dump({"keys": [a.jwk(), b.jwk()]}, f)
    expect_accepted(verify(a.sign_rs256(platform_claims(), kid=a.kid), "--jwks", path))
    expect_accepted(verify(b.sign_rs256(platform_claims(), kid=b.kid), "--jwks", path))
    expect_accepted(verify(b.sign_rs256(platform_claims()), "--jwks", path))  # no kid: all tried
    # kid of one key, signature by the other.
    expect_rejected(verify(b.sign_rs256(platform_claims(), kid=a.kid), "--jwks", path),
                    "bad_signature")
    expect_rejected(verify(a.sign_rs256(platform_claims(), kid="0000000000000000"), "--jwks", path),
                    "unknown_key")
    # Not a JWKS / no usable key.
    bad = os.path.join(TMP, "not-jwks.json")
    with open(bad, "w") as f:
        f.write('{"nokeys":[]}')
    expect_usage(verify(a.sign_rs256(platform_claims()), "--jwks", bad))
    with open(bad, "w") as f:
        f.write('{"keys":[{"kty":"XYZ"}]}')
    expect_usage(verify(a.sign_rs256(platform_claims()), "--jwks", bad))


def t_secret_and_jwks(keys):
    a = keys["a"]
    path = os.path.join(TMP, "jwks-a.json")
    with open(path, "w") as f:
        json.dump({"keys": [a.jwk()]}, f)
    hs = mint_hs256(platform_claims())
    rs = a.sign_rs256(platform_claims(), kid=a.kid)
    expect_accepted(verify(hs, "--secret", SECRET, "--jwks", path))
    expect_accepted(verify(rs, "--secret", SECRET, "--jwks", path))
    expect_accepted(verify(hs, "--jwks", path, "--secret", SECRET))
    expect_accepted(verify(rs, "--jwks", path, "--secret", SECRET))
    # An HS256 token "signed" with the RSA public key's PEM text is still refused.
    # (Minted by hand: PyJWT itself refuses a PEM as an HMAC secret.)
    confused = _manual_hs256({"alg": "HS256", "typ": "JWT"}, compact_json(platform_claims()),
                             a.public_pem.decode())
    r = verify(confused, "--secret", SECRET, "--jwks", path)
    check(r.code == 1 and r.err.startswith("error: bad_signature: "),
          "HS256 keyed with the PEM must fail against the real secret", r)
    expect_rejected(verify(confused, "--jwks", path), "unknown_key")


def t_jws_verify():
    payload = b"hello, not json"
    jws = mint_jws_hs256(payload)
    r = run("jws-verify", "--secret", SECRET, jws)
    check(r.code == 0, "jws-verify exit 0", r)
    check(r.out == payload.decode() + "\n", "jws-verify prints the payload", r)
    # Through stdin.
    r = run("jws-verify", "--secret", SECRET, "-", stdin=(jws + "\n").encode())
    check(r.code == 0 and r.out == payload.decode() + "\n", "jws-verify from stdin", r)
    # No claim checks: an expired claim set is fine.
    claims = compact_json({"exp": 1})
    r = run("jws-verify", "--secret", SECRET, mint_jws_hs256(claims))
    check(r.code == 0 and r.out.strip() == claims.decode(), "jws-verify ignores claims", r)
    # Tampered: payload replaced under the original signature.
    h, _, s = jws.split(".")
    tampered = h + "." + b64url(b"hello, not jsoN") + "." + s
    r = run("jws-verify", "--secret", SECRET, tampered)
    expect_rejected(r, "bad_signature")
    # Changed last signature character.
    expect_rejected(run("jws-verify", "--secret", SECRET, flip_last(jws)), "bad_signature")
    # Wrong key.
    expect_rejected(run("jws-verify", "--secret", OTHER_SECRET, jws), "bad_signature")


def t_jws_verify_jwk(keys):
    a = keys["a"]
    jwk_path = os.path.join(TMP, "a.jwk.json")
    with open(jwk_path, "w") as f:
        json.dump(a.jwk(), f)
    tok = a.sign_rs256(platform_claims(), kid=a.kid)
    r = run("jws-verify", "--jwk", jwk_path, tok)
    check(r.code == 0, "jws-verify --jwk exit 0", r)
    check(json.loads(r.out).get("sub") == "2", "jws-verify --jwk prints the claims", r)
    other = keys["b"].sign_rs256(platform_claims())
    expect_rejected(run("jws-verify", "--jwk", jwk_path, other), "bad_signature")


def t_demo_version_noargs():
    r = run("demo")
    check(r.code == 0, "demo exit 0", r)
    check("Refused" in r.out, "demo prints 'Refused'", r)
    r = run("version")
    check(r.code == 0, "version exit 0", r)
    check("iamctl" in r.out and r.out.strip() != "", "version prints something", r)
    r = run()
    check(r.code == 2, "no arguments exit 2", r)
    check(r.err.strip() != "", "no arguments prints usage on stderr", r)
    r = run("help")
    check(r.code == 0 and "usage" in r.out, "help exit 0 with usage", r)


def t_messages_carry_no_token():
    tok = mint_hs256(platform_claims(aud="someone-else"))
    r = verify(tok, "--secret", SECRET)
    expect_rejected(r, "wrong_audience")
    for part in tok.split("."):
        check(part not in r.err, "a token segment appears on stderr", r)
    check("user@example.org" not in r.err, "the email appears on stderr", r)


def t_secret_never_on_stderr():
    # Runs last: every stderr captured by every test so far.
    check(len(ALL_STDERR) > 20, "expected stderr from earlier tests")
    for r, err in ALL_STDERR:
        for s in SECRETS:
            check(s not in err, "a secret (%s...) appears on stderr" % s[:6], r)


# --------------------------------------------------------------------------- main

def t_stdin_past_limit_is_too_large():
    # A valid token followed by more than the limit of input: what lies past the limit is
    # never ignored (it used to be cut off and the token accepted).
    tok = mint_hs256(platform_claims())
    data = (tok + "\n" * 20000 + "NOT-A-TOKEN.x.y").encode()
    r = run("verify", "--secret", SECRET, "--now", str(NOW), "-", stdin=data)
    expect_rejected(r, "too_large")


def t_option_values_never_echoed():
    # A token or secret mistakenly passed as an option value must not reach stderr.
    tok = mint_hs256(platform_claims())
    for opt in ("--leeway", "--now", "--jwks", "--pem", "--secret-file"):
        r = run("verify", "--secret", SECRET, opt, tok, tok)
        check(r.code == 2, "%s with a token as value: expected exit 2" % opt, r)
        check(tok not in r.err and tok[-20:] not in r.err, "%s echoed its value" % opt, r)
    r = run("verify", "--secret", SECRET, "--leeway", " 5", tok)
    check(r.code == 2, "--leeway ' 5' must be refused", r)


# --------------------------------------------------------------------------- the Redis tier

def _redis_server():
    """A real redis-server on a free loopback port (tests/authsvc/redis_server.py)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "authsvc"))
    from redis_server import RedisServer  # noqa: E402 (path set just above)
    return RedisServer()


def t_redis_verify_revoke(rs):
    r = rs.client()
    jti = "cli-redis-%d" % time.time_ns()
    tok = mint_hs256(platform_claims(jti=jti))
    res = verify(tok, "--secret", SECRET, "--redis", rs.url)
    expect_accepted(res)
    keys = [k.decode() for k in r.keys("*")]
    records = [k for k in keys if k.startswith("iam:v1:cache:")]
    check(len(records) == 1, "one shared record expected, keys: %r" % keys, res)
    sig = tok.rsplit(".", 1)[1]
    for k in keys:
        v = r.get(k) if r.type(k) == b"string" else b""
        check(sig not in k and tok not in k, "a key holds the token", res)
        check(sig.encode() not in v and tok.encode() not in v, "a value holds the token", res)
    body = r.get(records[0]).decode()
    check('"org_id":"7"' in body, "record identifiers are not strings: %r" % body[:200], res)
    check(0 < r.pttl(records[0]) <= 300 * 1000, "record TTL beyond the cache TTL", res)
    p = r.pubsub()
    p.subscribe("policy:invalidate")
    p.get_message(timeout=2)  # the subscription's confirmation
    rv = run("revoke", "--redis", rs.url, "--secret", SECRET, tok)
    check(rv.code == 0 and json.loads(rv.out) == {"revoked": True}, "revoke failed", rv)
    ttl = r.ttl("blacklist:jti:" + jti)
    check(0 < ttl <= EXP - int(time.time()) + 1, "blacklist TTL %d not up to exp" % ttl, rv)
    check(r.get("blacklist:jti:" + jti) == b"1", "blacklist value is not \"1\"", rv)
    check(r.exists(records[0]) == 0, "revoke left the shared record", rv)
    msg = None
    for _ in range(50):
        m = p.get_message(timeout=0.1)
        if m and m["type"] == "message":
            msg = m["data"].decode()
            break
    check(msg is not None and msg.startswith('{"user_id": "2", "jti": "%s", "origin": "' % jti)
          and set(json.loads(msg)) == {"user_id", "jti", "origin"}, "published %r" % msg, rv)
    p.close()
    expect_rejected(verify(tok, "--secret", SECRET, "--redis", rs.url), "revoked")
    # without Redis nothing is known of it: local verification alone accepts
    expect_accepted(verify(tok, "--secret", SECRET))


def t_redis_watch(rs):
    r = rs.client()
    proc = subprocess.Popen([IAMCTL, "watch", "--redis", rs.url, "--count", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env())
    try:
        first = proc.stdout.readline().decode()
        check(json.loads(first) == {"event": "subscribed", "channel": "policy:invalidate"},
              "first line %r" % first)
        refresh = mint_hs256(platform_claims(type="refresh"))
        r.publish("policy:invalidate", '{"user_id": "2", "token": "%s"}' % refresh)
        r.publish("policy:invalidate", '{"user_id": 5, "jti": "j-9"}')
        r.publish("policy:invalidate", "not json")
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    check(proc.returncode == 0, "watch exited %r: %r" % (proc.returncode, err))
    lines = [json.loads(line) for line in out.decode().splitlines()]
    fp = hashlib.sha256(refresh.encode()).hexdigest()[:16]
    check(lines[0] == {"event": "message", "user_id": "2", "token_sha256_16": fp}, "line %r" % lines[0])
    check(lines[1] == {"event": "message", "user_id": "5", "jti": "j-9"}, "line %r" % lines[1])
    check(lines[2] == {"event": "malformed"}, "line %r" % lines[2])
    check(refresh not in out.decode() and refresh.rsplit(".", 1)[1] not in out.decode(),
          "watch printed the token")


def t_redis_watch_closed_pipe(rs):
    """`iamctl watch | head -n 1`: once head has gone, the next message ends watch the way a
    filter ends on a closed pipe (SIGPIPE). The library's I/O thread, which prints, blocks
    SIGPIPE; before watch checked its writes, it kept running forever."""
    r = rs.client()
    watch = subprocess.Popen([IAMCTL, "watch", "--redis", rs.url], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=base_env())
    try:
        first = watch.stdout.readline().decode()
        check(json.loads(first)["event"] == "subscribed", "first line %r" % first)
        watch.stdout.close()  # the reader goes away
        for i in range(20):
            r.publish("policy:invalidate", '{"user_id": "%d"}' % i)
            try:
                watch.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                pass
        try:
            rc = watch.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == -signal.SIGPIPE, "watch writing into a closed pipe: exit %r, expected death by "
              "SIGPIPE" % rc)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()


def t_redis_watch_closed_pipe_quiet(rs):
    """The same on a quiet channel: watch notices its reader has gone without a message to
    write (the pipe's write end reports the error), within its 100 ms tick."""
    watch = subprocess.Popen([IAMCTL, "watch", "--redis", rs.url], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=base_env())
    try:
        first = watch.stdout.readline().decode()
        check(json.loads(first)["event"] == "subscribed", "first line %r" % first)
        watch.stdout.close()
        try:
            rc = watch.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == -signal.SIGPIPE, "watch, reader gone on a quiet channel: exit %r" % rc)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()


def t_redis_watch_unreachable(rs):
    """A mistyped URL does not look like a quiet channel: watch says on stderr that it is not
    subscribed (without the URL, which may hold a password) and goes on trying."""
    watch = subprocess.Popen([IAMCTL, "watch", "--redis", "redis://:pw-s3cret@127.0.0.1:1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env())
    try:
        time.sleep(4.5)
        check(watch.poll() is None, "watch gave up on an unreachable Redis")
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=5)
        err = err.decode()
        check("not subscribed after 3 s" in err and "cannot be reached" in err,
              "no word of the missing subscription: %r" % err)
        check("pw-s3cret" not in err and "127.0.0.1:1" not in err, "the URL was echoed: %r" % err)
        check(out == b"", "watch printed %r" % out)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()


def t_redis_watch_signals(rs):
    """SIGINT and SIGTERM end watch at once, with exit 0."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        watch = subprocess.Popen([IAMCTL, "watch", "--redis", rs.url], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=base_env())
        try:
            first = watch.stdout.readline().decode()
            check(json.loads(first)["event"] == "subscribed", "first line %r" % first)
            watch.send_signal(sig)
            try:
                rc = watch.wait(timeout=5)
            except subprocess.TimeoutExpired:
                rc = None
            check(rc == 0, "watch after %s: exit %r" % (sig.name, rc))
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait()


def t_redis_usage(rs):
    tok = mint_hs256(platform_claims())
    res = verify(tok, "--secret", SECRET, "--redis", "rediss://:pw-s3cret@127.0.0.1:1")
    expect_usage(res)
    check("TLS" in res.err and "hiredis" in res.err and "pw-s3cret" not in res.err, "rediss message", res)
    expect_usage(run("revoke", tok))                       # --redis is required
    expect_usage(run("watch"))
    expect_usage(run("watch", "--redis", rs.url, "extra"))
    # nothing listens on port 1: no decision (fail-closed), exit 2 with the reason
    res = verify(tok, "--secret", SECRET, "--redis", "redis://127.0.0.1:1")
    check(res.code == 2 and res.err.startswith("error: unavailable: "), "unreachable Redis", res)
    res = run("revoke", "--redis", "redis://127.0.0.1:1", tok)
    check(res.code == 1 and res.err.startswith("error: unavailable: "), "revoke, unreachable Redis", res)
    res = run("revoke", "--redis", rs.url, mint_hs256(platform_claims(jti=DROP)))
    check(res.code == 2 and res.err.startswith("error: missing_claim: "), "revoke without jti", res)


def t_auth_service():
    """verify --auth-url URL [--mode central]: through the test auth service."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "authsvc"))
    from authsvc import AuthService
    env = base_env()
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(name, None)
    with AuthService() as svc:
        tok = svc.mint(user_id=3)
        r = verify(tok, "--auth-url", svc.url, "--mode", "central", now=None, env=env)
        expect_accepted(r, user_id="3", org_id="1")
        check(svc.stats()["validate"] == 1, "central mode asked the service once", r)
        # local-first: RS256 keys come from the service's JWKS; no validation call
        rs = svc.mint(user_id=1, alg="RS256")
        r = verify(rs, "--auth-url", svc.url, now=None, env=env)
        expect_accepted(r, user_id="1", org_id="7")
        check(svc.stats()["validate"] == 1, "local-first verified RS256 with fetched keys", r)
        r = verify(rs, "--jwks-url", svc.url + "/.well-known/jwks.json", now=None, env=env)
        expect_accepted(r, user_id="1", org_id="7")
        refresh = svc.mint(type="refresh")
        expect_rejected(verify(refresh, "--auth-url", svc.url, "--mode", "central", now=None, env=env),
                        "wrong_type")
        forged = svc.mint(secret="not-the-service-secret-0123456789abcdef")
        expect_rejected(verify(forged, "--auth-url", svc.url, "--mode", "central", now=None, env=env),
                        "denied")
        svc.mode("error500")
        r = verify(tok, "--auth-url", svc.url, "--mode", "central", "--auth-timeout", "2000", now=None, env=env)
        check(r.code == 2 and r.err.startswith("error: unavailable: "), "unavailable is exit 2", r)
        check(tok not in r.err, "no token on stderr", r)
        svc.mode("normal")
    expect_usage(run("verify", "--mode", "central", "x.y.z"))
    expect_usage(run("verify", "--mode", "sideways", "--auth-url", "http://127.0.0.1:9", "x.y.z"))


def main():
    global IAMCTL, TMP
    if len(sys.argv) != 2:
        print("usage: %s <path-to-iamctl>" % sys.argv[0], file=sys.stderr)
        return 2
    IAMCTL = os.path.abspath(sys.argv[1])
    if not os.access(IAMCTL, os.X_OK):
        print("not an executable: %s" % IAMCTL, file=sys.stderr)
        return 2
    if jwt is None:
        print("note: PyJWT ('import jwt') is not available to %s; minting HS256 with "
              "hmac/base64 and RS256 with %s" % (
                  sys.executable,
                  "python3-cryptography" if rsa is not None else "the openssl command"))
    TMP = tempfile.mkdtemp(prefix="iamctl-test-")
    passed = failed = 0
    try:
        keys = {}
        key_error = None
        try:
            keys = {"a": RsaKey(TMP, "a"), "b": RsaKey(TMP, "b")}
        except Exception as e:  # no way to make RSA keys here
            key_error = e
        tests = [
            ("accepted", t_accepted, False),
            ("rejected_codes", t_rejected_codes, False),
            ("usage_errors", t_usage_errors, False),
            ("stdin", t_stdin, False),
            ("secret_file", t_secret_file, False),
            ("env_secret", t_env_secret, False),
            ("now_and_leeway", t_now, False),
            ("audience_issuer_overrides", t_overrides, False),
            ("pem", t_pem, True),
            ("jwks", t_jwks, True),
            ("secret_and_jwks", t_secret_and_jwks, True),
            ("jws_verify", t_jws_verify, False),
            ("jws_verify_jwk", t_jws_verify_jwk, True),
            ("demo_version_noargs", t_demo_version_noargs, False),
            ("messages_carry_no_token", t_messages_carry_no_token, False),
            ("secret_never_on_stderr", t_secret_never_on_stderr, False),
            ("stdin_past_limit_is_too_large", t_stdin_past_limit_is_too_large, False),
            ("option_values_never_echoed", t_option_values_never_echoed, False),
            ("auth_service", t_auth_service, False),
        ]
        rs = None
        if shutil.which("redis-server"):
            rs = _redis_server()
            tests += [("redis_verify_revoke", t_redis_verify_revoke, "redis"),
                      ("redis_watch", t_redis_watch, "redis"),
                      ("redis_watch_closed_pipe", t_redis_watch_closed_pipe, "redis"),
                      ("redis_watch_closed_pipe_quiet", t_redis_watch_closed_pipe_quiet, "redis"),
                      ("redis_watch_signals", t_redis_watch_signals, "redis"),
                      ("redis_watch_unreachable", t_redis_watch_unreachable, "redis"),
                      ("redis_usage", t_redis_usage, "redis")]
        else:
            print("FAIL redis: redis-server is not installed (scripts/install-deps.sh installs it)")
            failed += 1
        for name, fn, needs_keys in tests:
            try:
                if needs_keys == "redis":
                    fn(rs)
                elif needs_keys:
                    if key_error is not None:
                        raise Failure("cannot create RSA keys: %s" % key_error)
                    fn(keys)
                else:
                    fn()
                passed += 1
                print("PASS %s" % name)
            except Failure as e:
                failed += 1
                print("FAIL %s: %s" % (name, e))
            except Exception as e:  # a crash in the test itself is a failure too
                failed += 1
                print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
    finally:
        if rs is not None:
            rs.stop()
        shutil.rmtree(TMP, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
