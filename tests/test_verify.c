/*
 * test_verify.c — iam_token_verify and iam_jws_verify through the public API, with tokens
 * minted independently by tests/support/mint.c (and, where a test needs bytes mint.c will
 * not produce, signed here directly with OpenSSL).
 *
 * Every rejection is checked for its exact status, for err->code agreeing with it, and
 * for a message that is non-empty and carries nothing from the token or the keys (no
 * 16-byte window of the token, no email, no secret, no kid).
 *
 * The clock is fixed: NOW = 1900000000 and tokens expire at NOW + 900 unless a test says
 * otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "iamclient.h"
#include "mint.h"

#define NOW INT64_C(1900000000)
#define EXP (NOW + 900)

/* 64 printable bytes so that "the secret is not in the message" is a plain strstr. */
static const char SECRET64[] = "S3cr3t-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU";
static const char EMAIL[] = "alice.private@example.org";
static const char PLATFORM_EMAIL[] = "user@example.org";
static const char KID_RSA1[] = "kid-rsa-one-7f3a9c";
static const char KID_RSA2[] = "kid-rsa-two-91bc4e";
static const char KID_EC[] = "kid-ec-p256-5d2e71";
static const char KID_UNKNOWN[] = "kid-unknown-0c4d88";

/* ------------------------------------------------------------------------- */
/* Fixtures                                                                  */
/* ------------------------------------------------------------------------- */

static struct {
    mint_key *hs64, *hs32, *hs48;
    mint_key *rsa1, *rsa2, *rsa_att;
    mint_key *p256, *p384, *p521, *p256_att, *ed;
    char *rsa1_pem, *rsa2_pem;
    iam_keyset *ks_hs;   /* the 64-byte secret only */
    iam_keyset *ks_rsa1; /* rsa1 (JWK, no kid) only */
} F;

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

/* printf into a fresh buffer. */
static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static void ks_add_hmac(iam_keyset *ks, const void *secret, size_t len, const char *kid)
{
    iam_error e;
    memset(&e, 0, sizeof e);
    iam_status st = iam_keyset_add_hmac(ks, secret, len, kid, &e);
    if (st != IAM_OK) {
        print_error("iam_keyset_add_hmac: %s (%s)\n", iam_status_name(st), e.message);
        fail();
    }
}

static void ks_add_jwk(iam_keyset *ks, const mint_key *k, const char *kid, const char *alg)
{
    char *jwk = mint_key_public_jwk(k, kid, alg);
    iam_error e;
    memset(&e, 0, sizeof e);
    iam_status st = iam_keyset_add_jwk(ks, jwk, strlen(jwk), &e);
    if (st != IAM_OK) {
        print_error("iam_keyset_add_jwk(%s): %s (%s)\n", jwk, iam_status_name(st), e.message);
        free(jwk);
        fail();
    }
    free(jwk);
}

static void ks_add_pem(iam_keyset *ks, const mint_key *k, const char *kid)
{
    char *pem = mint_key_public_pem(k);
    iam_error e;
    memset(&e, 0, sizeof e);
    iam_status st = iam_keyset_add_pem(ks, pem, strlen(pem), kid, &e);
    if (st != IAM_OK) {
        print_error("iam_keyset_add_pem: %s (%s)\n", iam_status_name(st), e.message);
        free(pem);
        fail();
    }
    free(pem);
}

static iam_keyset *ks_new(void)
{
    iam_keyset *ks = iam_keyset_new();
    assert_non_null(ks);
    return ks;
}

static int group_setup(void **state)
{
    (void)state;
    F.hs64 = mint_key_hmac(SECRET64, 64);
    F.hs32 = mint_key_hmac(SECRET64, 32);
    F.hs48 = mint_key_hmac(SECRET64, 48);
    F.rsa1 = mint_key_generate("rsa2048");
    F.rsa2 = mint_key_generate("rsa2048");
    F.rsa_att = mint_key_generate("rsa2048");
    F.p256 = mint_key_generate("p256");
    F.p384 = mint_key_generate("p384");
    F.p521 = mint_key_generate("p521");
    F.p256_att = mint_key_generate("p256");
    F.ed = mint_key_generate("ed25519");
    F.rsa1_pem = mint_key_public_pem(F.rsa1);
    F.rsa2_pem = mint_key_public_pem(F.rsa2);
    F.ks_hs = iam_keyset_new();
    F.ks_rsa1 = iam_keyset_new();
    if (!F.ks_hs || !F.ks_rsa1)
        return -1;
    if (iam_keyset_add_hmac(F.ks_hs, SECRET64, 64, NULL, NULL) != IAM_OK)
        return -1;
    char *jwk = mint_key_public_jwk(F.rsa1, NULL, NULL);
    iam_status st = iam_keyset_add_jwk(F.ks_rsa1, jwk, strlen(jwk), NULL);
    free(jwk);
    return st == IAM_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    mint_key *keys[] = {F.hs64, F.hs32, F.hs48, F.rsa1, F.rsa2, F.rsa_att,
                        F.p256, F.p384, F.p521, F.p256_att, F.ed};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        mint_key_free(keys[i]);
    free(F.rsa1_pem);
    free(F.rsa2_pem);
    iam_keyset_release(F.ks_hs);
    iam_keyset_release(F.ks_rsa1);
    memset(&F, 0, sizeof F);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* base64url and signature surgery (independent of the library)              */
/* ------------------------------------------------------------------------- */

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes unpadded base64url; the buffer is malloc'd. */
static unsigned char *b64_decode(const char *s, size_t len, size_t *out_len)
{
    unsigned char *out = malloc(len * 3 / 4 + 3);
    assert_non_null(out);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(s[i]);
        assert_true(v >= 0);
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out_len = o;
    return out;
}

/* The token with its signature segment replaced by b64url(sig). */
static char *with_signature(const char *tok, const unsigned char *sig, size_t sig_len)
{
    const char *dot = strrchr(tok, '.');
    assert_non_null(dot);
    char *s = mint_b64url(sig, sig_len);
    char *out = xprintf("%.*s.%s", (int)(dot - tok), tok, s);
    free(s);
    return out;
}

static unsigned char *signature_of(const char *tok, size_t *len)
{
    const char *dot = strrchr(tok, '.');
    assert_non_null(dot);
    return b64_decode(dot + 1, strlen(dot + 1), len);
}

/* "h64.p64" + "." + b64url(HMAC-SHA256(SECRET64, "h64.p64")): a correctly keyed HS256
 * signature over segments that mint_sign would never produce (non-canonical base64url…). */
static char *sign_raw_hs256(const char *h64, const char *p64)
{
    char *input = xprintf("%s.%s", h64, p64);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, SECRET64, 64,
                              (const unsigned char *)input, strlen(input), mac, sizeof mac,
                              &mac_len));
    char *s = mint_b64url(mac, mac_len);
    char *tok = xprintf("%s.%s", input, s);
    free(s);
    free(input);
    return tok;
}

/* One DER INTEGER of a big-endian unsigned value. */
static size_t der_int(const unsigned char *v, size_t n, unsigned char *out)
{
    while (n > 1 && v[0] == 0)
        v++, n--;
    size_t o = 0;
    out[o++] = 0x02;
    int pad = (v[0] & 0x80) != 0;
    out[o++] = (unsigned char)(n + (size_t)pad);
    if (pad)
        out[o++] = 0;
    memcpy(out + o, v, n);
    return o + n;
}

/* ------------------------------------------------------------------------- */
/* Expectations                                                              */
/* ------------------------------------------------------------------------- */

static bool contains(const char *hay, size_t n, const char *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return true;
    return false;
}

/* Strings that must never appear in an error message. */
static void check_message(const iam_error *e, const char *tok, const char *file, int line)
{
    size_t n = strnlen(e->message, sizeof e->message);
    if (n == 0 || n >= sizeof e->message) {
        print_error("%s:%d: error message empty or unterminated\n", file, line);
        _fail(file, line);
    }
    const char *forbidden[] = {SECRET64, EMAIL,  PLATFORM_EMAIL, KID_RSA1,
                               KID_RSA2, KID_EC, KID_UNKNOWN,    "example.org"};
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++) {
        if (strstr(e->message, forbidden[i])) {
            print_error("%s:%d: message \"%s\" contains \"%s\"\n", file, line, e->message,
                        forbidden[i]);
            _fail(file, line);
        }
    }
    /* 16 bytes of the secret anywhere. */
    for (size_t i = 0; i + 16 <= 64; i++) {
        if (contains(e->message, n, SECRET64 + i, 16)) {
            print_error("%s:%d: message \"%s\" contains part of the secret\n", file, line,
                        e->message);
            _fail(file, line);
        }
    }
    /* No 16-byte window of the token. */
    size_t tl = tok ? strlen(tok) : 0;
    for (size_t i = 0; i + 16 <= tl; i++) {
        if (contains(e->message, n, tok + i, 16)) {
            print_error("%s:%d: message \"%s\" contains token bytes\n", file, line, e->message);
            _fail(file, line);
        }
    }
}

