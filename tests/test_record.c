/*
 * test_record.c — the shared cache's record format (cache/record.c) and the Redis URL
 * parser (net/redis_url.c), with no Redis: keys never contain the token, every byte of a
 * record is authenticated, a record answers only for its key and context, identifiers
 * become strings, and URLs are parsed exactly (never echoed in errors).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/record.h"
#include "identity/peek.h"
#include "iamclient.h"
#include "mint.h"
#include "net/redis_url.h"

#define NOW_S INT64_C(1900000000)

static const char SECRET[] = "record-test-token-secret-0123456789abcdef";
static const unsigned char CACHE_SECRET[] = "record-test-cache-secret-0123456789abcdef";

typedef struct fixture {
    mint_key *key;
    iam_keyset *ks;
    record_keys rk, other_rk;
    record_ctx ctx, other_ctx;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->key = mint_key_hmac(SECRET, strlen(SECRET));
    f->ks = iam_keyset_new();
    assert_int_equal(iam_keyset_add_hmac(f->ks, SECRET, strlen(SECRET), NULL, NULL), IAM_OK);
    assert_true(record_keys_init(&f->rk, CACHE_SECRET, sizeof CACHE_SECRET - 1));
    assert_true(record_keys_init(&f->other_rk, (const unsigned char *)"another-cache-secret-0123456789abcdefgh", 39));
    record_ctx_init(&f->ctx, &f->rk, NULL, NULL);
    record_ctx_init(&f->other_ctx, &f->rk, "another-audience", NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    mint_key_free(f->key);
    iam_keyset_release(f->ks);
    record_keys_free(&f->rk);
    record_keys_free(&f->other_rk);
    free(f);
    return 0;
}

/* A platform token with integer ids, verified into a user. */
static char *token_with(fixture *f, const char *claims, iam_user **u)
{
    char *t = mint_token("HS256", NULL, claims, f->key);
    assert_non_null(t);
    iam_error e = {0};
    iam_status vst = iam_token_verify(t, strlen(t), f->ks, NULL, NOW_S, u, &e);
    if (vst != IAM_OK)
        fail_msg("verify: %s", e.message);
    return t;
}

static const char CLAIMS[] =
    "{\"sub\":\"12\",\"email\":\"ada@example.org\",\"roles\":[\"researcher\"],\"permissions\":[\"dataset.read\"],"
    "\"org_id\":7,\"team_id\":-3,\"idp_org_id\":9007199254740991,\"org_role\":[\"member\"],"
    "\"team_role\":\"admin\",\"type\":\"access\",\"jti\":\"j-1\",\"exp\":1900000900,"
    "\"iss\":\"omnibioai-auth\",\"aud\":\"omnibioai-platform\",\"custom\":1.50e2}";

static iam_status decode(fixture *f, const record_keys *rk, const record_ctx *ctx, const char *key,
                         const char *value, size_t len, iam_user **u, record_result *r)
{
    iam_status st = IAM_OK;
    iam_error e = {0};
    *r = record_decode(rk, ctx, key, value, len, NULL, NOW_S, u, &st, &e);
    (void)f;
    return st;
}

static void test_key_hides_token(void **state)
{
    fixture *f = *state;
    iam_user *u;
    char *t = token_with(f, CLAIMS, &u);
    char key[RECORD_KEY_LEN + 1], key2[RECORD_KEY_LEN + 1], key3[RECORD_KEY_LEN + 1];
    record_key(&f->rk, &f->ctx, t, strlen(t), key);
    assert_int_equal(strlen(key), RECORD_KEY_LEN);
    assert_int_equal(strncmp(key, "iam:v1:cache:", 13), 0);
    const char *sig = strrchr(t, '.') + 1;
    assert_null(strstr(key, sig));
    /* deterministic per (secret, context, token); different for each of them */
    record_key(&f->rk, &f->ctx, t, strlen(t), key2);
    assert_string_equal(key, key2);
    record_key(&f->rk, &f->other_ctx, t, strlen(t), key3);
    assert_string_not_equal(key, key3);
    record_key(&f->other_rk, &f->ctx, t, strlen(t), key3);
    assert_string_not_equal(key, key3);
    record_key(&f->rk, &f->ctx, t, strlen(t) - 1, key3);
    assert_string_not_equal(key, key3);
    /* NULL and "" contexts differ */
    record_ctx empty;
    record_ctx_init(&empty, &f->rk, "", NULL);
    assert_string_not_equal(empty.id, f->ctx.id);
    iam_user_release(u);
    free(t);
}

