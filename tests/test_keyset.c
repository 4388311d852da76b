/*
 * test_keyset.c — the keyset API (HMAC secrets, PEM, JWK, JWKS, kid, refcounting) and
 * the HMAC construction of src/jose/hmac.c against OpenSSL's EVP_Q_mac and RFC 4231.
 *
 * Keys come from tests/support/mint.c (an independent minter); JWKs that must be
 * malformed in one precise way are assembled here from the key's OpenSSL parameters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "jose/jose.h"
#include "mint.h"
#include "testutil.h"

/* ------------------------------------------------------------------ fixtures */

enum { K_RSA, K_P256, K_P384, K_P521, K_ED25519, K_RSA1024, K_COUNT };
static const char *const KEY_TYPES[K_COUNT] = {"rsa2048", "p256",    "p384",
                                               "p521",    "ed25519", "rsa1024"};
static mint_key *keys[K_COUNT];
static char *pems[K_COUNT];

static int group_setup(void **state)
{
    (void)state;
    for (int i = 0; i < K_COUNT; i++) {
        keys[i] = mint_key_generate(KEY_TYPES[i]);
        pems[i] = mint_key_public_pem(keys[i]);
        if (!keys[i] || !pems[i])
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < K_COUNT; i++) {
        mint_key_free(keys[i]);
        free(pems[i]);
    }
    return 0;
}

static int ks_setup(void **state)
{
    iam_keyset *ks = iam_keyset_new();
    if (!ks)
        return -1;
    *state = ks;
    return 0;
}

static int ks_teardown(void **state)
{
    iam_keyset_release(*state);
    return 0;
}

#define T(f) cmocka_unit_test_setup_teardown(f, ks_setup, ks_teardown)

/* ------------------------------------------------------------------ helpers */

static char *fmt(const char *f, ...) IAM_PRINTF(1, 2);
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    assert_true(n >= 0);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

/* Checks that a failing call filled err consistently. */
static void check_err(iam_status st, const iam_error *err)
{
    if (st != IAM_OK) {
        if (err->code != st)
            fail_msg("err.code %d differs from the returned status %d", err->code, st);
        if (err->message[0] == '\0')
            fail_msg("status %d without an error message", st);
    }
}

static iam_status add_jwk(iam_keyset *ks, const char *json)
{
    iam_error err;
    memset(&err, 0, sizeof err);
    iam_status st = iam_keyset_add_jwk(ks, json, strlen(json), &err);
    check_err(st, &err);
    return st;
}

static iam_status add_pem(iam_keyset *ks, const char *pem, const char *kid)
{
    iam_error err;
    memset(&err, 0, sizeof err);
    iam_status st = iam_keyset_add_pem(ks, pem, strlen(pem), kid, &err);
    check_err(st, &err);
    return st;
}

static iam_status add_jwks(iam_keyset *ks, const char *json, size_t len, size_t *added,
                           size_t *skipped)
{
    iam_error err;
    memset(&err, 0, sizeof err);
    iam_status st = iam_keyset_add_jwks(ks, json, len, added, skipped, &err);
    check_err(st, &err);
    return st;
}

#define expect_jwk(ks, json, want)                                                          \
    do {                                                                                    \
        size_t before_ = iam_keyset_count(ks);                                              \
        iam_status st_ = add_jwk(ks, json);                                                 \
        if (st_ != (want))                                                                  \
            fail_msg("add_jwk(%s) = %s, expected %s", json, iam_status_name(st_),           \
                     iam_status_name(want));                                                \
        assert_int_equal(iam_keyset_count(ks), before_ + ((want) == IAM_OK ? 1 : 0));       \
    } while (0)

/* The public EVP_PKEY of a generated key, through its PEM (caller frees). */
static EVP_PKEY *public_pkey(int which)
{
    BIO *bio = BIO_new_mem_buf(pems[which], -1);
    assert_non_null(bio);
    EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(pkey);
    return pkey;
}

/* Big-endian bytes of a BIGNUM parameter, left-padded to pad bytes (0: minimal). */
static unsigned char *bn_bytes(EVP_PKEY *pkey, const char *param, size_t pad, size_t *len)
{
    BIGNUM *bn = NULL;
    assert_true(EVP_PKEY_get_bn_param(pkey, param, &bn));
    size_t n = pad ? pad : (size_t)BN_num_bytes(bn);
    unsigned char *buf = malloc(n);
    assert_non_null(buf);
    assert_int_equal(BN_bn2binpad(bn, buf, (int)n), (int)n);
    BN_free(bn);
    *len = n;
    return buf;
}

static size_t coord_size(int which)
{
    return which == K_P256 ? 32 : which == K_P384 ? 48 : 66;
}

static const char *crv_name(int which)
{
    return which == K_P256 ? "P-256" : which == K_P384 ? "P-384" : "P-521";
}

/* EC JWK from raw coordinate bytes. */
static char *ec_jwk(const char *crv, const unsigned char *x, size_t xlen, const unsigned char *y,
                    size_t ylen)
{
    char *bx = mint_b64url(x, xlen), *by = mint_b64url(y, ylen);
    char *s = fmt("{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}", crv, bx, by);
    free(bx);
    free(by);
    return s;
}

/* RSA JWK of key `which` with exponent bytes e (or the key's own when e == NULL). */
static char *rsa_jwk(int which, const unsigned char *e, size_t elen)
{
    EVP_PKEY *pkey = public_pkey(which);
    size_t nlen, own_elen;
    unsigned char *n = bn_bytes(pkey, OSSL_PKEY_PARAM_RSA_N, 0, &nlen);
    unsigned char *own_e = bn_bytes(pkey, OSSL_PKEY_PARAM_RSA_E, 0, &own_elen);
    char *bn = mint_b64url(n, nlen);
    char *be = e ? mint_b64url(e, elen) : mint_b64url(own_e, own_elen);
    char *s = fmt("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", bn, be);
    free(bn);
    free(be);
    free(n);
    free(own_e);
    EVP_PKEY_free(pkey);
    return s;
}

/* mint's JWK of key `which` with extra members inserted first ("\"use\":\"enc\""). */
static char *jwk_with(int which, const char *extra)
{
    char *base = mint_key_public_jwk(keys[which], NULL, NULL);
    assert_true(base[0] == '{');
    char *s = fmt("{%s,%s", extra, base + 1);
    free(base);
    return s;
}

static char *oct_jwk(size_t len, const char *extra)
{
    unsigned char *secret = malloc(len ? len : 1);
    assert_non_null(secret);
    for (size_t i = 0; i < len; i++)
        secret[i] = (unsigned char)(i * 7 + 1);
    char *k = mint_b64url(secret, len);
    char *s = fmt("{\"kty\":\"oct\",\"k\":\"%s\"%s%s}", k, extra ? "," : "", extra ? extra : "");
    free(k);
    free(secret);
    return s;
}

static const iam_key *last_key(const iam_keyset *ks)
{
    assert_true(ks->count > 0);
    return &ks->keys[ks->count - 1];
}

/* --------------------------------------------------------------- lifecycle */

static void test_new_keyset_is_empty(void **state)
{
    iam_keyset *ks = *state;
    assert_int_equal(iam_keyset_count(ks), 0);
    assert_int_equal(iam_keyset_count(NULL), 0);
}

static void test_retain_release(void **state)
{
    (void)state;
    iam_keyset *ks = iam_keyset_new();
    assert_non_null(ks);
    unsigned char secret[32] = {1};
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 32, "k", NULL), IAM_OK);
    assert_int_equal(atomic_load(&ks->refs), 1);
    assert_ptr_equal(iam_keyset_retain(ks), ks);
    assert_int_equal(atomic_load(&ks->refs), 2);
    assert_ptr_equal(iam_keyset_retain(ks), ks);
    assert_int_equal(atomic_load(&ks->refs), 3);
    iam_keyset_release(ks);
    assert_int_equal(atomic_load(&ks->refs), 2);
    iam_keyset_release(ks);
    /* still alive and usable with one reference */
    assert_int_equal(atomic_load(&ks->refs), 1);
    assert_int_equal(iam_keyset_count(ks), 1);
    assert_string_equal(ks->keys[0].kid, "k");
    iam_keyset_release(ks); /* the last: frees (ASan/LSan check the rest) */
}

static void test_retain_release_null(void **state)
{
    (void)state;
    assert_null(iam_keyset_retain(NULL));
    iam_keyset_release(NULL);
}

/* -------------------------------------------------------------------- HMAC */

