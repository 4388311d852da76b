/*
 * test_client.c — the client: configuration errors, options from the environment, the L1
 * cache (hits, TTL bounded by exp and by max staleness, remembered refusals, size limit),
 * context separation (audience, tenant, clients), bounds and LRU eviction order,
 * invalidation and revocation, statistics (JSON, Prometheus) and the async entry point.
 *
 * Time is injected (iam_client_options.clock_ms reading a test-controlled atomic int64 of
 * milliseconds), so TTLs are tested without sleeping. Tokens: tests/support/mint.c.
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

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "cache/l1.h"
#include "iamclient.h"
#include "mint.h"

/* Whole seconds, so that exp (seconds) and the clock (milliseconds) line up exactly. */
#define T0_S INT64_C(1900000000)
#define T0 (T0_S * 1000)

static const char SECRET[] = "client-test-secret-0123456789abcdefghijklmnopqrstuvwxyz";
static const char OTHER_SECRET[] = "another-secret-for-a-second-client-0123456789abcdef";

static _Atomic int64_t g_clock;
static mint_key *g_key, *g_other_key;

static int64_t test_clock(void *ctx)
{
    return atomic_load((_Atomic int64_t *)ctx);
}

static void set_now(int64_t ms)
{
    atomic_store(&g_clock, ms);
}

static int group_setup(void **state)
{
    (void)state;
    g_key = mint_key_hmac(SECRET, strlen(SECRET));
    g_other_key = mint_key_hmac(OTHER_SECRET, strlen(OTHER_SECRET));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mint_key_free(g_key);
    mint_key_free(g_other_key);
    return 0;
}

static int test_setup(void **state)
{
    (void)state;
    set_now(T0);
    return 0;
}

/* Options for a working local-only client on the test clock. */
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
    assert_non_null(c);
    return c;
}

static iam_client *default_client(void)
{
    iam_client_options o;
    base_opts(&o);
    return client_ok(&o);
}

/* The platform's claims for `sub`, expiring exp_s, signed with key. Caller frees. */
static char *token_for(const char *sub, int64_t exp_s, const mint_key *key)
{
    char *claims = mint_platform_claims(sub, exp_s);
    char *t = mint_token("HS256", NULL, claims, key);
    free(claims);
    return t;
}

static char *valid_token(const char *sub)
{
    return token_for(sub, T0_S + 3600, g_key);
}

/* Resolves; on IAM_OK checks the user id (when expect_sub) and releases. */
static iam_status resolve(iam_client *c, const char *tok, const iam_resolve_options *ro,
                          const char *expect_sub)
{
    iam_user *u = (iam_user *)0x1;
    iam_error e = {0};
    iam_status st = iam_client_resolve(c, tok, strlen(tok), ro, &u, &e);
    if (st == IAM_OK) {
        assert_non_null(u);
        if (expect_sub)
            assert_string_equal(iam_user_id(u), expect_sub);
        iam_user_release(u);
    } else {
        assert_null(u);
        assert_int_equal(e.code, st);
        assert_true(e.message[0] != '\0');
        assert_null(strstr(e.message, tok)); /* never the token */
    }
    return st;
}

static iam_client_stats stats(iam_client *c)
{
    iam_client_stats s;
    iam_client_stats_get(c, &s);
    return s;
}

/* ------------------------------------------------------------ creation */

static void expect_config_error(const iam_client_options *o, const char *must_not_contain)
{
    iam_client *c = (iam_client *)0x1;
    iam_error e = {0};
    assert_int_equal(iam_client_new(o, &c, &e), IAM_E_CONFIG);
    assert_null(c);
    assert_int_equal(e.code, IAM_E_CONFIG);
    assert_true(strlen(e.message) > 10);
    assert_null(strstr(e.message, SECRET));
    if (must_not_contain)
        assert_null(strstr(e.message, must_not_contain));
}

static void test_new_no_key(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.jwt_secret = NULL;
    expect_config_error(&o, NULL);
    o.mode = IAM_MODE_LOCAL_FIRST;
    expect_config_error(&o, NULL);
}

static void test_new_short_secret(void **state)
{
    (void)state;
    static const char s31[] = "S3cr3t-of-31-bytes-QWERTYUIOPAS";
    assert_int_equal(strlen(s31), 31);
    iam_client_options o;
    base_opts(&o);
    o.jwt_secret = s31;
    expect_config_error(&o, s31);
    expect_config_error(&o, "S3cr3t"); /* not even a prefix */
}

static void test_new_bad_auth_url(void **state)
{
    (void)state;
    static const char *const bad[] = {"ftp://x", "http://", "http://a b", "", "https://:80/x",
                                      "http://a\tb"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        iam_client_options o;
        base_opts(&o);
        o.mode = IAM_MODE_LOCAL_FIRST;
        o.auth_url = bad[i];
        iam_client *c = NULL;
        iam_error e = {0};
        assert_int_equal(iam_client_new(&o, &c, &e), IAM_E_CONFIG);
        assert_null(c);
        assert_non_null(strstr(e.message, "auth_url"));
        assert_null(strstr(e.message, SECRET));
    }
    /* and a good one is accepted (a closed loopback port: its key fetch fails, quietly) */
    iam_client_options o;
    base_opts(&o);
    o.mode = IAM_MODE_LOCAL_FIRST;
    o.auth_url = "http://127.0.0.1:9/api";
    iam_client_free(client_ok(&o));
    /* local-only mode refuses any network setting */
    base_opts(&o);
    o.auth_url = "http://127.0.0.1:9/api";
    expect_config_error(&o, NULL);
    base_opts(&o);
    o.jwks_url = "http://127.0.0.1:9/jwks.json";
    expect_config_error(&o, NULL);
}

