/*
 * iamclient.h — the OmniBioAI IAM client SDK.
 *
 * Turns a bearer token into a verified, immutable user context.
 *
 * Conventions (as in libuv and curl):
 *   - every name starts with iam_; types are iam_<noun>, functions iam_<noun>_<verb>;
 *   - functions that can fail return an iam_status: IAM_OK (0) or a negative code,
 *     named by iam_status_name() and described by iam_strerror();
 *   - where a failure needs a precise explanation, the function takes an optional
 *     iam_error* that receives the code and a message. Messages never contain a
 *     token, a secret, or any byte copied from the token;
 *   - ownership is stated on every function: "caller owns" means release/free it.
 *
 * Thread-safety: a keyset is immutable once it is shared (build it on one thread,
 * then use it from any number); a user context is immutable and reference-counted.
 * The verification functions keep no state and may run concurrently.
 */
#ifndef IAMCLIENT_H
#define IAMCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  define IAM_EXTERN
#elif defined(__GNUC__)
#  define IAM_EXTERN __attribute__((visibility("default")))
#else
#  define IAM_EXTERN
#endif

#define IAM_VERSION_MAJOR 0
#define IAM_VERSION_MINOR 1
#define IAM_VERSION_PATCH 0
#define IAM_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------- */
/* Limits. Each is checked before the work it bounds is done.                */
/* ------------------------------------------------------------------------- */

/** Largest compact JWS accepted, in bytes; checked before any decoding. */
#define IAM_MAX_TOKEN_BYTES 8192
/** Deepest nesting of arrays/objects in a token's header or payload. */
#define IAM_MAX_JSON_DEPTH 16
/** Most members in any one JSON object of a token (also the most elements of an array). */
#define IAM_MAX_JSON_MEMBERS 256
/** Largest JWKS document accepted, in bytes. */
#define IAM_MAX_JWKS_BYTES (256 * 1024)
/** Most keys held by one keyset (bounds the keys tried for a token without `kid`). */
#define IAM_MAX_KEYS 64
/** Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size; HS384/HS512
 *  additionally need 48/64 bytes, checked per token). */
#define IAM_MIN_HMAC_KEY_BYTES 32
/** Longest HMAC secret accepted. */
#define IAM_MAX_HMAC_KEY_BYTES 1024
/** Longest `kid` accepted in a key or a token header. */
#define IAM_MAX_KID_BYTES 256
/** RSA modulus bounds, in bits (RFC 7518 §3.3 requires at least 2048). */
#define IAM_MIN_RSA_BITS 2048
#define IAM_MAX_RSA_BITS 16384
/** Latest NumericDate accepted (9999-12-31T23:59:59Z); earlier than 0 is refused too. */
#define IAM_MAX_NUMERIC_DATE 253402300799.0
/** Largest integer identifier (org_id, team_id…) accepted: 2^53, exact in a double. */
#define IAM_MAX_INTEGER_ID 9007199254740992.0
/** Largest HTTP response body read from the auth service (a validation reply); a longer
 *  one is cut off and the call is unavailable. JWKS documents use IAM_MAX_JWKS_BYTES. */
#define IAM_MAX_HTTP_BODY_BYTES (64 * 1024)
/** Size of the message buffer in iam_error. */
#define IAM_ERROR_MESSAGE_BYTES 160

/* ------------------------------------------------------------------------- */
/* Errors                                                                    */
/* ------------------------------------------------------------------------- */

typedef enum iam_status {
    IAM_OK = 0,
    /* The token is refused. */
    IAM_E_MALFORMED = -1,        /* not a well-formed JWS / JSON per the strict rules */
    IAM_E_TOO_LARGE = -2,        /* over a documented size or count limit */
    IAM_E_UNSUPPORTED_ALG = -3,  /* alg absent, unknown, or `none` in any spelling */
    IAM_E_UNKNOWN_KEY = -4,      /* no key held can verify this token (kid/type/size) */
    IAM_E_BAD_SIGNATURE = -5,    /* a suitable key was tried and the signature is wrong */
    IAM_E_UNSUPPORTED_CRIT = -6, /* `crit` names an extension this library does not implement */
    IAM_E_EXPIRED = -7,          /* now >= exp + leeway */
    IAM_E_NOT_YET_VALID = -8,    /* nbf or iat later than now + leeway */
    IAM_E_WRONG_ISSUER = -9,
    IAM_E_WRONG_AUDIENCE = -10,
    IAM_E_WRONG_TYPE = -11,      /* `type` claim (or `typ` header) is not an access token */
    IAM_E_MISSING_CLAIM = -12,   /* a required claim is absent */
    IAM_E_INVALID_CLAIM = -13,   /* a claim has the wrong JSON type or an out-of-range value */
    IAM_E_REVOKED = -14,         /* the token's jti (or its user's session) is revoked */
    IAM_E_WRONG_TENANT = -15,    /* the user does not belong to the required organisation */
    IAM_E_DENIED = -16,          /* the central auth service answered {"valid": false} */
    /* The answer could not be obtained; the token is NOT known to be invalid. */
    IAM_E_UNAVAILABLE = -20,
    /* iam_client_cached only: no tier holds an answer for the token (not a refusal). */
    IAM_E_NOT_CACHED = -21,
    /* Caller or configuration errors. */
    IAM_E_INVALID_ARGUMENT = -30,
    IAM_E_BAD_KEY = -31,         /* a key given to a keyset is malformed or unsupported */
    IAM_E_CONFIG = -32,
    IAM_E_NOMEM = -33,
    IAM_E_INTERNAL = -34
} iam_status;

