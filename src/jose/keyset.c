/* keyset.c — verification keys: HMAC secrets, PEM, JWK, JWKS; one signature check. */
#include "jose/b64url.h"
#include "jose/jose.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

static const json_limits JWK_LIMITS = {IAM_MAX_JSON_DEPTH, IAM_MAX_JSON_MEMBERS};

/* ---------------------------------------------------------------- lifecycle */

iam_keyset *iam_keyset_new(void)
{
    iam_keyset *ks = calloc(1, sizeof *ks);
    if (!ks)
        return NULL;
    atomic_init(&ks->refs, 1);
    static const char *const names[3] = {"SHA256", "SHA384", "SHA512"};
    for (int i = 0; i < 3; i++) {
        ks->md[i] = EVP_MD_fetch(NULL, names[i], NULL);
        if (!ks->md[i]) {
            iam_keyset_release(ks);
            return NULL;
        }
    }
    return ks;
}

iam_keyset *iam_keyset_retain(iam_keyset *ks)
{
    if (ks)
        atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
    return ks;
}

static void key_clear(iam_key *k)
{
    for (size_t i = 0; i < sizeof k->verify_tmpl / sizeof k->verify_tmpl[0]; i++)
        EVP_MD_CTX_free(k->verify_tmpl[i]);
    free(k->kid);
    EVP_PKEY_free(k->pkey);
    hmac_states_free(k->hmac);
    memset(k, 0, sizeof *k);
}

void iam_keyset_release(iam_keyset *ks)
{
    if (!ks || atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < ks->count; i++)
        key_clear(&ks->keys[i]);
    for (int i = 0; i < 3; i++)
        EVP_MD_free(ks->md[i]);
    free(ks);
}

size_t iam_keyset_count(const iam_keyset *ks)
{
    return ks ? ks->count : 0;
}

/* ------------------------------------------------------------------ helpers */

static iam_status set_kid(iam_key *k, const char *kid, size_t len, iam_error *err)
{
    if (!kid)
        return IAM_OK;
    if (len == 0 || len > IAM_MAX_KID_BYTES)
        return iam_fail(err, IAM_E_BAD_KEY, "kid must be 1 to %d bytes", IAM_MAX_KID_BYTES);
    k->kid = malloc(len + 1);
    if (!k->kid)
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    memcpy(k->kid, kid, len);
    k->kid[len] = '\0';
    k->kid_len = len;
    return IAM_OK;
}

static size_t tmpl_index(const iam_key *k, const alg_info *alg)
{
    return k->type == KEY_RSA ? (size_t)alg->hash * 2 + alg->pss : 0;
}

static EVP_MD_CTX *new_verify_ctx(const iam_keyset *ks, const iam_key *k, const alg_info *alg,
                                  bool finalise)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return NULL;
    if (finalise) /* a copy is used once: let Final skip keeping the context reusable */
        EVP_MD_CTX_set_flags(ctx, EVP_MD_CTX_FLAG_FINALISE);
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *md = alg->hash == HASH_NONE ? NULL : ks->md[alg->hash];
    bool ok = EVP_DigestVerifyInit(ctx, &pctx, md, NULL, k->pkey) == 1;
    if (ok && alg->pss)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    if (!ok) {
        EVP_MD_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }
    return ctx;
}

/* Prepares a verification context for every algorithm the key may serve. A failure only
 * leaves that slot empty: key_verify then initialises per call. */
static void prepare_templates(const iam_keyset *ks, iam_key *k)
{
    static const char *const NAMES[] = {"RS256", "RS384", "RS512", "PS256", "PS384",
                                        "PS512", "ES256", "ES384", "ES512", "EdDSA"};
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        const alg_info *alg = alg_find(NAMES[i], strlen(NAMES[i]));
        if (!alg || !key_fits_alg(k, alg))
            continue;
        size_t slot = tmpl_index(k, alg);
        if (!k->verify_tmpl[slot])
            k->verify_tmpl[slot] = new_verify_ctx(ks, k, alg, true);
    }
}