/* iam_token_verify(tok) must give want; on success *out (if out) gets the user. */
static void expect_token_(const char *tok, size_t len, const iam_keyset *ks,
                          const iam_verify_options *opts, int64_t now, iam_status want,
                          iam_user **out, const char *file, int line)
{
    iam_user *u = (iam_user *)(uintptr_t)0x1; /* must be overwritten */
    iam_error e;
    memset(&e, 0x5a, sizeof e);
    iam_status st = iam_token_verify(tok, len, ks, opts, now, &u, &e);
    if (st != want) {
        print_error("%s:%d: iam_token_verify = %s (\"%.*s\"), want %s\n", file, line,
                    iam_status_name(st), st == IAM_OK ? 0 : (int)sizeof e.message,
                    st == IAM_OK ? "" : e.message, iam_status_name(want));
        if (st == IAM_OK)
            iam_user_release(u);
        _fail(file, line);
    }
    if (st == IAM_OK) {
        if (!u || u == (iam_user *)(uintptr_t)0x1) {
            print_error("%s:%d: IAM_OK without a user\n", file, line);
            _fail(file, line);
        }
        if (out)
            *out = u;
        else
            iam_user_release(u);
        return;
    }
    if (u != NULL) {
        print_error("%s:%d: *out not NULL on failure\n", file, line);
        _fail(file, line);
    }
    if (e.code != st) {
        print_error("%s:%d: err.code %d != status %d\n", file, line, (int)e.code, (int)st);
        _fail(file, line);
    }
    check_message(&e, tok, file, line);
}
#define EXPECT_TOKEN(tok, ks, opts, now, want)                                                  \
    expect_token_((tok), strlen(tok), (ks), (opts), (now), (want), NULL, __FILE__, __LINE__)
#define EXPECT_TOKEN_USER(tok, ks, opts, now, out)                                              \
    expect_token_((tok), strlen(tok), (ks), (opts), (now), IAM_OK, (out), __FILE__, __LINE__)

/* iam_jws_verify(tok) must give want; on success the payload is returned (caller frees). */
static char *expect_jws_(const char *tok, size_t len, const iam_keyset *ks, iam_status want,
                         size_t *plen_out, const char *file, int line)
{
    static char sentinel[] = "sentinel";
    char *payload = sentinel;
    size_t plen = 999;
    iam_error e;
    memset(&e, 0x5a, sizeof e);
    iam_status st = iam_jws_verify(tok, len, ks, &payload, &plen, &e);
    if (st != want) {
        print_error("%s:%d: iam_jws_verify = %s (\"%.*s\"), want %s\n", file, line,
                    iam_status_name(st), st == IAM_OK ? 0 : (int)sizeof e.message,
                    st == IAM_OK ? "" : e.message, iam_status_name(want));
        if (st == IAM_OK)
            iam_free(payload);
        _fail(file, line);
    }
    if (st == IAM_OK) {
        if (plen_out)
            *plen_out = plen;
        return payload;
    }
    if (payload != NULL) {
        print_error("%s:%d: payload not NULL on failure\n", file, line);
        _fail(file, line);
    }
    if (e.code != st) {
        print_error("%s:%d: err.code %d != status %d\n", file, line, (int)e.code, (int)st);
        _fail(file, line);
    }
    check_message(&e, tok, file, line);
    return NULL;
}
#define EXPECT_JWS(tok, ks, want)                                                               \
    iam_free(expect_jws_((tok), strlen(tok), (ks), (want), NULL, __FILE__, __LINE__))

/* ------------------------------------------------------------------------- */
/* Claim sets                                                                */
/* ------------------------------------------------------------------------- */

/* Raw JSON values; NULL = the default value, OMIT = leave the claim out. */
static const char OMIT[] = "<omit>";
typedef struct claims_spec {
    const char *sub, *exp, *iss, *aud, *type;
    const char *extra; /* raw members appended, e.g. "\"nbf\":1" */
} claims_spec;

static char *build_claims(const claims_spec *c)
{
    size_t cap = 1024 + (c->extra ? strlen(c->extra) : 0);
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t o = 0;
    buf[o++] = '{';
    struct {
        const char *name, *value, *def;
    } m[] = {
        {"sub", c->sub, "\"2\""},
        {"email", NULL, "\"alice.private@example.org\""},
        {"roles", NULL, "[\"user\"]"},
        {"org_id", NULL, "7"},
        {"exp", c->exp, "1900000900"},
        {"type", c->type, "\"access\""},
        {"jti", NULL, "\"3f2b7a4e-1c9d-4e8f-a6b5-0d1c2e3f4a5b\""},
        {"iss", c->iss, "\"omnibioai-auth\""},
        {"aud", c->aud, "\"omnibioai-platform\""},
    };
    bool first = true;
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        const char *v = m[i].value ? m[i].value : m[i].def;
        if (v == OMIT)
            continue;
        o += (size_t)snprintf(buf + o, cap - o, "%s\"%s\":%s", first ? "" : ",", m[i].name, v);
        assert_true(o < cap);
        first = false;
    }
    if (c->extra)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", first ? "" : ",", c->extra);
    assert_true(o + 2 < cap);
    buf[o++] = '}';
    buf[o] = '\0';
    return buf;
}

/* HS256 token (64-byte secret) over the claim set. */
static char *hs_token(const claims_spec *c)
{
    char *claims = build_claims(c);
    char *tok = mint_token("HS256", NULL, claims, F.hs64);
    free(claims);
    return tok;
}

#define CLAIMS_EXPECT(want, ...)                                                                \
    do {                                                                                        \
        claims_spec spec_ = {__VA_ARGS__};                                                      \
        char *tok_ = hs_token(&spec_);                                                          \
        EXPECT_TOKEN(tok_, F.ks_hs, NULL, NOW, (want));                                         \
        free(tok_);                                                                             \
    } while (0)

#define CLAIMS_EXPECT_OPTS(opts, now, want, ...)                                                \
    do {                                                                                        \
        claims_spec spec_ = {__VA_ARGS__};                                                      \
        char *tok_ = hs_token(&spec_);                                                          \
        EXPECT_TOKEN(tok_, F.ks_hs, (opts), (now), (want));                                     \
        free(tok_);                                                                             \
    } while (0)

/* HS256 token with a verbatim header. */
static char *hs_with_header(const char *header, const char *payload)
{
    return mint_sign(header, payload, strlen(payload), "HS256", F.hs64);
}

/* ------------------------------------------------------------------------- */
/* Algorithms that must verify                                               */
/* ------------------------------------------------------------------------- */

static void accept_alg(const char *alg, const mint_key *signer, const iam_keyset *ks)
{
    char *claims = mint_platform_claims("2", EXP);
    char *tok = mint_token(alg, NULL, claims, signer);
    iam_user *u = NULL;
    EXPECT_TOKEN_USER(tok, ks, NULL, NOW, &u);
    assert_string_equal(iam_user_id(u), "2");
    iam_user_release(u);
    /* And the bare JWS gives the claim set back byte for byte. */
    size_t plen = 0;
    char *p = expect_jws_(tok, strlen(tok), ks, IAM_OK, &plen, __FILE__, __LINE__);
    assert_int_equal(plen, strlen(claims));
    assert_memory_equal(p, claims, plen);
    assert_int_equal(p[plen], '\0');
    iam_free(p);
    free(tok);
    free(claims);
}

static void test_alg_hmac(void **state)
{
    (void)state;
    accept_alg("HS256", F.hs64, F.ks_hs);
    accept_alg("HS384", F.hs64, F.ks_hs);
    accept_alg("HS512", F.hs64, F.ks_hs);
    /* The same secret as an oct JWK. */
    iam_keyset *ks = ks_new();
    ks_add_jwk(ks, F.hs64, NULL, NULL);
    accept_alg("HS256", F.hs64, ks);
    accept_alg("HS512", F.hs64, ks);
    iam_keyset_release(ks);
    /* Minimum sizes per algorithm are fine. */
    ks = ks_new();
    ks_add_hmac(ks, SECRET64, 32, NULL);
    accept_alg("HS256", F.hs32, ks);
    iam_keyset_release(ks);
    ks = ks_new();
    ks_add_hmac(ks, SECRET64, 48, NULL);
    accept_alg("HS384", F.hs48, ks);
    iam_keyset_release(ks);
}

static void test_alg_rsa(void **state)
{
    (void)state;
    const char *algs[] = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"};
    iam_keyset *pem = ks_new();
    ks_add_pem(pem, F.rsa1, NULL);
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        accept_alg(algs[i], F.rsa1, F.ks_rsa1);
        accept_alg(algs[i], F.rsa1, pem);
    }
    iam_keyset_release(pem);
}

static void test_alg_ec(void **state)
{
    (void)state;
    iam_keyset *jwk = ks_new(), *pem = ks_new();
    ks_add_jwk(jwk, F.p256, NULL, NULL);
    ks_add_jwk(jwk, F.p384, NULL, NULL);
    ks_add_jwk(jwk, F.p521, NULL, NULL);
    ks_add_pem(pem, F.p256, NULL);
    ks_add_pem(pem, F.p384, NULL);
    ks_add_pem(pem, F.p521, NULL);
    accept_alg("ES256", F.p256, jwk);
    accept_alg("ES384", F.p384, jwk);
    accept_alg("ES512", F.p521, jwk);
    accept_alg("ES256", F.p256, pem);
    accept_alg("ES384", F.p384, pem);
    accept_alg("ES512", F.p521, pem);
    /* ECDSA is randomised: r and s with leading zero bytes or a high bit set (which
     * change their DER form) all come up over a few dozen signatures. */
    for (int i = 0; i < 32; i++) {
        accept_alg("ES256", F.p256, jwk);
        accept_alg("ES512", F.p521, jwk);
    }
    iam_keyset_release(jwk);
    iam_keyset_release(pem);
}

static void test_alg_eddsa(void **state)
{
    (void)state;
    iam_keyset *jwk = ks_new(), *pem = ks_new();
    ks_add_jwk(jwk, F.ed, NULL, NULL);
    ks_add_pem(pem, F.ed, NULL);
    accept_alg("EdDSA", F.ed, jwk);
    accept_alg("EdDSA", F.ed, pem);
    iam_keyset_release(jwk);
    iam_keyset_release(pem);
}

