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
#include "identity/identity.h"
#include "net/loop.h"
#include "client_internal.h"

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

struct iam_client {
    iam_mode mode;
    iam_keyset *ks;
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

iam_status iam_client_new(const iam_client_options *o, iam_client **out, iam_error *err)
{
    if (!o || !out)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "options and out-parameter are required");
    *out = NULL;
    if (o->mode != IAM_MODE_LOCAL_FIRST && o->mode != IAM_MODE_CENTRAL && o->mode != IAM_MODE_LOCAL_ONLY)
        return iam_fail(err, IAM_E_CONFIG, "unknown mode");
    if (o->mode == IAM_MODE_CENTRAL)
        return iam_fail(err, IAM_E_CONFIG,
                        "central mode needs the auth-service tier, which this build does not include yet");
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
    static const char *const REDIS[] = {"redis://", "rediss://", "unix://", NULL};
    iam_status st;
    if (o->auth_url && (st = check_url(o->auth_url, "auth_url", HTTP, err)) != IAM_OK)
        return st;
    if (o->jwks_url && (st = check_url(o->jwks_url, "jwks_url", HTTP, err)) != IAM_OK)
        return st;
    if (o->redis_url && (st = check_url(o->redis_url, "redis_url", REDIS, err)) != IAM_OK)
        return st;

    iam_client *c = calloc(1, sizeof *c);
    if (!c)
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    pthread_mutex_init(&c->stats_lock, NULL);
    pthread_mutex_init(&c->rev_lock, NULL);
    pthread_mutex_init(&c->inv_lock, NULL);
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
    if (st == IAM_OK && iam_keyset_count(c->ks) == 0)
        st = iam_fail(err, IAM_E_CONFIG,
                      o->mode == IAM_MODE_LOCAL_ONLY || (!o->jwks_url && !o->auth_url)
                          ? "no key: give jwt_secret, jwks_file, pem_file or keys (IAM_JWT_SECRET, "
                            "IAM_JWKS_FILE, IAM_PEM_FILE)"
                          : "no key held; fetching keys from jwks_url/auth_url needs the auth-service "
                            "tier, which this build does not include yet");
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
    io_loop_stop(c->loop);
    if (c->l1.shards)
        l1_destroy(&c->l1);
    rev_clear(c);
    iam_keyset_release(c->ks);
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

size_t iam_client_invalidate_token(iam_client *c, const char *token, size_t len)
{
    if (!c || !token)
        return 0;
    inv_log(c, INV_TOKEN, l1_hash(&c->l1, token, len), NULL);
    return l1_remove_token(&c->l1, token, len);
}

static bool user_is(const iam_user *u, const void *arg)
{
    return iam_user_id(u) && strcmp(iam_user_id(u), arg) == 0;
}

size_t iam_client_invalidate_user(iam_client *c, const char *user_id)
{
    if (!c || !user_id)
        return 0;
    inv_log(c, INV_USER, 0, user_id);
    return l1_remove_if(&c->l1, user_is, user_id);
}

static bool jti_is(const iam_user *u, const void *arg)
{
    return iam_user_jti(u) && strcmp(iam_user_jti(u), arg) == 0;
}

size_t iam_client_revoke_jti(iam_client *c, const char *jti)
{
    if (!c || !jti || !*jti)
        return 0;
    rev_mark_add(c, jti, now_ms(c)); /* marked first: a resolution from now on is refused */
    inv_log(c, INV_JTI, 0, jti);
    return l1_remove_if(&c->l1, jti_is, jti);
}

size_t iam_client_invalidate_all(iam_client *c)
{
    if (!c)
        return 0;
    inv_log(c, INV_ALL, 0, NULL);
    return l1_remove_all(&c->l1);
}

static void on_tick(void *arg)
{
    iam_client *c = arg;
    int64_t now = now_ms(c);
    l1_sweep(&c->l1, now);
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
    iam_status st = iam_token_verify(token, len, c->ks, &vo, now / 1000, user, err);
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

typedef enum core_result { CORE_DONE, CORE_JOINED, CORE_BUSY } core_result;

typedef struct veto_ctx {
    iam_client *c;
    uint64_t epoch0, hash;
    const iam_user *user;
} veto_ctx;

static bool veto_if_invalidated(void *arg)
{
    veto_ctx *v = arg;
    return invalidated_since(v->c, v->epoch0, v->hash, v->user);
}

/* The validation context a request's answers are cached under. */
static uint64_t request_ctx(const iam_client *c, const iam_resolve_options *ro)
{
    return ro && (ro->audience || ro->required_org)
               ? ctx_hash(c->seed, ro->audience ? ro->audience : c->audience, c->issuer,
                          ro->required_org)
               : c->default_ctx;
}

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
        return iam_fail(err, IAM_E_NOT_CACHED, "no cache holds an answer for this token");
    }
}