static void test_new_bad_redis_url(void **state)
{
    (void)state;
    static const char *const bad[] = {"http://localhost:6379", "redis:/x", "localhost:6379", "redis://",
                                      "redis://h:0", "redis://h:65536", "redis://h:12x", "redis://h/db",
                                      "redis://h/-1", "redis://[::1", "redis://h?db=1", "unix://relative",
                                      "unix:///s?db=x", "unix:///s?color=red", "redis://u:p%zz@h",
                                      "redis://user:@h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        iam_client_options o;
        base_opts(&o);
        o.mode = IAM_MODE_LOCAL_FIRST;
        o.redis_url = bad[i];
        iam_client *c = NULL;
        iam_error e = {0};
        assert_int_equal(iam_client_new(&o, &c, &e), IAM_E_CONFIG);
        assert_non_null(strstr(e.message, "redis_url"));
    }
    /* TLS: refused with the reason, and the URL (which may hold a password) never echoed */
    iam_client_options o;
    base_opts(&o);
    o.mode = IAM_MODE_LOCAL_FIRST;
    o.redis_url = "rediss://:hunter2-password@r.example.org";
    iam_client *c = NULL;
    iam_error e = {0};
    assert_int_equal(iam_client_new(&o, &c, &e), IAM_E_CONFIG);
    assert_non_null(strstr(e.message, "TLS"));
    assert_non_null(strstr(e.message, "hiredis"));
    assert_null(strstr(e.message, "hunter2"));
    /* local-only means no network */
    base_opts(&o);
    o.redis_url = "redis://localhost:6379";
    assert_int_equal(iam_client_new(&o, &c, &e), IAM_E_CONFIG);
    assert_non_null(strstr(e.message, "local-only"));
    /* no secret to key the shared cache with */
    base_opts(&o);
    o.mode = IAM_MODE_LOCAL_FIRST;
    o.jwt_secret = NULL;
    o.keys = NULL;
    o.pem_file = NULL;
    o.redis_url = "redis://localhost:6379";
    assert_int_equal(iam_client_new(&o, &c, &e), IAM_E_CONFIG);
    assert_non_null(strstr(e.message, "cache_secret"));
    base_opts(&o);
    o.mode = IAM_MODE_LOCAL_FIRST;
    o.redis_url = "redis://localhost:6379";
    o.cache_secret = "too-short";
    assert_int_equal(iam_client_new(&o, &c, &e), IAM_E_CONFIG);
    assert_non_null(strstr(e.message, "cache_secret"));
    /* Accepted (the connection is made in the background; nothing listens on port 1). */
    static const char *const good[] = {"redis://127.0.0.1:1/0", "redis://:pw%40x@127.0.0.1:1/3",
                                       "redis://user:pw@127.0.0.1:1", "redis://[::1]:1",
                                       "unix:///nonexistent/redis.sock?db=2&password=x"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        base_opts(&o);
        o.mode = IAM_MODE_LOCAL_FIRST;
        o.redis_url = good[i];
        iam_client_free(client_ok(&o));
    }
}

static void test_new_central_mode(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.mode = IAM_MODE_CENTRAL;
    expect_config_error(&o, NULL); /* the service decides: it must be named */
    o.auth_url = "http://127.0.0.1:9";
    iam_client_free(client_ok(&o));
    o.jwt_secret = NULL; /* no key is needed: compute nodes hold none */
    iam_client_free(client_ok(&o));
}

static void test_new_unreadable_jwks(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.jwt_secret = NULL;
    o.jwks_file = "/nonexistent/dir/jwks.json";
    expect_config_error(&o, NULL);
    o.jwt_secret = SECRET; /* a good secret does not excuse a bad file */
    expect_config_error(&o, NULL);
    o.jwks_file = NULL;
    o.pem_file = "/nonexistent/key.pem";
    expect_config_error(&o, NULL);
}

static void test_new_bad_leeway_and_ttls(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.leeway_s = -1;
    expect_config_error(&o, NULL);
    base_opts(&o);
    o.negative_ttl_s = -2;
    expect_config_error(&o, NULL);
    base_opts(&o);
    o.cache_ttl_s = -1;
    expect_config_error(&o, NULL);
}

static void test_new_null_args(void **state)
{
    (void)state;
    iam_client *c = NULL;
    assert_int_equal(iam_client_new(NULL, &c, NULL), IAM_E_INVALID_ARGUMENT);
    iam_client_options o;
    base_opts(&o);
    assert_int_equal(iam_client_new(&o, NULL, NULL), IAM_E_INVALID_ARGUMENT);
}

/* --------------------------------------------------------- environment */

static const char *const ENV_VARS[] = {"IAM_MODE", "IAM_JWT_SECRET", "IAM_JWKS_FILE", "IAM_PEM_FILE",
                                       "IAM_AUDIENCE", "IAM_ISSUER", "IAM_LEEWAY_S", "IAM_AUTH_URL",
                                       "IAM_JWKS_URL", "IAM_REDIS_URL", "IAM_CACHE_ENTRIES",
                                       "IAM_CACHE_BYTES", "IAM_CACHE_TTL_S", "IAM_NEGATIVE_TTL_S"};

static int env_clear(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof ENV_VARS / sizeof ENV_VARS[0]; i++)
        unsetenv(ENV_VARS[i]);
    set_now(T0);
    return 0;
}

static void test_env_fields(void **state)
{
    (void)state;
    setenv("IAM_JWT_SECRET", SECRET, 1);
    setenv("IAM_MODE", "local-only", 1);
    setenv("IAM_CACHE_ENTRIES", "5", 1);
    setenv("IAM_AUDIENCE", "env-audience", 1);
    iam_client_options o;
    iam_client_options_init(&o);
    iam_error e = {0};
    assert_int_equal(iam_client_options_from_env(&o, &e), IAM_OK);
    assert_int_equal(o.mode, IAM_MODE_LOCAL_ONLY);
    assert_string_equal(o.jwt_secret, SECRET);
    assert_int_equal(o.cache_max_entries, 5);
    assert_string_equal(o.audience, "env-audience");
    assert_null(o.jwks_file);
    assert_null(o.auth_url);

    /* the client built from it uses that audience */
    o.clock_ms = test_clock;
    o.clock_ctx = &g_clock;
    iam_client *c = client_ok(&o);
    char *tok = valid_token("2");
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_E_WRONG_AUDIENCE);
    iam_resolve_options ro = {.audience = "omnibioai-platform"};
    assert_int_equal(resolve(c, tok, &ro, "2"), IAM_OK);
    free(tok);
    iam_client_free(c);
}

static void test_env_bad_mode(void **state)
{
    (void)state;
    setenv("IAM_MODE", "centralXYZZY", 1);
    iam_client_options o;
    iam_client_options_init(&o);
    iam_error e = {0};
    assert_int_equal(iam_client_options_from_env(&o, &e), IAM_E_CONFIG);
    assert_int_equal(e.code, IAM_E_CONFIG);
    assert_non_null(strstr(e.message, "IAM_MODE"));
    assert_null(strstr(e.message, "XYZZY"));
}

static void test_env_bad_cache_entries(void **state)
{
    (void)state;
    setenv("IAM_CACHE_ENTRIES", "abc", 1);
    iam_client_options o;
    iam_client_options_init(&o);
    iam_error e = {0};
    assert_int_equal(iam_client_options_from_env(&o, &e), IAM_E_CONFIG);
    assert_non_null(strstr(e.message, "IAM_CACHE_ENTRIES"));
    assert_null(strstr(e.message, "abc"));
    static const char *const bad[] = {"0", "-5", "12Q", " 5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("IAM_CACHE_ENTRIES", bad[i], 1);
        assert_int_equal(iam_client_options_from_env(&o, &e), IAM_E_CONFIG);
        assert_non_null(strstr(e.message, "IAM_CACHE_ENTRIES"));
    }
}

