/*
 * profile_verify.c — a bare loop of HS256 iam_token_verify calls on the platform's claim
 * set, for instruction counting (valgrind --tool=callgrind) and perf. No timing: callgrind
 * counts are stable on a noisy machine where wall-clock medians are not.
 *
 *   valgrind --tool=callgrind --callgrind-out-file=cg.out build/normal/bench/profile_verify 1000
 *   callgrind_annotate --inclusive=yes cg.out | head -40      (divide by the count)
 *   perf record build/normal/bench/profile_verify 500000 && perf report --sort dso
 *
 * A second argument forces the base64url vector level (0 portable, 1 SSSE3, 2 AVX2), to
 * compare them.
 *
 * Exit status 0 when every call verified, 1 otherwise.
 */
#include "iamclient.h"
#include "jose/b64url.h"
#include "mint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char secret[] = "bench-hs256-secret-0123456789abcdefghijklmno";

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    if (n <= 0)
        n = 1000;
    if (argc > 2)
        fprintf(stderr, "base64url vector level %d\n", b64url_vector_level(atoi(argv[2])));
    char *claims = mint_platform_claims("2", INT64_C(4102444800));
    mint_key *key = mint_key_hmac(secret, sizeof secret - 1);
    char *token = mint_token("HS256", NULL, claims, key);
    iam_keyset *ks = iam_keyset_new();
    iam_error err;
    if (!ks || iam_keyset_add_hmac(ks, (const unsigned char *)secret, sizeof secret - 1, NULL, &err) != IAM_OK) {
        fprintf(stderr, "profile_verify: keyset setup failed\n");
        return 1;
    }
    size_t len = strlen(token);
    long failed = 0;
    for (long i = 0; i < n; i++) {
        iam_user *u = NULL;
        if (iam_token_verify(token, len, ks, NULL, 1700000000, &u, NULL) != IAM_OK)
            failed++;
        iam_user_release(u);
    }
    printf("%ld calls, %ld failed; token %zu bytes, claim set %zu bytes\n", n, failed, len,
           strlen(claims));
    iam_keyset_release(ks);
    mint_key_free(key);
    free(token);
    free(claims);
    return failed ? 1 : 0;
}