/* Appends a finished key (taking ownership of its resources) or clears it on failure. */
static iam_status keyset_push(iam_keyset *ks, iam_key *k, iam_error *err)
{
    if (ks->count >= IAM_MAX_KEYS) {
        key_clear(k);
        return iam_fail(err, IAM_E_TOO_LARGE, "keyset already holds %d keys", IAM_MAX_KEYS);
    }
    if (k->pkey)
        prepare_templates(ks, k);
    ks->keys[ks->count++] = *k;
    memset(k, 0, sizeof *k);
    return IAM_OK;
}

static iam_status hmac_key_init(iam_key *k, const void *secret, size_t len, iam_error *err)
{
    if (len < IAM_MIN_HMAC_KEY_BYTES)
        return iam_fail(err, IAM_E_BAD_KEY, "HMAC secret is %zu bytes; at least %d are required",
                        len, IAM_MIN_HMAC_KEY_BYTES);
    if (len > IAM_MAX_HMAC_KEY_BYTES)
        return iam_fail(err, IAM_E_BAD_KEY, "HMAC secret is longer than %d bytes",
                        IAM_MAX_HMAC_KEY_BYTES);
    k->type = KEY_HMAC;
    k->secret_len = len;
    k->hmac = hmac_states_new(secret, len);
    if (!k->hmac)
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    return IAM_OK;
}

/* Fills type-specific fields from a loaded public key; refuses what is unsupported. */
static iam_status adopt_pkey(iam_key *k, EVP_PKEY *pkey, iam_error *err)
{
    k->pkey = pkey;
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA: {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < IAM_MIN_RSA_BITS || bits > IAM_MAX_RSA_BITS)
            return iam_fail(err, IAM_E_BAD_KEY, "RSA key of %d bits; %d to %d are accepted", bits,
                            IAM_MIN_RSA_BITS, IAM_MAX_RSA_BITS);
        BIGNUM *e = NULL;
        if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e))
            return iam_fail(err, IAM_E_BAD_KEY, "RSA key without a public exponent");
        /* e = 1 would make any "signature" equal to its own padded message. */
        bool ok = BN_is_odd(e) && BN_num_bits(e) >= 2 && BN_num_bits(e) <= 64;
        BN_free(e);
        if (!ok)
            return iam_fail(err, IAM_E_BAD_KEY, "RSA public exponent must be odd, >= 3, < 2^64");
        k->type = KEY_RSA;
        k->rsa_bits = bits;
        return IAM_OK;
    }
    case EVP_PKEY_EC: {
        char group[64];
        size_t glen = 0;
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen))
            return iam_fail(err, IAM_E_BAD_KEY, "EC key without a named curve");
        int nid = OBJ_sn2nid(group);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(group);
        if (nid == NID_X9_62_prime256v1)
            k->coord_bytes = 32;
        else if (nid == NID_secp384r1)
            k->coord_bytes = 48;
        else if (nid == NID_secp521r1)
            k->coord_bytes = 66;
        else
            return iam_fail(err, IAM_E_BAD_KEY, "EC curve is not P-256, P-384 or P-521");
        k->type = KEY_EC;
        k->curve_nid = nid;
        return IAM_OK;
    }
    case EVP_PKEY_ED25519: {
        /* A small-order public key (identity, order 2/4/8) lets a fixed "signature" verify
         * every message: refuse the known encodings, with either sign bit. Checked with an
         * independent point-order computation when this list was written. */
        static const unsigned char SMALL_ORDER[][32] = {
            {0x01},                                                 /* identity */
            {0},                                                    /* order 4 */
            {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
             0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
             0xff, 0xff, 0xff, 0x7f},                               /* p-1: order 2 */
            {0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
             0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
             0xff, 0xff, 0xff, 0x7f},                               /* p: order 4 */
            {0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
             0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
             0xff, 0xff, 0xff, 0x7f},                               /* p+1: identity */
            {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
             0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
             0x92, 0xac, 0x03, 0x7a},                               /* order 8 */
            {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
             0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
             0x6d, 0x53, 0xfc, 0x05},                               /* order 8 */
        };
        unsigned char raw[32];
        size_t raw_len = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(pkey, raw, &raw_len) != 1 || raw_len != 32)
            return iam_fail(err, IAM_E_BAD_KEY, "Ed25519 key could not be read");
        raw[31] &= 0x7f;
        for (size_t i = 0; i < sizeof SMALL_ORDER / sizeof SMALL_ORDER[0]; i++)
            if (memcmp(raw, SMALL_ORDER[i], 32) == 0)
                return iam_fail(err, IAM_E_BAD_KEY, "Ed25519 public key has small order");
        k->type = KEY_ED25519;
        return IAM_OK;
    }
    default:
        return iam_fail(err, IAM_E_BAD_KEY, "public key type is not RSA, EC or Ed25519");
    }
}

