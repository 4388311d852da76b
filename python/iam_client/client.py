"""The clients: ``AsyncIAMClient`` (asyncio; also exported as ``IAMClient``) and
``IAMClientSync`` (blocking, thread-safe, for Django views and worker threads).

Both hold one libiamclient client per HMAC secret. Everything — verification, caching,
invalidation, and the Redis and auth-service tiers when the C library has them — is done by
the C library; this module chooses which C client answers and maps results onto the old
SDK's contract (``None`` means unauthorized).

Per-call secrets (the old ``get_user(token, secret)``). A C client's keys are fixed when it
is created, so:

* a secret equal to the client's configured one (``secret=`` or ``IAM_JWT_SECRET``) uses the
  main C client;
* a client configured with no key at all (no secret, no key file) adopts the first
  per-call secret as its key (its main C client is created on that first call);
* any other secret gets a C client of its own, created on first use with the same options
  and that secret, so one secret's cache entries can never answer for another. These are
  kept in a map keyed by a keyed BLAKE2b digest of the secret (never the secret itself),
  at most ``max_secret_clients`` (default 8): one more is an ``IAMError``. The last secret
  object seen is remembered by identity, so a caller passing the same ``str`` each time
  does not pay for the digest.
"""
import asyncio
import atexit
import hashlib
import json
import os
import secrets as _secrets
import threading
import weakref

from . import _iam_client as _native
from .exceptions import AuthenticationError, IAMError, UnavailableError
from .models import UserContext

__all__ = ["AsyncIAMClient", "IAMClient", "IAMClientSync", "DEFAULT_REDIS_URL",
           "MAX_SECRET_CLIENTS"]

DEFAULT_REDIS_URL = "redis://localhost:6379"
MAX_SECRET_CLIENTS = 8

_DIGEST_KEY = _secrets.token_bytes(32)  # per process: digests are useless outside it

def _secret_bytes(secret):
    if isinstance(secret, str):
        return secret.encode("utf-8")
    if isinstance(secret, (bytes, bytearray, memoryview)):
        return bytes(secret)
    raise TypeError("secret must be str or bytes")


def _digest(secret):
    return hashlib.blake2b(_secret_bytes(secret), key=_DIGEST_KEY, digest_size=32).digest()


def _error_for(status, message):
    """The exception for a non-OK (status, message) result."""
    reason = _native.status_name(status)
    if _native.is_rejection(status):
        return AuthenticationError(message, reason=reason, status=status)
    if status == _native.E_UNAVAILABLE:
        return UnavailableError(message, status=status)
    err = IAMError(message)
    err.reason, err.status = reason, status
    return err


def _env(name):
    value = os.environ.get(name)
    return value if value else None


_LIVE = weakref.WeakSet()


@atexit.register
def _close_all():
    # C threads may still complete requests into Python; close (which waits for them)
    # before the interpreter goes away.
    for client in list(_LIVE):
        client.close()


