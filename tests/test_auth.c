/*
 * test_auth.c — the auth-service tier end to end, through the client, against the test
 * auth service (tests/authsvc/authsvc.py, started on a free port by tests/support/authsvc.c):
 *
 *   - central mode: the service decides (user context identical to a local verification,
 *     identifiers as strings), refusals (valid:false, refresh tokens, expired tokens even
 *     when the service says valid, garbage never sent), answers cached;
 *   - local-first: RS256 keys fetched from the JWKS with no configuration, HS256 and RS256
 *     side by side, the validation fallback for a token no key can verify, an unknown kid
 *     after a refresh, key rotation picked up without restart, a kid flood costing one
 *     fetch, a failed refresh keeping the keys held, the background refresh with ETag;
 *   - coalescing: 1,000 concurrent first requests for 10 tokens cost at most 10 calls;
 *   - every failure mode (slow, error500, garbage, drop, hang, wrong shapes, not objects,
 *     huge, truncated, lie_valid, a refused connection): unavailable within the deadline,
 *     never a wrong answer, never cached; the circuit breaker opening and closing;
 *   - keep-alive; the Redis tier: one node's call serves another node; valid:false evicts.
 *
 * Time bounds are generous (a loaded 2-core machine): they catch hangs, not slowness.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "authsvc.h"
#include "iamclient.h"
#include "identity/peek.h"
#include "mint.h"
#include "net/auth.h"
#include "redis_server.h"

#define TIMEOUT_MS 1000       /* the clients' auth_timeout_ms in failure tests */
#define SLACK_MS 5000         /* what a loaded machine may add to a deadline */

static as_server *g_svc;

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

static int group_setup(void **state)
{
    (void)state;
    /* Requests to the loopback service must not go through a proxy from the environment. */
    unsetenv("http_proxy"), unsetenv("HTTP_PROXY"), unsetenv("https_proxy"), unsetenv("HTTPS_PROXY");
    unsetenv("all_proxy"), unsetenv("ALL_PROXY");
    g_svc = as_start(NULL);
    return g_svc ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    as_free(g_svc);
    return 0;
}

/* Every test starts with a well-behaved service and zeroed counters. */
static int test_setup(void **state)
{
    (void)state;
    assert_int_equal(as_mode(g_svc, "{\"mode\":\"normal\"}"), 0);
    assert_int_equal(as_reset_stats(g_svc), 0);
    return 0;
}

