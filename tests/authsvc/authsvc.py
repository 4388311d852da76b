#!/usr/bin/env python3
"""
authsvc.py -- a test stand-in for the platform's central auth service (omnibioai-auth).

It speaks the wire contract of docs/platform/CONTRACT.md (a copy of the platform's
shared/CONTRACT.md: "Central auth service", "Access tokens", "Redis conventions") and is
written independently of the C library:
tokens are signed here by hand (hmac / cryptography) and checked with PyJWT, so what the
library's tests get from it is an outside opinion, not the library grading itself.

Run as a script (Debian's /usr/bin/python3, which has python3-jwt, -cryptography, -redis):

    python3 tests/authsvc/authsvc.py --port 0 [--host 127.0.0.1] [--secret S | --secret-file F]
        [--redis-url redis://127.0.0.1:PORT] [--issuer omnibioai-auth]
        [--audience omnibioai-platform] [--alg HS256|RS256] [--jwks-max-age 300]
        [--rsa-key PRIVATE.pem] [--verbose]

It prints exactly one line, "PORT <n>", on stdout once it accepts connections, and exits 0
on SIGTERM or SIGINT (requests still hanging or sleeping never delay that).

Contract endpoints: POST /auth/validate, GET /.well-known/jwks.json, GET /health,
POST /auth/login, POST /auth/logout. Test-control endpoints live under /_test/ (mint,
rotate, mode, config, stats, stats/reset, revoke, publish); they are not part of the
contract and are never affected by a misbehaviour mode. The docstring of Handler lists them.

Imported, it offers AuthService: starts this script as a subprocess on a free port and
drives it (see the class). RedisServer (a real redis-server for Python tests) is in
redis_server.py beside this file.
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from urllib.parse import urlsplit

# PyJWT and cryptography are imported lazily by the server code only, so that a test
# file can import the AuthService helper from an interpreter that lacks them.

DEFAULT_SECRET = "omnibioai-authsvc-test-secret-0123456789abcdef"  # >= 32 bytes (HS256)
DEFAULT_ISSUER = "omnibioai-auth"
DEFAULT_AUDIENCE = "omnibioai-platform"
ACCESS_TTL_S = 15 * 60          # "issued for 15 minutes"
REFRESH_TTL_S = 7 * 24 * 3600
TOKEN_VERSION = 2
SCHEMA_VERSION = 2              # the /auth/validate success body's schema_version
MAX_BODY_BYTES = 1 << 20
IDLE_TIMEOUT_S = 120            # an idle keep-alive connection is closed after this

VALIDATE = "/auth/validate"
JWKS = "/.well-known/jwks.json"
HEALTH = "/health"
LOGIN = "/auth/login"
LOGOUT = "/auth/logout"
CONTRACT_PATHS = (VALIDATE, JWKS, HEALTH, LOGIN, LOGOUT)
DEFAULT_MODE_PATHS = (VALIDATE, JWKS)

BLACKLIST_PREFIX = "blacklist:jti:"
INVALIDATE_CHANNEL = "policy:invalidate"

# The built-in user table: login accepts any password for these emails; /_test/mint
# takes their claims by user_id. User 4 is "freshly registered" (CONTRACT.md).
USERS = {
    1: {"email": "researcher@example.org", "roles": ["researcher"],
        "permissions": ["dataset.read", "workflow.execute"], "org_id": 7,
        "org_role": ["member"], "team_id": None, "team_role": None, "idp_org_id": None,
        "mfa_verified": False},
    2: {"email": "user@example.org", "roles": ["user", "scientist"],
        "permissions": ["dataset.read", "model.use", "workflow.execute"], "org_id": 7,
        "org_role": ["member"], "team_id": None, "team_role": None, "idp_org_id": None,
        "mfa_verified": True},
    3: {"email": "admin@example.org", "roles": ["admin", "user"],
        "permissions": ["dataset.read", "dataset.write", "manage_all_orgs", "model.use",
                        "workflow.execute"], "org_id": 1, "org_role": ["org_admin"],
        "team_id": 11, "team_role": "admin", "idp_org_id": None, "mfa_verified": True},
    4: {"email": "new@example.org", "roles": ["user"], "permissions": [], "org_id": None,
        "org_role": [], "team_id": None, "team_role": None, "idp_org_id": None,
        "mfa_verified": False},
    5: {"email": "other-lab@example.org", "roles": ["user", "scientist"],
        "permissions": ["dataset.read"], "org_id": 8, "org_role": ["member"],
        "team_id": 21, "team_role": None, "idp_org_id": 3, "mfa_verified": False},
}
DEFAULT_USER_ID = 2
# Service identities (client_credentials): no sub, no email.
SERVICES = {
    "svc-pipeline": {"scopes": ["workflow.execute", "dataset.read"], "org_id": 7},
    "svc-ingest": {"scopes": ["dataset.write"], "org_id": 8},
}
DEFAULT_SERVICE = "svc-pipeline"

# What lie_valid answers for any token: a fixed, deliberately powerful user.
LIE_BODY = {"valid": True, "user_id": 99, "email": "liar@example.org", "roles": ["admin"],
            "permissions": ["manage_all_orgs", "dataset.read", "workflow.execute"],
            "org_id": 7, "org_role": ["org_admin"], "team_id": None, "team_role": None,
            "auth_method": "password", "idp_org_id": None, "schema_version": SCHEMA_VERSION}

MODES = ("normal", "slow", "error500", "garbage", "drop", "hang", "wrong_shape",
         "invalid_json_type", "lie_valid", "deny_all", "close", "chunked", "truncated", "huge")
GARBAGE_BODY = b"<html><body>502 Bad Gateway \xff not JSON</body></html>"
WRONG_SHAPES = {
    # /auth/validate: JSON objects that are not the contract's answer.
    "valid_string": dict(LIE_BODY, valid="yes"),
    "missing_user_id": {k: v for k, v in LIE_BODY.items() if k != "user_id"},
    "missing_valid": {k: v for k, v in LIE_BODY.items() if k != "valid"},
    "roles_not_list": dict(LIE_BODY, roles="admin"),
    "user_id_bool": dict(LIE_BODY, user_id=True),
}
JWKS_WRONG_SHAPES = {"keys_not_list": {"keys": "none"}, "no_keys": {"jwks": []},
                     "key_not_object": {"keys": ["RSA"]}}
NOT_OBJECTS = {"array": [{"valid": True}], "string": "valid", "null": None, "number": 1,
               "true": True}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def int_to_b64url(n):
    return b64url(n.to_bytes((n.bit_length() + 7) // 8 or 1, "big"))


# --------------------------------------------------------------------------- keys

class RsaKey:
    """One RS256 signing key with its platform kid and its JWK."""

    def __init__(self, private_key):
        from cryptography.hazmat.primitives import serialization
        self.private = private_key
        self.public = private_key.public_key()
        # The kid is the first 16 hex digits of SHA-256 over the SPKI PEM text, exactly
        # as serialised (with its trailing newline), as the platform's service does.
        self.pem = self.public.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = hashlib.sha256(self.pem).hexdigest()[:16]
        numbers = self.public.public_numbers()
        self.jwk = {"kty": "RSA", "n": int_to_b64url(numbers.n), "e": int_to_b64url(numbers.e),
                    "alg": "RS256", "use": "sig", "kid": self.kid}

    @classmethod
    def generate(cls):
        from cryptography.hazmat.primitives.asymmetric import rsa
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def from_pem_file(cls, path):
        from cryptography.hazmat.primitives import serialization
        with open(path, "rb") as f:
            return cls(serialization.load_pem_private_key(f.read(), password=None))


class KeyRing:
    """The RSA keys: the current one signs, the published ones are in the JWKS, and every
    key ever published still verifies (like a service that keeps old keys for validation)."""

    def __init__(self, initial, max_age):
        self._lock = threading.Lock()
        self._history = {initial.kid: initial}
        self._published = [initial]           # newest first
        self._unpublished = None              # a throwaway key, made on first use
        self.max_age = max_age                # None: no Cache-Control header
        self._refresh_document()

    def _refresh_document(self):
        self._jwks_body = compact({"keys": [k.jwk for k in self._published]})
        self._etag = '"%s"' % hashlib.sha256(self._jwks_body).hexdigest()[:32]

    def current(self):
        with self._lock:
            return self._published[0]

    def rotate(self, drop_old):
        key = RsaKey.generate()               # slow part outside the lock
        with self._lock:
            self._history[key.kid] = key
            self._published = [key] if drop_old else [key] + self._published
            self._refresh_document()
            return key.kid, [k.kid for k in self._published]

    def unpublished(self):
        with self._lock:
            key = self._unpublished
        if key is None:
            key = RsaKey.generate()
            with self._lock:
                self._unpublished = self._unpublished or key
                key = self._unpublished
        return key

    def verification_keys(self, kid):
        """Keys to try for a token: the one its kid names, or all of them without a kid."""
        with self._lock:
            if kid is None:
                return list(self._history.values())
            key = self._history.get(kid) if isinstance(kid, str) else None
            return [key] if key else []

    def document(self):
        with self._lock:
            return self._jwks_body, self._etag, self.max_age

    def published_kids(self):
        with self._lock:
            return [k.kid for k in self._published]


# --------------------------------------------------------------------------- tokens

HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def sign_jws(header, claims, alg, hmac_key=None, rsa_key=None):
    """Compact JWS signed by hand (not through PyJWT), so validation by PyJWT checks it."""
    signing_input = (b64url(compact(header)) + "." + b64url(compact(claims))).encode("ascii")
    if alg == "none":
        sig = b""
    elif alg[:2] == "HS" and alg[2:] in HASHES:
        key = hmac_key.encode("utf-8") if isinstance(hmac_key, str) else hmac_key
        sig = hmac.new(key, signing_input, HASHES[alg[2:]]).digest()
    elif alg[:2] in ("RS", "PS") and alg[2:] in HASHES:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        h = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}[alg[2:]]()
        pad = padding.PKCS1v15() if alg[:2] == "RS" else \
            padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        sig = rsa_key.private.sign(signing_input, pad, h)
    else:
        raise ValueError("unsupported alg for minting: %r" % (alg,))
    return signing_input.decode("ascii") + "." + b64url(sig)


def user_claims(user_id):
    """Claims of a user token (CONTRACT.md table order), before type/jti/exp/iss/aud."""
    try:
        known = USERS.get(int(user_id))
    except (TypeError, ValueError):
        known = None
    u = known or {"email": "user%s@example.org" % (user_id,), "roles": ["user"],
                  "permissions": [], "org_id": None, "org_role": [], "team_id": None,
                  "team_role": None, "idp_org_id": None, "mfa_verified": False}
    return {"sub": str(user_id), "email": u["email"], "roles": list(u["roles"]),
            "permissions": list(u["permissions"]), "org_id": u["org_id"],
            "org_role": list(u["org_role"]), "team_id": u["team_id"],
            "team_role": u["team_role"], "auth_method": "password",
            "idp_org_id": u["idp_org_id"], "token_version": TOKEN_VERSION,
            "mfa_verified": u["mfa_verified"]}


def service_claims(client_id):
    s = SERVICES.get(client_id, {"scopes": [], "org_id": None})
    return {"client_id": client_id, "scopes": list(s["scopes"]), "org_id": s["org_id"],
            "auth_method": "client_credentials", "token_version": TOKEN_VERSION}


def as_int_id(value):
    """An id for the validate body: integers pass, decimal strings become integers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


