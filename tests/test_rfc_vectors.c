/*
 * test_rfc_vectors.c — the published JWS examples, verified through the public API.
 *
 *   RFC 7515 Appendix A.1 (HS256), A.2 (RS256), A.3 (ES256), A.4 (ES512);
 *   RFC 7515 Appendix A.5 (unsecured, alg "none") must be refused;
 *   RFC 7520 §4.1 (RS256), §4.2 (PS384), §4.3 (ES512), §4.4 (HS256), compact form;
 *   RFC 8037 Appendix A.4 (Ed25519 / EdDSA), key from Appendix A.1.
 *
 * Each vector lives in tests/data/rfc/<name>.json:
 *   {"source": ..., "alg": ..., "jwk": {the RFC's JWK, private members included},
 *    "compact": "<the RFC's compact serialization, verbatim>",
 *    "payload_hex": "<the RFC's payload octets>"}
 * The ECDSA and RSA-PSS signatures are randomized, so only the RFCs' exact strings
 * can be used; the files hold them byte for byte.
 *
 * For every vector:
 *   - verify with a keyset holding only the example's key (added with
 *     iam_keyset_add_jwk, the JWK as given): IAM_OK and the payload bytes exactly;
 *   - the same token with one bit of the signature flipped: IAM_E_BAD_SIGNATURE;
 *   - a keyset holding only a key of another type: IAM_E_UNKNOWN_KEY.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "iamclient.h"
#include "mint.h"
#include "testutil.h"

/* ------------------------------------------------------------------------- */
/* Loading the vectors                                                       */
/* ------------------------------------------------------------------------- */

typedef struct vector {
    char *source;        /* which RFC section */
    char *alg;
    char *jwk;           /* JSON text of the RFC's JWK; NULL for the unsecured example */
    char *compact;       /* the compact serialization, verbatim */
    unsigned char *payload;
    size_t payload_len;
} vector;

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static const char *member_string(const cJSON *obj, const char *name)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(m) || !m->valuestring) {
        print_error("vector member \"%s\" missing or not a string\n", name);
        fail();
    }
    return m->valuestring;
}

/* Loads tests/data/rfc/<name>.json. Caller frees with vector_free. */
static vector *vector_load(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "rfc/%s.json", name);
    char *path = tu_data_path(rel);
    assert_non_null(path);
    size_t len = 0;
    char *text = tu_read_file(path, &len);
    if (!text) {
        print_error("cannot read %s (set IAM_TEST_DATA_DIR to tests/data)\n", path);
        free(path);
        fail();
    }
    free(path);

    cJSON *doc = cJSON_ParseWithLength(text, len);
    free(text);
    assert_non_null(doc);

    vector *v = calloc(1, sizeof *v);
    assert_non_null(v);
    v->source = dup_string(member_string(doc, "source"));
    v->alg = dup_string(member_string(doc, "alg"));
    v->compact = dup_string(member_string(doc, "compact"));

    const cJSON *jwk = cJSON_GetObjectItemCaseSensitive(doc, "jwk");
    if (jwk) {
        assert_true(cJSON_IsObject(jwk));
        char *printed = cJSON_PrintUnformatted(jwk);
        assert_non_null(printed);
        v->jwk = dup_string(printed);
        cJSON_free(printed);
    }

    const char *hex = member_string(doc, "payload_hex");
    size_t hex_len = strlen(hex);
    assert_int_equal(hex_len % 2, 0);
    v->payload_len = hex_len / 2;
    v->payload = malloc(v->payload_len + 1);
    assert_non_null(v->payload);
    for (size_t i = 0; i < v->payload_len; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        assert_true(hi >= 0 && lo >= 0);
        v->payload[i] = (unsigned char)(hi * 16 + lo);
    }
    cJSON_Delete(doc);
    return v;
}

static void vector_free(vector *v)
{
    if (!v)
        return;
    free(v->source);
    free(v->alg);
    free(v->jwk);
    free(v->compact);
    free(v->payload);
    free(v);
}