static void test_hmac_key_size_per_alg(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    /* RFC 7518 §3.2: HS384 needs a 48-byte key, HS512 a 64-byte one. */
    iam_keyset *ks32 = ks_new(), *ks48 = ks_new();
    ks_add_hmac(ks32, SECRET64, 32, NULL);
    ks_add_hmac(ks48, SECRET64, 48, NULL);
    char *t = mint_token("HS384", NULL, claims, F.hs32);
    EXPECT_TOKEN(t, ks32, NULL, NOW, IAM_E_UNKNOWN_KEY);
    EXPECT_JWS(t, ks32, IAM_E_UNKNOWN_KEY);
    free(t);
    t = mint_token("HS512", NULL, claims, F.hs32);
    EXPECT_TOKEN(t, ks32, NULL, NOW, IAM_E_UNKNOWN_KEY);
    free(t);
    t = mint_token("HS512", NULL, claims, F.hs48);
    EXPECT_TOKEN(t, ks48, NULL, NOW, IAM_E_UNKNOWN_KEY);
    EXPECT_JWS(t, ks48, IAM_E_UNKNOWN_KEY);
    free(t);
    /* A secret shorter than 32 bytes is refused when added. */
    iam_keyset *ks = ks_new();
    iam_error e;
    memset(&e, 0, sizeof e);
    assert_int_equal(iam_keyset_add_hmac(ks, SECRET64, 31, NULL, &e), IAM_E_BAD_KEY);
    assert_int_equal(iam_keyset_count(ks), 0);
    assert_null(strstr(e.message, "S3cr3t"));
    iam_keyset_release(ks);
    iam_keyset_release(ks32);
    iam_keyset_release(ks48);
    free(claims);
}

/* Secrets around the hash block sizes (64 for SHA-256, 128 for SHA-384/512), where
 * HMAC switches to hashing the key first. */
static void test_hmac_secret_lengths(void **state)
{
    (void)state;
    static const size_t lens[] = {32, 47, 48, 63, 64, 65, 127, 128, 129, 200, 1024};
    static const struct {
        const char *alg;
        size_t min;
    } algs[] = {{"HS256", 32}, {"HS384", 48}, {"HS512", 64}};
    unsigned char secret[1025];
    for (size_t i = 0; i < sizeof secret; i++)
        secret[i] = (unsigned char)(i * 37 + 11);
    char *claims = mint_platform_claims("2", EXP);
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        iam_keyset *ks = ks_new();
        ks_add_hmac(ks, secret, lens[l], NULL);
        mint_key *k = mint_key_hmac(secret, lens[l]);
        for (size_t a = 0; a < 3; a++) {
            print_message("%s with a %zu-byte secret\n", algs[a].alg, lens[l]);
            if (lens[l] >= algs[a].min) {
                accept_alg(algs[a].alg, k, ks);
            } else {
                char *t = mint_token(algs[a].alg, NULL, claims, k);
                EXPECT_TOKEN(t, ks, NULL, NOW, IAM_E_UNKNOWN_KEY);
                free(t);
            }
        }
        /* One byte less of the same secret is another key. */
        mint_key *shorter = mint_key_hmac(secret, lens[l] - 1);
        char *t = mint_token("HS256", NULL, claims, shorter);
        EXPECT_TOKEN(t, ks, NULL, NOW, IAM_E_BAD_SIGNATURE);
        free(t);
        mint_key_free(shorter);
        mint_key_free(k);
        iam_keyset_release(ks);
    }
    iam_keyset *ks = ks_new();
    assert_int_equal(iam_keyset_add_hmac(ks, secret, 1025, NULL, NULL), IAM_E_BAD_KEY);
    iam_keyset_release(ks);
    free(claims);
}

/* ------------------------------------------------------------------------- */
/* alg header                                                                */
/* ------------------------------------------------------------------------- */

static void test_alg_header_rejections(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    const char *headers[] = {
        "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"None\",\"typ\":\"JWT\"}",
        "{\"alg\":\"NONE\",\"typ\":\"JWT\"}",
        "{\"alg\":\"nOnE\",\"typ\":\"JWT\"}",
        "{\"alg\":\"\",\"typ\":\"JWT\"}",
        "{\"typ\":\"JWT\"}",
        "{}",
        "{\"alg\":256,\"typ\":\"JWT\"}",
        "{\"alg\":null,\"typ\":\"JWT\"}",
        "{\"alg\":true}",
        "{\"alg\":[\"HS256\"]}",
        "{\"alg\":{\"name\":\"HS256\"}}",
        "{\"alg\":\"hs256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"Hs256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS256 \",\"typ\":\"JWT\"}",
        "{\"alg\":\" HS256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS2560\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS\",\"typ\":\"JWT\"}",
        "{\"alg\":\"RS1\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS256\\u0020\",\"typ\":\"JWT\"}",
        "{\"alg\":\"eddsa\",\"typ\":\"JWT\"}",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        /* Correctly keyed HS256 signature: the header alone must sink it. */
        char *t = hs_with_header(headers[i], claims);
        print_message("header %s\n", headers[i]);
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_UNSUPPORTED_ALG);
        EXPECT_JWS(t, F.ks_hs, IAM_E_UNSUPPORTED_ALG);
        free(t);
    }
    /* The classic unsecured token: empty signature segment. */
    const char *none_headers[] = {"{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"none\"}"};
    for (size_t i = 0; i < 2; i++) {
        char *h = mint_b64url(none_headers[i], strlen(none_headers[i]));
        char *p = mint_b64url(claims, strlen(claims));
        char *t = xprintf("%s.%s.", h, p);
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_UNSUPPORTED_ALG);
        EXPECT_TOKEN(t, F.ks_rsa1, NULL, NOW, IAM_E_UNSUPPORTED_ALG);
        EXPECT_JWS(t, F.ks_hs, IAM_E_UNSUPPORTED_ALG);
        free(t);
        free(h);
        free(p);
    }
    free(claims);
}

/* ------------------------------------------------------------------------- */
/* Algorithm confusion                                                       */
/* ------------------------------------------------------------------------- */

static void test_alg_confusion(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);

    /* HS256 "signed" with the RSA public key's PEM text as the HMAC secret. */
    iam_keyset *pem_ks = ks_new();
    iam_error e;
    memset(&e, 0, sizeof e);
    assert_int_equal(iam_keyset_add_pem(pem_ks, F.rsa1_pem, strlen(F.rsa1_pem), NULL, &e), IAM_OK);
    mint_key *pem_as_secret = mint_key_hmac(F.rsa1_pem, strlen(F.rsa1_pem));
    char *t = mint_token("HS256", NULL, claims, pem_as_secret);
    EXPECT_TOKEN(t, pem_ks, NULL, NOW, IAM_E_UNKNOWN_KEY);
    EXPECT_JWS(t, pem_ks, IAM_E_UNKNOWN_KEY);
    free(t);
    /* Same, naming the platform kid of that PEM. */
    char kid[17];
    assert_int_equal(iam_pem_kid(F.rsa1_pem, strlen(F.rsa1_pem), kid), IAM_OK);
    iam_keyset *kid_ks = ks_new();
    assert_int_equal(iam_keyset_add_pem(kid_ks, F.rsa1_pem, strlen(F.rsa1_pem), kid, NULL), IAM_OK);
    t = mint_token("HS256", kid, claims, pem_as_secret);
    EXPECT_TOKEN(t, kid_ks, NULL, NOW, IAM_E_UNKNOWN_KEY);
    free(t);
    mint_key_free(pem_as_secret);

    /* HS256 keyed with the RSA JWK's text, against that JWK. */
    char *jwk = mint_key_public_jwk(F.rsa1, NULL, NULL);
    mint_key *jwk_as_secret = mint_key_hmac(jwk, strlen(jwk));
    t = mint_token("HS256", NULL, claims, jwk_as_secret);
    EXPECT_TOKEN(t, F.ks_rsa1, NULL, NOW, IAM_E_UNKNOWN_KEY);
    free(t);
    mint_key_free(jwk_as_secret);
    free(jwk);

    /* Asymmetric algorithms against sets without a key of their type. */
    t = mint_token("ES256", NULL, claims, F.p256);
    EXPECT_TOKEN(t, F.ks_rsa1, NULL, NOW, IAM_E_UNKNOWN_KEY);
    EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_UNKNOWN_KEY);
    free(t);
    t = mint_token("RS256", NULL, claims, F.rsa1);
    EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_UNKNOWN_KEY);
    free(t);
    t = mint_token("EdDSA", NULL, claims, F.ed);
    EXPECT_TOKEN(t, F.ks_rsa1, NULL, NOW, IAM_E_UNKNOWN_KEY);
    free(t);

    /* An EC key only verifies the algorithm of its curve. */
    iam_keyset *p256 = ks_new();
    ks_add_jwk(p256, F.p256, NULL, NULL);
    t = mint_token("ES384", NULL, claims, F.p384);
    EXPECT_TOKEN(t, p256, NULL, NOW, IAM_E_UNKNOWN_KEY);
    free(t);
    iam_keyset_release(p256);

    /* A JWK restricted to RS256 does not verify PS256 by the same key. */
    iam_keyset *rs_only = ks_new();
    ks_add_jwk(rs_only, F.rsa1, NULL, "RS256");
    t = mint_token("PS256", NULL, claims, F.rsa1);
    EXPECT_TOKEN(t, rs_only, NULL, NOW, IAM_E_UNKNOWN_KEY);
    free(t);
    t = mint_token("RS256", NULL, claims, F.rsa1);
    EXPECT_TOKEN(t, rs_only, NULL, NOW, IAM_OK);
    free(t);
    iam_keyset_release(rs_only);

    iam_keyset_release(pem_ks);
    iam_keyset_release(kid_ks);
    free(claims);
}