static void test_env_bad_numbers_named(void **state)
{
    (void)state;
    static const char *const vars[] = {"IAM_LEEWAY_S", "IAM_CACHE_BYTES", "IAM_CACHE_TTL_S",
                                       "IAM_NEGATIVE_TTL_S"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        setenv(vars[i], "7x9QZ", 1);
        iam_client_options o;
        iam_client_options_init(&o);
        iam_error e = {0};
        assert_int_equal(iam_client_options_from_env(&o, &e), IAM_E_CONFIG);
        assert_non_null(strstr(e.message, vars[i]));
        assert_null(strstr(e.message, "7x9QZ"));
        unsetenv(vars[i]);
    }
}

static void test_env_secret_not_echoed(void **state)
{
    (void)state;
    static const char short_secret[] = "EnvSecretTooShort-abcdefghij";
    setenv("IAM_JWT_SECRET", short_secret, 1);
    iam_client_options o;
    iam_client_options_init(&o);
    iam_error e = {0};
    assert_int_equal(iam_client_options_from_env(&o, &e), IAM_OK);
    iam_client *c = NULL;
    assert_int_equal(iam_client_new(&o, &c, &e), IAM_E_CONFIG);
    assert_null(strstr(e.message, short_secret));
    assert_null(strstr(e.message, "EnvSecret"));
}

/* ------------------------------------------------------------- caching */

static void test_resolve_returns_user(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *tok = valid_token("2");
    iam_user *u = NULL;
    assert_int_equal(iam_client_resolve(c, tok, strlen(tok), NULL, &u, NULL), IAM_OK);
    assert_string_equal(iam_user_id(u), "2");
    assert_string_equal(iam_user_org_id(u), "7");
    assert_true(iam_user_has_role(u, "scientist"));
    assert_int_equal(iam_user_expires_at(u), T0_S + 3600);
    iam_user_release(u);
    iam_client_stats s = stats(c);
    assert_int_equal(s.verifications, 1);
    assert_int_equal(s.accepted, 1);
    assert_int_equal(s.l1_misses, 1);
    assert_int_equal(s.l1_hits, 0);
    assert_int_equal(s.l1_entries, 1);
    free(tok);
    iam_client_free(c);
}

static void test_second_resolve_is_hit(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *tok = valid_token("2");
    iam_user *u1 = NULL, *u2 = NULL;
    assert_int_equal(iam_client_resolve(c, tok, strlen(tok), NULL, &u1, NULL), IAM_OK);
    assert_int_equal(iam_client_resolve(c, tok, strlen(tok), NULL, &u2, NULL), IAM_OK);
    assert_ptr_equal(u1, u2); /* the cached context itself */
    iam_user_release(u1);
    iam_user_release(u2);
    iam_client_stats s = stats(c);
    assert_int_equal(s.l1_hits, 1);
    assert_int_equal(s.verifications, 1);
    free(tok);
    iam_client_free(c);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    iam_client *c = default_client();
    iam_user *u = (iam_user *)0x1;
    assert_int_equal(iam_client_resolve(c, NULL, 0, NULL, &u, NULL), IAM_E_INVALID_ARGUMENT);
    assert_null(u);
    assert_int_equal(iam_client_resolve(NULL, "x", 1, NULL, &u, NULL), IAM_E_INVALID_ARGUMENT);
    assert_int_equal(iam_client_resolve(c, "x", 1, NULL, NULL, NULL), IAM_E_INVALID_ARGUMENT);
    assert_int_equal(stats(c).verifications, 0);
    iam_client_free(c);
}

static void test_ttl_never_beyond_exp(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.cache_ttl_s = 300;
    iam_client *c = client_ok(&o);
    char *tok = token_for("2", T0_S + 60, g_key);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    set_now(T0 + 59900);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    iam_client_stats s = stats(c);
    assert_int_equal(s.l1_hits, 1);
    assert_int_equal(s.verifications, 1);
    set_now(T0 + 60000);
    assert_int_equal(resolve(c, tok, NULL, NULL), IAM_E_EXPIRED);
    s = stats(c);
    assert_int_equal(s.verifications, 2);
    assert_int_equal(s.l1_hits, 1);
    assert_int_equal(s.rejected[-IAM_E_EXPIRED], 1);
    free(tok);
    iam_client_free(c);
}

static void test_max_staleness(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.cache_ttl_s = 10;
    iam_client *c = client_ok(&o);
    char *tok = token_for("2", T0_S + 86400, g_key);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    set_now(T0 + 9999);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(stats(c).verifications, 1);
    set_now(T0 + 10000);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(stats(c).verifications, 2);
    /* the new entry counts its staleness from its own verification */
    set_now(T0 + 19999);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(stats(c).verifications, 2);
    set_now(T0 + 20000);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(stats(c).verifications, 3);
    free(tok);
    iam_client_free(c);
}

static void test_default_staleness_300s(void **state)
{
    (void)state;
    iam_client *c = default_client(); /* cache_ttl_s 0: the default, 300 s */
    char *tok = token_for("2", T0_S + 86400, g_key);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    set_now(T0 + 299999);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(stats(c).verifications, 1);
    set_now(T0 + 300000);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(stats(c).verifications, 2);
    free(tok);
    iam_client_free(c);
}

static void test_refusal_remembered(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *bad = token_for("2", T0_S + 3600, g_other_key);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    iam_client_stats s = stats(c);
    assert_int_equal(s.verifications, 1);
    assert_int_equal(s.l1_negative_hits, 1);
    assert_int_equal(s.l1_hits, 0);
    assert_int_equal(s.rejected[-IAM_E_BAD_SIGNATURE], 1);
    free(bad);
    iam_client_free(c);
}

static void test_refusal_expires(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.negative_ttl_s = 5;
    iam_client *c = client_ok(&o);
    char *bad = token_for("2", T0_S + 3600, g_other_key);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    set_now(T0 + 4999);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    assert_int_equal(stats(c).verifications, 1);
    set_now(T0 + 5000);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    iam_client_stats s = stats(c);
    assert_int_equal(s.verifications, 2);
    assert_int_equal(s.l1_negative_hits, 1);
    free(bad);
    iam_client_free(c);
}

static void test_refusal_default_ttl_10s(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *bad = token_for("2", T0_S + 3600, g_other_key);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    set_now(T0 + 9999);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    assert_int_equal(stats(c).verifications, 1);
    set_now(T0 + 10000);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    assert_int_equal(stats(c).verifications, 2);
    free(bad);
    iam_client_free(c);
}