static void test_hmac_secret_sizes(void **state)
{
    iam_keyset *ks = *state;
    unsigned char secret[IAM_MAX_HMAC_KEY_BYTES + 1];
    memset(secret, 's', sizeof secret);
    iam_error err;
    assert_int_equal(iam_keyset_add_hmac(ks, secret, IAM_MIN_HMAC_KEY_BYTES - 1, NULL, &err),
                     IAM_E_BAD_KEY);
    assert_int_equal(err.code, IAM_E_BAD_KEY);
    assert_null(strstr(err.message, "sssss")); /* never the secret */
    assert_int_equal(iam_keyset_count(ks), 0);
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 0, NULL, &err), IAM_E_BAD_KEY);
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 1, NULL, &err), IAM_E_BAD_KEY);
    assert_int_equal(iam_keyset_count(ks), 0);
    assert_int_equal(iam_keyset_add_hmac(ks, secret, IAM_MIN_HMAC_KEY_BYTES, NULL, &err), IAM_OK);
    assert_int_equal(iam_keyset_count(ks), 1);
    assert_int_equal(last_key(ks)->type, KEY_HMAC);
    assert_int_equal(last_key(ks)->secret_len, 32);
    assert_null(last_key(ks)->kid);
    assert_int_equal(iam_keyset_add_hmac(ks, secret, IAM_MAX_HMAC_KEY_BYTES, NULL, &err), IAM_OK);
    assert_int_equal(iam_keyset_count(ks), 2);
    assert_int_equal(last_key(ks)->secret_len, IAM_MAX_HMAC_KEY_BYTES);
    assert_int_equal(iam_keyset_add_hmac(ks, secret, IAM_MAX_HMAC_KEY_BYTES + 1, NULL, &err),
                     IAM_E_BAD_KEY);
    assert_int_equal(err.code, IAM_E_BAD_KEY);
    assert_int_equal(iam_keyset_count(ks), 2);
}

static void test_hmac_invalid_arguments(void **state)
{
    iam_keyset *ks = *state;
    unsigned char secret[32] = {0};
    assert_int_equal(iam_keyset_add_hmac(NULL, secret, 32, NULL, NULL), IAM_E_INVALID_ARGUMENT);
    assert_int_equal(iam_keyset_add_hmac(ks, NULL, 32, NULL, NULL), IAM_E_INVALID_ARGUMENT);
    assert_int_equal(iam_keyset_count(ks), 0);
}

static void test_hmac_kid(void **state)
{
    iam_keyset *ks = *state;
    unsigned char secret[32];
    memset(secret, 7, sizeof secret);
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 32, "k1", NULL), IAM_OK);
    assert_string_equal(last_key(ks)->kid, "k1");
    assert_int_equal(last_key(ks)->kid_len, 2);
    char kid[IAM_MAX_KID_BYTES + 2];
    memset(kid, 'k', IAM_MAX_KID_BYTES);
    kid[IAM_MAX_KID_BYTES] = '\0';
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 32, kid, NULL), IAM_OK);
    assert_int_equal(last_key(ks)->kid_len, IAM_MAX_KID_BYTES);
    kid[IAM_MAX_KID_BYTES] = 'k';
    kid[IAM_MAX_KID_BYTES + 1] = '\0';
    iam_error err;
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 32, kid, &err), IAM_E_BAD_KEY);
    assert_int_equal(err.code, IAM_E_BAD_KEY);
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 32, "", &err), IAM_E_BAD_KEY);
    assert_int_equal(iam_keyset_count(ks), 2);
}

static void test_hmac_key_states_match_evp(void **state)
{
    iam_keyset *ks = *state;
    unsigned char secret[48];
    for (size_t i = 0; i < sizeof secret; i++)
        secret[i] = (unsigned char)(0xA0 ^ i);
    assert_int_equal(iam_keyset_add_hmac(ks, secret, sizeof secret, NULL, NULL), IAM_OK);
    static const char msg[] = "header.payload";
    unsigned char got[64], want[64];
    size_t want_len = 0;
    assert_int_equal(hmac_compute(last_key(ks)->hmac, HASH_SHA384, (const unsigned char *)msg,
                                  strlen(msg), got),
                     48);
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA384", NULL, secret, sizeof secret,
                              (const unsigned char *)msg, strlen(msg), want, sizeof want, &want_len));
    assert_int_equal(want_len, 48);
    assert_memory_equal(got, want, 48);
}

static void test_hmac_size_per_alg(void **state)
{
    iam_keyset *ks = *state;
    unsigned char secret[64] = {3};
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 32, NULL, NULL), IAM_OK);
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 48, NULL, NULL), IAM_OK);
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 64, NULL, NULL), IAM_OK);
    const alg_info *hs256 = alg_find("HS256", 5), *hs384 = alg_find("HS384", 5),
                   *hs512 = alg_find("HS512", 5), *rs256 = alg_find("RS256", 5);
    assert_non_null(hs256);
    assert_non_null(hs384);
    assert_non_null(hs512);
    assert_non_null(rs256);
    /* RFC 7518 §3.2: HS384/HS512 need 48/64 bytes */
    assert_true(key_fits_alg(&ks->keys[0], hs256));
    assert_false(key_fits_alg(&ks->keys[0], hs384));
    assert_false(key_fits_alg(&ks->keys[0], hs512));
    assert_true(key_fits_alg(&ks->keys[1], hs384));
    assert_false(key_fits_alg(&ks->keys[1], hs512));
    assert_true(key_fits_alg(&ks->keys[2], hs512));
    assert_false(key_fits_alg(&ks->keys[2], rs256)); /* a secret is never an RSA key */
}

static void test_keyset_full(void **state)
{
    iam_keyset *ks = *state;
    unsigned char secret[32];
    for (int i = 0; i < IAM_MAX_KEYS; i++) {
        memset(secret, i, sizeof secret);
        assert_int_equal(iam_keyset_add_hmac(ks, secret, 32, NULL, NULL), IAM_OK);
    }
    assert_int_equal(iam_keyset_count(ks), IAM_MAX_KEYS);
    iam_error err;
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 32, NULL, &err), IAM_E_TOO_LARGE);
    assert_int_equal(err.code, IAM_E_TOO_LARGE);
    assert_int_equal(add_pem(ks, pems[K_P256], NULL), IAM_E_TOO_LARGE);
    char *jwk = mint_key_public_jwk(keys[K_ED25519], NULL, NULL);
    assert_int_equal(add_jwk(ks, jwk), IAM_E_TOO_LARGE);
    free(jwk);
    assert_int_equal(iam_keyset_count(ks), IAM_MAX_KEYS);
}

/* --------------------------------------------------------------------- PEM */

static void test_pem_public_keys(void **state)
{
    iam_keyset *ks = *state;
    static const struct {
        int which;
        key_type type;
        size_t coord;
    } want[] = {
        {K_RSA, KEY_RSA, 0},   {K_P256, KEY_EC, 32},        {K_P384, KEY_EC, 48},
        {K_P521, KEY_EC, 66}, {K_ED25519, KEY_ED25519, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        iam_status st = add_pem(ks, pems[want[i].which], NULL);
        if (st != IAM_OK)
            fail_msg("add_pem(%s) = %s", KEY_TYPES[want[i].which], iam_status_name(st));
        assert_int_equal(iam_keyset_count(ks), i + 1);
        const iam_key *k = last_key(ks);
        assert_int_equal(k->type, want[i].type);
        assert_null(k->kid);
        assert_null(k->alg);
        assert_non_null(k->pkey);
        if (want[i].type == KEY_EC)
            assert_int_equal(k->coord_bytes, want[i].coord);
        if (want[i].type == KEY_RSA)
            assert_int_equal(k->rsa_bits, 2048);
    }
    assert_int_equal(ks->keys[1].curve_nid, NID_X9_62_prime256v1);
    assert_int_equal(ks->keys[2].curve_nid, NID_secp384r1);
    assert_int_equal(ks->keys[3].curve_nid, NID_secp521r1);
}

static void test_pem_with_kid(void **state)
{
    iam_keyset *ks = *state;
    assert_int_equal(add_pem(ks, pems[K_P256], "ec-1"), IAM_OK);
    assert_string_equal(last_key(ks)->kid, "ec-1");
    assert_int_equal(last_key(ks)->kid_len, 4);
    assert_int_equal(add_pem(ks, pems[K_P256], ""), IAM_E_BAD_KEY);
    assert_int_equal(iam_keyset_count(ks), 1);
}

static void test_pem_certificate(void **state)
{
    iam_keyset *ks = *state;
    char *path = tu_shared_path("cases/keys/rsa-r1.pem");
    assert_non_null(path);
    BIO *in = BIO_new_file(path, "r");
    free(path);
    assert_non_null(in);
    EVP_PKEY *priv = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
    BIO_free(in);
    assert_non_null(priv);
    X509 *x = X509_new();
    assert_non_null(x);
    assert_true(X509_set_version(x, 2));
    assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), 1));
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_true(X509_set_pubkey(x, priv));
    X509_NAME *name = X509_get_subject_name(x);
    assert_true(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                           (const unsigned char *)"iam test", -1, -1, 0));
    assert_true(X509_set_issuer_name(x, name));
    assert_true(X509_sign(x, priv, EVP_sha256()) > 0);
    BIO *out = BIO_new(BIO_s_mem());
    assert_true(PEM_write_bio_X509(out, x));
    char *data = NULL;
    long n = BIO_get_mem_data(out, &data);
    assert_true(n > 0);
    iam_error err;
    iam_status st = iam_keyset_add_pem(ks, data, (size_t)n, "cert", &err);
    assert_int_equal(st, IAM_OK);
    assert_int_equal(last_key(ks)->type, KEY_RSA);
    assert_int_equal(last_key(ks)->rsa_bits, 2048);
    assert_int_equal(EVP_PKEY_eq(last_key(ks)->pkey, priv), 1);
    BIO_free(out);
    X509_free(x);
    EVP_PKEY_free(priv);
}