/* ------------------------------------------------------------------------- */
/* kid selection                                                             */
/* ------------------------------------------------------------------------- */

static void test_kid_selection(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    iam_keyset *two = ks_new();
    ks_add_jwk(two, F.rsa1, KID_RSA1, NULL);
    ks_add_jwk(two, F.rsa2, KID_RSA2, NULL);

    /* kid names the signer: verifies. */
    char *t = mint_token("RS256", KID_RSA2, claims, F.rsa2);
    EXPECT_TOKEN(t, two, NULL, NOW, IAM_OK);
    free(t);
    t = mint_token("RS256", KID_RSA1, claims, F.rsa1);
    EXPECT_TOKEN(t, two, NULL, NOW, IAM_OK);
    free(t);
    /* kid names the other key: only that key is tried. */
    t = mint_token("RS256", KID_RSA1, claims, F.rsa2);
    EXPECT_TOKEN(t, two, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(t);
    t = mint_token("RS256", KID_RSA2, claims, F.rsa1);
    EXPECT_TOKEN(t, two, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(t);

    /* kid present but names an EC key for an RS256 token. */
    iam_keyset *mixed = ks_new();
    ks_add_jwk(mixed, F.rsa1, KID_RSA1, NULL);
    ks_add_jwk(mixed, F.p256, KID_EC, NULL);
    t = mint_token("RS256", KID_EC, claims, F.rsa1);
    EXPECT_TOKEN(t, mixed, NULL, NOW, IAM_E_UNKNOWN_KEY);
    EXPECT_JWS(t, mixed, IAM_E_UNKNOWN_KEY);
    free(t);

    /* kid unknown, every key has a kid. */
    t = mint_token("RS256", KID_UNKNOWN, claims, F.rsa1);
    EXPECT_TOKEN(t, two, NULL, NOW, IAM_E_UNKNOWN_KEY);
    EXPECT_TOKEN(t, mixed, NULL, NOW, IAM_E_UNKNOWN_KEY);
    free(t);

    /* kid unknown, but a kid-less key of the right type verifies. */
    iam_keyset *with_anon = ks_new();
    ks_add_jwk(with_anon, F.rsa2, KID_RSA2, NULL);
    ks_add_pem(with_anon, F.rsa1, NULL);
    t = mint_token("RS256", KID_UNKNOWN, claims, F.rsa1);
    EXPECT_TOKEN(t, with_anon, NULL, NOW, IAM_OK);
    free(t);
    /* ...and the kid-less key must not rescue a signature by the kid-bearing key's
     * neighbour: signed by rsa2 with an unknown kid, only the kid-less rsa1 is tried. */
    t = mint_token("RS256", KID_UNKNOWN, claims, F.rsa2);
    EXPECT_TOKEN(t, with_anon, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(t);

    /* No kid: every key of the right type is tried; the second one verifies. */
    iam_keyset *anon2 = ks_new();
    ks_add_pem(anon2, F.rsa1, NULL);
    ks_add_pem(anon2, F.rsa2, NULL);
    t = mint_token("RS256", NULL, claims, F.rsa2);
    EXPECT_TOKEN(t, anon2, NULL, NOW, IAM_OK);
    EXPECT_TOKEN(t, two, NULL, NOW, IAM_OK); /* kid-bearing keys are tried too */
    free(t);
    /* No kid, no key of the set signed it. */
    t = mint_token("RS256", NULL, claims, F.rsa_att);
    EXPECT_TOKEN(t, anon2, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(t);

    /* kid of the wrong JSON type or empty is malformed. */
    const char *bad_kids[] = {"{\"alg\":\"HS256\",\"kid\":7}", "{\"alg\":\"HS256\",\"kid\":\"\"}",
                              "{\"alg\":\"HS256\",\"kid\":null}",
                              "{\"alg\":\"HS256\",\"kid\":[\"a\"]}"};
    for (size_t i = 0; i < sizeof bad_kids / sizeof bad_kids[0]; i++) {
        t = hs_with_header(bad_kids[i], claims);
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_MALFORMED);
        free(t);
    }

    /* HMAC secrets are selected by kid too. */
    iam_keyset *hk = ks_new();
    ks_add_hmac(hk, SECRET64, 64, KID_RSA1);
    t = mint_token("HS256", KID_RSA1, claims, F.hs64);
    EXPECT_TOKEN(t, hk, NULL, NOW, IAM_OK);
    free(t);
    t = mint_token("HS256", KID_UNKNOWN, claims, F.hs64);
    EXPECT_TOKEN(t, hk, NULL, NOW, IAM_E_UNKNOWN_KEY);
    free(t);
    iam_keyset_release(hk);

    iam_keyset_release(two);
    iam_keyset_release(mixed);
    iam_keyset_release(with_anon);
    iam_keyset_release(anon2);
    free(claims);
}

/* ------------------------------------------------------------------------- */
/* Keys carried in the header are never used                                 */
/* ------------------------------------------------------------------------- */

static void test_header_keys_ignored(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    char *att_jwk = mint_key_public_jwk(F.rsa_att, NULL, "RS256");
    char *att_pem = mint_key_public_pem(F.rsa_att);
    /* x5c-shaped: the attacker's SPKI body in standard base64 (no certificate checks
     * could possibly make it trusted). */
    char body[2048];
    size_t bo = 0;
    for (const char *p = att_pem; *p; p++) {
        if (*p == '-') {
            while (*p && *p != '\n')
                p++;
            if (!*p)
                break;
            continue;
        }
        if (*p != '\n' && bo + 1 < sizeof body)
            body[bo++] = *p;
    }
    body[bo] = '\0';

    char *headers[4];
    headers[0] = xprintf("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"jwk\":%s}", att_jwk);
    headers[1] = xprintf("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"jku\":\"https://attacker.invalid/jwks.json\"}");
    headers[2] = xprintf("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5u\":\"https://attacker.invalid/cert.pem\"}");
    headers[3] = xprintf("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5c\":[\"%s\"],\"jwk\":%s}", body, att_jwk);
    for (size_t i = 0; i < 4; i++) {
        char *t = mint_sign(headers[i], claims, strlen(claims), "RS256", F.rsa_att);
        /* The set's RSA key is tried and the signature is not by it. */
        EXPECT_TOKEN(t, F.ks_rsa1, NULL, NOW, IAM_E_BAD_SIGNATURE);
        EXPECT_JWS(t, F.ks_rsa1, IAM_E_BAD_SIGNATURE);
        /* No RSA key at all: nothing to try. */
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_UNKNOWN_KEY);
        free(t);
        free(headers[i]);
    }

    /* An EC attacker key embedded in an ES256 header, against an RSA-only set. */
    char *ec_jwk = mint_key_public_jwk(F.p256_att, NULL, NULL);
    char *h = xprintf("{\"alg\":\"ES256\",\"typ\":\"JWT\",\"jwk\":%s}", ec_jwk);
    char *t = mint_sign(h, claims, strlen(claims), "ES256", F.p256_att);
    EXPECT_TOKEN(t, F.ks_rsa1, NULL, NOW, IAM_E_UNKNOWN_KEY);
    /* Against a set holding a different P-256 key: tried, wrong. */
    iam_keyset *ec = ks_new();
    ks_add_jwk(ec, F.p256, NULL, NULL);
    EXPECT_TOKEN(t, ec, NULL, NOW, IAM_E_BAD_SIGNATURE);
    iam_keyset_release(ec);
    free(t);
    free(h);
    free(ec_jwk);

    /* An oct key embedded in an HS256 header. */
    mint_key *att_secret = mint_key_hmac("attacker-secret-attacker-secret-attacker-secret!", 48);
    char *oct = mint_key_public_jwk(att_secret, NULL, NULL);
    h = xprintf("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"jwk\":%s}", oct);
    t = mint_sign(h, claims, strlen(claims), "HS256", att_secret);
    EXPECT_TOKEN(t, F.ks_rsa1, NULL, NOW, IAM_E_UNKNOWN_KEY);
    EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(t);
    free(h);
    free(oct);
    mint_key_free(att_secret);

    free(att_jwk);
    free(att_pem);
    free(claims);
}

/* ------------------------------------------------------------------------- */
/* crit and typ                                                              */
/* ------------------------------------------------------------------------- */

static void test_crit(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    struct {
        const char *header;
        iam_status want;
    } cases[] = {
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"exp\"],\"exp\":1900000900}", IAM_E_UNSUPPORTED_CRIT},
        {"{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", IAM_E_UNSUPPORTED_CRIT},
        {"{\"alg\":\"HS256\",\"crit\":[\"x\",\"y\"],\"x\":1,\"y\":2}", IAM_E_UNSUPPORTED_CRIT},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[]}", IAM_E_MALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"alg\"]}", IAM_E_MALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"typ\"]}", IAM_E_MALFORMED},
        {"{\"alg\":\"HS256\",\"kid\":\"k\",\"crit\":[\"kid\"]}", IAM_E_MALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"x\"]}", IAM_E_MALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"x\",\"y\"],\"x\":1}", IAM_E_MALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":\"x\",\"x\":1}", IAM_E_MALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[1],\"x\":1}", IAM_E_MALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"\"]}", IAM_E_MALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":null}", IAM_E_MALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":{\"x\":1},\"x\":1}", IAM_E_MALFORMED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("header %s\n", cases[i].header);
        char *t = hs_with_header(cases[i].header, claims);
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, cases[i].want);
        EXPECT_JWS(t, F.ks_hs, cases[i].want);
        free(t);
    }
    free(claims);
}

