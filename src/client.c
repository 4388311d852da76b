/*
 * client.c — the resolution pipeline: configuration, the L1 cache with coalescing,
 * local verification, revocation marks, invalidation, statistics. Parses no JSON and no
 * bytes itself (jose/ and identity/ do).
 *
 * Invariants:
 *   - the hit path takes one shard lock, retains the user, and reads the coarse clock;
 *   - a resolution in flight when an invalidation lands is answered but not cached
 *     (the invalidation epoch and a short log of recent invalidations decide);
 *   - a revoked jti is refused after verification and only ever cached as a refusal;
 *   - IAM_E_UNAVAILABLE and caller errors are never cached.
 */
#include "cache/l1.h"
#include "cache/record.h"
#include "identity/identity.h"
#include "identity/peek.h"
#include "net/auth.h"
#include "net/http.h"
#include "net/loop.h"
#include "net/redis.h"
#include "strbuf.h"
#include "client_internal.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REV_BUCKETS 65536

typedef struct rev_mark {
    struct rev_mark *next;
    int64_t expires_ms;
    char jti[];
} rev_mark;

struct pending;

/* The JWKS state: touched on the I/O thread only. */
typedef struct jwks_state {
    bool in_flight;         /* a fetch is running */
    struct pending *waiters;/* resolutions waiting for it (an unknown key) */
    char etag[HTTP_MAX_ETAG_BYTES + 1];
    int64_t next_ms;        /* when the background refresh is due (loop clock) */
    int64_t last_kid_ms;    /* start of the last refresh for an unknown key */
    bool kid_ever;          /* last_kid_ms is set */
    int64_t backoff_ms;     /* after failures */
    bool started;           /* the first fetch was started (the tier is fully set up) */
} jwks_state;

struct iam_client {
    iam_mode mode;
    /* The key set in use. Without JWKS it never changes and is read without a lock; with
     * JWKS it is swapped by the I/O thread and read through keys_get/keys_put. */
    iam_keyset *ks;
    iam_keyset *static_ks;  /* jwt_secret, files, keys: merged into every fetched set */
    bool ks_dynamic;
    pthread_mutex_t ks_lock;
    _Atomic uint64_t ks_gen;   /* bumped by every swap */
    char *audience, *issuer, *auth_url, *jwks_url, *redis_url;
    int64_t leeway_s;
    l1_cache l1;
    bool cache_enabled, negative_enabled;
    int64_t ttl_ms, negative_ttl_ms, revocation_ttl_ms;
    int64_t (*clock_ms)(void *);
    void *clock_ctx;
    uint64_t seed, default_ctx;
    io_loop *loop;

    pthread_mutex_t stats_lock; /* the verification path (microseconds) only */
    uint64_t verifications, accepted, rejected[IAM_STATUS_SLOTS], network_calls;
    iam_latency verify_latency;

    pthread_mutex_t rev_lock;
    rev_mark **rev; /* REV_BUCKETS chains, allocated on first revocation */
    _Atomic int rev_any; /* set (release) once the first mark is added */
    size_t rev_count;
    uint64_t rev_dropped;

    _Atomic uint64_t epoch;
    pthread_mutex_t inv_lock;
    inv_record inv[INV_LOG];

    /* the Redis tier (NULL without redis_url) */
    redis_tier *redis;
    record_keys rk;
    record_ctx rctx;            /* the client's own validation context */
    int64_t stale_ms;
    bool fail_open;
    _Atomic bool deaf;          /* invalidations cannot be heard: answers cached <= stale_ms */
    void (*on_invalidation)(void *, const iam_invalidation *);
    void *invalidation_arg;
    char origin[17];            /* marks this client's publishes: its own echo is skipped */
    _Atomic uint64_t redis_hits, redis_misses, redis_bad, redis_revoked, redis_writes, inv_heard,
        inv_malformed;

    /* the auth-service tier (http NULL without auth_url/jwks_url) */
    http_tier *http;
    char *validate_url;         /* NULL without auth_url */
    char *jwks_fetch_url;       /* NULL without JWKS */
    int64_t auth_timeout_ms;
    jwks_state jwks;            /* I/O thread */
    auth_breaker breaker;       /* I/O thread */
    _Atomic int breaker_state;
    _Atomic uint64_t auth_calls, auth_valid, auth_denied, auth_errors, auth_fast, auth_opened,
        jwks_fetches, jwks_updates, jwks_304, jwks_failures, kid_refreshes, kid_coalesced,
        kid_suppressed;
};

/* ------------------------------------------------------------------ clock */

static int64_t system_clock_ms(void *ctx)
{
    (void)ctx;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME_COARSE, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline int64_t now_ms(const iam_client *c)
{
    return c->clock_ms(c->clock_ctx);
}

/* ---------------------------------------------------------------- options */

void iam_client_options_init(iam_client_options *o)
{
    memset(o, 0, sizeof *o);
    o->mode = IAM_MODE_LOCAL_FIRST;
}

static bool parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !((s[0] >= '0' && s[0] <= '9') || s[0] == '-'))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_mode(const char *s, iam_mode *m)
{
    if (strcmp(s, "local-first") == 0)
        *m = IAM_MODE_LOCAL_FIRST;
    else if (strcmp(s, "central") == 0)
        *m = IAM_MODE_CENTRAL;
    else if (strcmp(s, "local-only") == 0)
        *m = IAM_MODE_LOCAL_ONLY;
    else
        return false;
    return true;
}

iam_status iam_client_options_from_env(iam_client_options *o, iam_error *err)
{
    if (!o)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "options are required");
    const char *v;
    if ((v = getenv("IAM_MODE")) && *v && !parse_mode(v, &o->mode))
        return iam_fail(err, IAM_E_CONFIG, "IAM_MODE must be local-first, central or local-only");
    static const struct {
        const char *name;
        size_t offset;
    } STRINGS[] = {
        {"IAM_JWT_SECRET", offsetof(iam_client_options, jwt_secret)},
        {"IAM_JWKS_FILE", offsetof(iam_client_options, jwks_file)},
        {"IAM_PEM_FILE", offsetof(iam_client_options, pem_file)},
        {"IAM_AUDIENCE", offsetof(iam_client_options, audience)},
        {"IAM_ISSUER", offsetof(iam_client_options, issuer)},
        {"IAM_AUTH_URL", offsetof(iam_client_options, auth_url)},
        {"IAM_JWKS_URL", offsetof(iam_client_options, jwks_url)},
        {"IAM_REDIS_URL", offsetof(iam_client_options, redis_url)},
        {"IAM_CACHE_SECRET", offsetof(iam_client_options, cache_secret)},
    };
    for (size_t i = 0; i < sizeof STRINGS / sizeof STRINGS[0]; i++)
        if ((v = getenv(STRINGS[i].name)) && *v)
            *(const char **)(void *)((char *)o + STRINGS[i].offset) = v;
    int64_t n;
    if ((v = getenv("IAM_LEEWAY_S")) && *v) {
        if (!parse_i64(v, 0, 86400, &n))
            return iam_fail(err, IAM_E_CONFIG, "IAM_LEEWAY_S must be whole seconds from 0 to 86400");
        o->leeway_s = n;
    }
    if ((v = getenv("IAM_CACHE_ENTRIES")) && *v) {
        if (!parse_i64(v, 1, IAM_MAX_CACHE_ENTRIES, &n))
            return iam_fail(err, IAM_E_CONFIG, "IAM_CACHE_ENTRIES must be an integer from 1 to %d",
                            IAM_MAX_CACHE_ENTRIES);
        o->cache_max_entries = (size_t)n;
    }
    if ((v = getenv("IAM_CACHE_BYTES")) && *v) {
        if (!parse_i64(v, 1, INT64_MAX, &n))
            return iam_fail(err, IAM_E_CONFIG, "IAM_CACHE_BYTES must be a positive integer");
        o->cache_max_bytes = (size_t)n;
    }
    /* 0 in the options struct means "the default"; from the environment it would read as
     * "none", so it is refused there rather than silently meaning 300 s or 10 s. */
    if ((v = getenv("IAM_CACHE_TTL_S")) && *v) {
        if (!parse_i64(v, 1, 86400, &n))
            return iam_fail(err, IAM_E_CONFIG, "IAM_CACHE_TTL_S must be whole seconds from 1 to 86400");
        o->cache_ttl_s = n;
    }
    if ((v = getenv("IAM_REDIS_TIMEOUT_MS")) && *v) {
        if (!parse_i64(v, 1, IAM_MAX_REDIS_TIMEOUT_MS, &n))
            return iam_fail(err, IAM_E_CONFIG, "IAM_REDIS_TIMEOUT_MS must be milliseconds from 1 to %d",
                            IAM_MAX_REDIS_TIMEOUT_MS);
        o->redis_timeout_ms = n;
    }
    if ((v = getenv("IAM_AUTH_TIMEOUT_MS")) && *v) {
        if (!parse_i64(v, 1, IAM_MAX_AUTH_TIMEOUT_MS, &n))
            return iam_fail(err, IAM_E_CONFIG, "IAM_AUTH_TIMEOUT_MS must be milliseconds from 1 to %d",
                            IAM_MAX_AUTH_TIMEOUT_MS);
        o->auth_timeout_ms = n;
    }
    if ((v = getenv("IAM_REDIS_STALE_S")) && *v) {
        if (!parse_i64(v, 1, IAM_MAX_REDIS_STALE_S, &n))
            return iam_fail(err, IAM_E_CONFIG, "IAM_REDIS_STALE_S must be seconds from 1 to %d",
                            IAM_MAX_REDIS_STALE_S);
        o->redis_stale_s = n;
    }
    if ((v = getenv("IAM_REDIS_DIRECT_MAX")) && *v) {
        if (!parse_i64(v, -1, IAM_MAX_REDIS_DIRECT, &n) || n == 0)
            return iam_fail(err, IAM_E_CONFIG, "IAM_REDIS_DIRECT_MAX must be -1 (off) or 1 to %d",
                            IAM_MAX_REDIS_DIRECT);
        o->redis_direct_max = n;
    }
    if ((v = getenv("IAM_REVOCATION_FAIL_OPEN")) && *v) {
        if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
            return iam_fail(err, IAM_E_CONFIG, "IAM_REVOCATION_FAIL_OPEN must be 0 or 1");
        o->revocation_fail_open = v[0] == '1';
    }
    if ((v = getenv("IAM_NEGATIVE_TTL_S")) && *v) {
        if (!parse_i64(v, -1, 3600, &n) || n == 0)
            return iam_fail(err, IAM_E_CONFIG, "IAM_NEGATIVE_TTL_S must be -1 (off) or 1 to 3600");
        o->negative_ttl_s = n;
    }
    return IAM_OK;
}

/* A URL the network tiers can use: scheme, a non-empty authority (or unix path), no
 * whitespace or control characters. Names the option, never echoes the value. */
static iam_status check_url(const char *url, const char *what, const char *const *schemes,
                            iam_error *err)
{
    size_t len = strlen(url);
    if (len == 0 || len > IAM_MAX_URL_BYTES)
        return iam_fail(err, IAM_E_CONFIG, "%s must be 1 to %d bytes", what, IAM_MAX_URL_BYTES);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
            return iam_fail(err, IAM_E_CONFIG, "%s contains whitespace or control characters", what);
    if (!schemes)
        return IAM_OK; /* the scheme's own parser checks the rest */
    for (size_t i = 0; schemes[i]; i++) {
        size_t sl = strlen(schemes[i]);
        if (len == sl && strcmp(url, schemes[i]) == 0)
            return iam_fail(err, IAM_E_CONFIG, "%s has no host", what);
        if (len > sl && strncmp(url, schemes[i], sl) == 0) {
            const char *rest = url + sl;
            if (rest[0] == '/' || rest[0] == '@' || rest[0] == ':' || rest[0] == '?' || rest[0] == '#')
                if (strcmp(schemes[i], "unix://") != 0)
                    return iam_fail(err, IAM_E_CONFIG, "%s has no host", what);
            return IAM_OK;
        }
    }
    return iam_fail(err, IAM_E_CONFIG, "%s must start with %s%s%s", what, schemes[0],
                    schemes[1] ? " or " : "", schemes[1] ? schemes[1] : "");
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static iam_status load_key_file(iam_keyset *ks, const char *path, bool jwks, iam_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return iam_fail(err, IAM_E_CONFIG, "cannot read the %s file: %s", jwks ? "JWKS" : "PEM",
                        strerror(errno));
    char *buf = malloc(IAM_MAX_JWKS_BYTES + 1);
    size_t n = buf ? fread(buf, 1, IAM_MAX_JWKS_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf)
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    iam_status st;
    if (n > IAM_MAX_JWKS_BYTES) {
        st = iam_fail(err, IAM_E_CONFIG, "the %s file is larger than %d bytes", jwks ? "JWKS" : "PEM",
                      IAM_MAX_JWKS_BYTES);
    } else if (jwks) {
        size_t added = 0, skipped = 0;
        st = iam_keyset_add_jwks(ks, buf, n, &added, &skipped, err);
        if (st == IAM_OK && added == 0)
            st = iam_fail(err, IAM_E_CONFIG, "the JWKS file holds no usable key (%zu skipped)", skipped);
        else if (st != IAM_OK)
            st = iam_fail(err, IAM_E_CONFIG, "the JWKS file is not a usable JWKS");
    } else {
        iam_error e = {0};
        st = iam_keyset_add_pem(ks, buf, n, NULL, &e);
        if (st != IAM_OK)
            st = iam_fail(err, IAM_E_CONFIG, "the PEM file: %s", e.message);
    }
    free(buf);
    return st;
}

static uint64_t ctx_hash(uint64_t seed, const char *a, const char *b, const char *c)
{
    uint64_t h = seed ^ 0xcbf29ce484222325ULL;
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        /* A marker tells "not set" from "set to the empty string": an empty required_org
         * must never share the default context's entries (it refuses everyone). */
        h = (h ^ (parts[i] ? 0x01u : 0x02u)) * 0x100000001b3ULL;
        for (const char *p = parts[i]; p && *p; p++)
            h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
        h = (h ^ 0xff) * 0x100000001b3ULL; /* separator: ("ab","") differs from ("a","b") */
    }
    return h;
}

static void on_tick(void *arg);
static void jwks_first_fetch(void *arg);
static iam_status redis_setup(iam_client *c, const iam_client_options *o, const redis_url *u,
                              iam_error *err);