static char *private_pem(EVP_PKEY *pkey, bool traditional)
{
    BIO *out = BIO_new(BIO_s_mem());
    assert_non_null(out);
    if (traditional)
        assert_true(PEM_write_bio_PrivateKey_traditional(out, pkey, NULL, NULL, 0, NULL, NULL));
    else
        assert_true(PEM_write_bio_PrivateKey(out, pkey, NULL, NULL, 0, NULL, NULL));
    char *data = NULL;
    long n = BIO_get_mem_data(out, &data);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(out);
    return s;
}

static void test_pem_private_key_refused(void **state)
{
    iam_keyset *ks = *state;
    static const char *const files[] = {"cases/keys/rsa-r1.pem", "cases/keys/rsa-r2.pem",
                                        "cases/keys/ec-e1.pem"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *path = tu_shared_path(files[i]);
        size_t len = 0;
        char *pem = tu_read_file(path, &len);
        if (!pem)
            fail_msg("cannot read %s (set IAM_TEST_SHARED_DIR)", path);
        free(path);
        assert_non_null(strstr(pem, "PRIVATE KEY"));
        iam_error err;
        assert_int_equal(iam_keyset_add_pem(ks, pem, len, NULL, &err), IAM_E_BAD_KEY);
        assert_int_equal(err.code, IAM_E_BAD_KEY);
        free(pem);
    }
    /* generated private keys, PKCS#8 and traditional ("RSA PRIVATE KEY", "EC PRIVATE KEY") */
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(rsa);
    assert_non_null(ec);
    char *p;
    p = private_pem(rsa, false);
    assert_int_equal(add_pem(ks, p, NULL), IAM_E_BAD_KEY);
    free(p);
    p = private_pem(rsa, true);
    assert_non_null(strstr(p, "BEGIN RSA PRIVATE KEY"));
    assert_int_equal(add_pem(ks, p, NULL), IAM_E_BAD_KEY);
    free(p);
    p = private_pem(ec, true);
    assert_non_null(strstr(p, "BEGIN EC PRIVATE KEY"));
    assert_int_equal(add_pem(ks, p, NULL), IAM_E_BAD_KEY);
    free(p);
    /* a public key followed by a private key in the same text */
    char *priv = private_pem(ec, false);
    p = fmt("%s%s", pems[K_P256], priv);
    assert_int_equal(add_pem(ks, p, NULL), IAM_E_BAD_KEY);
    free(p);
    free(priv);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    assert_int_equal(iam_keyset_count(ks), 0);
}

static void test_pem_rsa1024_refused(void **state)
{
    iam_keyset *ks = *state;
    iam_error err;
    assert_int_equal(iam_keyset_add_pem(ks, pems[K_RSA1024], strlen(pems[K_RSA1024]), NULL, &err),
                     IAM_E_BAD_KEY);
    assert_int_equal(err.code, IAM_E_BAD_KEY);
    assert_int_equal(iam_keyset_count(ks), 0);
}

static char *public_pem_of(EVP_PKEY *pkey)
{
    BIO *out = BIO_new(BIO_s_mem());
    assert_non_null(out);
    assert_true(PEM_write_bio_PUBKEY(out, pkey));
    char *data = NULL;
    long n = BIO_get_mem_data(out, &data);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(out);
    return s;
}

static void test_pem_unsupported_key_types(void **state)
{
    iam_keyset *ks = *state;
    EVP_PKEY *x25519 = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    EVP_PKEY *ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
    EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    assert_non_null(x25519);
    assert_non_null(ed448);
    assert_non_null(k1);
    EVP_PKEY *all[] = {x25519, ed448, k1};
    for (size_t i = 0; i < 3; i++) {
        char *pem = public_pem_of(all[i]);
        assert_int_equal(add_pem(ks, pem, NULL), IAM_E_BAD_KEY);
        free(pem);
        EVP_PKEY_free(all[i]);
    }
    assert_int_equal(iam_keyset_count(ks), 0);
}