static void central_opts(iam_client_options *o, const char *url)
{
    iam_client_options_init(o);
    o->mode = IAM_MODE_CENTRAL;
    o->auth_url = url;
    o->auth_timeout_ms = TIMEOUT_MS;
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

static iam_client *central_client(void)
{
    iam_client_options o;
    central_opts(&o, as_url(g_svc));
    return client_ok(&o);
}

/* Resolves; the user (if any) is released unless out is given. */
static iam_status resolve(iam_client *c, const char *tok, iam_user **out, iam_error *e)
{
    iam_user *u = NULL;
    iam_error local = {0};
    iam_error *err = e ? e : &local;
    iam_status st = iam_client_resolve(c, tok, strlen(tok), NULL, &u, err);
    if (st == IAM_OK)
        assert_non_null(u);
    else
        assert_null(u), assert_int_equal(err->code, st), assert_null(strstr(err->message, tok));
    if (out)
        *out = u;
    else
        iam_user_release(u);
    return st;
}

static iam_client_stats stats(iam_client *c)
{
    iam_client_stats s;
    iam_client_stats_get(c, &s);
    return s;
}

static char *mint(const char *spec)
{
    char *t = as_mint(g_svc, spec);
    assert_non_null(t);
    return t;
}

/* ------------------------------------------------------------ central mode */

static void test_central_same_user_as_local(void **state)
{
    (void)state;
    iam_client *c = central_client();
    char *tok = mint("{\"user_id\":3}"); /* admin: org 1, team 11 */
    iam_user *u = NULL;
    assert_int_equal(resolve(c, tok, &u, NULL), IAM_OK);
    assert_string_equal(iam_user_id(u), "3");
    assert_string_equal(iam_user_org_id(u), "1");
    assert_string_equal(iam_user_team_id(u), "11");
    assert_string_equal(iam_user_team_role(u), "admin");
    assert_true(iam_user_has_role(u, "admin"));
    assert_true(iam_user_has_permission(u, "manage_all_orgs"));
    assert_string_equal(iam_user_token_type(u), "access");
    assert_non_null(iam_user_jti(u));
    assert_int_equal(iam_user_token_version(u), 2);

    /* The same token verified locally with the service's secret gives the same context. */
    iam_keyset *ks = iam_keyset_new();
    assert_int_equal(iam_keyset_add_hmac(ks, as_secret(), strlen(as_secret()), NULL, NULL), IAM_OK);
    iam_user *lu = NULL;
    assert_int_equal(iam_token_verify(tok, strlen(tok), ks, NULL, (int64_t)time(NULL), &lu, NULL), IAM_OK);
    char *a = iam_user_to_json(u), *b = iam_user_to_json(lu);
    assert_string_equal(a, b);
    iam_free(a), iam_free(b);
    iam_user_release(lu);
    iam_keyset_release(ks);
    iam_user_release(u);

    /* Answered from the cache afterwards: one call in all. */
    assert_int_equal(resolve(c, tok, NULL, NULL), IAM_OK);
    iam_client_stats s = stats(c);
    assert_int_equal(s.auth_calls, 1);
    assert_int_equal(s.auth_valid, 1);
    assert_int_equal(s.l1_hits, 1);
    assert_int_equal(as_stat(g_svc, "validate"), 1);
    /* No key is held and none is fetched in central mode. */
    assert_int_equal(s.jwks_fetches, 0);
    assert_int_equal(as_stat(g_svc, "jwks"), 0);
    char *json = iam_client_stats_json(c), *prom = iam_client_metrics_prometheus(c);
    assert_non_null(strstr(json, "\"auth\":{\"calls\":1,"));
    assert_non_null(strstr(prom, "iam_auth_calls_total 1"));
    assert_null(strstr(json, tok));
    iam_free(json), iam_free(prom);
    free(tok);
    iam_client_free(c);
}

static void test_central_service_identity(void **state)
{
    (void)state;
    iam_client *c = central_client();
    char *tok = mint("{\"service\":true}");
    iam_user *u = NULL;
    assert_int_equal(resolve(c, tok, &u, NULL), IAM_OK);
    assert_int_equal(iam_user_kind(u), IAM_PRINCIPAL_SERVICE);
    assert_null(iam_user_id(u));
    assert_string_equal(iam_user_client_id(u), "svc-pipeline");
    assert_string_equal(iam_user_org_id(u), "7");
    iam_user_release(u);
    free(tok);
    iam_client_free(c);
}

static void test_central_refusals(void **state)
{
    (void)state;
    iam_client *c = central_client();
    /* valid:false (another secret): a definite refusal, remembered. */
    char *forged = mint("{\"secret\":\"not-the-service-secret-0123456789abcdef\"}");
    assert_int_equal(resolve(c, forged, NULL, NULL), IAM_E_DENIED);
    assert_int_equal(resolve(c, forged, NULL, NULL), IAM_E_DENIED);
    assert_int_equal(as_stat(g_svc, "validate"), 1);
    assert_int_equal(stats(c).auth_denied, 1);
    assert_true(iam_status_is_rejection(IAM_E_DENIED));
    /* The service answers valid:true for a refresh token; the client refuses it. */
    char *refresh = mint("{\"type\":\"refresh\"}");
    assert_int_equal(resolve(c, refresh, NULL, NULL), IAM_E_WRONG_TYPE);
    assert_int_equal(as_stat(g_svc, "validate"), 2);
    /* Expired, with a lying service that says valid: still expired here. */
    assert_int_equal(as_mode(g_svc, "{\"mode\":\"lie_valid\"}"), 0);
    char *expired = mint("{\"claims\":{\"sub\":\"99\"},\"ttl\":-60}");
    assert_int_equal(resolve(c, expired, NULL, NULL), IAM_E_EXPIRED);
    /* The liar answering for another subject: not the contract, not cached. */
    char *other = mint("{\"user_id\":1}");
    assert_int_equal(resolve(c, other, NULL, NULL), IAM_E_UNAVAILABLE);
    assert_int_equal(as_mode(g_svc, "{\"mode\":\"normal\"}"), 0);
    iam_user *u = NULL;
    assert_int_equal(resolve(c, other, &u, NULL), IAM_OK);
    assert_string_equal(iam_user_id(u), "1");
    iam_user_release(u);
    /* What is not a token at all never reaches the service. */
    long long before = as_stat(g_svc, "validate");
    assert_int_equal(resolve(c, "not-a-token", NULL, NULL), IAM_E_MALFORMED);
    assert_int_equal(resolve(c, "a.b\"c.d", NULL, NULL), IAM_E_MALFORMED);
    assert_int_equal(as_stat(g_svc, "validate"), before);
    free(forged), free(refresh), free(expired), free(other);
    iam_client_free(c);
}

/* ------------------------------------------------------------ coalescing */

typedef struct counter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done, ok, other;
} counter;

static void count_cb(void *arg, iam_status st, iam_user *u, const iam_error *e)
{
    (void)e;
    counter *k = arg;
    iam_user_release(u);
    pthread_mutex_lock(&k->lock);
    k->done++;
    if (st == IAM_OK)
        k->ok++;
    else
        k->other++;
    pthread_cond_broadcast(&k->cond);
    pthread_mutex_unlock(&k->lock);
}

typedef struct burst {
    iam_client *c;
    char **tokens;
    counter *k;
    int from, n;
} burst;

static void *burst_main(void *arg)
{
    burst *b = arg;
    for (int i = b->from; i < b->from + b->n; i++) {
        const char *t = b->tokens[i % 10];
        assert_int_equal(iam_client_resolve_async(b->c, t, strlen(t), NULL, count_cb, b->k), IAM_OK);
    }
    return NULL;
}