typedef struct iam_error {
    iam_status code;
    char message[IAM_ERROR_MESSAGE_BYTES];
} iam_error;

/** Stable snake_case name of a status ("bad_signature"); "unknown" for other values. */
IAM_EXTERN const char *iam_status_name(iam_status status);
/** One-line English description of a status. Never NULL. */
IAM_EXTERN const char *iam_strerror(iam_status status);
/** True when the status means "this token is refused" (as opposed to unavailable/usage errors). */
IAM_EXTERN bool iam_status_is_rejection(iam_status status);

/* ------------------------------------------------------------------------- */
/* Keys                                                                      */
/* ------------------------------------------------------------------------- */

/**
 * A set of verification keys: HMAC secrets and public keys (RSA, EC P-256/384/521,
 * Ed25519), each optionally named by a `kid` and restricted to one `alg`.
 *
 * Selection: when a token names a `kid`, only keys with that kid are tried; if no key
 * in the set has that kid, keys added without a kid are tried. Without a kid, every
 * key whose type fits the token's alg is tried. A key is only ever used by algorithms
 * of its own type: an HMAC secret never verifies RS/PS/ES/EdDSA, a public key is never
 * an HMAC secret.
 *
 * Reference-counted. Build it on one thread; once shared it must not be modified.
 */
typedef struct iam_keyset iam_keyset;

/** New empty keyset with one reference. Caller owns it (iam_keyset_release). NULL on OOM. */
IAM_EXTERN iam_keyset *iam_keyset_new(void);
/** Adds a reference; returns ks. Thread-safe. */
IAM_EXTERN iam_keyset *iam_keyset_retain(iam_keyset *ks);
/** Drops a reference; frees on the last one. NULL is ignored. Thread-safe. */
IAM_EXTERN void iam_keyset_release(iam_keyset *ks);
/** Number of usable keys held. */
IAM_EXTERN size_t iam_keyset_count(const iam_keyset *ks);

/**
 * Adds an HMAC secret (HS256/384/512), copied. kid may be NULL.
 * Errors: IAM_E_BAD_KEY (shorter than IAM_MIN_HMAC_KEY_BYTES or longer than
 * IAM_MAX_HMAC_KEY_BYTES), IAM_E_TOO_LARGE (set full), IAM_E_NOMEM.
 */
IAM_EXTERN iam_status iam_keyset_add_hmac(iam_keyset *ks, const void *secret, size_t len,
                                          const char *kid, iam_error *err);

/**
 * Adds a public key from PEM text (SubjectPublicKeyInfo "PUBLIC KEY" or an X.509
 * "CERTIFICATE"). A private key is refused (give the verifier only public keys).
 * kid may be NULL: see selection above. `iam_pem_kid` computes the platform's kid.
 */
IAM_EXTERN iam_status iam_keyset_add_pem(iam_keyset *ks, const char *pem, size_t len,
                                         const char *kid, iam_error *err);

/** Adds one JWK (RFC 7517): kty RSA, EC (P-256/384/521), OKP (Ed25519) or oct. */
IAM_EXTERN iam_status iam_keyset_add_jwk(iam_keyset *ks, const char *json, size_t len,
                                         iam_error *err);

/**
 * Adds the keys of a JWKS document ({"keys":[...]}). A key that is unsupported or
 * malformed is skipped on its own (counted in *skipped); the others are added.
 * Fails only when the document itself is not a JWKS (IAM_E_MALFORMED/IAM_E_TOO_LARGE).
 * added/skipped may be NULL.
 */
IAM_EXTERN iam_status iam_keyset_add_jwks(iam_keyset *ks, const char *json, size_t len,
                                          size_t *added, size_t *skipped, iam_error *err);