/* -------------------------------------------------------------------- HMAC */

iam_status iam_keyset_add_hmac(iam_keyset *ks, const void *secret, size_t len, const char *kid,
                               iam_error *err)
{
    if (!ks || !secret)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "keyset and secret are required");
    iam_key k = {0};
    iam_status st = hmac_key_init(&k, secret, len, err);
    if (st == IAM_OK)
        st = set_kid(&k, kid, kid ? strlen(kid) : 0, err);
    if (st != IAM_OK) {
        key_clear(&k);
        return st;
    }
    return keyset_push(ks, &k, err);
}

/* --------------------------------------------------------------------- PEM */

iam_status iam_pem_kid(const char *pem, size_t len, char out[17])
{
    if (!pem || !out)
        return IAM_E_INVALID_ARGUMENT;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    if (!EVP_Digest(pem, len, digest, NULL, EVP_sha256(), NULL))
        return IAM_E_INTERNAL;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[16] = '\0';
    return IAM_OK;
}

iam_status iam_keyset_add_pem(iam_keyset *ks, const char *pem, size_t len, const char *kid,
                              iam_error *err)
{
    if (!ks || !pem)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "keyset and PEM text are required");
    if (len > IAM_MAX_JWKS_BYTES)
        return iam_fail(err, IAM_E_TOO_LARGE, "PEM text is larger than %d bytes", IAM_MAX_JWKS_BYTES);
    /* A verifier needs only public keys; holding a private one is a deployment mistake. */
    static const char priv[] = "PRIVATE KEY-----";
    for (size_t i = 0; i + sizeof priv - 1 <= len; i++)
        if (pem[i] == 'P' && memcmp(pem + i, priv, sizeof priv - 1) == 0)
            return iam_fail(err, IAM_E_BAD_KEY,
                            "PEM holds a private key; give the verifier the public key only");
    if (len > INT32_MAX)
        return iam_fail(err, IAM_E_TOO_LARGE, "PEM text too large");
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (!pkey) {
        BIO_reset(bio);
        X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (cert) {
            pkey = X509_get_pubkey(cert);
            X509_free(cert);
        }
    }
    BIO_free(bio);
    ERR_clear_error();
    if (!pkey)
        return iam_fail(err, IAM_E_BAD_KEY,
                        "PEM is not a PUBLIC KEY (SubjectPublicKeyInfo) or a CERTIFICATE");
    iam_key k = {0};
    iam_status st = adopt_pkey(&k, pkey, err);
    if (st == IAM_OK)
        st = set_kid(&k, kid, kid ? strlen(kid) : 0, err);
    if (st != IAM_OK) {
        key_clear(&k);
        return st;
    }
    return keyset_push(ks, &k, err);
}

/* --------------------------------------------------------------------- JWK */

/* Decodes the base64url string member `name` of object obj into a malloc'd buffer. */
static iam_status jwk_bytes(const json_doc *d, size_t obj, const char *name, unsigned char **out,
                            size_t *out_len, iam_error *err)
{
    size_t v = json_get(d, obj, name);
    if (!v)
        return iam_fail(err, IAM_E_BAD_KEY, "JWK lacks \"%s\"", name);
    const json_node *n = &d->nodes[v];
    if (n->type != JSON_STRING || n->len == 0)
        return iam_fail(err, IAM_E_BAD_KEY, "JWK \"%s\" must be a non-empty string", name);
    unsigned char *buf = malloc(b64url_decoded_max(n->len));
    if (!buf)
        return iam_fail(err, IAM_E_NOMEM, "out of memory");
    if (!b64url_decode(n->str, n->len, buf, out_len)) {
        free(buf);
        return iam_fail(err, IAM_E_BAD_KEY, "JWK \"%s\" is not strict base64url", name);
    }
    *out = buf;
    return IAM_OK;
}