iam_status iam_client_new(const iam_client_options *o, iam_client **out, iam_error *err)
{
    if (!o || !out)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "options and out-parameter are required");
    *out = NULL;
    if (o->mode != IAM_MODE_LOCAL_FIRST && o->mode != IAM_MODE_CENTRAL && o->mode != IAM_MODE_LOCAL_ONLY)
        return iam_fail(err, IAM_E_CONFIG, "unknown mode");
    if (o->mode == IAM_MODE_CENTRAL && !o->auth_url)
        return iam_fail(err, IAM_E_CONFIG, "central mode needs auth_url (IAM_AUTH_URL): the auth service decides");
    if (o->mode == IAM_MODE_LOCAL_ONLY && (o->auth_url || o->jwks_url))
        return iam_fail(err, IAM_E_CONFIG,
                        "local-only mode uses no network: drop auth_url/jwks_url or choose local-first");
    if (o->auth_timeout_ms < 0 || o->auth_timeout_ms > IAM_MAX_AUTH_TIMEOUT_MS)
        return iam_fail(err, IAM_E_CONFIG, "auth_timeout_ms must be 0..%d", IAM_MAX_AUTH_TIMEOUT_MS);
    if (o->leeway_s < 0 || o->leeway_s > 86400)
        return iam_fail(err, IAM_E_CONFIG, "leeway must be 0 to 86400 seconds");
    if (o->cache_ttl_s < 0 || o->cache_ttl_s > 86400 || o->negative_ttl_s < -1 ||
        o->negative_ttl_s > 3600 || o->revocation_ttl_s < 0 ||
        o->revocation_ttl_s > IAM_MAX_REVOCATION_TTL_S)
        return iam_fail(err, IAM_E_CONFIG,
                        "cache TTLs out of range (ttl 0..86400, negative -1..3600, revocation 0..%d)",
                        IAM_MAX_REVOCATION_TTL_S);
    if (o->cache_max_entries > IAM_MAX_CACHE_ENTRIES)
        return iam_fail(err, IAM_E_CONFIG, "cache_max_entries above %d", IAM_MAX_CACHE_ENTRIES);
    static const char *const HTTP[] = {"http://", "https://", NULL};
    iam_status st;
    if (o->auth_url && (st = check_url(o->auth_url, "auth_url", HTTP, err)) != IAM_OK)
        return st;
    if (o->jwks_url && (st = check_url(o->jwks_url, "jwks_url", HTTP, err)) != IAM_OK)
        return st;
    if (o->redis_url && (st = check_url(o->redis_url, "redis_url", NULL, err)) != IAM_OK)
        return st;
    redis_url rurl;
    if (o->redis_url && (st = redis_url_parse(o->redis_url, &rurl, err)) != IAM_OK)
        return st;
    if (o->redis_url && o->mode == IAM_MODE_LOCAL_ONLY)
        return iam_fail(err, IAM_E_CONFIG, "local-only mode uses no network: drop redis_url or choose local-first");
    if (o->redis_direct_max < -1 || o->redis_direct_max > IAM_MAX_REDIS_DIRECT)
        return iam_fail(err, IAM_E_CONFIG, "redis_direct_max must be -1 (off), 0 (default) or 1..%d",
                        IAM_MAX_REDIS_DIRECT);
    if (o->redis_timeout_ms < 0 || o->redis_timeout_ms > IAM_MAX_REDIS_TIMEOUT_MS || o->redis_stale_s < 0 ||
        o->redis_stale_s > IAM_MAX_REDIS_STALE_S)
        return iam_fail(err, IAM_E_CONFIG, "redis_timeout_ms must be 0..%d and redis_stale_s 0..%d",
                        IAM_MAX_REDIS_TIMEOUT_MS, IAM_MAX_REDIS_STALE_S);
    if (o->cache_secret && strlen(o->cache_secret) < 32)
        return iam_fail(err, IAM_E_CONFIG, "cache_secret must be at least 32 bytes");
    if (o->redis_url && !o->cache_secret && !o->jwt_secret)
        return iam_fail(err, IAM_E_CONFIG,
                        "redis_url needs cache_secret (IAM_CACHE_SECRET), or jwt_secret to derive one from");
    if ((o->audience && strlen(o->audience) > IAM_MAX_URL_BYTES) ||
        (o->issuer && strlen(o->issuer) > IAM_MAX_URL_BYTES))
        return iam_fail(err, IAM_E_CONFIG, "audience and issuer are at most %d bytes", IAM_MAX_URL_BYTES);

    iam_client *c = calloc(1, sizeof *c);
    if (!c)
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    pthread_mutex_init(&c->stats_lock, NULL);
    pthread_mutex_init(&c->rev_lock, NULL);
    pthread_mutex_init(&c->inv_lock, NULL);
    pthread_mutex_init(&c->ks_lock, NULL);
    atomic_init(&c->epoch, 0);
    c->mode = o->mode;
    c->ks = iam_keyset_new();
    st = c->ks ? IAM_OK : iam_fail(err, IAM_E_NOMEM, "out of memory");
    if (st == IAM_OK && o->jwt_secret) {
        iam_error e = {0};
        if (iam_keyset_add_hmac(c->ks, o->jwt_secret, strlen(o->jwt_secret), NULL, &e) != IAM_OK)
            st = iam_fail(err, IAM_E_CONFIG, "jwt_secret: %s", e.message);
    }
    if (st == IAM_OK && o->jwks_file)
        st = load_key_file(c->ks, o->jwks_file, true, err);
    if (st == IAM_OK && o->pem_file)
        st = load_key_file(c->ks, o->pem_file, false, err);
    if (st == IAM_OK && o->keys && keyset_merge(c->ks, o->keys, err) != IAM_OK)
        st = iam_fail(err, IAM_E_CONFIG, "more than %d keys in all (jwt_secret, files and keys)",
                      IAM_MAX_KEYS);
    if (st == IAM_OK && iam_keyset_count(c->ks) == 0 && o->mode != IAM_MODE_CENTRAL && !o->jwks_url &&
        !o->auth_url)
        st = iam_fail(err, IAM_E_CONFIG,
                      "no key: give jwt_secret, jwks_file, pem_file or keys (IAM_JWT_SECRET, IAM_JWKS_FILE, "
                      "IAM_PEM_FILE), or auth_url/jwks_url to fetch keys from");
    c->auth_timeout_ms = o->auth_timeout_ms ? o->auth_timeout_ms : IAM_DEFAULT_AUTH_TIMEOUT_MS;
    if (st == IAM_OK && o->auth_url) {
        size_t ul = strlen(o->auth_url);
        while (ul > 0 && o->auth_url[ul - 1] == '/')
            ul--;
        c->validate_url = malloc(ul + sizeof AUTH_VALIDATE_PATH);
        if (c->validate_url)
            snprintf(c->validate_url, ul + sizeof AUTH_VALIDATE_PATH, "%.*s%s", (int)ul, o->auth_url,
                     AUTH_VALIDATE_PATH);
        if (o->mode != IAM_MODE_CENTRAL && !o->jwks_url) {
            c->jwks_fetch_url = malloc(ul + sizeof AUTH_JWKS_PATH);
            if (c->jwks_fetch_url)
                snprintf(c->jwks_fetch_url, ul + sizeof AUTH_JWKS_PATH, "%.*s%s", (int)ul, o->auth_url,
                         AUTH_JWKS_PATH);
        }
        if (!c->validate_url || (o->mode != IAM_MODE_CENTRAL && !o->jwks_url && !c->jwks_fetch_url))
            st = iam_fail(err, IAM_E_NOMEM, "out of memory");
    }
    if (st == IAM_OK && o->jwks_url && o->mode != IAM_MODE_CENTRAL && !(c->jwks_fetch_url = strdup(o->jwks_url)))
        st = iam_fail(err, IAM_E_NOMEM, "out of memory");
    if (st == IAM_OK && c->jwks_fetch_url) { /* the static keys are kept to merge into fetched sets */
        c->static_ks = c->ks;
        c->ks = iam_keyset_retain(c->static_ks);
        c->ks_dynamic = true;
    }
    c->audience = dup_or_null(o->audience);
    c->issuer = dup_or_null(o->issuer);
    c->auth_url = dup_or_null(o->auth_url);
    c->jwks_url = dup_or_null(o->jwks_url);
    c->redis_url = dup_or_null(o->redis_url);
    c->leeway_s = o->leeway_s;
    c->cache_enabled = !o->cache_disabled;
    c->negative_enabled = o->negative_ttl_s >= 0;
    c->ttl_ms = (o->cache_ttl_s ? o->cache_ttl_s : IAM_DEFAULT_CACHE_TTL_S) * 1000;
    c->negative_ttl_ms = (o->negative_ttl_s > 0 ? o->negative_ttl_s : IAM_DEFAULT_NEGATIVE_TTL_S) * 1000;
    c->revocation_ttl_ms = (o->revocation_ttl_s ? o->revocation_ttl_s : IAM_DEFAULT_REVOCATION_TTL_S) * 1000;
    c->clock_ms = o->clock_ms ? o->clock_ms : system_clock_ms;
    c->clock_ctx = o->clock_ctx;
    if (st == IAM_OK && RAND_bytes((unsigned char *)&c->seed, sizeof c->seed) != 1)
        st = iam_fail(err, IAM_E_INTERNAL, "no randomness for the cache key");
    c->default_ctx = ctx_hash(c->seed, c->audience, c->issuer, NULL);
    if (st == IAM_OK &&
        l1_init(&c->l1, o->cache_max_entries ? o->cache_max_entries : IAM_DEFAULT_CACHE_ENTRIES,
                o->cache_max_bytes ? o->cache_max_bytes : IAM_DEFAULT_CACHE_BYTES, c->seed) != IAM_OK)
        st = iam_fail(err, IAM_E_NOMEM, "out of memory for the cache");
    if (st == IAM_OK && io_loop_start(&c->loop, on_tick, c, 1000) != IAM_OK)
        st = iam_fail(err, IAM_E_INTERNAL, "cannot start the I/O thread");
    if (st == IAM_OK && o->redis_url)
        st = redis_setup(c, o, &rurl, err);
    if (st == IAM_OK && (c->validate_url || c->jwks_fetch_url)) {
        if (http_tier_start(c->loop, &c->http) != IAM_OK)
            st = iam_fail(err, IAM_E_INTERNAL, "cannot start the HTTP tier (libcurl)");
        else if (c->jwks_fetch_url && !io_loop_post(c->loop, jwks_first_fetch, c))
            st = iam_fail(err, IAM_E_NOMEM, "out of memory");
    }
    if (st != IAM_OK) {
        iam_client_free(c);
        return st;
    }
    *out = c;
    return IAM_OK;
}

static void rev_clear(iam_client *c)
{
    if (!c->rev)
        return;
    for (size_t i = 0; i < REV_BUCKETS; i++)
        for (rev_mark *m = c->rev[i]; m;) {
            rev_mark *n = m->next;
            free(m);
            m = n;
        }
    free(c->rev);
    c->rev = NULL;
}

void iam_client_free(iam_client *c)
{
    if (!c)
        return;
    /* Fails what is in flight while the loop still runs: HTTP first (a resolution it fails
     * may still ask Redis, which then fails it too). */
    http_tier_stop(c->http);
    redis_tier_stop(c->redis);
    io_loop_stop(c->loop);
    http_tier_free(c->http);
    redis_tier_free(c->redis);
    record_keys_free(&c->rk);
    if (c->l1.shards)
        l1_destroy(&c->l1);
    rev_clear(c);
    iam_keyset_release(c->ks);
    iam_keyset_release(c->static_ks);
    free(c->validate_url), free(c->jwks_fetch_url);
    pthread_mutex_destroy(&c->ks_lock);
    free(c->audience), free(c->issuer), free(c->auth_url), free(c->jwks_url), free(c->redis_url);
    pthread_mutex_destroy(&c->stats_lock);
    pthread_mutex_destroy(&c->rev_lock);
    pthread_mutex_destroy(&c->inv_lock);
    free(c);
}

/* ------------------------------------------------------- revocation marks */

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static bool rev_is_marked(iam_client *c, const char *jti, int64_t now)
{
    if (!jti || atomic_load_explicit(&c->rev_any, memory_order_acquire) == 0)
        return false; /* no mark was ever made: no lock on the common path */
    pthread_mutex_lock(&c->rev_lock);
    bool marked = false;
    if (c->rev)
        for (rev_mark *m = c->rev[str_hash(jti) % REV_BUCKETS]; m; m = m->next)
            if (m->expires_ms > now && strcmp(m->jti, jti) == 0) {
                marked = true;
                break;
            }
    pthread_mutex_unlock(&c->rev_lock);
    return marked;
}

/* Drops expired marks; with force, also the marks closest to expiry until below the cap. */
static void rev_sweep_locked(iam_client *c, int64_t now, bool force)
{
    if (!c->rev)
        return;
    for (size_t i = 0; i < REV_BUCKETS; i++)
        for (rev_mark **pp = &c->rev[i]; *pp;) {
            if ((*pp)->expires_ms <= now) {
                rev_mark *m = *pp;
                *pp = m->next;
                free(m);
                c->rev_count--;
            } else {
                pp = &(*pp)->next;
            }
        }
    while (force && c->rev_count >= IAM_MAX_REVOCATION_MARKS) {
        rev_mark **oldest = NULL;
        for (size_t i = 0; i < REV_BUCKETS; i++)
            for (rev_mark **pp = &c->rev[i]; *pp; pp = &(*pp)->next)
                if (!oldest || (*pp)->expires_ms < (*oldest)->expires_ms)
                    oldest = pp;
        rev_mark *m = *oldest;
        *oldest = m->next;
        free(m);
        c->rev_count--;
        c->rev_dropped++;
    }
}

static void rev_mark_add(iam_client *c, const char *jti, int64_t now)
{
    size_t len = strlen(jti);
    pthread_mutex_lock(&c->rev_lock);
    if (!c->rev)
        c->rev = calloc(REV_BUCKETS, sizeof *c->rev);
    rev_mark *m = c->rev ? malloc(sizeof *m + len + 1) : NULL;
    if (m) {
        if (c->rev_count >= IAM_MAX_REVOCATION_MARKS)
            rev_sweep_locked(c, now, true);
        memcpy(m->jti, jti, len + 1);
        m->expires_ms = now + c->revocation_ttl_ms;
        size_t b = str_hash(jti) % REV_BUCKETS;
        m->next = c->rev[b];
        c->rev[b] = m;
        c->rev_count++;
    }
    pthread_mutex_unlock(&c->rev_lock);
    atomic_store_explicit(&c->rev_any, 1, memory_order_release);
}