/* iam_client_cached answers from the cache only: never verifies. */
static void test_cached_only(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *t = valid_token("41");
    char *bad = token_for("42", T0_S + 3600, g_other_key);
    iam_user *u = (iam_user *)0x1;
    iam_error e = {0};
    assert_int_equal(iam_client_cached(c, t, strlen(t), NULL, &u, &e), IAM_E_NOT_CACHED);
    assert_null(u);
    assert_int_equal(stats(c).verifications, 0); /* nothing was verified */
    assert_int_equal(resolve(c, t, NULL, "41"), IAM_OK);
    assert_int_equal(iam_client_cached(c, t, strlen(t), NULL, &u, &e), IAM_OK);
    assert_string_equal(iam_user_id(u), "41");
    iam_user_release(u);
    /* another context (tenant) is another entry */
    iam_resolve_options ro = {.required_org = "7"};
    assert_int_equal(iam_client_cached(c, t, strlen(t), &ro, &u, &e), IAM_E_NOT_CACHED);
    /* a remembered refusal is answered as that refusal */
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    assert_int_equal(iam_client_cached(c, bad, strlen(bad), NULL, &u, &e), IAM_E_BAD_SIGNATURE);
    assert_null(u);
    /* expiry is checked */
    set_now((T0_S + 3600) * 1000);
    assert_int_equal(iam_client_cached(c, t, strlen(t), NULL, &u, &e), IAM_E_NOT_CACHED);
    assert_int_equal(stats(c).verifications, 2);
    assert_int_equal(iam_client_cached(c, t, IAM_MAX_TOKEN_BYTES + 1, NULL, &u, &e), IAM_E_TOO_LARGE);
    assert_int_equal(iam_client_cached(NULL, t, strlen(t), NULL, &u, &e), IAM_E_INVALID_ARGUMENT);
    free(t);
    free(bad);
    iam_client_free(c);
}

static void test_negative_disabled(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.negative_ttl_s = -1;
    iam_client *c = client_ok(&o);
    char *bad = token_for("2", T0_S + 3600, g_other_key);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    iam_client_stats s = stats(c);
    assert_int_equal(s.verifications, 2);
    assert_int_equal(s.l1_negative_hits, 0);
    assert_int_equal(s.l1_entries, 0);
    /* positive entries still cached */
    char *tok = valid_token("2");
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(stats(c).l1_hits, 1);
    free(tok);
    free(bad);
    iam_client_free(c);
}

static void test_not_yet_valid_not_remembered(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char claims[512];
    snprintf(claims, sizeof claims,
             "{\"sub\":\"5\",\"exp\":%lld,\"nbf\":%lld,\"type\":\"access\",\"iss\":\"omnibioai-auth\","
             "\"aud\":\"omnibioai-platform\",\"jti\":\"nyv-1\"}",
             (long long)(T0_S + 3600), (long long)(T0_S + 100));
    char *tok = mint_token("HS256", NULL, claims, g_key);
    assert_int_equal(resolve(c, tok, NULL, NULL), IAM_E_NOT_YET_VALID);
    assert_int_equal(resolve(c, tok, NULL, NULL), IAM_E_NOT_YET_VALID);
    iam_client_stats s = stats(c);
    assert_int_equal(s.verifications, 2);
    assert_int_equal(s.l1_negative_hits, 0);
    /* once valid, accepted at once (no remembered refusal in the way) */
    set_now(T0 + 100000);
    assert_int_equal(resolve(c, tok, NULL, "5"), IAM_OK);
    assert_int_equal(stats(c).verifications, 3);
    free(tok);
    iam_client_free(c);
}

static void test_expired_refusal_remembered(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *tok = token_for("2", T0_S - 1, g_key);
    assert_int_equal(resolve(c, tok, NULL, NULL), IAM_E_EXPIRED);
    assert_int_equal(resolve(c, tok, NULL, NULL), IAM_E_EXPIRED);
    assert_int_equal(stats(c).verifications, 1);
    assert_int_equal(stats(c).l1_negative_hits, 1);
    free(tok);
    iam_client_free(c);
}

static void test_too_large_without_verification(void **state)
{
    (void)state;
    iam_client *c = default_client();
    size_t n = IAM_MAX_TOKEN_BYTES + 1;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'a', n);
    big[n] = '\0';
    iam_user *u = (iam_user *)0x1;
    iam_error e = {0};
    assert_int_equal(iam_client_resolve(c, big, n, NULL, &u, &e), IAM_E_TOO_LARGE);
    assert_null(u);
    assert_int_equal(e.code, IAM_E_TOO_LARGE);
    assert_int_equal(iam_client_resolve(c, big, n, NULL, &u, &e), IAM_E_TOO_LARGE);
    iam_client_stats s = stats(c);
    assert_int_equal(s.verifications, 0);
    assert_int_equal(s.l1_entries, 0);
    assert_int_equal(s.l1_misses, 0);
    assert_int_equal(s.rejected[-IAM_E_TOO_LARGE], 2);
    free(big);
    iam_client_free(c);
}

/* -------------------------------------------------- context separation */

static void test_audience_context_default_first(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *tok = valid_token("2");
    iam_resolve_options other = {.audience = "other-aud"};
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, tok, &other, NULL), IAM_E_WRONG_AUDIENCE);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, tok, &other, NULL), IAM_E_WRONG_AUDIENCE);
    iam_client_stats s = stats(c);
    assert_int_equal(s.verifications, 2);
    assert_int_equal(s.l1_hits, 1);
    assert_int_equal(s.l1_negative_hits, 1);
    free(tok);
    iam_client_free(c);
}

static void test_audience_context_other_first(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *tok = valid_token("2");
    iam_resolve_options other = {.audience = "other-aud"};
    assert_int_equal(resolve(c, tok, &other, NULL), IAM_E_WRONG_AUDIENCE);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, tok, &other, NULL), IAM_E_WRONG_AUDIENCE);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    iam_client_stats s = stats(c);
    assert_int_equal(s.verifications, 2);
    assert_int_equal(s.l1_hits, 1);
    assert_int_equal(s.l1_negative_hits, 1);
    free(tok);
    iam_client_free(c);
}

static void test_audience_override_accepts(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.audience = "svc-a";
    iam_client *c = client_ok(&o);
    char *tok = valid_token("2"); /* aud omnibioai-platform */
    iam_resolve_options plat = {.audience = "omnibioai-platform"};
    assert_int_equal(resolve(c, tok, NULL, NULL), IAM_E_WRONG_AUDIENCE);
    assert_int_equal(resolve(c, tok, &plat, "2"), IAM_OK);
    assert_int_equal(resolve(c, tok, NULL, NULL), IAM_E_WRONG_AUDIENCE);
    free(tok);
    iam_client_free(c);
}

static void test_tenant_accept_then_refuse(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *tok = valid_token("2");
    iam_resolve_options org7 = {.required_org = "7"}, org9 = {.required_org = "9"};
    assert_int_equal(resolve(c, tok, &org7, "2"), IAM_OK);
    assert_int_equal(resolve(c, tok, &org9, NULL), IAM_E_WRONG_TENANT);
    assert_int_equal(resolve(c, tok, &org7, "2"), IAM_OK);
    assert_int_equal(resolve(c, tok, &org9, NULL), IAM_E_WRONG_TENANT);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    iam_client_stats s = stats(c);
    assert_int_equal(s.verifications, 3);
    assert_int_equal(s.rejected[-IAM_E_WRONG_TENANT], 1);
    free(tok);
    iam_client_free(c);
}