/* ------------------------------------------------------------------------- */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------- */

/* A keyset holding exactly the given JWKs (NULL-terminated list of JSON texts). */
static iam_keyset *keyset_of(const char *const *jwks)
{
    iam_keyset *ks = iam_keyset_new();
    assert_non_null(ks);
    size_t n = 0;
    for (; jwks[n]; n++) {
        iam_error err;
        memset(&err, 0, sizeof err);
        iam_status st = iam_keyset_add_jwk(ks, jwks[n], strlen(jwks[n]), &err);
        if (st != IAM_OK) {
            print_error("iam_keyset_add_jwk(%s) = %s (%s)\n", jwks[n], iam_status_name(st),
                        err.message);
            iam_keyset_release(ks);
            fail();
        }
    }
    assert_int_equal(iam_keyset_count(ks), n);
    return ks;
}

static iam_keyset *keyset_of_one(const char *jwk)
{
    const char *list[2] = {jwk, NULL};
    return keyset_of(list);
}

/* iam_jws_verify must give `want`; on failure the payload must be NULL. */
static void expect_status(const char *what, const char *jws, const iam_keyset *ks,
                          iam_status want)
{
    static char sentinel[] = "sentinel";
    char *payload = sentinel;
    size_t payload_len = 12345;
    iam_error err;
    memset(&err, 0, sizeof err);
    iam_status st = iam_jws_verify(jws, strlen(jws), ks, &payload, &payload_len, &err);
    if (st != want) {
        print_error("%s: iam_jws_verify = %s (%d, \"%s\"), want %s (%d)\n", what,
                    iam_status_name(st), (int)st, err.message, iam_status_name(want), (int)want);
        if (st == IAM_OK)
            iam_free(payload);
        fail();
    }
    if (want != IAM_OK) {
        assert_null(payload);
        assert_int_equal(err.code, want);
    } else {
        iam_free(payload);
    }
}

/* The vector verifies with `ks` and yields exactly the RFC's payload octets. */
static void expect_verified(const vector *v, const iam_keyset *ks)
{
    char *payload = NULL;
    size_t payload_len = 0;
    iam_error err;
    memset(&err, 0, sizeof err);
    iam_status st = iam_jws_verify(v->compact, strlen(v->compact), ks, &payload, &payload_len,
                                   &err);
    if (st != IAM_OK) {
        print_error("%s (%s): iam_jws_verify = %s (%d, \"%s\"), want ok\n", v->source, v->alg,
                    iam_status_name(st), (int)st, err.message);
        fail();
    }
    assert_non_null(payload);
    assert_int_equal(payload_len, v->payload_len);
    assert_memory_equal(payload, v->payload, v->payload_len);
    assert_int_equal(payload[payload_len], '\0'); /* documented convenience terminator */
    iam_free(payload);
}

/* Strict base64url (no padding) decoder for the tests' own use. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *out_len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char *out = malloc(n * 3 / 4 + 3);
    assert_non_null(out);
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = memchr(alphabet, s[i], 64);
        assert_non_null(p);
        acc = (acc << 6) | (uint32_t)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    *out_len = o;
    return out;
}

/* The token with bit 0 of the last signature octet flipped (re-encoded canonically). */
static char *flip_signature_bit(const char *compact)
{
    const char *dot = strrchr(compact, '.');
    assert_non_null(dot);
    size_t prefix = (size_t)(dot - compact) + 1;
    size_t sig_len = 0;
    unsigned char *sig = b64url_decode(dot + 1, strlen(dot + 1), &sig_len);
    assert_true(sig_len > 0);
    sig[sig_len - 1] ^= 0x01;
    char *enc = mint_b64url(sig, sig_len);
    free(sig);
    assert_non_null(enc);
    size_t total = prefix + strlen(enc) + 1;
    char *out = malloc(total);
    assert_non_null(out);
    memcpy(out, compact, prefix);
    memcpy(out + prefix, enc, strlen(enc) + 1);
    free(enc);
    assert_string_not_equal(out, compact);
    assert_int_equal(strlen(out), strlen(compact));
    return out;
}