static void test_coalescing_1000_requests_10_tokens(void **state)
{
    (void)state;
    iam_client *c = central_client();
    char *tokens[10];
    for (int i = 0; i < 10; i++)
        tokens[i] = mint(i % 2 ? "{\"user_id\":1}" : "{\"user_id\":2}");
    /* A slow service keeps every first call in flight while the burst arrives. */
    assert_int_equal(as_mode(g_svc, "{\"mode\":\"slow\",\"delay_ms\":300}"), 0);
    counter k = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    pthread_t th[4];
    burst b[4];
    for (int i = 0; i < 4; i++) {
        b[i] = (burst){c, tokens, &k, i * 250, 250};
        pthread_create(&th[i], NULL, burst_main, &b[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_lock(&k.lock);
    while (k.done < 1000)
        pthread_cond_wait(&k.cond, &k.lock);
    pthread_mutex_unlock(&k.lock);
    assert_int_equal(k.ok, 1000);
    assert_true(as_stat(g_svc, "validate") <= 10);
    assert_true(stats(c).auth_calls <= 10);
    for (int i = 0; i < 10; i++)
        free(tokens[i]);
    iam_client_free(c);
}

/* ------------------------------------------------------------ failure modes */

/* A fresh client (fresh breaker) and a fresh token per mode: unavailable within the
 * deadline, not cached (the same token is accepted once the service behaves). */
static void expect_unavailable(const char *mode_spec)
{
    iam_client *c = central_client();
    char *tok = mint("{}");
    assert_int_equal(as_mode(g_svc, mode_spec), 0);
    long long t0 = now_ms();
    iam_error e = {0};
    iam_status st = resolve(c, tok, NULL, &e);
    long long took = now_ms() - t0;
    if (st != IAM_E_UNAVAILABLE)
        fail_msg("mode %s: %s (%s)", mode_spec, iam_status_name(st), e.message);
    if (took > TIMEOUT_MS + SLACK_MS)
        fail_msg("mode %s: %lld ms", mode_spec, took);
    assert_int_equal(stats(c).auth_errors, 1);
    assert_int_equal(as_mode(g_svc, "{\"mode\":\"normal\"}"), 0); /* also releases a hang */
    assert_int_equal(resolve(c, tok, NULL, &e), IAM_OK);
    free(tok);
    iam_client_free(c);
}

static void test_failure_modes(void **state)
{
    (void)state;
    static const char *const modes[] = {
        "{\"mode\":\"slow\",\"delay_ms\":3000}",
        "{\"mode\":\"error500\"}",
        "{\"mode\":\"error500\",\"status\":503}",
        "{\"mode\":\"error500\",\"status\":404}",
        "{\"mode\":\"garbage\"}",
        "{\"mode\":\"drop\"}",
        "{\"mode\":\"hang\"}",
        "{\"mode\":\"wrong_shape\",\"variant\":\"valid_string\"}",
        "{\"mode\":\"wrong_shape\",\"variant\":\"missing_user_id\"}",
        "{\"mode\":\"wrong_shape\",\"variant\":\"missing_valid\"}",
        "{\"mode\":\"wrong_shape\",\"variant\":\"roles_not_list\"}",
        "{\"mode\":\"wrong_shape\",\"variant\":\"user_id_bool\"}",
        "{\"mode\":\"invalid_json_type\",\"variant\":\"array\"}",
        "{\"mode\":\"invalid_json_type\",\"variant\":\"string\"}",
        "{\"mode\":\"invalid_json_type\",\"variant\":\"null\"}",
        "{\"mode\":\"invalid_json_type\",\"variant\":\"true\"}",
        "{\"mode\":\"huge\",\"size\":200000}",
        "{\"mode\":\"truncated\"}",
        "{\"mode\":\"lie_valid\"}",
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        expect_unavailable(modes[i]);
}

static void test_connection_refused(void **state)
{
    (void)state;
    /* A port nobody listens on (the service's own port once it is gone is not reusable
     * safely; port 9, discard, is closed on a test machine). */
    iam_client_options o;
    central_opts(&o, "http://127.0.0.1:9");
    iam_client *c = client_ok(&o);
    char *tok = mint("{}");
    long long t0 = now_ms();
    assert_int_equal(resolve(c, tok, NULL, NULL), IAM_E_UNAVAILABLE);
    assert_true(now_ms() - t0 < TIMEOUT_MS + SLACK_MS);
    iam_client_stats s = stats(c);
    assert_int_equal(s.http_retries, 1); /* nothing was sent: retried once */
    assert_int_equal(s.auth_errors, 1);
    free(tok);
    iam_client_free(c);
}

static void test_breaker_opens_and_closes(void **state)
{
    (void)state;
    iam_client *c = central_client();
    assert_int_equal(as_mode(g_svc, "{\"mode\":\"error500\"}"), 0);
    char *toks[7];
    for (int i = 0; i < 7; i++)
        toks[i] = mint("{}");
    for (int i = 0; i < 5; i++)
        assert_int_equal(resolve(c, toks[i], NULL, NULL), IAM_E_UNAVAILABLE);
    assert_int_equal(as_stat(g_svc, "validate"), 5);
    iam_client_stats s = stats(c);
    assert_int_equal(s.auth_breaker_opened, 1);
    assert_int_equal(s.auth_breaker_state, 1);
    /* Open: refused at once, the service is not asked. */
    iam_error e = {0};
    long long t0 = now_ms();
    assert_int_equal(resolve(c, toks[5], NULL, &e), IAM_E_UNAVAILABLE);
    assert_true(now_ms() - t0 < 1000);
    assert_non_null(strstr(e.message, "circuit"));
    assert_int_equal(as_stat(g_svc, "validate"), 5);
    assert_int_equal(stats(c).auth_fast_failures, 1);
    /* The service recovers; after the cooldown one probe goes through and closes it. */
    assert_int_equal(as_mode(g_svc, "{\"mode\":\"normal\"}"), 0);
    sleep_ms(AUTH_BREAKER_COOLDOWN_MS + 300);
    assert_int_equal(resolve(c, toks[5], NULL, NULL), IAM_OK);
    assert_int_equal(resolve(c, toks[6], NULL, NULL), IAM_OK);
    s = stats(c);
    assert_int_equal(s.auth_breaker_state, 0);
    assert_int_equal(as_stat(g_svc, "validate"), 7);
    /* A failed probe opens it again. */
    assert_int_equal(as_mode(g_svc, "{\"mode\":\"error500\"}"), 0);
    for (int i = 0; i < 5; i++) {
        char *t = mint("{}");
        assert_int_equal(resolve(c, t, NULL, NULL), IAM_E_UNAVAILABLE);
        free(t);
    }
    assert_int_equal(stats(c).auth_breaker_opened, 2);
    sleep_ms(AUTH_BREAKER_COOLDOWN_MS + 300);
    char *t = mint("{}");
    assert_int_equal(resolve(c, t, NULL, NULL), IAM_E_UNAVAILABLE); /* the probe fails */
    assert_int_equal(stats(c).auth_breaker_opened, 3);
    assert_int_equal(stats(c).auth_breaker_state, 1);
    free(t);
    for (int i = 0; i < 7; i++)
        free(toks[i]);
    iam_client_free(c);
}

static void test_keep_alive(void **state)
{
    (void)state;
    iam_client *c = central_client();
    long long before = as_stat(g_svc, "connections");
    for (int i = 0; i < 20; i++) {
        char *t = mint("{}");
        assert_int_equal(resolve(c, t, NULL, NULL), IAM_OK);
        free(t);
    }
    /* The control requests above each open a connection of their own (one per mint, one
     * per stats); the client's 20 calls share one. */
    long long conns = as_stat(g_svc, "connections") - before;
    assert_true(conns <= 20 + 1 + 2);
    assert_int_equal(stats(c).auth_calls, 20);
    iam_client_free(c);
}

/* ------------------------------------------------------------ local-first, JWKS */

static iam_client *local_first(const char *secret, const char *jwks_url, bool with_auth)
{
    iam_client_options o;
    iam_client_options_init(&o);
    o.mode = IAM_MODE_LOCAL_FIRST;
    o.jwt_secret = secret;
    o.auth_url = with_auth ? as_url(g_svc) : NULL;
    o.jwks_url = jwks_url;
    o.auth_timeout_ms = 3000;
    return client_ok(&o);
}

static void test_rs256_without_configuration(void **state)
{
    (void)state;
    /* Holding only the HS256 secret, RS256 keys come from <auth_url>/.well-known/jwks.json:
     * both kinds of token verify here, with no validation call. */
    iam_client *c = local_first(as_secret(), NULL, true);
    char *rs = mint("{\"alg\":\"RS256\"}"), *hs = mint("{\"alg\":\"HS256\"}");
    iam_user *u = NULL;
    assert_int_equal(resolve(c, rs, &u, NULL), IAM_OK);
    assert_string_equal(iam_user_id(u), "2");
    iam_user_release(u);
    assert_int_equal(resolve(c, hs, NULL, NULL), IAM_OK);
    assert_int_equal(as_stat(g_svc, "validate"), 0);
    iam_client_stats s = stats(c);
    assert_true(s.jwks_updates >= 1);
    assert_true(s.keys_held >= 2);
    assert_int_equal(s.auth_calls, 0);
    free(rs), free(hs);
    iam_client_free(c);
}

static void test_fallback_no_key(void **state)
{
    (void)state;
    /* No JWKS to be had (its path answers 500): an RS256 token goes to the service. */
    assert_int_equal(as_mode(g_svc, "{\"mode\":\"error500\",\"paths\":[\"/.well-known/jwks.json\"]}"), 0);
    iam_client *c = local_first(as_secret(), NULL, true);
    char *rs = mint("{\"alg\":\"RS256\",\"user_id\":5}");
    iam_user *u = NULL;
    assert_int_equal(resolve(c, rs, &u, NULL), IAM_OK);
    assert_string_equal(iam_user_id(u), "5");
    assert_string_equal(iam_user_idp_org_id(u), "3");
    iam_user_release(u);
    assert_int_equal(as_stat(g_svc, "validate"), 1);
    iam_client_stats s = stats(c);
    assert_true(s.jwks_failures >= 1);
    assert_int_equal(s.auth_valid, 1);
    /* HS256 still verifies here, with no call. */
    char *hs = mint("{}");
    assert_int_equal(resolve(c, hs, NULL, NULL), IAM_OK);
    assert_int_equal(as_stat(g_svc, "validate"), 1);
    free(rs), free(hs);
    iam_client_free(c);
}

static void test_unknown_kid_after_refresh(void **state)
{
    (void)state;
    iam_client *c = local_first(NULL, NULL, true);
    char *good = mint("{\"alg\":\"RS256\"}");
    assert_int_equal(resolve(c, good, NULL, NULL), IAM_OK); /* waits for the first fetch */
    long long fetches = as_stat(g_svc, "jwks");
    /* Signed by a key the service never published: one refresh, then the service says no. */
    char *stranger = mint("{\"alg\":\"RS256\",\"unpublished_key\":true}");
    assert_int_equal(resolve(c, stranger, NULL, NULL), IAM_E_DENIED);
    assert_int_equal(as_stat(g_svc, "jwks"), fetches + 1);
    assert_int_equal(as_stat(g_svc, "validate"), 1);
    assert_int_equal(stats(c).kid_refreshes, 1);
    free(good), free(stranger);
    iam_client_free(c);
}

static void test_rotation_without_restart(void **state)
{
    (void)state;
    /* jwks_url alone (no validation fallback): keys are the only way to decide. */
    char jwks[128];
    snprintf(jwks, sizeof jwks, "%s/.well-known/jwks.json", as_url(g_svc));
    iam_client *c = local_first(NULL, jwks, false);
    char *before = mint("{\"alg\":\"RS256\"}");
    assert_int_equal(resolve(c, before, NULL, NULL), IAM_OK);
    assert_int_equal(as_rotate(g_svc, false), 0);
    char *after = mint("{\"alg\":\"RS256\"}"); /* the new key's kid */
    iam_error e = {0};
    iam_status st = resolve(c, after, NULL, &e);
    if (st != IAM_OK) {
        char *j = iam_client_stats_json(c);
        fail_msg("%s (%s) %s", iam_status_name(st), e.message, j);
    }
    iam_client_stats s = stats(c);
    assert_int_equal(s.kid_refreshes, 1);
    assert_true(s.jwks_updates >= 2);
    /* Old tokens still verify (the service still publishes the old key). */
    char *old2 = mint("{\"alg\":\"RS256\",\"ttl\":600}");
    assert_int_equal(resolve(c, old2, NULL, NULL), IAM_OK);
    free(before), free(after), free(old2);
    iam_client_free(c);
}

typedef struct flood {
    iam_client *c;
    char **tokens;
    int from, n;
    _Atomic int *unknown;
} flood;

static void *flood_main(void *arg)
{
    flood *f = arg;
    for (int i = f->from; i < f->from + f->n; i++) {
        iam_status st = resolve(f->c, f->tokens[i], NULL, NULL);
        if (st == IAM_E_UNKNOWN_KEY)
            atomic_fetch_add(f->unknown, 1);
    }
    return NULL;
}

static void test_kid_flood_one_fetch(void **state)
{
    (void)state;
    char jwks[128];
    snprintf(jwks, sizeof jwks, "%s/.well-known/jwks.json", as_url(g_svc));
    iam_client *c = local_first(NULL, jwks, false);
    char *good = mint("{\"alg\":\"RS256\"}");
    assert_int_equal(resolve(c, good, NULL, NULL), IAM_OK);
    long long fetches = as_stat(g_svc, "jwks");
    enum { N = 200 };
    char *tokens[N];
    for (int i = 0; i < N; i++) {
        char spec[96];
        snprintf(spec, sizeof spec, "{\"alg\":\"RS256\",\"kid\":\"%016x\"}", (unsigned)(i * 2654435761u));
        tokens[i] = mint(spec);
    }
    _Atomic int unknown = 0;
    pthread_t th[4];
    flood f[4];
    for (int i = 0; i < 4; i++) {
        f[i] = (flood){c, tokens, i * (N / 4), N / 4, &unknown};
        pthread_create(&th[i], NULL, flood_main, &f[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&unknown), N);
    assert_true(as_stat(g_svc, "jwks") <= fetches + 1);
    iam_client_stats s = stats(c);
    assert_true(s.kid_refreshes <= 1);
    assert_true(s.kid_refreshes_suppressed + s.kid_refreshes_coalesced >= N - 1);
    for (int i = 0; i < N; i++)
        free(tokens[i]);
    free(good);
    iam_client_free(c);
}

static void test_failed_refresh_keeps_keys(void **state)
{
    (void)state;
    char jwks[128];
    snprintf(jwks, sizeof jwks, "%s/.well-known/jwks.json", as_url(g_svc));
    iam_client *c = local_first(NULL, jwks, false);
    char *good = mint("{\"alg\":\"RS256\"}");
    assert_int_equal(resolve(c, good, NULL, NULL), IAM_OK);
    /* The JWKS breaks in every way; an unknown kid forces a refresh, which fails. */
    assert_int_equal(as_mode(g_svc, "{\"mode\":\"wrong_shape\",\"variant\":\"keys_not_list\"}"), 0);
    char *stranger = mint("{\"alg\":\"RS256\",\"kid\":\"0123456789abcdef\"}");
    assert_int_equal(resolve(c, stranger, NULL, NULL), IAM_E_UNKNOWN_KEY);
    iam_client_stats s = stats(c);
    assert_int_equal(s.jwks_failures, 1);
    /* The keys held still verify a fresh token of the current key. */
    char *fresh = mint("{\"alg\":\"RS256\",\"user_id\":4}");
    assert_int_equal(resolve(c, fresh, NULL, NULL), IAM_OK);
    assert_true(stats(c).keys_held >= 1);
    free(good), free(stranger), free(fresh);
    iam_client_free(c);
}

static void test_background_refresh_etag(void **state)
{
    (void)state;
    const char *args[] = {"--jwks-max-age", "1", NULL};
    as_server *svc = as_start(args);
    assert_non_null(svc);
    char jwks[128];
    snprintf(jwks, sizeof jwks, "%s/.well-known/jwks.json", as_url(svc));
    iam_client_options o;
    iam_client_options_init(&o);
    o.jwks_url = jwks;
    iam_client *c = client_ok(&o);
    /* max-age=1 is raised to IAM_JWKS_MIN_REFRESH_S; a refresh within twice that. */
    long long deadline = now_ms() + (IAM_JWKS_MIN_REFRESH_S * 2 + 5) * 1000;
    while (stats(c).jwks_not_modified < 1 && now_ms() < deadline)
        sleep_ms(100);
    iam_client_stats s = stats(c);
    assert_int_equal(s.jwks_updates, 1);
    assert_true(s.jwks_not_modified >= 1); /* a conditional GET, answered 304 */
    assert_true(as_stat(svc, "jwks_304") >= 1);
    assert_true(as_stat(svc, "jwks") <= 3); /* not more often than the bound */
    iam_client_free(c);
    as_free(svc);
}

/* ------------------------------------------------------------ Redis */

static void test_redis_one_node_serves_another(void **state)
{
    (void)state;
    rs_server *rs = rs_start(NULL);
    assert_non_null(rs);
    static const char CACHE_SECRET[] = "shared-cache-secret-for-auth-tests-0123456789";
    iam_client_options o;
    central_opts(&o, as_url(g_svc));
    o.redis_url = rs_url(rs);
    o.cache_secret = CACHE_SECRET;
    iam_client *a = client_ok(&o), *b = client_ok(&o);
    /* Wait until both are connected. */
    long long deadline = now_ms() + 10000;
    while ((!stats(a).redis_connected || !stats(b).redis_connected) && now_ms() < deadline)
        sleep_ms(20);
    char *tok = mint("{\"user_id\":1}");
    assert_int_equal(resolve(a, tok, NULL, NULL), IAM_OK);
    assert_int_equal(as_stat(g_svc, "validate"), 1);
    deadline = now_ms() + 5000; /* the record is written asynchronously */
    long n = 0;
    char **keys = NULL;
    while (now_ms() < deadline) {
        keys = rs_keys(rs, "iam:v1:cache:*", &n);
        if (n >= 1)
            break;
        rs_free_keys(keys, n);
        keys = NULL;
        sleep_ms(20);
    }
    assert_int_equal(n, 1);
    rs_free_keys(keys, n);
    iam_user *u = NULL;
    assert_int_equal(resolve(b, tok, &u, NULL), IAM_OK);
    assert_string_equal(iam_user_id(u), "1");
    assert_string_equal(iam_user_org_id(u), "7");
    iam_user_release(u);
    assert_int_equal(as_stat(g_svc, "validate"), 1); /* node b did not call */
    assert_int_equal(stats(b).redis_hits, 1);
    assert_int_equal(stats(b).auth_calls, 0);

    /* A refusal is never shared as a record. */
    assert_int_equal(as_mode(g_svc, "{\"mode\":\"deny_all\"}"), 0);
    char *tok2 = mint("{\"user_id\":2}");
    assert_int_equal(resolve(a, tok2, NULL, NULL), IAM_E_DENIED);
    sleep_ms(300);
    keys = rs_keys(rs, "iam:v1:cache:*", &n);
    rs_free_keys(keys, n);
    assert_int_equal(n, 1);
    free(tok), free(tok2);
    iam_client_free(a);
    iam_client_free(b);
    rs_free(rs);
}

/* Tokens decided after the first round trip (a rotated key's token, verified once its key
 * arrives, or answered by the service) are never accepted without their revocation check.
 * Regression: with Redis down, the record lookup failed, the service said valid, and the
 * token was accepted although its blacklist:jti could not be checked (the policy fails
 * closed). */
static void test_revoked_token_verified_after_key_fetch(void **state)
{
    (void)state;
    rs_server *rs = rs_start(NULL);
    assert_non_null(rs);
    iam_client_options o;
    iam_client_options_init(&o);
    o.mode = IAM_MODE_LOCAL_FIRST;
    o.jwt_secret = as_secret();
    o.auth_url = as_url(g_svc);
    o.auth_timeout_ms = 3000;
    o.redis_url = rs_url(rs);
    o.redis_timeout_ms = 3000;
    iam_client *c = client_ok(&o);
    /* the keys held first (so the next kid is unknown), then a rotation: the next token's
     * key arrives with a refresh, and the token is verified on the I/O thread */
    char *first = mint("{\"alg\":\"RS256\"}");
    assert_int_equal(resolve(c, first, NULL, NULL), IAM_OK);
    free(first);
    assert_int_equal(as_rotate(g_svc, false), 0);
    char *rs256 = mint("{\"alg\":\"RS256\"}");
    token_peek pk;
    assert_int_equal(token_peek_claims(rs256, strlen(rs256), &pk, NULL), IAM_OK);
    assert_true(pk.has_jti && strlen(pk.jti) >= 8);
    char key[sizeof IAM_REDIS_BLACKLIST_PREFIX + sizeof pk.jti];
    snprintf(key, sizeof key, "%s%s", IAM_REDIS_BLACKLIST_PREFIX, pk.jti);
    assert_int_equal(rs_set(rs, key, "1", 1, false), 0);
    assert_int_equal(resolve(c, rs256, NULL, NULL), IAM_E_REVOKED);
    assert_int_equal(resolve(c, rs256, NULL, NULL), IAM_E_REVOKED); /* and remembered */
    assert_int_equal(as_stat(g_svc, "validate"), 0);
    /* an unrevoked one is accepted the same way */
    char *other = mint("{\"alg\":\"RS256\"}");
    assert_int_equal(resolve(c, other, NULL, NULL), IAM_OK);
    /* Redis gone: the record lookup fails, the key refresh verifies the next rotated token on
     * the I/O thread, and its revocation check cannot be made — fail-closed, never accepted
     * unchecked (it was, for any jti of 8 bytes or more) */
    assert_int_equal(as_rotate(g_svc, false), 0);
    char *unchecked = mint("{\"alg\":\"RS256\"}");
    assert_int_equal(rs_stop(rs), 0);
    iam_error e = {0};
    iam_status st = resolve(c, unchecked, NULL, &e);
    if (st != IAM_E_UNAVAILABLE)
    {
        char *j = iam_client_stats_json(c);
        fail_msg("a token whose revocation could not be checked: %s (%s) %s", iam_status_name(st), e.message, j);
    }
    free(rs256), free(other), free(unchecked);
    iam_client_free(c);
    rs_free(rs);
}

/* ------------------------------------------------------------ protocol (no I/O) */

static char *unit_token(const char *claims)
{
    static const char K[] = "unit-test-secret-0123456789abcdefghijklmnop";
    mint_key *k = mint_key_hmac(K, strlen(K));
    char *t = mint_token("HS256", NULL, claims, k);
    mint_key_free(k);
    return t;
}

static iam_status map(const char *reply, const char *tok, iam_user **u, iam_error *e)
{
    return auth_reply_user(reply, strlen(reply), tok, strlen(tok), NULL, (int64_t)time(NULL), u, e);
}

static void test_reply_mapping(void **state)
{
    (void)state;
    char claims[512];
    snprintf(claims, sizeof claims,
             "{\"sub\":\"1\",\"type\":\"access\",\"jti\":\"j-1\",\"exp\":%lld,\"iss\":\"omnibioai-auth\","
             "\"aud\":\"omnibioai-platform\",\"token_version\":2,\"roles\":[\"from-token\"],\"x_custom\":[1,2]}",
             (long long)time(NULL) + 600);
    char *tok = unit_token(claims);
    iam_user *u = NULL;
    iam_error e = {0};
    /* The contract's example, with an unknown field and absent optional ones. */
    assert_int_equal(map("{\"valid\": true, \"user_id\": 1, \"email\": \"u@example.org\", "
                         "\"roles\": [\"researcher\"], \"org_id\": 7, \"team_id\": null, "
                         "\"schema_version\": 2, \"new_field\": {\"a\": 1}}", tok, &u, &e), IAM_OK);
    assert_string_equal(iam_user_id(u), "1");
    assert_string_equal(iam_user_org_id(u), "7");
    assert_null(iam_user_team_id(u));
    size_t n = 9;
    iam_user_permissions(u, &n);
    assert_int_equal(n, 0);                      /* absent list: empty */
    assert_true(iam_user_has_role(u, "researcher"));
    assert_false(iam_user_has_role(u, "from-token")); /* the service's view wins */
    assert_string_equal(iam_user_jti(u), "j-1");     /* the token's own claims */
    assert_int_equal(iam_user_token_version(u), 2);
    char *x = iam_user_claim_json(u, "x_custom");
    assert_string_equal(x, "[1,2]");
    iam_free(x);
    iam_user_release(u);
    /* valid:false is a refusal; everything else off-contract is unavailable. */
    assert_int_equal(map("{\"valid\":false}", tok, &u, &e), IAM_E_DENIED);
    static const char *const bad[] = {
        "", "[]", "null", "{\"valid\":\"true\"}", "{\"valid\":1,\"user_id\":1}", "{\"user_id\":1}",
        "{\"valid\":true}", "{\"valid\":true,\"user_id\":\"\"}", "{\"valid\":true,\"user_id\":1.5}",
        "{\"valid\":true,\"user_id\":-1}", "{\"valid\":true,\"user_id\":true}",
        "{\"valid\":true,\"user_id\":1,\"user_id\":1}",   /* duplicate member */
        "{\"valid\":true,\"valid\":false}",
        "{\"valid\":true,\"user_id\":99999999999999999999}",
        "{\"valid\":true,\"user_id\":1,\"roles\":\"admin\"}",
        "{\"valid\":true,\"user_id\":1,\"roles\":[1]}",
        "{\"valid\":true,\"user_id\":1,\"org_id\":[7]}",
        "{\"valid\":true,\"user_id\":1,\"email\":5}",
        "{\"valid\":true,\"user_id\":2}",                     /* another subject */
        "{\"valid\":true,\"user_id\":1} trailing",
        "<html>502</html>",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        iam_error be = {0};
        iam_status st = map(bad[i], tok, &u, &be);
        if (st != IAM_E_UNAVAILABLE)
            fail_msg("reply %zu: %s", i, iam_status_name(st));
        assert_null(u);
        assert_true(be.message[0] != '\0');
    }
    free(tok);
    /* A refresh token, an expired one: refused even though the service says valid. */
    snprintf(claims, sizeof claims, "{\"sub\":\"1\",\"type\":\"refresh\",\"exp\":%lld,"
             "\"iss\":\"omnibioai-auth\",\"aud\":\"omnibioai-platform\"}", (long long)time(NULL) + 600);
    tok = unit_token(claims);
    assert_int_equal(map("{\"valid\":true,\"user_id\":1}", tok, &u, &e), IAM_E_WRONG_TYPE);
    free(tok);
    snprintf(claims, sizeof claims, "{\"sub\":\"1\",\"type\":\"access\",\"exp\":%lld,"
             "\"iss\":\"omnibioai-auth\",\"aud\":\"omnibioai-platform\"}", (long long)time(NULL) - 600);
    tok = unit_token(claims);
    assert_int_equal(map("{\"valid\":true,\"user_id\":\"1\"}", tok, &u, &e), IAM_E_EXPIRED);
    free(tok);
    /* The request body escapes; bytes no JWS holds are refused. */
    size_t bl;
    bool oom;
    char *body = auth_validate_body("a.b.c", 5, &bl, &oom);
    assert_string_equal(body, "{\"token\":\"a.b.c\"}");
    free(body);
    assert_null(auth_validate_body("a.b c", 5, &bl, &oom));
    assert_false(oom);
    body = auth_validate_body("a\"b\\c", 5, &bl, &oom);
    assert_string_equal(body, "{\"token\":\"a\\\"b\\\\c\"}");
    free(body);
}

static void test_breaker_states(void **state)
{
    (void)state;
    auth_breaker b = {0};
    bool probe;
    for (int i = 0; i < AUTH_BREAKER_FAILURES - 1; i++) {
        assert_true(auth_breaker_allow(&b, 0, &probe));
        auth_breaker_record(&b, 0, false, probe);
    }
    assert_int_equal(b.state, BREAKER_CLOSED);
    assert_true(auth_breaker_allow(&b, 0, &probe));
    auth_breaker_record(&b, 0, true, probe); /* a success resets the count */
    for (int i = 0; i < AUTH_BREAKER_FAILURES; i++) {
        assert_true(auth_breaker_allow(&b, 10, &probe));
        auth_breaker_record(&b, 10, false, probe);
    }
    assert_int_equal(b.state, BREAKER_OPEN);
    assert_false(auth_breaker_allow(&b, 10 + AUTH_BREAKER_COOLDOWN_MS - 1, &probe));
    assert_true(auth_breaker_allow(&b, 10 + AUTH_BREAKER_COOLDOWN_MS, &probe));
    assert_true(probe);
    assert_false(auth_breaker_allow(&b, 10 + AUTH_BREAKER_COOLDOWN_MS, &probe)); /* one probe */
    auth_breaker_record(&b, 20 + AUTH_BREAKER_COOLDOWN_MS, false, true);
    assert_int_equal(b.state, BREAKER_OPEN);
    assert_int_equal(b.opened, 2);
    int64_t t = 20 + 2 * AUTH_BREAKER_COOLDOWN_MS;
    assert_true(auth_breaker_allow(&b, t, &probe));
    auth_breaker_record(&b, t, true, probe);
    assert_int_equal(b.state, BREAKER_CLOSED);
}

#define T(f) cmocka_unit_test_setup(f, test_setup)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_mapping),
        cmocka_unit_test(test_breaker_states),
        T(test_central_same_user_as_local),
        T(test_central_service_identity),
        T(test_central_refusals),
        T(test_coalescing_1000_requests_10_tokens),
        T(test_failure_modes),
        T(test_connection_refused),
        T(test_breaker_opens_and_closes),
        T(test_keep_alive),
        T(test_rs256_without_configuration),
        T(test_fallback_no_key),
        T(test_unknown_kid_after_refresh),
        T(test_rotation_without_restart),
        T(test_kid_flood_one_fetch),
        T(test_failed_refresh_keeps_keys),
        T(test_background_refresh_etag),
        T(test_redis_one_node_serves_another),
        T(test_revoked_token_verified_after_key_fetch),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