static void test_round_trip_ids_as_strings(void **state)
{
    fixture *f = *state;
    iam_user *u;
    char *t = token_with(f, CLAIMS, &u);
    char key[RECORD_KEY_LEN + 1];
    record_key(&f->rk, &f->ctx, t, strlen(t), key);
    size_t n;
    char *v = record_encode(&f->rk, &f->ctx, key, u, &n);
    assert_non_null(v);
    assert_int_equal(strlen(v), n);
    /* no token bytes in the value; identifiers as strings; other claims verbatim */
    assert_null(strstr(v, strrchr(t, '.') + 1));
    assert_null(strstr(v, t));
    assert_non_null(strstr(v, "\"org_id\":\"7\""));
    assert_non_null(strstr(v, "\"team_id\":\"-3\""));
    assert_non_null(strstr(v, "\"idp_org_id\":\"9007199254740991\""));
    assert_non_null(strstr(v, "\"custom\":1.50e2"));
    iam_user *back = NULL;
    record_result r;
    assert_int_equal(decode(f, &f->rk, &f->ctx, key, v, n, &back, &r), IAM_OK);
    assert_int_equal(r, RECORD_OK);
    assert_string_equal(iam_user_id(back), "12");
    assert_string_equal(iam_user_org_id(back), "7");
    assert_string_equal(iam_user_team_id(back), "-3");
    assert_string_equal(iam_user_idp_org_id(back), "9007199254740991");
    assert_string_equal(iam_user_jti(back), "j-1");
    assert_int_equal(iam_user_expires_at(back), 1900000900);
    assert_true(iam_user_has_role(back, "researcher"));
    char *custom = iam_user_claim_json(back, "custom");
    assert_string_equal(custom, "1.50e2");
    iam_free(custom);
    iam_user_release(back);
    iam_user_release(u);
    free(v);
    free(t);
}

static void test_every_byte_is_authenticated(void **state)
{
    fixture *f = *state;
    iam_user *u;
    char *t = token_with(f, CLAIMS, &u);
    char key[RECORD_KEY_LEN + 1];
    record_key(&f->rk, &f->ctx, t, strlen(t), key);
    size_t n;
    char *v = record_encode(&f->rk, &f->ctx, key, u, &n);
    for (size_t i = 0; i < n; i++) {
        char *m = malloc(n);
        memcpy(m, v, n);
        m[i] ^= 0x01;
        iam_user *back = NULL;
        record_result r;
        decode(f, &f->rk, &f->ctx, key, m, n, &back, &r);
        assert_int_equal(r, RECORD_BAD);
        assert_null(back);
        free(m);
    }
    /* truncated, extended, empty */
    iam_user *back = NULL;
    record_result r;
    for (size_t cut = 0; cut < n; cut += 7) {
        decode(f, &f->rk, &f->ctx, key, v, cut, &back, &r);
        assert_int_equal(r, RECORD_BAD);
    }
    char *longer = malloc(n + 2);
    memcpy(longer, v, n);
    memcpy(longer + n, " ", 2);
    decode(f, &f->rk, &f->ctx, key, longer, n + 1, &back, &r);
    assert_int_equal(r, RECORD_BAD);
    free(longer);
    iam_user_release(u);
    free(v);
    free(t);
}

