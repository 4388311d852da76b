/*
 * test_client_concurrency.c — one client shared by many threads: every answer right under
 * load with a moving clock, counters that add up, coalescing of concurrent misses of one
 * token (blocking and async callers mixed), and revocation racing resolutions: once
 * iam_client_revoke_jti has returned, no resolution started afterwards may accept the token.
 *
 * Slow verification for the coalescing tests: a keyset of 64 P-521 keys and an ES512 token
 * without kid signed by the last, so each verification tries every key (tens of ms).
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "iamclient.h"
#include "mint.h"

#define T0_S INT64_C(1900000000)
#define T0 (T0_S * 1000)

static const char SECRET[] = "concurrency-secret-0123456789abcdefghijklmnopqrstuvwxyz";
static const char OTHER_SECRET[] = "the-wrong-secret-0123456789abcdefghijklmnopqrstuvwxyz";

static _Atomic int64_t g_clock;
static mint_key *g_key, *g_other_key, *g_slow_signer;
static iam_keyset *g_slow_keys;

static int64_t test_clock(void *ctx)
{
    return atomic_load((_Atomic int64_t *)ctx);
}

static int group_setup(void **state)
{
    (void)state;
    g_key = mint_key_hmac(SECRET, strlen(SECRET));
    g_other_key = mint_key_hmac(OTHER_SECRET, strlen(OTHER_SECRET));
    mint_key *wrong = mint_key_generate("p521");
    g_slow_signer = mint_key_generate("p521");
    char *wrong_pem = mint_key_public_pem(wrong), *right_pem = mint_key_public_pem(g_slow_signer);
    g_slow_keys = iam_keyset_new();
    for (int i = 0; i < IAM_MAX_KEYS - 1; i++)
        if (iam_keyset_add_pem(g_slow_keys, wrong_pem, strlen(wrong_pem), NULL, NULL) != IAM_OK)
            return -1;
    if (iam_keyset_add_pem(g_slow_keys, right_pem, strlen(right_pem), NULL, NULL) != IAM_OK)
        return -1;
    free(wrong_pem);
    free(right_pem);
    mint_key_free(wrong);
    return iam_keyset_count(g_slow_keys) == IAM_MAX_KEYS ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    mint_key_free(g_key);
    mint_key_free(g_other_key);
    mint_key_free(g_slow_signer);
    iam_keyset_release(g_slow_keys);
    return 0;
}

static int test_setup(void **state)
{
    (void)state;
    atomic_store(&g_clock, T0);
    return 0;
}

static void base_opts(iam_client_options *o)
{
    iam_client_options_init(o);
    o->mode = IAM_MODE_LOCAL_ONLY;
    o->jwt_secret = SECRET;
    o->clock_ms = test_clock;
    o->clock_ctx = &g_clock;
}

static iam_client *client_ok(const iam_client_options *o)
{
    iam_client *c = NULL;
    iam_error e = {0};
    iam_status st = iam_client_new(o, &c, &e);
    if (st != IAM_OK)
        fail_msg("iam_client_new: %s (%s)", iam_status_name(st), e.message);
    return c;
}

static iam_client *slow_client(bool cache_disabled)
{
    iam_client_options o;
    base_opts(&o);
    o.jwt_secret = NULL;
    o.keys = g_slow_keys;
    o.cache_disabled = cache_disabled;
    return client_ok(&o);
}

static char *hs_token(const char *sub, int64_t exp_s, const mint_key *key)
{
    char *claims = mint_platform_claims(sub, exp_s);
    char *t = mint_token("HS256", NULL, claims, key);
    free(claims);
    return t;
}

static char *slow_token(const char *sub, int64_t exp_s)
{
    char *claims = mint_platform_claims(sub, exp_s);
    char *t = mint_token("ES512", NULL, claims, g_slow_signer);
    free(claims);
    return t;
}

/* ------------------------------------------------------- mixed load */

#define MIX_TOKENS 50
#define MIX_THREADS 8
#ifdef IAM_SANITIZED /* sanitizer builds are 5-20x slower: the same races, fewer rounds */
#define MIX_ITERS 2000
#else
#define MIX_ITERS 20000
#endif