/**
 * The platform's kid for a PEM public key: the first 16 hex digits of SHA-256 over the
 * PEM text exactly as given. out must hold 17 bytes.
 */
IAM_EXTERN iam_status iam_pem_kid(const char *pem, size_t len, char out[17]);

/* ------------------------------------------------------------------------- */
/* JWS (no claim checks)                                                     */
/* ------------------------------------------------------------------------- */

/**
 * Verifies a compact JWS against a keyset with the strict parsing rules and no claim
 * checks; the payload may be any bytes. On success *payload receives a malloc'd copy
 * (NUL-terminated for convenience, the terminator not counted in *payload_len);
 * caller frees it with iam_free. On failure *payload is NULL.
 */
IAM_EXTERN iam_status iam_jws_verify(const char *jws, size_t len, const iam_keyset *ks,
                                     char **payload, size_t *payload_len, iam_error *err);

/** Frees memory returned by this library (payloads, JSON strings). NULL is ignored. */
IAM_EXTERN void iam_free(void *p);

/* ------------------------------------------------------------------------- */
/* Token verification                                                        */
/* ------------------------------------------------------------------------- */

/** Flags for iam_verify_options.flags. */
enum {
    /** Do not check `aud` (the default checks it against IAM_DEFAULT_AUDIENCE). */
    IAM_VERIFY_SKIP_AUDIENCE = 1u << 0,
    /** Do not check `iss` (the default checks it against IAM_DEFAULT_ISSUER). */
    IAM_VERIFY_SKIP_ISSUER = 1u << 1,
    /** Accept any `type` claim (the default requires "access"). */
    IAM_VERIFY_ANY_TYPE = 1u << 2
};

#define IAM_DEFAULT_AUDIENCE "omnibioai-platform"
#define IAM_DEFAULT_ISSUER "omnibioai-auth"
#define IAM_DEFAULT_TOKEN_TYPE "access"

/**
 * Claim policy. A zero-initialised struct means the platform's defaults: audience
 * "omnibioai-platform", issuer "omnibioai-auth", type "access", no leeway.
 */
typedef struct iam_verify_options {
    const char *audience;   /* NULL: IAM_DEFAULT_AUDIENCE */
    const char *issuer;     /* NULL: IAM_DEFAULT_ISSUER */
    const char *token_type; /* NULL: IAM_DEFAULT_TOKEN_TYPE */
    int64_t leeway_s;       /* clock skew allowed on exp/nbf/iat, 0..86400 */
    unsigned flags;         /* IAM_VERIFY_* */
} iam_verify_options;

typedef struct iam_user iam_user;

/**
 * Verifies a bearer token completely: strict JWS parsing, signature with a key of the
 * token's algorithm from ks, then claims (exp required; nbf, iat honoured; iss, aud,
 * type) at time now_s (seconds since the epoch). opts may be NULL (defaults).
 *
 * On success *out receives a user context with one reference (caller releases it).
 * On failure *out is NULL and the status (and err, if given) says why.
 * Stateless and thread-safe.
 */
IAM_EXTERN iam_status iam_token_verify(const char *token, size_t len, const iam_keyset *ks,
                                       const iam_verify_options *opts, int64_t now_s,
                                       iam_user **out, iam_error *err);

/* ------------------------------------------------------------------------- */
/* The user context                                                          */
/* ------------------------------------------------------------------------- */

typedef enum iam_principal_kind {
    IAM_PRINCIPAL_USER = 1,    /* a person: has a user id (from `sub`) */
    IAM_PRINCIPAL_SERVICE = 2  /* a client_credentials service identity: client id, no user id */
} iam_principal_kind;

/** Adds a reference; returns u. Thread-safe. */
IAM_EXTERN iam_user *iam_user_retain(iam_user *u);
/** Drops a reference; frees on the last. NULL is ignored. Thread-safe. */
IAM_EXTERN void iam_user_release(iam_user *u);

/* Accessors. Strings are owned by the context and live as long as it does; NULL means
 * the claim was absent or null. Identifiers are always strings ("7"), whatever the
 * token carried (integer or string). */