/* ------------------------------------------------------------ invalidation */

static void inv_log(iam_client *c, int kind, uint64_t token_hash, const char *value)
{
    pthread_mutex_lock(&c->inv_lock);
    uint64_t e = atomic_load(&c->epoch) + 1;
    inv_record *r = &c->inv[e % INV_LOG];
    r->epoch = e;
    r->kind = kind;
    r->token_hash = token_hash;
    r->value[0] = '\0';
    if (value && strlen(value) < sizeof r->value)
        strcpy(r->value, value);
    else if (value)
        r->kind = INV_ALL; /* too long to record: treat as concerning every answer */
    atomic_store(&c->epoch, e); /* published after the record is written */
    pthread_mutex_unlock(&c->inv_lock);
}

bool inv_log_concerns(const inv_record log[INV_LOG], uint64_t since, uint64_t now,
                      uint64_t token_hash, const char *user_id, const char *jti)
{
    if (now - since >= INV_LOG)
        return true; /* the log no longer covers the window: assume it does */
    for (uint64_t e = since + 1; e <= now; e++) {
        const inv_record *r = &log[e % INV_LOG];
        if (r->epoch != e)
            return true; /* overwritten by a later one: cannot tell, so assume it does */
        switch (r->kind) {
        case INV_TOKEN:
            if (r->token_hash == token_hash)
                return true;
            break;
        case INV_USER:
            if (user_id && strcmp(user_id, r->value) == 0)
                return true;
            break;
        case INV_JTI:
            if (jti && strcmp(jti, r->value) == 0)
                return true;
            break;
        default: /* INV_ALL, or anything unknown */
            return true;
        }
    }
    return false;
}

/* Whether an invalidation since epoch `since` concerns this resolution's answer. */
static bool invalidated_since(iam_client *c, uint64_t since, uint64_t token_hash, const iam_user *u)
{
    if (atomic_load(&c->epoch) == since)
        return false;
    pthread_mutex_lock(&c->inv_lock);
    /* The epoch is read again under the lock: invalidations may have landed while this
     * thread waited for it, overwriting records it must see (inv_log_concerns then says so). */
    bool hit = inv_log_concerns(c->inv, since, atomic_load(&c->epoch), token_hash,
                                u ? iam_user_id(u) : NULL, u ? iam_user_jti(u) : NULL);
    pthread_mutex_unlock(&c->inv_lock);
    return hit;
}

static size_t invalidate_token_local(iam_client *c, const char *token, size_t len)
{
    inv_log(c, INV_TOKEN, l1_hash(&c->l1, token, len), NULL);
    return l1_remove_token(&c->l1, token, len);
}

static bool user_is(const iam_user *u, const void *arg)
{
    return iam_user_id(u) && strcmp(iam_user_id(u), arg) == 0;
}

static size_t invalidate_user_local(iam_client *c, const char *user_id)
{
    inv_log(c, INV_USER, 0, user_id);
    return l1_remove_if(&c->l1, user_is, user_id);
}

static bool jti_is(const iam_user *u, const void *arg)
{
    return iam_user_jti(u) && strcmp(iam_user_jti(u), arg) == 0;
}

static size_t invalidate_jti_local(iam_client *c, const char *jti)
{
    inv_log(c, INV_JTI, 0, jti);
    return l1_remove_if(&c->l1, jti_is, jti);
}

/* A jti known revoked: refused here from now on, and no cached answer of it survives. The
 * mark is checked before every positive store (veto_store, under the shard lock), and what
 * was stored before the mark is removed here, so an answer stored by a resolution that raced
 * the mark (its revocation check answered just before the key was written, the mark made by
 * another resolution of the same jti) is never served from the cache. */
static size_t revoke_local(iam_client *c, const char *jti, int64_t now)
{
    rev_mark_add(c, jti, now);
    return invalidate_jti_local(c, jti);
}

static size_t invalidate_all_local(iam_client *c)
{
    inv_log(c, INV_ALL, 0, NULL);
    return l1_remove_all(&c->l1);
}

/* {"user_id": …, "jti": …, "origin": …} or {"all": true, "origin": …}, formatted like the
 * platform's messages. origin lets the publisher skip its own echo (it applied the
 * invalidation already; hearing it again later would evict answers resolved since).
 * Caller frees; NULL on OOM. */
static char *invalidation_message_new(const iam_client *c, const char *user_id, const char *jti, bool all)
{
    strbuf b = {0};
    strbuf_puts(&b, "{");
    if (all) {
        strbuf_puts(&b, "\"all\": true");
    } else {
        if (user_id) {
            strbuf_puts(&b, "\"user_id\": ");
            strbuf_json_string(&b, user_id, strlen(user_id));
        }
        if (jti) {
            strbuf_puts(&b, user_id ? ", \"jti\": " : "\"jti\": ");
            strbuf_json_string(&b, jti, strlen(jti));
        }
    }
    strbuf_printf(&b, ", \"origin\": \"%s\"}", c->origin);
    return strbuf_finish(&b);
}

/* Adds one command to a batch from NUL-terminated arguments. */
static bool batch_cmd(redis_batch *b, int argc, const char *const *argv)
{
    size_t lens[4];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return redis_batch_add(b, argc, (const char **)argv, lens);
}

/* A DEL nobody waits for; a later blocking read never overtakes it (redis_batch_order). */
static void fire_and_forget(iam_client *c, int argc, const char *const *argv)
{
    redis_batch *b = redis_batch_new(NULL, NULL);
    if (b && batch_cmd(b, argc, argv)) {
        redis_batch_order(b);
        redis_submit(c->redis, b);
    } else {
        redis_batch_free(b);
    }
}

/* Best effort: published for the other nodes; nobody waits. */
static void publish(iam_client *c, const char *user_id, const char *jti, bool all)
{
    char *msg = c->redis ? invalidation_message_new(c, user_id, jti, all) : NULL;
    if (!msg)
        return;
    redis_batch *b = redis_batch_new(NULL, NULL);
    const char *argv[] = {"PUBLISH", IAM_REDIS_CHANNEL, msg};
    if (b && batch_cmd(b, 3, argv))
        redis_submit(c->redis, b);
    else
        redis_batch_free(b);
    free(msg);
}

/* Deletes a user's shared records through the user's index, in one server-side step
 * (standalone Redis; best effort, nobody waits). Only record keys are ever deleted, whatever
 * else someone wrote into the index. */
static const char DELETE_USER_RECORDS[] =
    "local n = 0 "
    "for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do "
    "if string.sub(k, 1, string.len(ARGV[1])) == ARGV[1] then n = n + redis.call('DEL', k) end "
    "end "
    "redis.call('DEL', KEYS[1]) "
    "return n";

static void delete_user_records(iam_client *c, const char *user_id)
{
    if (!c->redis || !user_id || !*user_id)
        return;
    char ukey[RECORD_USER_KEY_LEN + 1];
    record_user_key(&c->rk, user_id, ukey);
    const char *argv[] = {"EVAL", DELETE_USER_RECORDS, "1", ukey, RECORD_KEY_PREFIX};
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(argv[i]);
    redis_batch *b = redis_batch_new(NULL, NULL);
    if (b && redis_batch_add(b, 5, argv, lens)) {
        redis_batch_order(b);
        redis_submit(c->redis, b);
    } else {
        redis_batch_free(b);
    }
}

/* Deletes a token's shared record in the client's own context (best effort). */
static void delete_token_record(iam_client *c, const char *token, size_t len)
{
    if (!c->redis || len > IAM_MAX_TOKEN_BYTES)
        return;
    char key[RECORD_KEY_LEN + 1];
    record_key(&c->rk, &c->rctx, token, len, key);
    const char *argv[] = {"DEL", key};
    fire_and_forget(c, 2, argv);
}

size_t iam_client_invalidate_token(iam_client *c, const char *token, size_t len)
{
    if (!c || !token)
        return 0;
    size_t n = invalidate_token_local(c, token, len);
    delete_token_record(c, token, len);
    if (c->redis) { /* published by jti: a token never travels through Redis */
        token_peek pk;
        if (token_peek_claims(token, len, &pk, NULL) == IAM_OK && (pk.has_jti || pk.sub[0]))
            publish(c, pk.has_jti ? NULL : pk.sub, pk.has_jti ? pk.jti : NULL, false);
    }
    return n;
}

size_t iam_client_invalidate_user(iam_client *c, const char *user_id)
{
    if (!c || !user_id)
        return 0;
    size_t n = invalidate_user_local(c, user_id);
    delete_user_records(c, user_id);
    publish(c, user_id, NULL, false);
    return n;
}

/* Writes the platform's revocation key; done (may be NULL) hears whether Redis confirmed. */
static bool blacklist_batch(iam_client *c, redis_batch *b, const char *jti, int64_t ttl_s)
{
    size_t jl = strlen(jti), pl = sizeof IAM_REDIS_BLACKLIST_PREFIX - 1;
    char *key = malloc(pl + jl + 1), ttl[24];
    if (!key)
        return false;
    memcpy(key, IAM_REDIS_BLACKLIST_PREFIX, pl);
    memcpy(key + pl, jti, jl + 1);
    snprintf(ttl, sizeof ttl, "%lld", (long long)(ttl_s < 1 ? 1 : ttl_s));
    const char *argv[] = {"SET", key, "1", "EX", ttl};
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(argv[i]);
    (void)c;
    bool ok = redis_batch_add(b, 5, argv, lens);
    free(key);
    return ok;
}

/* Adds EXISTS blacklist:jti:<jti> (any length) to a batch. */
static bool exists_blacklist(redis_batch *b, const char *jti)
{
    size_t jl = strlen(jti), pl = sizeof IAM_REDIS_BLACKLIST_PREFIX - 1;
    char *key = malloc(pl + jl + 1);
    if (!key)
        return false;
    memcpy(key, IAM_REDIS_BLACKLIST_PREFIX, pl);
    memcpy(key + pl, jti, jl + 1);
    const char *argv[] = {"EXISTS", key};
    size_t lens[] = {6, pl + jl};
    bool ok = redis_batch_add(b, 2, argv, lens);
    free(key);
    return ok;
}

size_t iam_client_revoke_jti(iam_client *c, const char *jti)
{
    if (!c || !jti || !*jti)
        return 0;
    size_t n = revoke_local(c, jti, now_ms(c)); /* first: a resolution from now on is refused */
    if (c->redis) {
        redis_batch *b = redis_batch_new(NULL, NULL);
        if (b && blacklist_batch(c, b, jti, c->revocation_ttl_ms / 1000)) {
            redis_batch_order(b);
            redis_submit(c->redis, b);
        } else
            redis_batch_free(b);
        publish(c, NULL, jti, false);
    }
    return n;
}

size_t iam_client_invalidate_all(iam_client *c)
{
    if (!c)
        return 0;
    size_t n = invalidate_all_local(c);
    publish(c, NULL, NULL, true);
    return n;
}

/* ------------------------------------------------------- the Redis tier */

static void notify(iam_client *c, iam_invalidation *m)
{
    if (c->on_invalidation)
        c->on_invalidation(c->invalidation_arg, m);
}

static const json_limits MESSAGE_LIMITS = {4, 64};

/* A message on policy:invalidate (I/O thread): evicts here, never republishes. */
static void on_redis_message(void *arg, const char *msg, size_t len)
{
    iam_client *c = arg;
    iam_invalidation m = {.kind = IAM_INVALIDATION_MESSAGE};
    json_doc d;
    bool ok = len <= IAM_MAX_INVALIDATION_BYTES &&
              json_parse(&d, msg, len, &MESSAGE_LIMITS, NULL, 0, NULL, 0, "message", NULL) == IAM_OK;
    /* ids of any length the message can carry (a long id is still that user's or token's) */
    char *user_id = NULL, *jti = NULL;
    if (ok) {
        size_t u = 0, j = 0, t = 0, a = 0, o = 0;
        if (d.nodes[0].type == JSON_OBJECT) {
            o = json_get(&d, 0, "origin");
            if (o && json_str_eq(&d, o, c->origin)) { /* our own: applied when published */
                json_doc_free(&d);
                return;
            }
            u = json_get(&d, 0, "user_id");
            j = json_get(&d, 0, "jti");
            t = json_get(&d, 0, "token");
            a = json_get(&d, 0, "all");
        } else {
            ok = false;
        }
        int64_t v;
        if (ok && u) {
            const json_node *n = &d.nodes[u];
            if (n->type == JSON_STRING && n->len > 0 && !memchr(n->str, 0, n->len)) {
                user_id = strndup(n->str, n->len);
                ok = user_id != NULL;
            } else if (n->type == JSON_NUMBER && json_integer(&d, u, INT64_MAX, &v)) {
                user_id = malloc(24);
                ok = user_id != NULL;
                if (ok)
                    snprintf(user_id, 24, "%lld", (long long)v);
            } else if (n->type != JSON_NULL) {
                ok = false;
            }
        }
        if (ok && j) {
            const json_node *n = &d.nodes[j];
            if (n->type == JSON_STRING && !memchr(n->str, 0, n->len)) {
                jti = strndup(n->str, n->len); /* "" included: the platform's key for it exists */
                ok = jti != NULL;
            } else if (n->type != JSON_NULL) {
                ok = false;
            }
        }
        if (ok && t) {
            const json_node *n = &d.nodes[t];
            if (n->type == JSON_STRING && n->len > 0) {
                unsigned char h[SHA256_DIGEST_LENGTH];
                SHA256((const unsigned char *)n->str, n->len, h);
                static const char H[] = "0123456789abcdef";
                for (int i = 0; i < 8; i++) {
                    m.token_fingerprint[2 * i] = H[h[i] >> 4];
                    m.token_fingerprint[2 * i + 1] = H[h[i] & 15];
                }
                invalidate_token_local(c, n->str, n->len);
            } else if (n->type != JSON_NULL) {
                ok = false;
            }
        }
        if (ok && a)
            m.all = d.nodes[a].type == JSON_TRUE;
        ok = ok && (user_id || jti || m.token_fingerprint[0] || m.all);
        json_doc_free(&d);
    }
    if (!ok) {
        free(user_id);
        free(jti);
        atomic_fetch_add(&c->inv_malformed, 1);
        m.malformed = true;
        notify(c, &m);
        return;
    }
    atomic_fetch_add(&c->inv_heard, 1);
    if (user_id) {
        invalidate_user_local(c, user_id);
        delete_user_records(c, user_id); /* every hearer: idempotent, and the platform's own
                                            publishes would otherwise leave them */
        m.user_id = user_id;
    }
    if (jti) {
        invalidate_jti_local(c, jti);
        m.jti = jti;
    }
    if (m.all)
        invalidate_all_local(c);
    notify(c, &m);
    free(user_id);
    free(jti);
}