static void test_tenant_refuse_then_accept(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *tok = valid_token("2");
    iam_resolve_options org7 = {.required_org = "7"}, org9 = {.required_org = "9"};
    assert_int_equal(resolve(c, tok, &org9, NULL), IAM_E_WRONG_TENANT);
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, tok, &org7, "2"), IAM_OK);
    assert_int_equal(resolve(c, tok, &org9, NULL), IAM_E_WRONG_TENANT);
    assert_int_equal(stats(c).l1_negative_hits, 1);
    free(tok);
    iam_client_free(c);
}

/*
 * An empty required_org names no organisation the user belongs to, so it must be refused
 * like any other foreign org, and kept apart from the default context (no required_org).
 */
static void test_tenant_empty_org_refusal_not_in_default_context(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *tok = valid_token("2");
    iam_resolve_options empty = {.required_org = ""};
    assert_int_equal(resolve(c, tok, &empty, NULL), IAM_E_WRONG_TENANT); /* uncached: refused */
    /* the default context must not be refused because of it */
    iam_status st = resolve(c, tok, NULL, "2");
    free(tok);
    iam_client_free(c);
    assert_int_equal(st, IAM_OK);
}

static void test_tenant_empty_org_not_answered_from_default_context(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *tok = valid_token("2");
    iam_resolve_options empty = {.required_org = ""};
    assert_int_equal(resolve(c, tok, NULL, "2"), IAM_OK); /* cached in the default context */
    iam_status st = resolve(c, tok, &empty, NULL);       /* must not be a hit of that entry */
    free(tok);
    iam_client_free(c);
    assert_int_equal(st, IAM_E_WRONG_TENANT);
}

/* The same for an empty audience override: it names no audience of the token. */
static void test_empty_audience_kept_apart_from_default_context(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *tok = valid_token("2");
    iam_resolve_options empty = {.audience = ""};
    iam_status first = resolve(c, tok, &empty, NULL);
    iam_status second = resolve(c, tok, NULL, "2");
    iam_client_free(c);
    c = default_client();
    iam_status third = resolve(c, tok, NULL, "2");
    iam_status fourth = resolve(c, tok, &empty, NULL);
    free(tok);
    iam_client_free(c);
    assert_int_equal(first, IAM_E_WRONG_AUDIENCE);
    assert_int_equal(third, IAM_OK);
    assert_int_equal(second, IAM_OK);               /* not refused from the "" context */
    assert_int_equal(fourth, IAM_E_WRONG_AUDIENCE); /* not a hit of the default entry */
}