typedef struct mix_token {
    char *tok;
    size_t len;
    char sub[16];
    iam_status expect;
} mix_token;

typedef struct mix_shared {
    iam_client *c;
    mix_token toks[MIX_TOKENS];
    _Atomic uint64_t ok, refused, wrong;
    _Atomic uint64_t by_status[IAM_STATUS_SLOTS];
} mix_shared;

typedef struct mix_arg {
    mix_shared *sh;
    unsigned id;
} mix_arg;

static void *mix_worker(void *p)
{
    mix_arg *a = p;
    mix_shared *sh = a->sh;
    uint64_t x = 0x9E3779B97F4A7C15ULL * (a->id + 1);
    iam_resolve_options org7 = {.required_org = "7"};
    uint64_t ok = 0, refused = 0, wrong = 0;
    for (int i = 0; i < MIX_ITERS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const mix_token *t = &sh->toks[x % MIX_TOKENS];
        const iam_resolve_options *ro = (x >> 32) % 4 == 0 ? &org7 : NULL;
        if (a->id == 0 && i % 500 == 0)
            atomic_fetch_add(&g_clock, 1000); /* entries keep expiring: misses under load */
        iam_user *u = NULL;
        iam_error e = {0};
        iam_status st = iam_client_resolve(sh->c, t->tok, t->len, ro, &u, &e);
        if (st != t->expect || (st == IAM_OK) != (u != NULL) ||
            (u && strcmp(iam_user_id(u), t->sub) != 0) || (st != IAM_OK && e.code != st))
            wrong++;
        if (st == IAM_OK)
            ok++;
        else
            refused++;
        if (-st >= 0 && -st < IAM_STATUS_SLOTS)
            atomic_fetch_add(&sh->by_status[-st], 1);
        iam_user_release(u);
    }
    atomic_fetch_add(&sh->ok, ok);
    atomic_fetch_add(&sh->refused, refused);
    atomic_fetch_add(&sh->wrong, wrong);
    return NULL;
}

static void test_mixed_load(void **state)
{
    (void)state;
    static mix_shared sh;
    memset(&sh, 0, sizeof sh);
    iam_client_options o;
    base_opts(&o);
    o.cache_ttl_s = 3;
    o.negative_ttl_s = 2;
    sh.c = client_ok(&o);
    for (int i = 0; i < MIX_TOKENS; i++) {
        mix_token *t = &sh.toks[i];
        snprintf(t->sub, sizeof t->sub, "%d", 100 + i);
        switch (i % 5) {
        case 0:
        case 1:
        case 2:
            t->tok = hs_token(t->sub, T0_S + 10000000, g_key);
            t->expect = IAM_OK;
            break;
        case 3:
            t->tok = hs_token(t->sub, T0_S - 10, g_key);
            t->expect = IAM_E_EXPIRED;
            break;
        default:
            t->tok = hs_token(t->sub, T0_S + 10000000, g_other_key);
            t->expect = IAM_E_BAD_SIGNATURE;
        }
        t->len = strlen(t->tok);
    }
    pthread_t th[MIX_THREADS];
    mix_arg args[MIX_THREADS];
    for (unsigned i = 0; i < MIX_THREADS; i++) {
        args[i] = (mix_arg){&sh, i};
        assert_int_equal(pthread_create(&th[i], NULL, mix_worker, &args[i]), 0);
    }
    for (unsigned i = 0; i < MIX_THREADS; i++)
        pthread_join(th[i], NULL);

    const uint64_t total = (uint64_t)MIX_THREADS * MIX_ITERS;
    assert_int_equal(atomic_load(&sh.wrong), 0);
    assert_int_equal(atomic_load(&sh.ok) + atomic_load(&sh.refused), total);

    iam_client_stats s;
    iam_client_stats_get(sh.c, &s);
    uint64_t rejected = 0;
    for (int i = 0; i < IAM_STATUS_SLOTS; i++)
        rejected += s.rejected[i];
    print_message("mixed: hits %llu neg %llu misses %llu coalesced %llu verifications %llu "
                  "accepted %llu rejected %llu\n",
                  (unsigned long long)s.l1_hits, (unsigned long long)s.l1_negative_hits,
                  (unsigned long long)s.l1_misses, (unsigned long long)s.coalesced,
                  (unsigned long long)s.verifications, (unsigned long long)s.accepted,
                  (unsigned long long)rejected);
    /* every request is exactly one of: hit, remembered refusal, miss (leader), coalesced */
    assert_int_equal(s.l1_hits + s.l1_negative_hits + s.l1_misses + s.coalesced, total);
    /* every leader verified once, and every verification was counted as one outcome */
    assert_int_equal(s.l1_misses, s.verifications);
    assert_int_equal(s.accepted + rejected, s.verifications);
    /* only the expected refusals were counted */
    assert_int_equal(rejected, s.rejected[-IAM_E_EXPIRED] + s.rejected[-IAM_E_BAD_SIGNATURE]);
    /* answers seen = answers from memory + leaders' answers + coalesced answers */
    uint64_t ok = atomic_load(&sh.ok), refused = atomic_load(&sh.refused);
    assert_true(ok >= s.l1_hits + s.accepted);
    assert_true(ok <= s.l1_hits + s.accepted + s.coalesced);
    assert_true(refused >= s.l1_negative_hits + rejected);
    assert_true(refused <= s.l1_negative_hits + rejected + s.coalesced);
    assert_true(atomic_load(&sh.by_status[-IAM_E_EXPIRED]) >= s.rejected[-IAM_E_EXPIRED]);
    assert_true(atomic_load(&sh.by_status[-IAM_E_BAD_SIGNATURE]) >= s.rejected[-IAM_E_BAD_SIGNATURE]);
    /* the clock moved ~320 s with a 3 s TTL: entries were re-verified many times */
    assert_true(s.verifications > MIX_TOKENS);
    assert_true(s.l1_hits > 0);
    for (int i = 0; i < MIX_TOKENS; i++)
        free(sh.toks[i].tok);
    iam_client_free(sh.c);
}