static iam_status jwk_rsa(iam_key *k, const json_doc *d, size_t obj, iam_error *err)
{
    unsigned char *n = NULL, *e = NULL;
    size_t nlen = 0, elen = 0;
    iam_status st = jwk_bytes(d, obj, "n", &n, &nlen, err);
    if (st == IAM_OK)
        st = jwk_bytes(d, obj, "e", &e, &elen, err);
    if (st == IAM_OK && nlen > IAM_MAX_RSA_BITS / 8 + 1)
        st = iam_fail(err, IAM_E_BAD_KEY, "RSA modulus longer than %d bits", IAM_MAX_RSA_BITS);
    EVP_PKEY *pkey = NULL;
    if (st == IAM_OK) {
        BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        OSSL_PARAM *params = NULL;
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        if (bn && be && bld && ctx && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) &&
            (params = OSSL_PARAM_BLD_to_param(bld)) != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1) {
            st = adopt_pkey(k, pkey, err);
        } else {
            EVP_PKEY_free(pkey);
            st = iam_fail(err, IAM_E_BAD_KEY, "RSA JWK could not be loaded");
        }
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        EVP_PKEY_CTX_free(ctx);
        BN_free(bn);
        BN_free(be);
    }
    free(n);
    free(e);
    return st;
}

static iam_status jwk_ec(iam_key *k, const json_doc *d, size_t obj, iam_error *err)
{
    size_t crv = json_get(d, obj, "crv");
    const char *group;
    size_t coord;
    if (crv && json_str_eq(d, crv, "P-256"))
        group = "prime256v1", coord = 32;
    else if (crv && json_str_eq(d, crv, "P-384"))
        group = "secp384r1", coord = 48;
    else if (crv && json_str_eq(d, crv, "P-521"))
        group = "secp521r1", coord = 66;
    else
        return iam_fail(err, IAM_E_BAD_KEY, "EC JWK curve must be P-256, P-384 or P-521");
    unsigned char *x = NULL, *y = NULL;
    size_t xlen = 0, ylen = 0;
    iam_status st = jwk_bytes(d, obj, "x", &x, &xlen, err);
    if (st == IAM_OK)
        st = jwk_bytes(d, obj, "y", &y, &ylen, err);
    /* RFC 7518 §6.2.1.2: coordinates are exactly the field size, zero-padded. */
    if (st == IAM_OK && (xlen != coord || ylen != coord))
        st = iam_fail(err, IAM_E_BAD_KEY, "EC JWK coordinates must be %zu bytes", coord);
    if (st == IAM_OK) {
        unsigned char point[1 + 2 * 66];
        point[0] = 0x04;
        memcpy(point + 1, x, coord);
        memcpy(point + 1 + coord, y, coord);
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * coord),
            OSSL_PARAM_construct_end()};
        EVP_PKEY *pkey = NULL;
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        EVP_PKEY_CTX *check = NULL;
        if (ctx && EVP_PKEY_fromdata_init(ctx) == 1 &&
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1 &&
            (check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) != NULL &&
            EVP_PKEY_public_check(check) == 1) {
            st = adopt_pkey(k, pkey, err);
        } else {
            EVP_PKEY_free(pkey);
            st = iam_fail(err, IAM_E_BAD_KEY, "EC JWK is not a valid point on its curve");
        }
        EVP_PKEY_CTX_free(check);
        EVP_PKEY_CTX_free(ctx);
    }
    free(x);
    free(y);
    return st;
}