class _ClientCore:
    """What both clients share: configuration, the per-secret C clients, and the methods
    that are synchronous in the old SDK too."""

    def __init__(self, base_url=None, redis_url=None, *, secret=None, jwks_url=None,
                 jwks_file=None, pem_file=None, audience=None, issuer=None, mode=None,
                 leeway=None, cache_max_entries=None, cache_max_bytes=None, cache_ttl=None,
                 negative_ttl=None, revocation_ttl=None, cache_disabled=None,
                 cache_secret=None, timeout=None, redis_stale=None, revocation_fail_open=None,
                 redis_direct_max=None, max_secret_clients=MAX_SECRET_CLIENTS):
        if timeout is not None:
            # seconds, like the old SDK's httpx timeout: the deadline of one Redis round trip
            # (the auth service's is IAM_AUTH_TIMEOUT_MS)
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
                raise IAMError("timeout: a positive number of seconds")
            timeout = max(1, int(round(timeout * 1000)))
        effective_mode = mode if mode is not None else _env("IAM_MODE")
        if redis_url is None and _env("IAM_REDIS_URL") is None and effective_mode != "local-only":
            redis_url = DEFAULT_REDIS_URL  # the old SDK's default (local-only uses no network)
        # Explicit settings; None leaves the IAM_* environment variable (or the C default).
        self._options = {
            "auth_url": base_url or None, "redis_url": redis_url, "jwks_url": jwks_url,
            "jwks_file": jwks_file, "pem_file": pem_file, "audience": audience,
            "issuer": issuer, "mode": mode, "leeway_s": leeway,
            "cache_max_entries": cache_max_entries, "cache_max_bytes": cache_max_bytes,
            "cache_ttl_s": cache_ttl, "negative_ttl_s": negative_ttl,
            "revocation_ttl_s": revocation_ttl, "cache_disabled": cache_disabled,
            "cache_secret": cache_secret, "redis_timeout_ms": timeout,
            "redis_stale_s": redis_stale, "revocation_fail_open": revocation_fail_open,
            "redis_direct_max": redis_direct_max,
        }
        self._max_secret_clients = int(max_secret_clients)
        self._lock = threading.Lock()
        self._clients = {}            # digest (or None: no secret) -> _native.Client
        self._keysets = {}            # digest -> _native.Keyset, for decode_local
        self._closed = False
        configured = secret if secret is not None else _env("IAM_JWT_SECRET")
        self._configured_secret = configured
        self._default_key = _digest(configured) if configured is not None else None
        self._default = None          # the main C client, once created
        self._last = (None, None)     # (secret object, C client): identity fast path
        self._remote_client = None    # central mode, for validate_remote (created on first use)
        has_keys = any(v is not None for v in (jwks_file, pem_file, _env("IAM_JWKS_FILE"),
                                               _env("IAM_PEM_FILE")))
        if configured is not None or has_keys:
            # Created now, so that a configuration that cannot work fails here.
            self._default = self._create(self._default_key, configured)
        else:
            # No key yet (a per-call secret will be): still check every other setting now,
            # with a throwaway C client holding a random key.
            _native.Client(**dict(self._options, jwt_secret=_secrets.token_hex(32))).close()
        _LIVE.add(self)

    # -- which C client answers -------------------------------------------------------

    def _create(self, key, secret):
        options = dict(self._options)
        if secret is not None:
            if not isinstance(secret, str):
                try:
                    secret = _secret_bytes(secret).decode("utf-8")
                except UnicodeDecodeError:
                    secret = None  # raised below, so that no exception holds the secret
                if secret is None:
                    raise IAMError("secret: bytes that are not UTF-8 text")
            options["jwt_secret"] = secret
        client = _native.Client(**options)
        self._clients[key] = client
        return client

    def _client_for(self, secret):
        """The C client for a per-call secret (None: the client's own key)."""
        with self._lock:
            if self._closed:
                raise IAMError("the client is closed")
            if secret is None:
                if self._default is None:  # created at once whenever a key is configured
                    raise IAMError("no verification key: pass secret= to the client or "
                                   "to get_user(), or set IAM_JWT_SECRET")
                return self._default
            key = _digest(secret)
            client = self._clients.get(key)
            if client is None:
                adopt = self._default_key is None and self._default is None  # no key at all
                others = sum(1 for k in self._clients if k not in (None, self._default_key))
                if not adopt and key != self._default_key and others >= self._max_secret_clients:
                    raise IAMError(f"more than {self._max_secret_clients} distinct per-call "
                                   "secrets: configure the client with its secret instead")
                client = self._create(key, secret)
                if adopt:
                    self._default_key = key  # only once a C client accepted it
            if key == self._default_key and self._default is None:
                self._default = client
            self._last = (secret, client)
            return client

    def _pick(self, secret):
        if secret is None:
            return self._default or self._client_for(None)
        last_secret, last_client = self._last
        if secret is last_secret:
            return last_client
        return self._client_for(secret)

    def _all_clients(self):
        with self._lock:
            return list(self._clients.values())

    def _remote(self):
        """The C client validate_remote uses: central mode (the auth service decides), its
        in-process cache off so every call is a real validation (concurrent calls for one
        token still share one request; another node's shared record may answer)."""
        with self._lock:
            if self._closed:
                raise IAMError("the client is closed")
            if self._remote_client is None:
                if not self._options.get("auth_url") and _env("IAM_AUTH_URL") is None:
                    raise IAMError("validate_remote needs the auth service: pass base_url or "
                                   "set IAM_AUTH_URL")
                options = dict(self._options, mode="central", cache_disabled=True)
                if self._configured_secret is not None:
                    # not for verifying (central mode asks the service): it keys the
                    # shared cache's records, as for the client's other C clients
                    options["jwt_secret"] = self._configured_secret
                elif options.get("cache_secret") is None and _env("IAM_CACHE_SECRET") is None:
                    # Nothing to key shared records with: ask the service alone (it checks
                    # revocation itself), without the Redis tier.
                    options["redis_url"] = ""
                self._remote_client = _native.Client(**options)
            return self._remote_client

    # -- results ----------------------------------------------------------------------

    @staticmethod
    def _user_or_raise(result):
        if result.__class__ is UserContext:
            return result
        if result is None:
            raise IAMError("the answer was lost (out of memory)")
        raise _error_for(*result)

    # -- the old SDK's synchronous methods ----------------------------------------------

    def decode_local(self, token, secret=None):
        """Verifies ``token`` locally and returns its claims as a dict; raises
        ``AuthenticationError`` (``.reason``) when it is refused.

        With ``secret`` (the old call) this is stateless: signature and claims (expiry,
        issuer, audience, type) under the client's claim policy, no cache, no revocation
        marks, and no C client is created for that secret. Without it, the token is
        resolved by the main C client exactly as ``get_user`` would (its keys, its cache,
        revocation marks) and the verified claims returned.
        """
        if secret is None:
            result = self._pick(None).resolve(token)
        else:
            result = self._keyset(secret).verify(token, audience=self._policy("audience"),
                                                 issuer=self._policy("issuer"),
                                                 leeway_s=self._leeway())
        return self._user_or_raise(result).claims

    def _policy(self, name):
        value = self._options.get(name)
        return value if value is not None else _env("IAM_" + name.upper())

    def _leeway(self):
        value = self._options.get("leeway_s")
        if value is None:
            text = _env("IAM_LEEWAY_S")
            value = int(text) if text else 0
        return value

    def _keyset(self, secret):
        key = _digest(secret)
        with self._lock:
            ks = self._keysets.get(key)
            if ks is None:
                ks = _native.Keyset(secret)
                if len(self._keysets) < self._max_secret_clients:
                    self._keysets[key] = ks
            return ks

    def get_cached_user(self, token, secret=None, *, audience=None, required_org=None):
        """The cached context for ``token``, or None (not cached, or a cached refusal).
        Never verifies; with the Redis tier it consults the shared cache too."""
        if token is None:
            return None
        result = self._pick(secret).cached(token, audience, required_org)
        return result if result.__class__ is UserContext else None

    def set_cache(self, token, user, ttl=300, secret=None):
        """Caches the verified context of ``token`` and returns True; False when the token
        is refused. Never stores an unverified identity: the token is verified and its own
        context cached; ``user`` (a dict or UserContext) is only checked against it
        (a different ``user_id`` is a ValueError).

        ``ttl`` can only shorten a lifetime, never extend it: entries live at most until
        the token's ``exp`` and the client's ``cache_ttl`` (300 s by default). libiamclient
        has no per-entry lifetime yet, so a ``ttl`` below that bound is accepted and not
        applied (the entry keeps the client's bound).
        """
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        if token is None:
            return False
        result = self._pick(secret).resolve(token)
        if result.__class__ is not UserContext:
            return False
        claimed = user.get("user_id") if isinstance(user, dict) else getattr(user, "user_id", None)
        if claimed is not None and str(claimed) != result.user_id:
            raise ValueError("user contradicts the verified identity of the token (user_id)")
        return True

    def evict_cache(self, token):
        """Evicts ``token``'s cached answers in every C client; returns how many."""
        if token is None:
            return 0
        return sum(c.invalidate_token(token) for c in self._all_clients())

    # -- new: invalidation, statistics --------------------------------------------------

    def invalidate_user(self, user_id):
        """Evicts every cached context of ``user_id`` (a logout elsewhere); returns how many."""
        return sum(c.invalidate_user(user_id) for c in self._all_clients())

    def revoke_jti(self, jti):
        """Marks the token id ``jti`` revoked: it is refused (reason ``revoked``) and never
        cached again for the revocation TTL. Returns the entries removed."""
        return sum(c.revoke_jti(jti) for c in self._all_clients())

    def invalidate_all(self):
        """Empties every cache; returns how many entries were removed."""
        return sum(c.invalidate_all() for c in self._all_clients())

    def stats(self):
        """The main C client's statistics (per-tier counters, latencies) as a dict, with
        ``per_secret_clients``: the statistics of the per-call-secret clients."""
        main = self._default
        others = [c for c in self._all_clients() if c is not main]
        result = json.loads(main.stats_json()) if main is not None else {}
        result["per_secret_clients"] = [json.loads(c.stats_json()) for c in others]
        return result

    def metrics(self):
        """The main C client's statistics in Prometheus text format."""
        return self._pick(None).metrics()

    def close(self):
        """Frees the C clients after the calls in flight complete. Idempotent."""
        with self._lock:
            self._closed = True
            clients = list(self._clients.values())
            self._clients.clear()
            self._default = None
            self._last = (None, None)
            if self._remote_client is not None:
                clients.append(self._remote_client)
                self._remote_client = None
        for c in clients:
            c.close()

    @property
    def closed(self):
        return self._closed