/* The subscription came (back) or was lost (I/O thread). While it is lost, no cached answer
 * outlives the loss by more than redis_stale_s: what is cached now is capped, and what is
 * stored until it is back is capped at storing (finish_resolution, veto_store). */
static void on_redis_subscription(void *arg, bool live)
{
    iam_client *c = arg;
    iam_invalidation m = {.kind = live ? IAM_INVALIDATION_SUBSCRIBED : IAM_INVALIDATION_LOST};
    if (!live) {
        atomic_store(&c->deaf, true); /* before the cap: a store racing it is vetoed */
        l1_cap_expiry(&c->l1, now_ms(c) + c->stale_ms);
    } else {
        atomic_store(&c->deaf, false);
    }
    notify(c, &m);
}

static iam_status redis_setup(iam_client *c, const iam_client_options *o, const redis_url *u,
                              iam_error *err)
{
    unsigned char derived[32];
    const unsigned char *secret = (const unsigned char *)o->cache_secret;
    size_t secret_len = o->cache_secret ? strlen(o->cache_secret) : 0;
    if (!secret) { /* derived from the platform's secret under a fixed label */
        static const char LABEL[] = "omnibioai-iam shared-cache secret v1";
        hmac_states *h = hmac_states_new((const unsigned char *)o->jwt_secret, strlen(o->jwt_secret));
        if (!h)
            return iam_fail(err, IAM_E_NOMEM, "out of memory");
        unsigned char mac[64];
        hmac_compute(h, HASH_SHA256, (const unsigned char *)LABEL, sizeof LABEL - 1, mac);
        hmac_states_free(h);
        memcpy(derived, mac, 32);
        OPENSSL_cleanse(mac, sizeof mac);
        secret = derived;
        secret_len = 32;
    }
    bool keyed = record_keys_init(&c->rk, secret, secret_len);
    OPENSSL_cleanse(derived, sizeof derived);
    if (!keyed)
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    record_ctx_init(&c->rctx, &c->rk, c->audience, c->issuer);
    c->stale_ms = (o->redis_stale_s ? o->redis_stale_s : IAM_DEFAULT_REDIS_STALE_S) * 1000;
    c->fail_open = o->revocation_fail_open;
    c->on_invalidation = o->on_invalidation;
    c->invalidation_arg = o->invalidation_arg;
    unsigned char r[8];
    if (RAND_bytes(r, sizeof r) != 1)
        return iam_fail(err, IAM_E_INTERNAL, "no randomness for the client's origin id");
    for (int i = 0; i < 8; i++)
        snprintf(c->origin + 2 * i, 3, "%02x", r[i]);
    atomic_store(&c->deaf, true); /* until the subscription is confirmed */
    redis_events ev = {on_redis_message, on_redis_subscription, c};
    int direct = o->redis_direct_max < 0 ? 0 : o->redis_direct_max ? (int)o->redis_direct_max : IAM_DEFAULT_REDIS_DIRECT;
    if (redis_tier_start(c->loop, u, o->redis_timeout_ms ? o->redis_timeout_ms : IAM_DEFAULT_REDIS_TIMEOUT_MS,
                         IAM_REDIS_CHANNEL, &ev, direct, &c->redis) != IAM_OK)
        return iam_fail(err, IAM_E_NOMEM, "cannot start the Redis tier");
    return IAM_OK;
}

/* A blocking round trip (bounded by the tier's deadline), for the calls that wait. */
typedef struct sync_call {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done, ok;
    size_t n;
    redis_value v[REDIS_MAX_BATCH];
} sync_call;

static void sync_call_done(void *arg, bool ok, const redis_value *v, size_t n)
{
    sync_call *sc = arg;
    pthread_mutex_lock(&sc->lock);
    sc->ok = ok;
    sc->n = ok ? n : 0;
    for (size_t i = 0; i < sc->n; i++) {
        sc->v[i] = v[i];
        sc->v[i].str = v[i].str ? strdup(v[i].str) : NULL;
        if (v[i].str && !sc->v[i].str)
            sc->ok = false;
    }
    sc->done = true;
    pthread_cond_signal(&sc->cond);
    pthread_mutex_unlock(&sc->lock);
}

static redis_batch *sync_call_init(sync_call *sc)
{
    memset(sc, 0, sizeof *sc);
    pthread_mutex_init(&sc->lock, NULL);
    pthread_cond_init(&sc->cond, NULL);
    return redis_batch_new(sync_call_done, sc);
}

static bool sync_call_run(iam_client *c, sync_call *sc, redis_batch *b)
{
    if (!redis_direct(c->redis, b)) /* (the direct lane calls done before it returns) */
        redis_submit(c->redis, b);
    pthread_mutex_lock(&sc->lock);
    while (!sc->done)
        pthread_cond_wait(&sc->cond, &sc->lock);
    pthread_mutex_unlock(&sc->lock);
    return sc->ok;
}

static void sync_call_destroy(sync_call *sc)
{
    for (size_t i = 0; i < sc->n; i++)
        free(sc->v[i].str);
    pthread_mutex_destroy(&sc->lock);
    pthread_cond_destroy(&sc->cond);
}

iam_status iam_client_revoke_token(iam_client *c, const char *token, size_t len, iam_error *err)
{
    if (!c || !token)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "client and token are required");
    token_peek pk;
    iam_status st = token_peek_claims(token, len, &pk, err);
    if (st != IAM_OK)
        return st;
    if (!pk.has_jti)
        return iam_fail(err, IAM_E_MISSING_CLAIM, "the token has no jti: revoke its user instead");
    int64_t now = now_ms(c);
    revoke_local(c, pk.jti, now);
    invalidate_token_local(c, token, len);
    if (!c->redis)
        return iam_fail(err, IAM_E_CONFIG, "no Redis tier (redis_url): revoked in this process only");
    if (io_loop_is_current(c->loop))
        return iam_fail(err, IAM_E_INVALID_ARGUMENT,
                        "blocking call on the client's I/O thread (from a callback): revoked in this process only");
    sync_call sc;
    redis_batch *b = sync_call_init(&sc);
    char key[RECORD_KEY_LEN + 1];
    record_key(&c->rk, &c->rctx, token, len, key);
    const char *del[] = {"DEL", key};
    char *msg = invalidation_message_new(c, pk.sub[0] ? pk.sub : NULL, pk.jti, false);
    bool ok = b && msg &&
              blacklist_batch(c, b, pk.jti, pk.exp ? pk.exp - now / 1000 : c->revocation_ttl_ms / 1000) &&
              batch_cmd(b, 2, del);
    const char *pub[] = {"PUBLISH", IAM_REDIS_CHANNEL, msg};
    ok = ok && batch_cmd(b, 3, pub);
    free(msg);
    if (!ok) {
        redis_batch_free(b);
        sync_call_destroy(&sc);
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    }
    bool answered = sync_call_run(c, &sc, b);
    bool written = answered && sc.n >= 1 && sc.v[0].type == REDIS_REPLY_STATUS; /* SET … "OK" */
    sync_call_destroy(&sc);
    if (!written)
        return iam_fail(err, IAM_E_UNAVAILABLE, "%s",
                        answered ? "Redis refused the revocation with an error (revoked in this process)"
                                 : "Redis did not confirm the revocation in time (revoked in this process)");
    return IAM_OK;
}

/* The shared-cache part of iam_client_cached: the record and the revocation key, read
 * together; IAM_E_NOT_CACHED when there is no (valid) record. */
static iam_status cached_in_redis(iam_client *c, const char *token, size_t len,
                                  const iam_resolve_options *ro, iam_user **out, iam_error *err)
{
    record_ctx rctx = c->rctx;
    const char *aud = ro && ro->audience ? ro->audience : c->audience;
    if (ro && ro->audience)
        record_ctx_init(&rctx, &c->rk, ro->audience, c->issuer);
    char key[RECORD_KEY_LEN + 1];
    record_key(&c->rk, &rctx, token, len, key);
    token_peek pk;
    if (token_peek_claims(token, len, &pk, NULL) != IAM_OK)
        return iam_fail(err, IAM_E_NOT_CACHED, "no cache holds an answer for this token");
    if (pk.has_jti && rev_is_marked(c, pk.jti, now_ms(c))) /* revoked here: no need to ask */
        return iam_fail(err, IAM_E_REVOKED, "token has been revoked");
    sync_call sc;
    redis_batch *b = sync_call_init(&sc);
    const char *get[] = {"GET", key};
    bool ok = b && batch_cmd(b, 2, get);
    if (ok && pk.has_jti)
        ok = exists_blacklist(b, pk.jti);
    if (!ok) {
        redis_batch_free(b);
        sync_call_destroy(&sc);
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    }
    iam_status st;
    if (!sync_call_run(c, &sc, b)) {
        st = iam_fail(err, IAM_E_UNAVAILABLE, "the shared cache did not answer in time");
    } else if (pk.has_jti && (sc.n < 2 || sc.v[1].type != REDIS_REPLY_INTEGER)) {
        st = iam_fail(err, IAM_E_UNAVAILABLE, "revocation could not be checked (Redis answered an error)");
    } else if (pk.has_jti && sc.v[1].integer > 0) {
        revoke_local(c, pk.jti, now_ms(c));
        st = iam_fail(err, IAM_E_REVOKED, "token has been revoked");
    } else if (sc.v[0].type == REDIS_REPLY_ERROR) { /* not a string at the key: remove it */
        atomic_fetch_add(&c->redis_bad, 1);
        const char *argv[] = {"DEL", key};
        fire_and_forget(c, 2, argv);
        st = iam_fail(err, IAM_E_NOT_CACHED, "no cache holds a valid answer for this token");
    } else if (sc.v[0].type != REDIS_REPLY_STRING || !sc.v[0].str) {
        atomic_fetch_add(&c->redis_misses, 1);
        st = iam_fail(err, IAM_E_NOT_CACHED, "no cache holds an answer for this token");
    } else {
        iam_verify_options vo = {.audience = aud, .issuer = c->issuer, .leeway_s = c->leeway_s};
        iam_status rst = IAM_OK;
        record_result r = record_decode(&c->rk, &rctx, key, sc.v[0].str, sc.v[0].len, &vo, now_ms(c) / 1000,
                                        out, &rst, err);
        if (r == RECORD_OK && (pk.has_jti ? !iam_user_jti(*out) || strcmp(iam_user_jti(*out), pk.jti) != 0
                                          : iam_user_jti(*out) != NULL))
            r = RECORD_BAD;
        if (r == RECORD_OK && ro && ro->required_org && !iam_user_in_org(*out, ro->required_org)) {
            iam_user_release(*out);
            *out = NULL;
            st = iam_fail(err, IAM_E_WRONG_TENANT, "user does not belong to the required organisation");
        } else if (r == RECORD_OK) {
            atomic_fetch_add(&c->redis_hits, 1);
            st = IAM_OK;
        } else {
            if (*out)
                iam_user_release(*out);
            *out = NULL;
            if (r == RECORD_BAD) {
                atomic_fetch_add(&c->redis_bad, 1);
                const char *argv[] = {"DEL", key};
                fire_and_forget(c, 2, argv);
            }
            st = iam_fail(err, IAM_E_NOT_CACHED, "no cache holds a valid answer for this token");
        }
    }
    sync_call_destroy(&sc);
    return st;
}

static void jwks_tick(iam_client *c);

static void on_tick(void *arg)
{
    iam_client *c = arg;
    int64_t now = now_ms(c);
    l1_sweep(&c->l1, now);
    jwks_tick(c);
    pthread_mutex_lock(&c->rev_lock);
    rev_sweep_locked(c, now, false);
    pthread_mutex_unlock(&c->rev_lock);
}

/* ------------------------------------------------------------- resolution */

static void count_result(iam_client *c, iam_status st, bool verified, uint64_t ns)
{
    pthread_mutex_lock(&c->stats_lock);
    if (verified) {
        c->verifications++;
        latency_record(&c->verify_latency, ns);
    }
    if (st == IAM_OK)
        c->accepted++;
    else if (-st >= 0 && -st < IAM_STATUS_SLOTS)
        c->rejected[-st]++;
    pthread_mutex_unlock(&c->stats_lock);
}

/* The key set for one verification. With JWKS the I/O thread may swap it at any time: the
 * reader takes a reference under the lock (a few nanoseconds, uncontended) and drops it
 * after the verification, so a set is freed only when its last reader is done. */
static iam_keyset *keys_get(iam_client *c)
{
    if (!c->ks_dynamic)
        return c->ks;
    pthread_mutex_lock(&c->ks_lock);
    iam_keyset *ks = iam_keyset_retain(c->ks);
    pthread_mutex_unlock(&c->ks_lock);
    return ks;
}

static void keys_put(iam_client *c, iam_keyset *ks)
{
    if (c->ks_dynamic)
        iam_keyset_release(ks);
}

/* Installs a new key set (I/O thread); the old one goes when its last reader is done. */
static void keys_swap(iam_client *c, iam_keyset *ks)
{
    pthread_mutex_lock(&c->ks_lock);
    iam_keyset *old = c->ks;
    c->ks = ks;
    atomic_fetch_add(&c->ks_gen, 1);
    pthread_mutex_unlock(&c->ks_lock);
    iam_keyset_release(old);
}

/* Local verification plus the checks no token can carry: revocation marks, tenant. */
static iam_status resolve_uncached(iam_client *c, const char *token, size_t len,
                                   const iam_resolve_options *ro, int64_t now, iam_user **user,
                                   iam_error *err)
{
    iam_verify_options vo = {0};
    vo.audience = ro && ro->audience ? ro->audience : c->audience;
    vo.issuer = c->issuer;
    vo.leeway_s = c->leeway_s;
    uint64_t t0 = mono_ns();
    iam_keyset *ks = keys_get(c);
    iam_status st = iam_token_verify(token, len, ks, &vo, now / 1000, user, err);
    keys_put(c, ks);
    uint64_t ns = mono_ns() - t0;
    if (st == IAM_OK && rev_is_marked(c, iam_user_jti(*user), now)) {
        iam_user_release(*user);
        *user = NULL;
        st = iam_fail(err, IAM_E_REVOKED, "token has been revoked");
    }
    if (st == IAM_OK && ro && ro->required_org && !iam_user_in_org(*user, ro->required_org)) {
        iam_user_release(*user);
        *user = NULL;
        st = iam_fail(err, IAM_E_WRONG_TENANT, "user does not belong to the required organisation");
    }
    count_result(c, st, true, ns);
    return st;
}