static void test_pem_garbage(void **state)
{
    iam_keyset *ks = *state;
    assert_int_equal(add_pem(ks, "garbage", NULL), IAM_E_BAD_KEY);
    assert_int_equal(add_pem(ks, "", NULL), IAM_E_BAD_KEY);
    assert_int_equal(add_pem(ks, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", NULL),
                     IAM_E_BAD_KEY);
    assert_int_equal(add_pem(ks, "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n", NULL),
                     IAM_E_BAD_KEY);
    /* the real key, truncated in the middle of its base64 */
    char *half = strdup(pems[K_RSA]);
    assert_non_null(half);
    half[strlen(half) / 2] = '\0';
    assert_int_equal(add_pem(ks, half, NULL), IAM_E_BAD_KEY);
    free(half);
    /* a wrong label */
    char *relabel = strdup(pems[K_P256]);
    assert_non_null(relabel);
    char *at = strstr(relabel, "PUBLIC KEY");
    memcpy(at, "PUBLIC KEX", 10);
    assert_int_equal(add_pem(ks, relabel, NULL), IAM_E_BAD_KEY);
    free(relabel);
    assert_int_equal(iam_keyset_add_pem(NULL, pems[K_P256], strlen(pems[K_P256]), NULL, NULL),
                     IAM_E_INVALID_ARGUMENT);
    assert_int_equal(iam_keyset_add_pem(ks, NULL, 10, NULL, NULL), IAM_E_INVALID_ARGUMENT);
    assert_int_equal(iam_keyset_count(ks), 0);
}

static void test_pem_length_is_respected(void **state)
{
    iam_keyset *ks = *state;
    /* text after len is not read */
    char *padded = fmt("%sGARBAGE AFTER THE KEY", pems[K_ED25519]);
    assert_int_equal(iam_keyset_add_pem(ks, padded, strlen(pems[K_ED25519]), NULL, NULL), IAM_OK);
    /* and a len that cuts the key refuses it */
    assert_int_equal(iam_keyset_add_pem(ks, padded, strlen(pems[K_ED25519]) - 30, NULL, NULL),
                     IAM_E_BAD_KEY);
    free(padded);
    assert_int_equal(iam_keyset_count(ks), 1);
}

static void test_pem_kid_known_answer(void **state)
{
    (void)state;
    char out[17];
    memset(out, 'x', sizeof out);
    /* SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223... (FIPS 180-2) */
    assert_int_equal(iam_pem_kid("abc", 3, out), IAM_OK);
    assert_string_equal(out, "ba7816bf8f01cfea");
    /* SHA-256("") = e3b0c44298fc1c14... */
    assert_int_equal(iam_pem_kid("", 0, out), IAM_OK);
    assert_string_equal(out, "e3b0c44298fc1c14");
    assert_int_equal(iam_pem_kid(NULL, 0, out), IAM_E_INVALID_ARGUMENT);
    assert_int_equal(iam_pem_kid("abc", 3, NULL), IAM_E_INVALID_ARGUMENT);
}

static void independent_kid(const char *text, size_t len, char out[17])
{
    unsigned char d[32];
    unsigned int dl = 0;
    assert_true(EVP_Digest(text, len, d, &dl, EVP_sha256(), NULL));
    assert_int_equal(dl, 32);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_pem_kid_matches_sha256_of_text(void **state)
{
    (void)state;
    for (int i = 0; i < K_COUNT; i++) {
        char got[17], want[17];
        size_t len = strlen(pems[i]);
        assert_int_equal(iam_pem_kid(pems[i], len, got), IAM_OK);
        independent_kid(pems[i], len, want);
        assert_string_equal(got, want);
        assert_int_equal(strlen(got), 16);
        /* exactly the text as given: without the final newline it differs */
        assert_int_equal(pems[i][len - 1], '\n');
        char got2[17], want2[17];
        assert_int_equal(iam_pem_kid(pems[i], len - 1, got2), IAM_OK);
        independent_kid(pems[i], len - 1, want2);
        assert_string_equal(got2, want2);
        assert_string_not_equal(got, got2);
    }
}

/* --------------------------------------------------------------------- JWK */

static void test_jwk_each_key_type(void **state)
{
    iam_keyset *ks = *state;
    static const struct {
        int which;
        key_type type;
        int nid;
    } want[] = {
        {K_RSA, KEY_RSA, 0},
        {K_P256, KEY_EC, NID_X9_62_prime256v1},
        {K_P384, KEY_EC, NID_secp384r1},
        {K_P521, KEY_EC, NID_secp521r1},
        {K_ED25519, KEY_ED25519, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *kid = fmt("kid-%zu", i);
        char *jwk = mint_key_public_jwk(keys[want[i].which], kid, NULL);
        expect_jwk(ks, jwk, IAM_OK);
        const iam_key *k = last_key(ks);
        assert_int_equal(k->type, want[i].type);
        assert_string_equal(k->kid, kid);
        assert_null(k->alg);
        if (want[i].type == KEY_EC)
            assert_int_equal(k->curve_nid, want[i].nid);
        /* the loaded key is the same public key as the PEM */
        EVP_PKEY *pub = public_pkey(want[i].which);
        assert_int_equal(EVP_PKEY_eq(k->pkey, pub), 1);
        EVP_PKEY_free(pub);
        free(jwk);
        free(kid);
    }
    /* oct */
    unsigned char secret[32];
    memset(secret, 0x42, sizeof secret);
    mint_key *h = mint_key_hmac(secret, sizeof secret);
    char *jwk = mint_key_public_jwk(h, "hk", NULL);
    expect_jwk(ks, jwk, IAM_OK);
    assert_int_equal(last_key(ks)->type, KEY_HMAC);
    assert_int_equal(last_key(ks)->secret_len, 32);
    assert_string_equal(last_key(ks)->kid, "hk");
    /* the secret is the decoded "k" */
    unsigned char got[64], want_mac[64];
    size_t wl = 0;
    hmac_compute(last_key(ks)->hmac, HASH_SHA256, (const unsigned char *)"m", 1, got);
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, 32,
                              (const unsigned char *)"m", 1, want_mac, sizeof want_mac, &wl));
    assert_memory_equal(got, want_mac, 32);
    free(jwk);
    mint_key_free(h);
    assert_int_equal(iam_keyset_count(ks), 6);
}

static void test_jwk_alg_fitting(void **state)
{
    iam_keyset *ks = *state;
    static const struct {
        int which;
        const char *alg;
        alg_id id;
    } ok[] = {
        {K_RSA, "RS256", ALG_RS256}, {K_RSA, "PS512", ALG_PS512},   {K_P256, "ES256", ALG_ES256},
        {K_P384, "ES384", ALG_ES384}, {K_P521, "ES512", ALG_ES512}, {K_ED25519, "EdDSA", ALG_EDDSA},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *jwk = mint_key_public_jwk(keys[ok[i].which], NULL, ok[i].alg);
        expect_jwk(ks, jwk, IAM_OK);
        assert_non_null(last_key(ks)->alg);
        assert_int_equal(last_key(ks)->alg->id, ok[i].id);
        free(jwk);
    }
    char *oct = oct_jwk(32, "\"alg\":\"HS256\"");
    expect_jwk(ks, oct, IAM_OK);
    assert_int_equal(last_key(ks)->alg->id, ALG_HS256);
    free(oct);
}

static void test_jwk_alg_not_fitting(void **state)
{
    iam_keyset *ks = *state;
    static const struct {
        int which;
        const char *alg;
    } bad[] = {
        {K_RSA, "ES256"},  {K_RSA, "HS256"},   {K_RSA, "EdDSA"},  {K_P256, "ES384"},
        {K_P256, "ES512"}, {K_P384, "ES256"},  {K_P521, "ES384"}, {K_P256, "RS256"},
        {K_P256, "HS256"}, {K_ED25519, "ES256"}, {K_ED25519, "RS256"},
        /* unknown or not a signature algorithm */
        {K_RSA, "none"},   {K_RSA, "rs256"},   {K_RSA, "RSA-OAEP"}, {K_P256, "ECDH-ES"},
        {K_RSA, ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *jwk = mint_key_public_jwk(keys[bad[i].which], NULL, bad[i].alg);
        expect_jwk(ks, jwk, IAM_E_BAD_KEY);
        free(jwk);
    }
    char *jwk = jwk_with(K_RSA, "\"alg\":256");
    expect_jwk(ks, jwk, IAM_E_BAD_KEY);
    free(jwk);
    char *oct = oct_jwk(32, "\"alg\":\"RS256\"");
    expect_jwk(ks, oct, IAM_E_BAD_KEY);
    free(oct);
    oct = oct_jwk(32, "\"alg\":\"ES256\"");
    expect_jwk(ks, oct, IAM_E_BAD_KEY);
    free(oct);
    assert_int_equal(iam_keyset_count(ks), 0);
}

static void test_jwk_use(void **state)
{
    iam_keyset *ks = *state;
    char *j;
    j = jwk_with(K_RSA, "\"use\":\"sig\"");
    expect_jwk(ks, j, IAM_OK);
    free(j);
    j = jwk_with(K_RSA, "\"use\":\"enc\"");
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = jwk_with(K_P256, "\"use\":\"enc\"");
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = jwk_with(K_P256, "\"use\":\"SIG\"");
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = jwk_with(K_P256, "\"use\":1");
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = jwk_with(K_P256, "\"use\":[\"sig\"]");
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = oct_jwk(32, "\"use\":\"enc\"");
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    assert_int_equal(iam_keyset_count(ks), 1);
}

static void test_jwk_key_ops(void **state)
{
    iam_keyset *ks = *state;
    static const struct {
        const char *member;
        iam_status want;
    } cases[] = {
        {"\"key_ops\":[\"verify\"]", IAM_OK},
        {"\"key_ops\":[\"sign\",\"verify\"]", IAM_OK},
        {"\"key_ops\":[\"sign\"]", IAM_E_BAD_KEY},
        {"\"key_ops\":[]", IAM_E_BAD_KEY},
        {"\"key_ops\":[\"encrypt\",\"wrapKey\"]", IAM_E_BAD_KEY},
        {"\"key_ops\":[\"Verify\"]", IAM_E_BAD_KEY},
        {"\"key_ops\":\"verify\"", IAM_E_BAD_KEY},
        {"\"key_ops\":{\"verify\":true}", IAM_E_BAD_KEY},
        {"\"key_ops\":[[\"verify\"]]", IAM_E_BAD_KEY},
    };
    size_t ok = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *j = jwk_with(K_ED25519, cases[i].member);
        expect_jwk(ks, j, cases[i].want);
        ok += cases[i].want == IAM_OK;
        free(j);
    }
    assert_int_equal(iam_keyset_count(ks), ok);
}

static void test_jwk_ec_point_not_on_curve(void **state)
{
    iam_keyset *ks = *state;
    for (int w = K_P256; w <= K_P521; w++) {
        EVP_PKEY *pkey = public_pkey(w);
        size_t xl, yl, c = coord_size(w);
        unsigned char *x = bn_bytes(pkey, OSSL_PKEY_PARAM_EC_PUB_X, c, &xl);
        unsigned char *y = bn_bytes(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, c, &yl);
        char *j = ec_jwk(crv_name(w), x, xl, y, yl);
        expect_jwk(ks, j, IAM_OK); /* the unmodified point is fine */
        free(j);
        y[yl - 1] ^= 1;
        j = ec_jwk(crv_name(w), x, xl, y, yl);
        expect_jwk(ks, j, IAM_E_BAD_KEY);
        free(j);
        y[yl - 1] ^= 1;
        x[xl / 2] ^= 0x10;
        j = ec_jwk(crv_name(w), x, xl, y, yl);
        expect_jwk(ks, j, IAM_E_BAD_KEY);
        free(j);
        /* (0, 0) */
        memset(x, 0, xl);
        memset(y, 0, yl);
        j = ec_jwk(crv_name(w), x, xl, y, yl);
        expect_jwk(ks, j, IAM_E_BAD_KEY);
        free(j);
        free(x);
        free(y);
        EVP_PKEY_free(pkey);
    }
    assert_int_equal(iam_keyset_count(ks), 3);
}

static void test_jwk_ec_other_curve_coordinates(void **state)
{
    iam_keyset *ks = *state;
    /* a valid P-384 point announced as P-256 / P-521 */
    EVP_PKEY *pkey = public_pkey(K_P384);
    size_t xl, yl;
    unsigned char *x = bn_bytes(pkey, OSSL_PKEY_PARAM_EC_PUB_X, 48, &xl);
    unsigned char *y = bn_bytes(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 48, &yl);
    char *j = ec_jwk("P-256", x, xl, y, yl);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = ec_jwk("P-521", x, xl, y, yl);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    free(x);
    free(y);
    EVP_PKEY_free(pkey);
}

static void test_jwk_ec_coordinate_length(void **state)
{
    iam_keyset *ks = *state;
    for (int w = K_P256; w <= K_P521; w++) {
        EVP_PKEY *pkey = public_pkey(w);
        size_t c = coord_size(w), xl, yl;
        unsigned char *x = bn_bytes(pkey, OSSL_PKEY_PARAM_EC_PUB_X, c, &xl);
        unsigned char *y = bn_bytes(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, c, &yl);
        /* one byte longer: a leading zero (same value) */
        unsigned char *x0 = calloc(1, c + 1), *y0 = calloc(1, c + 1);
        assert_non_null(x0);
        assert_non_null(y0);
        memcpy(x0 + 1, x, c);
        memcpy(y0 + 1, y, c);
        char *j;
        j = ec_jwk(crv_name(w), x0, c + 1, y, c);
        expect_jwk(ks, j, IAM_E_BAD_KEY);
        free(j);
        j = ec_jwk(crv_name(w), x, c, y0, c + 1);
        expect_jwk(ks, j, IAM_E_BAD_KEY);
        free(j);
        /* one byte shorter (the leading byte dropped) */
        j = ec_jwk(crv_name(w), x + 1, c - 1, y, c);
        expect_jwk(ks, j, IAM_E_BAD_KEY);
        free(j);
        j = ec_jwk(crv_name(w), x, c, y + 1, c - 1);
        expect_jwk(ks, j, IAM_E_BAD_KEY);
        free(j);
        /* y missing, x empty */
        char *bx = mint_b64url(x, c);
        j = fmt("{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\"}", crv_name(w), bx);
        expect_jwk(ks, j, IAM_E_BAD_KEY);
        free(j);
        j = fmt("{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"\",\"y\":\"%s\"}", crv_name(w), bx);
        expect_jwk(ks, j, IAM_E_BAD_KEY);
        free(j);
        free(bx);
        free(x0);
        free(y0);
        free(x);
        free(y);
        EVP_PKEY_free(pkey);
    }
    assert_int_equal(iam_keyset_count(ks), 0);
}

/* RFC 7518 §6.2.1.2: a coordinate whose value has a leading zero byte must still be sent
 * at full length. The same value with the zero byte dropped is refused (a lenient decoder
 * that left-pads would accept it). */
static void expect_short_coordinate_refused(iam_keyset *ks, const char *group, const char *crv,
                                            size_t c)
{
    for (int tries = 0; tries < 20000; tries++) {
        EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", group);
        assert_non_null(pkey);
        size_t xl, yl;
        unsigned char *x = bn_bytes(pkey, OSSL_PKEY_PARAM_EC_PUB_X, c, &xl);
        unsigned char *y = bn_bytes(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, c, &yl);
        EVP_PKEY_free(pkey);
        bool found = x[0] == 0;
        if (found) {
            char *j = ec_jwk(crv, x, c, y, c);
            expect_jwk(ks, j, IAM_OK); /* full length: fine */
            free(j);
            j = ec_jwk(crv, x + 1, c - 1, y, c); /* same value, one byte short */
            expect_jwk(ks, j, IAM_E_BAD_KEY);
            free(j);
        }
        free(x);
        free(y);
        if (found)
            return;
    }
    fail_msg("no %s key with a leading zero byte in x was generated", crv);
}

static void test_jwk_ec_short_coordinate_same_value(void **state)
{
    iam_keyset *ks = *state;
    expect_short_coordinate_refused(ks, "P-521", "P-521", 66); /* top byte is 0 half the time */
    expect_short_coordinate_refused(ks, "P-256", "P-256", 32); /* 1 in 256 */
    assert_int_equal(iam_keyset_count(ks), 2);
}

static void test_jwk_ec_bad_curve(void **state)
{
    iam_keyset *ks = *state;
    EVP_PKEY *pkey = public_pkey(K_P256);
    size_t xl, yl;
    unsigned char *x = bn_bytes(pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32, &xl);
    unsigned char *y = bn_bytes(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32, &yl);
    static const char *const crvs[] = {"P-192", "secp256k1", "p-256", "P256", "prime256v1", ""};
    for (size_t i = 0; i < sizeof crvs / sizeof crvs[0]; i++) {
        char *j = ec_jwk(crvs[i], x, xl, y, yl);
        expect_jwk(ks, j, IAM_E_BAD_KEY);
        free(j);
    }
    char *bx = mint_b64url(x, xl), *by = mint_b64url(y, yl);
    char *j = fmt("{\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", bx, by);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    free(bx);
    free(by);
    free(x);
    free(y);
    EVP_PKEY_free(pkey);
}

static void test_jwk_rsa_exponent(void **state)
{
    iam_keyset *ks = *state;
    static const unsigned char e1[] = {1}, e2[] = {2}, e3[] = {3}, e65537[] = {1, 0, 1},
                               e0[] = {0}, big_even[] = {1, 0, 0};
    char *j;
    j = rsa_jwk(K_RSA, e1, 1);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = rsa_jwk(K_RSA, e0, 1);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = rsa_jwk(K_RSA, e2, 1);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = rsa_jwk(K_RSA, big_even, 3);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = rsa_jwk(K_RSA, e3, 1);
    expect_jwk(ks, j, IAM_OK);
    free(j);
    j = rsa_jwk(K_RSA, e65537, 3);
    expect_jwk(ks, j, IAM_OK);
    free(j);
    assert_int_equal(iam_keyset_count(ks), 2);
}

static void test_jwk_rsa_broken(void **state)
{
    iam_keyset *ks = *state;
    char *j;
    /* 1024-bit modulus */
    j = mint_key_public_jwk(keys[K_RSA1024], NULL, NULL);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    /* missing, empty, non-string, non-base64url members */
    expect_jwk(ks, "{\"kty\":\"RSA\",\"e\":\"AQAB\"}", IAM_E_BAD_KEY);
    expect_jwk(ks, "{\"kty\":\"RSA\",\"n\":\"\",\"e\":\"AQAB\"}", IAM_E_BAD_KEY);
    expect_jwk(ks, "{\"kty\":\"RSA\",\"n\":12345,\"e\":\"AQAB\"}", IAM_E_BAD_KEY);
    expect_jwk(ks, "{\"kty\":\"RSA\",\"n\":\"q+/q==\",\"e\":\"AQAB\"}", IAM_E_BAD_KEY);
    char *good = rsa_jwk(K_RSA, NULL, 0);
    expect_jwk(ks, good, IAM_OK);
    /* the same key with e removed, and with padding added to n */
    char *cut = strdup(good);
    assert_non_null(cut);
    char *e = strstr(cut, ",\"e\":");
    assert_non_null(e);
    strcpy(e, "}");
    expect_jwk(ks, cut, IAM_E_BAD_KEY);
    free(cut);
    char *n_end = strstr(good, "\",\"e\"");
    assert_non_null(n_end);
    j = fmt("%.*s==%s", (int)(n_end - good), good, n_end);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    free(good);
    assert_int_equal(iam_keyset_count(ks), 1);
}

static void test_jwk_okp(void **state)
{
    iam_keyset *ks = *state;
    EVP_PKEY *pkey = public_pkey(K_ED25519);
    unsigned char pub[32];
    size_t pl = 0;
    assert_true(EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, 32, &pl));
    assert_int_equal(pl, 32);
    EVP_PKEY_free(pkey);
    char *x = mint_b64url(pub, 32), *x31 = mint_b64url(pub, 31);
    char *j;
    j = fmt("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}", x);
    expect_jwk(ks, j, IAM_OK);
    free(j);
    j = fmt("{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"%s\"}", x);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = fmt("{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"%s\"}", x);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = fmt("{\"kty\":\"OKP\",\"x\":\"%s\"}", x);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = fmt("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}", x31);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = fmt("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%sAA\"}", x); /* not canonical/33 */
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    expect_jwk(ks, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\"}", IAM_E_BAD_KEY);
    free(x);
    free(x31);
    assert_int_equal(iam_keyset_count(ks), 1);
}

