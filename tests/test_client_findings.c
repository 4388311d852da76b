/*
 * test_client_findings.c — regressions for the adversarial review of the client (each
 * failed before its fix).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "iamclient.h"
#include "mint.h"

static const char SECRET[] = "client-findings-secret-0123456789abcdef";

/* F1: records overwritten while the veto waited for the log's lock must count as "concerns
 * this answer"; the log used to be read without checking each record's epoch. */
static void test_overwritten_log_records_veto(void **state)
{
    (void)state;
    static inv_record log[INV_LOG];
    memset(log, 0, sizeof log);
    /* since = 10, now = 200 (within the log's reach), but every slot already holds a later,
     * unrelated invalidation (epochs 300..555). */
    for (uint64_t e = 300; e < 300 + INV_LOG; e++) {
        log[e % INV_LOG].epoch = e;
        log[e % INV_LOG].kind = INV_TOKEN;
        log[e % INV_LOG].token_hash = 0xdeadbeef;
    }
    assert_true(inv_log_concerns(log, 10, 200, 0x1234, "2", "jti-2"));
    /* Intact records that do not concern the answer: no veto. */
    for (uint64_t e = 11; e <= 200; e++) {
        log[e % INV_LOG].epoch = e;
        log[e % INV_LOG].kind = INV_USER;
        strcpy(log[e % INV_LOG].value, "3");
    }
    assert_false(inv_log_concerns(log, 10, 200, 0x1234, "2", "jti-2"));
    /* One that does. */
    log[150 % INV_LOG].kind = INV_JTI;
    strcpy(log[150 % INV_LOG].value, "jti-2");
    assert_true(inv_log_concerns(log, 10, 200, 0x1234, "2", "jti-2"));
    /* A window longer than the log. */
    assert_true(inv_log_concerns(log, 10, 10 + INV_LOG, 0x1234, "2", "jti-2"));
}

static void opts(iam_client_options *o)
{
    iam_client_options_init(o);
    o->mode = IAM_MODE_LOCAL_ONLY;
    o->jwt_secret = SECRET;
}

/* F2: a huge revocation_ttl_s overflowed to an already-expired mark: revocation did nothing. */
static void test_revocation_ttl_bounded(void **state)
{
    (void)state;
    iam_client_options o;
    opts(&o);
    iam_client *c = NULL;
    iam_error e = {0};
    o.revocation_ttl_s = INT64_MAX;
    assert_int_equal(iam_client_new(&o, &c, &e), IAM_E_CONFIG);
    assert_null(c);
    o.revocation_ttl_s = IAM_MAX_REVOCATION_TTL_S;
    assert_int_equal(iam_client_new(&o, &c, &e), IAM_OK);
    iam_client_free(c);
}

/* F3: the byte bound was split over up to 4096 shards, so a large (valid) token was never
 * cached with the default bounds. */
static void test_large_token_cached_with_defaults(void **state)
{
    (void)state;
    char *payload = malloc(16384);
    size_t n = (size_t)snprintf(payload, 16384,
                                "{\"sub\":\"2\",\"exp\":4102444800,\"type\":\"access\",\"iss\":\"omnibioai-auth\","
                                "\"aud\":\"omnibioai-platform\",\"permissions\":[");
    for (int i = 0; i < 240; i++)
        n += (size_t)snprintf(payload + n, 16384 - n, "%s\"dataset.%03d.read\"", i ? "," : "", i);
    snprintf(payload + n, 16384 - n, "]}");
    mint_key *k = mint_key_hmac(SECRET, strlen(SECRET));
    char *tok = mint_token("HS256", NULL, payload, k);
    assert_true(strlen(tok) > 6000 && strlen(tok) <= IAM_MAX_TOKEN_BYTES);
    iam_client_options o;
    opts(&o);
    iam_client *c = NULL;
    assert_int_equal(iam_client_new(&o, &c, NULL), IAM_OK);
    for (int i = 0; i < 3; i++) {
        iam_user *u = NULL;
        assert_int_equal(iam_client_resolve(c, tok, strlen(tok), NULL, &u, NULL), IAM_OK);
        iam_user_release(u);
    }
    iam_client_stats s;
    iam_client_stats_get(c, &s);
    assert_int_equal(s.verifications, 1);
    assert_int_equal(s.l1_hits, 2);
    iam_client_free(c);
    free(tok), free(payload);
    mint_key_free(k);
}

/* F4: the entry bound was per shard (max/shards + 1 each): 1 entry allowed held 64. */
static void test_entry_bound_is_cache_wide(void **state)
{
    (void)state;
    iam_client_options o;
    opts(&o);
    o.cache_max_entries = 1;
    iam_client *c = NULL;
    assert_int_equal(iam_client_new(&o, &c, NULL), IAM_OK);
    mint_key *k = mint_key_hmac(SECRET, strlen(SECRET));
    for (int i = 0; i < 50; i++) {
        char sub[16];
        snprintf(sub, sizeof sub, "%d", 100 + i);
        char *claims = mint_platform_claims(sub, 4102444800);
        char *tok = mint_token("HS256", NULL, claims, k);
        iam_user *u = NULL;
        assert_int_equal(iam_client_resolve(c, tok, strlen(tok), NULL, &u, NULL), IAM_OK);
        iam_user_release(u);
        free(tok), free(claims);
    }
    iam_client_stats s;
    iam_client_stats_get(c, &s);
    assert_int_equal(s.l1_entries, 1);
    iam_client_free(c);
    mint_key_free(k);
}

/* F5: from the environment, 0 read as "none" but silently meant the 300 s / 10 s default. */
static void test_env_zero_ttls_refused(void **state)
{
    (void)state;
    iam_client_options o;
    iam_error e = {0};
    setenv("IAM_CACHE_TTL_S", "0", 1);
    iam_client_options_init(&o);
    assert_int_equal(iam_client_options_from_env(&o, &e), IAM_E_CONFIG);
    assert_non_null(strstr(e.message, "IAM_CACHE_TTL_S"));
    unsetenv("IAM_CACHE_TTL_S");
    setenv("IAM_NEGATIVE_TTL_S", "0", 1);
    iam_client_options_init(&o);
    assert_int_equal(iam_client_options_from_env(&o, &e), IAM_E_CONFIG);
    unsetenv("IAM_NEGATIVE_TTL_S");
    setenv("IAM_CACHE_ENTRIES", "9223372036854775807", 1);
    iam_client_options_init(&o);
    assert_int_equal(iam_client_options_from_env(&o, &e), IAM_E_CONFIG);
    unsetenv("IAM_CACHE_ENTRIES");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overwritten_log_records_veto),
        cmocka_unit_test(test_revocation_ttl_bounded),
        cmocka_unit_test(test_large_token_cached_with_defaults),
        cmocka_unit_test(test_entry_bound_is_cache_wide),
        cmocka_unit_test(test_env_zero_ttls_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