/* Refusals worth remembering: final for this token (not "not yet valid", which changes
 * with time, and never "unavailable" or caller errors). */
static bool remember_refusal(iam_status st)
{
    return iam_status_is_rejection(st) && st != IAM_E_NOT_YET_VALID;
}

typedef enum core_result { CORE_DONE, CORE_JOINED, CORE_BUSY, CORE_PENDING } core_result;

typedef struct veto_ctx {
    iam_client *c;
    uint64_t epoch0, hash;
    const iam_user *user;
    int64_t expires, now;
} veto_ctx;

/* Runs under the shard lock just before an answer is stored: an invalidation concerning it
 * landed while it was resolved, its jti is marked revoked (revoke_local), or the
 * subscription was lost since its expiry was chosen (the cap below then no longer holds). */
static bool veto_store(void *arg)
{
    veto_ctx *v = arg;
    if (v->c->redis && atomic_load(&v->c->deaf) && v->expires > v->now + v->c->stale_ms)
        return true;
    if (rev_is_marked(v->c, iam_user_jti(v->user), v->now))
        return true;
    return invalidated_since(v->c, v->epoch0, v->hash, v->user);
}

/*
 * Ends a resolution: stores the answer (positive: TTL <= exp, <= max staleness, <= cap_ms,
 * and <= redis_stale_s while invalidations cannot be heard; refusals briefly), ends the
 * flight and re-checks revocation. Returns the waiters for the caller to complete.
 */
static l1_waiter *finish_resolution(iam_client *c, l1_flight *flight, uint64_t epoch0, int64_t now,
                                    int64_t cap_ms, iam_status *st, iam_user **user, iam_error *err)
{
    bool store = false;
    int64_t expires = 0;
    if (*st == IAM_OK) {
        expires = iam_user_expires_at(*user) * 1000;
        if (expires > now + c->ttl_ms)
            expires = now + c->ttl_ms;
        if (expires > cap_ms)
            expires = cap_ms;
        if (c->redis && atomic_load(&c->deaf) && expires > now + c->stale_ms)
            expires = now + c->stale_ms;
        store = c->cache_enabled && expires > now;
    } else if (remember_refusal(*st)) {
        expires = now + c->negative_ttl_ms;
        store = c->cache_enabled && c->negative_enabled;
    }
    veto_ctx vc = {c, epoch0, flight->hash, *user, expires, now};
    l1_waiter *w = l1_finish(&c->l1, flight, store, *st == IAM_OK ? *user : NULL, *st, expires,
                             *st == IAM_OK ? veto_store : NULL, &vc);
    /* Every waiter joined before l1_finish ended the flight; a revocation that returned
     * before any of them started is therefore visible now. Checked after the flight, it
     * keeps a request that began after iam_client_revoke_jti from being handed the
     * answer of a resolution that verified just before the mark landed. */
    if (*st == IAM_OK && rev_is_marked(c, iam_user_jti(*user), now_ms(c))) {
        iam_user_release(*user);
        *user = NULL;
        *st = iam_fail(err, IAM_E_REVOKED, "token has been revoked");
    }
    return w;
}

static void complete_waiters(l1_waiter *w, iam_status st, iam_user *user, const iam_error *err)
{
    while (w) {
        l1_waiter *next = w->next; /* read first: done() frees or wakes the waiter */
        w->done(w->arg, st, st == IAM_OK ? iam_user_retain(user) : NULL, err);
        w = next;
    }
}

/* The validation context a request's answers are cached under. */
static uint64_t request_ctx(const iam_client *c, const iam_resolve_options *ro)
{
    return ro && (ro->audience || ro->required_org)
               ? ctx_hash(c->seed, ro->audience ? ro->audience : c->audience, c->issuer,
                          ro->required_org)
               : c->default_ctx;
}

static iam_status cached_in_redis(iam_client *c, const char *token, size_t len,
                                  const iam_resolve_options *ro, iam_user **out, iam_error *err);

iam_status iam_client_cached(iam_client *c, const char *token, size_t len,
                             const iam_resolve_options *ro, iam_user **out, iam_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !token || !out)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "client, token and out-parameter are required");
    if (len > IAM_MAX_TOKEN_BYTES)
        return iam_fail(err, IAM_E_TOO_LARGE, "token is %zu bytes; the limit is %d", len, IAM_MAX_TOKEN_BYTES);
    if (!c->cache_enabled)
        return iam_fail(err, IAM_E_NOT_CACHED, "the cache is disabled");
    iam_status refusal = IAM_OK;
    switch (l1_peek(&c->l1, l1_hash(&c->l1, token, len), request_ctx(c, ro), token, len, now_ms(c),
                    out, &refusal)) {
    case L1_HIT:
        return IAM_OK;
    case L1_REFUSED:
        return iam_fail(err, refusal, "%s (remembered refusal)", iam_strerror(refusal));
    default:
        if (c->redis && io_loop_is_current(c->loop))
            return iam_fail(err, IAM_E_INVALID_ARGUMENT,
                            "blocking call on the client's I/O thread (from a callback)");
        if (c->redis)
            return cached_in_redis(c, token, len, ro, out, err);
        return iam_fail(err, IAM_E_NOT_CACHED, "no cache holds an answer for this token");
    }
}

/* ------------------------------------------------- resolutions over the network */

/*
 * A resolution that needs the network: owns the flight (moved off the caller's stack) and
 * a copy of the token; advanced and completed on the I/O thread. Its steps, each taken
 * only while the answer is still undecided (no key here could verify the token):
 *
 *   1. Redis: the shared record (+ the revocation key), or only the revocation check of a
 *      token verified here;
 *   2. keys: one JWKS refresh shared by every resolution waiting for it (cooled down),
 *      then a new local verification (+ its revocation check in Redis);
 *   3. the auth service: POST /auth/validate (breaker, deadline, bounded retry).
 *
 * Central mode skips local verification and step 2.
 */
typedef struct pending {
    iam_client *c;
    l1_flight flight;
    l1_waiter *lead;        /* the request that started it */
    struct pending *next_waiter; /* in the JWKS waiters */
    uint64_t epoch0;
    uint64_t ks_gen;        /* the key set generation the verdict was reached with */
    int64_t now;
    iam_status st;          /* the verdict so far */
    iam_user *user;
    iam_error err;
    bool lookup;            /* the shared record is read (no key could verify locally) */
    bool try_keys, try_auth;/* steps still to take while undecided */
    iam_verify_options vo;  /* for the record's and the service's claims */
    const char *audience;   /* the request's own audience, or NULL */
    char *required_org;
    record_ctx rctx;
    char key[RECORD_KEY_LEN + 1];
    bool has_jti;           /* a jti to check ("" included: the platform's key would be
                               blacklist:jti: — checked like any other) */
    char *jti;              /* in strings, or jti_owned */
    char *jti_owned;
    bool revocation_unchecked; /* the revocation check failed; a later "valid" must not skip it */
    redis_batch *batch;
    size_t len;
    char strings[];         /* token, audience, required_org, jti */
} pending;

static void pending_free(pending *p)
{
    free(p->jti_owned);
    if (p->user)
        iam_user_release(p->user);
    redis_batch_free(p->batch);
    free(p);
}

/* Stores a verified answer in the shared cache for the other nodes (best effort). */
static void store_record(iam_client *c, const record_ctx *rctx, const char *key, const iam_user *u,
                         int64_t now, int64_t cap_ms)
{
    int64_t expires = iam_user_expires_at(u) * 1000;
    if (expires > now + c->ttl_ms)
        expires = now + c->ttl_ms;
    if (expires > cap_ms)
        expires = cap_ms;
    if (expires <= now)
        return;
    size_t n;
    char *value = record_encode(&c->rk, rctx, key, u, &n);
    if (!value)
        return;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%lld", (long long)(expires - now));
    const char *argv[] = {"SET", key, value, "PX", ttl};
    size_t lens[] = {3, strlen(key), n, 2, strlen(ttl)};
    redis_batch *b = redis_batch_new(NULL, NULL);
    bool ok = b && redis_batch_add(b, 5, argv, lens);
    if (ok && iam_user_id(u)) {
        /* the user's index lives as long as the longest record it can name */
        char ukey[RECORD_USER_KEY_LEN + 1], uttl[24];
        record_user_key(&c->rk, iam_user_id(u), ukey);
        snprintf(uttl, sizeof uttl, "%lld", (long long)c->ttl_ms);
        const char *sadd[] = {"SADD", ukey, key};
        const char *pexp[] = {"PEXPIRE", ukey, uttl};
        ok = batch_cmd(b, 3, sadd) && batch_cmd(b, 3, pexp);
    }
    if (ok) {
        redis_submit(c->redis, b);
        atomic_fetch_add(&c->redis_writes, 1);
    } else {
        redis_batch_free(b);
    }
    free(value);
}

/* Ends the resolution: stores, ends the flight, answers every waiter, frees. */
static void pending_finish(pending *p, iam_status st, iam_user *user, iam_error *err, int64_t cap)
{
    iam_client *c = p->c;
    l1_waiter *w = finish_resolution(c, &p->flight, p->epoch0, now_ms(c), cap, &st, &user, err);
    p->lead->next = w;
    complete_waiters(p->lead, st, user, err);
    if (user)
        iam_user_release(user);
    pending_free(p);
}

static void pending_advance(pending *p);
static void pending_advance_task(void *arg);
/* Redis's own words for an error reply (NOAUTH, WRONGPASS, a renamed command), for a
 * refusal's message: its first line, printable ASCII, at most cap - 1 bytes; "" for anything
 * but an error reply. They carry no token or secret. */