static iam_status jwk_okp(iam_key *k, const json_doc *d, size_t obj, iam_error *err)
{
    size_t crv = json_get(d, obj, "crv");
    if (!crv || !json_str_eq(d, crv, "Ed25519"))
        return iam_fail(err, IAM_E_BAD_KEY, "OKP JWK curve must be Ed25519");
    unsigned char *x = NULL;
    size_t xlen = 0;
    iam_status st = jwk_bytes(d, obj, "x", &x, &xlen, err);
    if (st == IAM_OK && xlen != 32)
        st = iam_fail(err, IAM_E_BAD_KEY, "Ed25519 JWK \"x\" must be 32 bytes");
    if (st == IAM_OK) {
        EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, xlen);
        st = pkey ? adopt_pkey(k, pkey, err) : iam_fail(err, IAM_E_BAD_KEY, "Ed25519 JWK could not be loaded");
    }
    free(x);
    return st;
}

static iam_status jwk_oct(iam_key *k, const json_doc *d, size_t obj, iam_error *err)
{
    unsigned char *secret = NULL;
    size_t len = 0;
    iam_status st = jwk_bytes(d, obj, "k", &secret, &len, err);
    if (st == IAM_OK)
        st = hmac_key_init(k, secret, len, err);
    if (secret) {
        OPENSSL_cleanse(secret, len);
        free(secret);
    }
    return st;
}

/* Builds one key from the JWK object at index obj; never touches the keyset. */
static iam_status jwk_load(iam_key *k, const json_doc *d, size_t obj, iam_error *err)
{
    if (d->nodes[obj].type != JSON_OBJECT)
        return iam_fail(err, IAM_E_BAD_KEY, "JWK is not a JSON object");
    size_t use = json_get(d, obj, "use");
    if (use && !json_str_eq(d, use, "sig"))
        return iam_fail(err, IAM_E_BAD_KEY, "JWK \"use\" is not \"sig\"");
    size_t ops = json_get(d, obj, "key_ops");
    if (ops) {
        bool verify = false;
        if (d->nodes[ops].type != JSON_ARRAY)
            return iam_fail(err, IAM_E_BAD_KEY, "JWK \"key_ops\" is not an array");
        for (size_t i = json_first_child(d, ops), m = 0; m < d->nodes[ops].len; m++, i = json_next_sibling(d, i))
            verify = verify || json_str_eq(d, i, "verify");
        if (!verify)
            return iam_fail(err, IAM_E_BAD_KEY, "JWK \"key_ops\" does not allow \"verify\"");
    }
    const alg_info *alg = NULL;
    size_t a = json_get(d, obj, "alg");
    if (a) {
        if (d->nodes[a].type != JSON_STRING ||
            !(alg = alg_find(d->nodes[a].str, d->nodes[a].len)))
            return iam_fail(err, IAM_E_BAD_KEY, "JWK \"alg\" is not a supported signature algorithm");
    }
    size_t kid = json_get(d, obj, "kid");
    if (kid && d->nodes[kid].type != JSON_STRING)
        return iam_fail(err, IAM_E_BAD_KEY, "JWK \"kid\" is not a string");

    size_t kty = json_get(d, obj, "kty");
    iam_status st;
    if (kty && json_str_eq(d, kty, "RSA"))
        st = jwk_rsa(k, d, obj, err);
    else if (kty && json_str_eq(d, kty, "EC"))
        st = jwk_ec(k, d, obj, err);
    else if (kty && json_str_eq(d, kty, "OKP"))
        st = jwk_okp(k, d, obj, err);
    else if (kty && json_str_eq(d, kty, "oct"))
        st = jwk_oct(k, d, obj, err);
    else
        st = iam_fail(err, IAM_E_BAD_KEY, "JWK \"kty\" is missing or not RSA, EC, OKP or oct");
    if (st != IAM_OK)
        return st;
    if (alg) {
        if (alg->key != k->type || (alg->key == KEY_EC && alg->curve_nid != k->curve_nid))
            return iam_fail(err, IAM_E_BAD_KEY, "JWK \"alg\" %s does not fit its key type", alg->name);
        k->alg = alg;
    }
    if (kid)
        st = set_kid(k, d->nodes[kid].str, d->nodes[kid].len, err);
    return st;
}