class AsyncIAMClient(_ClientCore):
    """The asyncio client. ``AsyncIAMClient(base_url, redis_url=None, *, secret=None, …)``.

    ``base_url`` is the auth service (``IAM_AUTH_URL``); ``redis_url`` the Redis server
    (``IAM_REDIS_URL``, else ``redis://localhost:6379`` as in the old SDK). Keyword
    settings (each defaults to its ``IAM_*`` environment variable, then the C default):
    ``secret`` (``IAM_JWT_SECRET``), ``jwks_url``, ``jwks_file``, ``pem_file``,
    ``audience``, ``issuer``, ``mode`` (``local-first``, ``local-only``; ``central`` needs
    the auth-service tier), ``leeway``, ``cache_max_entries``, ``cache_max_bytes``,
    ``cache_ttl``, ``negative_ttl``, ``revocation_ttl``, ``cache_disabled``,
    ``max_secret_clients``. A configuration that cannot work raises ``IAMError`` here.

    Awaiting never blocks the event loop: a cached or locally verifiable answer is
    returned without a loop round trip; anything the C library completes later on its
    own threads arrives through ``loop.call_soon_threadsafe``.
    """

    async def get_user(self, token, secret=None, *, audience=None, required_org=None):
        """The verified ``UserContext`` for ``token``, or None when it is refused or no
        answer could be had (the old contract). ``secret``: see the module docs.
        ``audience`` overrides the client's; ``required_org`` refuses users of other
        organisations (tenant isolation). ``authenticate`` says why a token is refused."""
        if token is None:
            return None
        result = self._pick(secret).begin(token, audience, required_org)
        if result.__class__ is UserContext:
            return result
        if result.__class__ is tuple:
            return None
        result = await result
        return result if result.__class__ is UserContext else None

    async def authenticate(self, token, secret=None, *, audience=None, required_org=None):
        """Like ``get_user`` but raises: ``AuthenticationError`` whose ``.reason`` is the
        reason code (``expired``, ``bad_signature``, ``revoked``, ``wrong_tenant``, …) when
        the token is refused, ``UnavailableError`` when no answer could be had."""
        if token is None:
            raise AuthenticationError("no token", reason="malformed")
        result = self._pick(secret).begin(token, audience, required_org)
        if result.__class__ is not UserContext and result.__class__ is not tuple:
            result = await result
        return self._user_or_raise(result)

    async def validate_remote(self, token):
        """Asks the auth service (``POST /auth/validate``) about ``token``: the
        ``UserContext``, or None when it is refused (the service said ``valid: false``, or
        the token is not an access token) or no answer could be had. Never blocks the loop."""
        if token is None:
            return None
        result = self._remote().begin(token, None, None)
        if result.__class__ is not UserContext and result.__class__ is not tuple:
            result = await result
        return result if result.__class__ is UserContext else None

    async def aclose(self):
        """close() on a worker thread: waiting for requests in flight never blocks the loop
        (their answers are queued to it with call_soon_threadsafe, not run)."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


IAMClient = AsyncIAMClient


class IAMClientSync(_ClientCore):
    """The blocking client, for Django views and threads: the same settings and methods
    as ``AsyncIAMClient``, each returning directly. Thread-safe; the GIL is released while
    the C library works, so threads verify in parallel."""

    def get_user(self, token, secret=None, *, audience=None, required_org=None):
        """The verified ``UserContext``, or None when the token is refused."""
        if token is None:
            return None
        result = self._pick(secret).resolve(token, audience, required_org)
        return result if result.__class__ is UserContext else None

    def authenticate(self, token, secret=None, *, audience=None, required_org=None):
        """The verified ``UserContext``; raises ``AuthenticationError`` (``.reason``) or
        ``UnavailableError``."""
        if token is None:
            raise AuthenticationError("no token", reason="malformed")
        return self._user_or_raise(self._pick(secret).resolve(token, audience, required_org))

    def validate_remote(self, token):
        """Asks the auth service about ``token`` (blocking): the ``UserContext`` or None."""
        if token is None:
            return None
        result = self._remote().resolve(token, None, None)
        return result if result.__class__ is UserContext else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