static void test_jwk_oct(void **state)
{
    iam_keyset *ks = *state;
    char *j;
    j = oct_jwk(31, NULL);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = oct_jwk(32, NULL);
    expect_jwk(ks, j, IAM_OK);
    free(j);
    j = oct_jwk(IAM_MAX_HMAC_KEY_BYTES, NULL);
    expect_jwk(ks, j, IAM_OK);
    free(j);
    j = oct_jwk(IAM_MAX_HMAC_KEY_BYTES + 1, NULL);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    expect_jwk(ks, "{\"kty\":\"oct\"}", IAM_E_BAD_KEY);
    expect_jwk(ks, "{\"kty\":\"oct\",\"k\":\"\"}", IAM_E_BAD_KEY);
    expect_jwk(ks, "{\"kty\":\"oct\",\"k\":null}", IAM_E_BAD_KEY);
    /* 32 bytes in standard base64 with padding */
    expect_jwk(ks, "{\"kty\":\"oct\",\"k\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+/AA==\"}",
               IAM_E_BAD_KEY);
    assert_int_equal(iam_keyset_count(ks), 2);
}

static void test_jwk_kty(void **state)
{
    iam_keyset *ks = *state;
    char *good = mint_key_public_jwk(keys[K_RSA], NULL, NULL);
    /* replace "RSA" in {"kty":"RSA",... */
    assert_int_equal(strncmp(good, "{\"kty\":\"RSA\"", 12), 0);
    static const char *const ktys[] = {"\"FOO\"", "\"rsa\"", "\"RSA \"", "\"\"", "1", "null",
                                       "[\"RSA\"]"};
    for (size_t i = 0; i < sizeof ktys / sizeof ktys[0]; i++) {
        char *j = fmt("{\"kty\":%s%s", ktys[i], good + 12);
        expect_jwk(ks, j, IAM_E_BAD_KEY);
        free(j);
    }
    /* kty absent */
    char *j = fmt("{\"x-kty\":\"RSA\"%s", good + 12);
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    free(good);
    assert_int_equal(iam_keyset_count(ks), 0);
}