static void redis_error_words(const redis_value *e, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; e && e->type == REDIS_REPLY_ERROR && e->str && i < e->len && j + 1 < cap; i++) {
        unsigned char ch = (unsigned char)e->str[i];
        if (ch == '\r' || ch == '\n')
            break;
        out[j++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    out[j] = 0;
}

static void on_pending_done(void *arg, bool ok, const redis_value *v, size_t n);

typedef enum check_result { CHECK_NONE, CHECK_SUBMITTED, CHECK_FAILED } check_result;

/* Submits the revocation check of a token verified on the I/O thread (after a key
 * refresh). CHECK_NONE: nothing to check (no Redis, no jti); CHECK_FAILED: it could not be
 * asked (no memory) — the caller must then not accept the token unchecked. */
static check_result pending_check_revocation(pending *p)
{
    iam_client *c = p->c;
    if (!c->redis || !p->user || !iam_user_jti(p->user))
        return CHECK_NONE;
    const char *jti = iam_user_jti(p->user);
    if (!p->has_jti || strcmp(p->jti, jti) != 0) { /* (the peek saw the same payload) */
        free(p->jti_owned);
        if (!(p->jti = p->jti_owned = strdup(jti)))
            return CHECK_FAILED;
        p->has_jti = true;
    }
    p->lookup = false;
    p->batch = redis_batch_new(on_pending_done, p);
    if (!p->batch || !exists_blacklist(p->batch, p->jti)) {
        redis_batch_free(p->batch);
        p->batch = NULL;
        return CHECK_FAILED;
    }
    redis_batch *b = p->batch;
    p->batch = NULL; /* owned by the Redis tier from here */
    redis_submit(c->redis, b);
    return CHECK_SUBMITTED;
}

static void on_pending_done(void *arg, bool ok, const redis_value *v, size_t n)
{
    pending *p = arg;
    iam_client *c = p->c;
    int64_t now = now_ms(c), cap = INT64_MAX;
    iam_status st = p->st;
    iam_user *user = p->user;
    p->user = NULL;
    p->batch = NULL; /* owned and freed by the Redis tier */
    iam_error err = p->err;
    size_t ei = p->lookup ? 1 : 0; /* the EXISTS reply */
    bool undecided = false;        /* no record: the later steps may still decide */
    /* An error reply to EXISTS (a renamed command, a wrong password, …) leaves the
     * revocation as unchecked as no reply at all. */
    bool answered = ok && (!p->has_jti || (n > ei && v[ei].type == REDIS_REPLY_INTEGER));
    if (!answered) {
        if (!p->lookup && st == IAM_OK && c->fail_open) {
            cap = now + c->stale_ms; /* accepted unchecked: re-checked soon */
        } else if (p->lookup && (p->try_keys || p->try_auth)) {
            undecided = true; /* the shared cache is down; the service can still answer */
            p->revocation_unchecked = p->has_jti; /* …but its "valid" alone will not do */
        } else {
            if (user)
                iam_user_release(user);
            user = NULL;
            char said[64];
            redis_error_words(ok && n > ei ? &v[ei] : NULL, said, sizeof said);
            if (!ok)
                st = iam_fail(&err, IAM_E_UNAVAILABLE, "%s",
                              p->lookup ? "the shared cache did not answer in time (or could not be reached)"
                                        : "revocation could not be checked (Redis did not answer in "
                                          "time or could not be reached; the policy fails closed)");
            else
                st = iam_fail(&err, IAM_E_UNAVAILABLE,
                              "revocation could not be checked (Redis answered an error%s%s; the policy "
                              "fails closed)",
                              said[0] ? ": " : "", said);
        }
    } else if (p->has_jti && v[ei].integer > 0) {
        if (user)
            iam_user_release(user);
        user = NULL;
        st = iam_fail(&err, IAM_E_REVOKED, "token has been revoked");
        atomic_fetch_add(&c->redis_revoked, 1);
        revoke_local(c, p->jti, now); /* refused here from now on without asking again */
        const char *argv[] = {"DEL", p->key};
        fire_and_forget(c, 2, argv);
    } else if (p->lookup) {
        undecided = true;
        if (v[0].type == REDIS_REPLY_ERROR) {
            /* not a string at the key (WRONGTYPE): a record that cannot be read is treated
             * like a tampered one — counted and removed */
            atomic_fetch_add(&c->redis_bad, 1);
            const char *argv[] = {"DEL", p->key};
            fire_and_forget(c, 2, argv);
        } else if (v[0].type == REDIS_REPLY_STRING && v[0].str) {
            iam_user *u = NULL;
            iam_status rst = IAM_OK;
            iam_error e = {0};
            record_result r = record_decode(&c->rk, &p->rctx, p->key, v[0].str, v[0].len, &p->vo, now / 1000,
                                            &u, &rst, &e);
            if (r == RECORD_OK && (p->has_jti ? !iam_user_jti(u) || strcmp(iam_user_jti(u), p->jti) != 0
                                              : iam_user_jti(u) != NULL))
                r = RECORD_BAD; /* the revocation checked was another token's */
            if (r == RECORD_OK) {
                undecided = false;
                atomic_fetch_add(&c->redis_hits, 1);
                if (p->required_org && !iam_user_in_org(u, p->required_org)) {
                    iam_user_release(u);
                    st = iam_fail(&err, IAM_E_WRONG_TENANT, "user does not belong to the required organisation");
                } else {
                    user = u;
                    st = IAM_OK;
                }
            } else if (r == RECORD_REFUSED) {
                undecided = false;
                st = rst;
                err = e;
            } else {
                if (u)
                    iam_user_release(u);
                atomic_fetch_add(&c->redis_bad, 1);
                const char *argv[] = {"DEL", p->key};
                fire_and_forget(c, 2, argv);
            }
        } else {
            atomic_fetch_add(&c->redis_misses, 1);
        }
    } else if (st == IAM_OK && !invalidated_since(c, p->epoch0, p->flight.hash, user) &&
               !rev_is_marked(c, iam_user_jti(user), now)) {
        /* (an invalidation heard meanwhile may have deleted the user's records: not re-filled;
         * a jti this process knows revoked is not shared, even if Redis forgot its key) */
        store_record(c, &p->rctx, p->key, user, now, INT64_MAX);
    }
    if (undecided && (p->try_keys || p->try_auth)) {
        p->st = st;
        p->err = err;
        if (io_loop_is_current(c->loop)) {
            pending_advance(p);
        } else if (!io_loop_post(c->loop, pending_advance_task, p)) { /* (the direct lane) */
            iam_fail(&err, IAM_E_UNAVAILABLE, "the client's I/O thread is not running");
            pending_finish(p, IAM_E_UNAVAILABLE, NULL, &err, INT64_MAX);
        }
        return;
    }
    pending_finish(p, st, user, &err, cap);
}

/* ---------------------------------------------------------------- JWKS */

static void pending_keys_ready(pending *p);

static void jwks_schedule(iam_client *c, int64_t now, int64_t max_age_s)
{
    int64_t s = max_age_s < 0 ? IAM_JWKS_DEFAULT_REFRESH_S : max_age_s;
    if (s < IAM_JWKS_MIN_REFRESH_S)
        s = IAM_JWKS_MIN_REFRESH_S;
    if (s > IAM_JWKS_MAX_REFRESH_S)
        s = IAM_JWKS_MAX_REFRESH_S;
    c->jwks.next_ms = now + s * 1000;
    c->jwks.backoff_ms = 0;
}

/* A fetched JWKS document: the static keys plus its keys, installed when it holds any. */
static bool jwks_install(iam_client *c, const char *body, size_t len)
{
    iam_keyset *ks = iam_keyset_new();
    size_t added = 0, skipped = 0;
    bool ok = ks && (!c->static_ks || keyset_merge(ks, c->static_ks, NULL) == IAM_OK) &&
              iam_keyset_add_jwks(ks, body, len, &added, &skipped, NULL) == IAM_OK && added > 0;
    if (!ok) {
        iam_keyset_release(ks);
        return false;
    }
    keys_swap(c, ks);
    return true;
}

static void on_jwks_done(void *arg, const http_response *r)
{
    iam_client *c = arg;
    jwks_state *j = &c->jwks;
    int64_t now = http_now_ms(c->http);
    j->in_flight = false;
    atomic_fetch_add(&c->jwks_fetches, 1);
    bool ok = false;
    if (r->outcome == HTTP_DONE && r->status == 200 && jwks_install(c, r->body, r->body_len)) {
        atomic_fetch_add(&c->jwks_updates, 1);
        memcpy(j->etag, r->etag, sizeof j->etag);
        ok = true;
    } else if (r->outcome == HTTP_DONE && r->status == 304 && j->etag[0]) {
        atomic_fetch_add(&c->jwks_304, 1);
        ok = true;
    }
    if (ok) {
        jwks_schedule(c, now, r->max_age_s);
    } else { /* the keys held stay in use; try again after a growing delay */
        atomic_fetch_add(&c->jwks_failures, 1);
        j->backoff_ms = j->backoff_ms ? j->backoff_ms * 2 : IAM_JWKS_RETRY_MIN_MS;
        if (j->backoff_ms > IAM_JWKS_MAX_REFRESH_S * 1000)
            j->backoff_ms = IAM_JWKS_MAX_REFRESH_S * 1000;
        c->jwks.next_ms = now + j->backoff_ms;
    }
    pending *w = j->waiters;
    j->waiters = NULL;
    while (w) {
        pending *next = w->next_waiter;
        pending_keys_ready(w);
        w = next;
    }
}

/* Starts a fetch (I/O thread); false when it cannot start (stopping, OOM). */
static bool jwks_fetch(iam_client *c)
{
    if (c->jwks.in_flight)
        return true;
    char inm[sizeof "If-None-Match: " + HTTP_MAX_ETAG_BYTES];
    http_request q = {.method = "GET", .url = c->jwks_fetch_url, .timeout_ms = c->auth_timeout_ms,
                      .max_body = IAM_MAX_JWKS_BYTES};
    q.headers[0] = "Accept: application/json";
    if (c->jwks.etag[0]) {
        snprintf(inm, sizeof inm, "If-None-Match: %s", c->jwks.etag);
        q.headers[1] = inm;
    }
    c->jwks.in_flight = true;
    if (!http_start(c->http, &q, on_jwks_done, c)) {
        c->jwks.in_flight = false;
        return false;
    }
    return true;
}

/* Posted by iam_client_new once c->http is set: the tick may refresh only from here on. */
static void jwks_first_fetch(void *arg)
{
    iam_client *c = arg;
    c->jwks.started = true;
    jwks_fetch(c);
}

/* The background refresh, from the once-a-second tick (I/O thread). */
static void jwks_tick(iam_client *c)
{
    if (c->jwks.started && !c->jwks.in_flight && http_now_ms(c->http) >= c->jwks.next_ms)
        jwks_fetch(c);
}

/* A resolution found no key for its token: wait for a refresh (one shared by every such
 * resolution, at most one started per cooldown). False: no refresh to wait for. */
static bool jwks_wait_refresh(iam_client *c, pending *p)
{
    jwks_state *j = &c->jwks;
    if (!c->http || !c->jwks_fetch_url)
        return false;
    if (atomic_load(&c->ks_gen) != p->ks_gen) {
        /* Keys arrived since this token was verified (the first fetch, typically): verify
         * again with them before spending the cooldown on a fetch. */
        pending_keys_ready(p);
        return true;
    }
    if (j->in_flight) {
        atomic_fetch_add(&c->kid_coalesced, 1);
    } else {
        int64_t now = http_now_ms(c->http);
        if (j->kid_ever && now - j->last_kid_ms < IAM_JWKS_KID_COOLDOWN_MS) {
            atomic_fetch_add(&c->kid_suppressed, 1);
            return false;
        }
        if (!jwks_fetch(c))
            return false;
        j->kid_ever = true;
        j->last_kid_ms = now;
        atomic_fetch_add(&c->kid_refreshes, 1);
    }
    p->next_waiter = j->waiters;
    j->waiters = p;
    return true;
}

/* The refresh a resolution waited for is over (whatever its outcome): verify again. */
static void pending_keys_ready(pending *p)
{
    iam_client *c = p->c;
    iam_resolve_options ro = {.audience = p->audience, .required_org = p->required_org};
    iam_user *user = NULL;
    iam_error err = {IAM_OK, ""};
    int64_t now = now_ms(c);
    p->ks_gen = atomic_load(&c->ks_gen);
    iam_status st = resolve_uncached(c, p->strings, p->len, &ro, now, &user, &err);
    if (st == IAM_E_UNKNOWN_KEY) {
        p->st = st;
        p->err = err;
        pending_advance(p);
        return;
    }
    if (st == IAM_OK) {
        p->st = st;
        p->user = user;
        check_result cr = pending_check_revocation(p);
        if (cr == CHECK_SUBMITTED)
            return; /* on_pending_done finishes it */
        p->user = NULL;
        if (cr == CHECK_FAILED) { /* never accepted unchecked */
            iam_user_release(user);
            user = NULL;
            st = iam_fail(&err, IAM_E_UNAVAILABLE, "out of memory for the revocation check");
        } else if (c->redis) {
            store_record(c, &p->rctx, p->key, user, now, INT64_MAX);
        }
    }
    pending_finish(p, st, user, &err, INT64_MAX);
}

/* ------------------------------------------------------- the auth service */

static void on_auth_done(void *arg, const http_response *r);

typedef struct auth_call {
    pending *p;
    bool probe;
} auth_call;

/* Starts POST /auth/validate for a resolution (I/O thread). False when it cannot start:
 * p->st/p->err then say why. */
static bool auth_validate_start(iam_client *c, pending *p)
{
    if (!c->http || !c->validate_url)
        return false;
    int64_t now = http_now_ms(c->http);
    bool probe;
    if (!auth_breaker_allow(&c->breaker, now, &probe)) {
        atomic_fetch_add(&c->auth_fast, 1);
        p->st = iam_fail(&p->err, IAM_E_UNAVAILABLE,
                         "the auth service is failing: calls are refused for a while (circuit breaker open)");
        return false;
    }
    atomic_store(&c->breaker_state, (int)c->breaker.state);
    bool oom;
    size_t blen = 0;
    char *body = auth_validate_body(p->strings, p->len, &blen, &oom);
    auth_call *ac = body ? malloc(sizeof *ac) : NULL;
    if (!ac) {
        bool no_memory = oom || body; /* body NULL without OOM: bytes no JWS holds */
        free(body);
        if (probe) /* nothing was asked: let the next call probe */
            c->breaker.state = BREAKER_OPEN, c->breaker.open_until = now;
        p->st = no_memory ? iam_fail(&p->err, IAM_E_UNAVAILABLE, "out of memory for an auth-service call")
                          : iam_fail(&p->err, IAM_E_MALFORMED, "the token holds bytes no JWS may hold");
        return false;
    }
    ac->p = p;
    ac->probe = probe;
    http_request q = {.method = "POST", .url = c->validate_url, .body = body, .body_len = blen,
                      .timeout_ms = c->auth_timeout_ms, .max_body = IAM_MAX_HTTP_BODY_BYTES};
    q.headers[0] = "Content-Type: application/json";
    q.headers[1] = "Accept: application/json";
    bool started = http_start(c->http, &q, on_auth_done, ac);
    OPENSSL_cleanse(body, blen); /* the token: not left in freed memory */
    free(body);
    if (!started) {
        free(ac);
        if (probe)
            c->breaker.state = BREAKER_OPEN, c->breaker.open_until = now;
        p->st = iam_fail(&p->err, IAM_E_UNAVAILABLE, "the auth-service call could not be started");
        return false;
    }
    atomic_fetch_add(&c->auth_calls, 1);
    return true;
}

static void on_auth_done(void *arg, const http_response *r)
{
    auth_call *ac = arg;
    pending *p = ac->p;
    bool probe = ac->probe;
    free(ac);
    iam_client *c = p->c;
    iam_error err = {IAM_OK, ""};
    iam_user *user = NULL;
    iam_status st;
    int64_t now = now_ms(c);
    switch (r->outcome) {
    case HTTP_DONE:
        if (r->status != 200)
            st = iam_fail(&err, IAM_E_UNAVAILABLE, "the auth service answered HTTP %ld", r->status);
        else
            st = auth_reply_user(r->body, r->body_len, p->strings, p->len, &p->vo, now / 1000, &user, &err);
        break;
    case HTTP_FAILED_TIMEOUT:
        st = iam_fail(&err, IAM_E_UNAVAILABLE, "the auth service did not answer within %lld ms",
                      (long long)c->auth_timeout_ms);
        break;
    case HTTP_FAILED_CONNECT:
        st = iam_fail(&err, IAM_E_UNAVAILABLE, "the auth service could not be reached (%d attempts)", r->attempts);
        break;
    case HTTP_FAILED_TOO_LARGE:
        st = iam_fail(&err, IAM_E_UNAVAILABLE, "the auth service's reply is larger than %d bytes",
                      IAM_MAX_HTTP_BODY_BYTES);
        break;
    case HTTP_FAILED_STOPPED:
        st = iam_fail(&err, IAM_E_UNAVAILABLE, "the client is shutting down");
        break;
    default:
        st = iam_fail(&err, IAM_E_UNAVAILABLE, "the auth-service connection failed before a complete reply");
        break;
    }
    bool answered = st != IAM_E_UNAVAILABLE && st != IAM_E_NOMEM;
    if (r->outcome != HTTP_FAILED_STOPPED) {
        uint64_t opened = c->breaker.opened;
        auth_breaker_record(&c->breaker, http_now_ms(c->http), answered, probe);
        if (c->breaker.opened != opened)
            atomic_fetch_add(&c->auth_opened, 1);
        atomic_store(&c->breaker_state, (int)c->breaker.state);
    }
    if (!answered)
        atomic_fetch_add(&c->auth_errors, 1);
    if (st == IAM_E_DENIED) {
        atomic_fetch_add(&c->auth_denied, 1);
        /* A definite refusal: out of every tier (the negative entry is stored below). */
        invalidate_token_local(c, p->strings, p->len);
        if (c->redis) {
            const char *argv[] = {"DEL", p->key};
            fire_and_forget(c, 2, argv);
        }
    }
    if (st == IAM_OK && rev_is_marked(c, iam_user_jti(user), now)) {
        iam_user_release(user);
        user = NULL;
        st = iam_fail(&err, IAM_E_REVOKED, "token has been revoked");
    }
    if (st == IAM_OK && p->required_org && !iam_user_in_org(user, p->required_org)) {
        iam_user_release(user);
        user = NULL;
        st = iam_fail(&err, IAM_E_WRONG_TENANT, "user does not belong to the required organisation");
    }
    int64_t cap = INT64_MAX;
    if (st == IAM_OK && p->revocation_unchecked) {
        /* The service said valid, but our own revocation check could not be made (and the
         * platform's service treats an unreachable Redis as "not revoked"): the policy
         * decides, as for a token verified here. */
        if (c->fail_open) {
            cap = now + c->stale_ms;
        } else {
            atomic_fetch_add(&c->auth_valid, 1);
            iam_user_release(user);
            user = NULL;
            st = iam_fail(&err, IAM_E_UNAVAILABLE,
                          "revocation could not be checked (Redis did not answer; the policy fails closed)");
        }
    }
    if (st == IAM_OK) {
        atomic_fetch_add(&c->auth_valid, 1);
        if (c->redis && cap == INT64_MAX)
            store_record(c, &p->rctx, p->key, user, now, INT64_MAX);
    }
    count_result(c, st, false, 0);
    pending_finish(p, st, user, &err, cap);
}

/* The next step of an undecided resolution (I/O thread). */
static void pending_advance(pending *p)
{
    iam_client *c = p->c;
    if (p->try_keys) {
        p->try_keys = false;
        if (jwks_wait_refresh(c, p))
            return; /* pending_keys_ready continues */
    }
    if (p->try_auth) {
        p->try_auth = false;
        if (auth_validate_start(c, p))
            return; /* on_auth_done finishes */
    }
    iam_error err = p->err;
    pending_finish(p, p->st, NULL, &err, INT64_MAX);
}

static void pending_advance_task(void *arg)
{
    pending_advance(arg);
}

/*
 * Prepares a resolution that needs the network: the revocation check of a verified token
 * with a jti, or — for a token no key held could verify (or any token in central mode) —
 * the shared-record lookup, a key refresh and the auth service, as configured. Moves the
 * flight into the pending state. NULL on OOM (the caller answers unavailable).
 */
static pending *pending_new(iam_client *c, l1_flight *flight, const char *token, size_t len,
                            const iam_resolve_options *ro, uint64_t epoch0, int64_t now, iam_status st,
                            iam_user *user, const iam_error *err, bool undecided)
{
    const char *aud = ro && ro->audience ? ro->audience : NULL;
    const char *org = ro ? ro->required_org : NULL;
    size_t al = aud ? strlen(aud) + 1 : 0, ol = org ? strlen(org) + 1 : 0;
    /* The jti to check: the verified one, or (for a record lookup) the token's own, read
     * unverified — it can only make the answer stricter. Any length the token can carry. */
    const char *jti = NULL;
    token_peek *pk = NULL;
    if (c->redis && undecided) {
        pk = malloc(sizeof *pk);
        if (!pk)
            return NULL;
        if (token_peek_claims(token, len, pk, NULL) == IAM_OK && pk->has_jti)
            jti = pk->jti;
    } else if (c->redis && user && iam_user_jti(user)) {
        jti = iam_user_jti(user);
    }
    size_t jl = jti ? strlen(jti) + 1 : 0;
    pending *p = calloc(1, sizeof *p + len + 1 + al + ol + jl);
    if (!p) {
        free(pk);
        return NULL;
    }
    p->c = c;
    p->epoch0 = epoch0;
    p->now = now;
    p->st = st;
    p->user = user;
    if (err)
        p->err = *err;
    p->lookup = undecided && c->redis;
    p->try_keys = undecided && c->mode != IAM_MODE_CENTRAL && c->jwks_fetch_url;
    p->try_auth = undecided && c->validate_url;
    p->len = len;
    memcpy(p->strings, token, len);
    char *at = p->strings + len + 1;
    if (aud) {
        memcpy(at, aud, al);
        aud = at;
        at += al;
    }
    if (org) {
        memcpy(at, org, ol);
        p->required_org = at;
        at += ol;
    }
    p->has_jti = jti != NULL;
    p->jti = at;
    if (jti)
        memcpy(at, jti, jl);
    free(pk);
    p->audience = aud;
    p->vo.audience = aud ? aud : c->audience;
    p->vo.issuer = c->issuer;
    p->vo.leeway_s = c->leeway_s;
    if (c->redis) {
        if (aud)
            record_ctx_init(&p->rctx, &c->rk, aud, c->issuer);
        else
            p->rctx = c->rctx;
        record_key(&c->rk, &p->rctx, token, len, p->key);
    }
    bool ok = true;
    if (c->redis && (p->lookup || p->has_jti)) {
        p->batch = redis_batch_new(on_pending_done, p);
        ok = p->batch != NULL;
        if (ok && p->lookup) {
            const char *argv[] = {"GET", p->key};
            ok = batch_cmd(p->batch, 2, argv);
        }
        if (ok && p->has_jti)
            ok = exists_blacklist(p->batch, p->jti);
    }
    if (!ok) {
        p->user = NULL; /* stays the caller's */
        redis_batch_free(p->batch);
        free(p);
        return NULL;
    }
    l1_flight_move(&c->l1, flight, &p->flight, p->strings);
    return p;
}

/* direct: the caller blocks anyway, so its first round trip may be made on its own thread
 * (redis_direct); the later steps, if any, still run on the I/O thread. */
static void pending_start(pending *p, l1_waiter *lead, bool direct)
{
    p->lead = lead;
    lead->next = NULL;
    if (p->batch) {
        redis_batch *b = p->batch;
        p->batch = NULL; /* owned by the Redis tier from here */
        if (!direct || !redis_direct(p->c->redis, b))
            redis_submit(p->c->redis, b);
    } else if (!io_loop_post(p->c->loop, pending_advance_task, p)) {
        iam_error err;
        iam_fail(&err, IAM_E_UNAVAILABLE, "the client's I/O thread is not running");
        pending_finish(p, IAM_E_UNAVAILABLE, NULL, &err, INT64_MAX);
    }
}

/* Whether a local verdict needs the network, and whether it is still undecided. */
static bool needs_network(const iam_client *c, iam_status st, const iam_user *user, bool *undecided)
{
    *undecided = st == IAM_E_UNKNOWN_KEY &&
                 (c->redis || c->validate_url || (c->jwks_fetch_url && c->mode != IAM_MODE_CENTRAL));
    return *undecided || (c->redis && st == IAM_OK && iam_user_jti(user));
}

/*
 * The pipeline. With waiter == NULL a request that would have to wait returns CORE_BUSY
 * (waiting for another's resolution: nothing was registered) or CORE_PENDING (it leads a
 * resolution that needs the network: *pend must be started with a waiter); the caller then
 * allocates a waiter and retries or starts. With a waiter, both become CORE_JOINED.
 */
static core_result resolve_core(iam_client *c, const char *token, size_t len,
                                const iam_resolve_options *ro, l1_waiter *waiter, iam_status *st,
                                iam_user **user, iam_error *err, pending **pend)
{
    *user = NULL;
    if (len > IAM_MAX_TOKEN_BYTES) { /* before hashing or copying anything */
        *st = iam_fail(err, IAM_E_TOO_LARGE, "token is %zu bytes; the limit is %d", len, IAM_MAX_TOKEN_BYTES);
        count_result(c, *st, false, 0);
        return CORE_DONE;
    }
    uint64_t ctx = request_ctx(c, ro);
    int64_t now = now_ms(c);
    uint64_t hash = l1_hash(&c->l1, token, len);
    l1_flight flight;
    iam_status refusal = IAM_OK;
    switch (l1_lookup(&c->l1, hash, ctx, token, len, now, c->cache_enabled, waiter, &flight, user,
                      &refusal)) {
    case L1_HIT:
        *st = IAM_OK;
        return CORE_DONE;
    case L1_REFUSED:
        *st = iam_fail(err, refusal, "%s (remembered refusal)", iam_strerror(refusal));
        return CORE_DONE;
    case L1_JOINED:
        return CORE_JOINED;
    case L1_BUSY:
        return CORE_BUSY;
    case L1_LEAD:
        break;
    }
    uint64_t epoch0 = atomic_load(&c->epoch);
    uint64_t ks_gen = atomic_load(&c->ks_gen);
    if (c->mode == IAM_MODE_CENTRAL) {
        /* The service decides; only what is not a token at all is refused here. */
        token_peek pk;
        *st = token_peek_claims(token, len, &pk, err);
        if (*st == IAM_OK)
            *st = iam_fail(err, IAM_E_UNKNOWN_KEY, "central mode: the auth service decides");
        else
            count_result(c, *st, false, 0);
    } else {
        *st = resolve_uncached(c, token, len, ro, now, user, err);
    }
    bool undecided;
    if (needs_network(c, *st, *user, &undecided)) {
        pending *p = pending_new(c, &flight, token, len, ro, epoch0, now, *st, *user, err, undecided);
        if (p) {
            p->ks_gen = ks_gen;
            if (waiter) {
                pending_start(p, waiter, false);
                return CORE_JOINED;
            }
            *pend = p;
            return CORE_PENDING;
        }
        if (*user)
            iam_user_release(*user);
        *user = NULL;
        *st = iam_fail(err, IAM_E_UNAVAILABLE, "out of memory for a network request");
    } else if (c->redis && *st == IAM_OK && !invalidated_since(c, epoch0, hash, *user)) {
        /* no jti, nothing to check: verified here, shared for the others */
        char key[RECORD_KEY_LEN + 1];
        record_ctx rctx_req;
        const record_ctx *rctx = &c->rctx;
        if (ro && ro->audience) {
            record_ctx_init(&rctx_req, &c->rk, ro->audience, c->issuer);
            rctx = &rctx_req;
        }
        record_key(&c->rk, rctx, token, len, key);
        store_record(c, rctx, key, *user, now, INT64_MAX);
    }
    l1_waiter *w = finish_resolution(c, &flight, epoch0, now, INT64_MAX, st, user, err);
    complete_waiters(w, *st, *user, err);
    return CORE_DONE;
}


/* ------------------------------------------------------------ async, sync */

typedef struct async_join {
    l1_waiter w;
    iam_resolve_cb cb;
    void *arg;
} async_join;

static void async_join_done(void *arg, iam_status st, iam_user *user, const iam_error *err)
{
    async_join *j = arg;
    j->cb(j->arg, st, user, err);
    free(j);
}

iam_status iam_client_resolve_async(iam_client *c, const char *token, size_t len,
                                    const iam_resolve_options *ro, iam_resolve_cb cb, void *arg)
{
    if (!c || !token || !cb)
        return IAM_E_INVALID_ARGUMENT;
    iam_status st;
    iam_user *user;
    iam_error err = {IAM_OK, ""};
    pending *p = NULL;
    core_result r = resolve_core(c, token, len, ro, NULL, &st, &user, &err, &p);
    if (r == CORE_BUSY || r == CORE_PENDING) {
        async_join *j = malloc(sizeof *j);
        if (j) {
            j->w.done = async_join_done;
            j->w.arg = j;
            j->cb = cb;
            j->arg = arg;
        }
        if (r == CORE_PENDING) {
            if (j) {
                pending_start(p, &j->w, false);
                return IAM_OK;
            }
            /* no memory for the waiter: end the resolution unanswered */
            st = iam_fail(&err, IAM_E_NOMEM, "out of memory");
            iam_user *u = NULL;
            l1_waiter *w = finish_resolution(c, &p->flight, p->epoch0, p->now, INT64_MAX, &st, &u, &err);
            complete_waiters(w, st, NULL, &err);
            pending_free(p);
            cb(arg, st, NULL, &err);
            return IAM_OK;
        }
        if (!j)
            return IAM_E_NOMEM;
        r = resolve_core(c, token, len, ro, &j->w, &st, &user, &err, &p);
        if (r == CORE_JOINED)
            return IAM_OK;
        free(j);
    }
    cb(arg, st, user, &err);
    return IAM_OK;
}

typedef struct blocking_wait {
    l1_waiter w;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    iam_status st;
    iam_user *user;
    iam_error err;
} blocking_wait;

static void blocking_done(void *arg, iam_status st, iam_user *user, const iam_error *err)
{
    blocking_wait *b = arg;
    pthread_mutex_lock(&b->lock);
    b->st = st;
    b->user = user;
    if (err)
        b->err = *err;
    b->done = true;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

iam_status iam_client_resolve(iam_client *c, const char *token, size_t len,
                              const iam_resolve_options *ro, iam_user **out, iam_error *err)
{
    if (out)
        *out = NULL;
    if (!c || !token || !out)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "client, token and out-parameter are required");
    if (c->redis && io_loop_is_current(c->loop)) /* it would wait for its own thread */
        return iam_fail(err, IAM_E_INVALID_ARGUMENT,
                        "blocking call on the client's I/O thread (from a callback): use iam_client_resolve_async");
    iam_status st;
    iam_error local = {IAM_OK, ""};
    iam_error *e = err ? err : &local;
    /* The hit and the local lead paths complete here, inline: no allocation, no condition
     * variable. Only a request that joins another's resolution, or waits for Redis, waits. */
    pending *p = NULL;
    core_result r = resolve_core(c, token, len, ro, NULL, &st, out, e, &p);
    if (r == CORE_DONE)
        return st;
    blocking_wait b = {.w = {NULL, blocking_done, NULL}, .done = false};
    b.w.arg = &b;
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    if (r == CORE_PENDING) {
        pending_start(p, &b.w, true);
        r = CORE_JOINED;
    } else {
        r = resolve_core(c, token, len, ro, &b.w, &st, out, e, &p);
    }
    if (r == CORE_JOINED) {
        pthread_mutex_lock(&b.lock);
        while (!b.done)
            pthread_cond_wait(&b.cond, &b.lock);
        pthread_mutex_unlock(&b.lock);
        st = b.st;
        *out = b.user;
        *e = b.err;
    }
    pthread_mutex_destroy(&b.lock);
    pthread_cond_destroy(&b.cond);
    return st;
}

/* ------------------------------------------------------------------ stats */

void iam_client_stats_get(iam_client *c, iam_client_stats *s)
{
    memset(s, 0, sizeof *s);
    if (!c)
        return;
    l1_stats(&c->l1, s);
    pthread_mutex_lock(&c->stats_lock);
    s->verifications = c->verifications;
    s->accepted = c->accepted;
    memcpy(s->rejected, c->rejected, sizeof s->rejected);
    s->network_calls = c->network_calls;
    s->verify_latency = c->verify_latency;
    pthread_mutex_unlock(&c->stats_lock);
    pthread_mutex_lock(&c->rev_lock);
    s->revocation_marks = c->rev_count;
    s->revocation_marks_dropped = c->rev_dropped;
    pthread_mutex_unlock(&c->rev_lock);
    if (c->redis) {
        const redis_counters *rc = redis_tier_counters(c->redis);
        s->network_calls += atomic_load(&rc->round_trips);
        s->redis_errors = atomic_load(&rc->errors);
        s->redis_reconnects = atomic_load(&rc->reconnects);
        s->redis_direct = atomic_load(&rc->direct);
        s->redis_connected = atomic_load(&rc->connected);
        s->redis_subscribed = atomic_load(&rc->subscribed);
        s->redis_hits = atomic_load(&c->redis_hits);
        s->redis_misses = atomic_load(&c->redis_misses);
        s->redis_bad_records = atomic_load(&c->redis_bad);
        s->redis_revoked = atomic_load(&c->redis_revoked);
        s->redis_writes = atomic_load(&c->redis_writes);
        s->invalidations_heard = atomic_load(&c->inv_heard);
        s->invalidations_malformed = atomic_load(&c->inv_malformed);
    }
    if (c->http) {
        const http_counters *hc = http_tier_counters(c->http);
        s->network_calls += atomic_load(&hc->requests);
        s->http_retries = atomic_load(&hc->retries);
        s->auth_calls = atomic_load(&c->auth_calls);
        s->auth_valid = atomic_load(&c->auth_valid);
        s->auth_denied = atomic_load(&c->auth_denied);
        s->auth_errors = atomic_load(&c->auth_errors);
        s->auth_fast_failures = atomic_load(&c->auth_fast);
        s->auth_breaker_opened = atomic_load(&c->auth_opened);
        s->auth_breaker_state = atomic_load(&c->breaker_state);
        s->jwks_fetches = atomic_load(&c->jwks_fetches);
        s->jwks_updates = atomic_load(&c->jwks_updates);
        s->jwks_not_modified = atomic_load(&c->jwks_304);
        s->jwks_failures = atomic_load(&c->jwks_failures);
        s->kid_refreshes = atomic_load(&c->kid_refreshes);
        s->kid_refreshes_coalesced = atomic_load(&c->kid_coalesced);
        s->kid_refreshes_suppressed = atomic_load(&c->kid_suppressed);
    }
    iam_keyset *ks = keys_get(c);
    s->keys_held = iam_keyset_count(ks);
    keys_put(c, ks);
}

static uint64_t latency_quantile_ns(const iam_latency *h, double q)
{
    if (!h->count)
        return 0;
    uint64_t target = (uint64_t)((double)h->count * q), seen = 0;
    for (int i = 0; i < IAM_LATENCY_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen > target)
            return (uint64_t)1 << (i + 1); /* upper bound of the bucket */
    }
    return UINT64_MAX;
}

