/*
 * mint.c — test-only token minting, independent of the library.
 *
 * Everything here is done from first principles or straight through OpenSSL 3's EVP
 * layer: its own base64url encoder, its own JSON string escaping, HMAC through
 * EVP_Q_mac, RSA PKCS#1 v1.5 / PSS, ECDSA and Ed25519 through EVP_DigestSign, and JWKs
 * built from OSSL_PKEY_PARAM_* getters. It never includes the library's headers, so a
 * token minted here is an outside opinion on what the library must accept.
 *
 * Any internal failure aborts: these are test fixtures, not production code.
 */
#include "mint.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

struct mint_key {
    unsigned char *secret; /* HMAC key, or NULL */
    size_t secret_len;
    EVP_PKEY *pkey;        /* asymmetric key (private), or NULL */
};

/* ------------------------------------------------------------------------- */
/* Failure and small string helpers                                          */
/* ------------------------------------------------------------------------- */

static void die(const char *what)
{
    fprintf(stderr, "mint: %s\n", what);
    ERR_print_errors_fp(stderr);
    abort();
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

/* A growable string: enough for JSON and token assembly. */
typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_reserve(sbuf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (b->len + extra + 1 > cap)
        cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p)
        die("out of memory");
    b->s = p;
    b->cap = cap;
}

static void sb_add(sbuf *b, const void *data, size_t n)
{
    sb_reserve(b, n);
    memcpy(b->s + b->len, data, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("vsnprintf");
    sb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Appends s as a JSON string literal (quotes included). */
static void sb_json_string(sbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    sb_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        switch (c) {
        case '"': sb_add(b, "\\\"", 2); break;
        case '\\': sb_add(b, "\\\\", 2); break;
        case '\b': sb_add(b, "\\b", 2); break;
        case '\f': sb_add(b, "\\f", 2); break;
        case '\n': sb_add(b, "\\n", 2); break;
        case '\r': sb_add(b, "\\r", 2); break;
        case '\t': sb_add(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                sb_add(b, esc, sizeof esc);
            } else {
                sb_add(b, &c, 1);
            }
        }
    }
    sb_add(b, "\"", 1);
}

/* Appends ,"name":"<b64url(data)>". */
static void sb_b64_member(sbuf *b, const char *name, const unsigned char *data, size_t len)
{
    char *enc = mint_b64url(data, len);
    sb_printf(b, ",\"%s\":\"%s\"", name, enc);
    free(enc);
}

/* ------------------------------------------------------------------------- */
/* base64url (RFC 4648 §5, no padding)                                       */
/* ------------------------------------------------------------------------- */

char *mint_b64url(const void *data, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *in = data;
    char *out = xmalloc(len / 3 * 4 + 4 + 1);
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    size_t rest = len - i;
    if (rest == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (rest == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

/* ------------------------------------------------------------------------- */
/* Keys                                                                      */
/* ------------------------------------------------------------------------- */

mint_key *mint_key_hmac(const void *secret, size_t len)
{
    mint_key *k = xmalloc(sizeof *k);
    k->secret = xmalloc(len);
    if (len)
        memcpy(k->secret, secret, len);
    k->secret_len = len;
    k->pkey = NULL;
    return k;
}

static mint_key *wrap_pkey(EVP_PKEY *pkey)
{
    mint_key *k = xmalloc(sizeof *k);
    k->secret = NULL;
    k->secret_len = 0;
    k->pkey = pkey;
    return k;
}

mint_key *mint_key_pem_file(const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    if (!bio)
        die("cannot open PEM file");
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!pkey)
        die("cannot read a private key from PEM file");
    return wrap_pkey(pkey);
}

mint_key *mint_key_generate(const char *type)
{
    EVP_PKEY *pkey = NULL;
    if (strcmp(type, "rsa2048") == 0)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else if (strcmp(type, "rsa1024") == 0)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    else if (strcmp(type, "p256") == 0)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    else if (strcmp(type, "p384") == 0)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    else if (strcmp(type, "p521") == 0)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    else if (strcmp(type, "ed25519") == 0)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    else
        die("unknown key type for mint_key_generate");
    if (!pkey)
        die("key generation failed");
    return wrap_pkey(pkey);
}

void mint_key_free(mint_key *k)
{
    if (!k)
        return;
    if (k->secret) {
        OPENSSL_cleanse(k->secret, k->secret_len);
        free(k->secret);
    }
    EVP_PKEY_free(k->pkey);
    free(k);
}

static char *bio_to_string(BIO *bio)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n < 0 || (n > 0 && !data))
        die("BIO_get_mem_data");
    char *out = xmalloc((size_t)n + 1);
    if (n > 0)
        memcpy(out, data, (size_t)n);
    out[n] = '\0';
    return out;
}

char *mint_key_public_pem(const mint_key *k)
{
    if (!k || !k->pkey)
        die("mint_key_public_pem needs an asymmetric key");
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || PEM_write_bio_PUBKEY(bio, k->pkey) != 1)
        die("PEM_write_bio_PUBKEY");
    char *out = bio_to_string(bio);
    BIO_free(bio);
    return out;
}