static void test_typ(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    const char *ok[] = {
        "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}",
        "{\"alg\":\"HS256\",\"typ\":\"application/jwt\"}",
        "{\"alg\":\"HS256\",\"typ\":\"application/at+jwt\"}",
        "{\"alg\":\"HS256\",\"typ\":\"jwt\"}",    /* RFC 7515 §4.1.9: case-insensitive */
        "{\"alg\":\"HS256\",\"typ\":\"AT+JWT\"}",
        "{\"alg\":\"HS256\"}",                    /* absent */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        print_message("header %s\n", ok[i]);
        char *t = hs_with_header(ok[i], claims);
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_OK);
        EXPECT_JWS(t, F.ks_hs, IAM_OK);
        free(t);
    }
    const char *wrong[] = {
        "{\"alg\":\"HS256\",\"typ\":\"JOSE\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JOSE+JSON\"}",
        "{\"alg\":\"HS256\",\"typ\":\"secevent+jwt\"}",
        "{\"alg\":\"HS256\",\"typ\":\"dpop+jwt\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JWTX\"}",
        "{\"alg\":\"HS256\",\"typ\":\"\"}",
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        print_message("header %s\n", wrong[i]);
        char *t = hs_with_header(wrong[i], claims);
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_WRONG_TYPE);
        EXPECT_JWS(t, F.ks_hs, IAM_OK); /* a bare JWS has no opinion on typ */
        free(t);
    }
    free(claims);
}

/* ------------------------------------------------------------------------- */
/* Signature encodings                                                       */
/* ------------------------------------------------------------------------- */

static void test_signature_encodings(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    iam_keyset *ec = ks_new();
    ks_add_jwk(ec, F.p256, NULL, NULL);

    char *t = mint_token("ES256", NULL, claims, F.p256);
    EXPECT_TOKEN(t, ec, NULL, NOW, IAM_OK);
    size_t sl;
    unsigned char *raw = signature_of(t, &sl);
    assert_int_equal(sl, 64);

    /* DER SEQUENCE{r, s} (what OpenSSL produces natively) instead of raw r||s. */
    unsigned char der[80], body[76];
    size_t b = der_int(raw, 32, body);
    b += der_int(raw + 32, 32, body + b);
    der[0] = 0x30;
    der[1] = (unsigned char)b;
    memcpy(der + 2, body, b);
    char *d = with_signature(t, der, b + 2);
    EXPECT_TOKEN(d, ec, NULL, NOW, IAM_E_BAD_SIGNATURE);
    EXPECT_JWS(d, ec, IAM_E_BAD_SIGNATURE);
    free(d);

    /* Wrong lengths: 63, 65, 0 and 128 bytes. */
    size_t lens[] = {63, 65, 0, 128};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        unsigned char tmp[128];
        memcpy(tmp, raw, 64);
        memcpy(tmp + 64, raw, 64);
        if (lens[i] == 65)
            tmp[64] = 0;
        char *w = with_signature(t, tmp, lens[i]);
        EXPECT_TOKEN(w, ec, NULL, NOW, IAM_E_BAD_SIGNATURE);
        free(w);
    }
    /* r = s = 0 and r||s swapped. */
    unsigned char zero[64] = {0};
    char *z = with_signature(t, zero, 64);
    EXPECT_TOKEN(z, ec, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(z);
    unsigned char swapped[64];
    memcpy(swapped, raw + 32, 32);
    memcpy(swapped + 32, raw, 32);
    z = with_signature(t, swapped, 64);
    EXPECT_TOKEN(z, ec, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(z);
    free(raw);
    free(t);

    /* RSA: one byte short, one (zero) byte long. */
    t = mint_token("RS256", NULL, claims, F.rsa1);
    raw = signature_of(t, &sl);
    assert_int_equal(sl, 256);
    char *s = with_signature(t, raw, sl - 1);
    EXPECT_TOKEN(s, F.ks_rsa1, NULL, NOW, IAM_E_BAD_SIGNATURE);
    EXPECT_JWS(s, F.ks_rsa1, IAM_E_BAD_SIGNATURE);
    free(s);
    unsigned char padded[257];
    padded[0] = 0;
    memcpy(padded + 1, raw, 256);
    s = with_signature(t, padded, 257);
    EXPECT_TOKEN(s, F.ks_rsa1, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(s);
    raw[100] ^= 0x01;
    s = with_signature(t, raw, sl);
    EXPECT_TOKEN(s, F.ks_rsa1, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(s);
    free(raw);
    free(t);

    /* HMAC: truncated, empty, flipped. */
    t = mint_token("HS256", NULL, claims, F.hs64);
    raw = signature_of(t, &sl);
    assert_int_equal(sl, 32);
    s = with_signature(t, raw, 31);
    EXPECT_TOKEN(s, F.ks_hs, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(s);
    s = with_signature(t, raw, 0);
    EXPECT_TOKEN(s, F.ks_hs, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(s);
    raw[0] ^= 0x80;
    s = with_signature(t, raw, sl);
    EXPECT_TOKEN(s, F.ks_hs, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(s);
    free(raw);

    /* A changed payload under the original signature. */
    char *other = mint_platform_claims("3", EXP);
    char *t2 = mint_token("HS256", NULL, other, F.hs64);
    const char *d1 = strchr(t, '.'), *d2 = strrchr(t, '.');
    const char *e1 = strchr(t2, '.'), *e2 = strrchr(t2, '.');
    char *spliced = xprintf("%.*s.%.*s%s", (int)(d1 - t), t, (int)(e2 - e1 - 1), e1 + 1, d2);
    EXPECT_TOKEN(spliced, F.ks_hs, NULL, NOW, IAM_E_BAD_SIGNATURE);
    EXPECT_JWS(spliced, F.ks_hs, IAM_E_BAD_SIGNATURE);
    free(spliced);
    free(t2);
    free(other);
    free(t);

    /* EdDSA: 63 bytes. */
    iam_keyset *ed = ks_new();
    ks_add_jwk(ed, F.ed, NULL, NULL);
    t = mint_token("EdDSA", NULL, claims, F.ed);
    raw = signature_of(t, &sl);
    assert_int_equal(sl, 64);
    s = with_signature(t, raw, 63);
    EXPECT_TOKEN(s, ed, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(s);
    free(raw);
    free(t);
    iam_keyset_release(ed);

    iam_keyset_release(ec);
    free(claims);
}

/* ------------------------------------------------------------------------- */
/* Structure and size                                                        */
/* ------------------------------------------------------------------------- */

/* A correctly signed HS256 token of exactly `target` bytes (valid claims). */
static char *token_of_length(size_t target)
{
    const char *headers[] = {"{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
                             "{\"alg\":\"HS256\",\"typ\":\"JWT\" }",
                             "{\"alg\":\"HS256\",\"typ\":\"JWT\"  }"};
    char *pad = malloc(target + 1);
    assert_non_null(pad);
    for (size_t h = 0; h < 3; h++) {
        for (size_t n = target * 3 / 4 - 800; n < target * 3 / 4; n++) {
            memset(pad, 'x', n);
            pad[n] = '\0';
            char *extra = xprintf("\"pad\":\"%s\"", pad);
            claims_spec c = {.extra = extra};
            char *claims = build_claims(&c);
            free(extra);
            char *t = mint_sign(headers[h], claims, strlen(claims), "HS256", F.hs64);
            free(claims);
            size_t len = strlen(t);
            if (len == target) {
                free(pad);
                return t;
            }
            free(t);
            if (len > target)
                break;
        }
    }
    free(pad);
    fail_msg("cannot build a token of %zu bytes", target);
    return NULL;
}

static void test_size_limit(void **state)
{
    (void)state;
    char *ok = token_of_length(IAM_MAX_TOKEN_BYTES);
    EXPECT_TOKEN(ok, F.ks_hs, NULL, NOW, IAM_OK);
    EXPECT_JWS(ok, F.ks_hs, IAM_OK);
    char *big = token_of_length(IAM_MAX_TOKEN_BYTES + 1);
    EXPECT_TOKEN(big, F.ks_hs, NULL, NOW, IAM_E_TOO_LARGE);
    EXPECT_JWS(big, F.ks_hs, IAM_E_TOO_LARGE);
    free(ok);
    free(big);

    /* Checked before any decoding: garbage of the size is "too large", not "malformed". */
    char *junk = malloc(IAM_MAX_TOKEN_BYTES + 2);
    assert_non_null(junk);
    memset(junk, '!', IAM_MAX_TOKEN_BYTES + 1);
    junk[IAM_MAX_TOKEN_BYTES + 1] = '\0';
    EXPECT_TOKEN(junk, F.ks_hs, NULL, NOW, IAM_E_TOO_LARGE);
    EXPECT_JWS(junk, F.ks_hs, IAM_E_TOO_LARGE);
    free(junk);
}

static void test_structure(void **state)
{
    (void)state;
    char *claims = mint_platform_claims("2", EXP);
    char *good = mint_token("HS256", NULL, claims, F.hs64);
    const char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
    int hl = (int)(d1 - good), pl = (int)(d2 - d1 - 1);
    const char *h64 = good, *p64 = d1 + 1, *s64 = d2 + 1;

    char *cases[] = {
        xprintf("%s", ""),
        xprintf("%s", "."),
        xprintf("%s", ".."),
        xprintf(".%.*s.%s", pl, p64, s64),              /* empty header */
        xprintf("%.*s.%.*s", hl, h64, pl, p64),         /* two segments */
        xprintf("%s.%s", good, s64),                    /* four segments */
        xprintf("%s.", good),                           /* trailing dot */
        xprintf(" %s", good),                           /* leading space */
        xprintf("%s ", good),                           /* trailing space */
        xprintf("%s\n", good),                          /* trailing newline */
        xprintf("%.*s.%.*s.%s=", hl, h64, pl, p64, s64), /* padded signature */
        xprintf("%.*s=.%.*s.%s", hl, h64, pl, p64, s64), /* padded header */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("case %zu: \"%s\"\n", i, cases[i]);
        EXPECT_TOKEN(cases[i], F.ks_hs, NULL, NOW, IAM_E_MALFORMED);
        EXPECT_JWS(cases[i], F.ks_hs, IAM_E_MALFORMED);
        free(cases[i]);
    }

    /* Payload segment not strict base64url, with a signature correctly keyed over the
     * exact bytes: the encoding alone must sink it. */
    char *h = xprintf("%.*s", hl, h64);
    char *p = xprintf("%.*s", pl, p64);
    size_t plen = strlen(p);
    char *bad_payloads[8];
    int nb = 0;
    bad_payloads[nb++] = xprintf("%s=", p);                   /* padding */
    bad_payloads[nb++] = xprintf("%s==", p);
    {
        char *q = xstrdup(p);
        q[plen / 2] = '+';
        bad_payloads[nb++] = q;                               /* standard-alphabet char */
        q = xstrdup(p);
        q[plen / 3] = '/';
        bad_payloads[nb++] = q;
    }
    bad_payloads[nb++] = xprintf("%.*s %s", (int)(plen / 2), p, p + plen / 2); /* space */
    {
        size_t l = plen;                                      /* length % 4 == 1 */
        while (l % 4 != 1)
            l--;
        bad_payloads[nb++] = xprintf("%.*s", (int)l, p);
    }
    for (int i = 0; i < nb; i++) {
        char *t = sign_raw_hs256(h, bad_payloads[i]);
        print_message("payload segment \"%s\"\n", bad_payloads[i]);
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_MALFORMED);
        EXPECT_JWS(t, F.ks_hs, IAM_E_MALFORMED);
        free(t);
        free(bad_payloads[i]);
    }

    /* Non-canonical final character: the discarded low bits are not zero. */
    {
        /* A payload whose length is 1 mod 3 ends in two characters, 4 discarded bits. */
        const char *js = "{\"a\":1}"; /* 7 bytes: 7 % 3 == 1 */
        char *enc = mint_b64url(js, strlen(js));
        size_t el = strlen(enc);
        char *t = sign_raw_hs256(h, enc);
        EXPECT_JWS(t, F.ks_hs, IAM_OK); /* the canonical form verifies */
        free(t);
        int v = b64_value(enc[el - 1]);
        assert_int_equal(v & 0x0f, 0);
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        enc[el - 1] = alphabet[v | 0x01];
        t = sign_raw_hs256(h, enc);
        EXPECT_JWS(t, F.ks_hs, IAM_E_MALFORMED);
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_MALFORMED);
        free(t);
        free(enc);
    }

    /* Header: not strict base64url, not JSON, not an object, duplicate alg. */
    const char *bad_headers[] = {
        "{\"alg\":\"HS256\",\"alg\":\"HS256\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JWT\",}",
        "[\"HS256\"]",
        "\"HS256\"",
        "{\"alg\":\"HS256\"} x",
        "{'alg':'HS256'}",
        "",
    };
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        char *t = hs_with_header(bad_headers[i], claims);
        print_message("header \"%s\"\n", bad_headers[i]);
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_MALFORMED);
        EXPECT_JWS(t, F.ks_hs, IAM_E_MALFORMED);
        free(t);
    }
    {
        char *hb = xprintf("%s=", h); /* a padded header segment, correctly signed */
        char *t = sign_raw_hs256(hb, p);
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_MALFORMED);
        free(t);
        free(hb);
    }
    free(h);
    free(p);
    free(good);
    free(claims);
}

/* ------------------------------------------------------------------------- */
/* Payload JSON                                                              */
/* ------------------------------------------------------------------------- */

static void test_payload_json(void **state)
{
    (void)state;
    /* Duplicate sub, also when one spelling is escaped. */
    CLAIMS_EXPECT(IAM_E_MALFORMED, .extra = "\"sub\":\"3\"");
    CLAIMS_EXPECT(IAM_E_MALFORMED, .extra = "\"s\\u0075b\":\"3\"");
    CLAIMS_EXPECT(IAM_E_MALFORMED, .extra = "\"exp\":1900000900");
    /* \u0000 inside a string. */
    CLAIMS_EXPECT(IAM_E_MALFORMED, .aud = "\"omnibioai-platform\\u0000x\"");
    CLAIMS_EXPECT(IAM_E_MALFORMED, .sub = "\"2\\u0000\"");

    const char *not_objects[] = {
        "[{\"sub\":\"2\",\"exp\":1900000900}]", "\"hello\"", "42", "null", "hello", "",
        "{\"sub\":\"2\",}", "{\"sub\":\"2\"} {}",
    };
    for (size_t i = 0; i < sizeof not_objects / sizeof not_objects[0]; i++) {
        print_message("payload \"%s\"\n", not_objects[i]);
        char *t = mint_sign("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", not_objects[i],
                            strlen(not_objects[i]), "HS256", F.hs64);
        EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_MALFORMED);
        free(t);
    }

    /* Invalid UTF-8 in a claim. */
    claims_spec c = {.extra = "\"name\":\"\xc3\x28\""};
    char *claims = build_claims(&c);
    char *t = mint_token("HS256", NULL, claims, F.hs64);
    EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_MALFORMED);
    free(t);
    free(claims);

    /* Depth over IAM_MAX_JSON_DEPTH. */
    char deep[256] = "\"deep\":";
    size_t o = strlen(deep);
    for (int i = 0; i < IAM_MAX_JSON_DEPTH + 1; i++)
        deep[o++] = '[';
    for (int i = 0; i < IAM_MAX_JSON_DEPTH + 1; i++)
        deep[o++] = ']';
    deep[o] = '\0';
    CLAIMS_EXPECT(IAM_E_TOO_LARGE, .extra = deep);
}