static void test_two_clients_share_nothing(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    iam_client *a = client_ok(&o);
    o.jwt_secret = OTHER_SECRET;
    iam_client *b = client_ok(&o);
    char *ta = valid_token("2");
    char *tb = token_for("3", T0_S + 3600, g_other_key);
    assert_int_equal(resolve(a, ta, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(b, ta, NULL, NULL), IAM_E_BAD_SIGNATURE);
    assert_int_equal(resolve(b, tb, NULL, "3"), IAM_OK);
    assert_int_equal(resolve(a, tb, NULL, NULL), IAM_E_BAD_SIGNATURE);
    assert_int_equal(resolve(a, ta, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(b, ta, NULL, NULL), IAM_E_BAD_SIGNATURE);
    iam_client_stats sa = stats(a), sb = stats(b);
    assert_int_equal(sa.verifications, 2);
    assert_int_equal(sb.verifications, 2);
    assert_int_equal(sa.l1_hits, 1);
    assert_int_equal(sb.l1_hits, 0);
    assert_int_equal(sb.l1_negative_hits, 1);
    /* invalidating one leaves the other alone */
    iam_client_invalidate_all(a);
    assert_int_equal(stats(a).l1_entries, 0);
    assert_int_equal(stats(b).l1_entries, 2);
    free(ta);
    free(tb);
    iam_client_free(a);
    iam_client_free(b);
}

/* ---------------------------------------------------------- bounds */

static void test_entries_bounded(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.cache_max_entries = 64; /* a cache-wide bound */
    iam_client *c = client_ok(&o);
    for (int i = 0; i < 1000; i++) {
        char sub[16];
        snprintf(sub, sizeof sub, "%d", 1000 + i);
        char *t = valid_token(sub);
        assert_int_equal(resolve(c, t, NULL, sub), IAM_OK);
        free(t);
    }
    iam_client_stats s = stats(c);
    assert_true(s.l1_entries <= 64);
    assert_true(s.l1_entries >= 60); /* eviction keeps the cache full, not frozen */
    assert_true(s.l1_evictions_capacity > 0);
    assert_int_equal(s.l1_entries + s.l1_evictions_capacity, 1000);
    assert_int_equal(s.verifications, 1000);
    iam_client_free(c);
}

static void test_bytes_bounded(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.cache_max_bytes = 64;
    iam_client *c = client_ok(&o);
    char *bad = token_for("1", T0_S + 3600, g_other_key);
    for (int i = 0; i < 50; i++) {
        char sub[16];
        snprintf(sub, sizeof sub, "%d", i);
        char *t = valid_token(sub);
        assert_int_equal(resolve(c, t, NULL, sub), IAM_OK);
        assert_int_equal(resolve(c, t, NULL, sub), IAM_OK);
        free(t);
        assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    }
    iam_client_stats s = stats(c);
    assert_int_equal(s.l1_entries, 0);
    assert_int_equal(s.l1_bytes, 0);
    assert_int_equal(s.verifications, 150);
    assert_int_equal(s.accepted, 100);
    free(bad);
    iam_client_free(c);
}

static void test_cache_disabled(void **state)
{
    (void)state;
    iam_client_options o;
    base_opts(&o);
    o.cache_disabled = true;
    iam_client *c = client_ok(&o);
    char *t = valid_token("2");
    for (int i = 0; i < 3; i++)
        assert_int_equal(resolve(c, t, NULL, "2"), IAM_OK);
    iam_client_stats s = stats(c);
    assert_int_equal(s.verifications, 3);
    assert_int_equal(s.l1_hits, 0);
    assert_int_equal(s.l1_entries, 0);
    free(t);
    iam_client_free(c);
}

/* L1 directly, with hand-chosen hashes: shard = top 6 bits, so 1, 2, 3 share shard 0. */

static void l1_put_refusal(l1_cache *c, uint64_t hash, const char *tok, iam_status why, int64_t exp)
{
    l1_flight f;
    iam_user *u = NULL;
    iam_status r = IAM_OK;
    assert_int_equal(l1_lookup(c, hash, 1, tok, strlen(tok), 0, true, NULL, &f, &u, &r), L1_LEAD);
    assert_null(l1_finish(c, &f, true, NULL, why, exp, NULL, NULL));
}

/* L1_REFUSED (touching the entry) or L1_LEAD (finished at once without storing). */
static l1_outcome l1_probe(l1_cache *c, uint64_t hash, const char *tok, int64_t now, iam_status *why)
{
    l1_flight f;
    iam_user *u = NULL;
    *why = IAM_OK;
    l1_outcome r = l1_lookup(c, hash, 1, tok, strlen(tok), now, true, NULL, &f, &u, why);
    if (r == L1_LEAD)
        assert_null(l1_finish(c, &f, false, NULL, IAM_OK, 0, NULL, NULL));
    return r;
}

static void test_l1_lru_order_touched_survives(void **state)
{
    (void)state;
    l1_cache c;
    assert_int_equal(l1_init(&c, 2, SIZE_MAX / 2, 42), IAM_OK); /* 2 entries in all */
    iam_status why;
    l1_put_refusal(&c, 1, "tok-A", IAM_E_EXPIRED, 1000);
    l1_put_refusal(&c, 2, "tok-B", IAM_E_BAD_SIGNATURE, 1000);
    assert_int_equal(l1_probe(&c, 1, "tok-A", 0, &why), L1_REFUSED); /* A most recent */
    assert_int_equal(why, IAM_E_EXPIRED);
    l1_put_refusal(&c, 3, "tok-C", IAM_E_WRONG_ISSUER, 1000);        /* evicts B */
    assert_int_equal(l1_probe(&c, 1, "tok-A", 0, &why), L1_REFUSED);
    assert_int_equal(why, IAM_E_EXPIRED);
    assert_int_equal(l1_probe(&c, 3, "tok-C", 0, &why), L1_REFUSED);
    assert_int_equal(why, IAM_E_WRONG_ISSUER);
    assert_int_equal(l1_probe(&c, 2, "tok-B", 0, &why), L1_LEAD);
    iam_client_stats s = {0};
    l1_stats(&c, &s);
    assert_int_equal(s.l1_entries, 2);
    assert_int_equal(s.l1_evictions_capacity, 1);
    l1_destroy(&c);
}

static void test_l1_lru_order_untouched_evicted(void **state)
{
    (void)state;
    l1_cache c;
    assert_int_equal(l1_init(&c, 2, SIZE_MAX / 2, 42), IAM_OK); /* 2 entries in all */
    iam_status why;
    l1_put_refusal(&c, 1, "tok-A", IAM_E_EXPIRED, 1000);
    l1_put_refusal(&c, 2, "tok-B", IAM_E_BAD_SIGNATURE, 1000);
    assert_int_equal(l1_probe(&c, 2, "tok-B", 0, &why), L1_REFUSED); /* B referenced */
    l1_put_refusal(&c, 3, "tok-C", IAM_E_WRONG_ISSUER, 1000);        /* evicts A */
    assert_int_equal(l1_probe(&c, 1, "tok-A", 0, &why), L1_LEAD);
    assert_int_equal(l1_probe(&c, 2, "tok-B", 0, &why), L1_REFUSED);
    assert_int_equal(l1_probe(&c, 3, "tok-C", 0, &why), L1_REFUSED);
    /* The bound is cache-wide: an insert in another shard evicts here. B and C were both
     * hit since, so both get their second chance once and the older one, B, goes. */
    uint64_t other = (uint64_t)5 << 40; /* shard_of in l1.c: shard = (hash >> 40) & (nshards - 1) */
    l1_put_refusal(&c, other, "tok-D", IAM_E_REVOKED, 1000);
    assert_int_equal(l1_probe(&c, other, "tok-D", 0, &why), L1_REFUSED);
    iam_client_stats s = {0};
    l1_stats(&c, &s);
    assert_int_equal(s.l1_entries, 2);
    assert_int_equal(s.l1_evictions_capacity, 2);
    l1_destroy(&c);
}

static void test_l1_same_hash_different_token(void **state)
{
    (void)state;
    l1_cache c;
    assert_int_equal(l1_init(&c, 1000, SIZE_MAX / 2, 42), IAM_OK);
    iam_status why;
    l1_put_refusal(&c, 7, "tok-X", IAM_E_EXPIRED, 1000);
    assert_int_equal(l1_probe(&c, 7, "tok-Y", 0, &why), L1_LEAD); /* collision is no answer */
    assert_int_equal(l1_probe(&c, 7, "tok-X", 0, &why), L1_REFUSED);
    /* other context, same bytes: no answer */
    l1_flight f;
    iam_user *u = NULL;
    assert_int_equal(l1_lookup(&c, 7, 2, "tok-X", 5, 0, true, NULL, &f, &u, &why), L1_LEAD);
    assert_null(l1_finish(&c, &f, false, NULL, IAM_OK, 0, NULL, NULL));
    l1_destroy(&c);
}

static void test_l1_expiry_and_flights(void **state)
{
    (void)state;
    l1_cache c;
    assert_int_equal(l1_init(&c, 1000, SIZE_MAX / 2, 42), IAM_OK);
    iam_status why;
    l1_put_refusal(&c, 9, "tok-E", IAM_E_EXPIRED, 500);
    assert_int_equal(l1_probe(&c, 9, "tok-E", 499, &why), L1_REFUSED);
    /* at expiry: a miss, and the caller leads; a second request joins or is busy */
    l1_flight f;
    iam_user *u = NULL;
    assert_int_equal(l1_lookup(&c, 9, 1, "tok-E", 5, 500, true, NULL, &f, &u, &why), L1_LEAD);
    l1_flight f2;
    assert_int_equal(l1_lookup(&c, 9, 1, "tok-E", 5, 500, true, NULL, &f2, &u, &why), L1_BUSY);
    l1_waiter w = {0};
    assert_int_equal(l1_lookup(&c, 9, 1, "tok-E", 5, 500, true, &w, &f2, &u, &why), L1_JOINED);
    /* the leader's answer is stored and the joined waiter handed back */
    l1_waiter *back = l1_finish(&c, &f, true, NULL, IAM_E_BAD_SIGNATURE, 10000, NULL, NULL);
    assert_ptr_equal(back, &w);
    assert_int_equal(l1_probe(&c, 9, "tok-E", 600, &why), L1_REFUSED);
    assert_int_equal(why, IAM_E_BAD_SIGNATURE);
    iam_client_stats s = {0};
    l1_stats(&c, &s);
    assert_int_equal(s.coalesced, 1);
    assert_int_equal(s.l1_evictions_expired, 1);
    assert_int_equal(s.l1_entries, 1);
    l1_destroy(&c);
}

static bool veto_yes(void *arg)
{
    (void)arg;
    return true;
}

static void test_l1_veto(void **state)
{
    (void)state;
    l1_cache c;
    assert_int_equal(l1_init(&c, 1000, SIZE_MAX / 2, 42), IAM_OK);
    l1_flight f;
    iam_user *u = NULL;
    iam_status why;
    assert_int_equal(l1_lookup(&c, 11, 1, "tok-V", 5, 0, true, NULL, &f, &u, &why), L1_LEAD);
    assert_null(l1_finish(&c, &f, true, NULL, IAM_E_EXPIRED, 1000, veto_yes, NULL));
    assert_int_equal(l1_probe(&c, 11, "tok-V", 0, &why), L1_LEAD);
    l1_destroy(&c);
}

/* ------------------------------------------------------- invalidation */

static void test_invalidate_token(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *t = valid_token("2");
    iam_resolve_options org7 = {.required_org = "7"};
    assert_int_equal(resolve(c, t, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, t, &org7, "2"), IAM_OK);
    assert_int_equal(iam_client_invalidate_token(c, t, strlen(t)), 2); /* every context */
    assert_int_equal(stats(c).l1_entries, 0);
    assert_int_equal(resolve(c, t, NULL, "2"), IAM_OK);
    iam_client_stats s = stats(c);
    assert_int_equal(s.verifications, 3);
    assert_int_equal(s.l1_hits, 0);
    assert_int_equal(s.l1_evictions_invalidated, 2);
    assert_int_equal(iam_client_invalidate_token(c, "nope", 4), 0);
    free(t);
    iam_client_free(c);
}

static void test_invalidate_user(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *t2 = valid_token("2"), *t2b = token_for("2", T0_S + 7200, g_key), *t3 = valid_token("3");
    assert_int_equal(resolve(c, t2, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, t2b, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, t3, NULL, "3"), IAM_OK);
    assert_int_equal(iam_client_invalidate_user(c, "2"), 2);
    assert_int_equal(stats(c).l1_entries, 1);
    assert_int_equal(resolve(c, t3, NULL, "3"), IAM_OK);
    assert_int_equal(stats(c).l1_hits, 1); /* user 3 still cached */
    assert_int_equal(resolve(c, t2, NULL, "2"), IAM_OK);
    assert_int_equal(stats(c).verifications, 4); /* user 2 verified again */
    assert_int_equal(iam_client_invalidate_user(c, "22"), 0);
    free(t2);
    free(t2b);
    free(t3);
    iam_client_free(c);
}

static void test_revoke_jti(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *t = valid_token("2"), *other = valid_token("3");
    iam_user *u = NULL;
    assert_int_equal(iam_client_resolve(c, t, strlen(t), NULL, &u, NULL), IAM_OK);
    char jti[128];
    snprintf(jti, sizeof jti, "%s", iam_user_jti(u));
    iam_user_release(u);
    assert_int_equal(resolve(c, other, NULL, "3"), IAM_OK);

    assert_int_equal(iam_client_revoke_jti(c, jti), 1);
    assert_int_equal(stats(c).revocation_marks, 1);
    assert_int_equal(resolve(c, t, NULL, NULL), IAM_E_REVOKED);
    assert_int_equal(resolve(c, t, NULL, NULL), IAM_E_REVOKED); /* remembered */
    assert_int_equal(resolve(c, other, NULL, "3"), IAM_OK);      /* others untouched */
    iam_resolve_options org7 = {.required_org = "7"};
    assert_int_equal(resolve(c, t, &org7, NULL), IAM_E_REVOKED); /* every context */
    /* even after everything cached is dropped */
    iam_client_invalidate_all(c);
    assert_int_equal(resolve(c, t, NULL, NULL), IAM_E_REVOKED);
    /* and after the remembered refusal has expired: never replaced by a positive entry */
    for (int i = 1; i <= 5; i++) {
        set_now(T0 + i * 11000);
        assert_int_equal(resolve(c, t, NULL, NULL), IAM_E_REVOKED);
        assert_int_equal(resolve(c, t, NULL, NULL), IAM_E_REVOKED);
    }
    iam_client_stats s = stats(c);
    assert_true(s.rejected[-IAM_E_REVOKED] >= 7);
    free(t);
    free(other);
    iam_client_free(c);
}

static void test_revoke_jti_before_first_use(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *t = valid_token("4");
    iam_user *u = NULL;
    /* learn the jti without touching the client */
    iam_keyset *ks = iam_keyset_new();
    assert_int_equal(iam_keyset_add_hmac(ks, SECRET, strlen(SECRET), NULL, NULL), IAM_OK);
    assert_int_equal(iam_token_verify(t, strlen(t), ks, NULL, T0_S, &u, NULL), IAM_OK);
    assert_int_equal(iam_client_revoke_jti(c, iam_user_jti(u)), 0);
    iam_user_release(u);
    iam_keyset_release(ks);
    assert_int_equal(resolve(c, t, NULL, NULL), IAM_E_REVOKED);
    assert_int_equal(stats(c).l1_hits, 0);
    assert_int_equal(iam_client_revoke_jti(c, ""), 0);
    assert_int_equal(iam_client_revoke_jti(c, NULL), 0);
    free(t);
    iam_client_free(c);
}

static void test_invalidate_all(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *bad = token_for("1", T0_S + 3600, g_other_key);
    for (int i = 0; i < 20; i++) {
        char sub[16];
        snprintf(sub, sizeof sub, "%d", i);
        char *t = valid_token(sub);
        assert_int_equal(resolve(c, t, NULL, sub), IAM_OK);
        free(t);
    }
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    assert_int_equal(stats(c).l1_entries, 21);
    assert_int_equal(iam_client_invalidate_all(c), 21);
    iam_client_stats s = stats(c);
    assert_int_equal(s.l1_entries, 0);
    assert_int_equal(s.l1_bytes, 0);
    char *t0 = valid_token("0");
    assert_int_equal(resolve(c, t0, NULL, "0"), IAM_OK);
    assert_int_equal(stats(c).verifications, 22);
    free(t0);
    free(bad);
    iam_client_free(c);
}

/* ------------------------------------------------------------- stats */

static void test_stats_json(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *t = valid_token("2"), *bad = token_for("2", T0_S + 3600, g_other_key);
    assert_int_equal(resolve(c, t, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, t, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    char *js = iam_client_stats_json(c);
    assert_non_null(js);
    cJSON *root = cJSON_Parse(js);
    assert_non_null(root);
    cJSON *l1 = cJSON_GetObjectItemCaseSensitive(root, "l1");
    assert_non_null(l1);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(l1, "hits")->valuedouble, 1);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(l1, "misses")->valuedouble, 2);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(l1, "entries")->valuedouble, 2);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(l1, "evictions"));
    cJSON *local = cJSON_GetObjectItemCaseSensitive(root, "local");
    assert_non_null(local);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(local, "verifications")->valuedouble, 2);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(local, "accepted")->valuedouble, 1);
    cJSON *rej = cJSON_GetObjectItemCaseSensitive(root, "rejected");
    assert_non_null(rej);
    cJSON *bs = cJSON_GetObjectItemCaseSensitive(rej, "bad_signature");
    assert_non_null(bs);
    assert_int_equal(bs->valuedouble, 1);
    assert_null(strstr(js, t));
    cJSON_Delete(root);
    iam_free(js);
    free(t);
    free(bad);
    iam_client_free(c);
}