static iam_status parse_doc(json_doc *d, const char *json, size_t len, const char *what, iam_error *err)
{
    if (!json)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "%s text is required", what);
    if (len > IAM_MAX_JWKS_BYTES)
        return iam_fail(err, IAM_E_TOO_LARGE, "%s is larger than %d bytes", what, IAM_MAX_JWKS_BYTES);
    return json_parse(d, json, len, &JWK_LIMITS, NULL, 0, NULL, 0, what, err);
}

iam_status iam_keyset_add_jwk(iam_keyset *ks, const char *json, size_t len, iam_error *err)
{
    if (!ks)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "keyset is required");
    json_doc d;
    iam_status st = parse_doc(&d, json, len, "JWK", err);
    if (st == IAM_E_MALFORMED || (st == IAM_E_TOO_LARGE && len <= IAM_MAX_JWKS_BYTES))
        return iam_fail(err, IAM_E_BAD_KEY, "JWK is not valid JSON within the nesting and member limits");
    if (st != IAM_OK)
        return st;
    iam_key k = {0};
    st = jwk_load(&k, &d, 0, err);
    json_doc_free(&d);
    if (st != IAM_OK) {
        key_clear(&k);
        return st;
    }
    return keyset_push(ks, &k, err);
}

iam_status iam_keyset_add_jwks(iam_keyset *ks, const char *json, size_t len, size_t *added,
                               size_t *skipped, iam_error *err)
{
    if (added)
        *added = 0;
    if (skipped)
        *skipped = 0;
    if (!ks)
        return iam_fail(err, IAM_E_INVALID_ARGUMENT, "keyset is required");
    json_doc d;
    iam_status st = parse_doc(&d, json, len, "JWKS", err);
    if (st != IAM_OK)
        return st;
    size_t keys = d.nodes[0].type == JSON_OBJECT ? json_get(&d, 0, "keys") : 0;
    if (!keys || d.nodes[keys].type != JSON_ARRAY) {
        json_doc_free(&d);
        return iam_fail(err, IAM_E_MALFORMED, "JWKS is not an object with a \"keys\" array");
    }
    if (d.nodes[keys].len > IAM_MAX_KEYS - ks->count) {
        json_doc_free(&d);
        return iam_fail(err, IAM_E_TOO_LARGE, "JWKS holds more keys than the keyset's limit of %d",
                        IAM_MAX_KEYS);
    }
    size_t n_added = 0, n_skipped = 0;
    for (size_t i = json_first_child(&d, keys), m = 0; m < d.nodes[keys].len;
         m++, i = json_next_sibling(&d, i)) {
        iam_key k = {0};
        /* An unsupported or malformed key is skipped on its own (its reason is not an
         * error of the document). A JWKS is public: an "oct" member would be an HMAC secret
         * anyone can read, so it is never taken from one (iam_keyset_add_jwk still takes a
         * single oct JWK the caller hands over deliberately). */
        size_t kty = json_get(&d, i, "kty");
        bool secret = kty && json_str_eq(&d, kty, "oct");
        if (!secret && jwk_load(&k, &d, i, NULL) == IAM_OK && keyset_push(ks, &k, NULL) == IAM_OK) {
            n_added++;
        } else {
            key_clear(&k);
            n_skipped++;
        }
    }
    json_doc_free(&d);
    if (added)
        *added = n_added;
    if (skipped)
        *skipped = n_skipped;
    return IAM_OK;
}

/* --------------------------------------------------------------- verifying */

bool key_fits_alg(const iam_key *k, const alg_info *alg)
{
    if (k->type != alg->key)
        return false;
    if (k->alg && k->alg->id != alg->id)
        return false;
    if (k->type == KEY_EC && k->curve_nid != alg->curve_nid)
        return false;
    if (k->type == KEY_HMAC && k->secret_len < alg->min_secret)
        return false;
    return true;
}

/* DER INTEGER of an unsigned big-endian value; returns bytes written. */
static size_t der_integer(const unsigned char *v, size_t n, unsigned char *out)
{
    while (n > 1 && v[0] == 0)
        v++, n--;
    size_t o = 0;
    out[o++] = 0x02;
    bool pad = v[0] & 0x80;
    out[o++] = (unsigned char)(n + pad);
    if (pad)
        out[o++] = 0x00;
    memcpy(out + o, v, n);
    return o + n;
}