/* Size in bytes of one coordinate (and of r, s) for the key's curve: 32, 48, 66. */
static size_t ec_coordinate_bytes(const EVP_PKEY *pkey)
{
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits <= 0)
        die("EVP_PKEY_get_bits");
    return ((size_t)bits + 7) / 8;
}

static const char *ec_jwk_curve(const EVP_PKEY *pkey)
{
    char group[64];
    size_t glen = 0;
    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                        sizeof group, &glen))
        die("EC group name");
    if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
        return "P-256";
    if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
        return "P-384";
    if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0)
        return "P-521";
    die("EC curve has no JWK name");
    return NULL;
}

/* Appends ,"name":"<b64url(bn)>" with bn as big-endian, minimal (pad == 0) or fixed width. */
static void sb_bn_member(sbuf *b, const char *name, const EVP_PKEY *pkey, const char *param,
                         size_t pad)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pkey, param, &bn))
        die("EVP_PKEY_get_bn_param");
    size_t n = pad ? pad : (size_t)BN_num_bytes(bn);
    unsigned char *buf = xmalloc(n);
    if (BN_bn2binpad(bn, buf, (int)n) != (int)n)
        die("BN_bn2binpad");
    sb_b64_member(b, name, buf, n);
    free(buf);
    BN_free(bn);
}

char *mint_key_public_jwk(const mint_key *k, const char *kid, const char *alg)
{
    if (!k)
        die("mint_key_public_jwk: NULL key");
    sbuf b = {0};
    const char *kty;
    if (!k->pkey)
        kty = "oct";
    else if (EVP_PKEY_is_a(k->pkey, "RSA"))
        kty = "RSA";
    else if (EVP_PKEY_is_a(k->pkey, "EC"))
        kty = "EC";
    else if (EVP_PKEY_is_a(k->pkey, "ED25519"))
        kty = "OKP";
    else
        die("mint_key_public_jwk: unsupported key type");

    sb_printf(&b, "{\"kty\":\"%s\"", kty);
    if (kid) {
        sb_puts(&b, ",\"kid\":");
        sb_json_string(&b, kid);
    }
    if (alg) {
        sb_puts(&b, ",\"alg\":");
        sb_json_string(&b, alg);
    }

    if (!k->pkey) {
        sb_b64_member(&b, "k", k->secret, k->secret_len);
    } else if (strcmp(kty, "RSA") == 0) {
        sb_bn_member(&b, "n", k->pkey, OSSL_PKEY_PARAM_RSA_N, 0);
        sb_bn_member(&b, "e", k->pkey, OSSL_PKEY_PARAM_RSA_E, 0);
    } else if (strcmp(kty, "EC") == 0) {
        size_t width = ec_coordinate_bytes(k->pkey);
        sb_printf(&b, ",\"crv\":\"%s\"", ec_jwk_curve(k->pkey));
        sb_bn_member(&b, "x", k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, width);
        sb_bn_member(&b, "y", k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, width);
    } else { /* OKP / Ed25519 */
        unsigned char pub[32];
        size_t publen = 0;
        if (!EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub,
                                             &publen) ||
            publen != sizeof pub)
            die("Ed25519 public key");
        sb_puts(&b, ",\"crv\":\"Ed25519\"");
        sb_b64_member(&b, "x", pub, publen);
    }
    sb_puts(&b, "}");
    return b.s;
}