static void test_stats_prometheus(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *t = valid_token("2"), *bad = token_for("2", T0_S + 3600, g_other_key);
    assert_int_equal(resolve(c, t, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, t, NULL, "2"), IAM_OK);
    assert_int_equal(resolve(c, bad, NULL, NULL), IAM_E_BAD_SIGNATURE);
    char *p = iam_client_metrics_prometheus(c);
    assert_non_null(p);
    assert_non_null(strstr(p, "\niam_l1_hits_total 1\n"));
    assert_non_null(strstr(p, "# TYPE iam_verify_seconds histogram"));
    assert_non_null(strstr(p, "iam_rejected_total{reason=\"bad_signature\"} 1\n"));
    assert_non_null(strstr(p, "\niam_verifications_total 2\n"));
    assert_non_null(strstr(p, "iam_verify_seconds_count 2\n"));
    assert_non_null(strstr(p, "iam_verify_seconds_bucket{le=\"+Inf\"} 2\n"));
    assert_null(strstr(p, t));
    iam_free(p);
    free(t);
    free(bad);
    iam_client_free(c);
}

/* ------------------------------------------------------------- async */

typedef struct cb_rec {
    int calls;
    pthread_t thread;
    iam_status st;
    iam_user *user;
    char sub[32];
    char message[IAM_ERROR_MESSAGE_BYTES];
} cb_rec;