static void test_jwk_kid(void **state)
{
    iam_keyset *ks = *state;
    char *j;
    j = jwk_with(K_ED25519, "\"kid\":7");
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = jwk_with(K_ED25519, "\"kid\":\"\"");
    expect_jwk(ks, j, IAM_E_BAD_KEY);
    free(j);
    j = jwk_with(K_ED25519, "\"kid\":\"a\\u00e9\\n\"");
    expect_jwk(ks, j, IAM_OK);
    assert_int_equal(last_key(ks)->kid_len, 4);
    assert_memory_equal(last_key(ks)->kid, "a\xc3\xa9\n", 4);
    free(j);
}

static void test_jwk_invalid_json(void **state)
{
    iam_keyset *ks = *state;
    static const char *const bad[] = {
        "",
        "{",
        "not json",
        "{\"kty\":\"oct\",\"k\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",}",
        "{\"kty\":\"oct\",\"kty\":\"oct\",\"k\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
        "{\"kty\":\"oct\",\"k\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"} x",
        "[]",
        "\"oct\"",
        "null",
        "{'kty':'oct'}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_jwk(ks, bad[i], IAM_E_BAD_KEY);
    /* the well-formed twin of the above is accepted, so the refusals are about syntax */
    expect_jwk(ks, "{\"kty\":\"oct\",\"k\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}", IAM_OK);
    assert_int_equal(iam_keyset_add_jwk(ks, NULL, 0, NULL), IAM_E_INVALID_ARGUMENT);
    assert_int_equal(iam_keyset_add_jwk(NULL, "{}", 2, NULL), IAM_E_INVALID_ARGUMENT);
}

/* Unterminated nesting is invalid JSON like any other (see test_json's twin). */
static void test_jwk_invalid_json_unterminated_nesting(void **state)
{
    iam_keyset *ks = *state;
    expect_jwk(ks, "[[[[[[", IAM_E_BAD_KEY);
    expect_jwk(ks, "{\"keys\":[[[[[[[[", IAM_E_BAD_KEY);
}

/* -------------------------------------------------------------------- JWKS */

static void test_jwks_skips_bad_keys_individually(void **state)
{
    iam_keyset *ks = *state;
    unsigned char xb[32];
    memset(xb, 9, sizeof xb);
    char *x = mint_b64url(xb, 32);
    char *x25519 = fmt("{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"%s\"}", x);
    char *enc = jwk_with(K_P256, "\"use\":\"enc\"");
    char *broken = fmt("{\"kty\":\"RSA\",\"n\":\"!!!\",\"e\":\"AQAB\"}");
    char *good = mint_key_public_jwk(keys[K_RSA], "good", "RS256");
    char *doc = fmt("{\"keys\":[%s,%s,%s,%s]}", x25519, enc, broken, good);
    size_t added = 99, skipped = 99;
    assert_int_equal(add_jwks(ks, doc, strlen(doc), &added, &skipped), IAM_OK);
    assert_int_equal(added, 1);
    assert_int_equal(skipped, 3);
    assert_int_equal(iam_keyset_count(ks), 1);
    assert_string_equal(ks->keys[0].kid, "good");
    assert_int_equal(ks->keys[0].type, KEY_RSA);
    free(doc);
    /* non-object elements are skipped too */
    doc = fmt("{\"keys\":[42,\"x\",null,[],%s]}", good);
    assert_int_equal(add_jwks(ks, doc, strlen(doc), &added, &skipped), IAM_OK);
    assert_int_equal(added, 1);
    assert_int_equal(skipped, 4);
    assert_int_equal(iam_keyset_count(ks), 2);
    free(doc);
    free(x);
    free(x25519);
    free(enc);
    free(broken);
    free(good);
}

static void test_jwks_all_types(void **state)
{
    iam_keyset *ks = *state;
    char *parts[6];
    for (int i = 0; i < 5; i++)
        parts[i] = mint_key_public_jwk(keys[i], NULL, NULL);
    parts[5] = oct_jwk(64, "\"kid\":\"h\"");
    char *doc = fmt("{\"other\":1,\"keys\":[%s,%s,%s,%s,%s,%s]}", parts[0], parts[1], parts[2],
                    parts[3], parts[4], parts[5]);
    size_t added = 99, skipped = 99;
    /* A JWKS is public: its oct member (an HMAC secret anyone could read) is skipped. */
    assert_int_equal(add_jwks(ks, doc, strlen(doc), &added, &skipped), IAM_OK);
    assert_int_equal(added, 5);
    assert_int_equal(skipped, 1);
    assert_int_equal(iam_keyset_count(ks), 5);
    static const key_type want[] = {KEY_RSA, KEY_EC, KEY_EC, KEY_EC, KEY_ED25519};
    for (int i = 0; i < 5; i++)
        assert_int_equal(ks->keys[i].type, want[i]);
    /* added/skipped may be NULL */
    assert_int_equal(add_jwks(ks, doc, strlen(doc), NULL, NULL), IAM_OK);
    assert_int_equal(iam_keyset_count(ks), 10);
    free(doc);
    for (int i = 0; i < 6; i++)
        free(parts[i]);
}

static void test_jwks_empty(void **state)
{
    iam_keyset *ks = *state;
    size_t added = 99, skipped = 99;
    assert_int_equal(add_jwks(ks, "{\"keys\":[]}", 11, &added, &skipped), IAM_OK);
    assert_int_equal(added, 0);
    assert_int_equal(skipped, 0);
    assert_int_equal(iam_keyset_count(ks), 0);
}