/* ------------------------------------------------------------------------- */
/* Signing                                                                   */
/* ------------------------------------------------------------------------- */

/* Digest name for the last three characters of an alg ("256" → "SHA256"). */
static const char *alg_digest(const char *alg)
{
    const char *bits = alg + 2;
    if (strcmp(bits, "256") == 0)
        return "SHA256";
    if (strcmp(bits, "384") == 0)
        return "SHA384";
    if (strcmp(bits, "512") == 0)
        return "SHA512";
    die("unsupported alg");
    return NULL;
}

static unsigned char *sign_hmac(const char *alg, const mint_key *key, const unsigned char *msg,
                                size_t msglen, size_t *siglen)
{
    if (key->pkey)
        die("HS* needs an HMAC key");
    unsigned char *sig = xmalloc(EVP_MAX_MD_SIZE);
    /* EVP_Q_mac wants a non-NULL key pointer even for an empty secret. */
    static const unsigned char empty[1] = {0};
    const void *k = key->secret_len ? key->secret : empty;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, alg_digest(alg), NULL, k, key->secret_len, msg, msglen,
                   sig, EVP_MAX_MD_SIZE, siglen))
        die("EVP_Q_mac");
    return sig;
}

/* EVP_DigestSign with md (NULL for EdDSA) and padding (0: key default). */
static unsigned char *sign_pkey(EVP_PKEY *pkey, const char *md, int padding,
                                const unsigned char *msg, size_t msglen, size_t *siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (!ctx || EVP_DigestSignInit_ex(ctx, &pctx, md, NULL, NULL, pkey, NULL) != 1)
        die("EVP_DigestSignInit_ex");
    if (padding == RSA_PKCS1_PADDING) {
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0)
            die("RSA PKCS#1 padding");
    } else if (padding == RSA_PKCS1_PSS_PADDING) {
        /* RFC 7518 §3.5: salt length = digest length, MGF1 with the same digest. */
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, md, NULL) <= 0)
            die("RSA PSS parameters");
    }
    size_t len = 0;
    if (EVP_DigestSign(ctx, NULL, &len, msg, msglen) != 1)
        die("EVP_DigestSign (size)");
    unsigned char *sig = xmalloc(len);
    if (EVP_DigestSign(ctx, sig, &len, msg, msglen) != 1)
        die("EVP_DigestSign");
    EVP_MD_CTX_free(ctx);
    *siglen = len;
    return sig;
}

/* ECDSA: OpenSSL's DER SEQUENCE{r, s} → fixed-width r||s (RFC 7518 §3.4). */
static unsigned char *sign_ecdsa(const char *alg, EVP_PKEY *pkey, const unsigned char *msg,
                                 size_t msglen, size_t *siglen)
{
    size_t derlen = 0;
    unsigned char *der = sign_pkey(pkey, alg_digest(alg), 0, msg, msglen, &derlen);
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (!es)
        die("d2i_ECDSA_SIG");
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(es, &r, &s);
    size_t width = ec_coordinate_bytes(pkey);
    unsigned char *raw = xmalloc(2 * width);
    if (BN_bn2binpad(r, raw, (int)width) != (int)width ||
        BN_bn2binpad(s, raw + width, (int)width) != (int)width)
        die("ECDSA r/s wider than the curve");
    ECDSA_SIG_free(es);
    free(der);
    *siglen = 2 * width;
    return raw;
}