IAM_EXTERN iam_principal_kind iam_user_kind(const iam_user *u);
IAM_EXTERN const char *iam_user_id(const iam_user *u);        /* `sub`; NULL for a service */
IAM_EXTERN const char *iam_user_client_id(const iam_user *u); /* services only */
IAM_EXTERN const char *iam_user_email(const iam_user *u);
IAM_EXTERN const char *iam_user_org_id(const iam_user *u);
IAM_EXTERN const char *iam_user_team_id(const iam_user *u);
IAM_EXTERN const char *iam_user_team_role(const iam_user *u);
IAM_EXTERN const char *iam_user_idp_org_id(const iam_user *u);
IAM_EXTERN const char *iam_user_auth_method(const iam_user *u);
IAM_EXTERN const char *iam_user_token_type(const iam_user *u);
IAM_EXTERN const char *iam_user_jti(const iam_user *u);
IAM_EXTERN const char *iam_user_issuer(const iam_user *u);
/** token_version claim; 1 when absent. */
IAM_EXTERN int64_t iam_user_token_version(const iam_user *u);
IAM_EXTERN bool iam_user_mfa_verified(const iam_user *u);
/** `exp`, rounded down to whole seconds. */
IAM_EXTERN int64_t iam_user_expires_at(const iam_user *u);

/* Lists: the array and its strings are owned by the context. *n receives the count. */
IAM_EXTERN const char *const *iam_user_roles(const iam_user *u, size_t *n);
IAM_EXTERN const char *const *iam_user_permissions(const iam_user *u, size_t *n);
IAM_EXTERN const char *const *iam_user_org_roles(const iam_user *u, size_t *n);
IAM_EXTERN const char *const *iam_user_scopes(const iam_user *u, size_t *n);

/** Exact-match membership tests. */
IAM_EXTERN bool iam_user_has_role(const iam_user *u, const char *role);
IAM_EXTERN bool iam_user_has_permission(const iam_user *u, const char *permission);
IAM_EXTERN bool iam_user_has_any_role(const iam_user *u, const char *const *roles, size_t n);
IAM_EXTERN bool iam_user_has_any_permission(const iam_user *u, const char *const *perms, size_t n);
/** True when the context's org id equals org_id (a tenant check); false when it has none. */
IAM_EXTERN bool iam_user_in_org(const iam_user *u, const char *org_id);

/**
 * Any claim of the verified payload, as JSON text (e.g. "\"x\"", "[1,2]", "true").
 * Caller frees with iam_free. NULL when absent or on OOM.
 */
IAM_EXTERN char *iam_user_claim_json(const iam_user *u, const char *name);
/** The whole verified payload, exactly as decoded. Owned by the context. */
IAM_EXTERN const char *iam_user_payload(const iam_user *u, size_t *len);
/**
 * The context as one JSON object (identifiers as strings, lists as arrays, no token).
 * Caller frees with iam_free. NULL on OOM.
 */
IAM_EXTERN char *iam_user_to_json(const iam_user *u);

/* ------------------------------------------------------------------------- */
/* The client: resolution pipeline with an in-process cache                  */
/* ------------------------------------------------------------------------- */

/*
 * A client resolves tokens to user contexts through tiers, answering almost every
 * request from memory:
 *
 *   L1 in-process cache ─hit─► user        (caller's thread; no syscall, sharded locks)
 *        │ miss (concurrent misses of one token are coalesced into one resolution)
 *        ▼
 *   local verification (keys held)         (caller's thread)
 *        │ with redis_url: verified with a jti → EXISTS blacklist:jti:<jti>;
 *        │ no key could verify → GET shared record + EXISTS, one round trip
 *        ▼                                  (the client's I/O thread)
 *        │ still no key: refresh the JWKS once (shared, cooled down), verify again
 *        │ still undecided, or central mode: POST <auth_url>/auth/validate
 *        ▼                                  (the client's I/O thread, libcurl multi)
 *   store in L1 with TTL <= exp and <= max staleness (and in Redis for the other nodes);
 *   refusals cached briefly; revoked tokens never cached as valid
 *
 * The network tiers run on the client's one I/O thread (a libuv loop; hiredis async,
 * libcurl multi); a subscriber on policy:invalidate evicts across nodes. Keys are fetched
 * from jwks_url (default <auth_url>/.well-known/jwks.json) at creation and refreshed in the
 * background (Cache-Control max-age, ETag), and swapped in atomically.
 * A client is thread-safe: every function may be called from any thread.
 */
typedef struct iam_client iam_client;
struct iam_invalidation;

typedef enum iam_mode {
    /** Verify locally; fall back to the network tiers only when no key can decide (default). */
    IAM_MODE_LOCAL_FIRST = 0,
    /** The auth service is the authority (compute nodes holding no key). Needs the auth tier. */
    IAM_MODE_CENTRAL = 1,
    /** No network at all: local keys and the in-process cache only. */
    IAM_MODE_LOCAL_ONLY = 2
} iam_mode;

