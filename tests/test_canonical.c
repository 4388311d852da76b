/*
 * test_canonical.c — the canonical-header fast path in jws.c must decide exactly what the
 * general path decides: each listed segment decodes to a two-member header naming its alg
 * and typ JWT, and a token using it verifies the same as one whose header takes the slow
 * path (the same JSON with a space, so its base64url text differs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jose/b64url.h"
#include "jose/jose.h"
#include "mint.h"

static void test_segments_decode_to_their_header(void **state)
{
    (void)state;
    assert_true(JOSE_CANONICAL_HEADER_COUNT >= 3);
    for (size_t i = 0; i < JOSE_CANONICAL_HEADER_COUNT; i++) {
        const canonical_header *c = &JOSE_CANONICAL_HEADERS[i];
        unsigned char buf[128];
        size_t n;
        assert_true(b64url_decode(c->segment, strlen(c->segment), buf, &n));
        buf[n] = '\0';
        char a[64], b[64];
        snprintf(a, sizeof a, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", c->alg);
        snprintf(b, sizeof b, "{\"typ\":\"JWT\",\"alg\":\"%s\"}", c->alg);
        if (strcmp((char *)buf, a) != 0 && strcmp((char *)buf, b) != 0)
            fail_msg("segment %zu decodes to %s", i, (char *)buf);
        assert_non_null(alg_find(c->alg, strlen(c->alg)));
    }
}

static void test_fast_and_slow_paths_agree(void **state)
{
    (void)state;
    static const char secret[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    mint_key *k = mint_key_hmac(secret, 64);
    iam_keyset *ks = iam_keyset_new();
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 64, NULL, NULL), IAM_OK);
    const char *algs[] = {"HS256", "HS384", "HS512"};
    for (size_t i = 0; i < 3; i++) {
        char *claims = mint_platform_claims("2", 1900000900);
        char fast_h[64], slow_h[64];
        snprintf(fast_h, sizeof fast_h, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", algs[i]);
        snprintf(slow_h, sizeof slow_h, "{\"alg\": \"%s\",\"typ\":\"JWT\"}", algs[i]);
        char *fast = mint_sign(fast_h, claims, strlen(claims), algs[i], k);
        char *slow = mint_sign(slow_h, claims, strlen(claims), algs[i], k);
        iam_user *u1 = NULL, *u2 = NULL;
        assert_int_equal(iam_token_verify(fast, strlen(fast), ks, NULL, 1900000000, &u1, NULL), IAM_OK);
        assert_int_equal(iam_token_verify(slow, strlen(slow), ks, NULL, 1900000000, &u2, NULL), IAM_OK);
        assert_string_equal(iam_user_id(u1), iam_user_id(u2));
        /* A tampered signature is refused on the fast path too. */
        fast[strlen(fast) - 2] = fast[strlen(fast) - 2] == 'A' ? 'B' : 'A';
        iam_user *u3 = NULL;
        assert_int_equal(iam_token_verify(fast, strlen(fast), ks, NULL, 1900000000, &u3, NULL),
                         IAM_E_BAD_SIGNATURE);
        iam_user_release(u1), iam_user_release(u2);
        free(fast), free(slow), free(claims);
    }
    iam_keyset_release(ks);
    mint_key_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_segments_decode_to_their_header),
        cmocka_unit_test(test_fast_and_slow_paths_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