# --------------------------------------------------------------------------- redis

class RedisLink:
    """Blacklist and invalidation through Redis. Like the platform's service it fails open:
    an unreachable Redis means "not revoked" and a logout that cannot publish still succeeds."""

    def __init__(self, url, verbose):
        self.url = url
        self.verbose = verbose
        self.client = None
        if url:
            import redis  # Debian python3-redis
            # Short timeouts: a test that stops Redis must not stall validate for long.
            self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def _warn(self, what, exc):
        if self.verbose:
            sys.stderr.write("authsvc: redis %s failed (fail open): %s\n"
                             % (what, type(exc).__name__))

    def is_revoked(self, jti):
        if not self.client or not isinstance(jti, str):
            return False
        try:
            return bool(self.client.exists(BLACKLIST_PREFIX + jti))
        except Exception as exc:  # any Redis failure: fail open, as the platform does
            self._warn("EXISTS", exc)
            return False

    def revoke(self, jti, ttl):
        if not self.client:
            return False
        try:
            self.client.set(BLACKLIST_PREFIX + jti, "1", ex=max(1, int(ttl)))
            return True
        except Exception as exc:
            self._warn("SET", exc)
            return False

    def publish_invalidation(self, user_id, token):
        """Publishes the contract's exact bytes: json.dumps' default separators give the
        spaces after ':' and ',' that the platform's consumers see."""
        if not self.client:
            return None
        message = json.dumps({"user_id": str(user_id), "token": token})
        try:
            return self.client.publish(INVALIDATE_CHANNEL, message)
        except Exception as exc:
            self._warn("PUBLISH", exc)
            return None


