/*
 * fuzz_jwks.c — libFuzzer target for key input.
 *
 * Every input is fed, as given (no terminator added), to
 *   - iam_keyset_add_jwks on a fresh keyset,
 *   - iam_keyset_add_jwk  on a fresh keyset,
 *   - iam_keyset_add_pem  on a fresh keyset (no kid), and iam_pem_kid.
 * Whatever keys were accepted are then used: a few fixed tokens (the platform cases'
 * RS256/ES256 tokens, and RFC 7515 A.1/A.4, RFC 7520 4.2, RFC 8037 A.4 examples) are
 * verified against each non-empty keyset, so the keys the parser built are exercised by
 * the signature code too (odd moduli, exponents, curve points...).
 *
 * Invariants checked (abort() = a finding): every status is one the API names; a failed
 * iam_keyset_add_jwk/add_pem leaves the keyset empty; a successful add_jwks reports as
 * many keys added as the keyset holds; iam_pem_kid gives 16 lowercase hex digits.
 * Every keyset and payload is released.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "iamclient.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const TOKENS[] = {
    /* /work/shared/cases/tokens.json baseline-rs256-jwks (kid r1) */
    ("eyJhbGciOiJSUzI1NiIsImtpZCI6InIxIiwidHlwIjoiSldUIn0.eyJzdWIiOiIyIiwiZW1haWwiOiJ1c2VyQGV4"
     "YW1wbGUub3JnIiwicm9sZXMiOlsidXNlciIsInNjaWVudGlzdCJdLCJwZXJtaXNzaW9ucyI6WyJkYXRhc2V0LnJl"
     "YWQiLCJtb2RlbC51c2UiLCJ3b3JrZmxvdy5leGVjdXRlIl0sIm9yZ19pZCI6Nywib3JnX3JvbGUiOlsibWVtYmVy"
     "Il0sInRlYW1faWQiOm51bGwsInRlYW1fcm9sZSI6bnVsbCwiYXV0aF9tZXRob2QiOiJwYXNzd29yZCIsImlkcF9v"
     "cmdfaWQiOm51bGwsInRva2VuX3ZlcnNpb24iOjIsIm1mYV92ZXJpZmllZCI6dHJ1ZSwiZXhwIjoxOTAwMDAwOTAw"
     "LCJ0eXBlIjoiYWNjZXNzIiwianRpIjoiM2YxYzJiN2UtNWE0ZC00ZThmLTljMWItMmEzZDRlNWY2YTdiIiwiaXNz"
     "Ijoib21uaWJpb2FpLWF1dGgiLCJhdWQiOiJvbW5pYmlvYWktcGxhdGZvcm0ifQ.cJo4tJXxHrUDX0wnYJw9VX5gq"
     "YKmBu-9Q1czNk8w-J7WIaTEqCcZgy-FLY1tgrTdRjN0Fp6C8Hzlp-YGaHkK9w0ldsHudWLDn8pE_nB107sao_fBb"
     "93BzHpMM7kLnZSAwF6fE1kvJ-zcXz5NfUlGNKZ-TyuMfxCN5UMVLTAzmqTpkHTJhPdQtZ-S6i5YxGqdAFDSFt4_Y"
     "7hZgh3SryFTFI1WbbcufQy_5_XD_foRKEsr4UGWSsB_eY5gwoLiFX_Q6snONqB_lL_n9wAmBgUSEqwFji22zWk3G"
     "_auyYBL6VfxL8qkWPgHBuiQrtIleDrfNzvUcWA7UodmDAWhqaff5Q"),
    /* /work/shared/cases/tokens.json baseline-es256-jwks (kid e1) */
    ("eyJhbGciOiJFUzI1NiIsImtpZCI6ImUxIiwidHlwIjoiSldUIn0.eyJzdWIiOiIyIiwiZW1haWwiOiJ1c2VyQGV4"
     "YW1wbGUub3JnIiwicm9sZXMiOlsidXNlciIsInNjaWVudGlzdCJdLCJwZXJtaXNzaW9ucyI6WyJkYXRhc2V0LnJl"
     "YWQiLCJtb2RlbC51c2UiLCJ3b3JrZmxvdy5leGVjdXRlIl0sIm9yZ19pZCI6Nywib3JnX3JvbGUiOlsibWVtYmVy"
     "Il0sInRlYW1faWQiOm51bGwsInRlYW1fcm9sZSI6bnVsbCwiYXV0aF9tZXRob2QiOiJwYXNzd29yZCIsImlkcF9v"
     "cmdfaWQiOm51bGwsInRva2VuX3ZlcnNpb24iOjIsIm1mYV92ZXJpZmllZCI6dHJ1ZSwiZXhwIjoxOTAwMDAwOTAw"
     "LCJ0eXBlIjoiYWNjZXNzIiwianRpIjoiM2YxYzJiN2UtNWE0ZC00ZThmLTljMWItMmEzZDRlNWY2YTdiIiwiaXNz"
     "Ijoib21uaWJpb2FpLWF1dGgiLCJhdWQiOiJvbW5pYmlvYWktcGxhdGZvcm0ifQ.aBqEYL6eeCgNgkIlJ9fRkeXre"
     "I6_fF7ORVYjqBGAM3WGxOrogZ_rvg648ptBrQSBcdaZqDW6pGCZ2Vgz7ARUaA"),
    /* RFC 7515 A.1 (HS256, no kid) */
    ("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQo"
     "gImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOE"
     "jXk"),
    /* RFC 7515 A.4 (ES512, no kid) */
    ("eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA.AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPW"
     "ROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKv"
     "U8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn"),
    /* RFC 7520 4.2 (PS384, kid bilbo.baggins@hobbiton.example) */
    ("eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.SXTigJlzIGEgZGF"
     "uZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9"
     "hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW9"
     "1IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1"
     "xEsnk2IpN6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFl"
     "fz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRXe8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2"
     "Xez2Mlp8cBE5awDzT0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a6GYmJUAfm"
     "WjwZ6oD4ifKo8DYM-X72Eaw"),
    /* RFC 8037 A.4 (EdDSA, no kid) */
    ("eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09P"
     "GcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"),
};