/** Defaults of iam_client_options (iam_client_options_init). */
#define IAM_DEFAULT_CACHE_ENTRIES 100000
#define IAM_DEFAULT_CACHE_BYTES (64u * 1024 * 1024)
#define IAM_DEFAULT_CACHE_TTL_S 300       /* max staleness of a cached answer */
#define IAM_DEFAULT_NEGATIVE_TTL_S 10     /* how long a refusal is remembered */
#define IAM_DEFAULT_REVOCATION_TTL_S 3600 /* how long a revoked jti stays marked */
/** Most revoked-jti marks held; beyond it the mark closest to expiry is dropped (counted in
 *  revocation_marks_dropped). */
#define IAM_MAX_REVOCATION_MARKS 100000
/** Longest revocation_ttl_s accepted (one year). */
#define IAM_MAX_REVOCATION_TTL_S 31536000
/** Largest cache_max_entries accepted. */
#define IAM_MAX_CACHE_ENTRIES 10000000
/** Defaults and limits of the Redis tier. */
#define IAM_DEFAULT_REDIS_TIMEOUT_MS 250
#define IAM_MAX_REDIS_TIMEOUT_MS 60000
#define IAM_DEFAULT_REDIS_STALE_S 5
/** Connections of the direct lane (blocking calls making their own round trip). */
#define IAM_DEFAULT_REDIS_DIRECT 4
#define IAM_MAX_REDIS_DIRECT 64
#define IAM_MAX_REDIS_STALE_S 3600
/** Namespace and version of every key this library writes besides the platform's own. */
#define IAM_REDIS_KEY_PREFIX "iam:v1:"
/** The platform's revocation keys and invalidation channel (CONTRACT.md). */
#define IAM_REDIS_BLACKLIST_PREFIX "blacklist:jti:"
#define IAM_REDIS_CHANNEL "policy:invalidate"
/** Largest invalidation message read; longer ones are counted and ignored. */
#define IAM_MAX_INVALIDATION_BYTES 65536
/** Largest shared-cache record read; longer ones are treated as tampered. */
#define IAM_MAX_RECORD_BYTES 65536

/** What an invalidation callback is told. Strings are valid during the call only. */
typedef enum iam_invalidation_kind {
    IAM_INVALIDATION_MESSAGE = 0, /* a message on policy:invalidate */
    IAM_INVALIDATION_SUBSCRIBED,  /* the subscription is (again) in place */
    IAM_INVALIDATION_LOST         /* the subscription was lost; cached answers are now bounded
                                     by redis_stale_s until it is back */
} iam_invalidation_kind;

typedef struct iam_invalidation {
    iam_invalidation_kind kind;
    const char *user_id;   /* NULL when the message names none (integers arrive as strings) */
    const char *jti;       /* NULL when none */
    bool all;              /* {"all": true}: every entry */
    /* The message named a token. The token itself is never handed out: a fingerprint (the
     * first 16 hex digits of its SHA-256) identifies it. "" when none. */
    char token_fingerprint[17];
    bool malformed;        /* not a JSON object of the known shape: ignored (counted) */
} iam_invalidation;

/** Defaults and limits of the auth-service tier. */
#define IAM_DEFAULT_AUTH_TIMEOUT_MS 2000  /* deadline of one auth-service call (retry included) */
#define IAM_MAX_AUTH_TIMEOUT_MS 60000
/** JWKS refresh: max-age is bounded to [MIN, MAX]; DEFAULT without Cache-Control. */
#define IAM_JWKS_MIN_REFRESH_S 5
#define IAM_JWKS_MAX_REFRESH_S 3600
#define IAM_JWKS_DEFAULT_REFRESH_S 300
/** After a failed JWKS fetch the next is tried after a delay doubling from this up to
 *  IAM_JWKS_MAX_REFRESH_S. */
#define IAM_JWKS_RETRY_MIN_MS 1000
/** Shortest interval between two refreshes triggered by tokens with an unknown key. */
#define IAM_JWKS_KID_COOLDOWN_MS 30000

/** Longest URL accepted in options. */
#define IAM_MAX_URL_BYTES 2048