/* ------------------------------------------------------------------------- */
/* Registered claims                                                         */
/* ------------------------------------------------------------------------- */

static void test_exp(void **state)
{
    (void)state;
    CLAIMS_EXPECT(IAM_E_MISSING_CLAIM, .exp = OMIT);
    const char *invalid[] = {"\"1900000900\"", "true", "false", "null", "[1900000900]",
                             "{}", "1e400", "-1", "1e300", "-1e400", "253402300800"};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        print_message("exp %s\n", invalid[i]);
        CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .exp = invalid[i]);
    }
    /* Fractional exp is a NumericDate too. */
    CLAIMS_EXPECT(IAM_OK, .exp = "1900000900.75");
    CLAIMS_EXPECT(IAM_OK, .exp = "1900000000.5");
    CLAIMS_EXPECT(IAM_E_EXPIRED, .exp = "1899999999.5");
    CLAIMS_EXPECT(IAM_OK, .exp = "1.9000009e9");
    /* exp is exclusive. */
    CLAIMS_EXPECT(IAM_E_EXPIRED, .exp = "1900000000");
    CLAIMS_EXPECT(IAM_OK, .exp = "1900000001");
    CLAIMS_EXPECT(IAM_E_EXPIRED, .exp = "1899999999");
    CLAIMS_EXPECT(IAM_E_EXPIRED, .exp = "0");
    /* The latest date accepted. */
    CLAIMS_EXPECT(IAM_OK, .exp = "253402300799");

    /* Leeway: expired when now >= exp + leeway. */
    iam_verify_options o = {.leeway_s = 10};
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_E_EXPIRED, .exp = "1899999990");
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_OK, .exp = "1899999991");
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_OK, .exp = "1900000000");
    o.leeway_s = 86400;
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_OK, .exp = "1899913601");
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_E_EXPIRED, .exp = "1899913600");
    /* The clock is the caller's. */
    CLAIMS_EXPECT_OPTS(NULL, EXP - 1, IAM_OK);
    CLAIMS_EXPECT_OPTS(NULL, EXP, IAM_E_EXPIRED);
}

static void test_nbf_iat(void **state)
{
    (void)state;
    CLAIMS_EXPECT(IAM_OK, .extra = "\"nbf\":1900000000");
    CLAIMS_EXPECT(IAM_E_NOT_YET_VALID, .extra = "\"nbf\":1900000001");
    CLAIMS_EXPECT(IAM_OK, .extra = "\"nbf\":1899999000");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .extra = "\"nbf\":\"1900000000\"");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .extra = "\"nbf\":-5");
    iam_verify_options o = {.leeway_s = 30};
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_OK, .extra = "\"nbf\":1900000030");
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_E_NOT_YET_VALID, .extra = "\"nbf\":1900000031");
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_E_NOT_YET_VALID, .extra = "\"nbf\":1900000030.5");

    CLAIMS_EXPECT(IAM_OK, .extra = "\"iat\":1900000000");
    CLAIMS_EXPECT(IAM_OK, .extra = "\"iat\":1899999100");
    CLAIMS_EXPECT(IAM_E_NOT_YET_VALID, .extra = "\"iat\":1900000001");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .extra = "\"iat\":null");
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_OK, .extra = "\"iat\":1900000030");
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_E_NOT_YET_VALID, .extra = "\"iat\":1900000031");
}