/*
 * The pipeline. With waiter == NULL a request that would have to wait for another's
 * resolution returns CORE_BUSY (the async caller then allocates a waiter and retries).
 */
static core_result resolve_core(iam_client *c, const char *token, size_t len,
                                const iam_resolve_options *ro, l1_waiter *waiter, iam_status *st,
                                iam_user **user, iam_error *err)
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
    *st = resolve_uncached(c, token, len, ro, now, user, err);
    bool store = false;
    int64_t expires = 0;
    if (*st == IAM_OK) {
        expires = iam_user_expires_at(*user) * 1000;
        if (expires > now + c->ttl_ms)
            expires = now + c->ttl_ms;
        store = c->cache_enabled && expires > now;
    } else if (remember_refusal(*st)) {
        expires = now + c->negative_ttl_ms;
        store = c->cache_enabled && c->negative_enabled;
    }
    /* A positive answer is not cached when an invalidation concerning it landed while it
     * was being resolved (checked again under the shard lock, see l1_finish). */
    veto_ctx vc = {c, epoch0, hash, *user};
    l1_waiter *w = l1_finish(&c->l1, &flight, store, *st == IAM_OK ? *user : NULL, *st, expires,
                             *st == IAM_OK ? veto_if_invalidated : NULL, &vc);
    /* Every waiter joined before l1_finish ended the flight; a revocation that returned
     * before any of them started is therefore visible now. Checked after the flight, it
     * keeps a request that began after iam_client_revoke_jti from being handed the
     * answer of a resolution that verified just before the mark landed. */
    if (*st == IAM_OK && rev_is_marked(c, iam_user_jti(*user), now_ms(c))) {
        iam_user_release(*user);
        *user = NULL;
        *st = iam_fail(err, IAM_E_REVOKED, "token has been revoked");
    }
    while (w) {
        l1_waiter *next = w->next; /* read first: done() frees or wakes the waiter */
        w->done(w->arg, *st, *st == IAM_OK ? iam_user_retain(*user) : NULL, err);
        w = next;
    }
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
    core_result r = resolve_core(c, token, len, ro, NULL, &st, &user, &err);
    if (r == CORE_BUSY) {
        async_join *j = malloc(sizeof *j);
        if (!j)
            return IAM_E_NOMEM;
        j->w.done = async_join_done;
        j->w.arg = j;
        j->cb = cb;
        j->arg = arg;
        r = resolve_core(c, token, len, ro, &j->w, &st, &user, &err);
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
    iam_status st;
    iam_error local = {IAM_OK, ""};
    iam_error *e = err ? err : &local;
    /* The hit and the lead paths complete here, inline: no allocation, no condition
     * variable. Only a request that joins another's resolution waits. */
    core_result r = resolve_core(c, token, len, ro, NULL, &st, out, e);
    if (r != CORE_BUSY)
        return st;
    blocking_wait b = {.w = {NULL, blocking_done, NULL}, .done = false};
    b.w.arg = &b;
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    r = resolve_core(c, token, len, ro, &b.w, &st, out, e);
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
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) IAM_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static char *sb_finish(sbuf *b)
{
    if (b->failed) {
        free(b->p);
        return NULL;
    }
    return b->p;
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
    sbuf b = {0};
    sb_printf(&b,
              "{\"l1\":{\"hits\":%" PRIu64 ",\"negative_hits\":%" PRIu64 ",\"misses\":%" PRIu64
              ",\"entries\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"evictions\":{\"capacity\":%" PRIu64
              ",\"expired\":%" PRIu64 ",\"invalidated\":%" PRIu64 "},\"hit_latency_ns\":{\"samples\":%" PRIu64
              ",\"mean\":%" PRIu64 ",\"p50_at_most\":%" PRIu64 ",\"p99_at_most\":%" PRIu64 "}},",
              s.l1_hits, s.l1_negative_hits, s.l1_misses, s.l1_entries, s.l1_bytes,
              s.l1_evictions_capacity, s.l1_evictions_expired, s.l1_evictions_invalidated,
              s.hit_latency.count, s.hit_latency.count ? s.hit_latency.sum_ns / s.hit_latency.count : 0,
              latency_quantile_ns(&s.hit_latency, 0.5), latency_quantile_ns(&s.hit_latency, 0.99));
    sb_printf(&b,
              "\"local\":{\"verifications\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"coalesced\":%" PRIu64
              ",\"verify_latency_ns\":{\"mean\":%" PRIu64 ",\"p50_at_most\":%" PRIu64
              ",\"p99_at_most\":%" PRIu64 "}},\"rejected\":{",
              s.verifications, s.accepted, s.coalesced,
              s.verify_latency.count ? s.verify_latency.sum_ns / s.verify_latency.count : 0,
              latency_quantile_ns(&s.verify_latency, 0.5), latency_quantile_ns(&s.verify_latency, 0.99));
    bool first = true;
    for (int i = 1; i < IAM_STATUS_SLOTS; i++)
        if (s.rejected[i]) {
            sb_printf(&b, "%s\"%s\":%" PRIu64, first ? "" : ",", iam_status_name((iam_status)-i), s.rejected[i]);
            first = false;
        }
    sb_printf(&b, "},\"revocation_marks\":%" PRIu64 ",\"revocation_marks_dropped\":%" PRIu64
                  ",\"network_calls\":%" PRIu64 "}",
              s.revocation_marks, s.revocation_marks_dropped, s.network_calls);
    return sb_finish(&b);
}