typedef struct iam_client_options {
    iam_mode mode;
    /* Keys. Any combination; at least one way to verify a token is required. */
    const char *jwt_secret;    /* HS256/384/512 shared secret (>= 32 bytes); NUL-terminated */
    const char *jwks_file;     /* a JWKS document on disk */
    const char *pem_file;      /* a PEM public key on disk */
    iam_keyset *keys;          /* extra keys (retained by the client) */
    /* Claim policy (NULL: platform defaults). */
    const char *audience;
    const char *issuer;
    int64_t leeway_s;
    /* The auth-service tier. auth_url: the central auth service (validation fallback, and
     * the default JWKS at <auth_url>/.well-known/jwks.json); required in central mode.
     * jwks_url: where keys are fetched from (overrides the default). Neither is used in
     * local-only mode. */
    const char *auth_url;      /* http(s)://host[:port][/path] */
    const char *jwks_url;      /* http(s)://… */
    int64_t auth_timeout_ms;   /* deadline of one auth-service or JWKS call (0: default) */
    /* The Redis tier: redis://[[user]:password@]host[:port][/db] or
     * unix:///path/to/socket[?db=N&password=P] (percent-encoding allowed in user and
     * password). rediss:// (TLS) needs hiredis >= 1.0 with SSL; Debian 12 ships 0.14, so it
     * is refused at creation with a message saying so. */
    const char *redis_url;
    /* Keys the shared cache (record keys and record MACs); >= 32 bytes. NULL: derived from
     * jwt_secret (HMAC-SHA256 under a fixed label), so every node holding the platform's
     * secret shares records. Required with redis_url when there is no jwt_secret. */
    const char *cache_secret;
    int64_t redis_timeout_ms;  /* deadline of one Redis round trip (0: default) */
    int64_t redis_stale_s;     /* while the invalidation subscription is lost, no cached answer
                                  is served longer than this after the loss (0: default) */
    /* Blocking calls (iam_client_resolve, iam_client_cached, iam_client_revoke_token) make
     * their first Redis round trip themselves, on a blocking connection of their own taken
     * from a pool of at most this many (0: IAM_DEFAULT_REDIS_DIRECT; -1: never — every
     * round trip goes through the I/O thread). Same commands, same deadline, same answers;
     * two thread hand-offs fewer. When all are in use, Redis is down, or commands sent
     * earlier through the I/O thread are unanswered, the call goes through the I/O thread. */
    int64_t redis_direct_max;
    /* When a token's revocation cannot be checked (Redis down, slow or erroring): false
     * (default) answers IAM_E_UNAVAILABLE; true accepts it, caching the answer at most
     * redis_stale_s. */
    bool revocation_fail_open;
    /* Called on the client's I/O thread for every invalidation message heard on
     * policy:invalidate and for every change of the subscription's state; must not block.
     * NULL: none. */
    void (*on_invalidation)(void *arg, const struct iam_invalidation *m);
    void *invalidation_arg;
    /* The in-process cache. 0 means the default. Both bounds hold for the cache as a whole
     * (an entry is never stored if it cannot fit); cache_max_entries <= IAM_MAX_CACHE_ENTRIES. */
    size_t cache_max_entries;
    size_t cache_max_bytes;
    int64_t cache_ttl_s;       /* upper bound on how long an answer is reused (max staleness) */
    int64_t negative_ttl_s;    /* how long a refusal is remembered; -1 disables negative entries */
    int64_t revocation_ttl_s;  /* how long a revoked jti stays marked (> token lifetime;
                                  <= IAM_MAX_REVOCATION_TTL_S) */
    bool cache_disabled;       /* every request is resolved (still coalesced) */
    /* Time source in milliseconds since the epoch (tests); NULL: the system clock. It is
     * called from the callers' threads and from the client's I/O thread (expiry sweep),
     * so it must be thread-safe. */
    int64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
} iam_client_options;

/** Fills o with the defaults (all zero/NULL except the mode). */
IAM_EXTERN void iam_client_options_init(iam_client_options *o);

/**
 * Overlays settings from the environment: IAM_MODE (local-first|central|local-only),
 * IAM_JWT_SECRET, IAM_JWKS_FILE, IAM_PEM_FILE, IAM_AUDIENCE, IAM_ISSUER, IAM_LEEWAY_S,
 * IAM_AUTH_URL, IAM_JWKS_URL, IAM_AUTH_TIMEOUT_MS, IAM_REDIS_URL, IAM_CACHE_SECRET,
 * IAM_REDIS_TIMEOUT_MS, IAM_REDIS_STALE_S, IAM_REDIS_DIRECT_MAX, IAM_REVOCATION_FAIL_OPEN,
 * IAM_CACHE_ENTRIES, IAM_CACHE_BYTES, IAM_CACHE_TTL_S, IAM_NEGATIVE_TTL_S (the README's
 * configuration table gives each one's range). Strings point into the environment (keep it
 * unchanged until iam_client_new returns). A malformed value is IAM_E_CONFIG naming the
 * variable (never echoing its value).
 */
IAM_EXTERN iam_status iam_client_options_from_env(iam_client_options *o, iam_error *err);

