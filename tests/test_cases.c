/*
 * test_cases.c — every case of ../shared/cases/tokens.json (inputs other validators got
 * wrong) through iam_token_verify, one cmocka test per case, driven from the file.
 * Binding: result accept/reject; an accepted token must yield the user of its claims.
 * Beyond the file, known cases must fail for the right reason (REASONS below).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iamclient.h"
#include "testutil.h"

static const struct {
    const char *id;
    iam_status reason;
} REASONS[] = {
    {"alg-none", IAM_E_UNSUPPORTED_ALG},
    {"alg-none-mixed-case", IAM_E_UNSUPPORTED_ALG},
    {"alg-confusion-pem-as-hmac-key", IAM_E_UNKNOWN_KEY},
    {"wrong-secret", IAM_E_BAD_SIGNATURE},
    {"refresh-token-as-access", IAM_E_WRONG_TYPE},
    {"expired", IAM_E_EXPIRED},
    {"nbf-future", IAM_E_NOT_YET_VALID},
    {"exp-as-string", IAM_E_INVALID_CLAIM},
    {"exp-missing", IAM_E_MISSING_CLAIM},
    {"aud-array-non-string", IAM_E_INVALID_CLAIM},
    {"aud-wrong", IAM_E_WRONG_AUDIENCE},
    {"iss-wrong", IAM_E_WRONG_ISSUER},
    {"b64-padding-in-signature", IAM_E_MALFORMED},
    {"b64-std-alphabet", IAM_E_MALFORMED},
    {"b64-non-canonical-trailing-bits", IAM_E_MALFORMED},
    {"kid-unknown", IAM_E_UNKNOWN_KEY},
    {"rs256-kid-points-to-ec-key", IAM_E_UNKNOWN_KEY},
    {"user-token-without-sub", IAM_E_MISSING_CLAIM},
    {"two-dots-only", IAM_E_MALFORMED},
    {"four-segments", IAM_E_MALFORMED},
    {"header-not-json", IAM_E_MALFORMED},
    {"payload-array", IAM_E_MALFORMED},
};

static const char *str_of(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The `sub` claim of the token, decoded independently of the library. */
static char *sub_of(const char *token)
{
    const char *a = strchr(token, '.'), *b = a ? strchr(a + 1, '.') : NULL;
    if (!b)
        return NULL;
    size_t n = (size_t)(b - a - 1);
    char *std = calloc(n + 4, 1);
    for (size_t i = 0; i < n; i++)
        std[i] = a[1 + i] == '-' ? '+' : a[1 + i] == '_' ? '/' : a[1 + i];
    while (strlen(std) % 4)
        strcat(std, "=");
    unsigned char *raw = calloc(n + 4, 1);
    int len = EVP_DecodeBlock(raw, (unsigned char *)std, (int)strlen(std));
    free(std);
    char *sub = NULL;
    if (len > 0) {
        cJSON *c = cJSON_ParseWithLength((char *)raw, (size_t)len);
        const char *s = str_of(c, "sub");
        sub = s ? strdup(s) : NULL;
        cJSON_Delete(c);
    }
    free(raw);
    return sub;
}

static void run_case(void **state)
{
    const cJSON *c = *state;
    const char *id = str_of(c, "id"), *token = str_of(c, "token"), *want = str_of(c, "result");
    assert_non_null(id);
    assert_non_null(token);
    assert_non_null(want);
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(c, "keys");
    const cJSON *expect = cJSON_GetObjectItemCaseSensitive(c, "expect");
    const cJSON *now = cJSON_GetObjectItemCaseSensitive(c, "now");
    assert_true(cJSON_IsNumber(now));

    iam_keyset *ks = iam_keyset_new();
    assert_non_null(ks);
    iam_error e = {0};
    const char *secret = str_of(keys, "hs256_secret");
    if (secret)
        assert_int_equal(iam_keyset_add_hmac(ks, secret, strlen(secret), NULL, &e), IAM_OK);
    const cJSON *jwks = cJSON_GetObjectItemCaseSensitive(keys, "jwks");
    if (jwks) {
        char *text = cJSON_PrintUnformatted(jwks);
        size_t added = 0;
        assert_int_equal(iam_keyset_add_jwks(ks, text, strlen(text), &added, NULL, &e), IAM_OK);
        assert_true(added > 0);
        cJSON_free(text);
    }
    const char *pem = str_of(keys, "rsa_public_pem");
    if (pem)
        assert_int_equal(iam_keyset_add_pem(ks, pem, strlen(pem), NULL, &e), IAM_OK);

    iam_verify_options opts = {0};
    opts.audience = str_of(expect, "audience");
    opts.issuer = str_of(expect, "issuer");
    const cJSON *leeway = cJSON_GetObjectItemCaseSensitive(expect, "leeway_s");
    if (cJSON_IsNumber(leeway))
        opts.leeway_s = (int64_t)leeway->valuedouble;

    iam_user *u = NULL;
    memset(&e, 0, sizeof e);
    iam_status st = iam_token_verify(token, strlen(token), ks, &opts, (int64_t)now->valuedouble, &u, &e);
    if (st != IAM_OK)
        print_message("%s: %s: %s\n", id, iam_status_name(st), e.message);
    if (strcmp(want, "accept") == 0) {
        assert_int_equal(st, IAM_OK);
        char *sub = sub_of(token);
        if (sub) {
            assert_string_equal(iam_user_id(u), sub);
        } else {
            assert_int_equal(iam_user_kind(u), IAM_PRINCIPAL_SERVICE);
            assert_null(iam_user_id(u));
        }
        free(sub);
    } else if (strcmp(want, "reject") == 0) {
        assert_int_not_equal(st, IAM_OK);
        assert_null(u);
        assert_true(iam_status_is_rejection(st));
        for (size_t i = 0; i < sizeof REASONS / sizeof REASONS[0]; i++)
            if (strcmp(REASONS[i].id, id) == 0)
                assert_string_equal(iam_status_name(st), iam_status_name(REASONS[i].reason));
        /* The message never carries the token. */
        if (strlen(token) > 16)
            assert_null(strstr(e.message, token + strlen(token) - 16));
    }
    iam_user_release(u);
    iam_keyset_release(ks);
}

int main(void)
{
    char *path = tu_shared_path("cases/tokens.json");
    size_t len = 0;
    char *text = tu_read_file(path, &len);
    if (!text) {
        fprintf(stderr, "test_cases: cannot read %s (set IAM_TEST_SHARED_DIR)\n", path);
        free(path);
        return 1;
    }
    free(path);
    cJSON *doc = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(doc, "cases");
    int n = cJSON_GetArraySize(cases);
    if (n <= 0) {
        fprintf(stderr, "test_cases: no cases found\n");
        cJSON_Delete(doc);
        return 1;
    }
    struct CMUnitTest *tests = calloc((size_t)n, sizeof *tests);
    int i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        tests[i].name = str_of(c, "id");
        tests[i].test_func = run_case;
        tests[i].initial_state = (void *)c;
        i++;
    }
    int failed = _cmocka_run_group_tests("handed_cases", tests, (size_t)n, NULL, NULL);
    free(tests);
    cJSON_Delete(doc);
    return failed;
}