static void test_bound_to_key_context_and_secret(void **state)
{
    fixture *f = *state;
    iam_user *u1, *u2;
    char *t1 = token_with(f, CLAIMS, &u1);
    char *t2 = token_with(f, "{\"sub\":\"99\",\"type\":\"access\",\"exp\":1900000900,\"iss\":\"omnibioai-auth\","
                             "\"aud\":\"omnibioai-platform\",\"roles\":[\"admin\"]}", &u2);
    char k1[RECORD_KEY_LEN + 1], k2[RECORD_KEY_LEN + 1];
    record_key(&f->rk, &f->ctx, t1, strlen(t1), k1);
    record_key(&f->rk, &f->ctx, t2, strlen(t2), k2);
    size_t n1, n2;
    char *v1 = record_encode(&f->rk, &f->ctx, k1, u1, &n1);
    char *v2 = record_encode(&f->rk, &f->ctx, k2, u2, &n2);
    iam_user *back = NULL;
    record_result r;
    /* swapped between two users' keys: neither is accepted */
    decode(f, &f->rk, &f->ctx, k1, v2, n2, &back, &r);
    assert_int_equal(r, RECORD_BAD);
    decode(f, &f->rk, &f->ctx, k2, v1, n1, &back, &r);
    assert_int_equal(r, RECORD_BAD);
    /* read in another context (same key bytes): refused by the context id */
    decode(f, &f->rk, &f->other_ctx, k1, v1, n1, &back, &r);
    assert_int_equal(r, RECORD_BAD);
    /* under another cache secret */
    decode(f, &f->other_rk, &f->ctx, k1, v1, n1, &back, &r);
    assert_int_equal(r, RECORD_BAD);
    assert_null(back);
    iam_user_release(u1);
    iam_user_release(u2);
    free(v1);
    free(v2);
    free(t1);
    free(t2);
}

/* A record whose MAC is right (a writer holding the secret) is still checked like a token. */
static void test_authentic_but_expired_or_refresh(void **state)
{
    fixture *f = *state;
    iam_user *u;
    char *t = token_with(f, CLAIMS, &u);
    char key[RECORD_KEY_LEN + 1];
    record_key(&f->rk, &f->ctx, t, strlen(t), key);
    size_t n;
    char *v = record_encode(&f->rk, &f->ctx, key, u, &n);
    iam_user *back = NULL;
    iam_status st = IAM_OK;
    iam_error e = {0};
    assert_int_equal(record_decode(&f->rk, &f->ctx, key, v, n, NULL, 1900000900, &back, &st, &e), RECORD_REFUSED);
    assert_int_equal(st, IAM_E_EXPIRED);
    assert_null(back);
    iam_verify_options vo = {.audience = "somebody-else"};
    assert_int_equal(record_decode(&f->rk, &f->ctx, key, v, n, &vo, NOW_S, &back, &st, &e), RECORD_REFUSED);
    assert_int_equal(st, IAM_E_WRONG_AUDIENCE);
    iam_user_release(u);
    free(v);
    free(t);
}

static void test_peek(void **state)
{
    fixture *f = *state;
    iam_user *u;
    char *t = token_with(f, CLAIMS, &u);
    token_peek pk;
    assert_int_equal(token_peek_claims(t, strlen(t), &pk, NULL), IAM_OK);
    assert_string_equal(pk.jti, "j-1");
    assert_string_equal(pk.sub, "12");
    assert_int_equal(pk.exp, 1900000900);
    assert_int_equal(token_peek_claims("a.b", 3, &pk, NULL), IAM_E_MALFORMED);
    assert_int_equal(token_peek_claims("a.b.c.d", 7, &pk, NULL), IAM_E_MALFORMED);
    assert_int_equal(token_peek_claims("e30.W10.x", 9, &pk, NULL), IAM_E_MALFORMED); /* [] */
    assert_int_equal(token_peek_claims("e30.e30.x", 9, &pk, NULL), IAM_OK);           /* {} */
    assert_string_equal(pk.jti, "");
    iam_user_release(u);
    free(t);
}

/* ------------------------------------------------------------------ URLs */