/**
 * Creates a client. A configuration that cannot work fails here with IAM_E_CONFIG and a
 * message saying why (no key and no way to fetch one, a secret shorter than 32 bytes, a
 * malformed URL, an unreadable key file, a mode this build cannot serve) — never later as
 * "unauthorized" on every request. Starts the client's I/O thread. Caller owns *out.
 */
IAM_EXTERN iam_status iam_client_new(const iam_client_options *o, iam_client **out, iam_error *err);

/** Stops the I/O thread and frees the client. No call may be in progress or follow. */
IAM_EXTERN void iam_client_free(iam_client *c);

/** Per-request context. NULL fields mean the client's settings. */
typedef struct iam_resolve_options {
    const char *audience;     /* overrides the client's audience for this request */
    const char *required_org; /* tenant isolation: refuse (IAM_E_WRONG_TENANT) other orgs */
} iam_resolve_options;

/**
 * Resolves a token (blocking; the asynchronous call, waited for — its first Redis round trip
 * made on the calling thread, see redis_direct_max). Safe from any number of
 * threads — except, with the Redis tier, the client's own I/O thread (a callback), where a
 * wait could never end: IAM_E_INVALID_ARGUMENT there (the same for iam_client_cached and
 * iam_client_revoke_token); use iam_client_resolve_async from callbacks. On IAM_OK *out holds a reference (caller releases). Refusals are the rejection
 * codes; IAM_E_UNAVAILABLE means no answer could be obtained (never cached).
 */
IAM_EXTERN iam_status iam_client_resolve(iam_client *c, const char *token, size_t len,
                                         const iam_resolve_options *ro, iam_user **out,
                                         iam_error *err);

/**
 * Completion of an asynchronous resolution. `user` is NULL unless status is IAM_OK; the
 * callback owns that reference. `err` is valid only during the call.
 */
typedef void (*iam_resolve_cb)(void *arg, iam_status status, iam_user *user, const iam_error *err);

/**
 * Starts a resolution and returns at once. The callback runs exactly once: on the calling
 * thread before this returns when the answer is local (cache hit, local verification), or
 * later on another thread (the I/O thread, or the thread completing a coalesced resolution).
 * The token is copied. Returns IAM_OK when the callback has been or will be called;
 * otherwise (invalid arguments) the callback is not called.
 */
IAM_EXTERN iam_status iam_client_resolve_async(iam_client *c, const char *token, size_t len,
                                               const iam_resolve_options *ro, iam_resolve_cb cb,
                                               void *arg);

/**
 * Answers from the caches only: never verifies a token and never calls the auth service.
 * IAM_OK with *out (a reference) for a cached context; the remembered refusal's code for a
 * cached refusal; IAM_E_NOT_CACHED when no cache holds an answer. Expiry, revocation marks
 * and tenant are checked as on any hit. Later tiers (the Redis shared cache) are consulted
 * too, so the call may wait up to their deadline.
 */
IAM_EXTERN iam_status iam_client_cached(iam_client *c, const char *token, size_t len,
                                        const iam_resolve_options *ro, iam_user **out,
                                        iam_error *err);

/* Invalidation. Each returns the number of cached entries removed. A revoked jti is also
 * marked so that the token is refused (IAM_E_REVOKED) and never cached again for
 * revocation_ttl_s; resolutions in flight when an invalidation lands are not cached. After
 * iam_client_revoke_jti returns, a call joining a resolution already in flight is refused
 * too. (A revocation written elsewhere is seen through Redis: a call that joins a resolution
 * whose blacklist check went out before the key was written may get that resolution's
 * answer, until the invalidation message is heard; see the README's Redis tier.) */
IAM_EXTERN size_t iam_client_invalidate_token(iam_client *c, const char *token, size_t len);
IAM_EXTERN size_t iam_client_invalidate_user(iam_client *c, const char *user_id);
IAM_EXTERN size_t iam_client_revoke_jti(iam_client *c, const char *jti);
IAM_EXTERN size_t iam_client_invalidate_all(iam_client *c);
/* With the Redis tier, each invalidation above is also published on policy:invalidate for
 * the other nodes ({"user_id": …}, {"jti": …}, {"all": true}, each with an "origin" id so
 * the publisher skips its own echo; a token is published by its jti, never itself),
 * iam_client_revoke_jti also writes the platform's blacklist key for revocation_ttl_s, and
 * the shared records concerned are deleted (a token's; a user's, through a per-user index).
 * Publishing and deleting are asynchronous and best effort. */

