/*
 * test_findings.c — regressions for what the adversarial review found (each failed before
 * its fix): small-order Ed25519 keys, HMAC secrets published in a JWKS, identifiers and
 * token_version rounded through a double.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iamclient.h"
#include "mint.h"

#define NOW 1900000000
static const char SECRET[] = "findings-secret-0123456789abcdef0123456789";

/* F1: the identity point as an Ed25519 key verifies a forged "signature" of any message. */
static void test_small_order_ed25519_keys_refused(void **state)
{
    (void)state;
    static const char *const X[] = {
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* identity */
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA", /* identity, sign bit set */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* order 4 */
        "7P_______________________________________38", /* p-1: order 2 */
        "xxdqcD1N2E-6PAt2DRBnDyogU_osOczGTsf9d5KsA3o", /* order 8 */
        "JuiVj8KyJ7BFw_SJ8u-Y8NXfrAXTxjM5sTgCiG1T_AU", /* order 8 */
    };
    for (size_t i = 0; i < sizeof X / sizeof X[0]; i++) {
        char jwk[160];
        snprintf(jwk, sizeof jwk, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}", X[i]);
        iam_keyset *ks = iam_keyset_new();
        iam_error e = {0};
        iam_status st = iam_keyset_add_jwk(ks, jwk, strlen(jwk), &e);
        if (st != IAM_E_BAD_KEY)
            fail_msg("small-order key %zu accepted (%s)", i, iam_status_name(st));
        iam_keyset_release(ks);
    }
    /* A real key still loads. */
    mint_key *k = mint_key_generate("ed25519");
    char *jwk = mint_key_public_jwk(k, NULL, NULL);
    iam_keyset *ks = iam_keyset_new();
    assert_int_equal(iam_keyset_add_jwk(ks, jwk, strlen(jwk), NULL), IAM_OK);
    iam_keyset_release(ks);
    free(jwk);
    mint_key_free(k);
}

/* F2: a JWKS is public; an oct member in it is a secret anyone can read. */
static void test_jwks_never_yields_hmac_secrets(void **state)
{
    (void)state;
    mint_key *rsa = mint_key_generate("rsa2048");
    char *rjwk = mint_key_public_jwk(rsa, "k1", "RS256");
    char jwks[4096];
    snprintf(jwks, sizeof jwks,
             "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"k1\",\"k\":\"ZmluZGluZ3Mtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5\"},%s]}",
             rjwk);
    iam_keyset *ks = iam_keyset_new();
    size_t added = 0, skipped = 0;
    assert_int_equal(iam_keyset_add_jwks(ks, jwks, strlen(jwks), &added, &skipped, NULL), IAM_OK);
    assert_int_equal(added, 1);
    assert_int_equal(skipped, 1);
    mint_key *h = mint_key_hmac("findings-secret-0123456789abcdef0123456789", 42);
    char *claims = mint_platform_claims("2", NOW + 900);
    char *tok = mint_token("HS256", "k1", claims, h);
    iam_user *u = NULL;
    assert_int_equal(iam_token_verify(tok, strlen(tok), ks, NULL, NOW, &u, NULL), IAM_E_UNKNOWN_KEY);
    assert_null(u);
    free(tok), free(claims), free(rjwk);
    mint_key_free(h), mint_key_free(rsa);
    iam_keyset_release(ks);
}

static iam_status verify_payload(const char *payload, iam_user **u)
{
    mint_key *k = mint_key_hmac(SECRET, strlen(SECRET));
    char *tok = mint_token("HS256", NULL, payload, k);
    iam_keyset *ks = iam_keyset_new();
    iam_keyset_add_hmac(ks, SECRET, strlen(SECRET), NULL, NULL);
    iam_status st = iam_token_verify(tok, strlen(tok), ks, NULL, NOW, u, NULL);
    iam_keyset_release(ks);
    free(tok);
    mint_key_free(k);
    return st;
}

#define BASE "\"sub\":\"2\",\"exp\":1900000900,\"type\":\"access\",\"iss\":\"omnibioai-auth\",\"aud\":\"omnibioai-platform\""

/* F3/F4: identifiers and token_version are exact integers, never rounded through a double. */
static void test_numbers_exact_or_refused(void **state)
{
    (void)state;
    static const char *const REFUSED[] = {
        "{" BASE ",\"org_id\":9007199254740993}", "{" BASE ",\"org_id\":7.0}",
        "{" BASE ",\"org_id\":7e0}",              "{" BASE ",\"team_id\":1e-400}",
        "{" BASE ",\"token_version\":2147483648}", "{" BASE ",\"token_version\":9007199254740993}",
    };
    for (size_t i = 0; i < sizeof REFUSED / sizeof REFUSED[0]; i++) {
        iam_user *u = NULL;
        iam_status st = verify_payload(REFUSED[i], &u);
        if (st != IAM_E_INVALID_CLAIM)
            fail_msg("payload %zu: %s, expected invalid_claim", i, iam_status_name(st));
    }
    iam_user *u = NULL;
    assert_int_equal(verify_payload("{" BASE ",\"org_id\":9007199254740992,\"token_version\":2147483647}", &u), IAM_OK);
    assert_string_equal(iam_user_org_id(u), "9007199254740992");
    assert_int_equal(iam_user_token_version(u), 2147483647);
    iam_user_release(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_order_ed25519_keys_refused),
        cmocka_unit_test(test_jwks_never_yields_hmac_secrets),
        cmocka_unit_test(test_numbers_exact_or_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