/* ------------------------------------------------------- coalescing */

#define HERD 16

typedef struct herd {
    iam_client *c;
    const char *tok;
    pthread_barrier_t barrier;
    _Atomic int ok, wrong;
} herd;

static void *herd_worker(void *p)
{
    herd *h = p;
    pthread_barrier_wait(&h->barrier);
    iam_user *u = NULL;
    iam_status st = iam_client_resolve(h->c, h->tok, strlen(h->tok), NULL, &u, NULL);
    if (st == IAM_OK && u && strcmp(iam_user_id(u), "77") == 0)
        atomic_fetch_add(&h->ok, 1);
    else
        atomic_fetch_add(&h->wrong, 1);
    iam_user_release(u);
    return NULL;
}

static iam_client_stats run_herd(iam_client *c, const char *tok)
{
    herd h = {.c = c, .tok = tok};
    pthread_barrier_init(&h.barrier, NULL, HERD);
    pthread_t th[HERD];
    for (int i = 0; i < HERD; i++)
        assert_int_equal(pthread_create(&th[i], NULL, herd_worker, &h), 0);
    for (int i = 0; i < HERD; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&h.barrier);
    assert_int_equal(atomic_load(&h.wrong), 0);
    assert_int_equal(atomic_load(&h.ok), HERD);
    iam_client_stats s;
    iam_client_stats_get(c, &s);
    print_message("herd: verifications %llu coalesced %llu hits %llu misses %llu\n",
                  (unsigned long long)s.verifications, (unsigned long long)s.coalesced,
                  (unsigned long long)s.l1_hits, (unsigned long long)s.l1_misses);
    return s;
}

static void test_coalescing_cache_enabled(void **state)
{
    (void)state;
    iam_client *c = slow_client(false);
    char *tok = slow_token("77", T0_S + 3600);
    iam_client_stats s = run_herd(c, tok);
    /* exact whatever the timing: a late arrival finds the entry */
    assert_int_equal(s.verifications, 1);
    assert_int_equal(s.coalesced + s.l1_hits, HERD - 1);
    assert_true(s.coalesced >= 1); /* verification takes tens of ms: others joined */
    free(tok);
    iam_client_free(c);
}