char *iam_client_stats_json(iam_client *c)
{
    iam_client_stats s;
    iam_client_stats_get(c, &s);
    strbuf b = {0};
    strbuf_printf(&b,
              "{\"l1\":{\"hits\":%" PRIu64 ",\"negative_hits\":%" PRIu64 ",\"misses\":%" PRIu64
              ",\"entries\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"evictions\":{\"capacity\":%" PRIu64
              ",\"expired\":%" PRIu64 ",\"invalidated\":%" PRIu64 "},\"hit_latency_ns\":{\"samples\":%" PRIu64
              ",\"mean\":%" PRIu64 ",\"p50_at_most\":%" PRIu64 ",\"p99_at_most\":%" PRIu64 "}},",
              s.l1_hits, s.l1_negative_hits, s.l1_misses, s.l1_entries, s.l1_bytes,
              s.l1_evictions_capacity, s.l1_evictions_expired, s.l1_evictions_invalidated,
              s.hit_latency.count, s.hit_latency.count ? s.hit_latency.sum_ns / s.hit_latency.count : 0,
              latency_quantile_ns(&s.hit_latency, 0.5), latency_quantile_ns(&s.hit_latency, 0.99));
    strbuf_printf(&b,
              "\"local\":{\"verifications\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"coalesced\":%" PRIu64
              ",\"verify_latency_ns\":{\"mean\":%" PRIu64 ",\"p50_at_most\":%" PRIu64
              ",\"p99_at_most\":%" PRIu64 "}},\"rejected\":{",
              s.verifications, s.accepted, s.coalesced,
              s.verify_latency.count ? s.verify_latency.sum_ns / s.verify_latency.count : 0,
              latency_quantile_ns(&s.verify_latency, 0.5), latency_quantile_ns(&s.verify_latency, 0.99));
    bool first = true;
    for (int i = 1; i < IAM_STATUS_SLOTS; i++)
        if (s.rejected[i]) {
            strbuf_printf(&b, "%s\"%s\":%" PRIu64, first ? "" : ",", iam_status_name((iam_status)-i), s.rejected[i]);
            first = false;
        }
    strbuf_printf(&b, "},\"revocation_marks\":%" PRIu64 ",\"revocation_marks_dropped\":%" PRIu64
                  ",\"network_calls\":%" PRIu64,
              s.revocation_marks, s.revocation_marks_dropped, s.network_calls);
    if (c && c->redis)
        strbuf_printf(&b, ",\"redis\":{\"connected\":%s,\"subscribed\":%s,\"hits\":%" PRIu64 ",\"misses\":%" PRIu64
                      ",\"bad_records\":%" PRIu64 ",\"revoked\":%" PRIu64 ",\"errors\":%" PRIu64
                      ",\"writes\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"direct\":%" PRIu64
                      ",\"invalidations_heard\":%" PRIu64 ",\"invalidations_malformed\":%" PRIu64 "}",
                  s.redis_connected ? "true" : "false", s.redis_subscribed ? "true" : "false", s.redis_hits,
                  s.redis_misses, s.redis_bad_records, s.redis_revoked, s.redis_errors, s.redis_writes,
                  s.redis_reconnects, s.redis_direct, s.invalidations_heard, s.invalidations_malformed);
    if (c && c->http)
        strbuf_printf(&b, ",\"auth\":{\"calls\":%" PRIu64 ",\"valid\":%" PRIu64 ",\"denied\":%" PRIu64
                      ",\"errors\":%" PRIu64 ",\"fast_failures\":%" PRIu64 ",\"breaker_opened\":%" PRIu64
                      ",\"breaker\":\"%s\",\"http_retries\":%" PRIu64 "},\"jwks\":{\"fetches\":%" PRIu64
                      ",\"updates\":%" PRIu64 ",\"not_modified\":%" PRIu64 ",\"failures\":%" PRIu64
                      ",\"kid_refreshes\":%" PRIu64 ",\"kid_refreshes_coalesced\":%" PRIu64
                      ",\"kid_refreshes_suppressed\":%" PRIu64 ",\"keys\":%" PRIu64 "}",
                  s.auth_calls, s.auth_valid, s.auth_denied, s.auth_errors, s.auth_fast_failures,
                  s.auth_breaker_opened,
                  s.auth_breaker_state == BREAKER_OPEN ? "open"
                  : s.auth_breaker_state == BREAKER_HALF_OPEN ? "half-open" : "closed",
                  s.http_retries, s.jwks_fetches, s.jwks_updates, s.jwks_not_modified, s.jwks_failures,
                  s.kid_refreshes, s.kid_refreshes_coalesced, s.kid_refreshes_suppressed, s.keys_held);
    strbuf_printf(&b, "}");
    return strbuf_finish(&b);
}