/* ------------------------------------------------------------------------- */
/* The three checks, per vector                                              */
/* ------------------------------------------------------------------------- */

static void check_verifies(const char *name)
{
    vector *v = vector_load(name);
    assert_non_null(v->jwk);
    iam_keyset *ks = keyset_of_one(v->jwk);
    expect_verified(v, ks);
    iam_keyset_release(ks);
    vector_free(v);
}

static void check_flipped_bit(const char *name)
{
    vector *v = vector_load(name);
    iam_keyset *ks = keyset_of_one(v->jwk);
    char *bad = flip_signature_bit(v->compact);
    expect_status(v->source, bad, ks, IAM_E_BAD_SIGNATURE);
    free(bad);
    iam_keyset_release(ks);
    vector_free(v);
}

/* `other` names the vector whose key (of another type) is the only one held. */
static void check_other_key_type(const char *name, const char *other)
{
    vector *v = vector_load(name);
    vector *o = vector_load(other);
    iam_keyset *ks = keyset_of_one(o->jwk);
    expect_status(v->source, v->compact, ks, IAM_E_UNKNOWN_KEY);
    iam_keyset_release(ks);
    vector_free(o);
    vector_free(v);
}

#define RFC_VECTOR(id, file, other_file)                                                       \
    static void test_##id(void **state)                                                        \
    {                                                                                          \
        (void)state;                                                                           \
        check_verifies(file);                                                                  \
    }                                                                                          \
    static void test_##id##_flipped_signature_bit(void **state)                                \
    {                                                                                          \
        (void)state;                                                                           \
        check_flipped_bit(file);                                                               \
    }                                                                                          \
    static void test_##id##_only_other_key_type(void **state)                                  \
    {                                                                                          \
        (void)state;                                                                           \
        check_other_key_type(file, other_file);                                                \
    }

/* vector id                 data file            only key held for the unknown-key case  */
RFC_VECTOR(rfc7515_a1_hs256, "rfc7515-a1-hs256", "rfc7515-a2-rs256")  /* oct   vs RSA     */
RFC_VECTOR(rfc7515_a2_rs256, "rfc7515-a2-rs256", "rfc7515-a3-es256")  /* RSA   vs EC P-256 */
RFC_VECTOR(rfc7515_a3_es256, "rfc7515-a3-es256", "rfc7515-a1-hs256")  /* EC    vs oct     */
RFC_VECTOR(rfc7515_a4_es512, "rfc7515-a4-es512", "rfc8037-a4-eddsa")  /* EC    vs OKP     */
RFC_VECTOR(rfc7520_4_1_rs256, "rfc7520-4.1-rs256", "rfc7520-4.3-es512") /* RSA vs EC, same kid */
RFC_VECTOR(rfc7520_4_2_ps384, "rfc7520-4.2-ps384", "rfc7520-4.4-hs256") /* RSA vs oct     */
RFC_VECTOR(rfc7520_4_3_es512, "rfc7520-4.3-es512", "rfc7520-4.1-rs256") /* EC vs RSA, same kid */
RFC_VECTOR(rfc7520_4_4_hs256, "rfc7520-4.4-hs256", "rfc8037-a4-eddsa") /* oct vs OKP      */
RFC_VECTOR(rfc8037_a4_eddsa, "rfc8037-a4-eddsa", "rfc7515-a3-es256")  /* OKP   vs EC      */

/* ------------------------------------------------------------------------- */
/* Across vectors                                                            */
/* ------------------------------------------------------------------------- */

/* Every distinct key of the examples (RFC 7520 §4.1 and §4.2 share one RSA key). */
static const char *const all_key_files[] = {
    "rfc7515-a1-hs256", "rfc7515-a2-rs256",  "rfc7515-a3-es256",  "rfc7515-a4-es512",
    "rfc7520-4.1-rs256", "rfc7520-4.3-es512", "rfc7520-4.4-hs256", "rfc8037-a4-eddsa",
};
#define N_KEY_FILES (sizeof all_key_files / sizeof all_key_files[0])