static void test_jwks_not_a_jwks(void **state)
{
    iam_keyset *ks = *state;
    static const char *const docs[] = {
        "{\"keys\":{}}", "[]", "{\"nokeys\":[]}", "{\"keys\":\"x\"}", "{\"keys\":null}",
        "{}", "null", "[{\"keys\":[]}]", "{\"Keys\":[]}",
        /* not JSON at all */
        "{", "", "{\"keys\":[],}", "{\"keys\":[]}{}", "{\"keys\":[],\"keys\":[]}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        size_t added = 99, skipped = 99;
        iam_status st = add_jwks(ks, docs[i], strlen(docs[i]), &added, &skipped);
        if (st != IAM_E_MALFORMED)
            fail_msg("add_jwks(%s) = %s, expected malformed", docs[i], iam_status_name(st));
        assert_int_equal(added, 0);
        assert_int_equal(skipped, 0);
    }
    assert_int_equal(iam_keyset_count(ks), 0);
    assert_int_equal(iam_keyset_add_jwks(NULL, "{\"keys\":[]}", 11, NULL, NULL, NULL),
                     IAM_E_INVALID_ARGUMENT);
    assert_int_equal(iam_keyset_add_jwks(ks, NULL, 0, NULL, NULL, NULL), IAM_E_INVALID_ARGUMENT);
}

static void test_jwks_unterminated_nesting_is_malformed(void **state)
{
    iam_keyset *ks = *state;
    static const char doc[] = "{\"keys\":[[[[[[[[[[";
    size_t added = 99, skipped = 99;
    iam_status st = add_jwks(ks, doc, strlen(doc), &added, &skipped);
    if (st != IAM_E_MALFORMED)
        fail_msg("add_jwks(%s) = %s, expected malformed", doc, iam_status_name(st));
}

static char *oct_jwks(size_t n)
{
    size_t cap = n * 120 + 32, o = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    o += (size_t)snprintf(s, cap, "{\"keys\":[");
    for (size_t i = 0; i < n; i++) /* the RFC 8037 Ed25519 public key, under n kids */
        o += (size_t)snprintf(s + o, cap - o,
                              "%s{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"k%zu\","
                              "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
                              i ? "," : "", i);
    o += (size_t)snprintf(s + o, cap - o, "]}");
    return s;
}

static void test_jwks_too_many_keys(void **state)
{
    iam_keyset *ks = *state;
    size_t added = 99, skipped = 99;
    char *doc = oct_jwks(IAM_MAX_KEYS + 1);
    assert_int_equal(add_jwks(ks, doc, strlen(doc), &added, &skipped), IAM_E_TOO_LARGE);
    assert_int_equal(added, 0);
    assert_int_equal(iam_keyset_count(ks), 0);
    free(doc);
    doc = oct_jwks(IAM_MAX_KEYS);
    assert_int_equal(add_jwks(ks, doc, strlen(doc), &added, &skipped), IAM_OK);
    assert_int_equal(added, IAM_MAX_KEYS);
    assert_int_equal(skipped, 0);
    assert_int_equal(iam_keyset_count(ks), IAM_MAX_KEYS);
    free(doc);
}

static void test_jwks_too_many_for_the_remaining_room(void **state)
{
    iam_keyset *ks = *state;
    unsigned char secret[32] = {0};
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 32, NULL, NULL), IAM_OK);
    char *doc = oct_jwks(IAM_MAX_KEYS);
    size_t added = 99, skipped = 99;
    assert_int_equal(add_jwks(ks, doc, strlen(doc), &added, &skipped), IAM_E_TOO_LARGE);
    assert_int_equal(iam_keyset_count(ks), 1);
    free(doc);
    doc = oct_jwks(IAM_MAX_KEYS - 1);
    assert_int_equal(add_jwks(ks, doc, strlen(doc), &added, &skipped), IAM_OK);
    assert_int_equal(added, IAM_MAX_KEYS - 1);
    assert_int_equal(iam_keyset_count(ks), IAM_MAX_KEYS);
    free(doc);
}

/* {"keys":[<one oct key>]} padded with spaces to exactly len bytes. */
static char *padded_jwks(size_t len)
{
    char *head = fmt("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
                     "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]");
    size_t hl = strlen(head);
    assert_true(hl + 1 <= len);
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, head, hl);
    memset(s + hl, ' ', len - hl - 1);
    s[len - 1] = '}';
    s[len] = '\0';
    free(head);
    return s;
}

static void test_jwks_document_size_limit(void **state)
{
    iam_keyset *ks = *state;
    size_t added = 99, skipped = 99;
    char *doc = padded_jwks(IAM_MAX_JWKS_BYTES + 1);
    assert_int_equal(add_jwks(ks, doc, IAM_MAX_JWKS_BYTES + 1, &added, &skipped), IAM_E_TOO_LARGE);
    assert_int_equal(added, 0);
    assert_int_equal(iam_keyset_count(ks), 0);
    free(doc);
    doc = padded_jwks(IAM_MAX_JWKS_BYTES);
    assert_int_equal(add_jwks(ks, doc, IAM_MAX_JWKS_BYTES, &added, &skipped), IAM_OK);
    assert_int_equal(added, 1);
    assert_int_equal(skipped, 0);
    assert_int_equal(iam_keyset_count(ks), 1);
    free(doc);
}

static void test_jwk_document_size_limit(void **state)
{
    iam_keyset *ks = *state;
    char *doc = padded_jwks(IAM_MAX_JWKS_BYTES + 1);
    /* the single-JWK entry point has the same bound */
    assert_int_equal(add_jwk(ks, doc), IAM_E_TOO_LARGE);
    free(doc);
}

/* -------------------------------------------------------------------- HMAC */

static const char *const HASH_NAMES[3] = {"SHA256", "SHA384", "SHA512"};
static const size_t HASH_SIZES[3] = {32, 48, 64};

static void test_hmac_compute_matches_evp_mac(void **state)
{
    (void)state;
    static const size_t key_lens[] = {32, 64, 65, 100, 128, 129, 200};
    static const size_t msg_lens[] = {0, 1, 55, 56, 63, 64, 65, 1000};
    unsigned char key[200], msg[1000];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (unsigned char)(i * 31 + 7);
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (unsigned char)(i * 13 + 5);
    for (size_t ki = 0; ki < sizeof key_lens / sizeof key_lens[0]; ki++) {
        hmac_states *s = hmac_states_new(key, key_lens[ki]);
        assert_non_null(s);
        for (size_t mi = 0; mi < sizeof msg_lens / sizeof msg_lens[0]; mi++) {
            for (int h = 0; h < 3; h++) {
                unsigned char got[64], want[64];
                size_t want_len = 0;
                size_t n = hmac_compute(s, (hash_id)h, msg, msg_lens[mi], got);
                assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, HASH_NAMES[h], NULL, key,
                                          key_lens[ki], msg, msg_lens[mi], want, sizeof want,
                                          &want_len));
                assert_int_equal(want_len, HASH_SIZES[h]);
                if (n != want_len || memcmp(got, want, n) != 0)
                    fail_msg("HMAC-%s key %zu bytes, message %zu bytes: mismatch", HASH_NAMES[h],
                             key_lens[ki], msg_lens[mi]);
                assert_true(hmac_verify(s, (hash_id)h, msg, msg_lens[mi], want, want_len));
            }
        }
        hmac_states_free(s);
    }
}

static void unhex(const char *hex, unsigned char *out, size_t *len)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
    *len = n;
}

static void check_rfc4231(const unsigned char *key, size_t klen, const char *data,
                          const char *const want_hex[3])
{
    hmac_states *s = hmac_states_new(key, klen);
    assert_non_null(s);
    for (int h = 0; h < 3; h++) {
        unsigned char want[64], got[64];
        size_t wl;
        unhex(want_hex[h], want, &wl);
        assert_int_equal(wl, HASH_SIZES[h]);
        assert_int_equal(hmac_compute(s, (hash_id)h, (const unsigned char *)data, strlen(data), got),
                         wl);
        assert_memory_equal(got, want, wl);
        assert_true(hmac_verify(s, (hash_id)h, (const unsigned char *)data, strlen(data), want, wl));
    }
    hmac_states_free(s);
}

static void test_hmac_rfc4231_case2(void **state)
{
    (void)state;
    static const char *const want[3] = {
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
        "8e2240ca5e69e2c78b3239ecfab21649",
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
    };
    check_rfc4231((const unsigned char *)"Jefe", 4, "what do ya want for nothing?", want);
}