static unsigned char *sign_alg(const char *alg, const mint_key *key, const unsigned char *msg,
                               size_t msglen, size_t *siglen)
{
    if (strncmp(alg, "HS", 2) == 0)
        return sign_hmac(alg, key, msg, msglen, siglen);
    if (!key->pkey)
        die("asymmetric alg needs an asymmetric key");
    if (strncmp(alg, "RS", 2) == 0)
        return sign_pkey(key->pkey, alg_digest(alg), RSA_PKCS1_PADDING, msg, msglen, siglen);
    if (strncmp(alg, "PS", 2) == 0)
        return sign_pkey(key->pkey, alg_digest(alg), RSA_PKCS1_PSS_PADDING, msg, msglen,
                         siglen);
    if (strncmp(alg, "ES", 2) == 0)
        return sign_ecdsa(alg, key->pkey, msg, msglen, siglen);
    if (strcmp(alg, "EdDSA") == 0)
        return sign_pkey(key->pkey, NULL, 0, msg, msglen, siglen);
    die("unsupported alg");
    return NULL;
}

char *mint_sign(const char *header_json, const void *payload, size_t payload_len,
                const char *alg, const mint_key *key)
{
    if (!header_json || !alg || !key || (!payload && payload_len))
        die("mint_sign: bad arguments");
    sbuf b = {0};
    char *h = mint_b64url(header_json, strlen(header_json));
    char *p = mint_b64url(payload, payload_len);
    sb_puts(&b, h);
    sb_add(&b, ".", 1);
    sb_puts(&b, p);
    free(h);
    free(p);

    size_t siglen = 0;
    unsigned char *sig = sign_alg(alg, key, (const unsigned char *)b.s, b.len, &siglen);
    char *s = mint_b64url(sig, siglen);
    sb_add(&b, ".", 1);
    sb_puts(&b, s);
    free(s);
    free(sig);
    return b.s;
}

char *mint_token(const char *alg, const char *kid, const char *payload_json, const mint_key *key)
{
    sbuf h = {0};
    sb_puts(&h, "{\"alg\":");
    sb_json_string(&h, alg);
    if (kid) {
        sb_puts(&h, ",\"kid\":");
        sb_json_string(&h, kid);
    }
    sb_puts(&h, ",\"typ\":\"JWT\"}");
    char *tok = mint_sign(h.s, payload_json, strlen(payload_json), alg, key);
    free(h.s);
    return tok;
}

/* ------------------------------------------------------------------------- */
/* The platform's claim set                                                  */
/* ------------------------------------------------------------------------- */

/* A uuid4-shaped jti derived from SHA-256("<sub>|<exp>"): stable per (sub, exp). */
static void derive_jti(const char *sub, int64_t exp, char out[37])
{
    sbuf in = {0};
    sb_printf(&in, "%s|%" PRId64, sub ? sub : "", exp);
    unsigned char d[32];
    unsigned int dlen = 0;
    if (EVP_Digest(in.s, in.len, d, &dlen, EVP_sha256(), NULL) != 1)
        die("EVP_Digest");
    free(in.s);
    d[6] = (unsigned char)((d[6] & 0x0f) | 0x40); /* version 4 */
    d[8] = (unsigned char)((d[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[d[i] >> 4];
        out[o++] = hex[d[i] & 15];
    }
    out[o] = '\0';
}

char *mint_platform_claims(const char *sub, int64_t exp)
{
    char jti[37];
    derive_jti(sub, exp, jti);
    sbuf b = {0};
    sb_puts(&b, "{");
    if (sub) { /* NULL leaves `sub` out (a token without a user id) */
        sb_puts(&b, "\"sub\":");
        sb_json_string(&b, sub);
        sb_puts(&b, ",");
    }
    sb_puts(&b, "\"email\":\"user@example.org\","
                "\"roles\":[\"user\",\"scientist\"],"
                "\"permissions\":[\"dataset.read\",\"model.use\",\"workflow.execute\"],"
                "\"org_id\":7,"
                "\"org_role\":[\"member\"],"
                "\"team_id\":null,"
                "\"team_role\":null,"
                "\"auth_method\":\"password\","
                "\"idp_org_id\":null,"
                "\"token_version\":2,"
                "\"mfa_verified\":true,");
    sb_printf(&b, "\"exp\":%" PRId64 ",", exp);
    sb_printf(&b, "\"type\":\"access\",\"jti\":\"%s\",", jti);
    sb_puts(&b, "\"iss\":\"omnibioai-auth\",\"aud\":\"omnibioai-platform\"}");
    return b.s;
}