static void prom_counter(strbuf *b, const char *name, const char *help, uint64_t v)
{
    strbuf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name, v);
}

static void prom_histogram(strbuf *b, const char *name, const char *help, const iam_latency *h)
{
    strbuf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < IAM_LATENCY_BUCKETS - 1; i++) {
        cum += h->buckets[i];
        strbuf_printf(b, "%s_bucket{le=\"%.9f\"} %" PRIu64 "\n", name, (double)((uint64_t)1 << (i + 1)) / 1e9, cum);
    }
    strbuf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.9f\n%s_count %" PRIu64 "\n", name,
              h->count, name, (double)h->sum_ns / 1e9, name, h->count);
}

char *iam_client_metrics_prometheus(iam_client *c)
{
    iam_client_stats s;
    iam_client_stats_get(c, &s);
    strbuf b = {0};
    prom_counter(&b, "iam_l1_hits_total", "Requests answered from the in-process cache.", s.l1_hits);
    prom_counter(&b, "iam_l1_negative_hits_total", "Requests refused from a remembered refusal.", s.l1_negative_hits);
    prom_counter(&b, "iam_l1_misses_total", "Requests the in-process cache could not answer.", s.l1_misses);
    strbuf_printf(&b, "# HELP iam_l1_entries Entries in the in-process cache.\n# TYPE iam_l1_entries gauge\n"
                  "iam_l1_entries %" PRIu64 "\n", s.l1_entries);
    strbuf_printf(&b, "# HELP iam_l1_bytes Accounted bytes of the in-process cache.\n# TYPE iam_l1_bytes gauge\n"
                  "iam_l1_bytes %" PRIu64 "\n", s.l1_bytes);
    strbuf_printf(&b, "# HELP iam_l1_evictions_total Entries removed from the in-process cache.\n"
                  "# TYPE iam_l1_evictions_total counter\n"
                  "iam_l1_evictions_total{reason=\"capacity\"} %" PRIu64 "\n"
                  "iam_l1_evictions_total{reason=\"expired\"} %" PRIu64 "\n"
                  "iam_l1_evictions_total{reason=\"invalidated\"} %" PRIu64 "\n",
              s.l1_evictions_capacity, s.l1_evictions_expired, s.l1_evictions_invalidated);
    prom_counter(&b, "iam_coalesced_total", "Requests that waited for a resolution in flight.", s.coalesced);
    prom_counter(&b, "iam_verifications_total", "Local token verifications.", s.verifications);
    prom_counter(&b, "iam_accepted_total", "Local verifications that produced a user context.", s.accepted);
    strbuf_printf(&b, "# HELP iam_rejected_total Resolutions refused, by reason.\n# TYPE iam_rejected_total counter\n");
    for (int i = 1; i < IAM_STATUS_SLOTS; i++)
        if (s.rejected[i])
            strbuf_printf(&b, "iam_rejected_total{reason=\"%s\"} %" PRIu64 "\n", iam_status_name((iam_status)-i),
                      s.rejected[i]);
    prom_counter(&b, "iam_network_calls_total", "Calls to Redis or the auth service.", s.network_calls);
    strbuf_printf(&b, "# HELP iam_revocation_marks Revoked jtis currently marked.\n# TYPE iam_revocation_marks gauge\n"
                  "iam_revocation_marks %" PRIu64 "\n", s.revocation_marks);
    prom_counter(&b, "iam_revocation_marks_dropped_total",
                 "Revocation marks dropped early because the mark table was full.",
                 s.revocation_marks_dropped);
    if (c && c->redis) {
        prom_counter(&b, "iam_redis_hits_total", "Answers from a valid shared-cache record.", s.redis_hits);
        prom_counter(&b, "iam_redis_misses_total", "Shared-cache lookups that found no record.", s.redis_misses);
        prom_counter(&b, "iam_redis_bad_records_total",
                     "Shared-cache records that failed their MAC, were malformed or foreign (removed).",
                     s.redis_bad_records);
        prom_counter(&b, "iam_redis_revoked_total", "Refusals because blacklist:jti:<jti> exists.", s.redis_revoked);
        prom_counter(&b, "iam_redis_errors_total", "Redis error replies, timeouts and lost connections.",
                     s.redis_errors);
        prom_counter(&b, "iam_redis_writes_total", "Shared-cache records stored.", s.redis_writes);
        prom_counter(&b, "iam_redis_reconnects_total", "Redis connection attempts.", s.redis_reconnects);
        prom_counter(&b, "iam_redis_direct_total", "Redis round trips blocking callers made themselves.",
                     s.redis_direct);
        prom_counter(&b, "iam_invalidations_heard_total", "Messages heard on policy:invalidate.",
                     s.invalidations_heard);
        prom_counter(&b, "iam_invalidations_malformed_total", "Malformed messages on policy:invalidate (ignored).",
                     s.invalidations_malformed);
        strbuf_printf(&b, "# HELP iam_redis_up Whether the Redis command connection and the subscription are up.\n"
                      "# TYPE iam_redis_up gauge\niam_redis_up{connection=\"command\"} %d\n"
                      "iam_redis_up{connection=\"subscription\"} %d\n",
                  s.redis_connected, s.redis_subscribed);
    }
    if (c && c->http) {
        prom_counter(&b, "iam_auth_calls_total", "Calls to the auth service's /auth/validate.", s.auth_calls);
        prom_counter(&b, "iam_auth_valid_total", "Auth-service answers accepted as valid.", s.auth_valid);
        prom_counter(&b, "iam_auth_denied_total", "Auth-service answers {\"valid\": false}.", s.auth_denied);
        prom_counter(&b, "iam_auth_errors_total",
                     "Auth-service calls without a contract answer (timeout, refused, HTTP error, bad body).",
                     s.auth_errors);
        prom_counter(&b, "iam_auth_fast_failures_total", "Calls refused at once by the open circuit breaker.",
                     s.auth_fast_failures);
        prom_counter(&b, "iam_auth_breaker_opened_total", "Times the auth-service circuit breaker opened.",
                     s.auth_breaker_opened);
        strbuf_printf(&b, "# HELP iam_auth_breaker_state Circuit breaker: 0 closed, 1 open, 2 half-open.\n"
                      "# TYPE iam_auth_breaker_state gauge\niam_auth_breaker_state %d\n", s.auth_breaker_state);
        prom_counter(&b, "iam_http_retries_total", "HTTP connections retried (nothing had been sent).",
                     s.http_retries);
        prom_counter(&b, "iam_jwks_fetches_total", "JWKS fetches completed or failed.", s.jwks_fetches);
        prom_counter(&b, "iam_jwks_updates_total", "New key sets installed from the JWKS.", s.jwks_updates);
        prom_counter(&b, "iam_jwks_not_modified_total", "JWKS fetches answered 304 Not Modified.",
                     s.jwks_not_modified);
        prom_counter(&b, "iam_jwks_failures_total", "Failed JWKS fetches (the keys held stayed in use).",
                     s.jwks_failures);
        prom_counter(&b, "iam_kid_refreshes_total", "JWKS refreshes started for a token with an unknown key.",
                     s.kid_refreshes);
        prom_counter(&b, "iam_kid_refreshes_coalesced_total",
                     "Unknown-key resolutions that waited for a refresh already running.", s.kid_refreshes_coalesced);
        prom_counter(&b, "iam_kid_refreshes_suppressed_total",
                     "Unknown-key resolutions inside the refresh cooldown (no fetch).", s.kid_refreshes_suppressed);
    }
    strbuf_printf(&b, "# HELP iam_keys Keys in the key set in use.\n# TYPE iam_keys gauge\niam_keys %" PRIu64 "\n",
              s.keys_held);
    prom_histogram(&b, "iam_l1_hit_seconds", "In-process cache hit latency (1 in 64 sampled).", &s.hit_latency);
    prom_histogram(&b, "iam_verify_seconds", "Local verification latency.", &s.verify_latency);
    return strbuf_finish(&b);
}