static void test_hmac_rfc4231_case6(void **state)
{
    (void)state;
    unsigned char key[131];
    memset(key, 0xaa, sizeof key);
    static const char *const want[3] = {
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
        "0c2ef6ab4030fe8296248df163f44952",
        "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
        "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
    };
    check_rfc4231(key, sizeof key, "Test Using Larger Than Block-Size Key - Hash Key First", want);
}

/* Every single-bit change anywhere in the MAC is refused, for each hash (the comparison
 * covers every byte, not a prefix or one word of it). */
static void test_hmac_verify_rejects_every_bit_flip(void **state)
{
    (void)state;
    unsigned char key[32];
    memset(key, 0x5a, sizeof key);
    hmac_states *s = hmac_states_new(key, sizeof key);
    assert_non_null(s);
    static const unsigned char msg[] = "header.payload";
    for (int h = 0; h < 3; h++) {
        unsigned char mac[64];
        size_t n = hmac_compute(s, (hash_id)h, msg, sizeof msg - 1, mac);
        assert_true(hmac_verify(s, (hash_id)h, msg, sizeof msg - 1, mac, n));
        for (size_t byte = 0; byte < n; byte++)
            for (int bit = 0; bit < 8; bit++) {
                mac[byte] ^= (unsigned char)(1u << bit);
                if (hmac_verify(s, (hash_id)h, msg, sizeof msg - 1, mac, n))
                    fail_msg("hash %d: bit %d of byte %zu changed and still accepted", h, bit, byte);
                mac[byte] ^= (unsigned char)(1u << bit);
            }
        assert_true(hmac_verify(s, (hash_id)h, msg, sizeof msg - 1, mac, n));
    }
    hmac_states_free(s);
}

static void test_hmac_verify_rejects_wrong_length(void **state)
{
    (void)state;
    unsigned char key[32];
    memset(key, 0x11, sizeof key);
    hmac_states *s = hmac_states_new(key, sizeof key);
    assert_non_null(s);
    static const unsigned char msg[] = "a.b";
    for (int h = 0; h < 3; h++) {
        unsigned char mac[65];
        size_t n = hmac_compute(s, (hash_id)h, msg, 3, mac);
        assert_int_equal(n, HASH_SIZES[h]);
        mac[n] = 0;
        assert_true(hmac_verify(s, (hash_id)h, msg, 3, mac, n));
        assert_false(hmac_verify(s, (hash_id)h, msg, 3, mac, n - 1)); /* truncated */
        assert_false(hmac_verify(s, (hash_id)h, msg, 3, mac, n + 1)); /* extended */
        assert_false(hmac_verify(s, (hash_id)h, msg, 3, mac, 0));
        assert_false(hmac_verify(s, (hash_id)h, msg, 3, mac, 16));
    }
    /* a SHA-256 MAC is not a SHA-384/512 MAC (different length), nor the reverse */
    unsigned char mac256[64], mac512[64];
    hmac_compute(s, HASH_SHA256, msg, 3, mac256);
    hmac_compute(s, HASH_SHA512, msg, 3, mac512);
    assert_false(hmac_verify(s, HASH_SHA384, msg, 3, mac256, 32));
    assert_false(hmac_verify(s, HASH_SHA512, msg, 3, mac256, 32));
    assert_false(hmac_verify(s, HASH_SHA256, msg, 3, mac512, 64));
    assert_false(hmac_verify(s, HASH_SHA384, msg, 3, mac512, 48)); /* a SHA-512 prefix */
    hmac_states_free(s);
}

static void test_hmac_verify_rejects_bit_flips(void **state)
{
    (void)state;
    unsigned char key[64];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (unsigned char)i;
    hmac_states *s = hmac_states_new(key, sizeof key);
    assert_non_null(s);
    static const unsigned char msg[] = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0";
    size_t ml = sizeof msg - 1;
    for (int h = 0; h < 3; h++) {
        unsigned char mac[64];
        size_t n = hmac_compute(s, (hash_id)h, msg, ml, mac);
        for (size_t bit = 0; bit < n * 8; bit++) {
            mac[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            if (hmac_verify(s, (hash_id)h, msg, ml, mac, n))
                fail_msg("HMAC-%s accepted a MAC with bit %zu flipped", HASH_NAMES[h], bit);
            mac[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        }
        assert_true(hmac_verify(s, (hash_id)h, msg, ml, mac, n));
        /* and a one-bit change of the message */
        unsigned char m2[sizeof msg];
        memcpy(m2, msg, sizeof msg);
        m2[ml - 1] ^= 1;
        assert_false(hmac_verify(s, (hash_id)h, m2, ml, mac, n));
    }
    hmac_states_free(s);
}

static void test_hmac_states_differ_by_key(void **state)
{
    (void)state;
    unsigned char k1[32], k2[32];
    memset(k1, 1, sizeof k1);
    memset(k2, 1, sizeof k2);
    k2[31] = 2;
    hmac_states *a = hmac_states_new(k1, 32), *b = hmac_states_new(k2, 32);
    assert_non_null(a);
    assert_non_null(b);
    unsigned char ma[64];
    size_t n = hmac_compute(a, HASH_SHA256, (const unsigned char *)"x", 1, ma);
    assert_false(hmac_verify(b, HASH_SHA256, (const unsigned char *)"x", 1, ma, n));
    /* a key padded with zero bytes up to the block size is the same HMAC key (RFC 2104) */
    unsigned char k1z[64] = {0};
    memcpy(k1z, k1, 32);
    hmac_states *c = hmac_states_new(k1z, 64);
    assert_non_null(c);
    assert_true(hmac_verify(c, HASH_SHA256, (const unsigned char *)"x", 1, ma, n));
    hmac_states_free(a);
    hmac_states_free(b);
    hmac_states_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_new_keyset_is_empty),
        cmocka_unit_test(test_retain_release),
        cmocka_unit_test(test_retain_release_null),
        T(test_hmac_secret_sizes),
        T(test_hmac_invalid_arguments),
        T(test_hmac_kid),
        T(test_hmac_key_states_match_evp),
        T(test_hmac_size_per_alg),
        T(test_keyset_full),
        T(test_pem_public_keys),
        T(test_pem_with_kid),
        T(test_pem_certificate),
        T(test_pem_private_key_refused),
        T(test_pem_rsa1024_refused),
        T(test_pem_unsupported_key_types),
        T(test_pem_garbage),
        T(test_pem_length_is_respected),
        cmocka_unit_test(test_pem_kid_known_answer),
        cmocka_unit_test(test_pem_kid_matches_sha256_of_text),
        T(test_jwk_each_key_type),
        T(test_jwk_alg_fitting),
        T(test_jwk_alg_not_fitting),
        T(test_jwk_use),
        T(test_jwk_key_ops),
        T(test_jwk_ec_point_not_on_curve),
        T(test_jwk_ec_other_curve_coordinates),
        T(test_jwk_ec_coordinate_length),
        T(test_jwk_ec_short_coordinate_same_value),
        T(test_jwk_ec_bad_curve),
        T(test_jwk_rsa_exponent),
        T(test_jwk_rsa_broken),
        T(test_jwk_okp),
        T(test_jwk_oct),
        T(test_jwk_kty),
        T(test_jwk_kid),
        T(test_jwk_invalid_json),
        T(test_jwk_invalid_json_unterminated_nesting),
        T(test_jwks_skips_bad_keys_individually),
        T(test_jwks_all_types),
        T(test_jwks_empty),
        T(test_jwks_not_a_jwks),
        T(test_jwks_unterminated_nesting_is_malformed),
        T(test_jwks_too_many_keys),
        T(test_jwks_too_many_for_the_remaining_room),
        T(test_jwks_document_size_limit),
        T(test_jwk_document_size_limit),
        cmocka_unit_test(test_hmac_compute_matches_evp_mac),
        cmocka_unit_test(test_hmac_rfc4231_case2),
        cmocka_unit_test(test_hmac_rfc4231_case6),
        cmocka_unit_test(test_hmac_verify_rejects_wrong_length),
        cmocka_unit_test(test_hmac_verify_rejects_every_bit_flip),
        cmocka_unit_test(test_hmac_verify_rejects_bit_flips),
        cmocka_unit_test(test_hmac_states_differ_by_key),
    };
    return cmocka_run_group_tests_name("keyset", tests, group_setup, group_teardown);
}