static void test_issuer(void **state)
{
    (void)state;
    CLAIMS_EXPECT(IAM_E_MISSING_CLAIM, .iss = OMIT);
    CLAIMS_EXPECT(IAM_E_WRONG_ISSUER, .iss = "\"someone-else\"");
    CLAIMS_EXPECT(IAM_E_WRONG_ISSUER, .iss = "\"omnibioai-auth \"");
    CLAIMS_EXPECT(IAM_E_WRONG_ISSUER, .iss = "\"OMNIBIOAI-AUTH\"");
    CLAIMS_EXPECT(IAM_E_WRONG_ISSUER, .iss = "\"omnibioai-aut\"");
    CLAIMS_EXPECT(IAM_E_WRONG_ISSUER, .iss = "\"\"");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .iss = "42");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .iss = "null");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .iss = "[\"omnibioai-auth\"]");

    iam_verify_options o = {.issuer = "https://auth.example"};
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_OK, .iss = "\"https://auth.example\"");
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_E_WRONG_ISSUER);
    iam_verify_options skip = {.flags = IAM_VERIFY_SKIP_ISSUER};
    CLAIMS_EXPECT_OPTS(&skip, NOW, IAM_OK, .iss = OMIT);
    CLAIMS_EXPECT_OPTS(&skip, NOW, IAM_OK, .iss = "\"someone-else\"");
}

static void test_audience(void **state)
{
    (void)state;
    CLAIMS_EXPECT(IAM_OK, .aud = "\"omnibioai-platform\"");
    CLAIMS_EXPECT(IAM_OK, .aud = "[\"omnibioai-platform\"]");
    CLAIMS_EXPECT(IAM_OK, .aud = "[\"other\",\"omnibioai-platform\"]");
    CLAIMS_EXPECT(IAM_E_WRONG_AUDIENCE, .aud = "\"other\"");
    CLAIMS_EXPECT(IAM_E_WRONG_AUDIENCE, .aud = "[\"other\",\"another\"]");
    CLAIMS_EXPECT(IAM_E_WRONG_AUDIENCE, .aud = "[]");
    CLAIMS_EXPECT(IAM_E_WRONG_AUDIENCE, .aud = "\"omnibioai-platform2\"");
    CLAIMS_EXPECT(IAM_E_WRONG_AUDIENCE, .aud = "\"omnibioai\"");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .aud = "[\"omnibioai-platform\",7]");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .aud = "[7,\"omnibioai-platform\"]");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .aud = "[null]");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .aud = "7");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .aud = "{\"omnibioai-platform\":true}");
    CLAIMS_EXPECT(IAM_E_MISSING_CLAIM, .aud = OMIT);

    iam_verify_options o = {.audience = "lab-portal"};
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_OK, .aud = "\"lab-portal\"");
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_OK, .aud = "[\"x\",\"lab-portal\"]");
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_E_WRONG_AUDIENCE);
    iam_verify_options skip = {.flags = IAM_VERIFY_SKIP_AUDIENCE};
    CLAIMS_EXPECT_OPTS(&skip, NOW, IAM_OK, .aud = OMIT);
    CLAIMS_EXPECT_OPTS(&skip, NOW, IAM_OK, .aud = "\"other\"");
    iam_verify_options both = {.flags = IAM_VERIFY_SKIP_AUDIENCE | IAM_VERIFY_SKIP_ISSUER};
    CLAIMS_EXPECT_OPTS(&both, NOW, IAM_OK, .aud = OMIT, .iss = OMIT);
}

static void test_type_claim(void **state)
{
    (void)state;
    CLAIMS_EXPECT(IAM_E_WRONG_TYPE, .type = OMIT);
    CLAIMS_EXPECT(IAM_E_WRONG_TYPE, .type = "\"refresh\"");
    CLAIMS_EXPECT(IAM_E_WRONG_TYPE, .type = "\"Access\"");
    CLAIMS_EXPECT(IAM_E_WRONG_TYPE, .type = "\"\"");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .type = "5");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .type = "[\"access\"]");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .type = "null");

    iam_verify_options refresh = {.token_type = "refresh"};
    CLAIMS_EXPECT_OPTS(&refresh, NOW, IAM_OK, .type = "\"refresh\"");
    CLAIMS_EXPECT_OPTS(&refresh, NOW, IAM_E_WRONG_TYPE, .type = "\"access\"");
    CLAIMS_EXPECT_OPTS(&refresh, NOW, IAM_E_WRONG_TYPE, .type = OMIT);

    iam_verify_options any = {.flags = IAM_VERIFY_ANY_TYPE};
    CLAIMS_EXPECT_OPTS(&any, NOW, IAM_OK, .type = "\"refresh\"");
    CLAIMS_EXPECT_OPTS(&any, NOW, IAM_OK, .type = OMIT);
    CLAIMS_EXPECT_OPTS(&any, NOW, IAM_OK, .type = "\"access\"");

    /* The refresh token keeps its type in the context. */
    claims_spec c = {.type = "\"refresh\""};
    char *t = hs_token(&c);
    iam_user *u = NULL;
    EXPECT_TOKEN_USER(t, F.ks_hs, &refresh, NOW, &u);
    assert_string_equal(iam_user_token_type(u), "refresh");
    iam_user_release(u);
    free(t);
}

static void test_options(void **state)
{
    (void)state;
    iam_verify_options o = {.leeway_s = -1};
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_E_INVALID_ARGUMENT);
    o.leeway_s = 86401;
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_E_INVALID_ARGUMENT);
    o.leeway_s = INT64_MIN;
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_E_INVALID_ARGUMENT);
    o.leeway_s = INT64_MAX;
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_E_INVALID_ARGUMENT);
    o.leeway_s = 86400;
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_OK);
    o.leeway_s = 0;
    CLAIMS_EXPECT_OPTS(&o, NOW, IAM_OK);

    /* A zeroed struct is the defaults. */
    iam_verify_options zero;
    memset(&zero, 0, sizeof zero);
    CLAIMS_EXPECT_OPTS(&zero, NOW, IAM_OK);
    CLAIMS_EXPECT_OPTS(&zero, NOW, IAM_E_WRONG_AUDIENCE, .aud = "\"x\"");

    /* Argument errors. */
    claims_spec c = {0};
    char *t = hs_token(&c);
    iam_error e;
    memset(&e, 0, sizeof e);
    assert_int_equal(iam_token_verify(t, strlen(t), F.ks_hs, NULL, NOW, NULL, &e),
                     IAM_E_INVALID_ARGUMENT);
    assert_int_equal(e.code, IAM_E_INVALID_ARGUMENT);
    iam_user *u = (iam_user *)(uintptr_t)0x1;
    assert_int_equal(iam_token_verify(NULL, 10, F.ks_hs, NULL, NOW, &u, NULL),
                     IAM_E_INVALID_ARGUMENT);
    assert_null(u);
    u = (iam_user *)(uintptr_t)0x1;
    assert_int_equal(iam_token_verify(t, strlen(t), NULL, NULL, NOW, &u, NULL),
                     IAM_E_INVALID_ARGUMENT);
    assert_null(u);
    size_t pl = 7;
    assert_int_equal(iam_jws_verify(t, strlen(t), F.ks_hs, NULL, &pl, NULL), IAM_E_INVALID_ARGUMENT);
    char *p = (char *)(uintptr_t)0x1;
    assert_int_equal(iam_jws_verify(t, strlen(t), NULL, &p, NULL, NULL), IAM_E_INVALID_ARGUMENT);
    assert_null(p);
    /* err may be NULL; payload_len may be NULL. */
    p = NULL;
    assert_int_equal(iam_jws_verify(t, strlen(t), F.ks_hs, &p, NULL, NULL), IAM_OK);
    assert_non_null(p);
    iam_free(p);
    u = NULL;
    assert_int_equal(iam_token_verify(t, strlen(t), F.ks_hs, NULL, NOW, &u, NULL), IAM_OK);
    iam_user_release(u);
    /* An empty keyset knows no key. */
    iam_keyset *empty = ks_new();
    EXPECT_TOKEN(t, empty, NULL, NOW, IAM_E_UNKNOWN_KEY);
    iam_keyset_release(empty);
    free(t);
}

/* ------------------------------------------------------------------------- */
/* Principals                                                                */
/* ------------------------------------------------------------------------- */

#define SERVICE "\"auth_method\":\"client_credentials\""