static void record_cb(void *arg, iam_status st, iam_user *user, const iam_error *err)
{
    cb_rec *r = arg;
    r->calls++;
    r->thread = pthread_self();
    r->st = st;
    r->user = user;
    if (user && iam_user_id(user))
        snprintf(r->sub, sizeof r->sub, "%s", iam_user_id(user));
    if (err)
        snprintf(r->message, sizeof r->message, "%s", err->message);
}

static void test_async_hit_inline(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *t = valid_token("2");
    assert_int_equal(resolve(c, t, NULL, "2"), IAM_OK);
    cb_rec r = {0};
    assert_int_equal(iam_client_resolve_async(c, t, strlen(t), NULL, record_cb, &r), IAM_OK);
    assert_int_equal(r.calls, 1); /* before returning */
    assert_true(pthread_equal(r.thread, pthread_self()));
    assert_int_equal(r.st, IAM_OK);
    assert_non_null(r.user);
    assert_string_equal(r.sub, "2");
    assert_int_equal(stats(c).l1_hits, 1);
    iam_user_release(r.user); /* the callback's reference */
    free(t);
    iam_client_free(c);
}

static void test_async_miss_and_refusal_inline(void **state)
{
    (void)state;
    iam_client *c = default_client();
    char *t = valid_token("2"), *bad = token_for("2", T0_S + 3600, g_other_key);
    cb_rec r = {0};
    assert_int_equal(iam_client_resolve_async(c, t, strlen(t), NULL, record_cb, &r), IAM_OK);
    assert_int_equal(r.calls, 1);
    assert_true(pthread_equal(r.thread, pthread_self()));
    assert_int_equal(r.st, IAM_OK);
    iam_user_release(r.user);
    cb_rec q = {0};
    assert_int_equal(iam_client_resolve_async(c, bad, strlen(bad), NULL, record_cb, &q), IAM_OK);
    assert_int_equal(q.calls, 1);
    assert_int_equal(q.st, IAM_E_BAD_SIGNATURE);
    assert_null(q.user);
    assert_true(q.message[0] != '\0');
    /* the token is copied: the caller's buffer may change at once */
    char *copy = strdup(t);
    cb_rec h = {0};
    assert_int_equal(iam_client_resolve_async(c, copy, strlen(copy), NULL, record_cb, &h), IAM_OK);
    memset(copy, 'x', strlen(copy));
    free(copy);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.st, IAM_OK);
    iam_user_release(h.user);
    free(t);
    free(bad);
    iam_client_free(c);
}

static void test_async_invalid_arguments(void **state)
{
    (void)state;
    iam_client *c = default_client();
    cb_rec r = {0};
    assert_int_equal(iam_client_resolve_async(c, NULL, 0, NULL, record_cb, &r), IAM_E_INVALID_ARGUMENT);
    assert_int_equal(iam_client_resolve_async(c, "x", 1, NULL, NULL, &r), IAM_E_INVALID_ARGUMENT);
    assert_int_equal(iam_client_resolve_async(NULL, "x", 1, NULL, record_cb, &r), IAM_E_INVALID_ARGUMENT);
    assert_int_equal(r.calls, 0);
    iam_client_free(c);
}

#define T(f) cmocka_unit_test_setup(f, test_setup)
#define TE(f) cmocka_unit_test_setup_teardown(f, env_clear, env_clear)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_new_no_key),
        T(test_new_short_secret),
        T(test_new_bad_auth_url),
        T(test_new_bad_redis_url),
        T(test_new_central_mode),
        T(test_new_unreadable_jwks),
        T(test_new_bad_leeway_and_ttls),
        T(test_new_null_args),
        TE(test_env_fields),
        TE(test_env_bad_mode),
        TE(test_env_bad_cache_entries),
        TE(test_env_bad_numbers_named),
        TE(test_env_secret_not_echoed),
        T(test_resolve_returns_user),
        T(test_second_resolve_is_hit),
        T(test_invalid_arguments),
        T(test_ttl_never_beyond_exp),
        T(test_max_staleness),
        T(test_default_staleness_300s),
        T(test_refusal_remembered),
        T(test_refusal_expires),
        T(test_refusal_default_ttl_10s),
        T(test_cached_only),
        T(test_negative_disabled),
        T(test_not_yet_valid_not_remembered),
        T(test_expired_refusal_remembered),
        T(test_too_large_without_verification),
        T(test_audience_context_default_first),
        T(test_audience_context_other_first),
        T(test_audience_override_accepts),
        T(test_tenant_accept_then_refuse),
        T(test_tenant_refuse_then_accept),
        T(test_tenant_empty_org_refusal_not_in_default_context),
        T(test_tenant_empty_org_not_answered_from_default_context),
        T(test_empty_audience_kept_apart_from_default_context),
        T(test_two_clients_share_nothing),
        T(test_entries_bounded),
        T(test_bytes_bounded),
        T(test_cache_disabled),
        T(test_l1_lru_order_touched_survives),
        T(test_l1_lru_order_untouched_evicted),
        T(test_l1_same_hash_different_token),
        T(test_l1_expiry_and_flights),
        T(test_l1_veto),
        T(test_invalidate_token),
        T(test_invalidate_user),
        T(test_revoke_jti),
        T(test_revoke_jti_before_first_use),
        T(test_invalidate_all),
        T(test_stats_json),
        T(test_stats_prometheus),
        T(test_async_hit_inline),
        T(test_async_miss_and_refusal_inline),
        T(test_async_invalid_arguments),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