static void prom_counter(sbuf *b, const char *name, const char *help, uint64_t v)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name, v);
}

static void prom_histogram(sbuf *b, const char *name, const char *help, const iam_latency *h)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < IAM_LATENCY_BUCKETS - 1; i++) {
        cum += h->buckets[i];
        sb_printf(b, "%s_bucket{le=\"%.9f\"} %" PRIu64 "\n", name, (double)((uint64_t)1 << (i + 1)) / 1e9, cum);
    }
    sb_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.9f\n%s_count %" PRIu64 "\n", name,
              h->count, name, (double)h->sum_ns / 1e9, name, h->count);
}

char *iam_client_metrics_prometheus(iam_client *c)
{
    iam_client_stats s;
    iam_client_stats_get(c, &s);
    sbuf b = {0};
    prom_counter(&b, "iam_l1_hits_total", "Requests answered from the in-process cache.", s.l1_hits);
    prom_counter(&b, "iam_l1_negative_hits_total", "Requests refused from a remembered refusal.", s.l1_negative_hits);
    prom_counter(&b, "iam_l1_misses_total", "Requests the in-process cache could not answer.", s.l1_misses);
    sb_printf(&b, "# HELP iam_l1_entries Entries in the in-process cache.\n# TYPE iam_l1_entries gauge\n"
                  "iam_l1_entries %" PRIu64 "\n", s.l1_entries);
    sb_printf(&b, "# HELP iam_l1_bytes Accounted bytes of the in-process cache.\n# TYPE iam_l1_bytes gauge\n"
                  "iam_l1_bytes %" PRIu64 "\n", s.l1_bytes);
    sb_printf(&b, "# HELP iam_l1_evictions_total Entries removed from the in-process cache.\n"
                  "# TYPE iam_l1_evictions_total counter\n"
                  "iam_l1_evictions_total{reason=\"capacity\"} %" PRIu64 "\n"
                  "iam_l1_evictions_total{reason=\"expired\"} %" PRIu64 "\n"
                  "iam_l1_evictions_total{reason=\"invalidated\"} %" PRIu64 "\n",
              s.l1_evictions_capacity, s.l1_evictions_expired, s.l1_evictions_invalidated);
    prom_counter(&b, "iam_coalesced_total", "Requests that waited for a resolution in flight.", s.coalesced);
    prom_counter(&b, "iam_verifications_total", "Local token verifications.", s.verifications);
    prom_counter(&b, "iam_accepted_total", "Local verifications that produced a user context.", s.accepted);
    sb_printf(&b, "# HELP iam_rejected_total Resolutions refused, by reason.\n# TYPE iam_rejected_total counter\n");
    for (int i = 1; i < IAM_STATUS_SLOTS; i++)
        if (s.rejected[i])
            sb_printf(&b, "iam_rejected_total{reason=\"%s\"} %" PRIu64 "\n", iam_status_name((iam_status)-i),
                      s.rejected[i]);
    prom_counter(&b, "iam_network_calls_total", "Calls to Redis or the auth service.", s.network_calls);
    sb_printf(&b, "# HELP iam_revocation_marks Revoked jtis currently marked.\n# TYPE iam_revocation_marks gauge\n"
                  "iam_revocation_marks %" PRIu64 "\n", s.revocation_marks);
    prom_counter(&b, "iam_revocation_marks_dropped_total",
                 "Revocation marks dropped early because the mark table was full.",
                 s.revocation_marks_dropped);
    prom_histogram(&b, "iam_l1_hit_seconds", "In-process cache hit latency (1 in 64 sampled).", &s.hit_latency);
    prom_histogram(&b, "iam_verify_seconds", "Local verification latency.", &s.verify_latency);
    return sb_finish(&b);
}