static void test_principals(void **state)
{
    (void)state;
    /* A service identity: client_id, no sub, no email. */
    claims_spec c = {.sub = OMIT, .extra = SERVICE ",\"client_id\":\"hpc-scheduler\","
                                           "\"scopes\":[\"jobs.submit\",\"jobs.read\"]"};
    char *t = hs_token(&c);
    iam_user *u = NULL;
    EXPECT_TOKEN_USER(t, F.ks_hs, NULL, NOW, &u);
    assert_int_equal(iam_user_kind(u), IAM_PRINCIPAL_SERVICE);
    assert_null(iam_user_id(u));
    assert_string_equal(iam_user_client_id(u), "hpc-scheduler");
    assert_string_equal(iam_user_auth_method(u), "client_credentials");
    assert_string_equal(iam_user_org_id(u), "7");
    size_t n = 99;
    const char *const *s = iam_user_scopes(u, &n);
    assert_int_equal(n, 2);
    assert_string_equal(s[0], "jobs.submit");
    assert_string_equal(s[1], "jobs.read");
    iam_user_release(u);
    free(t);

    /* Scopes as an OAuth space-separated string. */
    claims_spec c2 = {.sub = OMIT, .extra = SERVICE ",\"client_id\":\"svc\","
                                            "\"scopes\":\"  dataset.read   workflow.execute model.use \""};
    t = hs_token(&c2);
    EXPECT_TOKEN_USER(t, F.ks_hs, NULL, NOW, &u);
    s = iam_user_scopes(u, &n);
    assert_int_equal(n, 3);
    assert_string_equal(s[0], "dataset.read");
    assert_string_equal(s[1], "workflow.execute");
    assert_string_equal(s[2], "model.use");
    iam_user_release(u);
    free(t);
    claims_spec c3 = {.sub = OMIT, .extra = SERVICE ",\"client_id\":\"svc\",\"scopes\":\"one\""};
    t = hs_token(&c3);
    EXPECT_TOKEN_USER(t, F.ks_hs, NULL, NOW, &u);
    s = iam_user_scopes(u, &n);
    assert_int_equal(n, 1);
    assert_string_equal(s[0], "one");
    iam_user_release(u);
    free(t);
    claims_spec c4 = {.sub = OMIT, .extra = SERVICE ",\"client_id\":\"svc\",\"scopes\":\"\""};
    t = hs_token(&c4);
    EXPECT_TOKEN_USER(t, F.ks_hs, NULL, NOW, &u);
    iam_user_scopes(u, &n);
    assert_int_equal(n, 0);
    iam_user_release(u);
    free(t);
    claims_spec c5 = {.sub = OMIT, .extra = SERVICE ",\"client_id\":\"svc\""};
    t = hs_token(&c5);
    EXPECT_TOKEN_USER(t, F.ks_hs, NULL, NOW, &u);
    iam_user_scopes(u, &n);
    assert_int_equal(n, 0);
    iam_user_release(u);
    free(t);

    /* Service rules. */
    CLAIMS_EXPECT(IAM_E_MISSING_CLAIM, .sub = OMIT, .extra = SERVICE);
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .sub = OMIT, .extra = SERVICE ",\"client_id\":\"\"");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .sub = OMIT, .extra = SERVICE ",\"client_id\":42");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .extra = SERVICE ",\"client_id\":\"svc\"");   /* with sub */
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .sub = "null", .extra = SERVICE ",\"client_id\":\"svc\"");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .sub = OMIT,
                  .extra = SERVICE ",\"client_id\":\"svc\",\"scopes\":[1]");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .sub = OMIT,
                  .extra = SERVICE ",\"client_id\":\"svc\",\"scopes\":7");

    /* User rules. */
    CLAIMS_EXPECT(IAM_E_MISSING_CLAIM, .sub = OMIT);
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .sub = "2");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .sub = "\"\"");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .sub = "null");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .sub = "[\"2\"]");
    /* A client_id on a user token does not make it a service. */
    claims_spec c6 = {.extra = "\"client_id\":\"web\""};
    t = hs_token(&c6);
    EXPECT_TOKEN_USER(t, F.ks_hs, NULL, NOW, &u);
    assert_int_equal(iam_user_kind(u), IAM_PRINCIPAL_USER);
    assert_string_equal(iam_user_id(u), "2");
    iam_user_release(u);
    free(t);
    /* Only the exact auth_method makes a service. */
    CLAIMS_EXPECT(IAM_E_MISSING_CLAIM, .sub = OMIT,
                  .extra = "\"auth_method\":\"Client_Credentials\",\"client_id\":\"svc\"");
}

/* ------------------------------------------------------------------------- */
/* Messages                                                                  */
/* ------------------------------------------------------------------------- */

static void test_messages_hygiene(void **state)
{
    (void)state;
    /* The EXPECT_* helpers already check every rejection's message; here a few of the
     * cases most tempting to echo (a kid, an unknown alg, a wrong audience) are named
     * explicitly, with the sensitive strings placed where a careless message would copy
     * them. */
    char *claims = mint_platform_claims("2", EXP);
    char *t = mint_token("RS256", KID_UNKNOWN, claims, F.rsa1);
    iam_keyset *two = ks_new();
    ks_add_jwk(two, F.rsa1, KID_RSA1, NULL);
    EXPECT_TOKEN(t, two, NULL, NOW, IAM_E_UNKNOWN_KEY);
    free(t);
    t = mint_token("RS256", KID_RSA1, claims, F.rsa2);
    EXPECT_TOKEN(t, two, NULL, NOW, IAM_E_BAD_SIGNATURE);
    free(t);
    iam_keyset_release(two);

    t = hs_with_header("{\"alg\":\"alice.private@example.org\"}", claims);
    EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_UNSUPPORTED_ALG);
    free(t);
    t = hs_with_header("{\"alg\":\"HS256\",\"crit\":[\"kid-unknown-0c4d88\"],\"kid-unknown-0c4d88\":1}",
                       claims);
    EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_UNSUPPORTED_CRIT);
    free(t);
    t = hs_with_header("{\"alg\":\"HS256\",\"typ\":\"alice.private@example.org\"}", claims);
    EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_WRONG_TYPE);
    free(t);
    CLAIMS_EXPECT(IAM_E_WRONG_AUDIENCE, .aud = "\"alice.private@example.org\"");
    CLAIMS_EXPECT(IAM_E_WRONG_ISSUER, .iss = "\"S3cr3t-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU\"");
    CLAIMS_EXPECT(IAM_E_WRONG_TYPE, .type = "\"kid-rsa-one-7f3a9c\"");
    CLAIMS_EXPECT(IAM_E_MALFORMED, .extra = "\"alice.private@example.org\":1,\"alice.private@example.org\":2");
    CLAIMS_EXPECT(IAM_E_INVALID_CLAIM, .exp = "\"alice.private@example.org\"");
    CLAIMS_EXPECT(IAM_E_EXPIRED, .exp = "1000");
    CLAIMS_EXPECT(IAM_E_MISSING_CLAIM, .sub = OMIT);
    CLAIMS_EXPECT(IAM_E_MALFORMED, .extra = "\"x\":alice.private@example.org");

    /* The message of a key error names no secret byte. */
    iam_keyset *ks = ks_new();
    iam_error e;
    memset(&e, 0, sizeof e);
    assert_int_equal(iam_keyset_add_hmac(ks, SECRET64, 20, KID_RSA1, &e), IAM_E_BAD_KEY);
    check_message(&e, NULL, __FILE__, __LINE__);
    iam_keyset_release(ks);
    free(claims);
}

/* ------------------------------------------------------------------------- */
/* Bare JWS                                                                  */
/* ------------------------------------------------------------------------- */

static void test_jws_arbitrary_payload(void **state)
{
    (void)state;
    const char *h = "{\"alg\":\"HS256\"}";
    char *t = mint_sign(h, "hello", 5, "HS256", F.hs64);
    size_t n = 0;
    char *p = expect_jws_(t, strlen(t), F.ks_hs, IAM_OK, &n, __FILE__, __LINE__);
    assert_int_equal(n, 5);
    assert_memory_equal(p, "hello", 5);
    assert_int_equal(p[5], '\0');
    iam_free(p);
    /* Not a claim set, so not a token. */
    EXPECT_TOKEN(t, F.ks_hs, NULL, NOW, IAM_E_MALFORMED);
    free(t);

    /* Binary bytes, NULs included. */
    const unsigned char bin[] = {0x00, 0xff, 0x10, 0x00, 0x7f, 'a', 0x80, 0x00};
    t = mint_sign(h, bin, sizeof bin, "HS256", F.hs64);
    p = expect_jws_(t, strlen(t), F.ks_hs, IAM_OK, &n, __FILE__, __LINE__);
    assert_int_equal(n, sizeof bin);
    assert_memory_equal(p, bin, sizeof bin);
    iam_free(p);
    free(t);

    /* Empty payload. */
    t = mint_sign(h, "", 0, "HS256", F.hs64);
    p = expect_jws_(t, strlen(t), F.ks_hs, IAM_OK, &n, __FILE__, __LINE__);
    assert_int_equal(n, 0);
    assert_non_null(p);
    assert_int_equal(p[0], '\0');
    iam_free(p);
    free(t);

    /* With an EdDSA key, and the JWS does not look at exp. */
    iam_keyset *ed = ks_new();
    ks_add_jwk(ed, F.ed, NULL, NULL);
    const char *expired = "{\"exp\":1}";
    t = mint_sign("{\"alg\":\"EdDSA\"}", expired, strlen(expired), "EdDSA", F.ed);
    p = expect_jws_(t, strlen(t), ed, IAM_OK, &n, __FILE__, __LINE__);
    assert_string_equal(p, expired);
    iam_free(p);
    EXPECT_TOKEN(t, ed, NULL, NOW, IAM_E_EXPIRED);
    free(t);
    iam_keyset_release(ed);
}

/* A keyset shared by retain: verification works through either reference. */
static void test_keyset_retain(void **state)
{
    (void)state;
    iam_keyset *ks = ks_new();
    ks_add_hmac(ks, SECRET64, 64, NULL);
    assert_ptr_equal(iam_keyset_retain(ks), ks);
    iam_keyset_release(ks);
    claims_spec c = {0};
    char *t = hs_token(&c);
    EXPECT_TOKEN(t, ks, NULL, NOW, IAM_OK);
    iam_keyset_release(ks);
    iam_keyset_release(NULL);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alg_hmac),
        cmocka_unit_test(test_alg_rsa),
        cmocka_unit_test(test_alg_ec),
        cmocka_unit_test(test_alg_eddsa),
        cmocka_unit_test(test_hmac_key_size_per_alg),
        cmocka_unit_test(test_hmac_secret_lengths),
        cmocka_unit_test(test_alg_header_rejections),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_kid_selection),
        cmocka_unit_test(test_header_keys_ignored),
        cmocka_unit_test(test_crit),
        cmocka_unit_test(test_typ),
        cmocka_unit_test(test_signature_encodings),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_payload_json),
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_nbf_iat),
        cmocka_unit_test(test_issuer),
        cmocka_unit_test(test_audience),
        cmocka_unit_test(test_type_claim),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_principals),
        cmocka_unit_test(test_messages_hygiene),
        cmocka_unit_test(test_jws_arbitrary_payload),
        cmocka_unit_test(test_keyset_retain),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