/**
 * Revokes a token everywhere (blocking, bounded by redis_timeout_ms): marks its jti here,
 * evicts it, writes blacklist:jti:<jti> = "1" with a TTL of the seconds left until its exp
 * (at least 1), deletes its shared-cache record and publishes {"user_id": …, "jti": …}.
 * The token's claims are read without verifying its signature when no key held can (a
 * revocation can only ever refuse more). Errors: IAM_E_MALFORMED, IAM_E_MISSING_CLAIM (no
 * jti: revoke its user with iam_client_invalidate_user instead), IAM_E_UNAVAILABLE (Redis
 * did not confirm; the local effects stand), IAM_E_CONFIG (no Redis tier).
 */
IAM_EXTERN iam_status iam_client_revoke_token(iam_client *c, const char *token, size_t len,
                                              iam_error *err);

/** Latency histogram: bucket i counts durations in [2^i, 2^(i+1)) ns; the last is open-ended. */
#define IAM_LATENCY_BUCKETS 32
typedef struct iam_latency {
    uint64_t count;
    uint64_t sum_ns;
    uint64_t buckets[IAM_LATENCY_BUCKETS];
} iam_latency;

/** Number of slots in iam_client_stats.rejected: indexed by -status. */
#define IAM_STATUS_SLOTS 40

typedef struct iam_client_stats {
    /* L1 in-process cache */
    uint64_t l1_hits;            /* answered from a positive entry */
    uint64_t l1_negative_hits;   /* refused from a remembered refusal */
    uint64_t l1_misses;
    uint64_t l1_entries, l1_bytes;
    uint64_t l1_evictions_capacity, l1_evictions_expired, l1_evictions_invalidated;
    /* resolution */
    uint64_t coalesced;          /* requests that waited for another's resolution */
    uint64_t verifications;      /* local verifications performed */
    uint64_t accepted;
    uint64_t rejected[IAM_STATUS_SLOTS]; /* by reason: rejected[-IAM_E_EXPIRED] … */
    uint64_t revocation_marks;
    uint64_t revocation_marks_dropped; /* dropped early because the table was full */
    uint64_t network_calls;      /* Redis round trips and auth-service calls */
    /* the Redis tier */
    uint64_t redis_hits;         /* answered from a valid shared-cache record */
    uint64_t redis_misses;       /* looked up, no record */
    uint64_t redis_bad_records;  /* failed MAC, malformed, other context: removed, never trusted */
    uint64_t redis_revoked;      /* refused because blacklist:jti:<jti> exists */
    uint64_t redis_errors;       /* error replies, timeouts, lost connections */
    uint64_t redis_writes;       /* records stored */
    uint64_t redis_reconnects;
    uint64_t redis_direct;       /* round trips blocking callers made themselves (of network_calls) */
    uint64_t invalidations_heard;
    uint64_t invalidations_malformed;
    bool redis_connected, redis_subscribed;
    /* the auth-service tier */
    uint64_t auth_calls;         /* POST /auth/validate started (a retry is not a new call) */
    uint64_t auth_valid;         /* answered valid and accepted */
    uint64_t auth_denied;        /* answered {"valid": false} */
    uint64_t auth_errors;        /* unavailable: timeout, refused, HTTP error, not the contract */
    uint64_t auth_fast_failures; /* refused at once because the circuit breaker is open */
    uint64_t auth_breaker_opened;/* times the breaker opened */
    uint64_t http_retries;       /* connections retried (nothing had been sent) */
    int auth_breaker_state;      /* 0 closed, 1 open, 2 half-open (one probe out) */
    uint64_t jwks_fetches;       /* JWKS requests completed or failed */
    uint64_t jwks_updates;       /* new key sets installed */
    uint64_t jwks_not_modified;  /* 304 answers to a conditional fetch */
    uint64_t jwks_failures;      /* failed fetches (the keys held stay in use) */
    uint64_t kid_refreshes;      /* refreshes started for a token with an unknown key */
    uint64_t kid_refreshes_coalesced; /* resolutions that waited for a refresh already running */
    uint64_t kid_refreshes_suppressed; /* unknown-key resolutions inside the cooldown: no fetch */
    uint64_t keys_held;          /* keys in the current key set */
    /* latencies: hits are sampled 1 in 64 to keep the clock off the hot path */
    iam_latency hit_latency, verify_latency;
} iam_client_stats;

/** A consistent-enough snapshot (counters are summed over shards without a global lock). */
IAM_EXTERN void iam_client_stats_get(iam_client *c, iam_client_stats *out);
/** The statistics as one JSON object. Caller frees with iam_free. */
IAM_EXTERN char *iam_client_stats_json(iam_client *c);
/** The statistics in Prometheus text exposition format. Caller frees with iam_free. */
IAM_EXTERN char *iam_client_metrics_prometheus(iam_client *c);

#ifdef __cplusplus
}
#endif
#endif /* IAMCLIENT_H */