static void test_coalescing_cache_disabled(void **state)
{
    (void)state;
    iam_client *c = slow_client(true);
    for (int round = 0; round < 3; round++) {
        char *tok = slow_token("77", T0_S + 3600 + round);
        iam_client_stats before;
        iam_client_stats_get(c, &before);
        iam_client_stats s = run_herd(c, tok);
        uint64_t v = s.verifications - before.verifications, co = s.coalesced - before.coalesced;
        assert_int_equal(v + co, HERD); /* nothing is answered from memory */
        assert_true(v <= 2);
        assert_int_equal(s.l1_hits, 0);
        free(tok);
    }
    iam_client_free(c);
}

/* async and blocking callers mixed on one token */

typedef struct mixed_herd {
    iam_client *c;
    const char *tok;
    pthread_barrier_t barrier;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int callbacks, callbacks_ok, blocking_ok, wrong;
    int calls_per_slot[HERD];
} mixed_herd;

typedef struct slot {
    mixed_herd *h;
    int id;
} slot;

static void herd_cb(void *arg, iam_status st, iam_user *user, const iam_error *err)
{
    slot *s = arg;
    mixed_herd *h = s->h;
    bool good = st == IAM_OK && user && strcmp(iam_user_id(user), "78") == 0 && err;
    iam_user_release(user);
    pthread_mutex_lock(&h->lock);
    h->calls_per_slot[s->id]++;
    h->callbacks++;
    if (good)
        h->callbacks_ok++;
    else
        h->wrong++;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

static void *mixed_worker(void *p)
{
    slot *s = p;
    mixed_herd *h = s->h;
    pthread_barrier_wait(&h->barrier);
    if (s->id % 2) {
        if (iam_client_resolve_async(h->c, h->tok, strlen(h->tok), NULL, herd_cb, s) != IAM_OK) {
            pthread_mutex_lock(&h->lock);
            h->wrong++;
            pthread_mutex_unlock(&h->lock);
        }
    } else {
        iam_user *u = NULL;
        iam_status st = iam_client_resolve(h->c, h->tok, strlen(h->tok), NULL, &u, NULL);
        pthread_mutex_lock(&h->lock);
        if (st == IAM_OK && u && strcmp(iam_user_id(u), "78") == 0)
            h->blocking_ok++;
        else
            h->wrong++;
        pthread_mutex_unlock(&h->lock);
        iam_user_release(u);
    }
    return NULL;
}

static void test_coalescing_async_and_blocking(void **state)
{
    (void)state;
    iam_client *c = slow_client(false);
    char *tok = slow_token("78", T0_S + 3600);
    mixed_herd h = {.c = c, .tok = tok};
    pthread_barrier_init(&h.barrier, NULL, HERD);
    pthread_mutex_init(&h.lock, NULL);
    pthread_cond_init(&h.cond, NULL);
    slot slots[HERD];
    pthread_t th[HERD];
    for (int i = 0; i < HERD; i++) {
        slots[i] = (slot){&h, i};
        assert_int_equal(pthread_create(&th[i], NULL, mixed_worker, &slots[i]), 0);
    }
    for (int i = 0; i < HERD; i++)
        pthread_join(th[i], NULL);
    /* async callbacks may complete on a leader's thread: all leaders have returned by now */
    pthread_mutex_lock(&h.lock);
    while (h.callbacks < HERD / 2)
        pthread_cond_wait(&h.cond, &h.lock);
    pthread_mutex_unlock(&h.lock);
    assert_int_equal(h.wrong, 0);
    assert_int_equal(h.callbacks, HERD / 2);
    assert_int_equal(h.callbacks_ok, HERD / 2);
    assert_int_equal(h.blocking_ok, HERD / 2);
    for (int i = 1; i < HERD; i += 2)
        assert_int_equal(h.calls_per_slot[i], 1); /* exactly once */
    iam_client_stats s;
    iam_client_stats_get(c, &s);
    print_message("mixed herd: verifications %llu coalesced %llu hits %llu\n",
                  (unsigned long long)s.verifications, (unsigned long long)s.coalesced,
                  (unsigned long long)s.l1_hits);
    assert_int_equal(s.verifications, 1);
    assert_int_equal(s.coalesced + s.l1_hits, HERD - 1);
    pthread_barrier_destroy(&h.barrier);
    pthread_mutex_destroy(&h.lock);
    pthread_cond_destroy(&h.cond);
    free(tok);
    iam_client_free(c);
}

/* --------------------------------------------------- revocation race */

#define RACE_RESOLVERS 4
#ifdef IAM_SANITIZED
#define RACE_ROUNDS 20
#define USER_RACE_ROUNDS 300
#else
#define RACE_ROUNDS 150
#define USER_RACE_ROUNDS 3000
#endif

typedef struct race {
    iam_client *c;
    const char *_Atomic tok;
    pthread_barrier_t start, end;
    _Atomic int revoked, stop, quit;
    _Atomic uint64_t after_revoke, violations, unexpected, total;
    char sub[32];
} race;

static void *race_resolver(void *p)
{
    race *r = p;
    for (;;) {
        pthread_barrier_wait(&r->start);
        if (atomic_load(&r->quit))
            return NULL;
        const char *tok = atomic_load(&r->tok);
        size_t len = strlen(tok);
        while (!atomic_load(&r->stop)) {
            int was_revoked = atomic_load(&r->revoked); /* read before the call starts */
            iam_user *u = NULL;
            iam_status st = iam_client_resolve(r->c, tok, len, NULL, &u, NULL);
            atomic_fetch_add(&r->total, 1);
            if (st != IAM_OK && st != IAM_E_REVOKED)
                atomic_fetch_add(&r->unexpected, 1);
            if (st == IAM_OK && strcmp(iam_user_id(u), r->sub) != 0)
                atomic_fetch_add(&r->unexpected, 1);
            if (was_revoked) {
                atomic_fetch_add(&r->after_revoke, 1);
                if (st == IAM_OK)
                    atomic_fetch_add(&r->violations, 1);
            }
            iam_user_release(u);
        }
        pthread_barrier_wait(&r->end);
    }
}

static void run_revocation_race(bool cache_disabled, int rounds)
{
    race *r = calloc(1, sizeof *r);
    assert_non_null(r);
    iam_client_options o;
    base_opts(&o);
    o.cache_disabled = cache_disabled;
    r->c = client_ok(&o);
    snprintf(r->sub, sizeof r->sub, "race-user");
    pthread_barrier_init(&r->start, NULL, RACE_RESOLVERS + 1);
    pthread_barrier_init(&r->end, NULL, RACE_RESOLVERS + 1);
    pthread_t th[RACE_RESOLVERS];
    for (int i = 0; i < RACE_RESOLVERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_resolver, r), 0);
    iam_keyset *ks = iam_keyset_new();
    assert_int_equal(iam_keyset_add_hmac(ks, SECRET, strlen(SECRET), NULL, NULL), IAM_OK);
    for (int round = 0; round < rounds; round++) {
        /* a fresh token (its own jti) each round */
        char *tok = hs_token(r->sub, T0_S + 3600 + round, g_key);
        iam_user *u = NULL;
        assert_int_equal(iam_token_verify(tok, strlen(tok), ks, NULL, T0_S, &u, NULL), IAM_OK);
        char jti[128];
        snprintf(jti, sizeof jti, "%s", iam_user_jti(u));
        iam_user_release(u);
        atomic_store(&r->tok, tok);
        atomic_store(&r->revoked, 0);
        atomic_store(&r->stop, 0);
        atomic_store(&r->after_revoke, 0);
        pthread_barrier_wait(&r->start);
        /* churn while they resolve, so resolutions are in flight when the revoke lands */
        for (int k = 0; k < 20 + round % 17; k++) {
            switch (k % 3) {
            case 0: iam_client_invalidate_user(r->c, r->sub); break;
            case 1: iam_client_invalidate_token(r->c, tok, strlen(tok)); break;
            default: iam_client_invalidate_all(r->c);
            }
            if (k % 4 == 0)
                sched_yield();
        }
        iam_client_revoke_jti(r->c, jti);
        atomic_store(&r->revoked, 1); /* only after revoke_jti has returned */
        while (atomic_load(&r->after_revoke) < 4 * RACE_RESOLVERS)
            sched_yield();
        atomic_store(&r->stop, 1);
        pthread_barrier_wait(&r->end);
        /* and afterwards, from memory or not, the token stays refused */
        assert_int_equal(iam_client_resolve(r->c, tok, strlen(tok), NULL, &u, NULL), IAM_E_REVOKED);
        assert_null(u);
        free(tok);
    }
    atomic_store(&r->quit, 1);
    pthread_barrier_wait(&r->start);
    for (int i = 0; i < RACE_RESOLVERS; i++)
        pthread_join(th[i], NULL);
    iam_keyset_release(ks);
    print_message("revocation race (cache %s): %llu resolutions, %llu violations, %llu unexpected\n",
                  cache_disabled ? "disabled" : "enabled", (unsigned long long)atomic_load(&r->total),
                  (unsigned long long)atomic_load(&r->violations),
                  (unsigned long long)atomic_load(&r->unexpected));
    uint64_t violations = atomic_load(&r->violations), unexpected = atomic_load(&r->unexpected);
    pthread_barrier_destroy(&r->start);
    pthread_barrier_destroy(&r->end);
    iam_client_free(r->c);
    free(r);
    assert_int_equal(unexpected, 0);
    assert_int_equal(violations, 0);
}