static void expect_bad(const char *url, const char *must_contain)
{
    redis_url u;
    iam_error e = {0};
    assert_int_equal(redis_url_parse(url, &u, &e), IAM_E_CONFIG);
    assert_non_null(strstr(e.message, "redis_url"));
    if (must_contain)
        assert_non_null(strstr(e.message, must_contain));
    assert_null(strstr(e.message, "s3cr3t"));
}

static void test_urls(void **state)
{
    (void)state;
    redis_url u;
    assert_int_equal(redis_url_parse("redis://cache.example.org", &u, NULL), IAM_OK);
    assert_string_equal(u.host, "cache.example.org");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_false(u.has_password);
    assert_int_equal(redis_url_parse("redis://:s3cr3t%40%3a@10.0.0.1:6380/5", &u, NULL), IAM_OK);
    assert_string_equal(u.host, "10.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 5);
    assert_true(u.has_password);
    assert_string_equal(u.password, "s3cr3t@:");
    assert_string_equal(u.user, "");
    assert_int_equal(redis_url_parse("redis://alice:s3cr3t@h/", &u, NULL), IAM_OK);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "s3cr3t");
    assert_int_equal(redis_url_parse("redis://s3cr3t@h", &u, NULL), IAM_OK); /* redis-cli: a lone word is the password */
    assert_string_equal(u.password, "s3cr3t");
    assert_int_equal(redis_url_parse("redis://[::1]:7000/2", &u, NULL), IAM_OK);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 2);
    assert_int_equal(redis_url_parse("unix:///run/redis/redis.sock?db=3&password=s3cr3t&user=bob", &u, NULL), IAM_OK);
    assert_true(u.unix_socket);
    assert_string_equal(u.path, "/run/redis/redis.sock");
    assert_int_equal(u.db, 3);
    assert_string_equal(u.password, "s3cr3t");
    assert_string_equal(u.user, "bob");
    expect_bad("rediss://:s3cr3t@h", "TLS");
    expect_bad("rediss://h", "tunnel (stunnel)"); /* the advice survives the message bound */
    /* a socket path hiredis can connect to: at most REDIS_MAX_UNIX_PATH (106) bytes */
    char longest[160] = "unix:///", too_long[160] = "unix:///";
    memset(longest + 8, 's', REDIS_MAX_UNIX_PATH - 1);
    memset(too_long + 8, 's', REDIS_MAX_UNIX_PATH);
    assert_int_equal(redis_url_parse(longest, &u, NULL), IAM_OK);
    assert_int_equal(strlen(u.path), REDIS_MAX_UNIX_PATH);
    expect_bad(too_long, "longer than 106 bytes");
    expect_bad("http://h", NULL);
    expect_bad("redis://", "host");
    expect_bad("redis://:s3cr3t@", "host");
    expect_bad("redis://h:0", "port");
    expect_bad("redis://h:65536", "port");
    expect_bad("redis://h:", "port");
    expect_bad("redis://h/1000001", "database");
    expect_bad("redis://h/x", "database");
    expect_bad("redis://h?db=1", NULL);
    expect_bad("redis://[::1", "IPv6");
    expect_bad("redis://u:s3cr3t%0@h", "password");
    expect_bad("redis://u:s3cr3t%00@h", "password");
    expect_bad("redis://bob:@h", "password");
    expect_bad("unix://", "absolute");
    expect_bad("unix://run/x.sock", "absolute");
    expect_bad("unix:///x?db", NULL);
    expect_bad("unix:///x?db=-1", "db");
    expect_bad("unix:///x?colour=blue", "unknown");
    char long_path[300];
    memset(long_path, 'a', sizeof long_path);
    memcpy(long_path, "unix:///", 8);
    long_path[sizeof long_path - 1] = '\0';
    expect_bad(long_path, "socket path");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_key_hides_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_ids_as_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_byte_is_authenticated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_to_key_context_and_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authentic_but_expired_or_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek, setup, teardown),
        cmocka_unit_test(test_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