static void check_status(iam_status st, const iam_error *err)
{
    if (strcmp(iam_status_name(st), "unknown") == 0 || iam_strerror(st) == NULL)
        abort();
    if (err && st != IAM_OK && memchr(err->message, '\0', sizeof err->message) == NULL)
        abort();
}

static void use_keys(const iam_keyset *ks)
{
    if (iam_keyset_count(ks) == 0)
        return;
    for (size_t i = 0; i < sizeof TOKENS / sizeof TOKENS[0]; i++) {
        char *payload = NULL;
        size_t len = 0;
        iam_error err;
        iam_status st = iam_jws_verify(TOKENS[i], strlen(TOKENS[i]), ks, &payload, &len, &err);
        check_status(st, &err);
        if ((st == IAM_OK) != (payload != NULL))
            abort();
        iam_free(payload);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    iam_error err;

    /* JWKS document */
    iam_keyset *ks = iam_keyset_new();
    if (!ks)
        abort();
    size_t added = 0, skipped = 0;
    memset(&err, 0x41, sizeof err);
    iam_status st = iam_keyset_add_jwks(ks, text, size, &added, &skipped, &err);
    check_status(st, &err);
    if (st == IAM_OK && iam_keyset_count(ks) != added)
        abort();
    use_keys(ks);
    iam_keyset_release(ks);

    /* the same with the optional outputs omitted */
    ks = iam_keyset_new();
    if (!ks)
        abort();
    check_status(iam_keyset_add_jwks(ks, text, size, NULL, NULL, NULL), NULL);
    iam_keyset_release(ks);

    /* one JWK */
    ks = iam_keyset_new();
    if (!ks)
        abort();
    memset(&err, 0x41, sizeof err);
    st = iam_keyset_add_jwk(ks, text, size, &err);
    check_status(st, &err);
    if (iam_keyset_count(ks) != (st == IAM_OK ? 1u : 0u))
        abort();
    use_keys(ks);
    iam_keyset_release(ks);

    /* PEM public key or certificate */
    ks = iam_keyset_new();
    if (!ks)
        abort();
    memset(&err, 0x41, sizeof err);
    st = iam_keyset_add_pem(ks, text, size, NULL, &err);
    check_status(st, &err);
    if (iam_keyset_count(ks) != (st == IAM_OK ? 1u : 0u))
        abort();
    use_keys(ks);
    iam_keyset_release(ks);

    char kid[17];
    memset(kid, 'x', sizeof kid);
    st = iam_pem_kid(text, size, kid);
    check_status(st, NULL);
    if (st == IAM_OK) {
        for (size_t i = 0; i < 16; i++)
            if (!((kid[i] >= '0' && kid[i] <= '9') || (kid[i] >= 'a' && kid[i] <= 'f')))
                abort();
        if (kid[16] != '\0')
            abort();
    }
    return 0;
}