static void test_revocation_race_cached(void **state)
{
    (void)state;
    run_revocation_race(false, RACE_ROUNDS);
}

static void test_revocation_race_uncached(void **state)
{
    (void)state;
    /* IAM_TEST_RACE_ROUNDS: more rounds for a longer hunt (default RACE_ROUNDS) */
    const char *env = getenv("IAM_TEST_RACE_ROUNDS");
    int rounds = env && atoi(env) > 0 ? atoi(env) : 30 * RACE_ROUNDS; /* the window is narrow */
    run_revocation_race(true, rounds);
}

/* invalidate_user racing resolutions of two users: user 3's answers are never disturbed,
 * and every answer is the right user. */
typedef struct inv_race {
    iam_client *c;
    char *t2, *t3;
    _Atomic int stop;
    _Atomic uint64_t wrong;
} inv_race;

static void *inv_resolver(void *p)
{
    inv_race *r = p;
    for (int i = 0; !atomic_load(&r->stop); i++) {
        const char *t = i % 2 ? r->t2 : r->t3;
        iam_user *u = NULL;
        iam_status st = iam_client_resolve(r->c, t, strlen(t), NULL, &u, NULL);
        if (st != IAM_OK || strcmp(iam_user_id(u), i % 2 ? "2" : "3") != 0)
            atomic_fetch_add(&r->wrong, 1);
        iam_user_release(u);
    }
    return NULL;
}