# --------------------------------------------------------------------------- modes

class ModeState:
    """The current misbehaviour. `generation` changes only when a test sets a mode (or the
    server stops): that is what releases hanging requests. A mode that runs out of `count`
    reverts to normal without releasing them, so "hang one request" stays hung."""

    def __init__(self):
        self._cond = threading.Condition()
        self._generation = 0
        self._stopping = False
        self._set_locked({"mode": "normal"})

    def _set_locked(self, spec):
        self.mode = spec.get("mode", "normal")
        self.delay_ms = int(spec.get("delay_ms") or 0)
        self.count = spec.get("count")
        paths = spec.get("paths")
        self.paths = tuple(paths) if paths else DEFAULT_MODE_PATHS
        self.variant = spec.get("variant")
        self.status = int(spec.get("status") or 500)
        self.size = int(spec.get("size") or (2 << 20))

    @staticmethod
    def check(spec):
        """Returns an error message for a bad /_test/mode body, or None."""
        if not isinstance(spec, dict):
            return "body must be a JSON object"
        mode = spec.get("mode", "normal")
        if mode not in MODES:
            return "unknown mode %r; modes: %s" % (mode, ", ".join(MODES))
        for name in ("delay_ms", "count", "status", "size"):
            v = spec.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                return "%s must be a non-negative integer" % name
        if spec.get("count") == 0:
            return "count must be at least 1 (omit it for 'until changed')"
        status = spec.get("status")
        if status is not None and not 100 <= status <= 599:
            return "status must be an HTTP status (100-599)"
        paths = spec.get("paths")
        if paths is not None:
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                return "paths must be a list of strings"
            if any(p.startswith("/_test/") for p in paths):
                return "/_test/ paths are never affected by modes"
        variant = spec.get("variant")
        known = {"wrong_shape": set(WRONG_SHAPES) | set(JWKS_WRONG_SHAPES),
                 "invalid_json_type": set(NOT_OBJECTS)}.get(mode)
        if variant is not None and (known is None or variant not in known):
            return "variant %r does not apply to mode %r" % (variant, mode)
        return None

    def set(self, spec):
        with self._cond:
            self._set_locked(spec)
            self._generation += 1
            self._cond.notify_all()
            return self.describe_locked()

    def describe_locked(self):
        return {"mode": self.mode, "delay_ms": self.delay_ms, "count": self.count,
                "paths": list(self.paths), "variant": self.variant, "status": self.status,
                "size": self.size}

    def describe(self):
        with self._cond:
            return self.describe_locked()

    def take(self, path):
        """The misbehaviour for this request (a snapshot dict), or None for normal."""
        with self._cond:
            if self.mode == "normal" or (path not in self.paths and "*" not in self.paths):
                return None
            action = self.describe_locked()
            action["generation"] = self._generation
            if self.count is not None:
                self.count -= 1
                if self.count <= 0:
                    self._set_locked({"mode": "normal"})   # generation unchanged: see class doc
            return action

    def sleep(self, seconds):
        """Sleeps, but returns at once when the server stops."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopping, timeout=seconds)

    def hang(self, generation):
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or self._generation != generation)

    def stop(self):
        with self._cond:
            self._stopping = True
            self._cond.notify_all()


# --------------------------------------------------------------------------- stats

class Stats:
    COUNTERS = ("validate", "validate_valid", "validate_invalid", "jwks", "jwks_200",
                "jwks_304", "health", "login", "logout", "misbehaved", "connections")

    def __init__(self):
        self._lock = threading.Lock()
        self.in_flight = 0
        self.reset()

    def reset(self):
        with self._lock:
            self._counts = dict.fromkeys(self.COUNTERS, 0)
            self._paths = {}

    def add(self, name, n=1):
        with self._lock:
            self._counts[name] += n

    def request(self, path):
        with self._lock:
            self._paths[path] = self._paths.get(path, 0) + 1

    def flight(self, n):
        with self._lock:
            self.in_flight += n

    def snapshot(self):
        with self._lock:
            out = dict(self._counts)
            out["requests"] = dict(self._paths)
            out["in_flight"] = self.in_flight
            return out


# --------------------------------------------------------------------------- service

class AuthState:
    """Everything the handlers share. Each part has its own lock."""

    def __init__(self, secret, issuer, audience, alg, redis_url, jwks_max_age, rsa_key_file,
                 verbose):
        self.secret = secret
        self.issuer = issuer
        self.audience = audience
        self.alg = alg
        self.verbose = verbose
        initial = RsaKey.from_pem_file(rsa_key_file) if rsa_key_file else RsaKey.generate()
        self.keys = KeyRing(initial, jwks_max_age)
        self.redis = RedisLink(redis_url, verbose)
        self.modes = ModeState()
        self.stats = Stats()

    # ---- minting

    def mint(self, spec):
        """Mints a token from a /_test/mint spec (see Handler). Returns the reply dict."""
        alg = spec.get("alg") or self.alg
        token_type = spec.get("type") or "access"
        service = spec.get("service")
        if service is not None:                 # true: the default service identity
            claims = service_claims(DEFAULT_SERVICE if service is True else str(service))
        else:
            user_id = spec.get("user_id")
            claims = user_claims(DEFAULT_USER_ID if user_id is None else user_id)
        ttl = spec.get("ttl")
        if ttl is None:
            ttl = ACCESS_TTL_S if token_type == "access" else REFRESH_TTL_S
        claims.update({"type": token_type, "jti": str(uuid.uuid4()),
                       "exp": int(time.time()) + int(ttl), "iss": self.issuer,
                       "aud": self.audience})
        for name, value in (spec.get("claims") or {}).items():
            if value is None:
                claims.pop(name, None)          # null removes a claim
            else:
                claims[name] = value
        for name in spec.get("null_claims") or ():
            claims[name] = None                 # ...and this sets one to JSON null

        rsa_key = None
        header = {"alg": alg}
        if alg[:2] in ("RS", "PS"):
            rsa_key = self.keys.unpublished() if spec.get("unpublished_key") \
                else self.keys.current()
            header["kid"] = rsa_key.kid
        if "kid" in spec:
            if spec["kid"] is None:
                header.pop("kid", None)
            else:
                header["kid"] = spec["kid"]
        header["typ"] = "JWT"
        for name, value in (spec.get("header") or {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        secret = spec.get("secret") if spec.get("secret") is not None else self.secret
        token = sign_jws(header, claims, alg, hmac_key=secret, rsa_key=rsa_key)
        return {"token": token, "jti": claims.get("jti"), "exp": claims.get("exp"),
                "kid": header.get("kid"), "alg": alg}

    def login_tokens(self, user_id):
        out = {}
        for token_type in ("access", "refresh"):
            out[token_type + "_token"] = self.mint({"user_id": user_id, "type": token_type})["token"]
        out["token_type"] = "bearer"
        return out

    # ---- verification

    def decode(self, token, verify_exp=True):
        """The token's claims if its signature (by its own alg header), exp, iss and aud
        check out, else None. Like the platform's service it does not look at `type`."""
        import jwt
        if not isinstance(token, str):
            return None
        try:
            header = jwt.get_unverified_header(token)
        except Exception:
            return None
        alg = header.get("alg")
        if alg == "HS256":
            keys = [self.secret]
        elif alg == "RS256":
            keys = [k.public for k in self.keys.verification_keys(header.get("kid"))]
        else:
            return None
        options = {"require": ["exp"], "verify_exp": verify_exp}
        for key in keys:
            try:
                claims = jwt.decode(token, key, algorithms=[alg], audience=self.audience,
                                    issuer=self.issuer, options=options)
            except jwt.InvalidSignatureError:
                continue                        # another key without kid may match
            except Exception:                   # anything odd is invalid, never a crash
                return None
            return claims if isinstance(claims, dict) else None
        return None

    def validate(self, token):
        """The /auth/validate answer for a token (always HTTP 200)."""
        claims = self.decode(token)
        if claims is None or self.redis.is_revoked(claims.get("jti")):
            return {"valid": False}
        sub = claims.get("sub")
        if sub is None and claims.get("auth_method") == "client_credentials" \
                and isinstance(claims.get("client_id"), str):
            user_id = None                      # a service identity: no user id invented
        else:
            user_id = as_int_id(sub)
            if user_id is None:                 # the real service looks the user up by id
                return {"valid": False}
        body = {"valid": True, "user_id": user_id, "email": claims.get("email"),
                "roles": claims.get("roles", []), "permissions": claims.get("permissions", []),
                "org_id": as_int_id(claims.get("org_id")),
                "org_role": claims.get("org_role", []),
                "team_id": as_int_id(claims.get("team_id")),
                "team_role": claims.get("team_role"),
                "auth_method": claims.get("auth_method", "password"),
                "idp_org_id": as_int_id(claims.get("idp_org_id")),
                "schema_version": SCHEMA_VERSION}
        if user_id is None:
            body["client_id"] = claims["client_id"]
            body["scopes"] = claims.get("scopes", [])
        return body