static iam_keyset *keyset_of_all_examples(void)
{
    vector *v[N_KEY_FILES];
    const char *jwks[N_KEY_FILES + 1];
    for (size_t i = 0; i < N_KEY_FILES; i++) {
        v[i] = vector_load(all_key_files[i]);
        jwks[i] = v[i]->jwk;
    }
    jwks[N_KEY_FILES] = NULL;
    iam_keyset *ks = keyset_of(jwks);
    for (size_t i = 0; i < N_KEY_FILES; i++)
        vector_free(v[i]);
    return ks;
}

/* RFC 7515 A.5: an unsecured JWS is refused as an unsupported alg, whatever keys are held. */
static void test_rfc7515_a5_none_rejected(void **state)
{
    (void)state;
    vector *v = vector_load("rfc7515-a5-none");
    assert_null(v->jwk);

    iam_keyset *all = keyset_of_all_examples();
    expect_status(v->source, v->compact, all, IAM_E_UNSUPPORTED_ALG);
    iam_keyset_release(all);

    iam_keyset *empty = iam_keyset_new();
    assert_non_null(empty);
    expect_status(v->source, v->compact, empty, IAM_E_UNSUPPORTED_ALG);
    iam_keyset_release(empty);
    vector_free(v);
}

/* Each vector also verifies when the keyset holds every example key: the tokens without
 * a kid (RFC 7515, RFC 8037) must find their key among several of the same type. */
static void test_all_vectors_with_all_keys(void **state)
{
    (void)state;
    static const char *const vectors[] = {
        "rfc7515-a1-hs256",  "rfc7515-a2-rs256",  "rfc7515-a3-es256",
        "rfc7515-a4-es512",  "rfc7520-4.1-rs256", "rfc7520-4.2-ps384",
        "rfc7520-4.3-es512", "rfc7520-4.4-hs256", "rfc8037-a4-eddsa",
    };
    iam_keyset *all = keyset_of_all_examples();
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        vector *v = vector_load(vectors[i]);
        expect_verified(v, all);
        vector_free(v);
    }
    iam_keyset_release(all);
}

/* An EC key of the wrong curve cannot verify: ES256 with only a P-521 key, ES512 with only
 * a P-256 key. */
static void test_es_with_only_a_key_of_another_curve(void **state)
{
    (void)state;
    vector *es256 = vector_load("rfc7515-a3-es256");
    vector *es512 = vector_load("rfc7515-a4-es512");

    iam_keyset *p521 = keyset_of_one(es512->jwk);
    expect_status(es256->source, es256->compact, p521, IAM_E_UNKNOWN_KEY);
    iam_keyset_release(p521);

    iam_keyset *p256 = keyset_of_one(es256->jwk);
    expect_status(es512->source, es512->compact, p256, IAM_E_UNKNOWN_KEY);
    iam_keyset_release(p256);

    vector_free(es512);
    vector_free(es256);
}

#define RFC_TESTS(id)                                                                          \
    cmocka_unit_test(test_##id), cmocka_unit_test(test_##id##_flipped_signature_bit),          \
        cmocka_unit_test(test_##id##_only_other_key_type)

int main(void)
{
    const struct CMUnitTest tests[] = {
        RFC_TESTS(rfc7515_a1_hs256),
        RFC_TESTS(rfc7515_a2_rs256),
        RFC_TESTS(rfc7515_a3_es256),
        RFC_TESTS(rfc7515_a4_es512),
        cmocka_unit_test(test_rfc7515_a5_none_rejected),
        RFC_TESTS(rfc7520_4_1_rs256),
        RFC_TESTS(rfc7520_4_2_ps384),
        RFC_TESTS(rfc7520_4_3_es512),
        RFC_TESTS(rfc7520_4_4_hs256),
        RFC_TESTS(rfc8037_a4_eddsa),
        cmocka_unit_test(test_all_vectors_with_all_keys),
        cmocka_unit_test(test_es_with_only_a_key_of_another_curve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