static void test_invalidate_user_race(void **state)
{
    (void)state;
    inv_race r = {0};
    iam_client_options o;
    base_opts(&o);
    r.c = client_ok(&o);
    r.t2 = hs_token("2", T0_S + 3600, g_key);
    r.t3 = hs_token("3", T0_S + 3600, g_key);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, inv_resolver, &r), 0);
    size_t removed = 0;
    for (int i = 0; i < USER_RACE_ROUNDS; i++) {
        removed += iam_client_invalidate_user(r.c, "2");
        if (i % 8 == 0)
            sched_yield();
    }
    atomic_store(&r.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&r.wrong), 0);
    /* quiet now: user 2 invalidated, user 3 still cached */
    iam_client_invalidate_user(r.c, "2");
    iam_client_stats s;
    iam_client_stats_get(r.c, &s);
    assert_int_equal(s.l1_entries, 1);
    iam_user *u = NULL;
    assert_int_equal(iam_client_resolve(r.c, r.t3, strlen(r.t3), NULL, &u, NULL), IAM_OK);
    assert_string_equal(iam_user_id(u), "3");
    iam_user_release(u);
    iam_client_stats s2;
    iam_client_stats_get(r.c, &s2);
    assert_int_equal(s2.l1_hits, s.l1_hits + 1);
    print_message("invalidate_user race: %zu entries removed\n", removed);
    free(r.t2);
    free(r.t3);
    iam_client_free(r.c);
}

#define T(f) cmocka_unit_test_setup(f, test_setup)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_mixed_load),
        T(test_coalescing_cache_enabled),
        T(test_coalescing_cache_disabled),
        T(test_coalescing_async_and_blocking),
        T(test_revocation_race_cached),
        T(test_revocation_race_uncached),
        T(test_invalidate_user_race),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