class _BadRequest(Exception):
    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Handler(http.server.BaseHTTPRequestHandler):
    """
    HTTP/1.1 with keep-alive; every answer carries Content-Length (a 304 carries none,
    as RFC 9110 allows; it has no body).

    Test control (JSON bodies; answers are JSON; errors are 400 {"detail": ...}):
      POST /_test/mint      {"alg", "user_id" | "service", "type", "claims", "null_claims",
                             "kid", "header", "ttl", "secret", "unpublished_key"}
                            -> {"token", "jti", "exp", "kid", "alg"}
      POST /_test/rotate    {"drop_old": false} -> {"kid", "published": [kids, newest first]}
      POST /_test/mode      {"mode", "delay_ms", "count", "paths", "variant", "status", "size"}
      GET  /_test/mode      -> the current mode (count is what remains)
      POST /_test/config    {"jwks_max_age": N | null}
      GET  /_test/stats     -> counters; POST /_test/stats/reset
      POST /_test/revoke    {"jti", "exp" | "ttl"} -> writes blacklist:jti:<jti>
      POST /_test/publish   {"user_id", "token"} -> publishes on policy:invalidate
    """
    protocol_version = "HTTP/1.1"
    server_version = "omnibioai-auth-test/1"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S

    @property
    def state(self):
        return self.server.state

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY the body waits
        # for the client's delayed ACK (~40 ms per request), which would swamp every
        # latency measured against this server.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.state.stats.add("connections")

    # The request log never holds bodies (tokens, passwords); it is off unless --verbose.
    def log_message(self, fmt, *args):
        if self.state.verbose:
            sys.stderr.write("authsvc: %s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    # ---- plumbing

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _BadRequest(400, "bad chunk size")
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass                    # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise _BadRequest(413, "body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise _BadRequest(400, "bad Content-Length")
        if n < 0 or n > MAX_BODY_BYTES:
            raise _BadRequest(413, "body too large")
        return self.rfile.read(n)

    def _send(self, status, body=b"", content_type="application/json", headers=(),
              style="normal"):
        """style: normal | close (Connection: close) | chunked | truncated (Content-Length
        promises more than is sent, then the connection closes)."""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status == 304:
            self.end_headers()
            return
        self.send_header("Content-Type", content_type)
        if style == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(body) // 2
            for part in (body[:half], body[half:]):
                if part:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        promised = len(body) + (64 if style == "truncated" else 0)
        self.send_header("Content-Length", str(promised))
        if style in ("close", "truncated"):
            self.send_header("Connection", "close")   # also sets close_connection
        self.end_headers()
        self.wfile.write(body)
        if style == "truncated":
            self.close_connection = True

    def _json(self, status, obj, style="normal", headers=()):
        self._send(status, compact(obj), headers=headers, style=style)

    @staticmethod
    def _parse_json(body, required=True):
        if not body and not required:
            return {}
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _BadRequest(422, "body is not JSON")
        if not isinstance(obj, dict):
            raise _BadRequest(422, "body is not a JSON object")
        return obj

    def _handle(self):
        path = urlsplit(self.path).path
        control = path.startswith("/_test/")
        if not control:                         # in_flight counts contract requests only
            self.state.stats.flight(+1)
        try:
            try:
                body = self._read_body()
                if control:
                    self._control(path, body)
                else:
                    self._contract(path, body)
            except _BadRequest as e:
                self._json(e.status, {"detail": e.detail},
                           style="close" if e.status == 413 else "normal")
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True        # the client went away: nothing to answer
        except Exception:
            import traceback
            traceback.print_exc()               # a bug in this server: always worth seeing
            self.close_connection = True
        finally:
            if not control:
                self.state.stats.flight(-1)

    # ---- the contract, with misbehaviours

    def _contract(self, path, body):
        st = self.state
        st.stats.request(path)
        counter = {VALIDATE: "validate", JWKS: "jwks", HEALTH: "health", LOGIN: "login",
                   LOGOUT: "logout"}.get(path)
        if counter:
            st.stats.add(counter)
        action = st.modes.take(path)
        if action is None:
            return self._answer(path, body)
        st.stats.add("misbehaved")
        mode = action["mode"]
        if action["delay_ms"]:
            st.modes.sleep(action["delay_ms"] / 1000.0)
        if mode == "drop":
            self.close_connection = True        # no answer at all; the socket is closed
        elif mode == "hang":
            st.modes.hang(action["generation"])
            self.close_connection = True        # released: close without an answer
        elif mode == "error500":
            self._json(action["status"], {"detail": "Internal Server Error"})
        elif mode == "garbage":
            self._send(200, GARBAGE_BODY)
        elif mode == "invalid_json_type":
            self._send(200, compact(NOT_OBJECTS[action["variant"] or "array"]))
        elif mode == "wrong_shape":
            if path == VALIDATE:
                shape = WRONG_SHAPES.get(action["variant"] or "valid_string", LIE_BODY)
            elif path == JWKS:
                shape = JWKS_WRONG_SHAPES.get(action["variant"] or "keys_not_list",
                                              JWKS_WRONG_SHAPES["keys_not_list"])
            else:
                shape = {"unexpected": True}
            self._json(200, shape)
        elif mode == "lie_valid" and path == VALIDATE:
            self._json(200, LIE_BODY)
        elif mode == "deny_all" and path == VALIDATE:
            self._json(200, {"valid": False})
        elif mode == "huge":
            # Valid JSON of exactly `size` bytes: the client's response-size limit is tested,
            # not its parser.
            overhead = len(compact({"valid": False, "padding": ""}))
            self._json(200, {"valid": False, "padding": "x" * max(0, action["size"] - overhead)})
        elif mode in ("close", "chunked", "truncated"):
            self._answer(path, body, style=mode)
        else:                                   # slow, or lie/deny on another path
            self._answer(path, body)

    def _answer(self, path, body, style="normal"):
        st = self.state
        method = self.command
        expected = {VALIDATE: "POST", JWKS: "GET", HEALTH: "GET", LOGIN: "POST", LOGOUT: "POST"}
        if path not in expected:
            return self._json(404, {"detail": "Not Found"}, style)
        if method != expected[path]:
            return self._json(405, {"detail": "Method Not Allowed"}, style)
        if path == HEALTH:
            return self._json(200, {"status": "ok"}, style)
        if path == JWKS:
            return self._jwks(style)
        req = self._parse_json(body)
        if path == VALIDATE:
            if not isinstance(req.get("token"), str):
                raise _BadRequest(422, "token must be a string")
            answer = st.validate(req["token"])
            st.stats.add("validate_valid" if answer["valid"] else "validate_invalid")
            return self._json(200, answer, style)
        if path == LOGIN:
            email, password = req.get("email"), req.get("password")
            if not isinstance(email, str) or not isinstance(password, str):
                raise _BadRequest(422, "email and password must be strings")
            user_id = next((uid for uid, u in USERS.items() if u["email"] == email.lower()),
                           None)
            if user_id is None:
                return self._json(401, {"detail": "Invalid credentials"}, style)
            return self._json(200, st.login_tokens(user_id), style)
        return self._logout(req, style)

    def _jwks(self, style):
        st = self.state
        body, etag, max_age = st.keys.document()
        headers = [("ETag", etag)]
        if max_age is not None:
            headers.append(("Cache-Control", "max-age=%d" % max_age))
        match = self.headers.get("If-None-Match")
        if match is not None:
            tags = [t.strip() for t in match.split(",")]
            tags = [t[2:] if t.startswith("W/") else t for t in tags]
            if "*" in tags or etag in tags:
                st.stats.add("jwks_304")
                return self._send(304, headers=headers)
        st.stats.add("jwks_200")
        return self._send(200, body, headers=headers, style=style)

    def _logout(self, req, style):
        st = self.state
        refresh = req.get("refresh_token")
        if not isinstance(refresh, str):
            raise _BadRequest(422, "refresh_token must be a string")
        claims = st.decode(refresh)
        if claims is None or claims.get("type") != "refresh" or claims.get("sub") is None:
            return self._json(401, {"detail": "Invalid refresh token"}, style)
        access = req.get("access_token")
        if isinstance(access, str):
            # An expired access token is still blacklisted (for the minimum second).
            a = st.decode(access, verify_exp=False)
            if a is not None and isinstance(a.get("jti"), str) and \
                    isinstance(a.get("exp"), (int, float)):
                st.redis.revoke(a["jti"], max(1, int(a["exp"] - time.time())))
        st.redis.publish_invalidation(claims["sub"], refresh)
        return self._json(200, {"message": "Logged out"}, style)

    # ---- test control

    def _control(self, path, body):
        st = self.state
        get = self.command == "GET"
        if path == "/_test/stats" and get:
            return self._json(200, st.stats.snapshot())
        if path == "/_test/mode" and get:
            return self._json(200, st.modes.describe())
        if self.command != "POST":
            if path in CONTROL_PATHS:
                return self._json(405, {"detail": "Method Not Allowed"})
            return self._json(404, {"detail": "Not Found"})
        req = self._parse_json(body, required=False)
        if path == "/_test/mint":
            try:
                return self._json(200, st.mint(req))
            except (ValueError, TypeError, AttributeError) as e:
                raise _BadRequest(400, "bad mint request: %s" % e)
        if path == "/_test/rotate":
            kid, published = st.keys.rotate(bool(req.get("drop_old")))
            return self._json(200, {"kid": kid, "published": published})
        if path == "/_test/mode":
            err = ModeState.check(req)
            if err:
                raise _BadRequest(400, err)
            return self._json(200, st.modes.set(req))
        if path == "/_test/config":
            if "jwks_max_age" in req:
                v = req["jwks_max_age"]
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                    raise _BadRequest(400, "jwks_max_age must be a non-negative integer or null")
                st.keys.max_age = v
            return self._json(200, {"jwks_max_age": st.keys.max_age})
        if path == "/_test/stats/reset":
            st.stats.reset()
            return self._json(200, st.stats.snapshot())
        if path == "/_test/revoke":
            jti = req.get("jti")
            if not isinstance(jti, str) or not jti:
                raise _BadRequest(400, "jti must be a non-empty string")
            if st.redis.client is None:
                return self._json(409, {"detail": "no --redis-url configured"})
            if req.get("ttl") is not None:
                ttl = int(req["ttl"])
            elif req.get("exp") is not None:
                ttl = int(req["exp"] - time.time())
            else:
                ttl = ACCESS_TTL_S
            ttl = max(1, ttl)
            ok = st.redis.revoke(jti, ttl)
            return self._json(200 if ok else 503, {"revoked": ok, "ttl": ttl})
        if path == "/_test/publish":
            if st.redis.client is None:
                return self._json(409, {"detail": "no --redis-url configured"})
            if req.get("user_id") is None or not isinstance(req.get("token"), str):
                raise _BadRequest(400, "user_id and token are required")
            receivers = st.redis.publish_invalidation(req["user_id"], req["token"])
            return self._json(200 if receivers is not None else 503, {"receivers": receivers})
        return self._json(404, {"detail": "Not Found"})


CONTROL_PATHS = ("/_test/mint", "/_test/rotate", "/_test/mode", "/_test/config",
                 "/_test/stats", "/_test/stats/reset", "/_test/revoke", "/_test/publish")


class AuthHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True       # a hung handler never keeps the process alive
    block_on_close = False
    request_queue_size = 128    # concurrency tests open many connections at once

    def __init__(self, address, state):
        self.state = state
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that can stall for
        # seconds on a machine without a resolver: skip it.
        socketserver_bind = http.server.socketserver.TCPServer.server_bind
        socketserver_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def parse_args(argv):
    p = argparse.ArgumentParser(description="Test stand-in for the OmniBioAI auth service.")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--host", default="127.0.0.1")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--secret", help="HS256 shared secret (visible in ps: tests only)")
    g.add_argument("--secret-file", help="file holding the HS256 secret")
    p.add_argument("--redis-url", help="redis://HOST:PORT[/DB]: blacklist and invalidation")
    p.add_argument("--issuer", default=DEFAULT_ISSUER)
    p.add_argument("--audience", default=DEFAULT_AUDIENCE)
    p.add_argument("--alg", choices=("HS256", "RS256"), default="HS256",
                   help="algorithm of tokens minted by login and /_test/mint")
    p.add_argument("--jwks-max-age", type=int, default=300,
                   help="Cache-Control max-age of the JWKS (seconds)")
    p.add_argument("--rsa-key", help="PEM private key to start with (default: a new one)")
    p.add_argument("--verbose", action="store_true",
                   help="log requests (method, path, status; never bodies) to stderr")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.secret_file:
        with open(args.secret_file, "rb") as f:
            secret = f.read().rstrip(b"\r\n").decode("utf-8")
    else:
        secret = args.secret if args.secret is not None else DEFAULT_SECRET
    state = AuthState(secret, args.issuer, args.audience, args.alg, args.redis_url,
                      args.jwks_max_age, args.rsa_key, args.verbose)
    server = AuthHTTPServer((args.host, args.port), state)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                               name="serve", daemon=True)
    serving.start()
    sys.stdout.write("PORT %d\n" % server.server_address[1])
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    state.modes.stop()          # wakes hanging and sleeping handlers
    server.shutdown()
    server.server_close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Handler threads may still be mid-request (daemon threads): leave without waiting
    # for them or running interpreter teardown under their feet.
    os._exit(0)