/* Raw r||s (RFC 7518 §3.4) to the DER ECDSA-Sig-Value OpenSSL verifies. */
static size_t ecdsa_raw_to_der(const unsigned char *sig, size_t coord, unsigned char *out)
{
    unsigned char body[2 * (3 + 66)];
    size_t b = der_integer(sig, coord, body);
    b += der_integer(sig + coord, coord, body + b);
    size_t o = 0;
    out[o++] = 0x30;
    if (b >= 0x80)
        out[o++] = 0x81;
    out[o++] = (unsigned char)b;
    memcpy(out + o, body, b);
    return o + b;
}

iam_status key_verify(const iam_keyset *ks, const iam_key *k, const alg_info *alg,
                      const unsigned char *input, size_t input_len, const unsigned char *sig,
                      size_t sig_len)
{
    if (k->type == KEY_HMAC)
        return hmac_verify(k->hmac, alg->hash, input, input_len, sig, sig_len) ? IAM_OK
                                                                              : IAM_E_BAD_SIGNATURE;
    unsigned char der[2 * (3 + 66) + 3];
    const unsigned char *s = sig;
    size_t slen = sig_len;
    if (k->type == KEY_EC) {
        if (sig_len != 2 * k->coord_bytes)
            return IAM_E_BAD_SIGNATURE;
        slen = ecdsa_raw_to_der(sig, k->coord_bytes, der);
        s = der;
    } else if (k->type == KEY_RSA) {
        if (sig_len != (size_t)EVP_PKEY_get_size(k->pkey))
            return IAM_E_BAD_SIGNATURE;
    } else if (sig_len != 64) {
        return IAM_E_BAD_SIGNATURE;
    }
    const EVP_MD_CTX *tmpl = k->verify_tmpl[tmpl_index(k, alg)];
    EVP_MD_CTX *ctx;
    if (tmpl) {
        ctx = EVP_MD_CTX_new();
        if (ctx && EVP_MD_CTX_copy_ex(ctx, tmpl) != 1) {
            EVP_MD_CTX_free(ctx);
            ctx = NULL;
        }
    } else {
        ctx = new_verify_ctx(ks, k, alg, false);
    }
    if (!ctx) {
        ERR_clear_error();
        return IAM_E_INTERNAL;
    }
    iam_status st = EVP_DigestVerify(ctx, s, slen, input, input_len) == 1 ? IAM_OK : IAM_E_BAD_SIGNATURE;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return st;
}

/* ------------------------------------------------------------------ copying */

iam_status keyset_merge(iam_keyset *dst, const iam_keyset *src, iam_error *err)
{
    if (src->count > IAM_MAX_KEYS - dst->count)
        return iam_fail(err, IAM_E_TOO_LARGE, "more than %d keys in all", IAM_MAX_KEYS);
    for (size_t i = 0; i < src->count; i++) {
        const iam_key *from = &src->keys[i];
        iam_key k = {0};
        k.type = from->type;
        k.alg = from->alg;
        k.curve_nid = from->curve_nid;
        k.coord_bytes = from->coord_bytes;
        k.rsa_bits = from->rsa_bits;
        k.secret_len = from->secret_len;
        iam_status st = set_kid(&k, from->kid, from->kid_len, err);
        if (st == IAM_OK && from->pkey) {
            if (EVP_PKEY_up_ref(from->pkey) != 1)
                st = iam_fail(err, IAM_E_INTERNAL, "key reference failed");
            else
                k.pkey = from->pkey;
        }
        if (st == IAM_OK && from->hmac) {
            k.hmac = hmac_states_dup(from->hmac);
            if (!k.hmac)
                st = iam_fail(err, IAM_E_NOMEM, "out of memory");
        }
        if (st != IAM_OK) {
            key_clear(&k);
            return st;
        }
        if ((st = keyset_push(dst, &k, err)) != IAM_OK)
            return st;
    }
    return IAM_OK;
}