# --------------------------------------------------------------------------- helper

SCRIPT = os.path.abspath(__file__)


class AuthServiceError(RuntimeError):
    pass


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers      # http.client.HTTPMessage (case-insensitive get)
        self.body = body

    def json(self):
        return json.loads(self.body)


class AuthService:
    """
    Runs authsvc.py as a subprocess on a free loopback port, for Python tests:

        with AuthService(secret=S, redis_url=redis.url, alg="RS256") as svc:
            token = svc.mint(user_id=2)
            assert svc.validate(token)["valid"]
            svc.mode("error500", count=1)

    Options map to the command line: secret, redis_url, issuer, audience, alg,
    jwks_max_age, rsa_key, verbose, host; extra_args are appended. Startup waits for the
    "PORT" line up to startup_timeout seconds and raises AuthServiceError with the
    server's stderr if it does not come. stop() terminates, then kills.
    """

    def __init__(self, secret=None, redis_url=None, issuer=None, audience=None, alg=None,
                 jwks_max_age=None, rsa_key=None, verbose=False, host="127.0.0.1",
                 extra_args=(), python=None, startup_timeout=30.0):
        self.secret = secret if secret is not None else DEFAULT_SECRET
        self.host = host
        cmd = [python or sys.executable, SCRIPT, "--port", "0", "--host", host,
               "--secret", self.secret]
        for flag, value in (("--redis-url", redis_url), ("--issuer", issuer),
                            ("--audience", audience), ("--alg", alg),
                            ("--jwks-max-age", jwks_max_age), ("--rsa-key", rsa_key)):
            if value is not None:
                cmd += [flag, str(value)]
        if verbose:
            cmd.append("--verbose")
        cmd += list(extra_args)
        self._stderr = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=env)
        try:
            self.port = self._wait_for_port(startup_timeout)
        except BaseException:
            self.stop()
            raise
        url_host = "[%s]" % host if ":" in host else host
        self.url = "http://%s:%d" % (url_host, self.port)

    def _wait_for_port(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AuthServiceError("authsvc did not print its PORT line within %.0f s;"
                                           " stderr:\n%s" % (timeout, self.stderr_text()))
                if sel.select(left):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        self.proc.wait(5)
                        raise AuthServiceError("authsvc exited (status %s) before listening;"
                                               " stderr:\n%s"
                                               % (self.proc.returncode, self.stderr_text()))
                    buf += chunk
        line = buf.split(b"\n", 1)[0].decode("ascii", "replace")
        if not line.startswith("PORT ") or not line[5:].isdigit():
            raise AuthServiceError("authsvc printed %r instead of 'PORT <n>'; stderr:\n%s"
                                   % (line, self.stderr_text()))
        return int(line[5:])

    def stderr_text(self):
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def stop(self, timeout=10.0):
        """Stops the server (SIGTERM, then SIGKILL) and returns its exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self._stderr.close()  # kept open by stop() for stderr_text(); done with it now

    # ---- HTTP

    def request(self, method, path, body=None, headers=None, timeout=15.0):
        """One request on a fresh connection; body (if not bytes) is sent as JSON."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, bytes):
                body = compact(body)
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def _control(self, method, path, body=None):
        r = self.request(method, path, body)
        if r.status != 200:
            raise AuthServiceError("%s %s -> %d %s" % (method, path, r.status, r.body[:300]))
        return r.json()

    def mint(self, user_id=None, alg=None, type=None, claims=None, ttl=None, **extra):
        """A token (str). Other keys of /_test/mint (kid, service, header, null_claims,
        secret, unpublished_key) go through **extra; mint_full returns the whole reply."""
        return self.mint_full(user_id=user_id, alg=alg, type=type, claims=claims, ttl=ttl,
                              **extra)["token"]

    def mint_full(self, **spec):
        # None means "the server's default", except for kid, where null removes the kid.
        return self._control("POST", "/_test/mint",
                             {k: v for k, v in spec.items() if v is not None or k == "kid"})

    def mode(self, mode="normal", **opts):
        return self._control("POST", "/_test/mode", dict(opts, mode=mode))

    def current_mode(self):
        return self._control("GET", "/_test/mode")

    def stats(self):
        return self._control("GET", "/_test/stats")

    def reset_stats(self):
        return self._control("POST", "/_test/stats/reset", {})

    def rotate(self, drop_old=False):
        return self._control("POST", "/_test/rotate", {"drop_old": drop_old})

    def config(self, **opts):
        return self._control("POST", "/_test/config", opts)

    def revoke(self, jti, exp=None, ttl=None):
        return self._control("POST", "/_test/revoke", {"jti": jti, "exp": exp, "ttl": ttl})

    def publish(self, user_id, token):
        return self._control("POST", "/_test/publish", {"user_id": user_id, "token": token})

    def validate(self, token):
        r = self.request("POST", VALIDATE, {"token": token})
        if r.status != 200:
            raise AuthServiceError("validate -> %d" % r.status)
        return r.json()

    def jwks(self):
        return self._control("GET", JWKS)

    def login(self, email, password="any-password"):
        return self.request("POST", LOGIN, {"email": email, "password": password})

    def logout(self, refresh_token, access_token=None):
        body = {"refresh_token": refresh_token}
        if access_token is not None:
            body["access_token"] = access_token
        return self.request("POST", LOGOUT, body)


if __name__ == "__main__":
    main()
